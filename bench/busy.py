"""The practitioner's fits on a quiet machine and on a busy one.

    python bench/busy.py [--repeats 3] [--iterations 1000] [--cases breast-cancer,160k] [--out DIR]

Two fits as a practitioner runs them, each in a fresh interpreter (planning
and calibration included, as a first fit pays them): breast cancer (569
examples, 30 features, standardized), 32 tanh units, 1,000 full-batch
iterations; and make_classification's 160,000 examples of 20 features, the
same network and iterations.  Each runs in four conditions, interleaved
round by round: BLAS at its default, on a quiet machine and with a second
process keeping one core busy (a spinning interpreter this script starts and
stops itself); and both again with ``OPENBLAS_NUM_THREADS=1`` set by hand in
the fit's environment.  The targets (issue 32): busy within 1.5x of quiet,
and never slower than the variable set by hand.

Writes ``busy.jsonl`` (the environment, then every fit) and ``busy.md``
(medians, min-max, the ratios) into ``--out`` (default
``bench/results/<machine>-<date>``).  Never asserts speed: read the output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (name, environment added, a core kept busy)
CONDITIONS = [
    ("quiet", {}, False),
    ("busy", {}, True),
    ("quiet, OPENBLAS_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1"}, False),
    ("busy, OPENBLAS_NUM_THREADS=1", {"OPENBLAS_NUM_THREADS": "1"}, True),
]
CASES = {"breast-cancer": "breast cancer, 569 x 30", "160k": "make_classification, 160,000 x 20"}
HIDDEN_UNITS = 32
#: The targets: busy over quiet at most this; busy over the hand-set variable (busy) at most 1.
BUSY_OVER_QUIET = 1.5


# -- one fit, in a child interpreter ---------------------------------------------------------------
def _data(case):
    from sklearn.datasets import load_breast_cancer, make_classification
    from sklearn.preprocessing import StandardScaler

    if case == "breast-cancer":
        X, y = load_breast_cancer(return_X_y=True)
    else:
        X, y = make_classification(n_samples=160_000, n_features=20, random_state=0)
    return StandardScaler().fit_transform(X), y


def child(case, iterations):
    """Fit once and print what it took, as one JSON line."""
    import numpy as np
    from threadpoolctl import threadpool_info

    import backprop_core as bc

    plans = []

    class Plans(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("plan: "):  # the last one is the plan with BLAS's threads
                plans.append(record.getMessage()[len("plan: "):])

    logger = logging.getLogger("backprop_core")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Plans())
    X, y = _data(case)
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    parameters = bc.nn_model(X.T, y[np.newaxis, :].astype(np.float64), HIDDEN_UNITS, iterations)  # rows transposed
    seconds = time.perf_counter() - t0
    after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    accuracy = float(np.mean(bc.predict(parameters, X.T)[0] == y))
    print(json.dumps({"seconds": seconds, "plan": plans[-1] if plans else None, "blas_threads_before": blas,
                      "blas_threads_after": after, "load_at_start": load, "training_accuracy": accuracy}))


# -- the conductor ---------------------------------------------------------------------------------
@contextlib.contextmanager
def core_kept_busy(busy: bool):
    """A second process spinning on one core while the block runs (nothing where not ``busy``)."""
    if not busy:
        yield None
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # scheduled before the fit starts
        yield spinner.pid
    finally:
        spinner.kill()
        spinner.wait()


def run_fit(case, iterations, extra_env, busy, timeout):
    env = {**os.environ, **extra_env}
    if not extra_env:
        env.pop("OPENBLAS_NUM_THREADS", None)  # BLAS at its default
    with core_kept_busy(busy):
        out = subprocess.run([sys.executable, __file__, "--child", case, "--iterations", str(iterations)],
                             capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"the {case} fit failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def environment():
    import numpy as np
    from threadpoolctl import threadpool_info

    return {"kind": "environment", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "numpy": np.__version__, "cpu": platform.processor() or
            platform.machine(), "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "load_at_start": os.getloadavg(),
            "blas": [(i["internal_api"], i.get("version"), i["num_threads"]) for i in threadpool_info()
                     if i["user_api"] == "blas"]}


def table(records, iterations) -> str:
    fits = [r for r in records if r["kind"] == "fit"]
    lines = [f"# Fits on a quiet and on a busy machine ({HIDDEN_UNITS} tanh units, {iterations:,} full-batch "
             "iterations, planning included)", "",
             "Seconds per fit: median (min-max) over the repeats, each in a fresh interpreter, the conditions "
             "interleaved round by round. `busy`: a second process spins on one core. `OPENBLAS_NUM_THREADS=1`: "
             "the variable set by hand.", "",
             "| case | " + " | ".join(name for name, _, _ in CONDITIONS) + " | busy / quiet | busy / busy by hand |",
             "|---|" + "---|" * (len(CONDITIONS) + 2)]
    verdicts = []
    for case, label in CASES.items():
        medians, cells = {}, []
        for name, _, _ in CONDITIONS:
            seconds = [r["seconds"] for r in fits if r["case"] == case and r["condition"] == name]
            if not seconds:
                cells.append("-")
                continue
            medians[name] = statistics.median(seconds)
            cells.append(f"{medians[name]:.3g} ({min(seconds):.3g}-{max(seconds):.3g})")
        if not medians:
            continue
        over_quiet = medians["busy"] / medians["quiet"] if {"busy", "quiet"} <= set(medians) else None
        by_hand = "busy, OPENBLAS_NUM_THREADS=1"
        over_hand = medians["busy"] / medians[by_hand] if {"busy", by_hand} <= set(medians) else None
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {over_quiet:.2f}x | {over_hand:.2f}x |"
                     if over_quiet and over_hand else f"| {label} | " + " | ".join(cells) + " | - | - |")
        if over_quiet and over_hand:
            verdicts.append(f"- {label}: busy is {over_quiet:.2f}x quiet (target at most {BUSY_OVER_QUIET}x: "
                            f"{'met' if over_quiet <= BUSY_OVER_QUIET else 'NOT met'}), {over_hand:.2f}x the "
                            f"variable set by hand (target at most 1x: {'met' if over_hand <= 1.0 else 'NOT met'})")
    plans = {}
    for r in fits:
        plans.setdefault((CASES[r["case"]], r["condition"]), set()).add(r["plan"])
    lines += ["", *verdicts, "", "Plans (what the planner chose, in each condition):", ""]
    lines += [f"- {case}, {condition}: " + "; ".join(sorted(str(p) for p in ps)) for (case, condition), ps in plans.items()]
    loads = [r["load_at_start"] for r in fits]
    lines += ["", f"Load average (1 min) at each fit's start: {min(loads):.2f} to {max(loads):.2f}."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="rounds of every case in every condition (default 3)")
    p.add_argument("--iterations", type=int, default=1000, help="full-batch iterations per fit (default 1000)")
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {list(CASES)}")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one fit may take (default 900)")
    p.add_argument("--out", help="output folder (default bench/results/<machine>-<date>)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.child, a.iterations)
        return 0
    cases = a.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    out = Path(a.out or HERE / "results" / f"cpu-{dt.date.today().isoformat()}")
    out.mkdir(parents=True, exist_ok=True)
    records = [environment()]
    with open(out / "busy.jsonl", "w") as jsonl:
        jsonl.write(json.dumps(records[0]) + "\n")
        for round_ in range(a.repeats):
            for case in cases:
                for name, extra_env, busy in CONDITIONS:
                    fit = {"kind": "fit", "case": case, "condition": name, "round": round_,
                           **run_fit(case, a.iterations, extra_env, busy, a.timeout)}
                    print(f"{case:14s} {name:32s} {fit['seconds']:8.3f} s  load {fit['load_at_start']:.2f}  "
                          f"{fit['plan']}", flush=True)
                    records.append(fit)
                    jsonl.write(json.dumps(fit) + "\n")
                    jsonl.flush()
    report = table(records, a.iterations)
    (out / "busy.md").write_text(report)
    print(report)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
