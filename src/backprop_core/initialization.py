"""Initial parameters, drawn on the host from a seeded NumPy Generator.

Drawing on the host, then moving to the backend, makes every backend start
from identical weights, so their results can be compared number for number.
All-zero weights would leave every hidden unit identical (they would receive
identical gradients forever), which is why the weights are random.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InvalidInputError

INITS = ("normal", "xavier", "he", "course")


def _scale(init: str, fan_in: int, fan_out: int) -> float:
    if init in ("normal", "course"):  # the lecture: standard normal x 0.01
        return 0.01
    if init == "xavier":  # Glorot: keeps the variance of tanh/sigmoid layers
        return math.sqrt(2.0 / (fan_in + fan_out))
    if init == "he":  # He: keeps the variance of relu layers
        return math.sqrt(2.0 / fan_in)
    raise InvalidInputError(f"unknown init {init!r}; choose one of {list(INITS)}")


def initial_parameters_host(n0: int, n1: int, n2: int, init: str = "normal", seed=0) -> dict:
    """float64 NumPy parameters: W1 (n1, n0), b1 (n1, 1), W2 (n2, n1), b2 (n2, 1).

    ``init="course"`` draws as the course's ``initialize_parameters`` does, with NumPy's legacy
    generator: ``np.random.seed(seed)``, then ``randn(n_h, n_x) * 0.01`` and ``randn(n_y, n_h) * 0.01``
    (the course's seed is 2); the others draw from ``numpy.random.default_rng(seed)``.
    """
    for label, n in (("n_x (input features)", n0), ("n_h (hidden units)", n1), ("n_y (outputs)", n2)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
            raise InvalidInputError(f"{label} must be a positive integer, got {n!r}")
    if init == "course":
        legacy = np.random.RandomState(seed)  # the global np.random.seed(seed) sequence, left untouched
        return {"W1": legacy.randn(n1, n0) * 0.01, "b1": np.zeros((n1, 1)),
                "W2": legacy.randn(n2, n1) * 0.01, "b2": np.zeros((n2, 1))}
    rng = np.random.default_rng(seed)
    return {
        "W1": rng.standard_normal((n1, n0)) * _scale(init, n0, n1),
        "b1": np.zeros((n1, 1)),
        "W2": rng.standard_normal((n2, n1)) * _scale(init, n1, n2),
        "b2": np.zeros((n2, 1)),
    }
