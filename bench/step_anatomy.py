"""The numpy backend's step taken apart on one core: its two products, the rest, beside the peer.

    python bench/step_anatomy.py [--shape 784-512-1] [--ms 11,12,13] [--repeats 15] [--out DIR]

A chunk of m examples on one thread is what each worker of the planned numpy
step computes (the plan hands every core a chunk, BLAS pinned to one thread).
This times, on one thread and in float32, the library's own buffered step for
that chunk (``buffered.buffered_gradients``: the traced equations, no copy of
the math here), the two products with the examples inside it (``W1 X`` and
``dZ1 X^T``, the same shapes) alone, and the whole step of the plain PyTorch
peer (nn.Linear, Tanh, nn.Linear, BCEWithLogitsLoss, SGD; ``worker.TorchNNEntry``)
on the same data, the three interleaved over rounds so that a busy machine
slows them alike.  What is left of the numpy step besides its products is
the element-wise work, the small products and the sums.  Writes
``step.jsonl`` and ``step.md`` to ``--out`` if given.  Never asserts speed.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from blas_study import _blas_of_numpy, _median_seconds, study_options, write_outputs  # noqa: E402
from worker import TorchNNEntry, make_data  # noqa: E402

ROUNDS = 3


def measure(n0, n1, n2, m, repeats, torch, threadpool_limits) -> dict:
    from backprop_core.lowering.numpy_buffers import buffered_gradients
    from backprop_core.initialization import initial_parameters_host

    X, Y = make_data(n0, n2, m)
    host = initial_parameters_host(n0, n1, n2, "xavier", seed=0)
    W1, b1, W2, b2 = (host[k].astype(np.float32) for k in ("W1", "b1", "W2", "b2"))
    step = buffered_gradients(n0, n1, n2, "tanh", "float32", m, with_cost=False)
    Z1, dW1, dZ1 = np.empty((n1, m), np.float32), np.empty((n1, n0), np.float32), np.ones((n1, m), np.float32)
    peer = TorchNNEntry("torch-nn", "cpu", "float32", 0.5)
    peer.load(X, Y, host)
    calls = {
        "numpy step": lambda: step(X, Y, W1, b1, W2, b2, m),
        "its two products": lambda: (np.matmul(W1, X, out=Z1), np.matmul(dZ1, X.T, out=dW1)),
        "torch nn.Linear step (peer)": peer.step,
    }
    seconds = {key: [] for key in calls}
    torch.set_num_threads(1)
    with threadpool_limits(1):
        for _ in range(ROUNDS):
            for key, fn in calls.items():
                seconds[key].append(_median_seconds(fn, repeats))
    peer.release()
    return {"kind": "step", "m": m, "threads": 1, **{key: statistics.median(s) for key, s in seconds.items()}}


def write_table(rows, env, out: Path | None) -> str:
    lines = [f"# The numpy step of {env['shape']} on one core: its two products, the rest, and the peer "
             "(float32)", "",
             f"{env['cpu']}, {env['date']}; numpy {env['numpy']} ({env['numpy_blas']}), torch {env['torch']}; "
             f"milliseconds per step of m examples on one thread, medians of {ROUNDS} rounds.", "",
             "| m | numpy step | its two products | the rest | torch nn.Linear step (peer) | "
             "numpy step / peer step | products / peer step |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        step, products, peer = r["numpy step"], r["its two products"], r["torch nn.Linear step (peer)"]
        lines.append(f"| 2^{r['m'].bit_length() - 1} | {step * 1e3:.2f} | {products * 1e3:.2f} | "
                     f"{(step - products) * 1e3:.2f} | {peer * 1e3:.2f} | {step / peer:.2f} | {products / peer:.2f} |")
    return write_outputs(out, "step", env, rows, lines)


def main(argv=None):
    a = study_options(__doc__, "11,12,13", "exponents of 2 for m, the examples of one core's chunk").parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    from run import _cpu_model

    n0, n1, n2 = (int(v) for v in a.shape.split("-"))
    rows = [measure(n0, n1, n2, 2 ** int(e), a.repeats, torch, threadpool_limits) for e in a.ms.split(",")]
    env = {"kind": "environment", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "cpu": _cpu_model(), "shape": a.shape, "numpy": np.__version__, "numpy_blas": _blas_of_numpy(),
           "torch": torch.__version__, "repeats": a.repeats}
    print(write_table(rows, env, Path(a.out) if a.out else None))


if __name__ == "__main__":
    sys.exit(main())
