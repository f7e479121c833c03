"""CuPy on an NVIDIA GPU.

Devices: ``None`` or a GPU index (``0``, ``"cuda:1"``).  ``import cupy`` succeeds on
machines without a GPU, so availability is decided by probing the driver.
"""

from __future__ import annotations

import threading

from ._base import Backend, BackendUnavailableError, StreamUpload


class CupyBackend(Backend):
    name = "cupy"
    library = "cupy"
    install_hint = "pip install 'backprop-core[cupy]' (a CuPy build matching your CUDA)"
    fuses_kernels = True

    def __init__(self, device=None):
        super().__init__(device)
        self._copy_stream = None
        self._in_flight = []  # (event, pinned host buffer) of copies that may still run
        self._upload_lock = threading.Lock()  # chunk workers may upload from several threads

    def check_available(self):
        cupy = self._import()
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDARuntimeError, or a missing driver library
            raise BackendUnavailableError(f"cupy is installed but no usable GPU was found: {exc}") from None
        if count == 0:
            raise BackendUnavailableError("cupy is installed but this machine has no GPU")

    def _namespace(self):
        import array_api_compat.cupy as xp

        return xp

    def resolve_device(self, spec):
        cupy = self._import()
        if spec is None:
            index = 0
        elif isinstance(spec, int):
            index = spec
        else:
            kind, _, index = str(spec).partition(":")
            if kind not in ("cuda", "gpu") and not kind.isdigit():
                raise BackendUnavailableError(f"cupy runs on GPUs only, not on device {spec!r}")
            index = int(kind) if kind.isdigit() else int(index or 0)
        count = cupy.cuda.runtime.getDeviceCount()
        if not 0 <= index < count:
            raise BackendUnavailableError(f"cupy sees {count} GPU(s); there is no device {spec!r}")
        return cupy.cuda.Device(index)

    def devices(self):
        cupy = self._import()
        return [f"cuda:{i}" for i in range(cupy.cuda.runtime.getDeviceCount())]

    @property
    def on_gpu(self):
        return True

    def asarray(self, host, dtype):
        with self.device:
            return self._import().asarray(host, dtype=dtype)

    def upload(self, host, dtype):
        import cupyx
        import numpy as np

        cupy = self._import()
        with self.device:
            with self._upload_lock:
                if self._copy_stream is None:
                    self._copy_stream = cupy.cuda.Stream(non_blocking=True)
            pinned = cupyx.empty_pinned(np.shape(host), dtype=dtype)
            pinned[...] = host
            compute = cupy.cuda.get_current_stream()
            array = cupy.empty(np.shape(host), dtype=dtype)
            # CuPy's pool hands `array` memory freed by kernels queued on the compute stream,
            # which may not have run yet: the copy must not start before them.
            self._copy_stream.wait_event(compute.record())
            array.set(pinned, stream=self._copy_stream)
            event = self._copy_stream.record()
            # The pinned buffer must outlive the copy: hold it until its event is done.
            with self._upload_lock:
                self._in_flight = [(e, p) for e, p in self._in_flight if not e.done]
                self._in_flight.append((event, pinned))
        return StreamUpload(array, lambda array: cupy.cuda.get_current_stream().wait_event(event))

    def owns(self, x):
        from array_api_compat import is_cupy_array

        return is_cupy_array(x)

    def to_numpy(self, x):
        return x.get()

    def synchronize(self, *arrays):
        self._import().cuda.Device(self.device.id).synchronize()

    def context(self):
        return self.device

    def random_normal(self, shape, dtype, seed):
        with self.device:
            return self._import().random.default_rng(seed).standard_normal(shape, dtype=dtype)

    def free_memory(self):
        with self.device:
            return self._import().cuda.runtime.memGetInfo()[0]
