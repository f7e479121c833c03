"""Activation functions, each with its derivative beside it.

Every function takes arrays of any shape from any Array API namespace and
returns an array of the same shape, dtype and device.  Nothing here creates a
new array from scratch, so nothing here needs ``device=``.

An :class:`Activation` is called as the lecture writes it, ``A1 = g(Z1)``, and
its derivative ``g.prime(Z1, A1)`` receives both the pre-activation and the
activation because some derivatives are cheapest from one, some from the other
(tanh' = 1 - A**2 reuses A; relu' needs only the sign of Z).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from array_api_compat import array_namespace

from .errors import InvalidInputError


@dataclass(frozen=True)
class Activation:
    """A hidden-layer activation: ``g(Z)``, and its derivative ``g.prime(Z, A)`` with A = g(Z)."""

    name: str
    function: Callable
    derivative: Callable

    def __call__(self, Z):
        return self.function(Z)

    def prime(self, Z, A):
        return self.derivative(Z, A)

    def __repr__(self) -> str:
        return f"Activation({self.name!r})"


# --- tanh: g(z) = tanh z --------------------------- g'(z) = 1 - tanh(z)^2
def tanh(Z):
    return array_namespace(Z).tanh(Z)


def tanh_prime(Z, A):
    return 1.0 - A * A


# --- sigmoid: g(z) = 1 / (1 + e^-z) ---------------- g'(z) = g(z) (1 - g(z))
def sigmoid(Z):
    # exp(-|z|) never overflows, so both branches are finite for every z;
    # 1/(1 + e^-z) for z >= 0 and e^z/(1 + e^z) for z < 0 are the same function.
    xp = array_namespace(Z)
    E = xp.exp(-xp.abs(Z))
    return xp.where(Z >= 0, 1.0 / (1.0 + E), E / (1.0 + E))


def sigmoid_prime(Z, A):
    return A * (1.0 - A)


# --- relu: g(z) = max(z, 0) ------------------------ g'(z) = [z > 0]
def relu(Z):
    # (z + |z|) / 2 is max(z, 0) without a scalar-array maximum, which older
    # Array API versions do not allow.
    return 0.5 * (Z + array_namespace(Z).abs(Z))


def relu_prime(Z, A):
    xp = array_namespace(Z)
    return xp.astype(Z > 0, Z.dtype)


# --- leaky relu: g(z) = z if z > 0 else a z -------- g'(z) = 1 if z > 0 else a
LEAKY_SLOPE = 0.01


def leaky_relu(Z):
    xp = array_namespace(Z)
    return xp.where(Z > 0, Z, LEAKY_SLOPE * Z)


def leaky_relu_prime(Z, A):
    xp = array_namespace(Z)
    return LEAKY_SLOPE + (1.0 - LEAKY_SLOPE) * xp.astype(Z > 0, Z.dtype)


ACTIVATIONS = {
    "tanh": Activation("tanh", tanh, tanh_prime),
    "sigmoid": Activation("sigmoid", sigmoid, sigmoid_prime),
    "relu": Activation("relu", relu, relu_prime),
    "leaky_relu": Activation("leaky_relu", leaky_relu, leaky_relu_prime),
}


def get_activation(activation: str | Activation) -> Activation:
    """Look an activation up by name (or pass an :class:`Activation` through)."""
    if isinstance(activation, Activation):
        return activation
    try:
        return ACTIVATIONS[activation]
    except (KeyError, TypeError):
        raise InvalidInputError(
            f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None
