"""The full-batch gradient-descent loop, which stays on the device.

Inside the loop no device array is turned into a Python value, except the cost,
read once every ``cost_every`` iterations: that read is the only host
synchronisation, and it is what lets a diverging run stop early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from . import equations
from .activations import Activation
from .errors import TrainingDivergedError, TrainingInterrupted


@dataclass
class TrainResult:
    """``parameters`` after training, and ``history``: (iteration, cost) pairs."""

    parameters: dict
    history: list = field(default_factory=list)
    n_iter: int = 0


def make_step(g: Activation, learning_rate: float, with_cost: bool):
    """A pure function ``params, X, Y -> (params, J)`` for one iteration."""

    def step(params, X, Y):
        W1, b1, W2, b2, J = equations.step(
            X, Y, params["W1"], params["b1"], params["W2"], params["b2"], g, learning_rate, with_cost
        )
        return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, J

    return step


def make_cost(g: Activation):
    def cost(params, X, Y):
        _, _, Z2, _ = equations.forward(X, params["W1"], params["b1"], params["W2"], params["b2"], g)
        return equations.cost_from_logits(Z2, Y)

    return cost


def train(X, Y, parameters: dict, *, activation: Activation, learning_rate: float,
          num_iterations: int, backend, cost_every: int = 100, callback=None) -> TrainResult:
    """Run ``num_iterations`` full-batch steps on ``backend``.

    X (n0, m), Y (n2, m) and the parameters must already be on the backend's
    device in one float dtype.  ``callback(iteration, cost)`` is called at each
    cost read (a Python float).  The history ends with the cost of the final
    parameters, at ``iteration == num_iterations``.

    Raises :class:`TrainingDivergedError` (holding the last parameters whose
    cost was finite) and :class:`TrainingInterrupted` on Ctrl-C (holding the
    parameters of the last completed iteration).
    """
    step = backend.compile(make_step(activation, learning_rate, with_cost=False))
    step_with_cost = backend.compile(make_step(activation, learning_rate, with_cost=True))
    final_cost = backend.compile(make_cost(activation))

    params, history, i = parameters, [], 0
    last_finite = parameters

    def record(iteration, J, good_params):
        nonlocal last_finite
        J = float(J)  # the one host read, every cost_every iterations
        history.append((iteration, J))
        if not math.isfinite(J):
            raise TrainingDivergedError(
                f"the cost became {J} at iteration {iteration}: gradient descent diverged; "
                f"try a smaller learning rate than {learning_rate}",
                parameters=last_finite, iteration=last_checked, history=history,
            )
        last_finite = good_params
        if callback is not None:
            callback(iteration, J)

    last_checked = 0
    with backend.context():
        try:
            for i in range(num_iterations):
                if i % cost_every == 0:
                    new_params, J = step_with_cost(params, X, Y)
                    record(i, J, params)
                    last_checked = i
                else:
                    new_params, _ = step(params, X, Y)
                params = new_params
            i = num_iterations
            record(num_iterations, final_cost(params, X, Y), params)
        except KeyboardInterrupt:
            raise TrainingInterrupted(params, i, history) from None
    return TrainResult(parameters=params, history=history, n_iter=num_iterations)
