"""The matrix products of a wide network's step, NumPy's BLAS beside PyTorch's.

    python bench/blas_study.py [--shape 784-512-1] [--ms 12,13,14] [--repeats 15] [--out DIR]

A full-batch step of 784-512-1 is almost all two products with the examples:
the forward ``Z1 = W1 X`` (n1 x n0 times n0 x m) and the backward
``dW1 = dZ1 X^T`` (n1 x m times m x n0), 2 n0 n1 m floating-point operations
each.  Whatever the rest of the step does, its speed is capped by how fast the
array library's BLAS multiplies these shapes.  This times both products in
float32, on one thread and on every core, with NumPy (the numpy backend's
BLAS) and with PyTorch (the BLAS of the torch peers), the two interleaved so
that a busy machine slows both alike, and reports GFLOP/s (medians).  Writes
``blas.jsonl`` and ``blas.md`` to ``--out`` if given.  Never asserts speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm: first-touch pages, BLAS buffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def products(n0: int, n1: int, m: int, rng):
    """The two products of one step as NumPy arrays: W1 (n1, n0), X (n0, m), dZ1 (n1, m)."""
    return (rng.standard_normal((n1, n0), dtype=np.float32), rng.standard_normal((n0, m), dtype=np.float32),
            rng.standard_normal((n1, m), dtype=np.float32))


def measure(n0, n1, m, threads, repeats, torch, threadpool_limits):
    W1, X, dZ1 = products(n0, n1, m, np.random.default_rng(0))
    Z1, dW1 = np.empty((n1, m), np.float32), np.empty((n1, n0), np.float32)
    tW1, tX, tdZ1 = (torch.from_numpy(a) for a in (W1, X, dZ1))
    calls = {
        ("numpy", "forward W1 X"): lambda: np.matmul(W1, X, out=Z1),
        ("numpy", "backward dZ1 X^T"): lambda: np.matmul(dZ1, X.T, out=dW1),
        ("torch", "forward W1 X"): lambda: torch.matmul(tW1, tX),
        ("torch", "backward dZ1 X^T"): lambda: torch.matmul(tdZ1, tX.T),
    }
    flops = 2 * n0 * n1 * m
    seconds = {key: [] for key in calls}
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        for _ in range(3):  # three rounds, each library in turn: load spread over both
            for key, fn in calls.items():
                seconds[key].append(_median_seconds(fn, repeats))
    return [{"library": lib, "product": product, "m": m, "threads": threads,
             "seconds": statistics.median(s), "gflops": flops / statistics.median(s) / 1e9}
            for (lib, product), s in seconds.items()]


def write_table(rows, env, out: Path) -> str:
    lines = ["# The matrix products of a 784-512-1 step: NumPy's BLAS beside PyTorch's (float32)", "",
             f"{env['cpu']} x {env['cpu_count']}, {env['date']}; numpy {env['numpy']} ({env['numpy_blas']}), "
             f"torch {env['torch']} ({env['torch_blas']}); GFLOP/s, medians.", "",
             "| m | threads | product | numpy | torch | numpy / torch |", "|---|---|---|---|---|---|"]
    for m in sorted({r["m"] for r in rows}):
        for threads in sorted({r["threads"] for r in rows}):
            for product in dict.fromkeys(r["product"] for r in rows):
                got = {r["library"]: r["gflops"] for r in rows
                       if (r["m"], r["threads"], r["product"]) == (m, threads, product)}
                lines.append(f"| 2^{m.bit_length() - 1} | {threads} | {product} | {got['numpy']:.0f} | "
                             f"{got['torch']:.0f} | {got['numpy'] / got['torch']:.2f} |")
    return write_outputs(out, "blas", env, rows, lines)


def write_outputs(out: Path | None, stem: str, env: dict, rows, lines) -> str:
    """The table's ``lines`` as text; with ``out``, also ``<stem>.jsonl`` (env, then rows) and
    ``<stem>.md`` (the table) there."""
    text = "\n".join(lines) + "\n"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / f"{stem}.jsonl", "w") as f:
            for r in (env, *rows):
                f.write(json.dumps(r) + "\n")
        (out / f"{stem}.md").write_text(text)
    return text


def study_options(doc: str, ms: str, ms_help: str) -> argparse.ArgumentParser:
    """The options of a study of one shape's step: --shape, --ms (exponents of 2), --repeats, --out."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="784-512-1")
    p.add_argument("--ms", default=ms, help=ms_help)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", default=None)
    return p


def _blas_of_numpy() -> str:
    from threadpoolctl import threadpool_info

    found = [f"{i['internal_api']} {i.get('version')} {i.get('architecture', '')}".strip()
             for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    return ", ".join(found) or "unknown"


def main(argv=None):
    a = study_options(__doc__, "12,13,14", "exponents of 2 for m").parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    from run import _cpu_model

    n0, n1, _ = (int(v) for v in a.shape.split("-"))
    cores = os.cpu_count() or 1
    rows = []
    for e in (int(v) for v in a.ms.split(",")):
        for threads in sorted({1, cores}):
            rows += measure(n0, n1, 2 ** e, threads, a.repeats, torch, threadpool_limits)
    config = torch.__config__.show()
    torch_blas = "MKL" if "BLAS_INFO=mkl" in config else "OpenBLAS" if "openblas" in config.lower() else "unknown"
    env = {"kind": "environment", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "cpu": _cpu_model(), "cpu_count": cores, "numpy": np.__version__, "numpy_blas": _blas_of_numpy(),
           "torch": torch.__version__, "torch_blas": torch_blas, "repeats": a.repeats}
    print(write_table(rows, env, Path(a.out) if a.out else None))


if __name__ == "__main__":
    sys.exit(main())
