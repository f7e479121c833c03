"""Full-batch training on Dask arrays: each chunk's gradient sums by the same equations.

X (n0, m) and Y (n2, m) are Dask arrays chunked along the examples only.  They
are persisted once (in worker memory on a cluster); each iteration broadcasts
the small parameters, computes every chunk's gradients with the whole batch's
m (``equations.gradients``), lets Dask add them up, and updates the
parameters on the client.  The reduction's result is the only thing that
travels back: that round trip is the nature of data-parallel gradient descent.
"""

from __future__ import annotations

import math

from . import equations
from .errors import DistributedTrainingError, TrainingDivergedError, TrainingInterrupted
from .training import TrainResult

#: Times an iteration is tried again after the cluster lost a worker.
RETRIES = 2

def _chunk_gradients(X, Y, params, g, m, with_cost):
    return equations.gradients(X, Y, params["W1"], params["b1"], params["W2"], params["b2"], g, m, with_cost)


def _sum(parts):
    total = parts[0]
    for part in parts[1:]:
        total = tuple(None if a is None else a + b for a, b in zip(total, part))
    return total


def _tree_sum(parts, delayed, fan_in=8):
    # Sum in a tree so no single task receives every chunk's result at once.
    while len(parts) > 1:
        parts = [delayed(_sum)(parts[i:i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


def prepare(X, Y):
    """Chunk along the examples only, align Y with X, and persist both once."""
    X = X.rechunk({0: -1})
    Y = Y.rechunk({0: -1, 1: X.chunks[1]})
    return X.persist(), Y.persist()


def train_dask(X, Y, parameters: dict, *, activation, learning_rate: float, num_iterations: int,
               backend, cost_every: int = 100, callback=None) -> TrainResult:
    """Like :func:`backprop_core.training.train`, for Dask arrays; parameters stay on the client.

    Raises :class:`DistributedTrainingError` (with the last completed
    parameters) when the cluster fails or an iteration outlasts the backend's
    ``iteration_timeout``.
    """
    import dask
    from dask import delayed

    client = backend.scheduler_client
    X, Y = prepare(X, Y)
    m = X.shape[1]
    x_blocks, y_blocks = X.to_delayed().ravel(), Y.to_delayed().ravel()
    params, history, i = parameters, [], 0
    last_finite = parameters

    def reduce_once(params, with_cost):
        # A list, not the dict: a scattered dict's futures are named by its keys ("W1"...),
        # which would collide from one iteration to the next.
        shared = client.scatter([params], broadcast=True, hash=False,
                                timeout=backend.iteration_timeout)[0] if client is not None else params
        parts = [delayed(_chunk_gradients)(x, y, shared, activation, m, with_cost)
                 for x, y in zip(x_blocks, y_blocks)]
        total = _tree_sum(parts, delayed)
        if client is None:
            return dask.compute(total)[0]
        return client.compute(total).result(timeout=backend.iteration_timeout)

    def reduce(params, with_cost):
        # One lost worker is survivable: Dask recomputes its persisted chunks from their
        # source elsewhere, so the iteration is retried once the cluster has a worker again.
        for attempt in range(RETRIES + 1):
            try:
                return reduce_once(params, with_cost)
            except Exception as exc:
                if client is None or attempt == RETRIES or not _is_cluster_failure(exc):
                    raise
                client.wait_for_workers(1, timeout=backend.iteration_timeout)

    def record(iteration, J, good):
        nonlocal last_finite
        J = float(J)
        history.append((iteration, J))
        if not math.isfinite(J):
            raise TrainingDivergedError(
                f"the cost became {J} at iteration {iteration}: gradient descent diverged; "
                f"try a smaller learning rate than {learning_rate}",
                parameters=last_finite, iteration=iteration, history=history)
        last_finite = good
        if callback is not None:
            callback(iteration, J)

    try:
        for i in range(num_iterations):
            with_cost = i % cost_every == 0
            dW1, db1, dW2, db2, J = reduce(params, with_cost)
            if with_cost:
                record(i, J, params)
            new = equations.update(params["W1"], params["b1"], params["W2"], params["b2"],
                                   dW1, db1, dW2, db2, learning_rate)
            params = dict(zip(("W1", "b1", "W2", "b2"), new))
        i = num_iterations
        record(num_iterations, reduce(params, True)[4], params)
    except KeyboardInterrupt:
        raise TrainingInterrupted(params, i, history) from None
    except (TrainingDivergedError, TrainingInterrupted):
        raise
    except Exception as exc:
        if not _is_cluster_failure(exc):
            raise
        raise DistributedTrainingError(
            f"the Dask cluster failed during iteration {i} ({type(exc).__name__}: {exc}); "
            f"the parameters of the {i} completed iteration(s) are kept",
            parameters=params, iteration=i, history=history) from exc
    return TrainResult(parameters=params, history=history, n_iter=num_iterations)


def _is_cluster_failure(exc) -> bool:
    names = {type(exc).__name__, *(c.__name__ for c in type(exc).__mro__)}
    return bool(names & {"KilledWorker", "CommClosedError", "TimeoutError", "CancelledError",
                         "FutureCancelledError", "OSError"})
