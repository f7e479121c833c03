"""JAX, with the training step compiled by ``jax.jit``.

Devices: ``None`` (JAX's default device), ``"cpu"``, ``"cpu:1"``, a GPU index,
``"gpu"``, ``"gpu:1"``, ``"cuda"``, ``"cuda:1"`` or a ``jax.Device``.  float64 needs
``jax.config.update("jax_enable_x64", True)`` before any array is made; the
default dtype is float32, as in JAX itself.  JAX would run float32 matmuls in
TF32 on recent NVIDIA GPUs; this adapter pins full float32 unless made with
``precision="tf32"``, inside :meth:`JaxBackend.context` and every compiled call.
"""

from __future__ import annotations

import functools

import array_api_compat

from ._base import PRECISIONS, Backend, BackendUnavailableError, InvalidDeviceError
from ._devices import gpu_index, parse_device

class JaxBackend(Backend):
    name = "jax"
    library = "jax"
    install_hint = "pip install 'backprop-core[jax]'"
    is_array = staticmethod(array_api_compat.is_jax_array)
    precisions = PRECISIONS

    def _namespace(self):
        import jax.numpy as jnp  # JAX's numpy is itself an Array API namespace

        return jnp

    def _platform_devices(self, platform):
        try:
            return self._import().devices(platform)
        except RuntimeError:  # no backend for that platform here
            return []

    def resolve_device(self, spec):
        jax = self._import()
        if spec is None:
            return jax.devices()[0]
        if isinstance(spec, jax.Device):
            if spec.platform not in ("cpu", "gpu"):
                raise InvalidDeviceError(f"backend 'jax' runs on cpu or gpu devices here, not {spec!r}")
            return spec
        kind, index = parse_device(spec, "jax", cpu=True)
        devices = self._platform_devices(kind)
        if kind == "cpu":
            if not devices or (index or 0) >= len(devices):
                raise BackendUnavailableError(f"jax has {len(devices)} CPU device(s); there is no {spec!r}")
            return devices[index or 0]
        return devices[gpu_index(index, len(devices), "jax", spec)]

    @property
    def device_name(self):
        platform = self.device.platform
        return f"{platform}:{self._platform_devices(platform).index(self.device)}"

    def devices(self):
        return [f"{d.platform}:{i}" for platform in ("cpu", "gpu")
                for i, d in enumerate(self._platform_devices(platform))]

    @property
    def on_gpu(self):
        return self.device.platform == "gpu"

    @property
    def default_dtype(self):
        return "float32"

    @property
    def host_device(self):
        return self._import().devices("cpu")[0]

    def dtype(self, name):
        if name == "float64" and not self._import().config.jax_enable_x64:
            raise BackendUnavailableError(
                "jax computes in float32 unless 64-bit mode is on; call "
                'jax.config.update("jax_enable_x64", True) first, or use dtype="float32"'
            )
        return super().dtype(name)

    def synchronize(self, *arrays):
        # JAX has no global synchronise: wait for the arrays that were asked about.
        for x in arrays:
            x.block_until_ready()

    @property
    def matmul_precision(self) -> str:
        """JAX's name for this adapter's precision (``jax_default_matmul_precision``)."""
        if self.precision == "float32":
            return "highest"
        # TF32 tensor cores on the GPU, named exactly; a CPU has no TF32 and multiplies in float32.
        return "TF32_TF32_F32" if self.on_gpu else "default"

    def context(self):
        # The precision is part of what jit traces and caches, so it must hold when a
        # compiled function is first called as well as for eager operations.
        return self._import().default_matmul_precision(self.matmul_precision)

    def compile(self, fn):
        """``fn`` under ``jax.jit``, always called (and lowered, ``.lower(...)``) in this adapter's precision."""
        jax = self._import()
        jitted, precision = jax.jit(fn), self.matmul_precision

        @functools.wraps(fn)
        def call(*args):
            # Inside context() (the training loop) the setting already holds: skip entering it again.
            # The setting is per thread, so chunk workers on other threads take the slow path.
            if jax.config.jax_default_matmul_precision == precision:
                return jitted(*args)
            with jax.default_matmul_precision(precision):
                return jitted(*args)

        def lower(*args):
            with jax.default_matmul_precision(precision):
                return jitted.lower(*args)

        call.lower = lower
        return call

    def random_normal(self, shape, dtype, seed):
        jax = self._import()
        with jax.default_device(self.device):
            return jax.random.normal(jax.random.key(seed), shape, dtype=self.dtype(dtype))

    def free_memory(self):
        if not self.on_gpu:
            return super().free_memory()
        # JAX's allocator holds a pool up to bytes_limit; what no array uses of it is free to us.
        stats = self.device.memory_stats() or {}
        if "bytes_limit" not in stats:
            return None
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
