"""The fused step on a CPU: how its expressions are checked without a GPU.

Two forms, both returning every output of the step (the updated parameters
under their own names, dW1..db2 and J) for X (n0, m), Y (n2, m):

:func:`run_numpy`
    the lowered :class:`~.scalar.Program` evaluated with NumPy, vectorised over
    the examples: checks the lowering (per-example expressions, sums, phases).
:class:`HostBuild`
    the generated CUDA source itself compiled as host C++ (``g++ -x c++``)
    and called through ctypes: checks the printed C as well (operators,
    single-precision functions and literals, the after phase), line for line
    the text the GPU compiles.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..ops import OPS
from .cuda import KernelSource
from .scalar import EXAMPLE, PARAMETERS, Program

#: The NumPy function of each scalar op (astype is by target type, in run_numpy).
NUMPY_OPERATIONS = {name: op.numpy for name, op in OPS.items()}


def run_numpy(program: Program, X, Y, params: dict, *, m=None, learning_rate=0.0) -> dict:
    """Every output of ``program`` for the examples of X, Y, in X's dtype.

    ``m`` (the batch's size, which scales the sums) defaults to X's columns.
    """
    dtype = X.dtype
    data = {"X": X, "Y": Y}
    scalars = {"m": X.shape[1] if m is None else m, "learning_rate": learning_rate}
    values = {}
    for s in program.scalars:
        if s.op == "input":
            if s.phase == EXAMPLE:
                value = data[s.name][s.index[:-1]]
            elif s.index == ():
                value = dtype.type(scalars[s.name])
            else:
                value = params[s.name][s.index]
        elif s.op == "const":
            value = dtype.type(s.value)
        elif s.op == "total":
            contribution = np.broadcast_to(values[id(program.accumulators[s.index])], X.shape[1:])
            value = np.sum(contribution, dtype=dtype)
        elif s.op == "astype":
            value = np.asarray(values[id(s.args[0])]).astype(dtype if s.dtype == "float" else bool)
        else:
            value = NUMPY_OPERATIONS[s.op](*(values[id(a)] for a in s.args))
        values[id(s)] = value
    return {name: np.vectorize(lambda s: values[id(s)], otypes=[dtype])(arr) if arr.ndim
            else np.asarray(values[id(arr[()])], dtype=dtype)
            for name, arr in program.outputs.items()}


def compiler() -> str | None:
    """The host C++ compiler, or None where there is none."""
    return shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


class HostLibrary:
    """Generated C++ ``text`` built for the CPU and loaded through ctypes (``lib``).

    No fast-math and no contraction: the host build rounds as the equations do.
    Built in ``workdir``, or in a temporary folder that :meth:`close` removes;
    ``what`` names the text in a failed build's message.
    """

    def __init__(self, text: str, what: str, workdir: str | Path | None = None):
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler (g++, c++ or clang++) on this machine")
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="bc-host-")
        folder = Path(workdir if workdir is not None else self._tmp.name)
        stem = hashlib.sha256(text.encode()).hexdigest()[:16]
        src, lib = folder / f"{stem}.cpp", folder / f"{stem}.so"
        src.write_text(text)
        done = subprocess.run([cxx, "-x", "c++", "-std=c++14", "-O1", "-ffp-contract=off", "-fPIC",
                               "-shared", "-o", str(lib), str(src)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the host build of {what} failed:\n{done.stderr}")
        self.lib = ctypes.CDLL(str(lib))

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()


class HostBuild:
    """The generated source compiled for the CPU; call :meth:`run` like :func:`run_numpy`."""

    def __init__(self, source: KernelSource, workdir: str | Path | None = None):
        self.source = source
        self._build = HostLibrary(source.text, "the fused source", workdir)
        self._lib = self._build.lib
        self._real = np.dtype(source.dtype)

    def run(self, X, Y, params: dict, *, m=None, learning_rate=0.0, variant="cost") -> dict:
        real = self._real
        ctype = ctypes.c_float if real == np.float32 else ctypes.c_double
        pointer = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        p = np.concatenate([np.asarray(params[name], dtype=real).ravel() for name in PARAMETERS])
        sums = np.empty(self.source.accumulators[variant], dtype=real)
        out = np.full(self.source.output_size, np.nan, dtype=real)
        data = [np.asarray(a, dtype=real) for a in (X, Y)]  # alive until the call returns
        args = []
        for a in data:
            args += [pointer(a), *(ctypes.c_longlong(s // real.itemsize) for s in a.strides)]
        scalars = [ctype(X.shape[1] if m is None else m), ctype(learning_rate)]
        partial = getattr(self._lib, self.source.host_function("partial", variant))
        partial(*args, ctypes.c_longlong(X.shape[1]), *scalars, pointer(p), pointer(sums))
        finalize = getattr(self._lib, self.source.host_function("finalize", variant))
        finalize(pointer(sums), *scalars, pointer(p), pointer(out))
        return {name: out[offset:offset + int(np.prod(shape))].reshape(shape)
                for name, (offset, shape) in self.source.offsets.items()
                if name != "J" or variant == "cost"}

    def close(self):
        self._build.close()
