"""backprop-core beside scikit-learn's MLPClassifier: test accuracy and fit time on the same splits.

Each data set is split once (70 % train, 30 % test, stratified, random_state=0); where
marked "scaled", a StandardScaler is fitted on the training part.  Both libraries get
the same hidden layer (tanh) and, for the same-algorithm comparison, the same full-batch
gradient descent: same learning rate, same number of iterations, no momentum, no L2
penalty.  The number of iterations is chosen by 5-fold cross-validation of
backprop-core on the training part (GridSearchCV; the test part is never looked at),
except on the lecture's flower, which keeps the lecture's 10,000.  MLPClassifier also
runs with its defaults (adam) and with lbfgs, so its best setting is known; the
accuracy target is to come within one point of that best.

    python bench/vs_mlp.py --out bench/results/cpu-<date> --machine "2-core x86-64 Xeon, AVX-512, no GPU"

Fit times are the median of ``--repeats`` fits, on float64 data, BLAS left at its
default threads; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer, load_digits, make_blobs, make_circles, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

import backprop_core as bc
from backprop_core.datasets import flower
from backprop_core.estimator import LECTURE


@dataclass(frozen=True)
class Setting:
    """One data set and the network both libraries train on it.

    ``iterations``: a number, or the candidates cross-validation chooses from.
    """

    load: object
    scaled: bool
    hidden: int
    learning_rate: float
    iterations: int | tuple
    init: str = "xavier"


#: The iterations cross-validation chooses from.
CANDIDATES = (500, 1000, 2000, 5000)


def _flower():
    X, Y = flower()
    return X.T, Y[0].astype(int)


DATASETS = {
    # The lecture's own settings: 4 tanh units, learning rate 1.2, 10,000 iterations.
    "flower": Setting(_flower, False, 4, 1.2, 10_000, init="normal"),
    "moons": Setting(lambda: make_moons(1000, noise=0.2, random_state=0), False, 8, 1.0, CANDIDATES),
    "circles": Setting(lambda: make_circles(1000, noise=0.1, factor=0.5, random_state=0), False, 8, 1.0,
                       CANDIDATES),
    "blobs": Setting(lambda: make_blobs(1000, centers=4, cluster_std=1.5, random_state=0), True, 8, 1.0,
                     CANDIDATES),
    "breast_cancer": Setting(lambda: load_breast_cancer(return_X_y=True), True, 16, 0.5, CANDIDATES),
    "digits": Setting(lambda: load_digits(return_X_y=True), True, 32, 0.5, CANDIDATES),
}


LABELS = {"flower": "flower (the lecture's)", "moons": "moons", "circles": "circles",
          "blobs": "blobs, 4 classes (scaled)", "breast_cancer": "breast cancer (scaled)",
          "digits": "digits, 10 classes (scaled)"}


def split(setting: Setting):
    X, y = setting.load()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    if setting.scaled:
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return (np.ascontiguousarray(X_train, dtype=np.float64), np.ascontiguousarray(X_test, dtype=np.float64),
            y_train, y_test)


def choose_iterations(s: Setting, X_train, y_train) -> int:
    """The iterations of backprop-core that cross-validate best on the training part."""
    if isinstance(s.iterations, int):
        return s.iterations
    model = bc.BackpropClassifier(**(LECTURE | dict(hidden_units=s.hidden, learning_rate_init=s.learning_rate,
                                                    init=s.init)))
    search = GridSearchCV(model, {"max_iter": list(s.iterations)}, cv=5, n_jobs=2)
    return int(search.fit(X_train, y_train).best_params_["max_iter"])


def contenders(s: Setting, m_train: int, chosen: str = "") -> dict:
    """name -> (a fresh model, its settings in words)."""
    same_gd = dict(solver="sgd", batch_size=m_train, learning_rate="constant", learning_rate_init=s.learning_rate,
                   momentum=0.0, nesterovs_momentum=False, alpha=0.0, max_iter=s.iterations, tol=0.0,
                   n_iter_no_change=s.iterations + 1, shuffle=False)
    return {
        "backprop-core": (lambda: bc.BackpropClassifier(**(LECTURE | dict(  # the lecture's full-batch GD, tuned
            hidden_units=s.hidden, learning_rate_init=s.learning_rate, max_iter=s.iterations, init=s.init))),
            f"full-batch GD, lr {s.learning_rate}, {s.iterations} iterations{chosen}, init {s.init}"),
        "MLP full-batch GD": (lambda: MLPClassifier((s.hidden,), activation="tanh", random_state=0, **same_gd),
                              f"sgd, batch = m, lr {s.learning_rate}, no momentum, alpha 0, {s.iterations} iterations"),
        "MLP adam": (lambda: MLPClassifier((s.hidden,), activation="tanh", max_iter=2000, random_state=0),
                     "defaults (adam, batch 200, lr 1e-3, alpha 1e-4), max_iter 2000"),
        "MLP lbfgs": (lambda: MLPClassifier((s.hidden,), activation="tanh", solver="lbfgs", max_iter=2000,
                                            random_state=0), "lbfgs, alpha 1e-4, max_iter 2000"),
    }


def measure(make, X_train, y_train, X_test, y_test, repeats: int) -> dict:
    times, model = [], None
    for _ in range(repeats):
        model = make()
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_train, y_train)
        times.append(time.perf_counter() - start)
    return {"accuracy": float(model.score(X_test, y_test)), "fit_s": statistics.median(times),
            "fit_s_all": times, "n_iter": int(model.n_iter_)}


def run(datasets, repeats: int, quick: bool = False):
    records = []
    for name in datasets:
        s = DATASETS[name]
        if quick:
            s = Setting(s.load, s.scaled, s.hidden, s.learning_rate, (10, 20), s.init)
        X_train, X_test, y_train, y_test = split(s)
        s = Setting(s.load, s.scaled, s.hidden, s.learning_rate, choose_iterations(s, X_train, y_train), s.init)
        chosen = "" if name == "flower" else f" (chosen by CV from {CANDIDATES if not quick else (10, 20)})"
        for entry, (make, said) in contenders(s, len(y_train), chosen).items():
            r = measure(make, X_train, y_train, X_test, y_test, repeats)
            records.append({"kind": "fit", "dataset": LABELS[name], "entry": entry, "settings": said,
                            "hidden": s.hidden, "m_train": len(y_train), "m_test": len(y_test),
                            "features": X_train.shape[1], "classes": len(np.unique(y_train)), **r})
    return records


def table(records, machine: str, repeats: int) -> str:
    lines = ["# backprop-core beside scikit-learn's MLPClassifier", "",
             f"Machine: {machine}. {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
             f"NumPy {np.__version__}, scikit-learn {sklearn.__version__}, backprop-core {bc.__version__}; "
             f"float64; fit time is the median of {repeats} fits.", "",
             "Same splits for everyone: 70 % train / 30 % test, stratified, random_state=0; \"scaled\": a "
             "StandardScaler fitted on the training part. One hidden tanh layer of the width shown. Accuracy is "
             "on the test part. \"x faster\" compares backprop-core with MLPClassifier running the same "
             "full-batch gradient descent (same learning rate and iterations, no momentum, no L2).", "",
             "| data set | m train / test | hidden | backprop-core acc. | MLP best acc. (setting) | within 1 point "
             "| backprop-core fit | MLP same-GD fit | x faster | MLP adam fit | MLP lbfgs fit |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(r["dataset"] for r in records):
        rows = {r["entry"]: r for r in records if r["dataset"] == name}
        ours, same = rows["backprop-core"], rows["MLP full-batch GD"]
        best_entry = max((e for e in rows if e.startswith("MLP")), key=lambda e: rows[e]["accuracy"])
        best = rows[best_entry]["accuracy"]
        ok = "yes" if ours["accuracy"] >= best - 0.01 else "no"
        lines.append(
            f"| {name} | {ours['m_train']} / {ours['m_test']} | {ours['hidden']} | {100 * ours['accuracy']:.1f} % "
            f"| {100 * best:.1f} % ({best_entry.removeprefix('MLP ')}) | {ok} | {ours['fit_s'] * 1e3:.0f} ms "
            f"| {same['fit_s'] * 1e3:.0f} ms | {same['fit_s'] / ours['fit_s']:.1f} "
            f"| {rows['MLP adam']['fit_s'] * 1e3:.0f} ms ({rows['MLP adam']['n_iter']} epochs) "
            f"| {rows['MLP lbfgs']['fit_s'] * 1e3:.0f} ms |")
    lines += ["", "Settings:", ""]
    for name in dict.fromkeys(r["dataset"] for r in records):
        for r in records:
            if r["dataset"] == name:
                lines.append(f"- {name}, {r['entry']}: {r['settings']}; test accuracy "
                             f"{100 * r['accuracy']:.1f} %, fit {r['fit_s'] * 1e3:.0f} ms")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for vs_mlp.md and vs_mlp.jsonl")
    parser.add_argument("--machine", default=platform.processor() or platform.machine(),
                        help="the machine, in words, for the table's heading")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated, from: {', '.join(DATASETS)}")
    parser.add_argument("--quick", action="store_true",
                        help="10 or 20 iterations each: checks the script, not the numbers")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",")]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown data set(s) {unknown}; choose from {list(DATASETS)}")
    records = run(names, args.repeats, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "vs_mlp.jsonl", "w") as f:
        f.write(json.dumps({"kind": "environment", "machine": args.machine, "date": datetime.date.today().isoformat(),
                            "numpy": np.__version__, "sklearn": sklearn.__version__, "repeats": args.repeats}) + "\n")
        for r in records:
            f.write(json.dumps(r) + "\n")
    (args.out / "vs_mlp.md").write_text(table(records, args.machine, args.repeats))
    print((args.out / "vs_mlp.md").read_text())


if __name__ == "__main__":
    main()
