"""The ways of computing one iteration: whole batch, chunks of it, mini-batches.

Each is a :class:`~backprop_core.loop.Strategy` that holds the data and
supplies only its step and the cost; :func:`backprop_core.loop.run` does the
rest.  (Dask, which computes on a cluster, is in :mod:`backprop_core.dask_training`.)
"""

from __future__ import annotations

import contextlib

import numpy as np

from . import equations
from .chunked import ChunkedGradients, chunk_bounds
from .loop import Strategy
from .parameters import pack, unpack, updated


# -- the equations over the parameters dict ----------------------------------------------
def make_step(g, learning_rate: float, with_cost: bool):
    """``params, X, Y -> (params, J)``: one iteration of the equations on the whole of X."""

    def step(params, X, Y):
        *new, J = equations.step(X, Y, *unpack(params), g, learning_rate, with_cost)
        return pack(new), J

    return step


def make_cost(g):
    """``params, X, Y -> J``."""

    def cost(params, X, Y):
        _, _, Z2, _ = equations.forward(X, *unpack(params), g)
        return equations.cost_from_logits(Z2, Y)

    return cost


def equations_gradients(backend, g):
    """For :class:`ChunkedGradients`: the equations on one chunk, compiled by the backend.

    One compiled function per m (the whole batch's size, a constant of the
    step); the chunks' shapes differ at most in their last column count.
    """

    def make(with_cost):
        compiled = {}

        def gradients(params, Xc, Yc, m):
            if m not in compiled:
                def chunk(params, Xc, Yc):
                    return equations.gradients(Xc, Yc, *unpack(params), g, m, with_cost)

                compiled[m] = backend.compile(chunk)
            return compiled[m](params, Xc, Yc)

        return gradients

    return make


# -- the strategies ------------------------------------------------------------------------
class WholeBatch(Strategy):
    """The lecture's step on all m examples at once, compiled by the backend where it can be."""

    def __init__(self, X, Y, g, learning_rate: float, backend):
        self.X, self.Y, self.backend = X, Y, backend
        self._step = backend.compile(make_step(g, learning_rate, with_cost=False))
        self._step_with_cost = backend.compile(make_step(g, learning_rate, with_cost=True))
        self._cost = backend.compile(make_cost(g))

    def step(self, params, i, with_cost):
        return (self._step_with_cost if with_cost else self._step)(params, self.X, self.Y)

    def cost(self, params):
        return self._cost(params, self.X, self.Y)

    def running(self):
        return self.backend.context()


class Chunked(Strategy):
    """The whole batch's step, its gradients summed over chunks (:class:`ChunkedGradients`)."""

    def __init__(self, X, Y, learning_rate: float, backend, gradients: ChunkedGradients):
        self.X, self.Y, self.learning_rate, self.backend = X, Y, learning_rate, backend
        self.gradients = gradients
        self.memory_advice = f"use a smaller chunk_size than {gradients.chunk_size}"

    def step(self, params, i, with_cost):
        *grads, J = self.gradients(params, self.X, self.Y, with_cost)
        return updated(params, grads, self.learning_rate), J

    def cost(self, params):
        return self.gradients(params, self.X, self.Y, with_cost=True)[4]

    def running(self):
        stack = contextlib.ExitStack()
        stack.enter_context(self.backend.context())
        stack.enter_context(self.gradients.running())
        return stack


class Fused(Strategy):
    """The whole batch's step as the equations compiled into one GPU kernel (:mod:`backprop_core.fused`)."""

    def __init__(self, X, Y, fused_step, backend):
        self.X, self.Y, self.fused, self.backend = X, Y, fused_step, backend

    def step(self, params, i, with_cost):
        return self.fused(params, self.X, self.Y, with_cost)

    def cost(self, params):
        return self.fused(params, self.X, self.Y, True)[1]

    def running(self):
        return self.backend.context()


class MiniBatch(Strategy):
    """Mini-batch gradient descent: one update per batch of a fresh shuffle each epoch.

    The shuffles come from ``numpy.random.default_rng(seed)`` on the host, so a
    run is reproducible on every backend; only the permutation travels to the
    device.  The cost recorded at a step is that batch's; :meth:`cost` is the
    cost on all the data.
    """

    unit = "update"

    def __init__(self, X, Y, g, learning_rate: float, backend, batch_size: int, seed=0):
        self.X, self.Y, self.backend = X, Y, backend
        self.bounds = chunk_bounds(X.shape[1], batch_size)
        self.rng = np.random.default_rng(seed)
        self._step = backend.compile(make_step(g, learning_rate, with_cost=False))
        self._step_with_cost = backend.compile(make_step(g, learning_rate, with_cost=True))
        self._cost = backend.compile(make_cost(g))
        self.memory_advice = f"use a smaller batch_size than {batch_size}"

    @property
    def updates_per_epoch(self) -> int:
        return len(self.bounds)

    def step(self, params, i, with_cost):
        batch = i % len(self.bounds)
        if batch == 0:
            order = self.backend.asarray(self.rng.permutation(self.X.shape[1]), "int32")
            xp = self.backend.xp
            self.Xs, self.Ys = xp.take(self.X, order, axis=1), xp.take(self.Y, order, axis=1)
        a, b = self.bounds[batch]
        step = self._step_with_cost if with_cost else self._step
        return step(params, self.Xs[:, a:b], self.Ys[:, a:b])

    def cost(self, params):
        return self._cost(params, self.X, self.Y)

    def running(self):
        return self.backend.context()
