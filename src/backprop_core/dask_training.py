"""Full-batch training on Dask arrays: each chunk's gradients by the same equations.

X (n0, m) and Y (n2, m) are Dask arrays chunked along the examples only.  They
are persisted once (in worker memory on a cluster); each iteration ships the
small parameters with the graph, computes every chunk's gradients with the
whole batch's m (``equations.gradients``), lets Dask add them up in a tree,
and updates the parameters on the client.  The reduction's result is the only
thing that travels back: that round trip is the nature of data-parallel
gradient descent.
"""

from __future__ import annotations

import functools

from . import equations
from .backends.dask_backend import chunk_library_of, library_of
from .errors import DistributedTrainingError, InvalidTypeError
from .loop import Strategy
from .parameters import add_parts, unpack, updated

#: Times an iteration is tried again after the cluster lost a worker.
RETRIES = 2


def _chunk_gradients(X, Y, params, g, m, with_cost):
    return equations.gradients(X, Y, *unpack(params), g, m, with_cost)


def _sum(parts):
    return functools.reduce(add_parts, parts)


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


class DaskGradientSum:
    """``(dW1, db1, dW2, db2, J)`` of the whole batch, summed over the chunks of persisted Dask arrays.

    The results are arrays of the chunks' library, on the client.
    """

    def __init__(self, X, Y, activation, backend):
        self.client = backend.scheduler_client
        self.backend, self.activation = backend, activation
        self.X, self.Y = prepare(X, Y)
        self.m = self.X.shape[1]
        self.x_blocks, self.y_blocks = self.X.to_delayed().ravel(), self.Y.to_delayed().ravel()

    @property
    def n_chunks(self):
        return len(self.x_blocks)

    def _once(self, params, with_cost):
        import dask
        from dask import delayed

        # The parameters are small: they travel inside the graph as one task, which the
        # scheduler hands to the workers (and recomputes if the worker holding it dies),
        # where scatter(broadcast=True) could wait on a worker that has just died.
        shared = delayed(params, traverse=False)
        parts = [delayed(_chunk_gradients)(x, y, shared, self.activation, self.m, with_cost)
                 for x, y in zip(self.x_blocks, self.y_blocks)]
        total = _tree_sum(parts, delayed)
        if self.client is None:
            return dask.compute(total)[0]
        return self.client.compute(total).result(timeout=self.backend.iteration_timeout)

    def __call__(self, params, with_cost=False):
        # One lost worker is survivable: Dask recomputes its persisted chunks from their
        # source elsewhere, so the iteration is tried again once the cluster has a worker.
        for attempt in range(RETRIES + 1):
            try:
                return self._once(params, with_cost)
            except Exception as exc:
                if self.client is None or attempt == RETRIES or not is_cluster_failure(exc):
                    raise
                self.client.wait_for_workers(1, timeout=self.backend.iteration_timeout)


class DaskFullBatch(Strategy):
    """The whole batch's step on Dask arrays; the parameters stay on the client.

    A failing cluster, or an iteration that outlasts the backend's
    ``iteration_timeout``, becomes a :class:`DistributedTrainingError`.
    """

    def __init__(self, X, Y, parameters, activation, learning_rate: float, backend):
        chunks, held = chunk_library_of(X), library_of(parameters["W1"])
        if chunks != held:
            raise InvalidTypeError(
                f"X's Dask chunks are {chunks} arrays but the parameters are {held} arrays; each chunk "
                f"computes with the parameters, so they must match: use backend.for_data(X) (a "
                f"DaskBackend with chunk_library={chunks!r}) and its parameters_from_host")
        self.gradients = DaskGradientSum(X, Y, activation, backend)
        self.learning_rate = learning_rate

    def step(self, params, i, with_cost):
        *grads, J = self.gradients(params, with_cost)
        return updated(params, grads, self.learning_rate), J

    def cost(self, params):
        return self.gradients(params, True)[4]

    def failure(self, exc, params, iteration, history):
        if is_cluster_failure(exc):
            return DistributedTrainingError(
                f"the Dask cluster failed during iteration {iteration} ({type(exc).__name__}: {exc}); "
                f"the parameters of the {iteration} completed iteration(s) are kept",
                parameters=params, iteration=iteration, history=history)
        return super().failure(exc, params, iteration, history)


def is_cluster_failure(exc) -> bool:
    names = {type(exc).__name__, *(c.__name__ for c in type(exc).__mro__)}
    return bool(names & {"KilledWorker", "CommClosedError", "TimeoutError", "CancelledError",
                         "FutureCancelledError", "OSError"})
