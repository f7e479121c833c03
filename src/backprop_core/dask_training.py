"""Full-batch training on Dask arrays: each chunk's gradients by the same equations.

X (n0, m) and Y (n2, m) are Dask arrays chunked along the examples only.  They
are persisted once (in worker memory on a cluster); each iteration ships the
small parameters with the graph, computes every chunk's gradients with the
whole batch's m (``equations.gradients``), lets Dask add them up in a tree,
and updates the parameters on the client.  The reduction's result is the only
thing that travels back: that round trip is the nature of data-parallel
gradient descent.

A weighted fit's Y carries the weights as its last row, as on every other
strategy (:func:`backprop_core.strategies.split_weights`), so each chunk of Y
brings its examples' weights with it.

On a cluster, an iteration either completes within the backend's
``iteration_timeout`` (retries after a lost worker included) or stops training:
a closed client, a lost scheduler, every worker gone or an iteration that
outlasts the limit become a :class:`DistributedTrainingError` holding the
parameters of the last completed iteration.
"""

from __future__ import annotations

import functools
import time

from . import equations
from .backends.dask_backend import chunk_library_of, library_of
from .equations import SIGMOID
from .errors import DistributedTrainingError, InvalidTypeError
from .loop import Strategy
from .optimizers import beyond_lecture
from .parameters import add_parts, unpack, updated
from .strategies import split_weights

#: Times an iteration is tried again after the cluster lost a worker (within the iteration's time).
RETRIES = 2


def _chunk_gradients(X, Y, params, g, m, with_cost, output=SIGMOID, weighted=False):
    Y, weights = split_weights(Y, weighted)
    return equations.gradients(X, Y, *unpack(params), g, m, with_cost, output, weights)


def _sum(parts):
    return functools.reduce(add_parts, parts)


def _tree_sum(parts, delayed, fan_in=8):
    # Sum in a tree so no single task receives every chunk's result at once.
    while len(parts) > 1:
        parts = [delayed(_sum)(parts[i:i + fan_in]) for i in range(0, len(parts), fan_in)]
    return parts[0]


def prepare(X, Y, client=None):
    """Chunk along the examples only, align Y with X, and persist both once (on ``client``'s cluster)."""
    X = X.rechunk({0: -1})
    Y = Y.rechunk({0: -1, 1: X.chunks[1]})
    if client is not None:
        return client.persist(X), client.persist(Y)
    return X.persist(), Y.persist()


class ClusterFailure(Exception):
    """The cluster could not complete an iteration; the message says what happened.

    Not one of the project's errors on purpose: :meth:`DaskFullBatch.failure`
    turns it into a :class:`DistributedTrainingError` that holds the parameters.
    """


class DaskGradientSum:
    """``(dW1, db1, dW2, db2, J)`` of the whole batch, summed over the chunks of persisted Dask arrays.

    The results are arrays of the chunks' library, on the client.  ``output``
    and ``weighted`` as for every strategy (:mod:`backprop_core.strategies`).
    """

    def __init__(self, X, Y, activation, backend, output=SIGMOID, weighted: bool = False):
        self.client = backend.scheduler_client
        self.backend, self.activation = backend, activation
        self.output, self.weighted = output, weighted
        self.X, self.Y = prepare(X, Y, self.client)
        self.m = self.X.shape[1]
        self.x_blocks, self.y_blocks = self.X.to_delayed().ravel(), self.Y.to_delayed().ravel()

    @property
    def n_chunks(self):
        return len(self.x_blocks)

    def _graph(self, params, with_cost):
        from dask import delayed

        # The parameters are small: they travel inside the graph as one task, which the
        # scheduler hands to the workers (and recomputes if the worker holding it dies),
        # where scatter(broadcast=True) could wait on a worker that has just died.
        shared = delayed(params, traverse=False)
        parts = [delayed(_chunk_gradients)(x, y, shared, self.activation, self.m, with_cost, self.output,
                                           self.weighted)
                 for x, y in zip(self.x_blocks, self.y_blocks)]
        return _tree_sum(parts, delayed)

    def __call__(self, params, with_cost=False):
        if self.client is None:
            import dask

            return dask.compute(self._graph(params, with_cost))[0]
        return self._on_cluster(self._graph(params, with_cost))

    def _on_cluster(self, total):
        # One deadline for the whole iteration, retries included.  One lost worker is
        # survivable: Dask recomputes its persisted chunks from their source elsewhere, so
        # the iteration is tried again once the cluster has a worker.  A closed client or a
        # lost scheduler is not: nothing on this side can bring them back.
        limit = self.backend.iteration_timeout
        deadline = time.monotonic() + limit
        for attempt in range(RETRIES + 1):
            self._check_connected()
            future = self.client.compute(total)
            try:
                return future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception as exc:
                self._check_connected(exc)
                if _is_timeout(exc):
                    self._forget(future)
                    raise ClusterFailure(
                        f"the iteration did not complete within iteration_timeout={limit:g} s (every worker "
                        "lost? if iterations are simply that slow, raise iteration_timeout)") from exc
                if attempt == RETRIES or not is_cluster_failure(exc):
                    raise
            try:
                self.client.wait_for_workers(1, timeout=max(0.001, deadline - time.monotonic()))
            except Exception as exc:
                self._check_connected(exc)
                raise ClusterFailure(f"every worker was lost and none came back within "
                                     f"iteration_timeout={limit:g} s") from exc

    def _check_connected(self, cause=None):
        status = getattr(self.client, "status", "running")
        if status == "running":
            return
        what = "the Dask client was closed" if status in ("closing", "closed") else \
            f"the connection to the Dask scheduler at {self.backend.device_name} was lost (client {status})"
        raise ClusterFailure(what) from cause

    def _forget(self, future):
        try:
            future.cancel()  # the late iteration must not keep the cluster busy
        except Exception:  # noqa: BLE001 - the cluster is failing already; the timeout is what to report
            pass


def _is_timeout(exc) -> bool:
    return isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError"


class DaskFullBatch(Strategy):
    """The whole batch's step on Dask arrays; the parameters stay on the client.

    A failing cluster, or an iteration that outlasts the backend's
    ``iteration_timeout``, becomes a :class:`DistributedTrainingError`.
    ``output`` and ``weighted`` (weights as Y's last row) as for every strategy;
    ``rule`` and its ``state`` as for :class:`~backprop_core.strategies.Chunked`
    (applied on the client, to the summed gradients).
    """

    def __init__(self, X, Y, parameters, activation, learning_rate: float, backend, output=SIGMOID,
                 weighted: bool = False, rule=None, state=None):
        chunks, held = chunk_library_of(X), library_of(parameters["W1"])
        if chunks != held:
            raise InvalidTypeError(
                f"X's Dask chunks are {chunks} arrays but the parameters are {held} arrays; each chunk "
                f"computes with the parameters, so they must match: use backend.for_data(X) (a "
                f"DaskBackend with chunk_library={chunks!r}) and its parameters_from_host")
        self.gradients = DaskGradientSum(X, Y, activation, backend, output, weighted)
        self.learning_rate = learning_rate
        self.rule = beyond_lecture(rule)
        self.optimizer_state = state if self.rule is not None else None

    def step(self, params, i, with_cost):
        *grads, J = self.gradients(params, with_cost)
        if self.rule is None:
            return updated(params, grads, self.learning_rate), J
        params, self.optimizer_state, J = self.rule(params, self.optimizer_state, grads, J, self.gradients.m)
        return params, J

    def cost(self, params):
        J = self.gradients(params, True)[4]
        return J if self.rule is None else self.rule.cost(params, J, self.gradients.m)

    def failure(self, exc, params, iteration, history):
        if isinstance(exc, ClusterFailure) or is_cluster_failure(exc):
            what = str(exc) if isinstance(exc, ClusterFailure) else \
                f"the Dask cluster failed ({type(exc).__name__}: {exc})"
            return DistributedTrainingError(
                f"training on Dask stopped during iteration {iteration}: {what}; the parameters of the "
                f"{iteration} completed iteration(s) are kept", parameters=params, iteration=iteration,
                history=history)
        return super().failure(exc, params, iteration, history)


def is_cluster_failure(exc) -> bool:
    names = {type(exc).__name__, *(c.__name__ for c in type(exc).__mro__)}
    return bool(names & {"KilledWorker", "CommClosedError", "TimeoutError", "CancelledError",
                         "FutureCancelledError", "ClosedClientError", "OSError"})
