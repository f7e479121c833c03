"""The project's own exceptions.

Every error raised on purpose derives from :class:`BackpropCoreError`, so the
command line can tell a user's mistake (one line, exit status 2) from a bug
(a traceback).  The input errors also derive from the built-in class that
scikit-learn and users expect (ValueError, TypeError).  The training errors
carry what was trained, so a failure loses nothing.
"""

from __future__ import annotations

import signal


class BackpropCoreError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidInputError(BackpropCoreError, ValueError):
    """An argument, an array or a setting that cannot be used; the message names it."""


class InvalidTypeError(BackpropCoreError, TypeError):
    """An argument of a kind that cannot be used (complex data, arrays of two libraries, ...)."""


class MissingDependencyError(BackpropCoreError, ImportError):
    """An optional library this feature needs is not installed; the message says what to install."""


class ModelFileError(InvalidInputError):
    """A model file that cannot be loaded; the message names the file and what is wrong."""


class DataFileError(InvalidInputError):
    """A data file that cannot be read as a table; the message names the file, row and column."""


class _KeepsParameters(BackpropCoreError):
    """Mixin: ``parameters`` to keep, the ``iteration`` they belong to, the cost ``history``."""

    def __init__(self, message, parameters, iteration, history):
        super().__init__(message)
        self.parameters = parameters
        self.iteration = iteration
        self.history = history


class TrainingDivergedError(_KeepsParameters, FloatingPointError):
    """Gradient descent diverged (:func:`backprop_core.loop.diverged`): a cost read became NaN or
    infinite, or the final cost ended far above the start; ``parameters`` are those of the
    lowest cost read.  ``advice``: the features' scale that made the learning rate unsafe, where
    it was (its text ends the message)."""

    advice = None


class TrainingInterrupted(_KeepsParameters, KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM during training; ``parameters`` are those of the last completed
    iteration.  ``signum`` is the signal's number (SIGTERM: :mod:`backprop_core.termination`)."""

    def __init__(self, parameters, iteration, history, signum: int = signal.SIGINT):
        how = "interrupted" if signum == signal.SIGINT else f"terminated ({signal.Signals(signum).name})"
        super().__init__(f"training {how} after {iteration} completed iteration(s)", parameters, iteration, history)
        self.signum = int(signum)


class DistributedTrainingError(_KeepsParameters, RuntimeError):
    """The cluster failed mid-training (no worker left, or an iteration timed out).

    ``parameters`` are those of the last completed iteration.
    """


class DeviceMemoryError(_KeepsParameters, MemoryError):
    """The data (or one chunk of them) did not fit on the device.

    ``parameters`` are those of the last completed iteration.
    """


def is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, CuPy's OutOfMemoryError, torch's OutOfMemoryError, JAX's RESOURCE_EXHAUSTED."""
    text = f"{type(exc).__name__} {exc}".lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "outofmemory" in text \
        or "resource_exhausted" in text or "resource exhausted" in text


class FeatureScaleWarning(UserWarning):
    """The features' scale makes the learning rate unsafe; ``advice`` says by how much
    (:class:`backprop_core.validation.ScaleAdvice`), so a caller can say it in its own words."""

    def __init__(self, advice):
        super().__init__(str(advice))
        self.advice = advice
