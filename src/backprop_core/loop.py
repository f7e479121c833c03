"""The training loop, written once: every way of computing a step runs inside it.

A *strategy* (whole batch, chunks, mini-batches, Dask: :mod:`backprop_core.strategies`,
:mod:`backprop_core.dask_training`) supplies only how one iteration is computed.
This loop does everything around it, the same for all: it reads the cost every
``cost_every`` iterations (the one host read, so a diverging run can stop
early), keeps the history and the last parameters known to be good, and turns
divergence, Ctrl-C, out-of-memory and cluster failures into the project's
errors, each carrying those parameters.  An optional :class:`EarlyStopping`
monitor scores held-out data at the same cost reads and stops the run when
the score stops improving, keeping the best parameters.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

from .errors import BackpropCoreError, DeviceMemoryError, TrainingDivergedError, TrainingInterrupted
from .errors import is_out_of_memory


@dataclass
class TrainResult:
    """``parameters`` after training, ``history`` of (iteration, cost) pairs, ``n_iter`` steps run.

    With early stopping, ``validation`` holds (iteration, validation cost,
    validation score) at each cost read, ``parameters`` are those of
    ``best_iteration`` and ``n_iter`` counts the steps actually run.
    """

    parameters: dict
    history: list = field(default_factory=list)
    n_iter: int = 0
    validation: list | None = None
    best_iteration: int | None = None


class Strategy:
    """How one iteration is computed; the loop calls nothing else.

    Subclasses hold the data and implement :meth:`step` and :meth:`cost`.
    ``unit`` names what one step is ("iteration", or "update" for mini-batches).
    """

    unit = "iteration"
    #: What to try when a step runs out of device memory (ends a DeviceMemoryError's message).
    memory_advice = "train over chunks (chunk_size=..., and stream=True for data kept on the host)"

    def step(self, params: dict, i: int, with_cost: bool):
        """Iteration ``i``: returns ``(new parameters, J)``, J the cost of ``params`` (None unless asked)."""
        raise NotImplementedError

    def cost(self, params: dict):
        """The cost of ``params`` on all the data (a 0-d array or a float)."""
        raise NotImplementedError

    def running(self):
        """A context held while the loop runs (thread pools, BLAS limits, the device)."""
        return contextlib.nullcontext()

    def failure(self, exc: Exception, params: dict, iteration: int, history: list):
        """The project's error for ``exc`` raised by a step, or None to let ``exc`` through."""
        if is_out_of_memory(exc):
            return DeviceMemoryError(
                f"out of memory at {self.unit} {iteration}: {self.memory_advice} "
                f"({type(exc).__name__}: {str(exc)[:200]})", params, iteration, history)
        return None


class CostReads:
    """Reads the cost (the loop's one host read), keeps the history, stops a diverging run.

    ``record(iteration, J, params)``: ``params`` are the parameters whose cost J
    is; when J is finite they become the last known-good parameters, which a
    :class:`TrainingDivergedError` carries.
    """

    def __init__(self, parameters, learning_rate, callback=None, unit="iteration"):
        self.history, self.last_good, self.last_good_iteration = [], parameters, 0
        self.learning_rate, self.callback, self.unit = learning_rate, callback, unit

    def record(self, iteration, J, params):
        J = float(J)  # the one host read, every cost_every iterations
        self.history.append((iteration, J))
        if not math.isfinite(J):
            raise TrainingDivergedError(
                f"the cost became {J} at {self.unit} {iteration}: gradient descent diverged; "
                f"try a smaller learning rate than {self.learning_rate}",
                parameters=self.last_good, iteration=self.last_good_iteration, history=self.history)
        self.last_good, self.last_good_iteration = params, iteration
        if self.callback is not None:
            self.callback(iteration, J)


class EarlyStopping:
    """Scores held-out data at each cost read; stops when the score stops improving.

    ``evaluate(params) -> (validation cost, validation score)`` as Python
    floats (a score is higher for better parameters, e.g. accuracy).  As in
    scikit-learn's MLP: a check whose score is not above the best so far by
    ``tol`` counts as no improvement, and the run stops after more than
    ``n_iter_no_change`` such checks in a row; the parameters with the best
    score are kept.  ``callback(iteration, cost, score)`` is told each check.
    """

    def __init__(self, evaluate, n_iter_no_change: int = 10, tol: float = 1e-4, callback=None):
        self.evaluate, self.n_iter_no_change, self.tol, self.callback = evaluate, n_iter_no_change, tol, callback
        self.history, self.best_score, self.best_parameters, self.best_iteration = [], -math.inf, None, None
        self.checks_without_improvement = 0

    def should_stop(self, iteration: int, params: dict) -> bool:
        cost, score = self.evaluate(params)
        self.history.append((iteration, cost, score))
        if self.callback is not None:
            self.callback(iteration, cost, score)
        if score < self.best_score + self.tol:
            self.checks_without_improvement += 1
        else:
            self.checks_without_improvement = 0
        if score > self.best_score:
            self.best_score, self.best_parameters, self.best_iteration = score, params, iteration
        return self.checks_without_improvement > self.n_iter_no_change


def run(strategy: Strategy, parameters: dict, *, num_iterations: int, learning_rate: float,
        cost_every: int = 100, callback=None, monitor: EarlyStopping | None = None) -> TrainResult:
    """Run ``num_iterations`` steps of ``strategy`` from ``parameters``.

    ``callback(iteration, cost)`` is called at each cost read with a Python
    float.  The history ends with the cost of the final parameters, at
    ``iteration == num_iterations``.

    Raises :class:`TrainingDivergedError` (holding the last parameters whose
    cost was finite), :class:`TrainingInterrupted` on Ctrl-C (holding the
    parameters of the last completed iteration), and whatever the strategy's
    :meth:`Strategy.failure` makes of an exception (out of memory, a lost
    cluster), also holding the last completed parameters.

    With a ``monitor``, the held-out data are scored at every cost read (and
    for the final parameters); the run may stop early, and the result holds
    the best-scoring parameters.
    """
    params, i, stopped = parameters, 0, False
    costs = CostReads(parameters, learning_rate, callback, strategy.unit)
    with strategy.running():
        try:
            for i in range(num_iterations):
                with_cost = i % cost_every == 0
                new_params, J = strategy.step(params, i, with_cost)
                if with_cost:
                    costs.record(i, J, params)
                    stopped = monitor is not None and monitor.should_stop(i, params)
                    if stopped:
                        break
                params = new_params
            if not stopped:
                i = num_iterations
                costs.record(num_iterations, strategy.cost(params), params)
                if monitor is not None:
                    monitor.should_stop(num_iterations, params)
        except KeyboardInterrupt:
            raise TrainingInterrupted(params, i, costs.history) from None
        except BackpropCoreError:
            raise
        except Exception as exc:
            error = strategy.failure(exc, params, i, costs.history)
            if error is None:
                raise
            raise error from exc
    if monitor is None:
        return TrainResult(parameters=params, history=costs.history, n_iter=num_iterations)
    return TrainResult(parameters=monitor.best_parameters, history=costs.history, n_iter=i,
                       validation=monitor.history, best_iteration=monitor.best_iteration)
