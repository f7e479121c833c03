"""The "kernels" executor: the traced equations lowered for CuPy, launch by launch.

Where :mod:`backprop_core.lowering.cuda_fused` compiles a narrow network into one kernel,
this lowering serves every shape.  The graph of ``equations.gradients`` (and of
``equations.update`` after it) is cut into matrix products and sums over the
examples, which cuBLAS computes on buffers made once (transposed views, no
copies, TF32 when the adapter's precision says so), and maximal element-wise
chains between them, each printed as ONE kernel from the fused kernel's scalar
lowering (:mod:`.partition`, :mod:`.source`, :mod:`.program`).  On CuPy the
whole step is captured into a CUDA graph and replayed (the loop's strategy
:class:`.graph_step.GraphStep`, :mod:`.cupy_runner`); on a CPU
the same launches run with the chains built as host C++ (:mod:`.host`), which
is how they are tested.  No line of the lecture's math is
written here: change an equation and the kernels follow the trace.

Until a GPU run has measured it beating the equations run array by array,
the planner keeps "equations" as CuPy's executor (:data:`PROVEN`); a user asks
for this one by the environment variable :data:`ENVIRONMENT`::

    BACKPROP_CORE_CUPY_EXECUTOR=kernels python train.py

An environment variable, because it reaches every entry point (the functional
API, the estimator, the command line, the benchmark) without a keyword added
to each, and leaves the default alone; it only picks between two executors of
this library, never anything outside it.
"""

from __future__ import annotations

import os

from ...errors import InvalidInputError
from ..target import EXECUTOR, Target
from .graph_step import GraphStep
from .partition import INLINE_TERMS, Partition, Step, partition
from .program import Program, gradients_graph, step_graph
from .steps import make_kernel_gradients  # CuPy is imported when it runs

#: What a plan calls this target (``Plan.executor``).
NAME = "kernels"

#: Set once a GPU run has shown the kernels beating the naive CuPy path (issue 10):
#: then :func:`cupy_executor` picks "kernels" unless the environment says otherwise.
PROVEN = False

#: The environment variable choosing CuPy's executor: "kernels" or "equations".
ENVIRONMENT = "BACKPROP_CORE_CUPY_EXECUTOR"
EXECUTORS = ("equations", "kernels")


def cupy_executor() -> str:
    """The executor for a CuPy fit: the environment's choice, else "kernels" once :data:`PROVEN`."""
    asked = os.environ.get(ENVIRONMENT, "").strip()
    if not asked:
        return "kernels" if PROVEN else "equations"
    if asked not in EXECUTORS:
        raise InvalidInputError(f"{ENVIRONMENT}={asked!r}: choose one of {', '.join(EXECUTORS)}")
    return asked


def applies(fit) -> tuple[bool, str]:
    """The kernels compute a fit on CuPy once proven, or when the environment asks (:func:`cupy_executor`)."""
    if not fit.backend.fuses_kernels:
        return False, f"the CuPy kernels run on a backend that runs kernels made by this library (cupy), " \
                      f"not {fit.backend.name!r}"
    if str(fit.dtype) not in ("float32", "float64"):
        return False, f"the kernels compute in float32 or float64, not {fit.dtype}"
    if cupy_executor() != "kernels":
        return False, (f"the kernels wait for a GPU run proving them faster than the equations "
                       f"({ENVIRONMENT}=kernels asks for them now)")
    return True, "the traced step as CuPy kernels and cuBLAS"


def gradients(fit, columns: int):
    """The executor's question: ``make(with_cost)`` for chunks of at most ``columns`` examples."""
    return make_kernel_gradients(fit.backend, fit.activation, fit.shape, fit.dtype, columns, fit.output,
                                 fit.weighted)


def compile(fit, learning_rate, *, threads=None) -> GraphStep:  # noqa: A001 - the targets' question
    """The whole batch's step, gradients and the lecture's update, replayed as a CUDA graph."""
    return GraphStep(fit.shape, fit.activation, learning_rate, fit.backend, fit.dtype, fit.output, fit.weighted)


TARGET = Target(NAME, EXECUTOR, applies, compile, gradients)

__all__ = ["ENVIRONMENT", "EXECUTORS", "GraphStep", "INLINE_TERMS", "NAME", "PROVEN", "Partition", "Program",
           "Step", "TARGET", "applies", "compile", "cupy_executor", "gradients", "gradients_graph",
           "make_kernel_gradients", "partition", "step_graph"]
