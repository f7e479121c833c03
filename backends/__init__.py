"""The backend registry.

Built-in adapters are named by import path and loaded on first use; a third
party adds one either by calling :func:`register_backend` or by declaring an
entry point in the ``backprop_core.backends`` group whose object is a
:class:`Backend` subclass (or any callable taking ``device=`` and returning a
backend).  Nothing imports an array library until a backend of it is used.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

from ..errors import InvalidInputError, InvalidTypeError
from ._base import PRECISIONS, Backend, BackendUnavailableError, InvalidDeviceError, host_free_memory
from ._devices import GPU_DEVICES, parse_device
from ._uploads import PinnedStaging, Ready, StreamUpload

ENTRY_POINT_GROUP = "backprop_core.backends"

_BUILTIN = {
    "numpy": "backprop_core.backends.numpy_backend:NumpyBackend",
    "cupy": "backprop_core.backends.cupy_backend:CupyBackend",
    "torch": "backprop_core.backends.torch_backend:TorchBackend",
    "jax": "backprop_core.backends.jax_backend:JaxBackend",
    "array_api_strict": "backprop_core.backends.array_api_strict_backend:ArrayApiStrictBackend",
    "dask": "backprop_core.backends.dask_backend:DaskBackend",
}
_registered: dict = {}


def register_backend(name: str, factory) -> None:
    """Make ``factory(device=...)`` available as ``backend=name``."""
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"a backend name must be a non-empty string, not {name!r}")
    if not callable(factory):
        raise InvalidTypeError(f"the factory for backend {name!r} must be callable, not {factory!r}")
    _registered[name] = factory


def unregister_backend(name: str) -> None:
    _registered.pop(name, None)


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load(path: str):
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def backend_names() -> list[str]:
    """Every backend name known here, usable or not."""
    return list(dict.fromkeys([*_BUILTIN, *_registered, *_entry_points()]))


def _factory(name: str):
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        return _load(_BUILTIN[name])
    eps = _entry_points()
    if name in eps:
        return eps[name].load()
    raise InvalidInputError(f"unknown backend {name!r}; known backends: {', '.join(backend_names())}")


def make_backend(name: str, device=None, **options) -> Backend:
    """An adapter for ``name`` on ``device``, not yet checked for availability.

    ``options`` go to the adapter's constructor (``precision="tf32"`` for cupy,
    torch and jax, ``iteration_timeout=`` for dask, ...).
    """
    if isinstance(name, Backend):
        if options or (device is not None and device != name.requested_device):
            raise InvalidInputError(f"device and options apply to a backend named by a string, not to {name!r}")
        return name
    if not isinstance(name, str):
        raise InvalidInputError(f"a backend is named by a string, not {name!r}")
    return _factory(name)(device=device, **options)


def get_backend(name: str = "numpy", device=None, **options) -> Backend:
    """A usable adapter; raises :class:`BackendUnavailableError` saying why not.

    The device is resolved (and so validated) now, and a backend that computes
    elsewhere (a Dask scheduler named by its address) is connected.
    """
    backend = make_backend(name, device, **options)
    backend.check_available()
    backend.device  # noqa: B018 - resolves (and so validates) the device now
    backend.connect()
    return backend


def _candidates():
    """Factories of the built-in backends whose library is already imported, then the registered ones."""
    for path in _BUILTIN.values():
        cls = _load(path)
        if cls.library in sys.modules:
            yield cls
    yield from _registered.values()


def backend_for_array(x) -> Backend:
    """The adapter whose library made ``x``, on ``x``'s device (handed to its constructor).

    Only libraries that are already imported are asked, so this never imports
    a framework.
    """
    for factory in _candidates():
        probe = factory()
        try:
            owned = probe.owns(x)
        except NotImplementedError:
            owned = False
        if owned:
            return factory(device=probe.device_of(x)).for_data(x)
    raise InvalidTypeError(
        f"expected an array from a supported library (NumPy, CuPy, PyTorch, JAX, "
        f"array-api-strict, Dask or a registered backend), got {type(x).__name__}"
    )


__all__ = [
    "GPU_DEVICES",
    "PRECISIONS",
    "Backend",
    "BackendUnavailableError",
    "InvalidDeviceError",
    "parse_device",
    "PinnedStaging",
    "Ready",
    "StreamUpload",
    "host_free_memory",
    "ENTRY_POINT_GROUP",
    "backend_for_array",
    "backend_names",
    "get_backend",
    "make_backend",
    "register_backend",
    "unregister_backend",
]
