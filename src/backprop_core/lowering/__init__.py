"""The traced step lowered to where it runs: every target answers the same two questions.

A target is a module with

``NAME``
    what a :class:`~backprop_core.planner.Plan` calls it (``Plan.executor``);
``applies(shape, activation, dtype, device, *, output, weighted, optimizer, host_numpy) -> (bool, why)``
    does it run this fit, and why not (the planner puts the why in ``Plan.reason``);
``compile(shape, activation, dtype, learning_rate, *, output, threads) -> step``
    the step the training loop calls: ``step(params, X, Y, with_cost) -> (params, J)``,
    with ``step.prepare(a)`` giving the data as the step reads them.

The planner asks each target of :data:`TARGETS` in turn and times those that
apply against the plan they would replace; nothing else names a target.
"""

from . import cpu_fused
from .build_cache import BuildError

#: The targets the planner asks, in order.
TARGETS = (cpu_fused,)

__all__ = ["BuildError", "TARGETS", "cpu_fused"]
