"""The full-batch gradient-descent loop, which stays on the device.

Inside the loop no device array is turned into a Python value, except the cost,
read once every ``cost_every`` iterations: that read is the only host
synchronisation, and it is what lets a diverging run stop early.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

from . import equations
from .activations import Activation
from .chunked import ChunkedStep, chunk_bounds
from .errors import DeviceMemoryError, TrainingDivergedError, TrainingInterrupted, is_out_of_memory
from .parameters import pack, unpack


@dataclass
class TrainResult:
    """``parameters`` after training, and ``history``: (iteration, cost) pairs."""

    parameters: dict
    history: list = field(default_factory=list)
    n_iter: int = 0


class CostRecorder:
    """Reads the cost (the loop's one host read), keeps the history, stops a diverging run.

    ``record(iteration, J, params)``: ``params`` are the parameters whose cost J
    is; when J is finite they become the last known-good parameters, which a
    :class:`TrainingDivergedError` carries.
    """

    def __init__(self, parameters, learning_rate, callback=None, unit="iteration"):
        self.history, self.last_finite, self.last_checked = [], parameters, 0
        self.learning_rate, self.callback, self.unit = learning_rate, callback, unit

    def record(self, iteration, J, params):
        J = float(J)  # the one host read, every cost_every iterations
        self.history.append((iteration, J))
        if not math.isfinite(J):
            raise TrainingDivergedError(
                f"the cost became {J} at {self.unit} {iteration}: gradient descent diverged; "
                f"try a smaller learning rate than {self.learning_rate}",
                parameters=self.last_finite, iteration=self.last_checked, history=self.history)
        self.last_finite, self.last_checked = params, iteration
        if self.callback is not None:
            self.callback(iteration, J)


def make_step(g: Activation, learning_rate: float, with_cost: bool):
    """A pure function ``params, X, Y -> (params, J)`` for one iteration."""

    def step(params, X, Y):
        *new, J = equations.step(X, Y, *unpack(params), g, learning_rate, with_cost)
        return pack(new), J

    return step


def make_cost(g: Activation):
    def cost(params, X, Y):
        _, _, Z2, _ = equations.forward(X, *unpack(params), g)
        return equations.cost_from_logits(Z2, Y)

    return cost


def compiled_steps(backend, g: Activation, learning_rate: float):
    """``(step, step_with_cost, cost)``, each compiled by the backend (jax.jit) where it can."""
    return (backend.compile(make_step(g, learning_rate, with_cost=False)),
            backend.compile(make_step(g, learning_rate, with_cost=True)),
            backend.compile(make_cost(g)))


def train(X, Y, parameters: dict, *, activation: Activation, learning_rate: float,
          num_iterations: int, backend, cost_every: int = 100, callback=None,
          chunk_size: int | None = None, workers: int = 1, stream: bool = False) -> TrainResult:
    """Run ``num_iterations`` full-batch steps on ``backend``.

    X (n0, m), Y (n2, m) and the parameters must already be on the backend's
    device in one float dtype (or, with ``stream``, X and Y are host NumPy
    arrays whose chunks are copied to the device each iteration).
    ``callback(iteration, cost)`` is called at each cost read (a Python float).
    The history ends with the cost of the final parameters, at
    ``iteration == num_iterations``.  With ``chunk_size``, each iteration runs
    over chunks of that many examples on ``workers`` threads (see
    :mod:`backprop_core.chunked`), to the same parameters.

    Raises :class:`TrainingDivergedError` (holding the last parameters whose
    cost was finite) and :class:`TrainingInterrupted` on Ctrl-C (holding the
    parameters of the last completed iteration).
    """
    if backend.distributed:
        from .distributed import train_dask

        return train_dask(X, Y, parameters, activation=activation, learning_rate=learning_rate,
                          num_iterations=num_iterations, backend=backend, cost_every=cost_every,
                          callback=callback)
    if chunk_size is None and stream:
        raise ValueError("streaming data through the device needs a chunk_size")
    if chunk_size is None:
        step, step_with_cost, final_cost = compiled_steps(backend, activation, learning_rate)
        running = contextlib.nullcontext()
    else:
        chunked = ChunkedStep(activation, learning_rate, chunk_size, backend=backend,
                              workers=workers, stream=stream)
        step = chunked

        def step_with_cost(params, X, Y):
            return chunked(params, X, Y, with_cost=True)

        final_cost = chunked.cost
        running = chunked.running()

    params, i = parameters, 0
    costs = CostRecorder(parameters, learning_rate, callback)
    history = costs.history

    with backend.context(), running:
        try:
            for i in range(num_iterations):
                if i % cost_every == 0:
                    new_params, J = step_with_cost(params, X, Y)
                    costs.record(i, J, params)
                else:
                    new_params, _ = step(params, X, Y)
                params = new_params
            i = num_iterations
            costs.record(num_iterations, final_cost(params, X, Y), params)
        except KeyboardInterrupt:
            raise TrainingInterrupted(params, i, history) from None
        except Exception as exc:
            if not is_out_of_memory(exc) or isinstance(exc, DeviceMemoryError):
                raise
            advice = (f"use a smaller chunk_size than {chunk_size}" if chunk_size
                      else "train over chunks (chunk_size=..., and stream=True for data kept on the host)")
            raise DeviceMemoryError(
                f"out of memory on {backend.name} device {backend.device} at iteration {i}: {advice} "
                f"({type(exc).__name__}: {str(exc)[:200]})", params, i, history) from exc
    return TrainResult(parameters=params, history=history, n_iter=num_iterations)


def train_minibatch(X, Y, parameters: dict, *, activation: Activation, learning_rate: float,
                    epochs: int, batch_size: int, backend, seed=0, cost_every: int = 100,
                    callback=None) -> TrainResult:
    """Mini-batch gradient descent: ``epochs`` passes over a fresh shuffle of the examples.

    The shuffles come from ``numpy.random.default_rng(seed)`` on the host, so a
    run is reproducible on every backend.  Each batch is one update by the same
    step as full-batch training; the history records the cost of the batch at
    every ``cost_every``-th update, then the cost of the final parameters on
    all the data.  Errors as in :func:`train`.
    """
    import numpy as np

    m = X.shape[1]
    rng = np.random.default_rng(seed)
    step, step_with_cost, final_cost = compiled_steps(backend, activation, learning_rate)
    xp = backend.xp
    params, updates = parameters, 0
    costs = CostRecorder(parameters, learning_rate, callback, unit="update")
    history = costs.history
    bounds = chunk_bounds(m, batch_size)

    with backend.context():
        try:
            for _ in range(epochs):
                order = backend.asarray(rng.permutation(m), "int32")
                Xs, Ys = xp.take(X, order, axis=1), xp.take(Y, order, axis=1)
                for a, b in bounds:
                    if updates % cost_every == 0:
                        new_params, J = step_with_cost(params, Xs[:, a:b], Ys[:, a:b])
                        costs.record(updates, J, params)
                    else:
                        new_params, _ = step(params, Xs[:, a:b], Ys[:, a:b])
                    params = new_params
                    updates += 1
            costs.record(updates, final_cost(params, X, Y), params)
        except KeyboardInterrupt:
            raise TrainingInterrupted(params, updates, history) from None
    return TrainResult(parameters=params, history=history, n_iter=updates)
