"""Input checks that name the problem, and moving data onto a backend."""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from .backends import Backend, backend_for_array
from .errors import InvalidInputError, InvalidTypeError
from .parameters import NAMES as PARAMETER_NAMES

DTYPES = ("float32", "float64")


def as_array(x, what: str):
    """Accept arrays of any supported library, and lists/tuples as NumPy."""
    if x is None:
        raise InvalidInputError(f"{what} is None; pass an array")
    if not is_array_api_obj(x):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"{what} could not be read as an array (ragged rows or non-numbers?): {exc}") from None
        if x.dtype == object:
            raise InvalidInputError(f"{what} is ragged or holds non-numbers; it must be a rectangular numeric array")
    return x


def holds(backend: Backend, x) -> bool:
    """Is ``x`` an array of ``backend``'s library on ``backend``'s device?"""
    return backend.owns(x) and backend.device_of(x) == backend.device


def check_same_place(named: dict) -> Backend:
    """All arrays from one library and on one device; returns their adapter."""
    owners = {what: backend_for_array(x) for what, x in named.items()}
    (first_what, first), *rest = owners.items()
    for what, other in rest:
        if type(other) is not type(first):
            raise InvalidTypeError(
                f"{first_what} is a {first.name} array but {what} is a {other.name} array; "
                "pass arrays from one library")
        if other.device != first.device:
            raise InvalidInputError(
                f"{first_what} is on device {first.device} but {what} is on device {other.device}; "
                "put them on one device")
    return first


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
    if holds(backend, x):
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


def check_finite(x, xp, what: str) -> None:
    # One reduction and one host read per fit, before training starts.
    if not bool(xp.all(xp.isfinite(x))):
        raise InvalidInputError(f"{what} contains NaN or infinite values")


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
