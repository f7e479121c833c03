"""The fused step on the CPU: the traced equations as one C function per iteration.

:mod:`.cpu_source` prints the step; :mod:`.build_cache` builds it once per
machine; :class:`CpuFusedStep` calls it on NumPy arrays through ctypes (which
releases the GIL), the examples cut into one range per thread of a pool the
library keeps.

When it applies: NumPy arrays on the host, float32 or float64, a network narrow
enough that every sum over the examples fits in registers
(:func:`backprop_core.lowering.cuda_fused.fused_support`), plain gradient descent, a C
compiler, and not turned off with ``BACKPROP_CORE_CPU_FUSED=0``.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

from ..activations import get_activation
from ..equations import SIGMOID, get_output
from ..errors import InvalidInputError, InvalidTypeError
from .cuda_fused.limits import fused_support
from ..parameters import NAMES as PARAMETERS
from ..validation import check_shapes
from . import build_cache
from .build_cache import BuildError, load
from .cpu_source import cpu_source

NAME = "cpu-fused"
#: Set to 0 to keep the planner from ever choosing this target.
ENVIRONMENT = "BACKPROP_CORE_CPU_FUSED"
#: The compiler's flags.  No -ffast-math: NaN and infinity must propagate as in the
#: equations (divergence detection reads them); -fno-math-errno lets the math calls
#: vectorise (errno is never read); -fopenmp-simd reads the SIMD loops' pragma (no OpenMP
#: runtime: the threads are the text's own pool).
#: -fno-trapping-math: the floating-point exception flags are never read either, so both sides of a
#: select may be computed unmasked (1.2-1.4x at 2-4-1 float32, and GCC 12 vectorises the cost variant's
#: loop only with it: bench/cpu_fused_ab.py's --lever flags); NaN and infinity are values, not traps,
#: and still propagate.
#: -z defs: a symbol the libraries lack fails the build (then the scalar build runs), not the load.
FLAGS = ("-std=gnu11", "-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math", "-pthread",
         "-Wl,-z,defs")
#: Vector math: glibc's libmvec where it links, else the scalar functions.
MVEC = (("-DBC_MVEC",), ("mvec", "m"))
SCALAR_MATH = ((), ("m",))


def enabled() -> bool:
    return os.environ.get(ENVIRONMENT, "1").strip().lower() not in ("0", "false", "no", "off")


def applies(shape, activation, dtype, device="cpu", *, output=SIGMOID, weighted=False, optimizer=None,
            host_numpy=True) -> tuple[bool, str]:
    """Does the fused CPU step run this fit?  ``(applies, why)``, ``shape = (n0, n1, n2)``.

    ``optimizer``: None or "gd" (plain gradient descent) is the only rule the
    fused step applies; any other is refused here.
    """
    n0, n1, n2 = shape
    if not enabled():
        return False, f"the fused CPU step is turned off ({ENVIRONMENT}=0)"
    if not host_numpy or device not in ("cpu", None):
        return False, "the fused CPU step runs on NumPy arrays on the host"
    if str(np.dtype(dtype)) not in ("float32", "float64"):
        return False, f"the fused CPU step computes in float32 or float64, not {dtype}"
    if weighted:
        return False, "the fused CPU step does not take sample weights"
    if optimizer not in (None, "gd"):
        return False, f"the fused CPU step applies plain gradient descent, not {optimizer!r}"
    fits, why = fused_support(n0, n1, n2)
    if not fits:
        return False, why.replace("the fused kernel's limit", "the fused step's limit")
    if build_cache.c_compiler() is None:
        return False, "no C compiler (gcc or cc) on this machine for the fused CPU step"
    return True, f"the fused CPU step applies: {why}"


class CpuFusedStep:
    """One full-batch iteration as one C call: ``step(params, X, Y, with_cost) -> (params, J)``.

    X (n0, m) and Y (n2, m) are NumPy arrays of ``dtype`` whose rows are
    contiguous, at any distance apart (:meth:`prepare` makes them so); params
    ``{"W1", "b1", "W2", "b2"}``.  Returns new parameters (views of one buffer this call allocated,
    so the ones passed in stay as they were) and J, the cost of the parameters
    passed in, as a 0-d array (None unless ``with_cost``).  ``threads`` ranges
    cut the examples; the same inputs and ``threads`` give the same bits.
    """

    def __init__(self, n0, n1, n2, activation, learning_rate, dtype, *, output=SIGMOID, threads=None, text=None,
                 flags=None):
        self.shape = (int(n0), int(n1), int(n2))
        fits, why = fused_support(*self.shape)
        if not fits:
            raise InvalidInputError(why)
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, (int, float, np.floating)):
            raise InvalidTypeError(f"learning_rate must be a real number, not {type(learning_rate).__name__}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise InvalidInputError(f"the fused CPU step computes in float32 or float64, not {dtype}")
        self.learning_rate = float(learning_rate)
        self.source = cpu_source(*self.shape, get_activation(activation), self.dtype.name, get_output(output))
        self.threads = max(1, int(threads if threads is not None else (os.cpu_count() or 1)))
        # text, flags: the same step printed or built otherwise, for bench/cpu_fused_ab.py's A/B of each lever
        self._lib = _library(self.source.text if text is None else text, FLAGS if flags is None else tuple(flags))
        self._real = ctypes.c_float if self.dtype == np.float32 else ctypes.c_double
        pointer, index = ctypes.c_void_p, ctypes.c_longlong
        data = [pointer, index, pointer, index]  # X and its row stride, Y and its
        self._functions = {}
        for variant in ("cost", "step"):
            step = getattr(self._lib, f"bc_cpu_step_{variant}")
            step.argtypes = [*data, index, self._real, self._real, pointer, pointer, ctypes.c_int, pointer]
            sums = getattr(self._lib, f"bc_cpu_sums_{variant}")
            sums.argtypes = [*data, index, index, self._real, self._real, pointer, pointer]
            step.restype = sums.restype = None
            self._functions[variant] = (step, sums)
        self._parameters = [(name, offset, offset + int(np.prod(shape)), shape)
                            for name, (offset, shape) in self.source.offsets.items() if name in PARAMETERS]
        self._cost_at = self.source.offsets["J"][0]
        self._last = None

    def prepare(self, a) -> np.ndarray:
        """``a`` as this step reads it: a NumPy array of its dtype whose rows are contiguous (copied if not)."""
        if not isinstance(a, np.ndarray):
            raise InvalidTypeError(f"the fused CPU step takes NumPy arrays, not {type(a).__name__}")
        a = np.asarray(a, dtype=self.dtype)
        return a if _rows_contiguous(a) else np.ascontiguousarray(a)

    def _check(self, X, Y) -> int:
        n0, _, n2 = self.shape
        for name, a, rows in (("X", X, n0), ("Y", Y, n2)):
            if not isinstance(a, np.ndarray) or a.dtype != self.dtype or not _rows_contiguous(a):
                raise InvalidInputError(f"{name} must be a NumPy array of {self.dtype} whose rows are contiguous "
                                        f"(CpuFusedStep.prepare makes one)")
            if a.shape[0] != rows:
                raise InvalidInputError(f"{name} must have shape ({rows}, m), not {a.shape}")
        check_shapes(X, Y)  # the same m in both, and at least one example
        return X.shape[1]

    def _flat(self, params) -> np.ndarray:
        if self._last is not None:
            buffer, views = self._last
            if all(params.get(name) is views[name] for name in PARAMETERS):
                return buffer  # the loop's usual case: what the last call returned
        parts = []
        for name in PARAMETERS:
            shape = self.source.offsets[name][1]
            a = params.get(name)
            if a is None:
                raise InvalidInputError(f"the parameters lack {name}")
            if tuple(np.shape(a)) != shape:
                raise InvalidInputError(f"{name} has shape {tuple(np.shape(a))}, expected {shape}")
            parts.append(np.asarray(a, dtype=self.dtype).ravel())
        return np.concatenate(parts)

    def run(self, params, X, Y, with_cost: bool, *, m=None) -> np.ndarray:
        """The step's whole output buffer (updated parameters, J, gradients: ``source.offsets``)."""
        count = self._check(X, Y)
        p = self._flat(params)
        out = np.empty(self.source.output_size, dtype=self.dtype)
        variant = "cost" if with_cost else "step"
        scratch = np.empty(self.threads * self.source.accumulators[variant], dtype=self.dtype)  # per call: thread-safe
        step, _ = self._functions[variant]
        step(X.ctypes.data, _row_stride(X), Y.ctypes.data, _row_stride(Y), count, count if m is None else m,
             self.learning_rate, p.ctypes.data, out.ctypes.data, self.threads, scratch.ctypes.data)
        return out

    def sums(self, params, X, Y, begin: int, end: int, with_cost: bool = True, *, m=None) -> np.ndarray:
        """The sums over examples [begin, end) that a step adds up (one range of one thread)."""
        count = self._check(X, Y)
        if not 0 <= begin <= end <= count:
            raise InvalidInputError(f"the range [{begin}, {end}) is not within the {count} examples")
        p = self._flat(params)
        variant = "cost" if with_cost else "step"
        sums = np.empty(self.source.accumulators[variant], dtype=self.dtype)
        _, function = self._functions[variant]
        function(X.ctypes.data, _row_stride(X), Y.ctypes.data, _row_stride(Y), begin, end, count if m is None else m,
                 self.learning_rate, p.ctypes.data, sums.ctypes.data)
        return sums

    def outputs(self, out: np.ndarray) -> dict:
        """``out`` as named arrays: W1..b2 (updated), J, dW1..db2."""
        return {name: out[offset:offset + int(np.prod(shape))].reshape(shape)
                for name, (offset, shape) in self.source.offsets.items()}

    def __call__(self, params, X, Y, with_cost: bool):
        out = self.run(params, X, Y, with_cost)
        new = {name: out[a:b].reshape(shape) for name, a, b, shape in self._parameters}
        self._last = (out, dict(new))
        return new, (out[self._cost_at:self._cost_at + 1].reshape(()) if with_cost else None)


def _rows_contiguous(a: np.ndarray) -> bool:
    """Is ``a`` 2-D with each row's elements side by side (a chunk of columns of a C-ordered array is)?"""
    return a.ndim == 2 and (a.strides[1] == a.itemsize or a.shape[1] <= 1) and a.strides[0] % a.itemsize == 0


def _row_stride(a: np.ndarray) -> int:
    return a.strides[0] // a.itemsize


_LIBRARIES = {}
#: The cores this process may use, read when this module is first imported (the planner imports it
#: before any plan runs): the pool's threads are one on each of these, pinned (:data:`.cpu_source.POOL`),
#: not on those of the thread that starts them, which a processes plan's running() pins to one core.
CORES = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _library(text: str, flags: tuple) -> ctypes.CDLL:
    """The step's library, built once per machine (vector math where it links)."""
    if (text, flags) not in _LIBRARIES:
        try:
            library = load(text, flags + MVEC[0], MVEC[1], "the fused CPU step")
        except BuildError:
            library = load(text, flags + SCALAR_MATH[0], SCALAR_MATH[1], "the fused CPU step")
        cores = (ctypes.c_int * max(1, len(CORES)))(*CORES)
        library.bc_set_cores(cores, ctypes.c_int(len(CORES)))
        _LIBRARIES[text, flags] = library
    return _LIBRARIES[text, flags]


def compile(shape, activation, dtype, learning_rate, *, output=SIGMOID, threads=None) -> CpuFusedStep:  # noqa: A001
    """The fused step of an n0-n1-n2 network (``shape``), built for this CPU (or found in the cache)."""
    return CpuFusedStep(*shape, activation, learning_rate, dtype, output=output, threads=threads)
