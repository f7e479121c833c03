"""PyTorch, eager, through array-api-compat's torch namespace.

Devices: ``None`` (CUDA if present, else CPU), ``"cpu"``, a GPU index, ``"gpu"``,
``"gpu:1"``, ``"cuda"``, ``"cuda:1"`` or a ``torch.device``.  Matmuls run in full
float32 unless the adapter is made with ``precision="tf32"``; either way the
setting holds inside :meth:`TorchBackend.context` only.
"""

from __future__ import annotations

import contextlib
import threading

import array_api_compat

from ._base import PRECISIONS, Backend, InvalidDeviceError
from ._devices import gpu_index, parse_device
from ._uploads import PinnedStaging, Ready, StreamUpload


@contextlib.contextmanager
def matmul_precision(torch, precision: str):
    """Float32 matmuls on CUDA in ``precision`` for the block, every related setting restored after."""
    tf32 = precision == "tf32"
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):  # PyTorch < 2.9: one flag
        before = matmul.allow_tf32
        matmul.allow_tf32 = tf32
        try:
            yield
        finally:
            matmul.allow_tf32 = before
        return
    # PyTorch >= 2.9 keeps the old setting beside the new per-backend ones and refuses a
    # CUDA matmul when they disagree; the old flag's setter moves both together.
    legacy = torch.get_float32_matmul_precision()
    fields = (matmul, torch.backends.mkldnn.matmul)
    new = [field.fp32_precision for field in fields]
    matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(legacy)
        for field, value in zip(fields, new):
            field.fp32_precision = value


class TorchBackend(Backend):
    name = "torch"
    library = "torch"
    install_hint = "pip install 'backprop-core[torch]'"
    is_array = staticmethod(array_api_compat.is_torch_array)
    precisions = PRECISIONS

    def _reset(self):
        super()._reset()
        self._copy_stream = None  # the side stream of streamed uploads, made on first use
        self._staging = None
        self._lock = threading.Lock()

    def _namespace(self):
        import array_api_compat.torch as xp

        return xp

    def resolve_device(self, spec):
        torch = self._import()
        if spec is None:
            spec = "cuda" if torch.cuda.is_available() else "cpu"
        if isinstance(spec, torch.device):
            if spec.type not in ("cpu", "cuda"):
                raise InvalidDeviceError(f"backend 'torch' runs on 'cpu' or 'cuda' devices here, not {spec!r}")
            kind, index = ("gpu", spec.index) if spec.type == "cuda" else ("cpu", None)
        else:
            kind, index = parse_device(spec, "torch", cpu=True)
        if kind == "cpu":
            return torch.device("cpu")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return torch.device("cuda", gpu_index(index, count, "torch", spec))

    def devices(self):
        torch = self._import()
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    @property
    def on_gpu(self):
        return self.device.type == "cuda"

    def upload(self, host, dtype):
        if not self.on_gpu:
            return Ready(self.asarray(host, dtype))
        torch = self._import()
        with self._lock:
            if self._copy_stream is None:
                self._copy_stream = torch.cuda.Stream(self.device)
                self._staging = PinnedStaging(
                    lambda shape, dt: _pinned(torch, shape, dt), lambda event: event.query())
        pinned, view = self._staging.fill(host, dtype)
        with torch.cuda.stream(self._copy_stream):
            array = pinned.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._copy_stream)
        self._staging.reading((pinned, view), event)

        def wait(array):
            stream = torch.cuda.current_stream(array.device)
            stream.wait_event(event)
            array.record_stream(stream)  # the caching allocator must not reuse it early

        return StreamUpload(array, wait)

    def synchronize(self, *arrays):
        if self.on_gpu:
            self._import().cuda.synchronize(self.device)

    @contextlib.contextmanager
    def context(self):
        torch = self._import()
        current = torch.cuda.device(self.device) if self.on_gpu else contextlib.nullcontext()
        with matmul_precision(torch, self.precision), current:
            yield

    def random_normal(self, shape, dtype, seed):
        torch = self._import()
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randn(shape, generator=gen, dtype=self.dtype(dtype), device=self.device)

    def free_memory(self):
        if not self.on_gpu:
            return super().free_memory()
        cuda = self._import().cuda
        # Blocks PyTorch's caching allocator holds but no tensor uses are free to us too.
        pooled = cuda.memory_reserved(self.device) - cuda.memory_allocated(self.device)
        return cuda.mem_get_info(self.device)[0] + pooled


def _pinned(torch, shape, dtype):
    buffer = torch.empty(shape, dtype=getattr(torch, dtype.name), pin_memory=True)
    return buffer, buffer.numpy()
