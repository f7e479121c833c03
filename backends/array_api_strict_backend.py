"""array-api-strict: the Array API reference implementation, to prove portability.

Devices: ``None`` or ``"CPU_DEVICE"`` (default), ``"device1"``, ``"device2"`` (fake
devices that catch every array made without ``device=``), the devices without
64-bit types that newer versions have (``"no_float64"``, ``"no_x64"``), or an
``array_api_strict.Device``.  The default dtype is the device's own, as the
library's inspection API reports it: float32 where float64 is missing.  Flags
such as boolean indexing are set with ``array_api_strict.set_array_api_strict_flags``.
"""

from __future__ import annotations

from ._base import Backend, BackendUnavailableError, InvalidDeviceError


def _is_strict_array(x) -> bool:
    from array_api_compat import is_array_api_strict_namespace

    try:
        return is_array_api_strict_namespace(x.__array_namespace__())
    except AttributeError:
        return False


def _name(device) -> str:
    # The Device keeps its name private; its repr is "array_api_strict.Device('device1')".
    return repr(device).split("'")[1]


class ArrayApiStrictBackend(Backend):
    name = "array_api_strict"
    library = "array_api_strict"
    install_hint = "pip install array-api-strict"
    is_array = staticmethod(_is_strict_array)

    def _namespace(self):
        return self._import()

    @property
    def host_device(self):
        return self._import().Device("CPU_DEVICE")

    def resolve_device(self, spec):
        xp = self._import()
        if spec is None:
            return xp.Device("CPU_DEVICE")
        if isinstance(spec, xp.Device):
            return spec
        try:
            return xp.Device(str(spec))
        except ValueError:
            raise InvalidDeviceError(
                f"array_api_strict has no device {spec!r}; it takes None, an array_api_strict.Device "
                f"or one of {', '.join(map(repr, self.devices()))}") from None

    @property
    def device_name(self):
        return _name(self.device)

    def devices(self):
        return [_name(d) for d in self._import().__array_namespace_info__().devices()]

    def _real_dtypes(self) -> dict:
        return self._import().__array_namespace_info__().dtypes(device=self.device, kind="real floating")

    @property
    def default_dtype(self) -> str:
        default = self._import().__array_namespace_info__().default_dtypes(device=self.device)["real floating"]
        return next(name for name, dtype in self._real_dtypes().items() if dtype == default)

    def dtype(self, name: str):
        if name in ("float32", "float64") and name not in self._real_dtypes():
            raise BackendUnavailableError(
                f"array_api_strict's device {self.device_name!r} has no {name} (it computes in "
                f"{', '.join(self._real_dtypes())}); use dtype='{self.default_dtype}' or another device")
        return super().dtype(name)
