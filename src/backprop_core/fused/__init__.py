"""The lecture's equations compiled into one fused GPU kernel.

``equations.gradients`` and ``equations.update`` run on symbolic arrays
(:mod:`backprop_core.tracing`); :mod:`.scalar` turns the recorded graph into
per-example expressions and sums over the examples; :mod:`.cuda` prints them as
one CUDA kernel over the examples and a tiny one after; :mod:`.host` runs the
same expressions on a CPU, which is how they are tested; :mod:`.cupy_step`
compiles and launches them on CuPy arrays (imported only when asked for).
"""

from .cuda import KernelSource, kernel_source
from .limits import MAX_ACCUMULATORS, accumulator_count, choose, fused_support
from .scalar import NotFusableError, Program, lower_step

__all__ = ["FusedStep", "KernelSource", "MAX_ACCUMULATORS", "NotFusableError", "Program",
           "accumulator_count", "choose", "fused_support", "kernel_source", "lower_step"]


def __getattr__(name):
    if name == "FusedStep":  # CuPy is imported only by whoever asks for the GPU step
        from .cupy_step import FusedStep

        return FusedStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
