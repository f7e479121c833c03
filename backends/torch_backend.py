"""PyTorch, eager, through array-api-compat's torch namespace.

Devices: ``None`` (CUDA if present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``
or a GPU index.  TF32 matmuls follow PyTorch's default (off).
"""

from __future__ import annotations

from ._base import Backend, BackendUnavailableError, Ready, StreamUpload


class TorchBackend(Backend):
    name = "torch"
    library = "torch"
    install_hint = "pip install 'backprop-core[torch]'"
    _copy_stream = None  # the side stream of streamed uploads, made on first use

    def _namespace(self):
        import array_api_compat.torch as xp

        return xp

    def resolve_device(self, spec):
        torch = self._import()
        if spec is None:
            spec = "cuda" if torch.cuda.is_available() else "cpu"
        if isinstance(spec, int):
            spec = f"cuda:{spec}"
        try:
            dev = torch.device(spec)
        except (RuntimeError, TypeError) as exc:
            raise BackendUnavailableError(f"torch cannot use device {spec!r}: {exc}") from None
        if dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailableError(
                    "torch was asked for a CUDA device but no GPU is usable here "
                    "(torch.cuda.is_available() is False)"
                )
            index = dev.index or 0
            if index >= torch.cuda.device_count():
                raise BackendUnavailableError(
                    f"torch has {torch.cuda.device_count()} CUDA device(s); there is no {spec!r}"
                )
            dev = torch.device("cuda", index)
        return dev

    def devices(self):
        torch = self._import()
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    @property
    def on_gpu(self):
        return self.device.type == "cuda"

    def upload(self, host, dtype):
        if not self.on_gpu:
            return Ready(self.asarray(host, dtype))
        import numpy as np

        torch = self._import()
        if self._copy_stream is None:
            self._copy_stream = torch.cuda.Stream(self.device)
        # PyTorch's pinned-memory allocator keeps `pinned` until the copy's event is done.
        pinned = torch.from_numpy(np.ascontiguousarray(host, dtype=dtype)).pin_memory()
        with torch.cuda.stream(self._copy_stream):
            array = pinned.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self._copy_stream)

        def wait(array):
            stream = torch.cuda.current_stream(array.device)
            stream.wait_event(event)
            array.record_stream(stream)  # the caching allocator must not reuse it early

        return StreamUpload(array, wait)

    def owns(self, x):
        from array_api_compat import is_torch_array

        return is_torch_array(x)

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def synchronize(self, *arrays):
        if self.on_gpu:
            self._import().cuda.synchronize(self.device)

    def random_normal(self, shape, dtype, seed):
        torch = self._import()
        gen = torch.Generator(device=self.device).manual_seed(seed)
        return torch.randn(shape, generator=gen, dtype=self.dtype(dtype), device=self.device)

    def free_memory(self):
        if self.on_gpu:
            return self._import().cuda.mem_get_info(self.device)[0]
        return super().free_memory()
