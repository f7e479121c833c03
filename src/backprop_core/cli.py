"""backprop-core: train, sweep, predict and list backends from the command line."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .activations import ACTIVATIONS
from .backends import backend_names, get_backend, make_backend
from .data_io import PLAIN_NUMBER
from .errors import (BackpropCoreError, DeviceMemoryError, DistributedTrainingError, FeatureScaleWarning,
                     TrainingDivergedError)
from .errors import TrainingInterrupted
from .execution import Execution, execution_context
from .termination import signal_number, terminate_as_interrupt
from .validation import STANDARD_MEAN_SQUARE

PROG = "backprop-core"

EXAMPLES = {
    "train": """examples:
  backprop-core train                                   # the lecture: flower, 4 tanh units
  backprop-core train --baseline --plot flower.png      # beside logistic regression, drawn
  backprop-core train --dataset blobs --standardize     # features far from 0 or widely spread
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
  backprop-core backends                                # installed libraries, no import
  backprop-core backends --probe --json                 # import each: does it run here, on what""",
}

#: Bytes per point that making a built-in dataset takes at its peak (float64 points and
#: their temporaries: 40 to 48.01 measured with tracemalloc), checked before making one.
DATASET_BYTES_PER_POINT = 50


class UserError(BackpropCoreError):
    """A mistake in what the user asked for: one line, no traceback."""


@contextlib.contextmanager
def _named_file(path, doing: str):
    """An OSError on a file the user named is a UserError naming it (:func:`_file_error`).
    Only here: an OSError anywhere else is a bug's."""
    try:
        yield
    except OSError as exc:
        raise _file_error(exc, path, doing) from None


def _file_error(exc: OSError, path, doing: str) -> UserError:
    """An OSError on a file the user named (missing, unreadable, a full disk) as a UserError
    naming it: in the library's own words where it wrote them (a message alone, or one that
    begins "cannot {doing} {path}"), else "cannot {doing} {path}: " and the system's."""
    said = f"cannot {doing} {path}"
    if exc.strerror is None:
        return UserError(str(exc))
    return UserError(exc.strerror if exc.strerror.startswith(f"{said}:") else f"{said}: {exc.strerror}")


# -- standard streams that cannot stop the work ---------------------------------------

class _Guarded(io.TextIOBase):
    """A standard stream whose failure (a pipe closed by ``head``, a full disk) loses output, not work.

    The first write that fails is remembered and, as in Python's documented recipe
    for a closed pipe, the descriptor is pointed at os.devnull, so this and every
    later write (the interpreter's own flush at exit too) go nowhere quietly.
    """

    def __init__(self, stream, name):
        self.stream, self.name, self.failure = stream, name, None

    def write(self, text):
        if self.failure is None:
            try:
                if self.stream is None:  # the program started with this descriptor closed
                    raise OSError(f"standard {self.name} is closed")
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError) as exc:  # ValueError: the stream object itself was closed
                self._fail(exc)
        return len(text)

    def flush(self):
        if self.failure is None and self.stream is not None:
            try:
                self.stream.flush()
            except (OSError, ValueError) as exc:
                self._fail(exc)

    def isatty(self):
        return self.failure is None and self.stream is not None and self.stream.isatty()

    def _fail(self, exc):
        self.failure = exc
        if self.stream is None:
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no descriptor (an in-process caller's buffer): nothing to redirect
            pass


def _one_line_warnings():
    """A ``warnings.showwarning`` for one run: each warning on one line, in option words, and each
    text once (a sweep fits many models)."""
    told = set()

    def show(message, category, filename, lineno, file=None, line=None):
        text = _advice_in_options(message.advice) if isinstance(message, FeatureScaleWarning) else str(message)
        if text not in told:
            told.add(text)
            _warn(" ".join(text.split()))

    return show


def _advice_in_options(advice) -> str:
    """The library's advice on an unsafe learning rate, naming this command's options."""
    return advice.said(f"--lr {advice.learning_rate:g}", f"--lr {advice.safe_rate:.3g} or less", "--standardize")


# -- the parser -------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of the command."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, what, positive=True):
    """An argparse type: ``kind(text)`` written as the CSV reader takes numbers (ASCII digits, a point,
    an exponent: :data:`~backprop_core.data_io.PLAIN_NUMBER`; an integer in digits alone), > 0 where
    ``positive``.  Python's int() and float() would also take "1_0" as 10 and digits of other scripts."""
    said = f"must be {'a positive' if positive else 'an'} {what} written with the digits 0-9"

    def parse(text):
        written = text.strip()
        if not PLAIN_NUMBER.fullmatch(written) or kind is int and not written.lstrip("+-").isdigit():
            raise argparse.ArgumentTypeError(f"{said}, got {text}")
        value = kind(written)
        if positive and not (value > 0 and (kind is int or math.isfinite(value))):
            raise argparse.ArgumentTypeError(f"{said}, got {text}")
        return value

    return parse


_positive_int = _number(int, "integer")
_positive_float = _number(float, "number")
_integer = _number(int, "integer", positive=False)
_HEADER = {"auto": "auto", "yes": True, "no": False, "true": True, "false": False}


def _header(text):
    try:
        return _HEADER[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"must be auto, yes or no, got {text}") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backprop-core")
    except PackageNotFoundError:  # run from a source tree that is not installed
        from . import __version__

        return __version__


def _add_file_options(p):
    p.add_argument("--header", type=_header, default="auto", metavar="{auto,yes,no}",
                   help="does a CSV's first row name the columns? (default auto: yes when no cell is a number)")
    p.add_argument("--encoding", default="utf-8", metavar="NAME", help="text encoding of a CSV (default utf-8)")


def _add_data_options(p):
    from .datasets import DATASETS

    p.add_argument("--dataset", default=None, choices=sorted(DATASETS), help="built-in data (default flower)")
    p.add_argument("--m", type=_positive_int, default=None, metavar="M", help="points in the built-in dataset")
    p.add_argument("--data-seed", type=_integer, default=None, metavar="SEED", help="seed of the built-in dataset")
    p.add_argument("--data", default=None, metavar="FILE", help="your own data: .csv, .npy or .npz (instead of --dataset)")
    p.add_argument("--target", default=None, metavar="COLUMN", help="label column of a CSV (its name, or index) or array of an .npz")
    _add_file_options(p)


def _add_model_options(p):
    p.add_argument("--backend", default="numpy", metavar="NAME", help=f"one of {', '.join(backend_names())} (default numpy)")
    p.add_argument("--device", default=None, help="device for the backend, e.g. cpu, cuda, 0")
    p.add_argument("--activation", default="tanh", choices=sorted(ACTIVATIONS),
                   help="of the hidden layer (default tanh)")
    p.add_argument("--lr", type=_positive_float, default=1.2, metavar="RATE", help="learning rate (default 1.2)")
    p.add_argument("--seed", type=_integer, default=0, metavar="SEED", help="seed of the initial weights (default 0)")
    p.add_argument("--dtype", choices=["float32", "float64"], default=None,
                   help="default: float64 on a CPU, float32 on a GPU and on jax")
    p.add_argument("--standardize", action="store_true",
                   help="train on features scaled to mean 0 and standard deviation 1 (learnt here, kept in --save)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fmt = argparse.RawDescriptionHelpFormatter

    train = sub.add_parser("train", help="train one network and report", epilog=EXAMPLES["train"], formatter_class=fmt)
    _add_data_options(train)
    _add_model_options(train)
    train.add_argument("--hidden", type=_positive_int, default=4, metavar="UNITS", help="hidden units (default 4)")
    train.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                       help="full-batch iterations (default 10000)")
    train.add_argument("--batch-size", type=_positive_int, default=None, metavar="N",
                       help="mini-batch gradient descent with this batch size (default: full batch)")
    train.add_argument("--epochs", type=_positive_int, default=None, metavar="N",
                       help="passes over the data with --batch-size (default 10)")
    train.add_argument("--chunk-size", type=_positive_int, default=None, metavar="N",
                       help="compute each full-batch step over chunks of this many examples (default: automatic)")
    train.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="threads or processes sharing the chunks (default: the planner's choice)")
    train.add_argument("--parallel", choices=["auto", "threads", "processes"], default=None,
                       help="how the workers run on the numpy backend (default auto: processes where "
                            "the calibration measured them faster, their start counted)")
    train.add_argument("--baseline", action="store_true",
                       help="first fit the lecture's logistic-regression baseline and report it beside the network")
    train.add_argument("--save", default=None, metavar="FILE", help="write the trained model here (.npz)")
    train.add_argument("--plot", default=None, metavar="FILE",
                       help="write the cost curve and the decision boundaries here (.png, .pdf, .svg)")
    train.add_argument("--quiet", action="store_true", help="no progress, only the summary")
    train.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    sweep = sub.add_parser("sweep", help="one model per hidden-layer size", epilog=EXAMPLES["sweep"], formatter_class=fmt)
    _add_data_options(sweep)
    _add_model_options(sweep)
    sweep.add_argument("--hidden", type=_positive_int, nargs="+", default=[1, 2, 3, 4, 5, 20, 50], metavar="UNITS",
                       help="hidden-layer sizes (default 1 2 3 4 5 20 50)")
    sweep.add_argument("--iterations", type=_positive_int, default=5000, metavar="N", help="per model (default 5000)")
    sweep.add_argument("--plot", default=None, metavar="FILE", help="write the grid of decision boundaries here (.png)")
    sweep.add_argument("--json", action="store_true", help="print the results as one JSON object")

    predict = sub.add_parser("predict", help="predict with a saved model", epilog=EXAMPLES["predict"],
                             formatter_class=fmt)
    predict.add_argument("model", help="a model saved by train --save")
    predict.add_argument("--data", required=True, metavar="FILE", help=".csv, .npy or .npz of features")
    predict.add_argument("--target", default=None, metavar="COLUMN", help="a label column to leave out (and score against)")
    _add_file_options(predict)
    predict.add_argument("--proba", action="store_true",
                         help="also write probabilities: one column for two classes, one per class otherwise")
    predict.add_argument("--output", default=None, metavar="FILE", help="CSV to write (default, or -: standard output)")

    backends = sub.add_parser("backends", help="list backends, installed versions and (with --probe) devices",
                              epilog=EXAMPLES["backends"], formatter_class=fmt)
    backends.add_argument("--probe", action="store_true",
                          help="import each installed library to see whether it runs here and on which devices")
    backends.add_argument("--json", action="store_true", help="print one JSON object per backend, in a list")
    return parser


# -- checks made before any work ----------------------------------------------------------

def _check_path_name(path, option, what="a file name", stream="standard output is"):
    """A name the system can take as a file's: not empty, not "-" (which would be a file named "-";
    where "-" means a standard stream the caller says so first), not a folder's (a trailing
    slash), within the system's limits on a name and a path."""
    if not path.strip():
        raise UserError(f"{option} is empty; give {what}")
    if path == "-":
        raise UserError(f"{option} -: {stream} not used here; give {what} "
                        "(./- for a file named -)")
    if path.endswith(("/", os.sep)):
        raise UserError(f"{option} {path} ends with {path[-1]}, which names a folder; give {what}")
    name, folder = os.path.basename(path), os.path.dirname(path) or os.curdir
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no such folder (said later), or no pathconf
        longest = 255
    if len(os.fsencode(name)) > longest:
        raise UserError(f"{option}: the file name {name[:40]}... is {len(os.fsencode(name))} bytes long, more "
                        f"than the {longest} this system allows; give a shorter name")
    if len(os.fsencode(os.path.abspath(path))) >= 4096:  # PATH_MAX on Linux
        raise UserError(f"{option}: the path is {len(os.fsencode(path)):,} bytes long, more than this system "
                        "allows; give a shorter one")


def _check_output_path(path, option, *, inputs=()):
    """``path`` can be written: a sound name (:func:`_check_path_name`), its folder exists and takes
    new files, it is not a folder or an input."""
    _check_path_name(path, option)
    try:
        _check_writable(path, option, inputs)
    except OSError as exc:  # what the checks' own look at the file met (a loop of links, ...)
        raise UserError(f"{option} {path}: {exc.strerror or exc}") from None


def _check_writable(path, option, inputs):
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise UserError(f"{option} {path}: folder {folder} does not exist")
    for given in inputs:
        if given is not None and target.exists() and Path(given).exists() and os.path.samefile(target, given):
            raise UserError(f"{option} {path} would overwrite the input {given}")
    try:  # the only sure test of writability (permissions, read-only mounts, quotas): try it
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot write in folder {folder} ({exc.strerror})") from None
    if target.exists() and not os.access(target, os.W_OK):
        raise UserError(f"{option} {path} exists and is not writable")


def _check_plot_path(path, inputs=()):
    """matplotlib is installed and can write ``path``'s format, before any training."""
    _check_output_path(path, "--plot", inputs=inputs)
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'backprop-core[plot]'") from None
    suffix = Path(path).suffix.lower().lstrip(".")
    formats = FigureCanvasBase.get_supported_filetypes()
    if suffix and suffix not in formats:
        raise UserError(f"--plot {path}: matplotlib cannot write .{suffix} files; use one of "
                        f"{', '.join('.' + f for f in sorted(formats))}")


def _check_data_options(args):
    if args.data is not None:
        _check_path_name(args.data, "--data", "a .csv, .npy or .npz file", "standard input is")
    if args.data_seed is not None and args.data_seed < 0:
        raise UserError(f"--data-seed must be a non-negative integer, got {args.data_seed}")
    if args.data is None:
        if args.header != "auto" or args.encoding != "utf-8":
            raise UserError("--header and --encoding apply to a CSV given with --data")
        if args.target is not None:
            raise UserError("--target names a column of --data; the built-in datasets have their labels")
        return
    given = [option for option, value in (("--dataset", args.dataset), ("--m", args.m),
                                          ("--data-seed", args.data_seed)) if value is not None]
    if given:
        verb, it = ("chooses", "it does") if len(given) == 1 else ("choose", "they do")
        raise UserError(f"{' and '.join(given)} {verb} a built-in dataset; {it} not apply to --data {args.data}")


def _check_memory_for_dataset(args):
    """Refuse a built-in dataset that cannot be made in the memory available now (measured as
    a data file's arrays are before they are read)."""
    from .data_io import available_memory, bytes_in_words

    if args.data is not None or args.m is None:
        return
    need, free = args.m * DATASET_BYTES_PER_POINT, available_memory()
    if free is not None and need > free:
        raise UserError(f"--m {args.m:,}: making the {args.dataset or 'flower'} dataset needs about "
                        f"{bytes_in_words(need)} ({DATASET_BYTES_PER_POINT} bytes a point), but "
                        f"{bytes_in_words(free)} of memory is available; choose a smaller --m")


def _resolved_backend(args):
    """Import the backend's library and resolve its device now, so that no timing includes it."""
    backend = get_backend(args.backend, args.device)
    if args.dtype is not None:
        try:
            backend.dtype(args.dtype)
        except BackpropCoreError as exc:
            if backend.name == "jax" and args.dtype == "float64":
                raise UserError("--dtype float64 on jax needs JAX's 64-bit mode: set the environment variable "
                                "JAX_ENABLE_X64=1 (JAX_ENABLE_X64=1 backprop-core train --backend jax "
                                "--dtype float64 ...), or use --dtype float32") from None
            raise UserError(_in_option_words(str(exc))) from None
    return backend


# -- data -------------------------------------------------------------------------------

def _in_option_words(message: str) -> str:
    """The library speaks to Python callers (header=True, encoding='latin-1', dtype='float32');
    say the options instead."""
    message = re.sub(r"\bdtype='(\w+)'", r"--dtype \1", message)
    message = re.sub(r"\bheader=(True|False)", lambda m: "--header " + ("yes" if m[1] == "True" else "no"), message)
    if "encoding=" in message:
        message = re.sub(r"\bencoding='([\w.-]+)'", r"--encoding \1", message)
        message = re.sub(r"\bencoding= ", "--encoding ", message)
        message = re.sub(r" or '([\w.-]+)'", r" or \1", message)
    return message


def _read_table(path, target, args):
    """The data file's :class:`~backprop_core.data_io.Table`: X, y and the columns' names."""
    from .data_io import read_table

    with _named_file(path, "read"):
        try:
            return read_table(path, target, header=args.header, encoding=args.encoding)
        except BackpropCoreError as exc:
            raise UserError(_in_option_words(str(exc))) from None


def _load_data(args, need_labels=True):
    """``(X (m, n), y (m,) or (m, k), name, columns)`` from --data or a built-in dataset;
    ``columns``: X's n column names where a CSV header gives them, else None."""
    from . import datasets

    if args.data:
        table = _read_table(args.data, args.target, args)
        if need_labels and table.y is None:
            raise UserError(f"{args.data} has no labels: name the label column (or .npz array) with --target")
        return table.X, table.y, args.data, table.columns
    name = args.dataset or "flower"
    kwargs = {}
    if args.m is not None:
        kwargs["m"] = args.m
    if args.data_seed is not None:
        kwargs["seed"] = args.data_seed
    X, Y = datasets.DATASETS[name](**kwargs)
    return X.T, Y[0], name, None


def _record_columns(model, columns, source):
    """A CSV header's names recorded as fit records a data frame's (``feature_names_in_``), so that
    the saved model's predict matches columns by name; without distinct names, nothing is recorded."""
    if columns is None:
        return
    if not all(columns) or len(set(columns)) != len(columns):
        _warn(f"{source}'s header does not name every feature column once, so the model records no "
              "column names and predict will take columns by position")
        return
    model.feature_names_in_ = np.asarray(columns, dtype=object)
    _columns_matched_here()


def _columns_matched_here():
    """The command matches columns by name itself and hands the model plain arrays in its order:
    scikit-learn's warning that an array has no names would be wrong here."""
    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)


def _warn(text):
    print(f"{PROG}: warning: {_printable(text)}", file=sys.stderr)


def _two_classes(y):
    """The classes of 1-D labels when there are exactly two, else None."""
    if y.ndim != 1:
        return None
    classes = np.unique(y)
    return classes if len(classes) == 2 else None


# -- progress ---------------------------------------------------------------------------

class _Progress:
    """A tqdm bar on a terminal (left on screen when done), the lecture's cost lines otherwise.

    Full batch: the bar counts iterations, a line every 1000.  Mini-batch: the
    cost is read at the start of each epoch (that batch's cost), the bar counts
    epochs, a line every tenth of them; the last read is the cost on all the data.
    """

    def __init__(self, quiet, *, iterations=None, epochs=None, updates_per_epoch=None):
        self.quiet, self.epochs, self.per_epoch = quiet, epochs, updates_per_epoch
        self.total = epochs if epochs else iterations
        self.end = epochs * updates_per_epoch if epochs else iterations
        self.every = max(1, epochs // 10) if epochs else 1000
        self.bar = None
        if not quiet and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, unit="epoch" if epochs else "it", file=sys.stderr, leave=True,
                                dynamic_ncols=True)

    def __call__(self, iteration, cost):
        done = iteration // self.per_epoch if self.epochs else iteration
        final = iteration == self.end
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix(cost=f"{cost:.4f}")
        elif not self.quiet and (done % self.every == 0 or final):
            if not self.epochs:
                print(f"Cost after iteration {iteration}: {cost:f}")
            elif final:
                print(f"Cost after epoch {done}: {cost:f} (all the data)")
            elif iteration % self.per_epoch == 0:
                print(f"Cost after epoch {done}: {cost:f} (one batch)")

    def close(self):
        if self.bar is not None:
            self.bar.close()


# -- train ------------------------------------------------------------------------------

def _estimator(args, hidden, iterations=None, cost_every=100):
    """The lecture's network, named in full: the estimator's own defaults are a practitioner's, not these."""
    from .estimator import BackpropClassifier

    batch_size = getattr(args, "batch_size", None)
    max_iter = iterations if batch_size is None else (getattr(args, "epochs", None) or 10)
    return BackpropClassifier(hidden_units=hidden, activation=args.activation, optimizer="gd",
                              learning_rate_init=args.lr, max_iter=max_iter or 10000, alpha=0.0,
                              batch_size=batch_size, init="normal", backend=args.backend, device=args.device,
                              dtype=args.dtype, random_state=args.seed, cost_every=cost_every,
                              standardize=args.standardize, n_iter_no_change=None)  # every iteration


def _execution(args):
    """The one :class:`~backprop_core.execution.Execution` the options ask for: the fit runs under it."""
    given = {option: getattr(args, option, None) for option in ("chunk_size", "workers", "parallel")}
    return Execution(**{option: value for option, value in given.items() if value is not None})


def _check_train_options(args):
    _check_data_options(args)
    if args.batch_size is None:
        if args.epochs is not None:
            raise UserError("--epochs counts passes of mini-batch gradient descent: give --batch-size too")
    elif args.iterations is not None:
        raise UserError("--iterations counts full-batch steps; with --batch-size, give --epochs instead")
    else:
        for option, value in (("--chunk-size", args.chunk_size), ("--workers", args.workers),
                              ("--parallel", args.parallel)):
            if value is not None:
                raise UserError(f"{option} applies to the chunks of a full-batch step; with --batch-size "
                                "each update is one batch")
    inputs = (args.data,)
    if args.save is not None:
        _check_output_path(args.save, "--save", inputs=inputs)
    if args.plot is not None:
        _check_plot_path(args.plot, inputs=inputs)
        if args.save and Path(args.save).resolve() == Path(args.plot).resolve():
            raise UserError(f"--save and --plot both name {args.save}: the plot would overwrite the model; "
                            "give each a file of its own")
    _check_memory_for_dataset(args)


def cmd_train(args) -> int:
    _check_train_options(args)
    backend = _resolved_backend(args)
    X, y, source, columns = _load_data(args)
    m = X.shape[0]
    if args.baseline and y.ndim != 1:
        raise UserError("--baseline fits one logistic regression to one label per example; "
                        f"{source} has {y.shape[1]} label columns")
    talk = not (args.quiet or args.json)
    summary = {"data": source, "m": m, "features": X.shape[1], "hidden": args.hidden,
               "activation": args.activation, "learning_rate": args.lr, "standardize": args.standardize}
    baseline = None
    if args.baseline:
        baseline = _fit_baseline(X, y)
        summary["baseline_training_accuracy"] = baseline.accuracy
        if talk:
            print(f"logistic regression (the baseline): training accuracy {100 * baseline.accuracy:.1f}%")
    # The model first: making it imports the estimator, which the progress bar's clock must not count.
    if args.batch_size is None:
        iterations = args.iterations or 10000
        model = _estimator(args, args.hidden, iterations)
        progress = _Progress(not talk, iterations=iterations)
    else:
        per_epoch, epochs = -(-m // args.batch_size), args.epochs or 10
        model = _estimator(args, args.hidden, cost_every=per_epoch)  # one cost read per epoch
        progress = _Progress(not talk, epochs=epochs, updates_per_epoch=per_epoch)
    if talk:
        n2 = 1 if y.ndim == 1 else y.shape[1]
        scaled = ", standardized" if args.standardize else ""
        print(f"training {X.shape[1]}-{args.hidden}-{n2} ({args.activation}) on {source} (m={m:,}{scaled}) "
              f"with backend {backend.name} on {backend.device_name}")
    stopped = None
    start = time.perf_counter()
    try:
        with execution_context(_execution(args)):
            model.fit(X, y, callback=progress)
    except tuple(kind for kind, _ in _STOPS) as exc:
        if not model.__sklearn_is_fitted__():  # stopped before anything was kept
            raise
        stopped = exc  # the model keeps the last good parameters: report and save them, then fail
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    final_cost = model.cost_history_[-1][1] if stopped is None else None
    if stopped is not None:
        # What is kept: the parameters of stopped.iteration and the costs read up to them (a
        # model file holds finite costs only; the one that diverged is in the message).
        kept = [(i, J) for i, J in model.cost_history_ if i <= stopped.iteration and math.isfinite(J)]
        model.cost_history_ = kept  # loss_curve_ follows
    _record_columns(model, columns, source)
    unsaved = None
    if args.save:  # first: what follows reads all the data again, which may fail where training did
        try:
            model.save(args.save)
            summary["saved"] = args.save
        except OSError as exc:  # a full disk, a folder gone since the check: say so after the summary
            unsaved = _file_error(exc, args.save, "save")
    summary.update(_training_summary(model, X, y, elapsed, backend, stopped, final_cost))
    if args.plot:
        _plot_training(model, X, y, args.plot, baseline)
        summary["plot"] = args.plot
    if args.json:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    if unsaved is not None:
        raise unsaved
    if stopped is not None:
        raise stopped
    return 0


def _fit_baseline(X, y):
    from .baseline import fit_logistic_regression

    _, codes = np.unique(y, return_inverse=True)  # any labels: the baseline's helper takes numbers
    try:
        return fit_logistic_regression(X, codes.reshape(-1))
    except ValueError as exc:  # scikit-learn's words for data it cannot fit (one class, too few of one)
        raise UserError(f"--baseline: logistic regression cannot be fitted here: {exc}") from None


def _training_summary(model, X, y, elapsed, backend, stopped, final_cost) -> dict:
    """What was trained, how well and how fast; from the estimator's record of the fit.

    ``final_cost``: the last cost of a complete fit's history, which is the final
    parameters' cost on all the data (in mini-batch mode too); None when stopped.
    """
    m, plan = X.shape[0], model.plan_
    out = {"mode": plan.mode}
    # The steps run: a stopped run ran past the parameters it keeps, to its last cost read.
    steps = model.n_steps_ if stopped is None else (stopped.history[-1][0] if stopped.history else 0)
    if plan.mode == "mini-batch":
        per_epoch = -(-m // plan.batch_size)
        epochs, partial = divmod(steps, per_epoch)
        examples = epochs * m + min(partial * plan.batch_size, m)
        out.update(batch_size=plan.batch_size, epochs=epochs, updates=steps)
    else:
        examples = steps * m
        out["iterations"] = steps
    finite = [(i, J) for i, J in model.cost_history_ if math.isfinite(J)]
    out.update(training_accuracy=model.score(X, y), final_cost=final_cost,
               last_cost_read=list(finite[-1]) if finite else None,
               seconds=elapsed, examples_per_second=examples / elapsed if elapsed > 0 else None,
               backend=backend.name, device=str(model.backend_.device_name), dtype=model.dtype_,
               stopped=None if stopped is None else _stop_reason(stopped),
               kept_iteration=None if stopped is None else stopped.iteration)
    return out


_STOPS = ((TrainingInterrupted, "interrupted"), (TrainingDivergedError, "diverged"),
          (DeviceMemoryError, "out of memory"), (DistributedTrainingError, "cluster failure"))


def _stop_reason(exc) -> str:
    if isinstance(exc, TrainingInterrupted) and exc.signum != signal.SIGINT:
        return "terminated"
    return next(reason for kind, reason in _STOPS if isinstance(exc, kind))


def _print_summary(s):
    unit = "update" if s["mode"] == "mini-batch" else "iteration"
    if s["stopped"]:
        print(f"training stopped ({s['stopped']}); the model keeps the parameters of {unit} {s['kept_iteration']:,}")
    baseline = ("" if "baseline_training_accuracy" not in s
                else f" (logistic regression: {100 * s['baseline_training_accuracy']:.1f}%)")
    print(f"training accuracy: {100 * s['training_accuracy']:.1f}%{baseline}")
    if s["final_cost"] is not None:
        print(f"final cost (all the data): {s['final_cost']:.4f}")
    elif s["last_cost_read"] is not None:
        i, J = s["last_cost_read"]
        print(f"last finite cost read: {J:.4f} at {unit} {i:,}" + (" (one batch)" if unit == "update" else ""))
    steps = (f"{s['epochs']:,} epochs of batches of {s['batch_size']:,} ({s['updates']:,} updates)"
             if s["mode"] == "mini-batch" else f"{s['iterations']:,} iterations ({s['mode']})")
    rate = f": {s['examples_per_second']:,.0f} examples/s" if s["examples_per_second"] else ""
    print(f"{steps} in {s['seconds']:.2f} s{rate} ({s['backend']} on {s['device']}, {s['dtype']})")
    if "saved" in s:
        kept = f" (the parameters of {unit} {s['kept_iteration']:,})" if s["stopped"] else ""
        print(f"model saved to {s['saved']}{kept}")
    if "plot" in s:
        print(f"plot written to {s['plot']}")


def _plot_training(model, X, y, path, baseline):
    from .plotting import plot_cost_history

    plt = _pyplot()
    classes = _two_classes(y) if X.shape[1] == 2 else None
    panels = 1 + (classes is not None) + (classes is not None and baseline is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.5), squeeze=False)
    axes = list(axes[0])
    unit = "update" if model.plan_.mode == "mini-batch" else "iteration"
    plot_cost_history(model.cost_history_, axes.pop(), title=f"cross-entropy cost J (training data), by {unit}")
    if classes is not None and baseline is not None:
        _boundary(axes.pop(0), lambda rows: baseline.classifier.predict(rows), X, y, classes,
                  f"logistic regression: training accuracy {100 * baseline.accuracy:.1f}%", codes=True)
    if classes is not None:
        units = "unit" if model.hidden_units == 1 else "units"
        _boundary(axes.pop(0), model.predict, X, y, classes,
                  f"{model.hidden_units} hidden {units} ({model.activation_}): training accuracy "
                  f"{100 * model.score(X, y):.1f}%")
    _write_figure(plt, fig, path, dpi=100)


def _boundary(ax, predict, X, y, classes, title, codes=False):
    """The decision boundary of two classes of any labels (plotting draws 0/1, named here)."""
    from .plotting import plot_decision_boundary

    positive = 1 if codes else classes[1]
    plot_decision_boundary(lambda rows: np.asarray(predict(rows)) == positive, X, (y == classes[1]).astype(int), ax)
    legend = ax.get_legend()
    for text, label in zip(legend.get_texts(), classes):
        text.set_text(f"class {_cell(label)}")
    ax.set_title(title)


def _write_figure(plt, fig, path, dpi):
    """Lay ``fig`` out, write it whole (:func:`~backprop_core.atomic.replace_atomically`) to exactly the
    file the user named, and free it.  The format is the name's suffix's, or matplotlib's default
    (PNG) for a name without one: ``--plot fig`` writes ``fig``, which the summary names."""
    from .atomic import replace_atomically

    fig.tight_layout()
    suffix = Path(path).suffix.lower().lstrip(".")
    with _named_file(path, "write"):
        replace_atomically(path, lambda f: fig.savefig(f, format=suffix or None, dpi=dpi))
    plt.close(fig)


def _pyplot():
    """pyplot on the Agg backend: the command line writes files and never opens a window."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


# -- sweep ------------------------------------------------------------------------------

def cmd_sweep(args) -> int:
    _check_data_options(args)
    if args.plot is not None:
        _check_plot_path(args.plot, inputs=(args.data,))
    _check_memory_for_dataset(args)
    backend = _resolved_backend(args)
    X, y, source, _ = _load_data(args)
    classes = _two_classes(y)
    if args.plot and (X.shape[1] != 2 or classes is None):
        labels = f"{y.shape[1]} label columns" if y.ndim > 1 else f"{len(np.unique(y))} class(es)"
        raise UserError(f"--plot draws decision boundaries, which needs two features and two classes; "
                        f"{source} has {X.shape[1]} feature(s) and {labels}")
    rows, models = [], []
    if not args.json:
        print(f"{'hidden units':>12}  {'training accuracy':>17}  {'seconds':>7}")
    for h in args.hidden:
        model = _estimator(args, h, args.iterations)  # made first: the first one imports the estimator
        start = time.perf_counter()
        model.fit(X, y)
        rows.append({"hidden": h, "training_accuracy": model.score(X, y), "seconds": time.perf_counter() - start})
        models.append(model)
        if not args.json:
            print(f"{h:>12}  {100 * rows[-1]['training_accuracy']:>16.1f}%  {rows[-1]['seconds']:>7.2f}")
    result = {"data": source, "m": X.shape[0], "iterations": args.iterations, "learning_rate": args.lr,
              "activation": args.activation, "standardize": args.standardize, "backend": backend.name,
              "results": rows}
    if args.plot:
        _plot_sweep(models, rows, X, y, classes, result, args.plot)
        result["plot"] = args.plot
    if args.json:
        print(json.dumps(result))
    elif args.plot:
        print(f"plot written to {args.plot}")
    return 0


def _plot_sweep(models, rows, X, y, classes, result, path):
    plt = _pyplot()
    cols = min(4, len(models))
    rows_n = -(-len(models) // cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.6 * rows_n + 0.5), squeeze=False)
    for ax, model, row in zip(axes.flat, models, rows):
        units = "unit" if row["hidden"] == 1 else "units"
        _boundary(ax, model.predict, X, y, classes,
                  f"{row['hidden']} hidden {units}: {100 * row['training_accuracy']:.1f}%")
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    scaled = ", standardized" if result["standardize"] else ""
    fig.suptitle(f"{result['data']} (m = {result['m']:,}{scaled}): training accuracy after "
                 f"{result['iterations']:,} iterations, learning rate {result['learning_rate']:g}, "
                 f"{result['activation']} hidden units")
    _write_figure(plt, fig, path, dpi=90)


# -- predict ----------------------------------------------------------------------------

def _cell(value) -> str:
    """A label or number as the file shows it: 1.0 as 1, strings as they are."""
    if isinstance(value, (float, np.floating)):
        return np.format_float_positional(value, trim="-")
    return str(value.item() if isinstance(value, np.generic) else value)


#: A cell starting with one of these is run as a formula by a spreadsheet (OWASP's rule for CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: ... unless it is a number, which a spreadsheet reads as one: -1.5, +2, 1e-3 (:data:`PLAIN_NUMBER`).


def _safe_cell(text: str) -> str:
    """A CSV cell that neither a spreadsheet nor a terminal runs: a text a spreadsheet would take
    for a formula gets a leading single quote (numbers such as -1.5 excepted), then whatever is
    not printable is escaped (:func:`_printable`)."""
    if text.startswith(_FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    return _printable(text)


def _printable(text: str) -> str:
    """``text`` with each character that is not printable (a control character, the start of a
    terminal escape sequence, a lone surrogate) escaped as Python's repr escapes it: \\x1b,
    \\u202e, \\ud800.  Strings read from files pass through here on their way to a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _in_model_order(model, table, args):
    """The data's X (m, n0) with its columns in the order the model was trained on: matched by
    name where both the file and the model name them, else taken by position, which is said once."""
    from .validation import column_order

    fitted = getattr(model, "feature_names_in_", None)
    if fitted is None or table.columns is None:
        if fitted is not None:
            _warn(f"{args.data} does not name its columns, so they are taken by position as the model's "
                  f"{', '.join(repr(str(n)) for n in fitted[:10])}{' ...' if len(fitted) > 10 else ''}")
        elif table.columns is not None:
            _warn(f"{args.model} records no column names, so the columns of {args.data} are taken by position")
        return table.X
    try:
        order = column_order(table.columns, fitted, args.data)
    except BackpropCoreError as exc:
        unknown = set(table.columns) - {str(n) for n in fitted}
        hint = " (if one of them holds the labels, name it with --target)" if unknown and args.target is None else ""
        raise UserError(f"{exc}{hint}") from None
    return table.X if order is None else table.X[:, order]


def cmd_predict(args) -> int:
    from .estimator import BackpropClassifier

    _check_path_name(args.data, "--data", "a .csv, .npy or .npz file", "standard input is")
    if args.output is not None and args.output != "-":  # "-": standard output
        _check_output_path(args.output, "--output", inputs=(args.data, args.model))
    with _named_file(args.model, "read"):
        model = BackpropClassifier.load(args.model, backend="numpy")
    table = _read_table(args.data, args.target, args)
    X, y = _in_model_order(model, table, args), table.y
    _columns_matched_here()
    labels = model.predict(X)
    if labels.ndim == 1:
        names, columns = ["prediction"], [[_cell(v) for v in labels]]
    else:  # one 0/1 column per label of an indicator matrix
        names = [f"prediction_{j}" for j in range(labels.shape[1])]
        columns = [[_cell(v) for v in labels[:, j]] for j in range(labels.shape[1])]
    if args.proba:
        P = model.predict_proba(X)
        if model.target_type_ == "binary":  # P of classes_[1], as a logistic regression gives it
            names.append("probability")
            columns.append([f"{p:.6g}" for p in P[:, 1]])
        else:
            tags = [_cell(c) for c in model.classes_] if model.target_type_ == "multiclass" else range(P.shape[1])
            names += [f"probability_{t}" for t in tags]
            columns += [[f"{p:.6g}" for p in P[:, j]] for j in range(P.shape[1])]
    def write(out):
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([_safe_cell(name) for name in names])
        writer.writerows([_safe_cell(cell) for cell in row] for row in zip(*columns))

    to_file = args.output not in (None, "-")  # "-": standard output, as for most commands
    if to_file:  # whole or not at all: an interrupted or full write leaves the old file
        from .atomic import replace_atomically

        with _named_file(args.output, "write"):
            replace_atomically(args.output, write, text=True)
    else:
        write(sys.stdout)  # its failures are _Guarded's
    notes = sys.stdout if to_file else sys.stderr  # standard output may be the table itself
    if to_file:
        print(f"{len(X):,} predictions written to {_printable(args.output)}", file=notes)
    if y is not None:
        print(f"accuracy on {_printable(args.data)}: {100 * model.score(X, y):.1f}%", file=notes)
    return 0


# -- backends ---------------------------------------------------------------------------

def _installed(library, distributions):
    """``(distribution, version)`` of an importable module, from package metadata (no import)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in distributions.get(library, []):
        try:
            return dist, version(dist)
        except PackageNotFoundError:
            continue
    return None, None


def cmd_backends(args) -> int:
    from importlib.metadata import packages_distributions

    distributions = packages_distributions()  # module -> distributions, read once (a scan of site-packages)
    rows = []
    for name in backend_names():
        backend = make_backend(name)
        library = getattr(backend, "library", "") or None
        dist, version = _installed(library, distributions) if library else (None, None)
        row = {"backend": name, "library": library, "distribution": dist, "version": version,
               "installed": version is not None, "usable": None, "devices": None, "reason": None}
        if args.probe or library in sys.modules:  # an imported library costs nothing to ask
            ok, reason = backend.availability()
            row.update(usable=ok, devices=backend.devices() if ok else None, reason=None if ok else reason)
        elif version is None:
            row.update(usable=False, reason=f"{library} is not installed; install it with: {backend.install_hint}")
        rows.append(row)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'backend':<18} {'version':<12} {'runs here':<10} devices / reason")
    for r in rows:
        usable = {True: "yes", False: "no", None: "?"}[r["usable"]]
        where = (", ".join(r["devices"]) if r["devices"] else r["reason"]) or "not probed: --probe imports it to see"
        print(f"{r['backend']:<18} {r['version'] or '-':<12} {usable:<10} {where}")
    return 0


COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "predict": cmd_predict, "backends": cmd_backends}


# -- main -------------------------------------------------------------------------------

def main(argv=None) -> int:
    """Run one command; the project's own errors (a mistake in what was asked, a file named that
    cannot be read or written, training stopped with what it kept) and the machine's refusal of
    memory are one line on stderr.

    Exit status: 0 done, 2 an error (the message says what to change), 130
    interrupted (Ctrl-C), 143 terminated (SIGTERM: the shell's 128 + the signal's number; the
    fit stops as on Ctrl-C), 1 standard output closed early (Python's convention); a bug
    (any other exception) still shows its traceback.
    """
    saved = sys.stdout, sys.stderr
    out = sys.stdout = _Guarded(sys.stdout, "output")
    sys.stderr = _Guarded(sys.stderr, "error")
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings()
            status = _run(argv)
        if out.failure is not None and not isinstance(out.failure, BrokenPipeError):
            print(f"{PROG}: error: cannot write to standard output: {out.failure}", file=sys.stderr)
            status = max(status, 2)
        elif out.failure is not None:
            status = max(status, 1)
        return status
    finally:
        sys.stdout, sys.stderr = saved


def _run(argv) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a mistake argparse found
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with terminate_as_interrupt():  # `timeout`, `kill`, a service's stop: as Ctrl-C, never a lost fit
            return COMMANDS[args.command](args)
    except TrainingInterrupted as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt as exc:  # before or after training: nothing kept to report
        signum = signal_number(exc)
        how = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
        print(f"{PROG}: {how}", file=sys.stderr)
        return 128 + signum
    except (BackpropCoreError, MemoryError) as exc:  # the user's mistakes, the machine's refusal of memory
        # Nothing broader: any other exception is a bug, and its traceback must show.
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc) -> str:
    if isinstance(exc, MemoryError) and not isinstance(exc, BackpropCoreError):
        return f"out of memory ({type(exc).__name__}: {exc}); try a smaller --m, --chunk-size or --batch-size"
    if isinstance(exc, TrainingDivergedError):
        return _printable(_diverged_line(exc))
    return _printable(" ".join(_in_option_words(str(exc)).split()))


def _diverged_line(exc) -> str:
    """A diverged run in one line: what the cost did, what is kept, and the option to change."""
    # Mini-batch runs are judged at their end, on all the data, in updates: iterations here too.
    if exc.history:
        start, (end_i, end_J) = exc.history[0][1], exc.history[-1]
        what = f"the cost went from {start:.4g} to {end_J:.4g} by iteration {end_i:,}"
    else:
        what = "the cost was not finite"
    advice = exc.advice
    if advice is None:
        fix = "use a smaller --lr"
    elif advice.largest > STANDARD_MEAN_SQUARE:
        fix = f"use --lr {advice.safe_rate:.3g} or less, or --standardize"
    else:
        fix = f"use --lr {advice.safe_rate:.3g} or less"
    kept = f"; kept: the parameters of iteration {exc.iteration:,}" if any(math.isfinite(J) for _, J in exc.history) else ""
    return f"training diverged: {what}{kept}; {fix}"



if __name__ == "__main__":
    sys.exit(main())
