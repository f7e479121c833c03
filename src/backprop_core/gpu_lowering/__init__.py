"""The "kernels" executor: the traced equations lowered for CuPy, launch by launch.

Where :mod:`backprop_core.fused` compiles a narrow network into one kernel,
this lowering serves every shape.  The graph of ``equations.gradients`` (and of
``equations.update`` after it) is cut into matrix products and sums over the
examples, which cuBLAS computes on buffers made once (transposed views, no
copies, TF32 when the adapter's precision says so), and maximal element-wise
chains between them, each printed as ONE kernel from the fused kernel's scalar
lowering (:mod:`.partition`, :mod:`.source`, :mod:`.program`).  On CuPy the
whole step is captured into a CUDA graph and replayed (the loop's strategy
:class:`backprop_core.kernel_steps.KernelSteps`, :mod:`.cupy_runner`); on a CPU
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

from ..errors import InvalidInputError
from .partition import INLINE_TERMS, Partition, Step, partition
from .program import Program, gradients_graph, step_graph
from .steps import make_kernel_gradients  # CuPy is imported when it runs

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


__all__ = ["ENVIRONMENT", "EXECUTORS", "INLINE_TERMS", "PROVEN", "Partition",
           "Program", "Step", "cupy_executor", "gradients_graph", "make_kernel_gradients", "partition", "step_graph"]
