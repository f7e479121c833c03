"""What every backend adapter provides.

An adapter is cheap to construct and imports its array library only when it is
first used, so listing or registering backends never imports a framework the
user did not ask for.
"""

from __future__ import annotations

import contextlib
import importlib
import os

from ..errors import BackpropCoreError


def host_free_memory():
    """Bytes of host memory available now (Linux), or None where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def cpu_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class BackendUnavailableError(BackpropCoreError, RuntimeError):
    """The backend's library is missing, or it cannot run on this machine."""


class Ready:
    """An upload that has already finished."""

    def __init__(self, array):
        self.array = array

    def get(self):
        return self.array


class StreamUpload(Ready):
    """A host-to-device copy in flight on a side stream.

    ``get()`` calls ``wait(array)``, which makes the compute stream wait for the
    copy (an event), then hands the array over.
    """

    def __init__(self, array, wait):
        super().__init__(array)
        self._wait = wait

    def get(self):
        self._wait(self.array)
        return self.array


class Backend:
    """Base adapter.  Subclasses set ``name`` and ``library`` and override hooks.

    ``device`` is whatever the user named (``None`` for the backend's default);
    :meth:`resolve_device` turns it into the library's own device object.
    """

    name: str = ""
    library: str = ""  # importable module that must exist
    install_hint: str = ""
    #: Trains with its own loop (backprop_core.distributed) rather than on one device.
    distributed: bool = False
    #: Full batches run over cache-sized chunks by default where m allows (chunked.py).
    chunks_by_default: bool = False
    #: Can run the equations compiled into one kernel (backprop_core.fused).
    fuses_kernels: bool = False

    def __init__(self, device=None):
        self.requested_device = device
        self._xp = None
        self._device = None

    # -- availability and namespace -------------------------------------------------
    def _import(self):
        try:
            return importlib.import_module(self.library)
        except ImportError as exc:
            raise BackendUnavailableError(
                f"backend {self.name!r} needs the {self.library!r} package, which is not "
                f"installed here ({exc}); install it with: {self.install_hint}"
            ) from None

    def check_available(self) -> None:
        """Raise :class:`BackendUnavailableError` saying why this backend cannot run."""
        self._import()

    def availability(self) -> tuple[bool, str]:
        try:
            self.check_available()
            self.device  # noqa: B018 - resolving the device probes it
        except BackendUnavailableError as exc:
            return False, str(exc)
        return True, "ok"

    @property
    def xp(self):
        """The Array API namespace (array-api-compat's wrapper where needed)."""
        if self._xp is None:
            self.check_available()
            self._xp = self._namespace()
        return self._xp

    def _namespace(self):
        raise NotImplementedError

    @property
    def device(self):
        if self._device is None:
            self.check_available()
            self._device = self.resolve_device(self.requested_device)
        return self._device

    def resolve_device(self, spec):
        raise NotImplementedError

    def version(self) -> str:
        return getattr(self._import(), "__version__", "unknown")

    def devices(self) -> list[str]:
        """Names of the devices this backend could use here."""
        return [str(self.device)]

    @property
    def on_gpu(self) -> bool:
        return False

    @property
    def default_dtype(self) -> str:
        return "float32" if self.on_gpu else "float64"

    # -- moving data ---------------------------------------------------------------
    def dtype(self, name: str):
        return getattr(self.xp, name)

    def asarray(self, host, dtype: str):
        """Copy a host (NumPy) array onto this backend's device with ``dtype``."""
        return self.xp.asarray(host, dtype=self.dtype(dtype), device=self.device)

    def upload(self, host, dtype: str):
        """Start copying a host chunk to the device; ``.get()`` on the result gives the array.

        The default copies at once.  GPU adapters override it to copy on a side
        stream from pinned memory, so that the next chunk's transfer overlaps the
        current chunk's compute; ``get()`` then makes the compute stream wait for it.
        """
        return Ready(self.asarray(host, dtype))

    def parameters_from_host(self, host: dict, dtype: str) -> dict:
        """The network's parameters (small) where this backend computes with them."""
        return {k: self.asarray(v, dtype) for k, v in host.items()}

    def free_memory(self):
        """Bytes free on the device, or None where the library cannot say."""
        return None if self.on_gpu else host_free_memory()

    @property
    def default_workers(self) -> int:
        """Threads that share a chunked step by default: the library's own threading is enough."""
        return 1

    def random_normal(self, shape, dtype: str, seed):
        """Standard normal samples made on the device where the library can (the host otherwise)."""
        import numpy as np

        return self.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)

    def to_numpy(self, x):
        """Copy an array of this backend back to a NumPy array on the host."""
        import numpy as np

        return np.asarray(x)

    def owns(self, x) -> bool:
        """Is ``x`` an array of this backend's library?"""
        raise NotImplementedError

    def for_data(self, x) -> "Backend":
        """The adapter to train on ``x`` with; one whose arrays hold other arrays adapts to them."""
        return self

    def device_of(self, x):
        from array_api_compat import device

        return device(x)

    # -- running -------------------------------------------------------------------
    def synchronize(self, *arrays) -> None:
        """Wait until queued work is done, at least the work producing ``arrays`` (for timing)."""

    def compile(self, fn):
        """Optionally compile a pure step function; the default runs it eagerly."""
        return fn

    def context(self):
        """A context manager that makes this backend's device current."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"<backend {self.name} device={self.requested_device!r}>"
