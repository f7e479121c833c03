"""Full-batch gradient descent over chunks of the examples.

Each chunk runs the same equations (``equations.gradients`` with the whole
batch's m), and the chunks' gradients add up to the full-batch gradient, so
the parameters match the all-at-once step to float rounding.  Chunks serve two
ends: data that does not fit on the device are streamed through it from the
host, and on a CPU, cache-sized chunks spread over the cores run several times
faster than one pass over the whole array (NumPy's element-wise functions run
on one thread, and intermediates of a whole large batch never stay in cache).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from . import equations
from .activations import Activation

#: Examples per chunk on a CPU; measured on a 2-core x86-64 machine (bench/).
DEFAULT_CHUNK_SIZE = 8192


def chunk_bounds(m: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering range(m) in pieces of at most chunk_size."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return [(a, min(a + chunk_size, m)) for a in range(0, m, chunk_size)]


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _add(acc, part):
    if acc is None:
        return part
    return tuple(None if a is None else a + b for a, b in zip(acc, part))


class ChunkedStep:
    """``step(params, X, Y) -> (params, J)`` computed over chunks of the m columns.

    ``X`` and ``Y`` may be on the backend's device, or NumPy arrays on the host
    with ``stream=True``: each chunk is then copied to the device when it is
    needed, and only one chunk per worker lives there at a time.  ``workers``
    threads each sum the gradients of every ``workers``-th chunk (array
    libraries release the GIL in their kernels); their sums are then added.
    """

    def __init__(self, g: Activation, learning_rate: float, chunk_size: int, *, backend,
                 workers: int = 1, stream: bool = False, with_cost: bool = False):
        self.g, self.learning_rate, self.chunk_size = g, learning_rate, chunk_size
        self.backend, self.stream, self.with_cost = backend, stream, with_cost
        self.workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None
        self.dtype = None

    def _chunk(self, A, a, b):
        if self.stream:
            return self.backend.asarray(A[:, a:b], self.dtype)
        return A[:, a:b]

    def _share(self, bounds, params, X, Y, m):
        acc = None
        W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
        for a, b in bounds:
            part = equations.gradients(self._chunk(X, a, b), self._chunk(Y, a, b), W1, b1, W2, b2,
                                       self.g, m, self.with_cost)
            acc = _add(acc, part)
        return acc

    def __call__(self, params, X, Y):
        if self.stream and self.dtype is None:
            self.dtype = str(params["W1"].dtype).rsplit(".", 1)[-1]
        m = X.shape[1]
        bounds = chunk_bounds(m, self.chunk_size)
        if self._pool is None or len(bounds) == 1:
            total = self._share(bounds, params, X, Y, m)
        else:
            shares = [bounds[i::self.workers] for i in range(self.workers)]
            total = None
            for part in self._pool.map(lambda s: self._share(s, params, X, Y, m), [s for s in shares if s]):
                total = _add(total, part)
        dW1, db1, dW2, db2, J = total
        new = equations.update(params["W1"], params["b1"], params["W2"], params["b2"],
                               dW1, db1, dW2, db2, self.learning_rate)
        return dict(zip(("W1", "b1", "W2", "b2"), new)), J

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
