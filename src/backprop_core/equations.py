"""The lecture's equations, written once against the Python Array API standard.

Examples are columns.  Shapes::

    X: (n0, m)   Y: (n2, m)
    W1: (n1, n0) b1: (n1, 1)  W2: (n2, n1)  b2: (n2, 1)
    Z1, A1: (n1, m)           Z2, A2: (n2, m)

This module imports no array library: the namespace comes from the arrays
(``array_api_compat.array_namespace``).  It never creates an array from
scratch (so it never has to choose a device), scalars are Python floats (so the
dtype of the data is kept), every update is functional (JAX arrays are
immutable), and nothing is converted to a host value.
"""

from __future__ import annotations

from array_api_compat import array_namespace

from .activations import Activation, sigmoid


def forward(X, W1, b1, W2, b2, g: Activation):
    """Forward propagation: returns ``(Z1, A1, Z2, A2)``."""
    Z1 = W1 @ X + b1
    A1 = g(Z1)
    Z2 = W2 @ A1 + b2
    A2 = sigmoid(Z2)
    return Z1, A1, Z2, A2


def backward(X, Y, W2, Z1, A1, A2, g: Activation, m: int | None = None):
    """Backward propagation: returns ``(dW1, db1, dW2, db2)``, averaged over m.

    ``m`` defaults to the number of columns of X.  A chunk of a larger batch
    passes the whole batch's m, so the chunks' gradients add up to the
    gradient of the whole batch.
    """
    xp = array_namespace(X, Y, A2)
    m = X.shape[1] if m is None else m
    dZ2 = A2 - Y
    dW2 = (1.0 / m) * (dZ2 @ A1.T)
    db2 = (1.0 / m) * xp.sum(dZ2, axis=1, keepdims=True)
    dZ1 = (W2.T @ dZ2) * g.prime(Z1, A1)
    dW1 = (1.0 / m) * (dZ1 @ X.T)
    db1 = (1.0 / m) * xp.sum(dZ1, axis=1, keepdims=True)
    return dW1, db1, dW2, db2


def update(W1, b1, W2, b2, dW1, db1, dW2, db2, learning_rate: float):
    """One gradient-descent update, ``W := W - alpha dW``, returning new arrays."""
    return (
        W1 - learning_rate * dW1,
        b1 - learning_rate * db1,
        W2 - learning_rate * dW2,
        b2 - learning_rate * db2,
    )


def cost_from_logits(Z2, Y, m: int | None = None):
    """Binary cross-entropy J = (1/m) sum over outputs and examples, from Z2.

    Uses ``log(1 + e^z) - y z = max(z, 0) - y z + log1p(e^-|z|)``, which is
    finite for every finite z, where ``log(A2)`` would give -inf once the
    sigmoid saturates.  Returns a 0-d array on Z2's device.  ``m`` as in
    :func:`backward`.
    """
    xp = array_namespace(Z2, Y)
    m = Z2.shape[1] if m is None else m
    absZ = xp.abs(Z2)
    loss = 0.5 * (Z2 + absZ) - Y * Z2 + xp.log1p(xp.exp(-absZ))
    return (1.0 / m) * xp.sum(loss)


def cost_from_probabilities(A2, Y):
    """Binary cross-entropy from A2, kept finite where A2 is exactly 0 or 1.

    A2 is clipped to [tiny, 1 - eps/2] of its dtype first, so a saturated
    prediction costs a large finite amount rather than inf or nan.  Prefer
    :func:`cost_from_logits` when Z2 is at hand: it needs no clipping.
    """
    xp = array_namespace(A2, Y)
    info = xp.finfo(A2.dtype)
    m = A2.shape[1]
    P = xp.clip(A2, float(info.smallest_normal), 1.0 - float(info.eps) / 2)
    loss = -(Y * xp.log(P) + (1.0 - Y) * xp.log1p(-P))
    return (1.0 / m) * xp.sum(loss)


def gradients(X, Y, W1, b1, W2, b2, g: Activation, m: int | None = None, with_cost: bool = False):
    """Forward then backward on X (n0, c): ``(dW1, db1, dW2, db2, J)``, scaled by 1/m.

    With ``m`` the size of the whole batch, the results for its chunks sum to
    the whole batch's gradients and cost (J is None unless ``with_cost``).
    """
    Z1, A1, Z2, A2 = forward(X, W1, b1, W2, b2, g)
    grads = backward(X, Y, W2, Z1, A1, A2, g, m)
    return (*grads, cost_from_logits(Z2, Y, m) if with_cost else None)


def step(X, Y, W1, b1, W2, b2, g: Activation, learning_rate: float, with_cost: bool = False):
    """One full-batch iteration: forward, backward, update.

    Returns ``(W1, b1, W2, b2, J)`` where J is the cost of the parameters that
    went *in* (``None`` unless ``with_cost``): it comes for free from this
    iteration's Z2.
    """
    dW1, db1, dW2, db2, J = gradients(X, Y, W1, b1, W2, b2, g, with_cost=with_cost)
    return (*update(W1, b1, W2, b2, dW1, db1, dW2, db2, learning_rate), J)
