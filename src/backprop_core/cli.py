"""The ``backprop-core`` command line."""

from __future__ import annotations

import argparse
import sys
import time

from .activations import ACTIVATIONS
from .backends import BackendUnavailableError, backend_names, get_backend
from .errors import TrainingDivergedError, TrainingInterrupted

TRAIN_EXAMPLES = """examples:
  backprop-core train
  backprop-core train --hidden 20 --iterations 5000
  backprop-core train --backend torch --activation relu --lr 0.5
"""


def _positive_int(text):
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="backprop-core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on the built-in flower dataset",
                           epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--backend", default="numpy", help=f"one of {', '.join(backend_names())} (default numpy)")
    train.add_argument("--device", default=None, help="device for the backend, e.g. cpu, cuda, 0")
    train.add_argument("--hidden", type=_positive_int, default=4, help="hidden units (default 4)")
    train.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS))
    train.add_argument("--lr", type=_positive_float, default=1.2, help="learning rate (default 1.2)")
    train.add_argument("--iterations", type=_positive_int, default=10000, help="default 10000")
    train.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    train.add_argument("--dtype", choices=["float32", "float64"], default=None)
    return parser


def cmd_train(args) -> int:
    from .datasets import flower
    from .functional import nn_model, predict
    from .validation import to_backend

    X, Y = flower()
    backend = get_backend(args.backend, args.device)
    print(f"training {X.shape[0]}-{args.hidden}-{Y.shape[0]} ({args.activation}) on the flower data "
          f"(m={X.shape[1]}) with backend {backend.name} on {backend.device}")
    start = time.perf_counter()
    params = nn_model(X, Y, args.hidden, args.iterations, print_cost=True, learning_rate=args.lr,
                      activation=args.activation, seed=args.seed, backend=backend, dtype=args.dtype)
    elapsed = time.perf_counter() - start
    dtype = args.dtype or backend.default_dtype
    pred = backend.to_numpy(predict(params, to_backend(X, backend, dtype, "X"), activation=args.activation))
    accuracy = float((pred == Y).mean())
    print(f"accuracy: {100 * accuracy:.1f}%  ({elapsed:.2f} s)")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"train": cmd_train}[args.command](args)
    except (ValueError, TypeError, BackendUnavailableError, TrainingDivergedError, FileNotFoundError) as exc:
        print(f"backprop-core: error: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, TrainingInterrupted):
        print("backprop-core: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
