"""The ways of computing one iteration: whole batch, chunks of it, mini-batches.

Each is a :class:`~backprop_core.loop.Strategy` that holds the data and
supplies only its step and the cost; :func:`backprop_core.loop.run` does the
rest.  (Dask, which computes on a cluster, is in :mod:`backprop_core.dask_training`.)

Every strategy takes the output layer (``output``, sigmoid by default) and
whether the fit is ``weighted``: a weighted fit carries the examples' weights
as Y's last row, so that every chunk, batch, shuffle and stream slices them
with their examples (:func:`split_weights`).
"""

from __future__ import annotations

import contextlib

import numpy as np
from array_api_compat import array_namespace

from . import equations
from .chunked import ChunkedGradients, chunk_bounds
from .equations import SIGMOID
from .loop import Strategy
from .optimizers import beyond_lecture
from .parameters import pack, split_weights, unpack, updated


# -- the equations over the parameters dict ----------------------------------------------
def make_step(g, learning_rate: float, with_cost: bool, output=SIGMOID, weighted: bool = False):
    """``params, X, Y -> (params, J)``: one iteration of the equations on the whole of X."""

    def step(params, X, Y):
        Y, weights = split_weights(Y, weighted)
        *new, J = equations.step(X, Y, *unpack(params), g, learning_rate, with_cost, output, weights)
        return pack(new), J

    return step


def make_rule_step(g, rule, with_cost: bool, output=SIGMOID, weighted: bool = False):
    """``params, state, X, Y -> (params, state, J)``: the equations' gradients on the whole of X,
    moved by ``rule`` (:class:`~backprop_core.optimizers.UpdateRule`: the L2 penalty, then the
    optimizer, whose ``state`` it carries)."""

    def step(params, state, X, Y):
        Y, weights = split_weights(Y, weighted)
        *grads, J = equations.gradients(X, Y, *unpack(params), g, with_cost=with_cost, output=output,
                                        weights=weights)
        return rule(params, state, grads, J, X.shape[1])

    return step


def make_cost(g, output=SIGMOID, weighted: bool = False, rule=None):
    """``params, X, Y -> J`` (with ``rule``'s L2 penalty, where it has one)."""

    def cost(params, X, Y):
        Y, weights = split_weights(Y, weighted)
        _, _, Z2, _ = equations.forward(X, *unpack(params), g, output)
        J = equations.cost_from_logits(Z2, Y, output=output, weights=weights)
        return J if rule is None else rule.cost(params, J, X.shape[1])

    return cost


def make_validation_scores(g, output=SIGMOID, weighted: bool = False):
    """``params, X, Y -> [J, accuracy]`` on held-out data, as one array (so one host read).

    Accuracy counts an example as right when every output is (the argmax for
    softmax, each A2 > 0.5 for sigmoid outputs); weighted like the cost.
    """

    def scores(params, X, Y):
        Y, weights = split_weights(Y, weighted)
        xp = array_namespace(X)
        _, _, Z2, _ = equations.forward(X, *unpack(params), g, output)
        J = equations.cost_from_logits(Z2, Y, output=output, weights=weights)
        if output.name == "softmax":
            right = xp.argmax(Z2, axis=0) == xp.argmax(Y, axis=0)
        else:
            right = xp.all((Z2 > 0.0) == (Y > 0.5), axis=0)
        right = xp.astype(right, X.dtype)
        accuracy = xp.mean(right if weights is None else weights[0, ...] * right)
        return xp.stack([J, accuracy])

    return scores


def validation_evaluator(X, Y, g, backend, output=SIGMOID, weighted: bool = False):
    """For :class:`~backprop_core.loop.EarlyStopping`: ``params -> (cost, accuracy)`` on X, Y, as floats."""
    scores = backend.compile(make_validation_scores(g, output, weighted))

    def evaluate(params):
        cost, accuracy = backend.to_numpy(scores(params, X, Y)).tolist()
        return cost, accuracy

    return evaluate


def make_equations_gradients(backend, g, output=SIGMOID, weighted: bool = False):
    """``make(with_cost)`` for :class:`ChunkedGradients`: the equations on one chunk, compiled by the backend.

    One compiled function per m (the whole batch's size, a constant of the
    step); the chunks' shapes differ at most in their last column count.
    """

    def make(with_cost):
        compiled = {}

        def gradients(params, Xc, Yc, m):
            if m not in compiled:
                def chunk(params, Xc, Yc):
                    Yc, weights = split_weights(Yc, weighted)
                    return equations.gradients(Xc, Yc, *unpack(params), g, m, with_cost, output, weights)

                compiled[m] = backend.compile(chunk)
            return compiled[m](params, Xc, Yc)

        return gradients

    return make


# -- the strategies ------------------------------------------------------------------------
class RuleSteps:
    """The compiled steps of :class:`WholeBatch` and :class:`MiniBatch`, and the update rule's state.

    With ``rule`` None (or the lecture's: gradient descent without penalty) a
    step is :func:`make_step`, as it always was; otherwise :func:`make_rule_step`,
    and the strategy keeps the rule's state (``optimizer_state``) from step to step.
    """

    def _compile_steps(self, g, learning_rate, backend, output, weighted, rule, state):
        self.rule = beyond_lecture(rule)
        self.optimizer_state = state if self.rule is not None else None
        if self.rule is None:
            self._step = backend.compile(make_step(g, learning_rate, False, output, weighted))
            self._step_with_cost = backend.compile(make_step(g, learning_rate, True, output, weighted))
        else:
            self._step = backend.compile(make_rule_step(g, self.rule, False, output, weighted))
            self._step_with_cost = backend.compile(make_rule_step(g, self.rule, True, output, weighted))
        self._cost = backend.compile(make_cost(g, output, weighted, self.rule))

    def _rule_step(self, step, params, X, Y):
        params, self.optimizer_state, J = step(params, self.optimizer_state, X, Y)
        return params, J


class WholeBatch(RuleSteps, Strategy):
    """The lecture's step on all m examples at once, compiled by the backend where it can be.

    ``rule``, ``state``: the update rule and its start state (:class:`RuleSteps`).
    """

    def __init__(self, X, Y, g, learning_rate: float, backend, output=SIGMOID, weighted: bool = False,
                 rule=None, state=None):
        self.X, self.Y, self.backend = X, Y, backend
        self._compile_steps(g, learning_rate, backend, output, weighted, rule, state)

    def step(self, params, i, with_cost):
        step = self._step_with_cost if with_cost else self._step
        if self.rule is None:
            return step(params, self.X, self.Y)
        return self._rule_step(step, params, self.X, self.Y)

    def cost(self, params):
        return self._cost(params, self.X, self.Y)

    def running(self):
        return self.backend.context()


class Chunked(Strategy):
    """The whole batch's step, its gradients summed over chunks (:class:`ChunkedGradients`).

    ``rule`` (an :class:`~backprop_core.optimizers.UpdateRule`) and its start
    ``state``: how the summed gradients move the parameters (None: the lecture's
    gradient descent at ``learning_rate``).
    """

    def __init__(self, X, Y, learning_rate: float, backend, gradients: ChunkedGradients, rule=None, state=None):
        self.X, self.Y, self.learning_rate, self.backend = X, Y, learning_rate, backend
        self.gradients = gradients
        self.memory_advice = (f"use a smaller chunk_size than {gradients.chunk_size} "
                              f"(execution_context(chunk_size=...) around the fit)")
        self.rule = beyond_lecture(rule)
        self.optimizer_state = state if self.rule is not None else None

    def step(self, params, i, with_cost):
        *grads, J = self.gradients(params, self.X, self.Y, with_cost)
        if self.rule is None:
            return updated(params, grads, self.learning_rate), J
        # The penalty and the rule once, on the sum: per chunk the penalty would count once a chunk.
        params, self.optimizer_state, J = self.rule(params, self.optimizer_state, grads, J, self.X.shape[1])
        return params, J

    def cost(self, params):
        J = self.gradients(params, self.X, self.Y, with_cost=True)[4]
        return J if self.rule is None else self.rule.cost(params, J, self.X.shape[1])

    def running(self):
        stack = contextlib.ExitStack()
        stack.enter_context(self.backend.context())
        stack.enter_context(self.gradients.running())
        return stack


class Lowered(Strategy):
    """The whole batch's step as a lowering target compiled it (:mod:`backprop_core.lowering`):
    ``step(params, X, Y, with_cost) -> (params, J)`` on X (n0, m) and Y (n2, m) (a weighted fit:
    (n2 + 1, m), the weights last), as ``step.prepare`` laid them out; J None unless ``with_cost``."""

    def __init__(self, X, Y, step, backend):
        self.X, self.Y, self.lowered, self.backend = X, Y, step, backend

    def step(self, params, i, with_cost):
        return self.lowered(params, self.X, self.Y, with_cost)

    def cost(self, params):
        return self.lowered(params, self.X, self.Y, True)[1]

    def running(self):
        return self.backend.context()

    @property
    def levers(self) -> dict:
        """What the step does per iteration, where it says (the CuPy kernels': graph replay, launches)."""
        levers = getattr(self.lowered, "levers", None)
        if levers is None:
            raise AttributeError("this step reports no levers")
        return levers


class MiniBatch(RuleSteps, Strategy):
    """Mini-batch gradient descent: one update per batch of a fresh shuffle each epoch.

    The shuffles come from ``numpy.random.default_rng(seed)`` on the host, so a
    run is reproducible on every backend; only the permutation travels to the
    device.  The cost recorded at a step is that batch's; :meth:`cost` is the
    cost on all the data.  ``rule``, ``state``: as for :class:`WholeBatch` (an
    L2 penalty counts each batch's m, as scikit-learn's MLP does).
    """

    unit = "update"

    def __init__(self, X, Y, g, learning_rate: float, backend, batch_size: int, seed=0, output=SIGMOID,
                 weighted: bool = False, rule=None, state=None):
        self.X, self.Y, self.backend = X, Y, backend
        self.bounds = chunk_bounds(X.shape[1], batch_size)
        self.rng = np.random.default_rng(seed)
        self._compile_steps(g, learning_rate, backend, output, weighted, rule, state)
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
        if self.rule is None:
            return step(params, self.Xs[:, a:b], self.Ys[:, a:b])
        return self._rule_step(step, params, self.Xs[:, a:b], self.Ys[:, a:b])

    def cost(self, params):
        return self._cost(params, self.X, self.Y)

    def running(self):
        return self.backend.context()
