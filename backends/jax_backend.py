"""JAX, with the training step compiled by ``jax.jit``.

Devices: ``None`` (JAX's default device), ``"cpu"``, ``"gpu"``, ``"gpu:1"`` or an
index into ``jax.devices()``.  float64 needs ``jax.config.update("jax_enable_x64", True)``
before any array is made; the default dtype is float32, as in JAX itself.
"""

from __future__ import annotations

from ._base import Backend, BackendUnavailableError


class JaxBackend(Backend):
    name = "jax"
    library = "jax"
    install_hint = "pip install 'backprop-core[jax]'"

    def _namespace(self):
        import jax.numpy as jnp  # JAX's numpy is itself an Array API namespace

        return jnp

    def resolve_device(self, spec):
        jax = self._import()
        if spec is None:
            return jax.devices()[0]
        if isinstance(spec, int):
            devices, index = jax.devices(), spec
        else:
            platform, _, index = str(spec).partition(":")
            try:
                devices = jax.devices(platform)
            except RuntimeError as exc:
                raise BackendUnavailableError(f"jax has no {platform!r} device here: {exc}") from None
            index = int(index or 0)
        if index >= len(devices):
            raise BackendUnavailableError(f"jax has {len(devices)} device(s); there is no {spec!r}")
        return devices[index]

    def devices(self):
        return [str(d) for d in self._import().devices()]

    @property
    def on_gpu(self):
        return self.device.platform == "gpu"

    @property
    def default_dtype(self):
        return "float32"

    def dtype(self, name):
        if name == "float64" and not self._import().config.jax_enable_x64:
            raise BackendUnavailableError(
                "jax computes in float32 unless 64-bit mode is on; call "
                'jax.config.update("jax_enable_x64", True) first, or use dtype="float32"'
            )
        return super().dtype(name)

    def asarray(self, host, dtype):
        jax = self._import()
        return jax.device_put(self.xp.asarray(host, dtype=self.dtype(dtype)), self.device)

    def owns(self, x):
        from array_api_compat import is_jax_array

        return is_jax_array(x)

    def device_of(self, x):
        return next(iter(x.devices()))

    def synchronize(self, *arrays):
        # JAX has no global synchronise: wait for the arrays that were asked about.
        for x in arrays:
            x.block_until_ready()

    def compile(self, fn):
        return self._import().jit(fn)

    def random_normal(self, shape, dtype, seed):
        jax = self._import()
        with jax.default_device(self.device):
            return jax.random.normal(jax.random.key(seed), shape, dtype=self.dtype(dtype))

    def free_memory(self):
        if not self.on_gpu:
            return super().free_memory()
        stats = self.device.memory_stats() or {}
        return stats.get("bytes_limit", 0) - stats.get("bytes_in_use", 0) or None
