"""The traced step lowered to where it runs: every target behind one interface.

The layers: the lecture's equations (:mod:`backprop_core.equations`) are
traced once into a graph (:mod:`backprop_core.tracing`); each element-wise op
has all its forms in one row of :mod:`.ops`; one buffer plan
(:mod:`.liveness`) says which values may share memory; each target lowers the
graph its own way, in one module of this package:

:mod:`.numpy_buffers`
    NumPy calls writing into buffers made once (the NumPy executor);
:mod:`.cupy_kernels`
    CuPy element-wise kernels and cuBLAS, replayed as a CUDA graph;
:mod:`.cuda_fused`
    the whole step as one CUDA kernel;
:mod:`.cpu_fused`
    the same per-example lines printed as C for the CPU.

Every target answers the same questions (:mod:`.target`: ``applies(fit)``,
``compile(fit, learning_rate)`` giving a step object with one call shape);
:data:`TARGETS` lists them, and the planner asks them in that order.  Nothing
else names a target: adding one is one module and its line in :func:`_targets`.
"""

from .build_cache import BuildError

__all__ = ["BuildError", "TARGETS", "find"]


def _targets() -> tuple:
    # Imported on first use: the targets import tracing, which imports .ops.
    from . import cpu_fused, cuda_fused, cupy_kernels, numpy_buffers
    from .target import MEASURED, Target

    # cpu_fused's own functions take the fit's parts (its tests call them so); here they are asked about a Fit.
    def cpu_applies(fit):
        return cpu_fused.applies(fit.shape, fit.activation, fit.dtype, fit.device, output=fit.output,
                                 weighted=fit.weighted, optimizer=fit.optimizer, host_numpy=fit.host_numpy)

    def cpu_compile(fit, learning_rate, *, threads=None):
        return cpu_fused.compile(fit.shape, fit.activation, fit.dtype, learning_rate, output=fit.output,
                                 threads=threads)

    return (cuda_fused.TARGET, cupy_kernels.TARGET, numpy_buffers.TARGET,
            Target(cpu_fused.NAME, MEASURED, cpu_applies, cpu_compile))


def find(name: str):
    """The target called ``name`` (a :class:`~.target.Target`), None if none is."""
    return next((t for t in __getattr__("TARGETS") if t.name == name), None)


def __getattr__(name):
    if name == "TARGETS":  # the targets the planner asks, in order; made once
        if "TARGETS" not in globals():
            globals()["TARGETS"] = _targets()
        return globals()["TARGETS"]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
