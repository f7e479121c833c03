"""The traced step run into preallocated buffers against the equations run array by array.

    python bench/buffered_study.py [--shapes 2-4-1,64-64-1,784-512-1] [--studies one,batch]
                                   [--cost] [--out FILE]

NumPy, float32, BLAS held to one thread, activation tanh.  Two studies, each
printed as a table of examples per second (medians, the two ways interleaved so
that a busy machine slows both alike):

1. One gradients call on a chunk of c examples, c = 2^10 .. 2^16 (the same
   chunk again and again, a strided view of a larger array):
   ``equations.gradients`` against ``buffered.BufferedGradients``.
2. A whole batch, m = 2^20 (2-4-1) or 2^18 (64-64-1), over chunks of 2^12 ..
   2^16: the equations chunk by chunk on one thread, one BufferedGradients on
   one thread, and two threads each running its own copy on alternate chunks.
   Beside it, how much a second thread gains on plain NumPy work at that moment
   (on a shared machine the second core is not always free).

Writes one JSON line per cell to ``--out`` if given.  Never asserts speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker import make_data  # noqa: E402

BATCH = {"2-4-1": 2**20, "64-64-1": 2**18}


def interleaved_rates(fns: dict, examples: int, repeats: int, budget: float) -> dict:
    """Median examples/s of each function; their repeats alternate, each about budget/repeats long."""
    calls = {}
    for name, fn in fns.items():
        fn()  # warm: buffers touched, views prepared
        t0 = time.perf_counter()
        fn()
        calls[name] = max(1, int(budget / repeats / max(time.perf_counter() - t0, 1e-9)))
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - t0) / calls[name])
    return {name: examples / statistics.median(t) for name, t in times.items()}


def second_core(repeats=5) -> float:
    """How much a second thread adds on this machine now: two threads of independent NumPy work
    (tanh of 2^21 floats, no Python in between) against one, as a rate ratio (2.0: a free core)."""
    arrays = [np.linspace(-3, 3, 2**21, dtype=np.float32) for _ in range(2)]

    def work(k):
        for _ in range(10):
            np.tanh(arrays[k], out=arrays[k])

    with ThreadPoolExecutor(2) as pool:
        ratios = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            work(0)
            one = time.perf_counter() - t0
            t0 = time.perf_counter()
            list(pool.map(work, (0, 1)))
            ratios.append(2 * one / (time.perf_counter() - t0))
    return statistics.median(ratios)


def one_call(shape, sizes, with_cost, repeats, budget):
    from backprop_core import equations
    from backprop_core.activations import ACTIVATIONS
    from backprop_core.lowering.numpy_buffers import buffered_gradients
    from backprop_core.initialization import initial_parameters_host

    n0, n1, n2 = shape
    g = ACTIVATIONS["tanh"]
    X, Y = make_data(n0, n2, 2 * max(sizes))
    params = [v.astype(np.float32) for v in initial_parameters_host(n0, n1, n2, "xavier").values()]
    for c in sizes:
        Xc, Yc = X[:, c:2 * c], Y[:, c:2 * c]
        step = buffered_gradients(n0, n1, n2, g, np.float32, c, with_cost=with_cost)
        rates = interleaved_rates({
            "equations.gradients": lambda: equations.gradients(Xc, Yc, *params, g, m=len(X[0]), with_cost=with_cost),
            "BufferedGradients": lambda: step(Xc, Yc, *params, len(X[0])),
        }, c, repeats, budget)
        yield {"study": "one call", "shape": "-".join(map(str, shape)), "c": c, **rates}


def whole_batch(shape, m, sizes, with_cost, repeats, budget):
    from backprop_core import equations
    from backprop_core.activations import ACTIVATIONS
    from backprop_core.lowering.numpy_buffers import buffered_gradients
    from backprop_core.initialization import initial_parameters_host

    n0, n1, n2 = shape
    g = ACTIVATIONS["tanh"]
    X, Y = make_data(n0, n2, m)
    params = [v.astype(np.float32) for v in initial_parameters_host(n0, n1, n2, "xavier").values()]
    with ThreadPoolExecutor(2) as pool:
        for c in sizes:
            bounds = [(a, min(a + c, m)) for a in range(0, m, c)]
            step = buffered_gradients(n0, n1, n2, g, np.float32, c, with_cost=with_cost)
            copies = (step, step.copy())

            def total(run, chunks):
                parts = [run(X[:, a:b], Y[:, a:b]) for a, b in chunks]
                return [sum(p[i] for p in parts) if parts[0][i] is not None else None for i in range(5)]

            def equations_chunks():
                return total(lambda x, y: equations.gradients(x, y, *params, g, m=m, with_cost=with_cost), bounds)

            def buffered_one():
                return total(lambda x, y: step(x, y, *params, m), bounds)

            def buffered_two():
                halves = [pool.submit(total, lambda x, y, s=s: s(x, y, *params, m), bounds[k::2])
                          for k, s in enumerate(copies)]
                a, b = (h.result() for h in halves)
                return [None if u is None else u + v for u, v in zip(a, b)]

            rates = interleaved_rates({"equations.gradients, chunks, 1 thread": equations_chunks,
                                       "BufferedGradients, 1 thread": buffered_one,
                                       "BufferedGradients, 2 threads": buffered_two}, m, repeats, budget)
            yield {"study": "whole batch", "shape": "-".join(map(str, shape)), "m": m, "c": c, **rates}


def environment() -> dict:
    from threadpoolctl import threadpool_info

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return {"date": dt.date.today().isoformat(), "cpu": cpu, "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "numpy": np.__version__,
            "blas": [(i["internal_api"], i.get("version"), i.get("architecture")) for i in threadpool_info()]}


def _table(rows, key) -> str:
    columns = [k for k in rows[0] if k not in ("study", "shape", "m", "c")]
    lines = [f"| shape | {key} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for r in rows:
        size = f"2^{int(r[key]).bit_length() - 1}"
        lines.append(f"| {r['shape']} | {size} | " + " | ".join(f"{r[c] / 1e6:.3g} M/s" for c in columns) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="2-4-1,64-64-1,784-512-1")
    p.add_argument("--min-log2", type=int, default=10)
    p.add_argument("--max-log2", type=int, default=16)
    p.add_argument("--studies", default="one,batch", help="which of one (call) and batch to run")
    p.add_argument("--cost", action="store_true", help="compute the cost too")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget", type=float, default=1.5, help="seconds per way and cell")
    p.add_argument("--out", type=Path, default=None, help="JSON lines file to append to")
    args = p.parse_args(argv)

    from threadpoolctl import threadpool_limits

    env = environment()
    print(f"{env['cpu']} ({env['cpus']} CPUs, load average {env['load_average'][0]:.1f} at the start), "
          f"NumPy {env['numpy']}, BLAS {env['blas']}, {env['date']}, float32, tanh, "
          f"cost {'on' if args.cost else 'off'}, BLAS on one thread\n")
    shapes = [tuple(int(n) for n in s.split("-")) for s in args.shapes.split(",")]
    sizes = [2**k for k in range(args.min_log2, args.max_log2 + 1)]
    records = []
    with threadpool_limits(1):
        for shape in shapes if "one" in args.studies else ():
            rows = list(one_call(shape, sizes, args.cost, args.repeats, args.budget))
            print(_table(rows, "c"), "\n", flush=True)
            records += rows
        for shape in shapes if "batch" in args.studies else ():
            name = "-".join(map(str, shape))
            if name in BATCH:
                chunk_sizes = [c for c in sizes if c >= 2**12]
                before = second_core()
                rows = list(whole_batch(shape, BATCH[name], chunk_sizes, args.cost, args.repeats, args.budget))
                after = second_core()
                rows = [{**r, "second_core_before": before, "second_core_after": after} for r in rows]
                print(f"m = {BATCH[name]}; two threads of plain NumPy work ran {before:.2f}x one thread's "
                      f"rate before, {after:.2f}x after (2.00x: a free second core)\n"
                      + _table([{k: v for k, v in r.items() if not k.startswith("second")} for r in rows], "c"),
                      "\n", flush=True)
                records += rows
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.out:
        with args.out.open("a") as f:
            for r in records:
                f.write(json.dumps({**r, **env, "cost": args.cost}) + "\n")


if __name__ == "__main__":
    main()
