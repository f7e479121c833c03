"""The lecture's equations, written once against the Python Array API standard.

Examples are columns.  Shapes::

    X: (n0, m)   Y: (n2, m)   weights: (1, m)
    W1: (n1, n0) b1: (n1, 1)  W2: (n2, n1)  b2: (n2, 1)
    Z1, A1: (n1, m)           Z2, A2: (n2, m)

Two output layers share the backward equations: the lecture's sigmoid (each of
the n2 outputs an independent yes/no, cost the binary cross-entropy) and
softmax (one class of n2, cost the categorical cross-entropy).  For both, the
cost's gradient with respect to Z2 is A2 - Y, so only A2 and the cost change.

The course's next lecture adds an L2 penalty on the weights (:func:`l2_cost`,
:func:`penalized`); its update rules are in :mod:`backprop_core.optimizers`.

Sample weights (optional, one per example) make every mean over the examples
a weighted mean.  They are scaled by the caller to average 1 over the whole
batch, so the lecture's (1/m) stays: an example of weight 2 counts as two.

This module imports no array library: the namespace comes from the arrays
(``array_api_compat.array_namespace``).  It never creates an array from
scratch (so it never has to choose a device), scalars are Python floats (so the
dtype of the data is kept), every update is functional (JAX arrays are
immutable), and nothing is converted to a host value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from array_api_compat import array_namespace

from .activations import Activation, sigmoid
from .errors import InvalidInputError


# -- the output layers: A2 from Z2, and each example's loss from Z2 -------------------------
def sigmoid_loss(Z2, Y):
    """Binary cross-entropy of each output, (n2, m), from the logits Z2.

    Uses ``log(1 + e^z) - y z = max(z, 0) - y z + log1p(e^-|z|)``, which is
    finite for every finite z, where ``log(A2)`` would give -inf once the
    sigmoid saturates.
    """
    xp = array_namespace(Z2, Y)
    absZ = xp.abs(Z2)
    return 0.5 * (Z2 + absZ) - Y * Z2 + xp.log1p(xp.exp(-absZ))


def softmax(Z2):
    """A2 = e^Z2 / sum(e^Z2) over the outputs (axis 0): each column a distribution over n2 classes.

    The column's largest logit is subtracted first, which changes nothing
    mathematically and keeps every exponential at most 1.
    """
    xp = array_namespace(Z2)
    E = xp.exp(Z2 - xp.max(Z2, axis=0, keepdims=True))
    return E / xp.sum(E, axis=0, keepdims=True)


def softmax_loss(Z2, Y):
    """Categorical cross-entropy of each example, (1, m), from the logits Z2.

    ``-sum_k y_k log a_k = sum_k y_k (logsumexp(z) - z_k)``, which for a one-hot
    column is logsumexp(z) minus the true class's logit; logsumexp is computed
    around the column's maximum, so it is finite for every finite z.
    """
    xp = array_namespace(Z2, Y)
    Zmax = xp.max(Z2, axis=0, keepdims=True)
    logsumexp = Zmax + xp.log(xp.sum(xp.exp(Z2 - Zmax), axis=0, keepdims=True))
    return xp.sum(Y * (logsumexp - Z2), axis=0, keepdims=True)


@dataclass(frozen=True)
class Output:
    """An output layer: ``A2 = output(Z2)`` and ``output.loss(Z2, Y)``, each example's loss.

    Both outputs pair their activation with the cross-entropy whose gradient
    with respect to Z2 is ``A2 - Y``, which is what :func:`backward` relies on.
    """

    name: str
    function: Callable
    loss: Callable

    def __call__(self, Z2):
        return self.function(Z2)

    def __repr__(self) -> str:
        return f"Output({self.name!r})"


OUTPUTS = {
    "sigmoid": Output("sigmoid", sigmoid, sigmoid_loss),  # the lecture: independent yes/no outputs
    "softmax": Output("softmax", softmax, softmax_loss),  # one class out of n2
}
SIGMOID = OUTPUTS["sigmoid"]


def get_output(output: str | Output) -> Output:
    """Look an output layer up by name (or pass an :class:`Output` through)."""
    if isinstance(output, Output):
        return output
    try:
        return OUTPUTS[output]
    except (KeyError, TypeError):
        raise InvalidInputError(f"unknown output {output!r}; choose one of {sorted(OUTPUTS)}") from None


# -- the lecture's equations ------------------------------------------------------------------
def forward(X, W1, b1, W2, b2, g: Activation, output: Output = SIGMOID):
    """Forward propagation: returns ``(Z1, A1, Z2, A2)``."""
    Z1 = W1 @ X + b1
    A1 = g(Z1)
    Z2 = W2 @ A1 + b2
    A2 = output(Z2)
    return Z1, A1, Z2, A2


def backward(X, Y, W2, Z1, A1, A2, g: Activation, m: int | None = None, weights=None):
    """Backward propagation: returns ``(dW1, db1, dW2, db2)``, averaged over m.

    ``m`` defaults to the number of columns of X.  A chunk of a larger batch
    passes the whole batch's m, so the chunks' gradients add up to the
    gradient of the whole batch.  ``weights`` (1, m), if given, weigh each
    example's share of the mean (see the module's docstring).
    """
    xp = array_namespace(X, Y, A2)
    m = X.shape[1] if m is None else m
    dZ2 = A2 - Y
    if weights is not None:
        dZ2 = weights * dZ2  # every gradient below is a sum over examples of dZ2's columns
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


# -- L2 regularisation (the course's next lecture) -----------------------------------------
def l2_cost(W1, W2, alpha: float, m: int):
    """The L2 penalty ``(alpha / 2m) (||W1||^2 + ||W2||^2)`` (alpha is the course's lambda), 0-d.

    The weights only: the biases are not penalised.  ``m`` is the number of
    examples of the step (a mini-batch's size for a mini-batch step).
    """
    xp = array_namespace(W1, W2)
    return (alpha / (2.0 * m)) * (xp.sum(W1 * W1) + xp.sum(W2 * W2))


def penalized(W1, W2, dW1, db1, dW2, db2, J, alpha: float, m: int):
    """The gradients and cost with the L2 penalty: ``dW += (alpha / m) W`` (not db), ``J += l2_cost``.

    Returns ``(dW1, db1, dW2, db2, J)``; J stays None where no cost was
    computed.  Added once per step, after the chunks' gradients are summed
    (added per chunk it would count once per chunk).  ``alpha == 0`` returns
    the arrays untouched, so the unregularised step is bit for bit the lecture's.
    """
    if not alpha:
        return dW1, db1, dW2, db2, J
    dW1 = dW1 + (alpha / m) * W1
    dW2 = dW2 + (alpha / m) * W2
    return dW1, db1, dW2, db2, (None if J is None else J + l2_cost(W1, W2, alpha, m))


def cost_from_logits(Z2, Y, m: int | None = None, output: Output = SIGMOID, weights=None):
    """The cross-entropy J = (1/m) sum over examples (and outputs) of the loss, from Z2.

    Finite for every finite Z2 (see :func:`sigmoid_loss`, :func:`softmax_loss`).
    Returns a 0-d array on Z2's device.  ``m`` and ``weights`` as in :func:`backward`.
    """
    xp = array_namespace(Z2, Y)
    m = Z2.shape[1] if m is None else m
    loss = output.loss(Z2, Y)
    if weights is not None:
        loss = weights * loss
    return (1.0 / m) * xp.sum(loss)


def cost_from_probabilities(A2, Y, output: Output = SIGMOID):
    """The cross-entropy from A2, kept finite where A2 is exactly 0 or 1.

    A2 is clipped to [tiny, 1 - eps/2] of its dtype first, so a saturated
    prediction costs a large finite amount rather than inf or nan.  Prefer
    :func:`cost_from_logits` when Z2 is at hand: it needs no clipping.
    """
    xp = array_namespace(A2, Y)
    info = xp.finfo(A2.dtype)
    m = A2.shape[1]
    P = xp.clip(A2, float(info.smallest_normal), 1.0 - float(info.eps) / 2)
    if output.name == "softmax":
        loss = -(Y * xp.log(P))
    else:
        loss = -(Y * xp.log(P) + (1.0 - Y) * xp.log1p(-P))
    return (1.0 / m) * xp.sum(loss)


def gradients(X, Y, W1, b1, W2, b2, g: Activation, m: int | None = None, with_cost: bool = False,
              output: Output = SIGMOID, weights=None):
    """Forward then backward on X (n0, c): ``(dW1, db1, dW2, db2, J)``, scaled by 1/m.

    With ``m`` the size of the whole batch, the results for its chunks sum to
    the whole batch's gradients and cost (J is None unless ``with_cost``).
    ``weights`` (1, c): the chunk's slice of the batch's weights.
    """
    Z1, A1, Z2, A2 = forward(X, W1, b1, W2, b2, g, output)
    grads = backward(X, Y, W2, Z1, A1, A2, g, m, weights)
    return (*grads, cost_from_logits(Z2, Y, m, output, weights) if with_cost else None)


def step(X, Y, W1, b1, W2, b2, g: Activation, learning_rate: float, with_cost: bool = False,
         output: Output = SIGMOID, weights=None):
    """One full-batch iteration: forward, backward, update.

    Returns ``(W1, b1, W2, b2, J)`` where J is the cost of the parameters that
    went *in* (``None`` unless ``with_cost``): it comes for free from this
    iteration's Z2.
    """
    dW1, db1, dW2, db2, J = gradients(X, Y, W1, b1, W2, b2, g, with_cost=with_cost, output=output,
                                      weights=weights)
    return (*update(W1, b1, W2, b2, dW1, db1, dW2, db2, learning_rate), J)
