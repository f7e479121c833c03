"""Exceptions that carry what was trained, so a failure loses nothing."""

from __future__ import annotations


class TrainingDivergedError(FloatingPointError):
    """The cost became NaN or infinite.

    ``parameters`` holds the last parameters whose cost was finite, ``iteration``
    the iteration at which they were checked, ``history`` the costs recorded.
    """

    def __init__(self, message, parameters, iteration, history):
        super().__init__(message)
        self.parameters = parameters
        self.iteration = iteration
        self.history = history


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``parameters`` are those of the last completed iteration."""

    def __init__(self, parameters, iteration, history):
        super().__init__(f"training interrupted after {iteration} completed iteration(s)")
        self.parameters = parameters
        self.iteration = iteration
        self.history = history


class DistributedTrainingError(RuntimeError):
    """The cluster failed mid-training (a worker died, or an iteration timed out).

    ``parameters`` are those of the last completed iteration.
    """

    def __init__(self, message, parameters, iteration, history):
        super().__init__(message)
        self.parameters = parameters
        self.iteration = iteration
        self.history = history


class DeviceMemoryError(MemoryError):
    """The data (or one chunk of them) did not fit on the device.

    ``parameters`` are those of the last completed iteration.
    """

    def __init__(self, message, parameters, iteration, history):
        super().__init__(message)
        self.parameters = parameters
        self.iteration = iteration
        self.history = history


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, CuPy's OutOfMemoryError, torch's OutOfMemoryError, JAX's RESOURCE_EXHAUSTED."""
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "outofmemory" in text \
        or "resource_exhausted" in text or "resource exhausted" in text
