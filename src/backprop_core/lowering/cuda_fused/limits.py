"""When the fused kernel applies, and the checks of its arguments.

Each thread of the fused kernel keeps one accumulator per gradient element
and the cost, and the parameters, in registers.  Narrow networks fit; a wide
one would spill them to memory, and its matrix products belong to cuBLAS
anyway, so beyond :data:`MAX_ACCUMULATORS` the array-API path runs.
"""

from __future__ import annotations

import numbers

from ...activations import Activation, get_activation
from ...errors import InvalidInputError, InvalidTypeError

#: Provisional limit on the sums one thread keeps in registers (n1*n0 + n1 + n2*n1 + n2 + 1).
#: From ptxas's report for sm_90 (CUDA 13, tanh): the partial kernel spills nothing up to
#: 98 sums in float32 and 82 in float64, and spills from 122 and 98; 64 keeps a margin in
#: both.  Registers are not speed: the limit awaits the throughput crossover against the
#: array-API path (jax.jit, CuPy) measured on one card at shapes around it.
MAX_ACCUMULATORS = 64

#: "auto" picks the fused kernel only once a GPU run has shown it beats the
#: array-API path; until then only ``fused=True`` turns it on.
AUTO_PROVEN = False


def accumulator_count(n0: int, n1: int, n2: int) -> int:
    """Sums over the examples of one step with its cost: every gradient element, and J."""
    return n1 * n0 + n1 + n2 * n1 + n2 + 1


def check_shape(n0, n1, n2) -> tuple:
    for name, n in (("n0", n0), ("n1", n1), ("n2", n2)):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise InvalidTypeError(f"layer size {name} must be an integer, not {type(n).__name__}")
        if n < 1:
            raise InvalidInputError(f"layer size {name} must be at least 1, got {n}")
    return int(n0), int(n1), int(n2)


def check_dtype(dtype) -> str:
    name = getattr(dtype, "name", None) or getattr(dtype, "__name__", None) or str(dtype)
    if name not in ("float32", "float64"):
        raise InvalidInputError(f"the fused kernel computes in float32 or float64, not {dtype!r}")
    return name


def check_activation(activation) -> Activation:
    try:
        return get_activation(activation)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None


def fused_support(n0: int, n1: int, n2: int) -> tuple[bool, str]:
    """Does the fused kernel apply to an n0-n1-n2 network?  ``(applies, why)``."""
    n0, n1, n2 = check_shape(n0, n1, n2)
    count = accumulator_count(n0, n1, n2)
    if count > MAX_ACCUMULATORS:
        return False, (f"a {n0}-{n1}-{n2} network needs {count} sums per thread, over the fused "
                       f"kernel's limit of {MAX_ACCUMULATORS} (registers); the array-API path runs")
    return True, f"a {n0}-{n1}-{n2} network needs {count} sums per thread (limit {MAX_ACCUMULATORS})"


def choose(fused, n0: int, n1: int, n2: int) -> tuple[bool, str]:
    """What the ``fused=`` keyword of the cupy backend decides: ``(use it, why)``.

    ``False``: never.  ``True``: whenever the shape fits (otherwise the reason,
    for a warning).  ``"auto"``: only where the shape fits and the kernel has
    proven itself on a GPU (:data:`AUTO_PROVEN`).
    """
    if fused is False or fused is None:
        return False, "the fused kernel was not asked for"
    if fused is not True and fused != "auto":
        raise InvalidInputError(f"fused must be True, False or 'auto', not {fused!r}")
    applies, why = fused_support(n0, n1, n2)
    if fused == "auto" and applies and not AUTO_PROVEN:
        return False, "fused='auto' waits for GPU measurements; pass fused=True to use it now"
    return applies, why
