"""The lecture's programming exercise, step by step, in its own names.

Examples are columns: X is (n_x, m), Y is (n_y, m).  ``parameters``, ``cache``
and ``grads`` are dicts keyed ``W1 b1 W2 b2``, ``Z1 A1 Z2 A2`` and
``dW1 db1 dW2 db2``.  The step functions work in whatever library X comes
from; :func:`initialize_parameters` and :func:`nn_model` take ``backend=``.

The output layer is the lecture's sigmoid unless ``output="softmax"`` is
given (Y one-hot, one class per example); the backward step is the same.

Parameters remember what trained them: :func:`nn_model` returns
:class:`TrainedParameters`, a plain dict of ``W1 b1 W2 b2`` to every other use
that also records its ``activation`` and ``output``.  The step functions
default to the recorded ones, and refuse, naming both, an ``activation=`` or
``output=`` that differs (``dict(parameters)`` forgets the record, for whoever
means to).  A plain dict keeps the lecture's tanh and sigmoid.
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
from .execution import set_around
from .training import fit
from .validation import as_array, check_parameters, check_positive

#: What parameters that record nothing were trained with: the lecture's network.
LECTURE = {"activation": "tanh", "output": "sigmoid"}


class TrainedParameters(dict):
    """``{"W1", "b1", "W2", "b2"}`` that remember the ``activation`` and ``output`` (names) they were trained with.

    A dict to every other use (indexing, ``**``, equality, pickling keep the
    record; ``dict(parameters)`` drops it).
    """

    def __init__(self, parameters, *, activation: str, output: str):
        super().__init__(parameters)
        self.activation, self.output = activation, output

    def __repr__(self):
        return f"TrainedParameters({dict.__repr__(self)}, activation={self.activation!r}, output={self.output!r})"


def _recorded(parameters, what: str, given, lookup):
    """The ``what`` ("activation" or "output") to compute with: ``given`` or the parameters' own.

    ``given`` None means the recorded one (the lecture's for a plain dict); one
    that differs from the record is refused, naming both.
    """
    own = getattr(parameters, what, None) if isinstance(parameters, TrainedParameters) else None
    if given is None:
        return lookup(own or LECTURE[what])
    chosen = lookup(given)
    if own is not None and chosen.name != own:
        raise InvalidInputError(
            f"these parameters were trained with {what} {own!r}, not {chosen.name!r}: computing with another "
            f"{what} gives meaningless results; leave {what}= out to use {own!r}, or pass dict(parameters) "
            f"to use them with {chosen.name!r} on purpose")
    return chosen


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


def forward_propagation(X, parameters: dict, *, activation=None, output=None):
    """Returns ``(A2, cache)`` with A2 of shape (n_y, m).

    ``activation`` and ``output``: those the parameters were trained with by
    default (tanh and sigmoid for a plain dict).
    """
    g = _recorded(parameters, "activation", activation, get_activation)
    out = _recorded(parameters, "output", output, get_output)
    X = as_array(X, "X")
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


def backward_propagation(parameters: dict, cache: dict, X, Y, *, activation=None) -> dict:
    """Gradients of the cost: ``{"dW1", "db1", "dW2", "db2"}``, each the shape of its parameter.

    ``activation``: the parameters' own by default (tanh for a plain dict).
    """
    g = _recorded(parameters, "activation", activation, get_activation)
    X, Y = as_array(X, "X"), as_array(Y, "Y")
    xp = array_namespace(X)
    Y = xp.astype(Y, X.dtype) if Y.dtype != X.dtype else Y
    dW1, db1, dW2, db2 = equations.backward(X, Y, parameters["W2"], cache["Z1"], cache["A1"], cache["A2"], g)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


def update_parameters(parameters: dict, grads: dict, learning_rate: float = 1.2) -> dict:
    """``W := W - learning_rate * dW`` for every parameter; returns a new dict, recording what ``parameters`` do."""
    check_positive(learning_rate, "learning_rate")
    new = params.updated(parameters, [grads["d" + k] for k in params.NAMES], learning_rate)
    if isinstance(parameters, TrainedParameters):
        return TrainedParameters(new, activation=parameters.activation, output=parameters.output)
    return new


def predict(parameters: dict, X, *, activation=None, output=None):
    """0/1 predictions, shape (n_y, m), in X's float dtype.

    Sigmoid: each output's A2 > 0.5.  Softmax: one-hot columns, a 1 at the
    most probable class.  ``activation`` and ``output``: the parameters' own
    by default (tanh and sigmoid for a plain dict).
    """
    A2, _ = forward_propagation(X, parameters, activation=activation, output=output)
    xp = array_namespace(A2)
    if _recorded(parameters, "output", output, get_output).name == "softmax":
        rows = xp.reshape(xp.arange(A2.shape[0], device=device(A2)), (A2.shape[0], 1))
        return xp.astype(rows == xp.argmax(A2, axis=0, keepdims=True), A2.dtype)
    return xp.astype(A2 > 0.5, A2.dtype)


@set_around
def nn_model(X, Y, n_h: int, num_iterations: int = 10000, print_cost: bool = False, *,
             learning_rate: float = 1.2, activation=None, init: str = "normal", seed=0,
             parameters: dict | None = None, backend="numpy", device=None,
             dtype: str | None = None, cost_every: int = 1000, output=None, optimizer="gd",
             alpha: float = 0.0, callback=None, return_costs: bool = False, batch_size: int | None = None,
             epochs: int | None = None):
    """Train the network and return its parameters (on ``backend``'s device), recording the
    activation and output they were trained with (:class:`TrainedParameters`).

    X (n_x, m) and Y (n_y, m) may come from any supported library; they are
    moved to ``backend`` once.  ``parameters`` overrides the random start
    (and, if they record them, give the default activation and output).
    ``activation`` defaults to tanh, ``output`` to sigmoid;
    ``output="softmax"`` trains a softmax output on one-hot Y.
    With ``print_cost``, the cost is printed every ``cost_every`` iterations.

    The cost history: ``return_costs=True`` returns ``(parameters, costs)``,
    ``costs`` a list of ``(iteration, cost)`` pairs, one every ``cost_every``
    iterations and the last for the final parameters (``plt.plot(*zip(*costs))``
    draws J); ``callback(iteration, cost)`` is also called at each of them.

    ``optimizer`` ("gd", the lecture's gradient descent; "momentum", "rmsprop",
    "adam", or an object of :mod:`backprop_core.optimizers`) and ``alpha`` (the
    L2 penalty, the course's lambda; 0: none) are the course's next lecture's
    (:func:`backprop_core.training.fit`); the defaults are this lecture's.
    ``batch_size`` and ``epochs``: mini-batch gradient descent instead of full batch.
    How it runs (chunks, workers, threads or processes) is the planner's
    choice (:mod:`backprop_core.planner`) within the current execution, which
    :func:`backprop_core.execution.execution_context` sets.
    """

    check_positive(n_h, "n_h (hidden units)", integer=True)
    g = _recorded(parameters, "activation", activation, get_activation)
    out = _recorded(parameters, "output", output, get_output)

    def show(i, J):
        if print_cost:
            print(f"Cost after iteration {i}: {J:f}")
        if callback is not None:
            callback(i, J)

    done = fit(X, Y, hidden_units=n_h, activation=g, learning_rate=learning_rate,
               num_iterations=num_iterations, backend=backend, device=device, dtype=dtype,
               parameters=parameters, init=init, seed=seed, cost_every=cost_every,
               callback=show if print_cost or callback is not None else None, output=out,
               optimizer=optimizer, alpha=alpha, batch_size=batch_size, epochs=epochs)
    trained = TrainedParameters(done.result.parameters, activation=g.name, output=out.name)
    return (trained, list(done.result.history)) if return_costs else trained
