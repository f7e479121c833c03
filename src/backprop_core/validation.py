"""Input checks that name the problem, and moving data onto a backend.

The labels of the estimator are read here too (:func:`read_labels`): their
target type is decided by scikit-learn's own ``type_of_target`` and
``check_classification_targets``, on the host for host labels, and for labels
on a device from their unique values (a few numbers brought to the host).
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace, device, is_array_api_obj

from .backends import Backend, backend_for_array
from .errors import InvalidInputError, InvalidTypeError
from .parameters import NAMES as PARAMETER_NAMES

DTYPES = ("float32", "float64")


def as_array(x, what: str):
    """Accept arrays of any supported library, and lists/tuples as NumPy.

    Masked arrays and sparse matrices are refused by name: the network has no
    meaning for a masked value, and it computes on dense arrays.
    """
    if x is None:
        raise InvalidInputError(f"{what} is None; pass an array")
    if isinstance(x, np.ma.MaskedArray):
        raise InvalidTypeError(
            f"{what} is a NumPy masked array, whose masked values the network cannot leave out: fill them "
            f"({what}.filled(value)) or drop the examples that have them (numpy.ma.compress_cols for "
            f"examples as columns, compress_rows for rows), and pass a plain array")
    if _is_sparse(x):
        raise InvalidTypeError(f"Sparse data was passed for {what}, but dense data is required. "
                               f"Use '.toarray()' to convert to a dense numpy array.")
    if _is_sparse_tensor(x):
        raise InvalidTypeError(f"Sparse data was passed for {what} (a torch tensor of layout {x.layout}), but "
                               f"dense data is required. Use '.to_dense()' to convert to a dense tensor.")
    if not is_array_api_obj(x):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"{what} could not be read as an array (ragged rows or non-numbers?): {exc}") from None
        if x.dtype == object:
            raise InvalidInputError(f"{what} is ragged or holds non-numbers; it must be a rectangular numeric array")
    return x


def _is_sparse(x) -> bool:
    # Only a program that imported scipy.sparse can hold a sparse matrix: never import it here.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(x)


def _is_sparse_tensor(x) -> bool:
    # As above: only a program that imported torch can hold a torch tensor.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor) and x.layout != torch.strided


def check_same_place(named: dict) -> Backend:
    """All arrays from one library and on one device (the first one's adapter :meth:`~Backend.holds`
    each); returns that adapter."""
    (first_what, first), *rest = named.items()
    owner = backend_for_array(first)
    for what, x in rest:
        if not owner.owns(x):
            raise InvalidTypeError(
                f"{first_what} is a {owner.name} array but {what} is a {backend_for_array(x).name} array; "
                "pass arrays from one library")
        if not owner.holds(x):
            raise InvalidInputError(
                f"{first_what} is {owner.place_of(first)} but {what} is {backend_for_array(x).place_of(x)}; "
                "put them in one place")
    return owner


def check_dtype(x, what: str) -> None:
    """Real numbers, integers or booleans; anything else is refused by name."""
    xp = array_namespace(x)
    if xp.isdtype(x.dtype, "complex floating"):
        raise InvalidTypeError(f"{what} has complex dtype {x.dtype}; the network works on real numbers")
    if not xp.isdtype(x.dtype, ("real floating", "integral", "bool")):
        raise InvalidTypeError(f"{what} has dtype {x.dtype}, which is not numeric")


def check_dtype_name(dtype) -> None:
    if dtype is not None and dtype not in DTYPES:
        raise InvalidInputError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}")


def to_backend(x, backend: Backend, dtype: str, what: str):
    """``x`` as a ``dtype`` array on ``backend``'s device.

    Integer and boolean inputs are cast to ``dtype`` (they are exact in it for
    labels and counts); the caller's array is never modified.
    """
    check_dtype(x, what)
    with np.errstate(over="ignore"):  # a cast that overflows (1e300 to float32) is named by check_finite
        if backend.holds(x):
            target = backend.dtype(dtype)
            return x if x.dtype == target else backend.xp.astype(x, target)
        return backend.asarray(backend_for_array(x).to_numpy(x), dtype)


def check_shapes(X, Y) -> None:
    """X (n0, m) and Y (n2, m), both non-empty."""
    if X.ndim != 2:
        raise InvalidInputError(
            f"X must be 2-D with examples as columns, shape (n_x, m); got shape {tuple(X.shape)}")
    if Y.ndim != 2:
        raise InvalidInputError(
            f"Y must be 2-D with examples as columns, shape (n_y, m); got shape {tuple(Y.shape)}"
            + (" (reshape it to (1, m))" if Y.ndim == 1 else ""))
    if X.shape[1] == 0 or X.shape[0] == 0:
        raise InvalidInputError(f"X is empty (shape {tuple(X.shape)}); need at least one feature and one example")
    if Y.shape[0] == 0:
        raise InvalidInputError("Y has no output rows; need at least one label per example")
    if X.shape[1] != Y.shape[1]:
        raise InvalidInputError(
            f"X has {X.shape[1]} examples (columns) but Y has {Y.shape[1]}; they must match "
            "(examples are columns: X is (n_x, m), Y is (n_y, m))")


def check_finite(x, xp, what: str, given=None) -> None:
    """``x`` holds finite numbers.  ``given``: the array ``x`` was cast from, if any: where it was
    finite, the cast overflowed (1e300 in float32), and the message says that instead."""
    # One reduction and one host read per fit, before training starts.
    if bool(xp.all(xp.isfinite(x))):
        return
    if given is not None and given is not x:
        gxp = array_namespace(given)
        if gxp.isdtype(given.dtype, "real floating") and bool(gxp.all(gxp.isfinite(given))):
            name, largest = dtype_name(x.dtype), float(gxp.max(gxp.abs(given)))
            raise InvalidInputError(
                f"{what} holds finite values too large for {name} (its largest magnitude is {largest:.3g}, "
                f"above {np.finfo(name).max:.3g}): train in float64 (dtype='float64'), or scale the features down")
    # In scikit-learn's words, whatever the library: this is the one finiteness check a fit makes of X.
    raise InvalidInputError(f"Input {what} contains NaN" if bool(xp.any(xp.isnan(x)))
                            else f"Input {what} contains infinity")


def check_network_size(n0: int, n1: int, n2: int, itemsize: int = 8) -> None:
    """The parameters of an n0-n1-n2 network fit in the memory available now (a request of 10**30
    hidden units is refused in words, before any allocation fails in NumPy's)."""
    from .data_io import available_memory, bytes_in_words

    need = (n1 * (n0 + 1) + n2 * (n1 + 1)) * itemsize
    free = available_memory()
    if free is not None and need > free:
        raise InvalidInputError(
            f"{n1:,} hidden units: the weights of a {n0}-{n1}-{n2} network alone would take {bytes_in_words(need)}, "
            f"more than the {bytes_in_words(free)} of memory available; choose fewer hidden units")


def check_finite_parameters(parameters: dict) -> None:
    """Every start parameter finite, in one host read; otherwise name the ones that are not.

    NaN or infinite start weights would make the first cost NaN, which reads as
    a learning rate too large; the start is checked before training instead.
    """
    xp = array_namespace(*parameters.values())
    finite = [xp.all(xp.isfinite(parameters[k])) for k in PARAMETER_NAMES]
    if not bool(xp.all(xp.stack(finite))):
        bad = [k for k, ok in zip(PARAMETER_NAMES, finite) if not bool(ok)]
        raise InvalidInputError(f"the start parameters {', '.join(bad)} contain NaN or infinite values; "
                                "training needs finite start weights")


#: Gradient descent on the cross-entropy of a sigmoid unit reading inputs x is guaranteed
#: stable for learning rates below 8 / lambda_max(E[x x^T]): the loss's curvature is at most
#: a quarter of the inputs' second moment, and a step of size alpha is stable below
#: alpha = 2 / curvature.  The largest mean square of one input (the bias's constant 1
#: included) is at most lambda_max, so a learning rate times it above 8 is past that limit.
STABLE_RATE_TIMES_MEAN_SQUARE = 8.0

#: Features whose largest mean square is at most this are of standard scale already: standardized
#: data have 1 (up to rounding; a held-out split or a cross-validation fold a little more), and
#: advice to standardize them would change nothing.
STANDARD_MEAN_SQUARE = 1.5


@dataclass(frozen=True)
class ScaleAdvice:
    """Why ``learning_rate`` is unsafe for features whose largest mean square is ``largest``.

    ``str()`` says it to a Python caller; :meth:`said` lets another caller (the
    command line) name its own options.
    """

    learning_rate: float
    largest: float

    @property
    def safe_rate(self) -> float:
        """The largest learning rate the rule calls safe for these features."""
        return STABLE_RATE_TIMES_MEAN_SQUARE / max(1.0, self.largest)

    def said(self, rate: str, safe: str, standardize: str) -> str:
        """The advice, with ``rate`` naming the learning rate given, ``safe`` the safe one and
        ``standardize`` the way to standardize the features."""
        if self.largest > STANDARD_MEAN_SQUARE:
            inputs = f"The features' scale (a mean square of {self.largest:.3g} in the largest feature)"
            fix = f"Standardize the features ({standardize}) or use {safe}."
        else:  # standardized already (or smaller): standardizing again would change nothing
            inputs = (f"The bias's constant input (the features are of standard scale already: a largest mean "
                      f"square of {self.largest:.3g})")
            fix = f"Use {safe}."
        return (f"{inputs} makes {rate} unsafe: gradient descent is sure to be stable only while the "
                f"learning rate x mean square <= {STABLE_RATE_TIMES_MEAN_SQUARE:g}, so the cost may fall "
                f"and then rise again. {fix}")

    def __str__(self):
        return self.said(f"learning_rate={self.learning_rate:g}",
                         f"a learning rate of at most {self.safe_rate:.3g}",
                         "standardize=True on BackpropClassifier, or scale them, e.g. with "
                         "sklearn.preprocessing.StandardScaler")


def feature_scale_advice(X, learning_rate: float, xp) -> ScaleAdvice | None:
    """Why the features' scale makes ``learning_rate`` unsafe, else None.

    X (n0, m); one reduction and one host read.  The rule:
    ``learning_rate * max(1, max_j mean(x_j^2)) > 8`` (see
    :data:`STABLE_RATE_TIMES_MEAN_SQUARE`).  The lecture's flower (mean
    squares 4.1 and 4.3) at learning rate 1.2 stays below it; the blobs data
    set (up to 51) is far above, and there its cost falls, then rises again.
    """
    mean_squares = xp.vecdot(X, X, axis=-1) / X.shape[1]  # vecdot: no temporary as large as X
    advice = ScaleAdvice(float(learning_rate), float(xp.max(mean_squares)))
    return advice if learning_rate * max(1.0, advice.largest) > STABLE_RATE_TIMES_MEAN_SQUARE else None


def check_seed(seed, what: str = "seed") -> None:
    """None or a non-negative integer: what seeds the NumPy Generators of initialisation and shuffles."""
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
                             or seed < 0):
        raise InvalidInputError(f"{what} must be a non-negative integer or None, got {seed!r}")


def check_binary(Y, xp, what: str = "Y") -> None:
    if not bool(xp.all((Y == 0.0) | (Y == 1.0))):
        raise InvalidInputError(f"{what} must hold binary labels 0 and 1 only")


def check_one_hot(Y, xp, what: str = "Y") -> None:
    """Y (n2, m) for a softmax output: 0/1 with exactly one 1 per example (column)."""
    check_binary(Y, xp, what)
    if not bool(xp.all(xp.sum(Y, axis=0) == 1.0)):
        raise InvalidInputError(
            f"{what} must be one-hot for a softmax output: exactly one 1 in each example's column")


def check_sample_weight(w, m: int, xp, what: str = "sample_weight") -> None:
    """``w`` holds m finite, non-negative weights, not all zero (one host read)."""
    if tuple(w.shape) not in ((m,), (1, m)):
        raise InvalidInputError(f"{what} has shape {tuple(w.shape)}; expected ({m},), one weight per example")
    fine = xp.all(xp.isfinite(w)) & xp.all(w >= 0.0) & (xp.sum(w) > 0.0)
    if not bool(fine):
        raise InvalidInputError(f"{what} must be finite and non-negative, and not all zero")


def check_parameters(parameters, n0: int | None = None, n2: int | None = None) -> tuple[int, int, int]:
    """Shapes of a parameters dict, against X's n0 and Y's n2 where given; returns (n0, n1, n2)."""
    if not isinstance(parameters, dict):
        raise InvalidTypeError(
            f"parameters must be a dict with keys {PARAMETER_NAMES}, got {type(parameters).__name__}")
    missing = [k for k in PARAMETER_NAMES if k not in parameters]
    if missing:
        raise InvalidInputError(f"parameters is missing {missing}; expected keys {PARAMETER_NAMES}")
    W1, b1, W2, b2 = (parameters[k] for k in PARAMETER_NAMES)
    if getattr(W1, "ndim", None) != 2 or getattr(W2, "ndim", None) != 2:
        raise InvalidInputError("parameters['W1'] and parameters['W2'] must be 2-D arrays")
    n1, n0_w = W1.shape
    n2_w = W2.shape[0]
    expected = {"W1": (n1, n0_w), "b1": (n1, 1), "W2": (n2_w, n1), "b2": (n2_w, 1)}
    for k in PARAMETER_NAMES:
        if tuple(parameters[k].shape) != expected[k]:
            raise InvalidInputError(
                f"parameters[{k!r}] has shape {tuple(parameters[k].shape)}, expected {expected[k]}")
    if n0 is not None and n0 != n0_w:
        raise InvalidInputError(f"X has {n0} features (rows) but W1 expects {n0_w}")
    if n2 is not None and n2 != n2_w:
        raise InvalidInputError(f"Y has {n2} outputs (rows) but W2 makes {n2_w}")
    return n0_w, n1, n2_w


def check_non_negative(value, what: str):
    """A finite number >= 0; NumPy scalars are accepted."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value >= 0 or not np.isfinite(value):
        raise InvalidInputError(f"{what} must be a non-negative finite number, got {value!r}")
    return value


def check_positive(value, what: str, *, integer: bool = False):
    """A positive number (an integer where ``integer``); NumPy scalars are accepted."""
    if integer:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    else:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not value > 0 or not np.isfinite(value):
            raise InvalidInputError(f"{what} must be a positive finite number, got {value!r}")
    return value


# -- the estimator's labels ------------------------------------------------------------------
#: The target types the estimator trains: one sigmoid output, a softmax over the classes,
#: or one sigmoid output per label.
TARGET_TYPES = ("binary", "multiclass", "multilabel-indicator")


#: The dtypes of numeric labels, by name; an indicator's predictions are cast to one of them.
NUMERIC_LABEL_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                        "float16", "float32", "float64")
_UNICODE_NAME = re.compile(r"[<>|=]?U[1-9][0-9]{0,8}")


def is_label_dtype_name(name: str) -> bool:
    """One of :data:`NUMERIC_LABEL_DTYPES`, or fixed-width unicode as NumPy names it ("<U5")."""
    return name in NUMERIC_LABEL_DTYPES or _UNICODE_NAME.fullmatch(name) is not None


def label_dtype_name(name: str, classes: np.ndarray, target_type: str) -> str:
    """y's dtype ``name`` as :class:`Labels` records it: always a name :func:`is_label_dtype_name` allows.

    Only an indicator's is used (predict casts its 0/1 to it): one of another dtype (bfloat16,
    longdouble) predicts float32.  Class labels of another dtype (Python objects, as a pandas
    Series of strings holds them) are named by their classes' dtype.
    """
    if is_label_dtype_name(name):
        return name
    return "float32" if target_type == "multilabel-indicator" else dtype_name(classes.dtype)


@dataclass(frozen=True)
class Labels:
    """What y holds: ``classes`` (host NumPy, sorted), ``target_type`` and y's ``dtype`` name."""

    classes: np.ndarray
    target_type: str
    dtype: str


def is_device_array(x) -> bool:
    """An array of another library than NumPy: checked where it lives, never pulled to the host."""
    return is_array_api_obj(x) and not isinstance(x, np.ndarray)


def dtype_name(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]  # "int64" from NumPy's, torch's or JAX's name


def _unique_on_host(y) -> np.ndarray:
    """y's distinct values, found where y lives; only they come to the host."""
    xp = array_namespace(y)
    try:
        values = xp.unique_values(y)
    except RuntimeError:  # array-api-strict without data-dependent shapes
        values = y
    return np.unique(backend_for_array(values).to_numpy(values))


def _warn_column(y):
    from sklearn.exceptions import DataConversionWarning

    warnings.warn("A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                  "to (n_samples,), for example using ravel().", DataConversionWarning, stacklevel=4)
    return array_namespace(y).reshape(y, (y.shape[0],))


def read_labels(y, n_samples: int):
    """``(y, labels)``: y as the estimator trains on it (a column vector becomes 1-D) and its :class:`Labels`.

    The target type is scikit-learn's: continuous or unknown targets are
    refused in its words, and so is a single class.
    """
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels

    if _is_sparse(y) or _is_sparse_tensor(y):
        as_array(y, "y")  # refuses it, naming y
    if y.ndim not in (1, 2):
        raise InvalidInputError(f"y must be 1-D (n_samples,) or 2-D (n_samples, n_labels); got shape {tuple(y.shape)}")
    if y.shape[0] != n_samples:
        raise InvalidInputError(f"Found input variables with inconsistent numbers of samples: [{n_samples}, "
                                f"{y.shape[0]}]")
    if y.ndim == 2 and y.shape[1] == 1:
        y = _warn_column(y)
    device_labels = is_device_array(y)
    if device_labels:
        check_dtype(y, "y")
        seen = _unique_on_host(y)  # a 1-D y's type follows from its distinct values
        if seen.dtype.kind == "f" and not np.all(np.isfinite(seen)):
            raise InvalidInputError(f"Input y contains {'NaN' if np.any(np.isnan(seen)) else 'infinity'}.")
        if y.ndim == 2:
            if not np.all((seen == 0) | (seen == 1)):
                raise InvalidInputError(
                    f"y is 2-D with values {seen[:5].tolist()}...: a multilabel indicator holds 0 and 1 only "
                    "(multiclass-multioutput targets are not supported)")
            seen = np.zeros((2, y.shape[1]), dtype=int)  # stands for an indicator of y's width
            seen[1] = 1
    else:
        seen = y
    try:
        target_type = type_of_target(seen, input_name="y")
        check_classification_targets(seen)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    except TypeError as exc:  # labels that cannot be sorted together
        raise InvalidInputError(f"y mixes labels of kinds that cannot be compared (strings and numbers?): "
                                f"{exc}") from None
    if target_type not in TARGET_TYPES:
        raise InvalidInputError(f"y is {target_type}; this classifier takes {', '.join(TARGET_TYPES)} targets")
    try:
        classes = np.asarray(seen if device_labels and y.ndim == 1 else unique_labels(seen))
    except ValueError as exc:  # a mix of strings and numbers
        raise InvalidInputError(str(exc)) from None
    if target_type != "multilabel-indicator" and classes.shape[0] < 2:
        raise InvalidInputError(f"y has only one class ({classes.tolist()[0]!r}); a classifier needs at least "
                                "2 classes")
    return y, Labels(classes, target_type, label_dtype_name(dtype_name(y.dtype), classes, target_type))


def encode_labels(y, labels: Labels):
    """Y (m, n_outputs) of 0/1 in y's library: the positive class's column for binary y,
    one-hot columns in ``classes`` order for multiclass y, y itself for an indicator."""
    xp = array_namespace(y)
    if labels.target_type == "multilabel-indicator":
        return y
    if labels.target_type == "binary":
        positive = labels.classes[1]
        positive = positive if isinstance(y, np.ndarray) else positive.item()
        return xp.reshape(y == positive, (y.shape[0], 1))
    classes = labels.classes if isinstance(y, np.ndarray) else xp.asarray(labels.classes, device=device(y))
    return xp.reshape(y, (y.shape[0], 1)) == xp.reshape(classes, (1, classes.shape[0]))


def labels_from_classes(P, labels: Labels):
    """Predicted labels from probabilities P (m, n_outputs), in P's library where labels are numbers."""
    xp = array_namespace(P)
    if labels.target_type == "multilabel-indicator":
        return xp.astype(P > 0.5, _numeric_label_dtype(xp, labels.dtype))
    if labels.target_type == "binary":
        index = xp.astype(P[:, 0] > 0.5, xp.int32)
    else:
        index = xp.argmax(P, axis=1)
    if isinstance(P, np.ndarray) or labels.classes.dtype.kind in "OUS":
        return labels.classes[backend_for_array(index).to_numpy(index)]  # strings live on the host
    return xp.take(xp.asarray(labels.classes, device=device(P)), index)


def _numeric_label_dtype(xp, name: str):
    """The dtype of ``xp`` that ``name`` names, looked up only once it is one of the allowed names:
    a name from a file reaches no other attribute (``getattr(numpy, "f2py")`` imports a module)."""
    if name not in NUMERIC_LABEL_DTYPES:
        raise InvalidInputError(f"an indicator's labels have one of the dtypes {', '.join(NUMERIC_LABEL_DTYPES)}; "
                                f"not {name!r}")
    return getattr(xp, name)


def follow(X, a):
    """``a`` (labels or weights) in X's library and on X's device, as scikit-learn moves them."""
    owner = backend_for_array(X)
    if is_array_api_obj(a) and owner.holds(a):
        return a
    host = backend_for_array(a).to_numpy(a) if is_array_api_obj(a) else np.asarray(a)
    return owner.asarray(host, dtype_name(host.dtype))


# -- columns matched by name --------------------------------------------------------------

def column_order(given, fitted, where: str) -> list | None:
    """The positions that put columns named ``given`` in the ``fitted`` order, or None where
    they are in it already.

    ``given`` (n,), ``fitted`` (n0,): column names.  A name given twice, a fitted name
    missing or a name the model was not fitted with is an InvalidInputError naming
    them (``where`` names the data: "X", a file).  Names are shown as repr() shows
    them, so a name read from a file cannot reach a terminal as a control sequence.
    """
    given, fitted = [str(n) for n in given], [str(n) for n in fitted]
    seen, twice = set(), []
    for name in given:
        if name in seen and name not in twice:
            twice.append(name)
        seen.add(name)
    if twice:
        raise InvalidInputError(f"{where} names the column(s) {_names(twice)} more than once; "
                                "columns are matched to the model's by name")
    known = set(fitted)
    missing, unseen = [n for n in fitted if n not in seen], [n for n in given if n not in known]
    if missing or unseen:
        parts = ([f"missing {_names(missing)}"] if missing else []) + \
                ([f"not in the model {_names(unseen)}"] if unseen else [])
        raise InvalidInputError(f"{where}'s columns do not match the {len(fitted)} the model was trained on: "
                                f"{'; '.join(parts)}")
    if given == fitted:
        return None
    at = {name: j for j, name in enumerate(given)}
    return [at[name] for name in fitted]


def in_fitted_order(X, fitted):
    """A data frame X with its columns in the order of ``fitted`` (n0,), the names it was fitted with.

    scikit-learn only compares the names and refuses another order; the columns
    are matched by name here instead, so that a reordered frame gives the same
    answers.  X without names (an array), or a model fitted without them, is
    returned as it is: scikit-learn's validate_data says once that it is taken
    by position.
    """
    from sklearn.utils.validation import _get_feature_names  # the names fit recorded, read the same way

    names = None if fitted is None else _get_feature_names(X)
    if names is None:
        return X
    order = column_order(names, fitted, "X")
    if order is None:
        return X
    columns = [str(n) for n in fitted]
    try:
        import narwhals as nw  # every data frame library scikit-learn reads names from (it depends on narwhals)
    except ImportError:  # an older scikit-learn reads names from pandas only
        return X[columns]
    return nw.from_native(X, eager_only=True).select(columns).to_native()


def _names(names: list, shown: int = 10) -> str:
    listed = ", ".join(repr(n) for n in names[:shown])
    return listed + (f" and {len(names) - shown} more" if len(names) > shown else "")
