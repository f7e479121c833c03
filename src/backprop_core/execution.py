"""How a fit runs, apart from what it learns: chunks, workers, streams, the fused kernel.

These settings change the time a fit takes, never the model it gives (up to
floating-point rounding), so they are not the model's parameters: the estimator,
:func:`backprop_core.nn_model` and the command line all read them from one
place, the current :class:`Execution`, which :func:`execution_context` sets
for a block, as scikit-learn's ``config_context`` sets its configuration::

    with execution_context(chunk_size=4096, workers=2):
        model.fit(X, y)

A fit reads the current execution once, when it starts
(:func:`get_execution`), and hands that object to whatever it starts (the
planner, the worker threads and processes); nothing below the fit reads the
context again.

The current execution is a :class:`contextvars.ContextVar`: a block changes it
for the thread (or asyncio task) that runs the block, and for no other.  A new
thread starts from the defaults, ``Execution()``, whatever the thread that
started it had set (as a new thread sees scikit-learn's global configuration,
not its starter's ``config_context``); run it under
``contextvars.copy_context().run`` to hand it the starter's (the workers of
scikit-learn's ``n_jobs`` are such threads or processes: they fit with the
defaults).  An asyncio task
starts with a copy of its creator's context, so it sees the execution set
where it was created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from .errors import InvalidInputError, InvalidTypeError

#: How the chunks' workers run: "auto" (the planner's calibration decides), threads, or processes.
PARALLEL = ("auto", "threads", "processes")


def _positive_int(value, what, other=""):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{what} must be a positive integer{other}, got {value!r}")
    return int(value)


def _tri_state(value, what):
    """True, False or "auto" (NumPy's booleans taken as Python's)."""
    if isinstance(value, np.bool_):
        value = bool(value)
    if not (value is True or value is False or (isinstance(value, str) and value == "auto")):
        raise InvalidInputError(f"{what} must be True, False or 'auto', got {value!r}")
    return value


@dataclass(frozen=True)
class Execution:
    """How fits run on this machine; every field is checked when the object is made.

    ``chunk_size``: "auto" (default: chunks where the planner's calibration on
    this machine measured them faster, the numpy backend), None (never chunk)
    or a number of examples: each full-batch step is computed over chunks of
    it, to the same parameters.
    ``workers``: threads (or processes) that share the chunks; None for the
    planner's choice (every core on the numpy backend, 1 elsewhere).
    ``parallel``: "auto" (default), "threads" or "processes": how the workers
    run; processes (the numpy backend only) start once per fit and share the
    data, "auto" uses them where the calibration measured them faster for the
    fit's iterations, their start counted.
    ``stream``: True, False or "auto" (default): keep the data on the host and
    stream chunks through the device each iteration ("auto": where the data
    would not fit on a GPU).
    ``fused``: True, False or "auto" (default): each iteration as the equations
    compiled into one GPU kernel (the cupy backend, narrow networks); "auto"
    where it has been measured to pay.
    ``iteration_timeout``: on a Dask cluster, the seconds one iteration may
    take (retries after a lost worker included) before the fit stops with a
    DistributedTrainingError; None for the cluster adapter's own (300 s).
    Unused on one device.
    """

    chunk_size: int | str | None = "auto"
    workers: int | None = None
    parallel: str = "auto"
    stream: bool | str = "auto"
    fused: bool | str = "auto"
    iteration_timeout: float | None = None

    def __post_init__(self):
        # frozen: the checked (and normalised: NumPy integers to int) values are set past __setattr__
        def put(name, value):
            object.__setattr__(self, name, value)

        if not (self.chunk_size is None or (isinstance(self.chunk_size, str) and self.chunk_size == "auto")):
            put("chunk_size", _positive_int(self.chunk_size, "chunk_size", ", 'auto' or None"))
        if self.workers is not None:
            put("workers", _positive_int(self.workers, "workers", " or None"))
        if not (isinstance(self.parallel, str) and self.parallel in PARALLEL):
            raise InvalidInputError(f"parallel must be 'auto', 'threads' or 'processes', got {self.parallel!r}")
        put("stream", _tri_state(self.stream, "stream"))
        put("fused", _tri_state(self.fused, "fused"))
        timeout = self.iteration_timeout
        if timeout is not None:
            if isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, (int, float, np.integer,
                                                                                 np.floating)) \
                    or not math.isfinite(timeout) or timeout <= 0:
                raise InvalidInputError(f"iteration_timeout must be a positive number of seconds (or None), "
                                        f"got {timeout!r}")
            put("iteration_timeout", float(timeout))

    def replace(self, **changes) -> Execution:
        """A copy with ``changes`` (checked as at construction); an unknown name is refused by name."""
        unknown = sorted(set(changes) - set(FIELDS))
        if unknown:
            raise InvalidInputError(f"{', '.join(unknown)}: not a setting of the execution; its settings are "
                                    f"{', '.join(FIELDS)}")
        return dataclasses.replace(self, **changes)

    def plan_options(self) -> dict:
        """The settings the planner reads (:func:`backprop_core.planner.plan`)."""
        return {name: getattr(self, name) for name in ("chunk_size", "workers", "parallel", "stream", "fused")}


#: The names of the execution's settings, in order.
FIELDS = tuple(f.name for f in dataclasses.fields(Execution))

_current: ContextVar[Execution] = ContextVar("backprop_core_execution", default=Execution())


def get_execution() -> Execution:
    """The execution in force here (this thread's, or this asyncio task's): what a fit starting now uses."""
    return _current.get()


@contextlib.contextmanager
def execution_context(execution: Execution | None = None, /, **changes):
    """Within the block, fits run with the current execution changed by ``changes``
    (``chunk_size=``, ``workers=``, ...), or with ``execution`` (an :class:`Execution`) changed so.

    Blocks nest: an inner block starts from the outer one's settings.  The
    previous execution comes back at the block's end, however it ends.  Yields
    the execution in force within.  Other threads are not affected, and a new
    thread sees the defaults (see the module's docstring).
    """
    if execution is not None and not isinstance(execution, Execution):
        raise InvalidInputError(f"execution_context takes an Execution or settings by name, got {execution!r}")
    chosen = (execution or get_execution()).replace(**changes)
    token = _current.set(chosen)
    try:
        yield chosen
    finally:
        _current.reset(token)


def refuse_settings(where: str, given: dict, error=InvalidTypeError, *, of: str = "a parameter",
                    call: str = "model.fit(X, y)") -> None:
    """Refuse, as ``error``, the execution's settings (chunk_size, workers, ...) found among ``given``,
    the keywords passed to ``where``, showing ``call`` inside the block that sets them now."""
    moved = [name for name in FIELDS if name in given]
    if moved:
        settings = ", ".join(f"{name}={given[name]!r}" for name in moved)
        raise error(f"{', '.join(moved)}: not {of} of {where}: how a fit runs is set around the fit: "
                    f"`with backprop_core.execution_context({settings}): {call}`")


def set_around(func):
    """``func``, whose callers may pass the execution's settings out of habit: they are refused naming
    :func:`execution_context`, instead of Python's bare "unexpected keyword argument"."""

    @functools.wraps(func)
    def checked(*args, **kwargs):
        refuse_settings(func.__name__, kwargs, of="a keyword", call=f"{func.__name__}(...)")
        return func(*args, **kwargs)

    return checked
