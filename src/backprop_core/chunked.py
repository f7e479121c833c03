"""Full-batch gradient descent over chunks of the examples.

Each chunk runs the same equations (``equations.gradients`` with the whole
batch's m), and the chunks' gradients add up to the full-batch gradient, so
the parameters match the all-at-once step to float rounding.  Chunks serve two
ends: data that do not fit on the device are streamed through it from the
host, and on a CPU, cache-sized chunks spread over the cores run several times
faster than one pass over the whole array (NumPy's element-wise functions run
on one thread, and the intermediates of a whole large batch never stay in cache).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

from . import parameters
from .activations import Activation
from .parameters import add_parts

# The fastest chunks on a 2-core x86-64 CPU held 3 to 12 MB of intermediates: 2-4-1 at
# 32,768 to 131,072 examples, 64-64-1 at 8,192 (bench/results/cpu-2026-11-27/chunks.md).
CHUNK_BYTES = 8 << 20
MIN_CHUNK, MAX_CHUNK = 4096, 131072


def working_bytes_per_example(n0: int, n1: int, n2: int, itemsize: int) -> int:
    """Bytes one example occupies during a step: X, Y, Z1, A1, g'(Z1), dZ1, Z2, A2, dZ2."""
    return itemsize * (n0 + n2 + 4 * n1 + 3 * n2)


def auto_chunk_size(n0: int, n1: int, n2: int, itemsize: int) -> int:
    """A power of two of examples whose intermediates fill about CHUNK_BYTES."""
    size = max(MIN_CHUNK, min(MAX_CHUNK, CHUNK_BYTES // working_bytes_per_example(n0, n1, n2, itemsize)))
    return 1 << (size.bit_length() - 1)


def chunk_bounds(m: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering range(m) in pieces of at most chunk_size."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return [(a, min(a + chunk_size, m)) for a in range(0, m, chunk_size)]


class ChunkedStep:
    """One full-batch iteration computed over chunks of the m columns.

    ``X`` and ``Y`` may be on the backend's device, or NumPy arrays on the host
    with ``stream=True``: each chunk is then copied to the device as it is
    needed, the next one's copy started before the current one is computed
    (on GPUs it runs on a side stream, overlapping the compute), so about two
    chunks per worker live there at a time.  ``workers``
    threads each sum the gradients of every ``workers``-th chunk (array
    libraries release the GIL in their kernels); their sums are then added.
    """

    def __init__(self, g: Activation, learning_rate: float, chunk_size: int, *, backend,
                 workers: int = 1, stream: bool = False):
        chunk_bounds(1, chunk_size)  # validates chunk_size
        self.g, self.learning_rate, self.chunk_size = g, learning_rate, chunk_size
        self.backend, self.stream = backend, stream
        self.workers = max(1, int(workers))
        self._pool = None
        self._grad = {}

    def _gradients(self, m, with_cost):
        # One compiled function per (m, with_cost); the chunks' shapes vary only in the last.
        key = (m, with_cost)
        if key not in self._grad:
            g = self.g

            def grad(params, X, Y):
                return parameters.gradients(params, X, Y, g, m, with_cost)

            self._grad[key] = self.backend.compile(grad)
        return self._grad[key]

    def _chunks(self, X, Y, bounds, params):
        """The chunks in order; when streaming, chunk i+1's upload starts before chunk i is used."""
        if not self.stream:
            for a, b in bounds:
                yield X[:, a:b], Y[:, a:b]
            return
        dtype = str(params["W1"].dtype).rsplit(".", 1)[-1]  # "float32" from numpy's or torch's name

        def start(a, b):
            return self.backend.upload(X[:, a:b], dtype), self.backend.upload(Y[:, a:b], dtype)

        pending = start(*bounds[0])
        for i in range(len(bounds)):
            current = pending
            if i + 1 < len(bounds):
                pending = start(*bounds[i + 1])
            yield current[0].get(), current[1].get()

    def _share(self, bounds, params, X, Y, m, with_cost):
        grad = self._gradients(m, with_cost)
        acc = None
        for Xc, Yc in self._chunks(X, Y, bounds, params):
            acc = add_parts(acc, grad(params, Xc, Yc))
        return acc

    def gradients(self, params, X, Y, with_cost=False):
        """``(dW1, db1, dW2, db2, J)`` of the whole batch, summed over its chunks."""
        m = X.shape[1]
        bounds = chunk_bounds(m, self.chunk_size)
        if self.workers == 1 or len(bounds) == 1:
            return self._share(bounds, params, X, Y, m, with_cost)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="backprop-chunk")
        shares = [s for s in (bounds[i::self.workers] for i in range(self.workers)) if s]
        total = None
        for part in self._pool.map(lambda s: self._share(s, params, X, Y, m, with_cost), shares):
            total = add_parts(total, part)
        return total

    def __call__(self, params, X, Y, with_cost=False):
        *grads, J = self.gradients(params, X, Y, with_cost)
        return parameters.updated(params, grads, self.learning_rate), J

    def cost(self, params, X, Y):
        return self.gradients(params, X, Y, with_cost=True)[4]

    @contextlib.contextmanager
    def running(self):
        """Pin BLAS to one thread per worker while the workers run (no oversubscription)."""
        limits = contextlib.nullcontext()
        if self.workers > 1 and not self.backend.on_gpu:
            try:
                from threadpoolctl import threadpool_limits

                limits = threadpool_limits(1)
            except ImportError:  # optional: without it BLAS may oversubscribe the cores
                pass
        try:
            with limits:
                yield self
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
