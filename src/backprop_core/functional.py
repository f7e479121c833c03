"""The lecture's programming exercise, step by step, in its own names.

Examples are columns: X is (n_x, m), Y is (n_y, m).  ``parameters``, ``cache``
and ``grads`` are dicts keyed ``W1 b1 W2 b2``, ``Z1 A1 Z2 A2`` and
``dW1 db1 dW2 db2``.  The step functions work in whatever library X comes
from; :func:`initialize_parameters` and :func:`nn_model` take ``backend=``.

The output layer is the lecture's sigmoid unless ``output="softmax"`` is
given (Y one-hot, one class per example); the backward step is the same.
"""

from __future__ import annotations

from array_api_compat import array_namespace, device

from . import equations
from . import parameters as params
from .activations import get_activation
from .backends import get_backend
from .equations import get_output
from .initialization import initial_parameters_host
from .errors import InvalidInputError
from .training import fit
from .validation import check_parameters, check_positive


def layer_sizes(X, Y, n_h: int = 4):
    """``(n_x, n_h, n_y)``: input size, hidden size (the lecture's 4), output size."""
    return X.shape[0], n_h, Y.shape[0]


def initialize_parameters(n_x: int, n_h: int, n_y: int, *, init: str = "normal", seed=0,
                          backend="numpy", device=None, dtype: str | None = None) -> dict:
    """Random weights (standard normal x 0.01 by default), zero biases.

    Drawn in float64 on the host from ``numpy.random.default_rng(seed)`` and
    moved to ``backend``/``device`` as ``dtype`` (the backend's default if None).
    """
    backend = get_backend(backend, device)
    dtype = dtype or backend.default_dtype
    host = initial_parameters_host(n_x, n_h, n_y, init, seed)
    return backend.parameters_from_host(host, dtype)


def forward_propagation(X, parameters: dict, *, activation="tanh", output="sigmoid"):
    """Returns ``(A2, cache)`` with A2 of shape (n_y, m)."""
    g, out = get_activation(activation), get_output(output)
    check_parameters(parameters, X.shape[0])
    Z1, A1, Z2, A2 = equations.forward(X, *params.unpack(parameters), g, out)
    return A2, {"Z1": Z1, "A1": A1, "Z2": Z2, "A2": A2}


def compute_cost(A2, Y, *, cache: dict | None = None, output="sigmoid") -> float:
    """Cross-entropy cost as a Python float (as in the lecture; it reads the device).

    Binary cross-entropy for the sigmoid output, categorical for softmax.
    Finite even when A2 saturates at exactly 0 or 1: with ``cache`` it is
    computed exactly from Z2; without, A2 is clipped just inside (0, 1).
    """
    out = get_output(output)
    if A2.shape != Y.shape:
        raise InvalidInputError(f"A2 has shape {tuple(A2.shape)} but Y has shape {tuple(Y.shape)}")
    xp = array_namespace(A2)
    Y = xp.astype(Y, A2.dtype) if Y.dtype != A2.dtype else Y
    if cache is not None:
        return float(equations.cost_from_logits(cache["Z2"], Y, output=out))
    return float(equations.cost_from_probabilities(A2, Y, out))


def backward_propagation(parameters: dict, cache: dict, X, Y, *, activation="tanh") -> dict:
    """Gradients of the cost: ``{"dW1", "db1", "dW2", "db2"}``, each the shape of its parameter."""
    g = get_activation(activation)
    xp = array_namespace(X)
    Y = xp.astype(Y, X.dtype) if Y.dtype != X.dtype else Y
    dW1, db1, dW2, db2 = equations.backward(X, Y, parameters["W2"], cache["Z1"], cache["A1"], cache["A2"], g)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


def update_parameters(parameters: dict, grads: dict, learning_rate: float = 1.2) -> dict:
    """``W := W - learning_rate * dW`` for every parameter; returns a new dict."""
    check_positive(learning_rate, "learning_rate")
    return params.updated(parameters, [grads["d" + k] for k in params.NAMES], learning_rate)


def predict(parameters: dict, X, *, activation="tanh", output="sigmoid"):
    """0/1 predictions, shape (n_y, m), in X's float dtype.

    Sigmoid: each output's A2 > 0.5.  Softmax: one-hot columns, a 1 at the
    most probable class.
    """
    A2, _ = forward_propagation(X, parameters, activation=activation, output=output)
    xp = array_namespace(A2)
    if get_output(output).name == "softmax":
        rows = xp.reshape(xp.arange(A2.shape[0], device=device(A2)), (A2.shape[0], 1))
        return xp.astype(rows == xp.argmax(A2, axis=0, keepdims=True), A2.dtype)
    return xp.astype(A2 > 0.5, A2.dtype)


def nn_model(X, Y, n_h: int, num_iterations: int = 10000, print_cost: bool = False, *,
             learning_rate: float = 1.2, activation="tanh", init: str = "normal", seed=0,
             parameters: dict | None = None, backend="numpy", device=None,
             dtype: str | None = None, cost_every: int = 1000, output="sigmoid", **run_options) -> dict:
    """Train the network and return its parameters (on ``backend``'s device).

    X (n_x, m) and Y (n_y, m) may come from any supported library; they are
    moved to ``backend`` once.  ``parameters`` overrides the random start.
    ``output="softmax"`` trains a softmax output on one-hot Y.
    With ``print_cost``, the cost is printed every ``cost_every`` iterations.
    The planner chooses how to run (:mod:`backprop_core.planner`);
    ``run_options`` (chunk_size, workers, stream, batch_size, epochs) override it.
    """

    check_positive(n_h, "n_h (hidden units)", integer=True)

    def show(i, J):
        print(f"Cost after iteration {i}: {J:f}")

    done = fit(X, Y, hidden_units=n_h, activation=get_activation(activation), learning_rate=learning_rate,
               num_iterations=num_iterations, backend=backend, device=device, dtype=dtype,
               parameters=parameters, init=init, seed=seed, cost_every=cost_every,
               callback=show if print_cost else None, output=output, **run_options)
    return done.result.parameters
