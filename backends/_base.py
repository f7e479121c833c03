"""What every backend adapter provides.

An adapter is cheap to construct and imports its array library only when it is
first used, so listing or registering backends never imports a framework the
user did not ask for.  What the libraries agree on (which arrays are theirs,
where an array lives, how it comes back to the host) is written here once,
through array-api-compat; an adapter keeps only what truly differs: parsing
its devices, streams, compiling, matmul precision.
"""

from __future__ import annotations

import contextlib
import importlib
import os

import array_api_compat
import numpy as np

from ..errors import BackpropCoreError, InvalidInputError
from ._uploads import Ready

#: Matmul precisions for float32: full float32, or TensorFloat-32 (NVIDIA tensor cores:
#: about 10 mantissa bits in the products, several times faster on wide layers).
PRECISIONS = ("float32", "tf32")


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
    """The backend's library is missing, or it cannot run on this machine or device."""


class InvalidDeviceError(InvalidInputError, BackendUnavailableError):
    """A device spelled in none of the ways the backend accepts; the message lists them."""


class Backend:
    """Base adapter.  Subclasses set ``name``, ``library`` and ``is_array`` and override hooks.

    ``requested_device`` is whatever the user named (``None`` for the backend's
    default); :meth:`resolve_device` turns it into the library's own device
    object, ``device``, without side effects beyond reading the library.
    ``precision`` is the matmul precision for float32 ("float32" or, where the
    library has it, "tf32"), applied inside :meth:`context` and compiled calls.

    Adapters pickle (a fitted estimator holds one): the pickle keeps the
    settings and the device as a plain string (:attr:`device_name`, e.g.
    "cuda:0"), never the library's objects, streams or connections, and
    unpickling imports nothing.  Everything is resolved again on first use, on
    the same device; where that device is missing (a GPU adapter unpickled on a
    machine without a GPU) the first use raises :class:`BackendUnavailableError`
    naming it.
    """

    name: str = ""
    library: str = ""  # importable module that must exist
    install_hint: str = ""
    #: Computes on a cluster, each chunk where it lives (backprop_core.dask_training), not on one device.
    distributed: bool = False
    #: The planner may run full batches over chunks, sized and threaded by its calibration here.
    chunks_by_default: bool = False
    #: Runs kernels this library compiles: the fused kernel and the CuPy kernels (backprop_core.lowering).
    fuses_kernels: bool = False
    #: Is ``x`` an array of this library?  (array-api-compat's ``is_*_array``)
    is_array = staticmethod(lambda x: False)
    #: Host device as array-api-compat's ``to_device`` spells it for this library.
    host_device = "cpu"
    #: The precisions this adapter can apply.
    precisions: tuple = ("float32",)

    def __init__(self, device=None, *, precision: str = "float32"):
        if precision not in self.precisions:
            raise InvalidInputError(
                f"backend {self.name!r} takes precision {' or '.join(map(repr, self.precisions))}, not "
                f"{precision!r} ('tf32', TensorFloat-32 matmuls, is for cupy, torch and jax on NVIDIA GPUs)")
        self.requested_device = device
        self.precision = precision
        self._reset()

    def _reset(self) -> None:
        """Forget what was resolved or opened; it is made again when first needed."""
        self._xp = None
        self._device = None

    # -- pickling: a fitted estimator holds its adapter -----------------------------
    def __getstate__(self):
        # Namespaces, devices, streams and connections are not picklable and belong to
        # this process: keep only settings, with the device as a plain string.
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        state["requested_device"] = self._portable_device()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    def _portable_device(self):
        # Once resolved, the adapter comes back on the same device (or fails naming it).
        if self._device is not None or not (self.requested_device is None
                                            or isinstance(self.requested_device, (int, str))):
            return self.device_name
        return self.requested_device

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

    def connect(self):
        """Open what computing needs beyond the device (a cluster's client); local libraries need nothing."""
        return None

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
        """The library's own device object (resolved on first use, then kept)."""
        if self._device is None:
            self.check_available()
            self._device = self.resolve_device(self.requested_device)
        return self._device

    def resolve_device(self, spec):
        raise NotImplementedError

    @property
    def device_name(self) -> str:
        """The device as a plain string that resolves to it again (records, files, pickles)."""
        return str(self.device)

    def version(self) -> str:
        return getattr(self._import(), "__version__", "unknown")

    def devices(self) -> list[str]:
        """Names of the devices this backend could use here."""
        return [self.device_name]

    @property
    def on_gpu(self) -> bool:
        return False

    @property
    def default_dtype(self) -> str:
        return "float32" if self.on_gpu else "float64"

    # -- whose arrays, where ------------------------------------------------------------
    def owns(self, x) -> bool:
        """Is ``x`` an array of this backend's library?"""
        return bool(self.is_array(x))

    def device_of(self, x):
        """The library's device object that ``x`` lives on."""
        return array_api_compat.device(x)

    def holds(self, x) -> bool:
        """Is ``x`` an array of this library on this backend's device (devices compared as objects)?"""
        return self.owns(x) and self.device_of(x) == self.device

    def place_of(self, x) -> str:
        """Where ``x``, an array this adapter holds, is, in words for a message: "on device cuda:1"."""
        return f"on device {self.device_name}"

    def for_data(self, x) -> "Backend":
        """The adapter to train on ``x`` with; one whose arrays hold other arrays adapts to them."""
        return self

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

    def to_numpy(self, x):
        """Copy an array of this backend back to a NumPy array on the host."""
        return np.asarray(array_api_compat.to_device(x, self.host_device))

    def free_memory(self):
        """Bytes the device can still give, the library's pooled free memory included; None if unknown."""
        return None if self.on_gpu else host_free_memory()

    @property
    def default_workers(self) -> int:
        """Threads that share a chunked step by default: the library's own threading is enough."""
        return 1

    def random_normal(self, shape, dtype: str, seed):
        """Standard normal samples made on the device where the library can (the host otherwise)."""
        return self.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)

    # -- running -------------------------------------------------------------------
    def synchronize(self, *arrays) -> None:
        """Wait until queued work is done, at least the work producing ``arrays`` (for timing)."""

    def compile(self, fn):
        """Optionally compile a pure step function; the default runs it eagerly."""
        return fn

    def context(self):
        """A context manager for computing here: the device made current, the precision applied.

        Whatever it changes in the library's global state is restored on exit.
        """
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        extra = f" precision={self.precision!r}" if self.precision != "float32" else ""
        return f"<backend {self.name} device={self.requested_device!r}{extra}>"
