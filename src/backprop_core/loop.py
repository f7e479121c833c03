"""The training loop, written once: every way of computing a step runs inside it.

A *strategy* (whole batch, chunks, mini-batches, Dask: :mod:`backprop_core.strategies`,
:mod:`backprop_core.dask_training`) supplies only how one iteration is computed.
This loop does everything around it, the same for all: it reads the cost every
``cost_every`` iterations (the one host read, so a run whose cost becomes NaN
stops there), keeps the history and the parameters of the lowest cost read,
judges at the end whether the run diverged (one rule: :func:`diverged`), and
turns divergence, Ctrl-C, SIGTERM, out-of-memory and cluster failures into the
project's errors, each carrying parameters worth keeping.  An optional
:class:`EarlyStopping` monitor scores held-out data at the same cost reads and
stops the run when the score stops improving, keeping the best parameters.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

from .errors import BackpropCoreError, DeviceMemoryError, TrainingDivergedError, TrainingInterrupted
from .errors import is_out_of_memory
from .termination import signal_number, terminate_as_interrupt
from .validation import check_positive


@dataclass
class TrainResult:
    """``parameters`` after training, ``history`` of (iteration, cost) pairs, ``n_iter`` steps run.

    With early stopping, ``validation`` holds (iteration, validation cost,
    validation score) at each cost read, ``parameters`` are those of
    ``best_iteration`` and ``n_iter`` counts the steps actually run.

    ``optimizer_state``: what the update rule carries after the last update
    run (:mod:`backprop_core.optimizers`: momentum's vdW, Adam's vdW, sdW and
    t, ...), to resume training with (``training.fit(optimizer_state=...)``);
    None for the lecture's gradient descent, which carries nothing.  With early
    stopping it is the state after ``n_iter`` updates, not that of the best parameters.
    """

    parameters: dict
    history: list = field(default_factory=list)
    n_iter: int = 0
    validation: list | None = None
    best_iteration: int | None = None
    optimizer_state: dict | None = None


class Strategy:
    """How one iteration is computed; the loop calls nothing else.

    Subclasses hold the data and implement :meth:`step` and :meth:`cost`.
    ``unit`` names what one step is ("iteration", or "update" for mini-batches).
    """

    unit = "iteration"
    #: The update rule's state after the last step (:mod:`backprop_core.optimizers`); None: the lecture's
    #: gradient descent, which carries nothing (a strategy with a rule keeps its own).
    optimizer_state = None
    #: What to try when a step runs out of device memory (ends a DeviceMemoryError's message).
    memory_advice = "train over chunks (execution_context(chunk_size=...), stream=True for data kept on the host)"

    @property
    def costs_all_data(self) -> bool:
        """Is the cost a step returns that of all the data?  An "update" (a mini-batch's step) costs its batch."""
        return self.unit == "iteration"

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


#: Gradient descent has diverged when a cost read is NaN or infinite, or when the cost of
#: the final parameters is more than DIVERGED_FACTOR times the cost of the start and also
#: more than DIVERGED_MARGIN above it (ln 2, a coin flip's cost per example: a run started
#: from nearly perfect parameters is not called diverged for a small rise).  The final cost
#: is what counts, not a cost on the way: a large learning rate may make the cost rise for a
#: while and come back down (the moons data, 8 tanh units, learning rate 10: the cost peaks
#: at 18 times its start and ends near 0), while stable gradient descent never ends far
#: above where it started.
DIVERGED_FACTOR = 2.0
DIVERGED_MARGIN = math.log(2.0)


def diverged(start: float, J: float) -> bool:
    """The one rule (:data:`DIVERGED_FACTOR`): has a run from cost ``start`` that ends at ``J`` diverged?"""
    return not math.isfinite(J) or J > max(DIVERGED_FACTOR * start, start + DIVERGED_MARGIN)


class CostReads:
    """Reads the cost (the loop's one host read), keeps the history, stops a diverging run.

    ``record(iteration, J, params)``: ``params`` are the parameters whose cost J
    is; the parameters of the lowest cost read are kept, and a
    :class:`TrainingDivergedError` carries them.  ``start`` is the cost of the
    start parameters on all the data, against which :func:`diverged` judges the end.
    """

    def __init__(self, parameters, learning_rate, callback=None, unit="iteration"):
        self.history, self.start = [], None
        self.best, self.best_cost, self.best_iteration = parameters, math.inf, 0
        self.learning_rate, self.callback, self.unit = learning_rate, callback, unit

    def record(self, iteration, J, params):
        J = float(J)  # the one host read, every cost_every iterations
        self.history.append((iteration, J))
        if not math.isfinite(J):
            raise self._diverged(f"the cost became {J} at {self.unit} {iteration}")
        if J < self.best_cost:
            self.best, self.best_cost, self.best_iteration = params, J, iteration
        if self.callback is not None:
            self.callback(iteration, J)

    def check_end(self, iteration, J):
        """After the final read of a cost of all the data: raise if the run diverged."""
        if self.start is not None and diverged(self.start, J):
            raise self._diverged(f"the cost ended at {J:.6g} after {iteration} {self.unit}s, far above "
                                 f"its start, {self.start:.6g}")

    def _diverged(self, what):
        kept = "the start parameters" if self.best_cost == math.inf else \
            f"the parameters of the lowest cost read, {self.best_cost:.6g} at {self.unit} {self.best_iteration}"
        return TrainingDivergedError(
            f"{what}: gradient descent diverged; the learning rate {self.learning_rate} is likely too large "
            f"for the scale of the features: try a smaller learning rate, or standardize the features "
            f"(kept: {kept})", parameters=self.best, iteration=self.best_iteration, history=self.history)


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


class Plateau:
    """Stops when the training cost has stopped falling: scikit-learn's MLP rule without early stopping.

    A cost read not below the lowest so far by ``tol`` counts as no improvement;
    the run stops after more than ``n_iter_no_change`` such reads in a row, and
    keeps its last parameters.
    """

    def __init__(self, n_iter_no_change: int = 10, tol: float = 1e-4):
        self.n_iter_no_change, self.tol = n_iter_no_change, tol
        self.best, self.reads_without_improvement = math.inf, 0

    def should_stop(self, J: float) -> bool:
        if J > self.best - self.tol:
            self.reads_without_improvement += 1
        else:
            self.reads_without_improvement = 0
        self.best = min(self.best, J)
        return self.reads_without_improvement > self.n_iter_no_change


def run(strategy: Strategy, parameters: dict, *, num_iterations: int, learning_rate: float,
        cost_every: int = 100, callback=None, monitor: EarlyStopping | None = None,
        plateau: Plateau | None = None) -> TrainResult:
    """Run ``num_iterations`` steps of ``strategy`` from ``parameters``.

    ``callback(iteration, cost)`` is called at each cost read with a Python
    float.  The history ends with the cost of the final parameters, at
    ``iteration == num_iterations``.

    Raises :class:`TrainingDivergedError` by the rule of :func:`diverged`
    (holding the parameters of the lowest cost read), :class:`TrainingInterrupted`
    on Ctrl-C or SIGTERM (holding the parameters of the last completed iteration;
    :mod:`~backprop_core.termination` says when SIGTERM is taken), and
    whatever the strategy's :meth:`Strategy.failure` makes of an exception (out
    of memory, a lost cluster), also holding the last completed parameters.

    With a ``monitor``, the held-out data are scored at every cost read (and
    for the final parameters); the run may stop early, and the result holds
    the best-scoring parameters.

    With a ``plateau``, the run stops once the cost reads stop falling
    (:class:`Plateau`), keeping its last parameters.  Mini-batch reads are then
    the mean cost of the batches since the last read, weighted by their
    sizes (scikit-learn's MLP's epoch loss): each update's cost is added up on
    the device, and read only where the cost is read.
    """
    check_positive(num_iterations, "num_iterations", integer=True)
    check_positive(cost_every, "cost_every", integer=True)
    params, i, stopped = parameters, 0, False
    costs = CostReads(parameters, learning_rate, callback, strategy.unit)
    with terminate_as_interrupt(), strategy.running():
        try:
            if not strategy.costs_all_data:  # the end is judged against the start on all the data
                costs.start = float(strategy.cost(parameters))
            averaging = plateau is not None and not strategy.costs_all_data
            total, rows = None, 0
            for i in range(num_iterations):
                with_cost = i % cost_every == 0
                state = strategy.optimizer_state
                new_params, J = strategy.step(params, i, with_cost or averaging)
                if averaging:  # J: this batch's cost; what is read is the mean since the last read
                    a, b = strategy.bounds[i % len(strategy.bounds)]
                    if with_cost:
                        J, total, rows = (J if rows == 0 else total / rows), J * (b - a), b - a
                    else:
                        total, rows = total + J * (b - a), rows + (b - a)
                if with_cost:
                    costs.record(i, J, params)
                    if costs.start is None:
                        costs.start = costs.history[-1][1]
                    stopped = monitor is not None and monitor.should_stop(i, params)
                    if plateau is not None and i > 0 and not stopped:
                        stopped = plateau.should_stop(costs.history[-1][1])
                    if stopped:
                        strategy.optimizer_state = state  # that of params: step i is not taken
                        break
                params = new_params
            if not stopped:
                i = num_iterations
                costs.record(num_iterations, strategy.cost(params), params)
                if monitor is not None:
                    monitor.should_stop(num_iterations, params)
            if not stopped or strategy.costs_all_data:
                costs.check_end(i, costs.history[-1][1])
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (terminate_as_interrupt)
            raise TrainingInterrupted(params, i, costs.history, signal_number(exc)) from None
        except BackpropCoreError:
            raise
        except Exception as exc:
            error = strategy.failure(exc, params, i, costs.history)
            if error is None:
                raise
            raise error from exc
    state = strategy.optimizer_state
    if monitor is None:
        return TrainResult(parameters=params, history=costs.history, n_iter=i if stopped else num_iterations,
                           optimizer_state=state)
    return TrainResult(parameters=monitor.best_parameters, history=costs.history, n_iter=i,
                       validation=monitor.history, best_iteration=monitor.best_iteration, optimizer_state=state)
