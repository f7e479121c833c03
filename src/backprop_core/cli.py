"""backprop-core: train, sweep, predict and list backends from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from .activations import ACTIVATIONS
from .backends import backend_names, make_backend
from .errors import BackpropCoreError

EXAMPLES = {
    "train": """examples:
  backprop-core train                                   # the lecture: flower, 4 tanh units
  backprop-core train --dataset noisy_moons --hidden 8 --plot moons.png
  backprop-core train --data mine.csv --target label --save model.npz --json
  backprop-core train --backend torch --activation relu --lr 0.5
  backprop-core train --dataset noisy_moons --m 1000000 --chunk-size 65536 --iterations 200
  backprop-core train --batch-size 64 --epochs 300 --lr 0.5""",
    "sweep": """examples:
  backprop-core sweep                                   # 1, 2, 3, 4, 5, 20, 50 units on the flower
  backprop-core sweep --hidden 1 4 20 --plot sweep.png""",
    "predict": """examples:
  backprop-core predict model.npz --data new.csv
  backprop-core predict model.npz --data new.npy --proba --output predictions.csv""",
    "backends": """examples:
  backprop-core backends""",
}


class UserError(BackpropCoreError):
    """A mistake in what the user asked for: one line, no traceback."""


def _positive(kind, what):
    """An argparse type: ``kind(text)`` that must be > 0."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a positive {what}, got {text}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be a positive {what}, got {text}")
        return value

    return parse


_positive_int = _positive(int, "integer")
_positive_float = _positive(float, "number")


def _add_model_options(p):
    p.add_argument("--backend", default="numpy", help=f"one of {', '.join(backend_names())} (default numpy)")
    p.add_argument("--device", default=None, help="device for the backend, e.g. cpu, cuda, 0")
    p.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS))
    p.add_argument("--lr", type=_positive_float, default=1.2, help="learning rate (default 1.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None)


def _add_data_options(p):
    from .datasets import DATASETS

    p.add_argument("--dataset", default="flower", choices=sorted(DATASETS), help="built-in data (default flower)")
    p.add_argument("--m", type=_positive_int, default=None, help="points in the built-in dataset")
    p.add_argument("--data-seed", type=int, default=None, help="seed of the built-in dataset")
    p.add_argument("--data", default=None, help="your own data: .csv, .npy or .npz (overrides --dataset)")
    p.add_argument("--target", default=None, help="label column of a CSV: its name, or index")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop-core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    train = sub.add_parser("train", help="train one network and report", epilog=EXAMPLES["train"], formatter_class=fmt)
    _add_data_options(train)
    _add_model_options(train)
    train.add_argument("--hidden", type=_positive_int, default=4, help="hidden units (default 4)")
    train.add_argument("--iterations", type=_positive_int, default=10000, help="default 10000")
    train.add_argument("--batch-size", type=_positive_int, default=None,
                       help="mini-batch gradient descent with this batch size (default: full batch)")
    train.add_argument("--epochs", type=_positive_int, default=None, help="passes over the data with --batch-size (default 10)")
    train.add_argument("--chunk-size", type=_positive_int, default=None,
                       help="compute each full-batch step over chunks of this many examples (default: automatic)")
    train.add_argument("--workers", type=_positive_int, default=None, help="threads sharing the chunks (default: cores)")
    train.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    train.add_argument("--save", default=None, help="write the trained model here (.npz)")
    train.add_argument("--plot", default=None, help="write the cost curve (and decision boundary) here (.png)")
    train.add_argument("--json", action="store_true", help="print the summary as JSON")

    sweep = sub.add_parser("sweep", help="one model per hidden-layer size", epilog=EXAMPLES["sweep"], formatter_class=fmt)
    _add_data_options(sweep)
    _add_model_options(sweep)
    sweep.add_argument("--hidden", type=_positive_int, nargs="+", default=[1, 2, 3, 4, 5, 20, 50])
    sweep.add_argument("--iterations", type=_positive_int, default=5000, help="default 5000")
    sweep.add_argument("--plot", default=None, help="write the grid of decision boundaries here (.png)")
    sweep.add_argument("--json", action="store_true")

    predict = sub.add_parser("predict", help="predict with a saved model", epilog=EXAMPLES["predict"], formatter_class=fmt)
    predict.add_argument("model", help="a model saved by train --save")
    predict.add_argument("--data", required=True, help=".csv, .npy or .npz of features")
    predict.add_argument("--target", default=None, help="a label column to drop from a CSV (and score against)")
    predict.add_argument("--proba", action="store_true", help="also write probabilities")
    predict.add_argument("--output", default=None, help="CSV to write (default: standard output)")

    sub.add_parser("backends", help="list backends and whether they run here", epilog=EXAMPLES["backends"],
                   formatter_class=fmt)
    return parser


def _load_data(args, need_labels=True):
    from . import datasets
    from .data_io import load_table

    if args.data:
        X, y = load_table(args.data, args.target)
        if need_labels and y is None:
            raise UserError(f"{args.data} has no labels: name the label column with --target")
        return X, y, args.data
    kwargs = {}
    if args.m is not None:
        kwargs["m"] = args.m
    if args.data_seed is not None:
        kwargs["seed"] = args.data_seed
    X, Y = datasets.DATASETS[args.dataset](**kwargs)
    return X.T, Y[0], args.dataset


class _Progress:
    """A tqdm bar with the cost on a terminal; the lecture's cost lines otherwise; nothing when quiet."""

    def __init__(self, total, quiet, every=1000):
        self.bar, self.quiet, self.every = None, quiet, every
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="it", file=sys.stderr, leave=False)
            except ImportError:
                pass

    def __call__(self, iteration, cost):
        if self.bar is not None:
            self.bar.update(iteration - self.bar.n)
            self.bar.set_postfix(cost=f"{cost:.4f}")
        elif not self.quiet and iteration % self.every == 0:
            print(f"Cost after iteration {iteration}: {cost:f}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _model(args, hidden, iterations):
    from .estimator import BackpropClassifier

    extra = {}
    for option in ("batch_size", "epochs", "chunk_size", "workers"):
        if getattr(args, option, None) is not None:
            extra[option] = getattr(args, option)
    return BackpropClassifier(hidden_units=hidden, activation=args.activation, learning_rate=args.lr,
                              num_iterations=iterations, backend=args.backend, device=args.device,
                              dtype=args.dtype, seed=args.seed, cost_every=100, **extra)


def cmd_train(args) -> int:
    X, y, source = _load_data(args)
    model = _model(args, args.hidden, args.iterations)
    n2 = 1 if y.ndim == 1 else y.shape[1]
    if not args.quiet and not args.json:
        print(f"training {X.shape[1]}-{args.hidden}-{n2} ({args.activation}) on {source} (m={X.shape[0]}) "
              f"with backend {args.backend}", flush=True)
    total = args.iterations if args.batch_size is None else (args.epochs or 10) * -(-X.shape[0] // args.batch_size)
    progress = _Progress(total, args.quiet or args.json)
    start = time.perf_counter()
    try:
        model.fit(X, y, callback=progress)
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    summary = {"data": source, "m": X.shape[0], "features": X.shape[1], "hidden": args.hidden,
               "activation": args.activation, "learning_rate": args.lr, "iterations": model.n_iter_,
               "accuracy": model.score(X, y), "final_cost": model.cost_history_[-1][1],
               "seconds": elapsed, "examples_per_second": X.shape[0] * model.n_iter_ / elapsed,
               "backend": args.backend, "device": str(model.backend_.device), "dtype": model.dtype_}
    if args.save:
        model.save(args.save)
        summary["saved"] = args.save
    if args.plot:
        _plot_training(model, X, y, args.plot)
        summary["plot"] = args.plot
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"accuracy: {100 * summary['accuracy']:.1f}%  final cost {summary['final_cost']:.4f}  "
              f"{elapsed:.2f} s  {summary['examples_per_second']:,.0f} examples/s  "
              f"({summary['backend']} on {summary['device']}, {summary['dtype']})")
    return 0


def _plot_training(model, X, y, path):
    from .plotting import pyplot, plot_cost_history, plot_decision_boundary

    plt = pyplot()
    two_d = X.shape[1] == 2 and y.ndim == 1
    fig, axes = plt.subplots(1, 2 if two_d else 1, figsize=(11 if two_d else 5.5, 4.5), squeeze=False)
    plot_cost_history(model.cost_history_, axes[0][0])
    if two_d:
        plot_decision_boundary(model, X, y, axes[0][1])
        axes[0][1].set_title(f"decision boundary, {model.hidden_units} hidden units "
                             f"({100 * model.score(X, y):.1f}%)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_sweep(args) -> int:
    X, y, source = _load_data(args)
    rows = []
    models = []
    if not args.json:
        print(f"{'hidden units':>12}  {'accuracy':>8}  {'seconds':>7}")
    for h in args.hidden:
        start = time.perf_counter()
        model = _model(args, h, args.iterations).fit(X, y)
        rows.append({"hidden": h, "accuracy": model.score(X, y), "seconds": time.perf_counter() - start})
        models.append(model)
        if not args.json:
            print(f"{h:>12}  {100 * rows[-1]['accuracy']:>7.1f}%  {rows[-1]['seconds']:>7.2f}", flush=True)
    if args.plot:
        if X.shape[1] != 2:
            raise UserError("--plot draws decision boundaries, which needs two features")
        from .plotting import pyplot, plot_decision_boundary

        plt = pyplot()
        cols = min(4, len(models))
        rows_n = -(-len(models) // cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.6 * rows_n), squeeze=False)
        for ax, model, row in zip(axes.flat, models, rows):
            plot_decision_boundary(model, X, y, ax)
            ax.set_title(f"{row['hidden']} hidden units: {100 * row['accuracy']:.1f}%")
        for ax in list(axes.flat)[len(models):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=90)
        plt.close(fig)
    if args.json:
        print(json.dumps({"data": source, "results": rows}))
    return 0


def cmd_predict(args) -> int:
    from .data_io import load_table
    from .estimator import BackpropClassifier

    model = BackpropClassifier.load(args.model, backend="numpy")
    X, y = load_table(args.data, args.target)
    labels = model.predict(X)
    columns = [labels.reshape(len(X), -1)]
    names = ["prediction"] if labels.ndim == 1 else [f"prediction_{i}" for i in range(labels.shape[1])]
    if args.proba:
        P = model.predict_proba(X)
        P = P[:, 1:] if labels.ndim == 1 else P
        columns.append(P)
        names += ["probability"] if labels.ndim == 1 else [f"probability_{i}" for i in range(P.shape[1])]
    n_labels = columns[0].shape[1]
    table = np.hstack(columns)
    out = open(args.output, "w") if args.output else sys.stdout
    try:
        out.write(",".join(names) + "\n")
        for row in table:
            cells = [str(int(v)) for v in row[:n_labels]] + [f"{v:.6g}" for v in row[n_labels:]]
            out.write(",".join(cells) + "\n")
    finally:
        if args.output:
            out.close()
    if y is not None:
        print(f"accuracy: {100 * model.score(X, y):.1f}%", file=sys.stderr)
    return 0


def cmd_backends(args) -> int:
    print(f"{'backend':<18} {'usable':<7} {'version':<12} devices / reason")
    for name in backend_names():
        backend = make_backend(name)
        ok, reason = backend.availability()
        version = backend.version() if ok else "-"
        where = ", ".join(backend.devices()) if ok else reason
        print(f"{name:<18} {'yes' if ok else 'no':<7} {version:<12} {where}")
    return 0


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "predict": cmd_predict, "backends": cmd_backends}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:  # TrainingInterrupted too
        print("backprop-core: interrupted", file=sys.stderr)
        return 130
    except (BackpropCoreError, OSError) as exc:  # the user's mistakes and the system's refusals; a bug gets a traceback
        print(f"backprop-core: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
