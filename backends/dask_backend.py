"""Dask: data chunked along the examples, gradients summed chunk by chunk.

X and Y are Dask arrays whose chunks are NumPy arrays (CPUs) or CuPy arrays
(GPUs); the small parameters stay on the client as arrays of the chunks'
library and travel to the workers with each iteration's graph.  The "device"
names the scheduler: ``None`` or ``"local"`` for Dask's default (a distributed
Client already made is the default once it exists), a scheduler address such
as ``"tcp://10.0.0.5:8786"``, or a ``dask.distributed.Client``.

Resolving the device only reads it: ``device`` is the scheduler's address (or
``"local"``), a plain string, so a model trained on a cluster can be described
and pickled without its Client.  The connection is opened by :meth:`connect`
(``scheduler_client``, and ``get_backend``, call it) when training needs it.
"""

from __future__ import annotations

import importlib

import array_api_compat
import numpy as np

from ._base import Backend, BackendUnavailableError, InvalidDeviceError

CONNECT_TIMEOUT_S = 10
LOCAL = "local"
DASK_DEVICES = ('None or "local" (Dask\'s default scheduler), a scheduler address such as '
                '"tcp://10.0.0.5:8786", or a dask.distributed.Client')


def library_of(array) -> str:
    """The top-level module of an array's type: "numpy", "cupy", ..."""
    return type(array).__module__.partition(".")[0]


def chunk_library_of(x) -> str:
    """The library of a Dask array's chunks, read from its meta (an empty chunk)."""
    meta = getattr(x, "_meta", None)
    return "numpy" if meta is None else library_of(meta)


def _default_client():
    """The distributed Client this process already made its default, or None (none is opened)."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _is_client(spec) -> bool:
    return hasattr(spec, "scheduler_info") and hasattr(spec, "scheduler")


class DaskBackend(Backend):
    name = "dask"
    library = "dask"
    install_hint = "pip install 'dask[array,distributed]'"
    is_array = staticmethod(array_api_compat.is_dask_array)
    distributed = True

    def __init__(self, device=None, chunk_library: str = "numpy", iteration_timeout: float = 300.0, *,
                 precision: str = "float32"):
        super().__init__(device, precision=precision)
        self.chunk_library = chunk_library
        # On a cluster, an iteration that takes longer than this (retries after a lost
        # worker included) stops training with an error: with every worker gone, the
        # iteration would otherwise wait forever.
        self.iteration_timeout = iteration_timeout
        if _is_client(device):
            self.client = device

    def _reset(self):
        super()._reset()
        self.client = None  # the distributed Client this backend opened or was given

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("client", None)  # a connection belongs to this process; reopened by address
        return state

    def check_available(self):
        self._import()
        try:
            importlib.import_module("dask.array")  # the part of dask this backend needs
        except ImportError as exc:
            raise BackendUnavailableError(f"backend 'dask' needs dask.array ({exc}): {self.install_hint}") from None

    def _namespace(self):
        import array_api_compat.dask.array as xp

        return xp

    def resolve_device(self, spec):
        if spec is None or spec in ("cpu", LOCAL):
            client = _default_client()
            return LOCAL if client is None else client.scheduler.address
        if _is_client(spec):
            return spec.scheduler.address
        if isinstance(spec, str) and ":" in spec:
            return spec
        raise InvalidDeviceError(f"the dask backend does not understand device {spec!r}; it takes {DASK_DEVICES}")

    def connect(self):
        """The distributed Client to compute with (opened now for an address), or None for the local scheduler.

        Fails within ``CONNECT_TIMEOUT_S`` seconds naming the address when no scheduler answers there.
        """
        if self.client is not None:
            return self.client
        if self.requested_device is None or self.requested_device in ("cpu", LOCAL):
            return _default_client()
        address = self.device
        try:
            from distributed import Client
        except ImportError:
            raise BackendUnavailableError(
                f"connecting to the Dask scheduler at {address!r} needs dask.distributed: "
                "pip install 'dask[distributed]'") from None
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailableError(
                f"could not reach a Dask scheduler at {address!r} within {CONNECT_TIMEOUT_S} s "
                f"(check the address and that the scheduler runs): {exc}") from None
        return self.client

    @property
    def scheduler_client(self):
        """The distributed Client to use, or None for the local default scheduler."""
        return self.connect()

    @property
    def on_gpu(self):
        return self.chunk_library == "cupy"

    def for_data(self, x):
        """This backend with parameters in the library of ``x``'s chunks (NumPy or CuPy)."""
        library = chunk_library_of(x)
        return self if library == self.chunk_library else self._adapted(chunk_library=library)

    def with_iteration_timeout(self, seconds: float):
        """This backend with ``iteration_timeout`` set to ``seconds`` (this one is left as it is)."""
        return self if seconds == self.iteration_timeout else self._adapted(iteration_timeout=float(seconds))

    def _adapted(self, **settings):
        adapted = object.__new__(type(self))  # same scheduler and connection
        adapted.__dict__.update(self.__dict__)
        adapted.__dict__.update(settings)
        return adapted

    def holds(self, x):
        # A Dask array is not tied to a scheduler; where it computes depends on its chunks.
        return self.owns(x) and chunk_library_of(x) == self.chunk_library

    def place_of(self, x) -> str:
        return f"made of {chunk_library_of(x)} chunks"  # one scheduler computes any of them

    def device_of(self, x):
        return None  # the default scheduler: a Dask array names none of its own

    def _chunks_module(self):
        return importlib.import_module(self.chunk_library)

    def asarray(self, host, dtype):
        import dask.array as da

        host = np.asarray(host, dtype=dtype)
        if self.chunk_library != "numpy":
            host = self._chunks_module().asarray(host)
        return da.from_array(host, chunks=(-1, "auto") if host.ndim == 2 else "auto")

    def parameters_from_host(self, host, dtype):
        lib = self._chunks_module()
        return {k: lib.asarray(v, dtype=dtype) for k, v in host.items()}

    def to_numpy(self, x):
        if array_api_compat.is_dask_array(x):
            x = x.compute()
        return np.asarray(array_api_compat.to_device(x, "cpu"))  # CuPy chunks come back with .get()

    def devices(self):
        return [self.device_name]
