"""bench/busy.py's fits, this tree's code against another's, interleaved: what a change did to them.

    python bench/busy_ab.py --baseline OTHER/src [--cases 160k] [--repeats 3] [--out DIR]

Each round runs every case quiet and with a core kept busy (BLAS at its
default, as ``busy.py``'s first two conditions), once with this tree's
``backprop_core`` and once with the one under ``--baseline`` (a source folder,
put first on the fits' ``PYTHONPATH``), the two codes' order alternating
from round to round, so that load from elsewhere falls on both alike.
Writes ``busy_ab.jsonl`` (every fit) and ``busy_ab.md`` (medians, the busy
over quiet ratio of each code, each round's pair) into ``--out`` (default
``bench/results/<machine>-<date>``).  ``backprop_core.backends`` lives outside
``src`` and comes, for both codes, from where the package is installed.
Never asserts speed: read the output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import busy  # noqa: E402  (the fits and the spinner are busy.py's own)

SOURCE = HERE.parent / "src"


def table(records) -> str:
    fits = [r for r in records if r["kind"] == "fit"]
    lines = ["# Busy over quiet, this code against a baseline (32 tanh units, planning included)", "",
             "Seconds per fit: median (min-max), each fit in a fresh interpreter, the codes' order alternating "
             "round by round. `busy`: a second process spins on one core.", "",
             "| case | code | quiet | busy | busy / quiet |", "|---|---|---|---|---|"]
    for case, label in busy.CASES.items():
        for code in ("baseline", "this"):
            cells = {}
            for condition in (False, True):
                seconds = [r["seconds"] for r in fits if r["case"] == case and r["code"] == code
                           and r["busy"] is condition]
                cells[condition] = seconds
            if not cells[False] or not cells[True]:
                continue
            quiet, loaded = statistics.median(cells[False]), statistics.median(cells[True])
            lines.append(f"| {label} | {code} | {quiet:.3g} ({min(cells[False]):.3g}-{max(cells[False]):.3g}) | "
                         f"{loaded:.3g} ({min(cells[True]):.3g}-{max(cells[True]):.3g}) | {loaded / quiet:.2f}x |")
    lines += ["", "Each fit, in the order run (round, code, condition: seconds, load at its start, plan):", ""]
    lines += [f"- {r['round']}, {r['code']}, {'busy' if r['busy'] else 'quiet'}: {r['seconds']:.3g} s, load "
              f"{r['load_at_start']:.2f}, {r['plan']}" for r in fits]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="the other code's source folder (holding backprop_core)")
    p.add_argument("--cases", default="160k", help=f"comma-separated, of {list(busy.CASES)} (default 160k)")
    p.add_argument("--repeats", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--iterations", type=int, default=1000, help="full-batch iterations per fit (default 1000)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds one fit may take (default 900)")
    p.add_argument("--out", help="output folder (default bench/results/<machine>-<date>)")
    a = p.parse_args(argv)
    cases = a.cases.split(",")
    unknown = [c for c in cases if c not in busy.CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(busy.CASES)}")
    baseline = Path(a.baseline).resolve()
    if not (baseline / "backprop_core" / "__init__.py").is_file():
        p.error(f"--baseline {baseline} holds no backprop_core package")
    out = Path(a.out or HERE / "results" / f"cpu-{dt.date.today().isoformat()}")
    out.mkdir(parents=True, exist_ok=True)
    codes = [("baseline", str(baseline)), ("this", str(SOURCE))]
    os.environ.pop("OPENBLAS_NUM_THREADS", None)  # BLAS at its default, as busy.py's first two conditions
    records = [busy.environment()]
    with open(out / "busy_ab.jsonl", "w") as jsonl:
        jsonl.write(json.dumps(records[0]) + "\n")
        for round_ in range(a.repeats):
            for case in cases:
                for code, path in codes if round_ % 2 == 0 else codes[::-1]:
                    for loaded in (False, True):
                        fit = {"kind": "fit", "case": case, "code": code, "busy": loaded, "round": round_,
                               **busy.run_fit(case, a.iterations, {"PYTHONPATH": path}, loaded, a.timeout)}
                        print(f"{round_} {case} {code:8s} {'busy' if loaded else 'quiet':5s} {fit['seconds']:8.3f} s  "
                              f"load {fit['load_at_start']:.2f}  {fit['plan']}", flush=True)
                        records.append(fit)
                        jsonl.write(json.dumps(fit) + "\n")
                        jsonl.flush()
    report = table(records)
    (out / "busy_ab.md").write_text(report)
    print(report)
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
