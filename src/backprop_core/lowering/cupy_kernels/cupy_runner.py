"""A program's launches on CuPy: chains as compiled kernels, products by cuBLAS, captured as CUDA graphs.

:class:`CupyDevice` is what :mod:`.steps` runs a program on: the chains'
source compiled once per program (``cupy.RawModule``), each chain launched on
a stream with its arguments, each product a ``cublasGemmEx`` call, copies as
``cudaMemcpyAsync``, and :meth:`CupyDevice.capture` recording all of them into
a CUDA graph (CuPy's stream capture) that one launch replays.

cuBLAS is called through ctypes with a handle and a workspace of our own:
CuPy's wrapper refuses any cuBLAS call while a stream captures (its
``setStream`` raises NotImplementedError, CuPy 13 to 15), and a workspace set
by ``cublasSetWorkspace`` keeps cuBLAS from allocating inside a capture.  Where
that handle cannot be made, CuPy's wrapper runs the products eagerly and
graphs are off (the strategy's levers say why).  Nothing here syncs the host.
"""

from __future__ import annotations

import ctypes
import importlib

import numpy as np

from ..cuda_fused.cuda import BLOCK
from .program import ChainLaunch, Program

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
    importlib.import_module("cupy_backends.cuda.libs.cublas")  # CuPy loads the library first

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


#: By process: compiled modules by source text, their kernels by (text, device, name), and one
#: cuBLAS handle per device (a handle and its workspace live as long as the process).
_MODULES, _FUNCTIONS, _BLAS = {}, {}, {}


def _blas(cupy, device):
    """The device's cuBLAS: reached directly (capturable) where it can be, else through CuPy."""
    if device.id not in _BLAS:
        try:
            _BLAS[device.id] = _DirectBlas(cupy)
        except Exception as exc:  # no cuda.pathfinder, no symbol: still correct, not capturable
            _BLAS[device.id] = _CupyBlas(cupy, f"{type(exc).__name__}: {exc}")
    return _BLAS[device.id]


class Launcher:
    """Launches a program's calls on one device: its chains compiled once, its products by cuBLAS.

    ``tf32``: float32 products of the equations (never the sums over the
    examples) in TensorFloat-32.
    """

    def __init__(self, device, tf32: bool = False):
        import cupy

        self._cupy, self.device, self.tf32 = cupy, device, tf32
        with device:
            self.blas = _blas(cupy, device)
            self._grid_cap = device.attributes["MultiProcessorCount"] * BLOCKS_PER_MULTIPROCESSOR

    def _function(self, program: Program, name: str):
        text = program.source.text
        if text not in _MODULES:  # one compilation per source in a process (CuPy keeps it on disk too)
            _MODULES[text] = self._cupy.RawModule(code=text)
        key = (text, self.device.id, name)
        if key not in _FUNCTIONS:
            with self.device:
                _FUNCTIONS[key] = _MODULES[text].get_function(name)
        return _FUNCTIONS[key]

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


class CupyDevice:
    """Where :mod:`.steps` runs programs on CuPy: the backend's GPU, its precision, CuPy's streams."""

    def __init__(self, backend, dtype: str):
        import cupy

        self._cupy, self.device = cupy, backend.device
        tf32 = dtype == "float32" and backend.precision == "tf32"
        self.launcher = Launcher(self.device, tf32)
        self.tf32, self.capturable, self.how = tf32, self.launcher.blas.capturable, self.launcher.blas.how
        self._capture_streams = []  # kept alive: a cuBLAS handle may still name the last one

    def context(self):
        return self.device

    def arena(self, program: Program, columns: int, **sizes):
        cupy = self._cupy
        return program.arena(columns, lambda shape, dtype: cupy.empty(shape, dtype=dtype),
                             lambda n, dtype: cupy.ones(n, dtype=dtype), **sizes)

    def empty(self, size: int, dtype: str):
        return self._cupy.empty(size, dtype=dtype)

    def stream(self):
        return self._cupy.cuda.get_current_stream()

    def launch(self, program: Program, bound, stream):
        self.launcher.launch(program, bound, stream)

    def copy(self, destination, source, stream):
        """``destination[...] = source`` for contiguous arrays of one size, queued on ``stream``."""
        runtime = self._cupy.cuda.runtime
        runtime.memcpyAsync(destination.data.ptr, source.data.ptr, destination.nbytes,
                            runtime.memcpyDeviceToDevice, stream.ptr)

    def capture(self, enqueue):
        """``enqueue(stream)``'s work as a CUDA graph (raises where capture fails)."""
        stream = self._cupy.cuda.Stream(non_blocking=True)
        self._capture_streams[:] = [stream]
        with stream:
            stream.begin_capture()
            try:
                enqueue(stream)
            finally:
                graph = stream.end_capture()  # the stream leaves capture mode whatever happened
        return graph

    def replay(self, graph, stream):
        graph.launch(stream=stream)
