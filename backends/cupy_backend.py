"""CuPy on an NVIDIA GPU.

Devices: ``None`` (GPU 0), a GPU index, ``"gpu"``, ``"gpu:1"``, ``"cuda"``,
``"cuda:1"`` or a ``cupy.cuda.Device``.  ``import cupy`` succeeds on machines
without a GPU, so availability is decided by probing the driver.  Matmuls run
in full float32 unless the adapter is made with ``precision="tf32"`` (cuBLAS's
compute type, set inside :meth:`CupyBackend.context` and restored after).
"""

from __future__ import annotations

import contextlib
import threading

import array_api_compat
import numpy as np

from ._base import PRECISIONS, Backend, BackendUnavailableError
from ._devices import gpu_index, parse_device
from ._uploads import PinnedStaging, StreamUpload


@contextlib.contextmanager
def matmul_precision(precision: str):
    """Float32 matmuls in ``precision`` for the block, the previous compute type restored after."""
    from cupy._core import _routines_linalg as linalg  # where CuPy keeps its compute types

    before = linalg.get_compute_type(np.float32)
    linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if precision == "tf32" else linalg.COMPUTE_TYPE_DEFAULT)
    try:
        yield
    finally:
        linalg.set_compute_type(np.float32, before)


class CupyBackend(Backend):
    name = "cupy"
    library = "cupy"
    fuses_kernels = True
    install_hint = ("pip install 'backprop-core[cupy-cuda13]' (CUDA 13) or 'backprop-core[cupy-cuda12]' "
                    "(CUDA 12): the CuPy build matching your CUDA")
    is_array = staticmethod(array_api_compat.is_cupy_array)
    precisions = PRECISIONS
    on_gpu = True  # known without importing CuPy

    def _reset(self):
        super()._reset()
        self._copy_stream = None
        self._staging = None
        self._lock = threading.Lock()

    def _gpu_count(self) -> int:
        cupy = self._import()
        try:
            return cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError, or a missing driver library
            raise BackendUnavailableError(f"cupy is installed but no usable GPU was found: {exc}") from None

    def check_available(self):
        if self._gpu_count() == 0:
            raise BackendUnavailableError("cupy is installed but this machine has no GPU")

    def _namespace(self):
        import array_api_compat.cupy as xp

        return xp

    def resolve_device(self, spec):
        cupy = self._import()
        if isinstance(spec, cupy.cuda.Device):
            index = spec.id
        else:
            _, index = parse_device("gpu" if spec is None else spec, "cupy", cpu=False)
        return cupy.cuda.Device(gpu_index(index, self._gpu_count(), "cupy", spec))

    @property
    def device_name(self):
        return f"cuda:{self.device.id}"

    def devices(self):
        return [f"cuda:{i}" for i in range(self._gpu_count())]

    def upload(self, host, dtype):
        import cupyx

        cupy = self._import()
        with self.device:
            with self._lock:
                if self._copy_stream is None:
                    self._copy_stream = cupy.cuda.Stream(non_blocking=True)
                    self._staging = PinnedStaging(lambda shape, dt: (cupyx.empty_pinned(shape, dtype=dt),) * 2,
                                                  lambda event: event.done)
            staged = self._staging.fill(host, dtype)
            compute = cupy.cuda.get_current_stream()
            array = cupy.empty(np.shape(host), dtype=dtype)
            # CuPy's pool hands `array` memory freed by kernels queued on the compute stream,
            # which may not have run yet: the copy must not start before them.
            self._copy_stream.wait_event(compute.record())
            array.set(staged[1], stream=self._copy_stream)
            event = self._copy_stream.record()
            self._staging.reading(staged, event)
        return StreamUpload(array, lambda array: cupy.cuda.get_current_stream().wait_event(event))

    def synchronize(self, *arrays):
        self.device.synchronize()

    @contextlib.contextmanager
    def context(self):
        with self.device, matmul_precision(self.precision):
            yield

    def random_normal(self, shape, dtype, seed):
        with self.device:
            return self._import().random.default_rng(seed).standard_normal(shape, dtype=dtype)

    def free_memory(self):
        cupy = self._import()
        with self.device:
            # Blocks CuPy's memory pool holds but no array uses are free to us too.
            return cupy.cuda.runtime.memGetInfo()[0] + cupy.get_default_memory_pool().free_bytes()
