"""BLAS's threads: as many as the plan decided, for one worker as for many.

OpenBLAS starts a thread per core and splits any product above about 2.6e5
multiply-adds among them.  Where another process holds a core, each split
product waits for a thread that is not running: a fit of 569 examples and 32
units took 2.98 s against 0.16 s on one BLAS thread.  So every plan says how
many threads BLAS runs (:attr:`backprop_core.planner.Plan.blas_threads`),
the strategy holds that limit while it runs, and the caller's own setting
comes back when it ends (threadpoolctl).
"""

from __future__ import annotations

import contextlib

from threadpoolctl import ThreadpoolController, threadpool_limits

_controller = None


def blas_threads(threads: int | None):
    """A context in which BLAS runs on ``threads`` threads (None: as the caller left it); the
    caller's setting is restored at its end.  Made, it applies at once (a worker process
    that makes one and never leaves it keeps the limit for its life)."""
    if threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(int(threads), user_api="blas")


def one_blas_thread():
    """:func:`blas_threads` (1): each worker of several computes on one core."""
    return blas_threads(1)


def switch(threads: int):
    """Set BLAS's threads at once, without looking for the libraries again (for a calibration
    that switches between samples; :func:`blas_threads` around it restores the caller's)."""
    global _controller
    if _controller is None:  # finds the BLAS libraries loaded now (NumPy's among them)
        _controller = ThreadpoolController()
    for library in _controller.select(user_api="blas").lib_controllers:
        library.set_num_threads(int(threads))
