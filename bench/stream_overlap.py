"""Does streaming chunks from the host overlap transfer with compute? (a GPU check)

    python bench/stream_overlap.py --backend torch --m 2**24 [--out stream.jsonl]

Times one full-batch iteration with X on the host, streamed in chunks, twice:
with the adapter's own ``upload`` (side-stream copies from pinned memory on
GPUs) and with plain synchronous copies, beside the same step with X already
on the device.  Prints one JSON line per mode (appended to ``--out`` as each
ends); checks that the parameters agree.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import _int_expr  # noqa: E402
from worker import make_data, repeat_times  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="torch")
    p.add_argument("--device", default=None)
    p.add_argument("--shape", default="2-4-1")
    p.add_argument("--m", type=_int_expr, default=2**22)
    p.add_argument("--chunk-size", type=_int_expr, default=2**20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="append the JSON lines to this file too")
    a = p.parse_args(argv)

    def emit(record):
        line = json.dumps(record)
        print(line, flush=True)
        if a.out:
            with open(a.out, "a") as f:
                f.write(line + "\n")

    from backprop_core.activations import get_activation
    from backprop_core.backends import Ready, get_backend
    from backprop_core import building, planner
    from backprop_core.initialization import initial_parameters_host

    backend = get_backend(a.backend, a.device)
    n0, n1, n2 = (int(v) for v in a.shape.split("-"))
    X, Y = make_data(n0, n2, a.m)
    params = backend.parameters_from_host(initial_parameters_host(n0, n1, n2, "xavier"), "float32")
    g = get_activation("tanh")
    results = {}

    def timed(strategy):
        out = {}

        def once():
            out.update(strategy.step(params, 1, False)[0])
            backend.synchronize(*out.values())

        seconds = statistics.median(repeat_times(once, a.repeats))
        return seconds, {k: backend.to_numpy(v) for k, v in out.items()}

    modes = {"on device": (False, None), "streamed, overlapped": (True, None),
             "streamed, synchronous copies": (True, lambda host, dtype: Ready(backend.asarray(host, dtype)))}
    for mode, (stream, upload) in modes.items():
        if upload is not None:
            backend.upload = upload  # the plain copy, for comparison
        plan = planner.Plan("streamed chunks" if stream else "chunks", chunk_size=a.chunk_size)
        Xs, Ys = (X, Y) if stream else (backend.asarray(X, "float32"), backend.asarray(Y, "float32"))
        strategy = building.build(plan, Xs, Ys, params, g, 0.1, backend, "float32")
        with strategy.running():
            seconds, out = timed(strategy)
        results[mode] = out
        emit({"backend": a.backend, "device": backend.device_name, "precision": backend.precision,
              "shape": a.shape, "m": a.m, "chunk_size": a.chunk_size, "mode": mode, "seconds": seconds,
              "examples_per_s": a.m / seconds})
    ref = results["on device"]
    for mode, out in results.items():
        for k in ref:
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-4, atol=1e-6, err_msg=f"{mode} {k}")
    emit({"backend": a.backend, "parameters_agree": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())
