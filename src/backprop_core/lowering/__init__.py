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

The op table every form of the element-wise ops comes from is :mod:`.ops`.
"""

from .build_cache import BuildError

__all__ = ["BuildError", "TARGETS"]


def __getattr__(name):
    # Made on first use: the targets import the lowerings (fused/, tracing), which import .ops.
    if name == "TARGETS":  # the targets the planner asks, in order
        from . import cpu_fused

        return (cpu_fused,)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
