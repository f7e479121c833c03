"""What every target answers, and what it is asked about.

A target lowers the traced step (:mod:`backprop_core.tracing`) to where it
runs.  The planner knows a target only as a :class:`Target`: its name, how it
is chosen, and two questions, both asked about one :class:`Fit`:

``applies(fit) -> (bool, why)``
    does it run this fit, and why not (the planner puts the why in ``Plan.reason``);
``compile(fit, learning_rate, *, threads=None) -> step``
    the step object the training loop calls, whatever the target:
    ``step(params, X, Y, with_cost) -> (params, J)`` on the whole batch
    (params ``{"W1", "b1", "W2", "b2"}``; X (n0, m); Y (n2, m), or (n2 + 1, m)
    with the weights last in a weighted fit; J None unless ``with_cost``), and
    ``step.prepare(a)``: an array as the step reads it (laid out once, before the loop).

A target that computes a chunk's gradients (an *executor*, which the chunk
plans, worker threads and processes sum) also answers
``gradients(fit, columns) -> make(with_cost)`` for
:class:`~backprop_core.chunked.ChunkedGradients`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from array_api_compat import is_numpy_namespace

from ..equations import SIGMOID
from ..optimizers import beyond_lecture

#: How the planner chooses a target.
#: EXECUTOR: the first that applies computes the chunks' gradients of the backend's plans.
#: MEASURED: timed against the plan it would replace; runs where measured faster (noise rule).
#: ASKED: runs where the user's ``fused`` option asks for it and it applies ("auto": once proven).
EXECUTOR, MEASURED, ASKED = "executor", "measured", "asked"


@dataclass(frozen=True)
class Fit:
    """One fit as a target is asked about it.

    ``backend``: the array adapter it computes on; ``shape``: (n0, n1, n2)
    (None where the question does not depend on it: which executor a backend
    runs); ``activation``: an :class:`~backprop_core.activations.Activation`;
    ``dtype``: "float32" or "float64"; ``output``: the output layer;
    ``weighted``: the examples carry weights; ``rule``: the
    :class:`~backprop_core.optimizers.UpdateRule` (None: the lecture's
    gradient descent), which a target that fuses the update must apply.
    """

    backend: object
    shape: tuple | None = None
    activation: object = None
    dtype: str = "float64"
    output: object = SIGMOID
    weighted: bool = False
    rule: object = None

    @property
    def host_numpy(self) -> bool:
        """Are the data NumPy arrays on the host?"""
        return is_numpy_namespace(self.backend.xp) and not self.backend.on_gpu

    @property
    def device(self) -> str:
        return "cpu" if not self.backend.on_gpu else str(self.backend.device)

    @property
    def optimizer(self) -> str | None:
        """The update rule in words, None for the lecture's gradient descent."""
        rule = beyond_lecture(self.rule)
        if rule is None:
            return None
        return rule.optimizer.name if not rule.alpha else \
            f"{rule.optimizer.name} with the L2 penalty alpha={rule.alpha:g}"


@dataclass(frozen=True)
class Target:
    """One target as the planner sees it (module docstring: the questions).

    ``blas``: its step computes with the backend's BLAS (so the planner sets
    BLAS's threads for it); ``proven``: for an ASKED target, may ``fused="auto"``
    choose it (read when asked: a GPU run sets it).
    """

    name: str
    chosen: str
    applies: Callable
    compile: Callable
    gradients: Callable | None = None
    blas: bool = False
    proven: Callable[[], bool] = lambda: True
