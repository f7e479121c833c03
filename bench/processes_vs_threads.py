"""Worker processes against threads, measured fairly: BLAS on one thread per worker in both.

    python bench/processes_vs_threads.py [--shapes 2-4-1,64-64-1,784-512-1] [--samples 15] [--out DIR]

For each shape and m, the chunked numpy step (buffered executor, float32) on
one thread, on two threads and on two processes (the calling one and a
worker), each at the chunk size the planner's calibration finds best for it,
timed step by step with the three interleaved (a burst of load falls on all
alike; :func:`backprop_core.measuring.time_interleaved`).  The question
(issue 32): do processes win by 15% or more anywhere that matters?  Writes
``processes.jsonl`` and ``processes.md`` into ``--out`` (default
``bench/results/<machine>-<date>``).  Never asserts speed: read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
from functools import partial
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: m by shape: the bench's shapes, from where chunks begin to where a step takes about 0.1 s.
MS = {"2-4-1": [2 ** 14, 2 ** 16, 2 ** 18, 2 ** 20], "64-64-1": [2 ** 12, 2 ** 14, 2 ** 16, 2 ** 18],
      "784-512-1": [2 ** 10, 2 ** 12, 2 ** 14]}


def measure(shape: str, m: int, samples: int, dtype="float32") -> dict:
    from backprop_core import building, calibrations, measuring, planner
    from backprop_core.activations import get_activation
    from backprop_core.backends import get_backend
    from backprop_core.initialization import initial_parameters_host

    n0, n1, n2 = (int(n) for n in shape.split("-"))
    numpy, g = get_backend("numpy"), get_activation("tanh")
    rates = {(c, w, "threads"): r for (c, w), r in calibrations.calibration(numpy, n0, n1, n2, g, dtype).items()}
    processes = calibrations.process_calibration(numpy, n0, n1, n2, g, dtype)
    rates.update({(c, w, "processes"): r for (c, w), r in processes.rates.items()})
    kinds = {}  # the calibration's best chunk size for each way of running, by its predicted step
    for key in rates:
        c, w, how = key
        if c * w <= m:
            seconds = planner.step_seconds(key, rates[key], m, processes.step_s)
            if (w, how) not in kinds or seconds < kinds[(w, how)][1]:
                kinds[(w, how)] = (c, seconds)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n0, m)).astype(dtype)
    Y = (rng.random((n2, m)) > 0.5).astype(dtype)
    params = numpy.parameters_from_host(initial_parameters_host(n0, n1, n2, "xavier", 0), dtype)
    steps = {}
    with contextlib.ExitStack() as alive:
        # Threads first: their pools start before the processes pin the calling thread to a core.
        for (w, how), (c, _) in sorted(kinds.items(), key=lambda kv: kv[0][1] == "processes"):
            p = planner.Plan("chunks", executor="buffered", chunk_size=c, workers=w, parallel=how, blas_threads=1)
            strategy = building.build(p, X, Y, params, g, 0.1, numpy, dtype)
            alive.enter_context(strategy.running())
            step = partial(strategy.step, params, 1, False)
            step()
            steps[f"{w} {how}, chunks of {c:,}"] = step
        measured = measuring.time_interleaved(steps, rounds=samples, max_rounds=samples)
    record = {"shape": shape, "m": m, "dtype": dtype, "load": os.getloadavg()[0],
              "entries": {k: {"median_s": t.median, "spread": t.spread, "samples": list(t.samples)}
                          for k, t in measured.items()}}
    threads = min(t.median for k, t in measured.items() if "threads" in k)
    procs = [t.median for k, t in measured.items() if "processes" in k]
    record["processes_over_threads"] = min(procs) / threads if procs else None
    return record


def table(records) -> str:
    lines = ["# Worker processes against threads, BLAS on one thread per worker in both", "",
             "Median seconds per step (float32, buffered executor), the ways of running interleaved; each at the "
             "chunk size the calibration finds best for it. `processes / threads`: the processes' median over "
             "the best threads' (below 0.85: processes win by 15% or more).", "",
             "| shape | m | one thread | two threads | two processes | processes / threads | load |",
             "|---|---|---|---|---|---|---|"]
    for r in records:
        cells = []
        for want in ("1 threads", "2 threads", "2 processes"):
            found = [(k, e) for k, e in r["entries"].items() if k.startswith(want)]
            cells.append(" ".join(f"{1e3 * e['median_s']:.3g} ms ({k.split(', ')[1]}, spread {e['spread']:.0%})"
                                  for k, e in found) or "-")
        ratio = r["processes_over_threads"]
        tail = f" | {ratio:.2f} | {r['load']:.1f} |" if ratio else f" | - | {r['load']:.1f} |"
        lines.append(f"| {r['shape']} | 2^{r['m'].bit_length() - 1} | " + " | ".join(cells) + tail)
    wins = [r for r in records if r["processes_over_threads"] and r["processes_over_threads"] <= 0.85]
    lines += ["", f"Processes win by 15% or more at {len(wins)} of {len(records)} points"
              + (": " + ", ".join(f"{r['shape']} at 2^{r['m'].bit_length() - 1}" for r in wins) if wins else ".")]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(MS), help=f"comma-separated, of {list(MS)}")
    p.add_argument("--samples", type=int, default=15, help="timed steps of each way of running (default 15)")
    p.add_argument("--out", help="output folder (default bench/results/<machine>-<date>)")
    a = p.parse_args(argv)
    out = Path(a.out or HERE / "results" / f"cpu-{dt.date.today().isoformat()}")
    out.mkdir(parents=True, exist_ok=True)
    records = []
    with open(out / "processes.jsonl", "w") as jsonl:
        for shape in a.shapes.split(","):
            for m in MS[shape]:
                r = measure(shape, m, a.samples)
                records.append(r)
                jsonl.write(json.dumps(r) + "\n")
                jsonl.flush()
                print(shape, m, {k: f"{1e3 * e['median_s']:.3g} ms" for k, e in r["entries"].items()},
                      f"processes/threads {r['processes_over_threads']}", f"load {r['load']:.1f}", flush=True)
    report = table(records)
    (out / "processes.md").write_text(report)
    print(report)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
