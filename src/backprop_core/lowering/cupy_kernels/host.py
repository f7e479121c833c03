"""The launches of a :class:`~.program.Program` run on a CPU: how they are tested without a GPU.

The chains' source, the very text CuPy compiles, is built as host C++
(``g++ -x c++``, no fast-math, no contraction: :class:`backprop_core.lowering.cuda_fused.host.HostLibrary`,
which builds the fused kernel too) and each chain launch calls its ``bc_host_chain<k>``
through ctypes on NumPy arrays; each cuBLAS call is carried out by
:func:`.gemm.emulate` on the same memory through the same leading dimensions.
So a run here checks the partition, the placement of every value (buffers
reused, views, ``out``), the printed arithmetic and the BLAS arguments at once.
:class:`HostDevice` runs :mod:`.steps` (the loop's strategy, its parameter
buffer, its recorded and replayed "graphs") the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path

import numpy as np

from ..cuda_fused.host import HostLibrary
from .gemm import emulate
from .program import Arena, Bound, ChainLaunch, Program


def numpy_arena(program: Program, columns: int, **sizes) -> Arena:
    """An arena of NumPy arrays for chunks of ``columns`` examples."""
    return program.arena(columns, lambda shape, dtype: np.empty(shape, dtype),
                         lambda n, dtype: np.ones(n, dtype), **sizes)


class HostChains:
    """A program's chains compiled for the CPU; :meth:`run` carries out a :class:`Bound` call."""

    def __init__(self, program: Program, workdir: str | Path | None = None):
        self._build = HostLibrary(program.source.text, "the chains", workdir)
        self._lib = self._build.lib
        self._real = ctypes.c_float if program.dtype == "float32" else ctypes.c_double
        self.program = program

    def _call(self, launch: ChainLaunch):
        convert = {"array": lambda a: ctypes.c_void_p(a.ctypes.data), "stride": ctypes.c_longlong,
                   "real": self._real, "bool": ctypes.c_bool}
        args = [convert[kind](value) for kind, value in launch.args]
        getattr(self._lib, launch.kernel.host_name)(ctypes.c_longlong(launch.count),
                                                    ctypes.c_longlong(launch.inner), *args)

    def run(self, bound: Bound) -> tuple:
        """Every launch in order; returns copies of the outputs."""
        for launch in bound.launches:
            if isinstance(launch, ChainLaunch):
                self._call(launch)
            else:
                emulate(launch.call, launch.C, launch.A, launch.B)
        return tuple(None if out is None else np.array(out) for out in bound.outputs)

    def __call__(self, values: dict, **sizes) -> tuple:
        """The graph's outputs for ``values`` (name -> NumPy array or number), in fresh buffers."""
        c = self.program.check(values)
        return self.run(self.program.bind(numpy_arena(self.program, c, **sizes), values))

    def close(self):
        self._build.close()


class HostDevice:
    """Where :mod:`.steps` runs programs on a CPU: NumPy arrays, each program's chains built as
    host C++, and a "graph" that records the calls a capture makes and replays them.

    Built like :class:`.cupy_runner.CupyDevice`, from ``(backend, dtype)``.
    """

    capturable = True
    how = "the host stand-in: chains built as host C++, products emulated with NumPy"

    def __init__(self, backend=None, dtype: str = "float64", workdir: str | Path | None = None):
        self._workdir, self._chains = workdir, {}

    def context(self):
        return contextlib.nullcontext()

    def arena(self, program: Program, columns: int, **sizes) -> Arena:
        return numpy_arena(program, columns, **sizes)

    def empty(self, size: int, dtype: str):
        return np.empty(size, dtype)

    def stream(self):
        return None  # work runs as it is queued

    def _run_later(self, stream, work):
        if stream is None:
            work()
        else:  # a capture: recorded, to run at each replay
            stream.append(work)

    def launch(self, program: Program, bound: Bound, stream):
        if id(program) not in self._chains:
            self._chains[id(program)] = HostChains(program, self._workdir)
        chains = self._chains[id(program)]
        self._run_later(stream, lambda: chains.run(bound))

    def copy(self, destination, source, stream):
        self._run_later(stream, lambda: np.copyto(destination, source))

    def capture(self, enqueue) -> list:
        recorded = []
        enqueue(recorded)
        return recorded

    def replay(self, graph: list, stream):
        for work in graph:
            work()
