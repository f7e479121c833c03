"""The lecture's equations compiled into one fused GPU kernel.

``equations.gradients`` and ``equations.update`` run on symbolic arrays
(:mod:`backprop_core.tracing`); :mod:`.scalar` turns the recorded graph into
per-example expressions and sums over the examples; :mod:`.cuda` prints them as
one CUDA kernel over the examples and a tiny one after; :mod:`.host` runs the
same expressions on a CPU, which is how they are tested; :mod:`.cupy_step`
compiles and launches them on CuPy arrays (imported only when asked for).
"""

from ...equations import SIGMOID
from ..target import ASKED, Target
from . import limits
from .cuda import KernelSource, kernel_source
from .limits import MAX_ACCUMULATORS, accumulator_count, choose, fused_support
from .scalar import NotFusableError, Program, lower_step

__all__ = ["FusedStep", "KernelSource", "MAX_ACCUMULATORS", "NAME", "NotFusableError", "Program", "TARGET",
           "accumulator_count", "applies", "choose", "compile", "fused_support", "kernel_source", "lower_step"]

#: What a plan calls this target (``Plan.executor``).
NAME = "fused"


def applies(fit) -> tuple[bool, str]:
    """Does the fused kernel run this fit?  CuPy arrays, a narrow network, the sigmoid output without
    weights, the lecture's gradient descent (its update is fused in)."""
    if not fit.backend.fuses_kernels:
        return False, f"the fused kernel runs on a backend that compiles fused kernels (cupy), not {fit.backend.name!r}"
    fits, why = fused_support(*fit.shape)
    if not fits:
        return False, why
    if fit.output != SIGMOID or fit.weighted:
        return False, "the fused kernel computes the sigmoid output without sample weights"
    if fit.optimizer is not None:
        return False, f"the fused kernel updates by gradient descent without L2 penalty, not by {fit.rule}"
    if str(fit.dtype) not in ("float32", "float64"):
        return False, f"the fused kernel computes in float32 or float64, not {fit.dtype}"
    return True, why


def compile(fit, learning_rate, *, threads=None):  # noqa: A001 - the targets' question
    """The fused step on the fit's CuPy device (CuPy imported here)."""
    from .cupy_step import FusedStep

    return FusedStep(*fit.shape, fit.activation, learning_rate, fit.dtype, fit.backend.device)


#: "auto" picks the fused kernel only once a GPU run has proven it (:data:`.limits.AUTO_PROVEN`).
TARGET = Target(NAME, ASKED, applies, compile, proven=lambda: limits.AUTO_PROVEN)


def __getattr__(name):
    if name == "FusedStep":  # CuPy is imported only by whoever asks for the GPU step
        from .cupy_step import FusedStep

        return FusedStep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
