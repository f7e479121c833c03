"""The parameters dict ``{"W1", "b1", "W2", "b2"}`` over the equations, which take arrays.

Every strategy goes through these few lines, so the order of the four arrays
is written once.
"""

from __future__ import annotations

from . import equations

NAMES = ("W1", "b1", "W2", "b2")


def unpack(params: dict) -> tuple:
    """``(W1, b1, W2, b2)``."""
    return tuple(params[k] for k in NAMES)


def pack(arrays) -> dict:
    return dict(zip(NAMES, arrays))


def updated(params: dict, grads, learning_rate: float) -> dict:
    """New parameters after one step along ``grads = (dW1, db1, dW2, db2)``."""
    return pack(equations.update(*unpack(params), *grads, learning_rate))


def add_parts(acc, part):
    """Element-wise sum of two gradient tuples (a None cost stays None); ``acc`` may be None."""
    if acc is None:
        return part
    return tuple(None if a is None else a + b for a, b in zip(acc, part))


def split_weights(Y, weighted: bool):
    """``(Y, weights)``: the labels (n2, m) and, for a weighted fit, the weights (1, m) under them."""
    return (Y[:-1, ...], Y[-1:, ...]) if weighted else (Y, None)
