"""The estimator's defaults, beside scikit-learn's MLPClassifier() with its defaults.

On six data sets (iris, wine, breast cancer, digits, moons 10k, a 200k x 20
make_classification), 5-fold stratified cross-validation (shuffled, random_state=0) of
``Pipeline(StandardScaler(), clf)`` for each estimator, in one run, one after the other
on the same folds:

- ``MLPClassifier()``: scikit-learn's defaults (random_state=0 for repeatability);
- ``BackpropClassifier()``: the estimator's defaults (``PRACTITIONER`` names them): 100 relu
  units, Adam at 0.001, L2 1e-4, mini-batches of min(200, m), at most 200 epochs, stopping
  when the training cost has not fallen by 1e-4 for more than 10 epochs (MLPClassifier's
  rule), xavier start;
- ``BackpropClassifier(**LECTURE)``: the lecture's network, for reference (4 tanh units,
  gradient descent at 1.2, 10,000 full-batch iterations); ``--quick`` and the large sets
  leave it out (``--lecture`` puts it back).

The table gives the mean test accuracy, the mean out-of-fold log loss and the total fit
seconds (cross_validate's fit_time, summed over the folds).  The target: the defaults
within one point of MLPClassifier() on every set, in no more time.

    python bench/defaults.py --out bench/results/cpu-<date> --machine "2-core x86-64 Xeon, no GPU"
    python bench/defaults.py --quick --out /tmp/defaults     # iris and wine only

Fit times are wall-clock seconds on float64 data with BLAS at its default threads; the
load average at the start and at the end is recorded beside them (a shared machine's
times are noisy: compare the two columns of one run only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine, make_classification, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold, cross_validate
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import backprop_core as bc
from backprop_core.estimator import LECTURE, PRACTITIONER

#: name -> a function returning (X, y)
DATASETS = {
    "iris": lambda: load_iris(return_X_y=True),
    "wine": lambda: load_wine(return_X_y=True),
    "breast cancer": lambda: load_breast_cancer(return_X_y=True),
    "digits": lambda: load_digits(return_X_y=True),
    "moons 10k": lambda: make_moons(10_000, noise=0.2, random_state=0),
    "classification 200k x 20": lambda: make_classification(200_000, n_features=20, n_informative=10,
                                                            random_state=0),
}
QUICK = ("iris", "wine")
SMALL = ("iris", "wine", "breast cancer", "digits")

ESTIMATORS = {
    "MLPClassifier()": lambda: MLPClassifier(random_state=0),
    "BackpropClassifier()": lambda: bc.BackpropClassifier(),
    "BackpropClassifier(**LECTURE)": lambda: bc.BackpropClassifier(**LECTURE),
}
PEER, OURS, COURSE = ESTIMATORS


def evaluate(name: str, make, X, y) -> dict:
    """5-fold CV of Pipeline(StandardScaler, clf): accuracy, log loss, fit seconds."""
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    with warnings.catch_warnings():
        # max_iter reached: part of either default (MLP's and ours give the same warning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = cross_validate(make_pipeline(StandardScaler(), make()), X, y, cv=cv,
                                scoring=("accuracy", "neg_log_loss"))
    return {"estimator": name, "accuracy": float(np.mean(result["test_accuracy"])),
            "accuracy_folds": [float(a) for a in result["test_accuracy"]],
            "log_loss": float(-np.mean(result["test_neg_log_loss"])),
            "fit_seconds": float(np.sum(result["fit_time"]))}


def table(rows: list, names: list) -> str:
    head = "| data set | m | " + " | ".join(f"{n}: accuracy % / log loss / fit s" for n in names) + " | within 1 point | no slower |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    for data in dict.fromkeys(r["data"] for r in rows):
        found = {r["estimator"]: r for r in rows if r["data"] == data}
        cells = [f"{100 * r['accuracy']:.2f} / {r['log_loss']:.4f} / {r['fit_seconds']:.2f}" if r else "-"
                 for r in (found.get(n) for n in names)]
        peer, ours = found.get(PEER), found.get(OURS)
        close = "yes" if 100 * (peer["accuracy"] - ours["accuracy"]) <= 1.0 else "no"
        faster = "yes" if ours["fit_seconds"] <= peer["fit_seconds"] else "no"
        lines.append(f"| {data} | {found[PEER]['m']:,} | " + " | ".join(cells) + f" | {close} | {faster} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for defaults.md and defaults.jsonl (default: "
                        "bench/results/<machine>-<date>)")
    parser.add_argument("--machine", default=None, help="the machine, in words, for the record")
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--datasets", default=None, help="comma-separated names (default: all six)")
    parser.add_argument("--blas-threads", type=int, default=None, metavar="N",
                        help="limit BLAS to N threads for the whole run, both estimators alike (threadpoolctl); "
                        "default: each library's own")
    parser.add_argument("--lecture", action="store_true", help="also the lecture's network (LECTURE) on "
                        "the large sets")
    args = parser.parse_args(argv)
    names = QUICK if args.quick else tuple(args.datasets.split(",")) if args.datasets else tuple(DATASETS)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; known: {list(DATASETS)}")
    machine = args.machine or platform.node()
    out = args.out or Path(__file__).parent / "results" / f"{machine}-{datetime.date.today()}"
    out.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.blas_threads, user_api="blas")  # for the whole run: never restored
    rows = []
    for data in names:
        X, y = DATASETS[data]()
        estimators = [PEER, OURS] + ([COURSE] if args.lecture or data in SMALL and not args.quick else [])
        for name in estimators:
            row = evaluate(name, ESTIMATORS[name], X, y) | {"data": data, "m": int(X.shape[0]),
                                                             "features": int(X.shape[1])}
            rows.append(row)
            print(f"{data:>26} {name:>36}: {100 * row['accuracy']:6.2f}%  log loss {row['log_loss']:.4f}  "
                  f"fit {row['fit_seconds']:8.2f} s", flush=True)
    load_end = os.getloadavg()
    shown = [PEER, OURS] + ([COURSE] if any(r["estimator"] == COURSE for r in rows) else [])
    text = table(rows, shown)
    meta = {"machine": machine, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(), "numpy": np.__version__, "sklearn": sklearn.__version__,
            "backprop_core": bc.__version__ if hasattr(bc, "__version__") else None, "cpus": os.cpu_count(),
            "load_average_start": load_start, "load_average_end": load_end, "defaults": PRACTITIONER,
            "lecture": LECTURE,
            "blas_threads": args.blas_threads}
    (out / "defaults.jsonl").write_text("".join(json.dumps(r | {"meta": meta}) + "\n" for r in rows))
    (out / "defaults.md").write_text(
        f"# Defaults beside MLPClassifier()\n\nbench/defaults.py, {meta['date']}, {machine} ({os.cpu_count()} CPUs), "
        f"load average {load_start[0]:.1f} at the start and {load_end[0]:.1f} at the end; scikit-learn "
        f"{sklearn.__version__}, NumPy {np.__version__}; BLAS threads: "
        f"{'each library' + chr(39) + 's own' if args.blas_threads is None else args.blas_threads}.  5-fold CV of Pipeline(StandardScaler(), clf); "
        f"accuracy % / out-of-fold log loss / fit seconds summed over the folds.\n\n"
        f"BackpropClassifier()'s defaults (PRACTITIONER) = {PRACTITIONER}\n\nLECTURE = {LECTURE}\n\n{text}\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
