"""What a model file's metadata may hold, and the checks of a whole model that saving and loading share.

A model file (:mod:`backprop_core.persistence`) records the estimator's
hyperparameters and, for a fitted estimator, what it reads back: its classes,
target type, output layer and feature names.  ``METADATA`` and
``HYPERPARAMETERS`` name every field and its type, in one place;
:func:`check_model` checks the parameters and the metadata against each other, so a
file is written only if it would load, and loads only if it is whole.  Nothing
here looks anything up by a string read from a file except through an allowlist.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import numpy as np

from .activations import ACTIVATIONS
from .errors import InvalidInputError
from .validation import NUMERIC_LABEL_DTYPES, check_parameters, is_label_dtype_name

#: The format a model file names, and the only one read.
FORMAT = "backprop-core/1"
#: The metadata JSON may be at most this many characters long.
MAX_METADATA_CHARS = 10_000_000
#: ... so its member, a NumPy unicode array of 4 bytes a character, at most this many bytes.
MAX_METADATA_BYTES = 4 * MAX_METADATA_CHARS
#: The fitted classes, as the fixed-width array they load into, may take at most this many
#: bytes: no more than the metadata member itself may (a short text of one long class and
#: many short ones would otherwise pad out to far more).
MAX_CLASSES_BYTES = MAX_METADATA_BYTES


class Problem(Exception):
    """What is wrong with a model, in words; the caller names the file."""


# -- what the metadata may hold --------------------------------------------------------

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _is_str(v):
    return isinstance(v, str)


def _is_none(v):
    return v is None


def _either(*tests):
    return lambda v: any(test(v) for test in tests)


def _one_of(*values):
    # type() as well as ==, so that True is not taken for 1.
    return lambda v: any(type(v) is type(x) and v == x for x in values)


def _is_class_weights(v):
    return isinstance(v, list) and all(
        isinstance(p, list) and len(p) == 2 and (isinstance(p[0], (str, bool)) or _is_number(p[0]))
        and _is_number(p[1]) for p in v)


def _is_history(v):
    return isinstance(v, list) and all(
        isinstance(h, list) and len(h) == 2 and _is_int(h[0]) and h[0] >= 0 and _is_number(h[1]) for h in v)


#: The estimator's hyperparameters (``BackpropClassifier.get_params()``) and the JSON types
#: each may have.  Only types are checked: the estimator checks ranges when it fits.
HYPERPARAMETERS = {
    "hidden_units": (_is_int, "an integer"),
    "activation": (_is_str, "a string"),
    "optimizer": (_is_str, "a string"),
    "learning_rate_init": (_is_number, "a finite number"),
    "max_iter": (_is_int, "an integer"),
    "alpha": (_is_number, "a finite number"),
    "random_state": (_either(_is_int, _is_none), "an integer or null"),
    "class_weight": (_either(_is_none, _one_of("balanced"), _is_class_weights), '"balanced", null or '
                     "a list of [label, weight] pairs"),
    "warm_start": (_one_of(True, False), "true or false"),
    "momentum": (_is_number, "a finite number"),
    "beta_1": (_is_number, "a finite number"),
    "beta_2": (_either(_is_number, _is_none), "a finite number or null"),
    "epsilon": (_is_number, "a finite number"),
    # the old names of learning_rate_init, max_iter and random_state (files written before keep them)
    "learning_rate": (_either(_is_number, _is_none, _one_of("constant")), 'a finite number, "constant" or null'),
    "num_iterations": (_either(_is_int, _is_none), "an integer or null"),
    "backend": (_is_str, "a string"),
    "device": (_either(_is_str, _is_int, _is_none), "a string, an integer or null"),
    "dtype": (_one_of(None, "float32", "float64"), '"float32", "float64" or null'),
    "seed": (_either(_is_int, _is_none), "an integer or null"),
    "init": (_is_str, "a string"),
    "cost_every": (_either(_is_int, _one_of("auto")), 'an integer or "auto"'),
    "batch_size": (_either(_is_int, _is_none, _one_of("auto")), 'an integer, "auto" or null'),
    "epochs": (_either(_is_int, _is_none), "an integer or null"),
    "early_stopping": (_one_of(True, False), "true or false"),
    "validation_fraction": (_is_number, "a finite number"),
    "n_iter_no_change": (_either(_is_int, _is_none), "an integer or null"),
    "tol": (_is_number, "a finite number"),
    "verbose": (_either(_one_of(True, False), _is_int), "true, false or an integer"),
    "standardize": (_one_of(True, False), "true or false"),
}

#: The execution's settings (:mod:`backprop_core.execution`), which files written while they were
#: the estimator's parameters still hold: checked as those files wrote them, and not read.
EXECUTION_SETTINGS = {
    "chunk_size": (_either(_is_int, _one_of("auto", None)), 'an integer, "auto" or null'),
    "workers": (_either(_is_int, _is_none), "an integer or null"),
    "parallel": (_one_of("auto", "threads", "processes"), '"auto", "threads" or "processes"'),
    "stream": (_one_of(True, False, "auto"), 'true, false or "auto"'),
    "fused": (_one_of(True, False, "auto"), 'true, false or "auto"'),
    "iteration_timeout": (_is_number, "a finite number"),
}


def _is_label_list(v):
    return isinstance(v, list) and len(v) > 0 and all(
        isinstance(c, (str, bool)) or _is_number(c) for c in v)


#: The NumPy dtype strings (``dtype.str``) classes may be written with: booleans, signed and
#: unsigned integers, floats, fixed-width unicode.  Only these are ever made into a dtype.
_CLASSES_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248]|U[1-9][0-9]{0,8})")


def _is_classes_dtype(v):
    return isinstance(v, str) and _CLASSES_DTYPE.fullmatch(v) is not None


def _is_name_list(v):
    return isinstance(v, list) and all(isinstance(n, str) for n in v)


def _is_number_list(v, positive=False):
    return isinstance(v, list) and len(v) > 0 and all(_is_number(x) and (x > 0 or not positive) for x in v)


def _is_hyperparameters(v):
    return isinstance(v, dict)  # its entries are checked one by one, to name the bad one


#: ``required`` of the fields a fitted model records together (``BackpropClassifier.fit`` since
#: it fits labels): a file has all of them or, written before, none.
LABELS = "with the labels"

#: Top-level metadata keys: (required, test, what it must be).  The estimator reads the
#: required ones (``BackpropClassifier.load``); any other key is refused.  Beyond its type,
#: every field is checked against the others and the weights (:func:`check_model`).
METADATA = {
    "format": (True, _one_of(FORMAT), f"{FORMAT!r}"),
    "params": (True, _is_hyperparameters, "an object of hyperparameters"),
    "dtype": (True, _one_of("float32", "float64"), '"float32" or "float64"'),
    "y_ndim": (False, _one_of(1, 2), "1 or 2"),
    "n_iter": (True, lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "cost_history": (True, _is_history, "a list of [iteration, finite cost] pairs"),
    "estimator": (False, _is_str, "a string"),
    "n_features_in": (False, lambda v: _is_int(v) and v > 0, "a positive integer"),
    "n_outputs": (False, lambda v: _is_int(v) and v > 0, "a positive integer"),
    "classes": (LABELS, _is_label_list, "a non-empty list of labels (strings, numbers or booleans)"),
    "classes_dtype": (LABELS, _is_classes_dtype, 'the NumPy dtype string of booleans, integers, floats or '
                      'unicode ("|b1", "<i8", "|u1", "<f8", "<U5", ...)'),
    "target_type": (LABELS, _one_of("binary", "multiclass", "multilabel-indicator"),
                    '"binary", "multiclass" or "multilabel-indicator"'),
    "label_dtype": (LABELS, lambda v: isinstance(v, str) and is_label_dtype_name(v),
                    f"one of {', '.join(NUMERIC_LABEL_DTYPES)} or a unicode dtype such as '<U5'"),
    "activation": (LABELS, _one_of(*ACTIVATIONS), f"one of {', '.join(ACTIVATIONS)}"),
    "output": (LABELS, _one_of("sigmoid", "softmax"), '"sigmoid" or "softmax"'),
    "feature_names_in": (False, _either(_is_none, _is_name_list), "a list of strings or null"),
    "feature_mean": (False, _either(_is_none, _is_number_list), "a list of finite numbers or null"),
    "feature_scale": (False, _either(_is_none, lambda v: _is_number_list(v, positive=True)),
                      "a list of positive finite numbers or null"),
}


def classes_of(meta: dict) -> np.ndarray:
    """The fitted classes (k,) a checked model file records, in the dtype its ``classes_dtype`` names.

    Fixed-width strings are made as wide as the longest class, whatever wider width the
    file declares, so the array is bounded by the file's own text.
    """
    try:
        return _classes(meta)
    except Problem as problem:  # load_parameters has refused such a file already
        raise InvalidInputError(str(problem)) from None


# -- the checks shared by saving and loading ---------------------------------------------

def check_model(parameters: dict, meta: dict) -> None:
    """Parameters finite, shapes consistent with each other and with the metadata; metadata typed,
    and what the estimator reads (labels, output layer, features) consistent with itself and the weights."""
    for name, A in parameters.items():
        check_layout(name, A.dtype, A.shape)
        bad = int(A.size - np.count_nonzero(np.isfinite(A)))
        if bad:
            raise Problem(f"{name} holds {bad} NaN or infinite value(s)")
    try:
        n0, n1, n2 = check_parameters(parameters)
    except ValueError as exc:
        raise Problem(str(exc)) from None
    _check_metadata(meta)
    recorded = {"n_features_in": (meta.get("n_features_in"), n0, "n0, the columns of W1"),
                "n_outputs": (meta.get("n_outputs"), n2, "n2, the rows of W2"),
                "params.hidden_units": (meta["params"].get("hidden_units"), n1, "n1, the rows of W1")}
    for key, (value, actual, what) in recorded.items():
        if value is not None and value != actual:
            raise Problem(f"metadata {key} is {value} but {what} is {actual}")
    if _labelled(meta):
        _check_labels(meta, n2)
    else:
        _check_unlabelled(meta, n2)
    _check_features(meta, n0)


def check_layout(name: str, dtype: np.dtype, shape: tuple) -> None:
    """A parameter's dtype and shape, of its array or, before its data are read, of its .npy header."""
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise Problem(f"{name} has dtype {dtype}; parameters are float32 or float64")
    if len(shape) != 2 or min(shape) < 1:
        raise Problem(f"{name} has shape {shape}; parameters are non-empty 2-D arrays")


def _check_metadata(meta: dict) -> None:
    unknown = sorted(set(meta) - set(METADATA))
    if unknown:
        raise Problem(f"its metadata has unknown key(s) {unknown}; known: {sorted(METADATA)}")
    labelled = _labelled(meta)
    for key, (required, test, what) in METADATA.items():
        if key not in meta:
            if required is True:
                raise Problem(f"its metadata has no {key!r}")
            if required == LABELS and labelled:
                raise Problem(f"its metadata has no {key!r}, which a fitted model records with "
                              f"{', '.join(labelled)}")
        elif not test(meta[key]):
            raise Problem(f"metadata {key} must be {what}, not {_shown(meta[key])}")
    known = HYPERPARAMETERS | EXECUTION_SETTINGS
    unknown = sorted(set(meta["params"]) - set(known))
    if unknown:
        raise Problem(f"its metadata names unknown hyperparameter(s) {unknown}; known: {sorted(HYPERPARAMETERS)}")
    for key, value in meta["params"].items():
        test, what = known[key]
        if not test(value):
            raise Problem(f"hyperparameter {key} must be {what}, not {_shown(value)}")


def _labelled(meta: dict) -> list:
    """The fields recorded ``with the labels`` that ``meta`` holds: none in a file written before."""
    return [key for key, (required, _, _) in METADATA.items() if required == LABELS and key in meta]


def _shown(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


# -- what the estimator reads, checked against itself and the weights --------------------

def _check_labels(meta: dict, n2: int) -> None:
    """The classes, target type and output layer as scikit-learn's type implies them, and W2's n2 rows.

    binary: 2 classes, one sigmoid row; multiclass: k >= 3 classes, a softmax over k rows;
    multilabel-indicator: classes 0 .. k-1, one sigmoid row per label.
    """
    classes, target, output = _classes(meta), meta["target_type"], meta["output"]
    k = classes.shape[0]
    if target == "binary" and k != 2:
        raise Problem(f"target_type binary has 2 classes, but classes holds {k}")
    if target == "multiclass" and k < 3:
        raise Problem(f"target_type multiclass has at least 3 classes (2 are binary), but classes holds {k}")
    if target == "multilabel-indicator":
        if classes.dtype.kind not in "iu" or classes.tolist() != list(range(k)):
            raise Problem(f"target_type multilabel-indicator has classes 0, 1, .., k-1 (one per output), "
                          f"not {_shown(meta['classes'])}")
        if meta["label_dtype"] not in NUMERIC_LABEL_DTYPES:
            raise Problem(f"label_dtype of a multilabel-indicator is one of {', '.join(NUMERIC_LABEL_DTYPES)}, "
                          f"not {meta['label_dtype']!r}")
    wanted = "softmax" if target == "multiclass" else "sigmoid"
    if output != wanted:
        raise Problem(f"target_type {target} is trained with a {wanted} output, but output is {output!r}")
    rows = 1 if target == "binary" else k
    if n2 != rows:
        raise Problem(f"target_type {target} with {k} classes has {rows} output row{'s' * (rows > 1)}, "
                      f"but W2 has {n2}")
    y_ndim = 2 if target == "multilabel-indicator" else 1
    if meta.get("y_ndim", y_ndim) != y_ndim:
        raise Problem(f"metadata y_ndim is {meta['y_ndim']} but target_type {target} is {y_ndim}-D")


def _check_unlabelled(meta: dict, n2: int) -> None:
    """A file written before labels were fitted: 0/1 labels, the sigmoid output, the activation of params."""
    if meta.get("y_ndim", 1) == 1 and n2 != 1:
        raise Problem(f"metadata y_ndim is 1 (one output{'' if 'y_ndim' in meta else ', as a file without it'}) "
                      f"but W2 has {n2} rows")
    activation = meta["params"].get("activation", "tanh")
    if activation not in ACTIVATIONS:
        raise Problem(f"hyperparameter activation, which the weights were trained with, must be one of "
                      f"{', '.join(ACTIVATIONS)}, not {_shown(activation)}")


def _classes(meta: dict) -> np.ndarray:
    """``classes`` as an array of ``classes_dtype``: each value of that kind, sorted and distinct."""
    values, text = meta["classes"], meta["classes_dtype"]
    body = _CLASSES_DTYPE.fullmatch(text).group(1)  # only what the allowlist matched becomes a dtype
    kind = body[0]
    fits = {"b": lambda c: isinstance(c, bool), "i": _is_int, "u": _is_int, "U": _is_str,
            "f": lambda c: _is_number(c) and not isinstance(c, bool)}[kind]
    unfit = [c for c in values if not fits(c)]
    if unfit:
        raise Problem(f"classes of dtype {text} cannot hold {_shown(unfit[0])}")
    if kind == "U":
        longest = max(len(c) for c in values)
        if longest > int(body[1:]):
            raise Problem(f"classes_dtype {text} would cut the longest class ({longest} characters) short")
        dtype = np.dtype(f"U{max(longest, 1)}")
    else:
        dtype = np.dtype(body).newbyteorder("=")
    if len(values) * dtype.itemsize > MAX_CLASSES_BYTES:
        raise Problem(f"its {len(values)} classes take {len(values) * dtype.itemsize} bytes as {dtype}, "
                      f"more than the limit of {MAX_CLASSES_BYTES}")
    if kind in "iu":
        info = np.iinfo(dtype)
        outside = [c for c in values if not info.min <= c <= info.max]
        if outside:
            raise Problem(f"classes of dtype {text} cannot hold {outside[0]}")
    with np.errstate(over="ignore"):
        classes = np.asarray(values, dtype=dtype)
    if kind == "f" and not np.all(np.isfinite(classes)):
        raise Problem(f"classes of dtype {text} cannot hold {_shown(values)}: it overflows")
    if kind == "U" and classes.tolist() != values:  # NumPy drops trailing NULs
        raise Problem(f"classes {_shown(values)} are not kept whole by a NumPy unicode array")
    if np.unique(classes).shape[0] != classes.shape[0]:
        raise Problem(f"classes must be distinct, as fit records them: {_shown(values)}")
    if np.any(classes[1:] < classes[:-1]):
        raise Problem(f"classes must be sorted, as fit records them: {_shown(values)}")
    return classes


def _check_features(meta: dict, n0: int) -> None:
    """Feature names, one per column of W1; feature_mean and feature_scale exactly where standardize is."""
    names = meta.get("feature_names_in")
    if names is not None and len(names) != n0:
        raise Problem(f"feature_names_in has {len(names)} names for a model of {n0} features "
                      "(n0, the columns of W1)")
    if names is not None and len(set(names)) != len(names):  # columns are matched to them by name
        twice = sorted(n for n, count in Counter(names).items() if count > 1)
        raise Problem(f"feature_names_in names {_shown(twice)} more than once")
    mean, scale = meta.get("feature_mean"), meta.get("feature_scale")
    standardize = meta["params"].get("standardize", False)
    if (mean is None) != (scale is None):
        raise Problem("it has one of feature_mean and feature_scale without the other")
    if standardize and mean is None:
        raise Problem("hyperparameter standardize is true but feature_mean and feature_scale are missing")
    if not standardize and mean is not None:
        raise Problem("it has feature_mean and feature_scale but hyperparameter standardize is not true")
    if mean is not None and not len(mean) == len(scale) == n0:
        raise Problem(f"feature_mean has {len(mean)} and feature_scale {len(scale)} entries "
                      f"for a model of {n0} features")
    if mean is not None:
        _check_scaling(mean, scale, meta["dtype"])


def _check_scaling(mean: list, scale: list, dtype: str) -> None:
    """(X - mean) / scale is computed in the model's dtype: each mean finite there, each scale a
    positive normal number there (a subnormal one, such as 5e-324, makes every prediction NaN)."""
    info = np.finfo(dtype)
    tiny, largest = float(info.smallest_normal), float(info.max)  # Python floats: compared without a cast
    for j, x in enumerate(mean):
        if not abs(x) <= largest:
            raise Problem(f"feature_mean[{j}] is {x!r}, beyond the largest {dtype} ({largest:.6g})")
    for j, s in enumerate(scale):
        if not tiny <= s <= largest:
            raise Problem(f"feature_scale[{j}] is {s!r}; a scale is a positive normal {dtype} number, "
                          f"{tiny:.6g} to {largest:.6g}")
