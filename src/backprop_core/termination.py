"""SIGTERM stops a fit as Ctrl-C does.

``timeout``, ``kill``, systemd and container stops send SIGTERM, whose default
action ends the process on the spot: a fit of hours would lose everything it
trained.  While :func:`terminate_as_interrupt` is held, SIGTERM raises
:class:`Terminated` instead, a ``KeyboardInterrupt``, so the training loop
turns it into :class:`~backprop_core.errors.TrainingInterrupted` holding the
parameters of the last completed iteration, exactly as it turns Ctrl-C.

A library must not take signals from the program that uses it: the handler is
installed only in the main thread (Python delivers signals there and nowhere
else), only where SIGTERM still has its default action (a program that handles
or ignores SIGTERM keeps its own choice), and the previous disposition is put
back when the context ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class Terminated(KeyboardInterrupt):
    """SIGTERM received while a fit ran; ``signum`` is the signal's number (for an exit status 128 + signum)."""

    signum = signal.SIGTERM

    def __init__(self, message="terminated (SIGTERM)"):
        super().__init__(message)


def signal_number(exc: BaseException) -> int:
    """The signal a KeyboardInterrupt stands for: SIGTERM for :class:`Terminated` (and what carries its
    number), SIGINT for Ctrl-C."""
    return int(getattr(exc, "signum", signal.SIGINT))


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt():
    """While held, SIGTERM raises :class:`Terminated` in the main thread (see the module's rules)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
