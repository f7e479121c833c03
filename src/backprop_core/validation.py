"""Input checks that name the problem, and moving data onto a backend."""

from __future__ import annotations

import numpy as np
from array_api_compat import is_array_api_obj

from .backends import Backend, backend_for_array
from .parameters import NAMES as PARAMETER_NAMES


def as_array(x, what: str):
    """Accept arrays of any supported library, and lists/tuples as NumPy."""
    if x is None:
        raise ValueError(f"{what} is None; pass an array")
    if not is_array_api_obj(x):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what} could not be read as an array (ragged rows or non-numbers?): {exc}") from None
        if x.dtype == object:
            raise ValueError(f"{what} is ragged or holds non-numbers; it must be a rectangular numeric array")
    return x


def check_same_place(named: dict):
    """All arrays from one library and on one device; returns their adapter."""
    owners = {what: backend_for_array(x) for what, x in named.items()}
    (first_what, first), *rest = owners.items()
    for what, other in rest:
        if type(other) is not type(first):
            raise TypeError(
                f"{first_what} is a {first.name} array but {what} is a {other.name} array; "
                "pass arrays from one library"
            )
        if str(other.device) != str(first.device):
            raise ValueError(
                f"{first_what} is on device {first.device} but {what} is on device {other.device}; "
                "put them on one device"
            )
    return first


def _kind(x) -> str:
    name = str(x.dtype)
    if "bool" in name:
        return "bool"
    if "complex" in name:
        return "complex"
    if "int" in name:
        return "int"
    if "float" in name or "half" in name or "double" in name:
        return "float"
    return name


def check_dtype(x, what: str) -> None:
    kind = _kind(x)
    if kind == "complex":
        raise TypeError(f"{what} has complex dtype {x.dtype}; the network works on real numbers")
    if kind not in ("float", "int", "bool"):
        raise TypeError(f"{what} has dtype {x.dtype}, which is not numeric")


def to_backend(x, backend: Backend, dtype: str, what: str):
    """``x`` as a ``dtype`` array on ``backend``'s device.

    Integer and boolean inputs are cast to ``dtype`` (they are exact in it for
    labels and counts); the caller's array is never modified.
    """
    check_dtype(x, what)
    source = backend_for_array(x)
    if type(source) is type(backend) and str(source.device) == str(backend.device):
        xp = backend.xp
        target = backend.dtype(dtype)
        return x if x.dtype == target else xp.astype(x, target)
    return backend.asarray(source.to_numpy(x), dtype)


def check_shapes(X, Y) -> None:
    """X (n0, m) and Y (n2, m), both non-empty."""
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D with examples as columns, shape (n_x, m); got shape {tuple(X.shape)}")
    if Y.ndim != 2:
        raise ValueError(f"Y must be 2-D with examples as columns, shape (n_y, m); got shape {tuple(Y.shape)}")
    if X.shape[1] == 0 or X.shape[0] == 0:
        raise ValueError(f"X is empty (shape {tuple(X.shape)}); need at least one feature and one example")
    if Y.shape[0] == 0:
        raise ValueError("Y has no output rows; need at least one label per example")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X has {X.shape[1]} examples (columns) but Y has {Y.shape[1]}; they must match "
            "(examples are columns: X is (n_x, m), Y is (n_y, m))"
        )


def check_finite(x, xp, what: str) -> None:
    # One reduction and one host read per fit, before training starts.
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{what} contains NaN or infinite values")


def check_binary(Y, xp, what: str = "Y") -> None:
    if not bool(xp.all((Y == 0.0) | (Y == 1.0))):
        raise ValueError(f"{what} must hold binary labels 0 and 1 only")


def check_parameters(parameters, n0: int | None = None) -> tuple[int, int, int]:
    """Shapes of a parameters dict; returns (n0, n1, n2)."""
    if not isinstance(parameters, dict):
        raise TypeError(f"parameters must be a dict with keys {PARAMETER_NAMES}, got {type(parameters).__name__}")
    missing = [k for k in PARAMETER_NAMES if k not in parameters]
    if missing:
        raise ValueError(f"parameters is missing {missing}; expected keys {PARAMETER_NAMES}")
    W1, b1, W2, b2 = (parameters[k] for k in PARAMETER_NAMES)
    n1, n0_w = W1.shape
    n2 = W2.shape[0]
    expected = {"W1": (n1, n0_w), "b1": (n1, 1), "W2": (n2, n1), "b2": (n2, 1)}
    for k in PARAMETER_NAMES:
        if tuple(parameters[k].shape) != expected[k]:
            raise ValueError(f"parameters[{k!r}] has shape {tuple(parameters[k].shape)}, expected {expected[k]}")
    if n0 is not None and n0 != n0_w:
        raise ValueError(f"X has {n0} features (rows) but W1 expects {n0_w}")
    return n0_w, n1, n2


def check_positive(value, what: str, *, integer: bool = False):
    if integer:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0 or not np.isfinite(value):
            raise ValueError(f"{what} must be a positive finite number, got {value!r}")
    return value
