"""One device vocabulary for every GPU backend, parsed once."""

from __future__ import annotations

from ._base import BackendUnavailableError, InvalidDeviceError

#: How every GPU backend (cupy, torch, jax) names a device; torch and jax also take "cpu".
GPU_DEVICES = 'None (the default), a GPU index (0, 1, ...), "gpu", "gpu:1", "cuda" or "cuda:1"'


def parse_device(spec, backend: str, *, cpu: bool) -> tuple[str, int | None]:
    """A device in the GPU backends' vocabulary as ``(kind, index)``.

    ``kind`` is "gpu" or "cpu"; ``index`` is None where the spelling names no
    index (the first device).  Ints and digit strings are GPU indices, so a
    command line's ``--device 0`` means the same to every backend.
    """
    vocabulary = GPU_DEVICES + (' or "cpu"' if cpu else "") + f", or a {backend} device object"
    text = spec.strip().lower() if isinstance(spec, str) else None
    if isinstance(spec, int) and not isinstance(spec, bool) and spec >= 0:
        return "gpu", spec
    if text is not None:
        kind, sep, index = text.partition(":")
        if kind.isdigit() and not sep:
            return "gpu", int(kind)
        if kind in ("gpu", "cuda") and (not sep or index.isdigit()):
            return "gpu", int(index) if sep else None
        if kind == "cpu" and (not sep or index.isdigit()):
            if not cpu:
                raise InvalidDeviceError(f"backend {backend!r} runs on GPUs only, not on device {spec!r}; "
                                         f"it takes {vocabulary}")
            return "cpu", int(index) if sep else None
    raise InvalidDeviceError(f"backend {backend!r} does not understand device {spec!r}; it takes {vocabulary}")


def gpu_index(index: int | None, count: int, backend: str, spec) -> int:
    """``index`` (None: the first GPU) checked against the ``count`` GPUs usable here."""
    index = 0 if index is None else index
    if count == 0:
        raise BackendUnavailableError(f"backend {backend!r} was asked for GPU device {spec!r} but no GPU is usable here")
    if index >= count:
        raise BackendUnavailableError(f"backend {backend!r} sees {count} GPU(s); there is no GPU {index} "
                                      f"(device {spec!r})")
    return index
