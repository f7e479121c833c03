"""array-api-strict: the Array API reference implementation, to prove portability.

Devices: ``None`` or ``"CPU_DEVICE"`` (default), ``"device1"``, ``"device2"`` (fake
devices that catch every array made without ``device=``).  Flags such as
boolean indexing are set with ``array_api_strict.set_array_api_strict_flags``.
"""

from __future__ import annotations

from ._base import Backend, BackendUnavailableError


class ArrayApiStrictBackend(Backend):
    name = "array_api_strict"
    library = "array_api_strict"
    install_hint = "pip install array-api-strict"

    def _namespace(self):
        return self._import()

    def resolve_device(self, spec):
        xp = self._import()
        if spec is None:
            return xp.Device("CPU_DEVICE")
        if isinstance(spec, xp.Device):
            return spec
        try:
            return xp.Device(str(spec))
        except ValueError:
            raise BackendUnavailableError(
                f"array_api_strict has no device {spec!r}; use 'CPU_DEVICE', 'device1' or 'device2'"
            ) from None

    def devices(self):
        return [str(d) for d in self._import().__array_namespace_info__().devices()]

    def owns(self, x):
        from array_api_compat import is_array_api_strict_namespace

        try:
            return is_array_api_strict_namespace(x.__array_namespace__())
        except AttributeError:
            return False

    def to_numpy(self, x):
        import numpy as np

        xp = self._import()
        return np.asarray(x.to_device(xp.Device("CPU_DEVICE")))
