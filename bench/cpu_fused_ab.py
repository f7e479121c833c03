"""The fused CPU step against the numpy plan it replaces, timed in turns in one process.

    python bench/cpu_fused_ab.py --shape 2-4-1 --m 2**16,2**21 --dtype float32 --rounds 7

For each m: the planner's plan without the lowering targets (today's numpy plan,
``BACKPROP_CORE_CPU_FUSED=0``), and the fused CPU step on 1 and on every core,
with and without the cost, each timed for about 0.2 s per round, the entries in
turns so a neighbour's burst slows all of them alike; the median round counts.
Prints one JSON line per m and a markdown table; ``uptime``'s load goes with it; then, for
2-4-1 float32, issue 29's targets and whether this run meets them.

``--lever`` adds the fused step built without one of its levers, timed in the same turns, so the
ratio of each lever is measured on the same machine at the same moment (all cores):

    python bench/cpu_fused_ab.py --m 2**21 --lever flags,math --rounds 9

* ``flags``: without ``-fno-trapping-math``;
* ``math``: float32 calling libmvec's expf, tanhf, logf and log1pf instead of the written-out ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from unittest import mock

import numpy as np


def _int_expr(text: str) -> int:
    base, _, power = text.partition("**")
    return int(base) ** int(power) if power else int(base)


#: Issue 29's targets for 2-4-1 float32 (examples/s of the fused step without the cost, on every core).
TARGET_M = 2**21
TARGET_RATE = 600e6
TARGET_OF_PLAN = 2.5
PLAN_OF_2026_11_28 = 231e6  # the numpy plan of the committed run the issue measures against
TARGET_SMALL_M, TARGET_SMALL_RATIO = 2**16, 2.0  # against the numpy plan of the same run


def _without(lever, source, dtype):
    """(text, flags) of the fused step built without ``lever``."""
    from backprop_core.lowering import cpu_fused
    from backprop_core.lowering.cpu_source import MATH_FLOAT32

    if lever == "flags":
        return source.text, tuple(f for f in cpu_fused.FLAGS if f != "-fno-trapping-math")
    if dtype != "float32":
        raise SystemExit(f"--lever {lever} concerns float32 only")
    return source.text.replace(MATH_FLOAT32, ""), cpu_fused.FLAGS


def _verdicts(rows, cores):
    """Issue 29's targets, each with what this run measured and whether it meets it."""
    name = f"cpu-fused, {cores} thread(s)"
    lines = []
    for row in rows:
        if row["shape"] != "2-4-1" or row["dtype"] != "float32":
            continue
        fused, plan = row[name], row["numpy plan"]
        if row["m"] == TARGET_M:
            bar = max(TARGET_RATE, TARGET_OF_PLAN * PLAN_OF_2026_11_28)
            lines.append(f"target, m = 2^21: the fused step without the cost at least {TARGET_RATE / 1e6:.0f} M/s and "
                         f"{TARGET_OF_PLAN}x the numpy plan of 2026-11-28 ({PLAN_OF_2026_11_28 / 1e6:.0f} M/s), so at "
                         f"least {bar / 1e6:.0f} M/s: {fused / 1e6:.0f} M/s, {fused / PLAN_OF_2026_11_28:.2f}x that "
                         f"plan, {fused / plan:.2f}x this run's: {'met' if fused >= bar else 'NOT met'}")
        if row["m"] == TARGET_SMALL_M:
            lines.append(f"target, m = 2^16: the fused step without the cost at least {TARGET_SMALL_RATIO}x this run's "
                         f"numpy plan ({plan / 1e6:.0f} M/s): {fused / 1e6:.0f} M/s, {fused / plan:.2f}x: "
                         f"{'met' if fused >= TARGET_SMALL_RATIO * plan else 'NOT met'}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="2-4-1")
    parser.add_argument("--m", default="2**16,2**21", help="comma-separated batch sizes")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lever", default="", help="comma-separated: flags, math (see above)")
    args = parser.parse_args(argv)
    levers = [lever for lever in args.lever.split(",") if lever]
    for lever in levers:
        if lever not in ("flags", "math"):
            parser.error(f"--lever: no lever {lever!r} (flags, math)")

    from backprop_core import building, planner
    from backprop_core.activations import get_activation
    from backprop_core.backends import get_backend
    from backprop_core.backends._base import cpu_cores
    from backprop_core.initialization import initial_parameters_host
    from backprop_core.lowering import cpu_fused

    n0, n1, n2 = (int(n) for n in args.shape.split("-"))
    g, backend = get_activation("tanh"), get_backend("numpy")
    rows = []
    for m in (_int_expr(text) for text in args.m.split(",")):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((n0, m)).astype(args.dtype)
        Y = (rng.random((n2, m)) > 0.5).astype(args.dtype)
        params = {k: v.astype(args.dtype) for k, v in initial_parameters_host(n0, n1, n2, "xavier", 0).items()}
        with mock.patch.dict(os.environ, {cpu_fused.ENVIRONMENT: "0"}):
            today = planner.plan(backend, (n0, n1, n2, m), args.dtype, g)
        strategy = building.build(today, X, Y, params, g, 0.01, backend, args.dtype)
        entries = {"numpy plan": lambda with_cost: strategy.step(params, 0, with_cost)}
        for threads in sorted({1, cpu_cores()}):
            step = cpu_fused.compile((n0, n1, n2), g, args.dtype, 0.01, threads=threads)
            Xt, Yt = step.prepare(X), step.prepare(Y)
            entries[f"cpu-fused, {threads} thread(s)"] = (
                lambda step, Xt, Yt: lambda with_cost: step(params, Xt, Yt, with_cost))(step, Xt, Yt)
        for lever in levers:  # on every core, as the target is
            text, flags = _without(lever, step.source, args.dtype)
            other = cpu_fused.CpuFusedStep(n0, n1, n2, g, 0.01, args.dtype, threads=cpu_cores(), text=text, flags=flags)
            entries[f"cpu-fused, {cpu_cores()} thread(s), without {lever}"] = (
                lambda other: lambda with_cost: other(params, Xt, Yt, with_cost))(other)
        rates = {(name, cost): [] for name in entries for cost in (False, True)}
        for name, f in entries.items():  # warm the fused steps first: their pool's threads start here, with
            if name != "numpy plan":     # every core, not pinned beside a worker process as running() pins us
                f(False), f(True)
        with strategy.running():
            entries["numpy plan"](False), entries["numpy plan"](True)  # warm: buffers, workers
            for _ in range(args.rounds):
                for (name, cost) in rates:
                    calls, t0 = 0, time.perf_counter()
                    while time.perf_counter() - t0 < 0.2:
                        entries[name](cost)
                        calls += 1
                    rates[(name, cost)].append(calls * m / (time.perf_counter() - t0))
        row = {"shape": args.shape, "m": m, "dtype": args.dtype, "today": str(today), "load": os.getloadavg(),
               **{f"{name}{' with cost' if cost else ''}": statistics.median(r) for (name, cost), r in rates.items()}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    names = [k for k in rows[0] if k not in ("shape", "m", "dtype", "today", "load")]
    print("\n| m | " + " | ".join(names) + " | load |")
    print("|---|" + "---|" * (len(names) + 1))
    for row in rows:
        print(f"| 2^{row['m'].bit_length() - 1} | " + " | ".join(f"{row[k] / 1e6:.0f} M/s" for k in names)
              + f" | {row['load'][0]:.1f} |")
    verdicts = _verdicts(rows, cpu_cores())
    if verdicts:
        print()
        print("\n".join(verdicts))


if __name__ == "__main__":
    main()
