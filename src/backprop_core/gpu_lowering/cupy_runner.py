"""The kernels executor on CuPy: chains as compiled kernels, products by cuBLAS, the step as a CUDA graph.

:class:`KernelSteps` is the loop's strategy for a whole batch on the device:
one program for the step with the cost and one without (gradients, then the
update), their buffers made once, and each captured on first use into a CUDA
graph (CuPy's stream capture) that every later iteration replays with one
launch.  The parameters live in one flat buffer the graph reads; the update
writes the new ones, and J, into ``out``; a copy inside the graph carries
them back into the parameter buffer for the next replay, and a copy after it
hands the caller a fresh array, so parameters the loop keeps (the last good
ones) are never overwritten.

:func:`kernel_gradients` gives :class:`~backprop_core.chunked.ChunkedGradients`
a chunk's gradients the same way, launched one by one (each chunk's data are
another address, which a graph would have to be captured for again).

cuBLAS is called through ctypes with a handle and a workspace of our own:
CuPy's wrapper refuses any cuBLAS call while a stream captures (its
``setStream`` raises NotImplementedError, CuPy 13 to 15), and a workspace set
by ``cublasSetWorkspace`` keeps cuBLAS from allocating inside a capture.  Where
that handle cannot be made, CuPy's wrapper runs the products eagerly and the
graph is off (:attr:`KernelSteps.levers` says why).  Nothing here syncs the
host: a step queues work and returns.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ..equations import SIGMOID
from ..errors import InvalidInputError
from ..fused.cuda import BLOCK
from ..loop import Strategy
from ..parameters import NAMES as PARAMETERS
from ..strategies import split_weights
from .partition import INLINE_TERMS
from .program import ChainLaunch, Program, gradients_graph, step_graph

# cuBLAS's C values (cublas_api.h, library_types.h; the same numbers as CuPy's cublas.pxd).
_OP = {False: 0, True: 1}  # CUBLAS_OP_N, CUBLAS_OP_T
_DATA = {"float32": 0, "float64": 1}  # CUDA_R_32F, CUDA_R_64F
_COMPUTE = {"float32": 68, "float64": 70, "tf32": 77}  # CUBLAS_COMPUTE_32F, _64F, _32F_FAST_TF32
_GEMM_DEFAULT = -1
#: Bytes of cuBLAS workspace (NVIDIA's recommendation for Hopper).
WORKSPACE_BYTES = 32 << 20
#: Blocks per multiprocessor a grid-stride launch fills at most.
BLOCKS_PER_MULTIPROCESSOR = 32


def _load_cublas():
    """The cuBLAS library CuPy uses, as a ctypes library."""
    from cupy_backends.cuda.libs import cublas  # noqa: F401  (CuPy loads the library first)

    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib
    except ImportError:  # CuPy before 14 finds libraries without cuda-pathfinder
        import cupy

        major = cupy.cuda.runtime.runtimeGetVersion() // 1000
        return ctypes.CDLL(f"libcublas.so.{major}")
    return ctypes.CDLL(load_nvidia_dynamic_lib("cublas").abs_path)


class _DirectBlas:
    """cuBLAS reached through ctypes: a handle and workspace of our own, capturable into a graph."""

    capturable = True
    how = "cuBLAS through ctypes, its own handle and workspace (capturable)"

    def __init__(self, cupy):
        lib = _load_cublas()
        vp, i = ctypes.c_void_p, ctypes.c_int
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
        lib.cublasSetStream_v2.argtypes = [vp, vp]
        lib.cublasSetWorkspace_v2.argtypes = [vp, vp, ctypes.c_size_t]
        lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i]
        self._lib, self._handle = lib, vp()
        self._check(lib.cublasCreate_v2(ctypes.byref(self._handle)), "cublasCreate")
        self._workspace = cupy.empty(WORKSPACE_BYTES, dtype=cupy.uint8)
        self._stream = None

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise RuntimeError(f"{what} failed with cuBLAS status {status}")

    def _use_stream(self, stream_ptr):
        if stream_ptr != self._stream:
            lib, handle = self._lib, self._handle
            self._check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream_ptr)), "cublasSetStream")
            # Setting the stream puts cuBLAS back on its own workspace pool: ours again, every time.
            self._check(lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(self._workspace.data.ptr),
                                                  WORKSPACE_BYTES), "cublasSetWorkspace")
            self._stream = stream_ptr

    def gemm(self, stream_ptr, call, pointers, c_ptr, dtype, compute):
        self._use_stream(stream_ptr)
        one, zero = (ctypes.c_float(1.0), ctypes.c_float(0.0)) if dtype == "float32" else \
            (ctypes.c_double(1.0), ctypes.c_double(0.0))
        data = _DATA[dtype]
        self._check(self._lib.cublasGemmEx(
            self._handle, _OP[call.transa], _OP[call.transb], call.m, call.n, call.k, ctypes.byref(one),
            pointers[call.first], data, call.lda, pointers[call.second], data, call.ldb, ctypes.byref(zero),
            c_ptr, data, call.ldc, _COMPUTE[compute], _GEMM_DEFAULT), "cublasGemmEx")


class _CupyBlas:
    """cuBLAS through CuPy's wrapper and handle: eager only (it refuses stream capture)."""

    capturable = False

    def __init__(self, cupy, why: str):
        from cupy_backends.cuda.libs import cublas

        self._cublas, self._cupy = cublas, cupy
        self.how = f"cuBLAS through CuPy's wrapper, which refuses stream capture ({why})"

    def gemm(self, stream_ptr, call, pointers, c_ptr, dtype, compute):
        one = np.ones(1, dtype=dtype)
        zero = np.zeros(1, dtype=dtype)
        data = _DATA[dtype]
        self._cublas.gemmEx(  # on CuPy's current stream, which is the stream asked for here
            self._cupy.cuda.device.get_cublas_handle(), _OP[call.transa], _OP[call.transb], call.m, call.n,
            call.k, one.ctypes.data, pointers[call.first], data, call.lda, pointers[call.second], data,
            call.ldb, zero.ctypes.data, c_ptr, data, call.ldc, _COMPUTE[compute], _GEMM_DEFAULT)


class Launcher:
    """Launches a program's calls on one device: its chains compiled once, its products by cuBLAS.

    ``tf32``: float32 products of the equations (never the sums over the
    examples) in TensorFloat-32.
    """

    def __init__(self, device, tf32: bool = False):
        import cupy

        self._cupy, self.device, self.tf32 = cupy, device, tf32
        with device:
            try:
                self.blas = _DirectBlas(cupy)
            except Exception as exc:  # no cuda.pathfinder, no symbol: still correct, not capturable
                self.blas = _CupyBlas(cupy, f"{type(exc).__name__}: {exc}")
            self._grid_cap = device.attributes["MultiProcessorCount"] * BLOCKS_PER_MULTIPROCESSOR
        self._functions = {}

    def _function(self, program: Program, name: str):
        key = (id(program), name)
        if key not in self._functions:
            module = self._cupy.RawModule(code=program.source.text, options=("-std=c++14",))
            for kernel in program.source.kernels:
                self._functions[(id(program), kernel.name)] = module.get_function(kernel.name)
        return self._functions[key]

    def _args(self, launch: ChainLaunch, real):
        convert = {"array": lambda a: a, "stride": np.int64, "real": real, "bool": np.bool_}
        return (np.int64(launch.count), np.int64(launch.inner), *(convert[kind](value) for kind, value in launch.args))

    def launch(self, program: Program, bound, stream):
        """Queue every launch of ``bound`` on ``stream``."""
        real = np.float32 if program.dtype == "float32" else np.float64
        for launch in bound.launches:
            if isinstance(launch, ChainLaunch):
                grid = max(1, min(-(-launch.count // BLOCK), self._grid_cap))
                self._function(program, launch.kernel.name)((grid,), (BLOCK,), self._args(launch, real),
                                                             stream=stream)
            else:
                compute = "tf32" if self.tf32 and launch.matmul and program.dtype == "float32" else program.dtype
                pointers = {"A": launch.A.data.ptr, "B": launch.B.data.ptr}
                self.blas.gemm(stream.ptr, launch.call, pointers, launch.C.data.ptr, program.dtype, compute)


def _tf32(backend, dtype: str) -> bool:
    return dtype == "float32" and getattr(backend, "precision", "float32") == "tf32"


def _cupy_arena(program, columns, **sizes):
    import cupy

    return program.arena(columns, lambda shape, dtype: cupy.empty(shape, dtype=dtype),
                         lambda n, dtype: cupy.ones(n, dtype=dtype), **sizes)


# -- the whole batch: the loop's strategy ------------------------------------------------------------
class KernelSteps(Strategy):
    """The whole batch's iteration (gradients and update) as the partitioned step, replayed as a graph.

    X (n0, m) and Y (n2, m) (a weighted fit: (n2 + 1, m), the weights last)
    are CuPy arrays of ``dtype`` on the backend's device.  ``graphs``: capture
    each program into a CUDA graph on its first run and replay it after.
    """

    def __init__(self, X, Y, shape, g, learning_rate: float, backend, dtype: str, output=SIGMOID,
                 weighted: bool = False, graphs: bool = True, inline_terms: int = INLINE_TERMS):
        n0, n1, n2 = shape
        self.X, self.Y, self.backend, self.dtype = X, Y, backend, dtype
        self.learning_rate, self.weighted = float(learning_rate), weighted
        name = f"{n0}-{n1}-{n2}"
        self.programs = {with_cost: Program(step_graph(n0, n1, n2, g, with_cost, output, weighted), dtype,
                                            inline_terms=inline_terms, shape=name, activation=g.name)
                         for with_cost in (False, True)}
        self.parameter_size = n1 * n0 + n1 + n2 * n1 + n2
        self.graphs_asked = graphs
        self._ready = False
        self._graphs, self._no_graph = {}, None if graphs else "not asked for"
        self._holds = None  # the parameters dict the parameter buffer holds now

    # -- made on the first step (inside the loop, so running out of memory is reported as such) --------
    def _prepare(self):
        import cupy

        self._cupy = cupy
        self.device = self.backend.device
        with self.device:
            self.launcher = Launcher(self.device, _tf32(self.backend, self.dtype))
            m = self.X.shape[1]
            programs = self.programs.values()
            sizes = {"out_size": max(p.out_size for p in programs),
                     "ones_size": max(p.ones_per_column for p in programs) * m}
            self.arena = _cupy_arena(self.programs[True], m, **sizes)
            self.P = cupy.empty(self.parameter_size, dtype=self.dtype)
            views, at = {}, 0
            for name, node in self.programs[True].inputs.items():
                if name in PARAMETERS:
                    size = int(np.prod(node.shape))
                    views[name] = self.P[at:at + size].reshape(node.shape)
                    at += size
            self._views = views
            Y, weights = split_weights(self.Y, self.weighted)
            values = {"X": self.X, "Y": Y, **views, "m": m, "learning_rate": self.learning_rate}
            if self.weighted:
                values["weights"] = weights
            self.bound = {}
            for with_cost, program in self.programs.items():
                program.check(values)
                if [program.out_layout[i][0] for i in range(4)] != self._offsets():
                    raise InvalidInputError("the updated parameters do not come out in the parameters' order")
                self.bound[with_cost] = program.bind(self.arena, values)
        self._ready = True

    def _offsets(self) -> list:
        offsets, at = [], 0
        for view in self._views.values():
            offsets.append(at)
            at += view.size
        return offsets

    def _load(self, params: dict):
        """Make the parameter buffer hold ``params`` (nothing to do when it already does)."""
        if params is self._holds:
            return
        if not isinstance(params, dict) or set(params) != set(PARAMETERS):
            raise InvalidInputError(f"params must be a dict of {PARAMETERS}")
        for name, view in self._views.items():
            value = params[name]
            if tuple(value.shape) != view.shape:
                raise InvalidInputError(f"{name} has shape {tuple(value.shape)}, expected {view.shape}")
            view[...] = value

    def _enqueue(self, with_cost: bool, stream):
        """The program's launches, then the new parameters copied into the parameter buffer."""
        self.launcher.launch(self.programs[with_cost], self.bound[with_cost], stream)
        runtime = self._cupy.cuda.runtime
        runtime.memcpyAsync(self.P.data.ptr, self.arena.out.data.ptr, self.P.nbytes,
                            runtime.memcpyDeviceToDevice, stream.ptr)

    def _capture(self, with_cost: bool):
        """The program as a CUDA graph, or None (with the reason kept) where capture fails."""
        cupy = self._cupy
        if not self.launcher.blas.capturable:
            self._no_graph = self.launcher.blas.how
            return None
        stream = cupy.cuda.Stream(non_blocking=True)
        graph, error = None, None
        with stream:
            stream.begin_capture()
            try:
                self._enqueue(with_cost, stream)
            except Exception as exc:  # e.g. a driver or cuBLAS that does not capture this call
                error = exc
            try:
                graph = stream.end_capture()
            except Exception as exc:
                error = error or exc
        if error is not None:
            self._no_graph = f"capture failed: {type(error).__name__}: {error}"
            return None
        return graph

    def _run(self, with_cost: bool):
        stream = self._cupy.cuda.get_current_stream()
        graph = self._graphs.get(with_cost)
        if graph is not None:
            graph.launch(stream=stream)
            return
        self._enqueue(with_cost, stream)  # the first run of a program is eager: kernels compiled, cuBLAS set up
        if self._no_graph is None:
            self._graphs[with_cost] = self._capture(with_cost)

    def _result(self, with_cost: bool):
        program = self.programs[with_cost]
        fresh = self.arena.out[:program.out_size].copy()  # the loop may keep these: never written again
        new = {}
        for name, (offset, shape) in zip(PARAMETERS, program.out_layout[:4]):
            new[name] = fresh[offset:offset + int(np.prod(shape))].reshape(shape)
        J = fresh[program.out_layout[4][0]] if with_cost else None
        return new, J

    def step(self, params, i, with_cost):
        if not self._ready:
            self._prepare()
        with self.device:
            self._load(params)
            self._run(with_cost)
            new, J = self._result(with_cost)
        self._holds = new
        return new, J

    def cost(self, params):
        _, J = self.step(params, 0, True)
        self._holds = None  # the buffer now holds the parameters after that step, which nobody holds
        return J

    def running(self):
        return self.backend.context()

    @property
    def levers(self) -> dict:
        """What this executor does per iteration, for the benchmark's record."""
        no_cost, with_cost = self.programs[False], self.programs[True]
        launcher = getattr(self, "launcher", None)
        graphs = [g for g in self._graphs.values() if g is not None]
        return {
            "executor": "kernels",
            "graph_replay": bool(graphs),
            "graph_replay_note": self._no_graph or ("replayed" if graphs else "not captured yet"),
            "launches_per_step": no_cost.launches, "launches_per_step_with_cost": with_cost.launches,
            "fused_chains": no_cost.partition.chains, "chain_ops": sum(len(s.nodes) for s in no_cost.partition.steps
                                                                       if s.is_chain),
            "launch_kinds": no_cost.partition.counts(),
            "tf32": _tf32(self.backend, self.dtype),
            "cublas": launcher.blas.how if launcher is not None else "not set up yet",
            "buffer_bytes": self.arena.nbytes if self._ready else None,
        }


# -- chunks: gradients for ChunkedGradients ------------------------------------------------------
def kernel_gradients(backend, g, shape, dtype: str, columns: int, output=SIGMOID, weighted: bool = False,
                     inline_terms: int = INLINE_TERMS):
    """``make(with_cost)`` for :class:`~backprop_core.chunked.ChunkedGradients`: a chunk's
    ``(dW1, db1, dW2, db2, J)`` by the partitioned gradients, launched one by one.

    ``shape`` is (n0, n1, n2); chunks hold at most ``columns`` examples.
    """
    n0, n1, n2 = shape
    programs, launchers = {}, []

    def make(with_cost):
        if with_cost not in programs:
            programs[with_cost] = Program(gradients_graph(n0, n1, n2, g, with_cost, output, weighted), dtype,
                                          inline_terms=inline_terms, shape=f"{n0}-{n1}-{n2}", activation=g.name)
        program, arenas = programs[with_cost], {}

        def gradients(params, Xc, Yc, m):
            import cupy

            if not launchers:
                launchers.append(Launcher(backend.device, _tf32(backend, dtype)))
            Yc, weights = split_weights(Yc, weighted)
            values = {"X": Xc, "Y": Yc, **params, "m": m}
            if weighted:
                values["weights"] = weights
            c = program.check(values)
            if c > columns:
                raise InvalidInputError(f"a chunk of {c} examples is larger than the {columns} the kernels were made for")
            if c not in arenas:
                if len(arenas) >= 2:  # a batch has two chunk sizes: the chunk and the rest
                    arenas.clear()
                arenas[c] = _cupy_arena(program, c)
            bound = program.bind(arenas[c], values)
            launchers[0].launch(program, bound, cupy.cuda.get_current_stream())
            fresh = arenas[c].out[:program.out_size].copy()
            return tuple(None if layout is None else fresh[layout[0]:layout[0] + int(np.prod(layout[1]))]
                         .reshape(layout[1]) for layout in program.out_layout)

        return gradients

    return make
