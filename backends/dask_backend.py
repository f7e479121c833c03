"""Dask: data chunked along the examples, gradients summed chunk by chunk.

X and Y are Dask arrays whose chunks are NumPy arrays (CPUs) or CuPy arrays
(GPUs); the small parameters stay on the client as arrays of the chunks'
library and travel to the workers with each iteration's graph.  The "device" names
the scheduler: ``None`` for Dask's default (a distributed Client already made
is the default once it exists), a ``dask.distributed.Client``, or a scheduler
address such as ``"tcp://10.0.0.5:8786"``.
"""

from __future__ import annotations

import copy
import importlib

from ._base import Backend, BackendUnavailableError

CONNECT_TIMEOUT_S = 10


def library_of(array) -> str:
    """The top-level module of an array's type: "numpy", "cupy", ..."""
    return type(array).__module__.partition(".")[0]


def chunk_library_of(x) -> str:
    """The library of a Dask array's chunks, read from its meta (an empty chunk)."""
    meta = getattr(x, "_meta", None)
    return "numpy" if meta is None else library_of(meta)


class DaskBackend(Backend):
    name = "dask"
    library = "dask"
    install_hint = "pip install 'dask[array,distributed]'"
    distributed = True
    client = None  # the distributed Client this backend opened or was given, once resolved

    def __init__(self, device=None, chunk_library: str = "numpy", iteration_timeout: float = 300.0):
        super().__init__(device)
        self.chunk_library = chunk_library
        # On a cluster, an iteration that takes longer than this stops training with an
        # error (all workers gone would otherwise wait forever).
        self.iteration_timeout = iteration_timeout

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
        if spec is None or spec == "cpu":
            try:
                from distributed import default_client

                return default_client().scheduler.address
            except (ImportError, ValueError):
                return "local scheduler"
        if isinstance(spec, str):
            try:
                from distributed import Client
            except ImportError:
                raise BackendUnavailableError(
                    f"connecting to the Dask scheduler at {spec!r} needs dask.distributed: "
                    "pip install 'dask[distributed]'") from None
            try:
                self.client = Client(spec, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise BackendUnavailableError(
                    f"could not reach a Dask scheduler at {spec!r} within {CONNECT_TIMEOUT_S} s "
                    f"(check the address and that the scheduler runs): {exc}") from None
            return spec
        if hasattr(spec, "scheduler_info"):  # a distributed Client
            self.client = spec
            return spec.scheduler.address
        raise BackendUnavailableError(f"the dask backend takes a scheduler address or Client, not {spec!r}")

    @property
    def scheduler_client(self):
        """The distributed Client to use, or None for the local default scheduler."""
        self.device  # noqa: B018 - resolving the device connects to a named scheduler
        if self.client is not None:
            return self.client
        try:
            from distributed import default_client

            return default_client()
        except (ImportError, ValueError):
            return None

    def for_data(self, x):
        """This backend with parameters in the library of ``x``'s chunks (NumPy or CuPy)."""
        library = chunk_library_of(x)
        if library == self.chunk_library:
            return self
        adapted = copy.copy(self)  # same scheduler, same timeout
        adapted.chunk_library = library
        return adapted

    def _chunks_module(self):
        return importlib.import_module(self.chunk_library)

    def asarray(self, host, dtype):
        import dask.array as da
        import numpy as np

        host = np.asarray(host, dtype=dtype)
        if self.chunk_library != "numpy":
            host = self._chunks_module().asarray(host)
        return da.from_array(host, chunks=(-1, "auto") if host.ndim == 2 else "auto")

    def parameters_from_host(self, host, dtype):
        lib = self._chunks_module()
        return {k: lib.asarray(v, dtype=dtype) for k, v in host.items()}

    def to_numpy(self, x):
        import numpy as np

        if hasattr(x, "compute") and hasattr(x, "dask"):
            x = x.compute()
        return x.get() if hasattr(x, "get") and not isinstance(x, np.ndarray) else np.asarray(x)

    def owns(self, x):
        from array_api_compat import is_dask_array

        return is_dask_array(x)

    def device_of(self, x):
        return self.device

    def devices(self):
        return [str(self.device)]
