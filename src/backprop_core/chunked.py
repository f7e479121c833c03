"""The whole batch's gradients, summed over chunks of the examples.

Each chunk runs the same equations with the whole batch's m, and the chunks'
gradients add up to the full-batch gradient, so the parameters match the
all-at-once step to float rounding.  Chunks serve two ends: data that do not
fit on the device are streamed through it from the host, and on a CPU,
cache-sized chunks spread over the cores run several times faster than one
pass over the whole array (NumPy's element-wise functions run on one thread,
and the intermediates of a large batch never stay in cache).
"""

from __future__ import annotations

import contextlib
import warnings
from concurrent.futures import ThreadPoolExecutor

from .backends._base import cpu_cores
from .parameters import add_parts


def working_bytes_per_example(n0: int, n1: int, n2: int, itemsize: int) -> int:
    """Bytes one example occupies during a step: X, Y, Z1, A1, g'(Z1), dZ1, Z2, A2, dZ2."""
    return itemsize * (n0 + n2 + 4 * n1 + 3 * n2)


def chunk_bounds(m: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering range(m) in pieces of at most chunk_size."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        from .errors import InvalidInputError

        raise InvalidInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return [(a, min(a + chunk_size, m)) for a in range(0, m, chunk_size)]


def share_sums(gradients, chunks, params, m: int):
    """One worker's share: the gradients of its ``chunks`` (pairs Xc, Yc) added in order.

    Threads and worker processes both sum this way, so a plan gives the same
    bits whichever runs it.
    """
    total = None
    for Xc, Yc in chunks:
        total = add_parts(total, gradients(params, Xc, Yc, m))
    return total


def cap_workers(workers: int, chunks: int | None = None) -> int:
    """``workers`` lowered to the cores this process may run on and to the batch's ``chunks`` (more
    threads or processes than either would only wait their turn, and each process costs memory),
    with a warning that says so when the request is lowered."""
    cores = cpu_cores()
    limit = cores if chunks is None else min(cores, chunks)
    if workers <= limit:
        return workers
    why = [f"this process may run on {cores} core{'s' if cores > 1 else ''}"] if cores < workers else []
    if chunks is not None and chunks < workers:
        why.append(f"the batch has {chunks} chunk{'s' if chunks > 1 else ''}")
    warnings.warn(f"{workers} workers asked for, {limit} used: {' and '.join(why)}; more would only wait",
                  stacklevel=3)
    return limit


class ChunkedGradients:
    """``(dW1, db1, dW2, db2, J)`` of a whole batch, summed over chunks of its m columns.

    ``make_gradients(with_cost)`` returns a function ``(params, Xc, Yc, m) ->
    (dW1, db1, dW2, db2, J)`` for one chunk; it is called once per worker, so a
    function may keep buffers of its own.  ``X`` and ``Y`` may be on the
    backend's device, or NumPy arrays on the host with ``stream=True``: each
    chunk is then copied to the device as it is needed, the next one's copy
    started before the current one is computed (on GPUs it runs on a side
    stream, overlapping the compute).  ``workers`` threads each sum the
    gradients of every ``workers``-th chunk (array libraries release the GIL in
    their kernels); their sums are then added in worker order, so the result
    does not depend on which thread finished first.
    """

    def __init__(self, make_gradients, chunk_size: int, *, backend, dtype: str, workers: int = 1,
                 stream: bool = False):
        chunk_bounds(1, chunk_size)  # validates chunk_size
        self.make_gradients, self.chunk_size = make_gradients, chunk_size
        self.backend, self.dtype, self.stream = backend, dtype, stream
        self.workers = max(1, int(workers))
        self._pool = None
        self._per_worker = {}  # with_cost -> one gradients function per worker

    def _functions(self, with_cost):
        if with_cost not in self._per_worker:
            self._per_worker[with_cost] = [self.make_gradients(with_cost) for _ in range(self.workers)]
        return self._per_worker[with_cost]

    def _chunks(self, X, Y, bounds):
        """The chunks in order; when streaming, chunk i+1's upload starts before chunk i is used."""
        if not self.stream:
            for a, b in bounds:
                yield X[:, a:b], Y[:, a:b]
            return

        def start(a, b):
            return self.backend.upload(X[:, a:b], self.dtype), self.backend.upload(Y[:, a:b], self.dtype)

        pending = start(*bounds[0])
        for i in range(len(bounds)):
            current = pending
            if i + 1 < len(bounds):
                pending = start(*bounds[i + 1])
            yield current[0].get(), current[1].get()

    def _share(self, gradients, bounds, params, X, Y, m):
        return share_sums(gradients, self._chunks(X, Y, bounds), params, m)

    def __call__(self, params, X, Y, with_cost=False):
        m = X.shape[1]
        bounds = chunk_bounds(m, self.chunk_size)
        functions = self._functions(with_cost)
        if self.workers == 1 or len(bounds) == 1:
            return self._share(functions[0], bounds, params, X, Y, m)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="backprop-chunk")
        shares = [(fn, bounds[i::self.workers]) for i, fn in enumerate(functions) if bounds[i::self.workers]]
        total = None
        for part in self._pool.map(lambda share: self._share(*share, params, X, Y, m), shares):
            total = add_parts(total, part)
        return total

    @contextlib.contextmanager
    def running(self):
        """The workers' pool while they run, shut down however the run ends.  BLAS's threads are not
        set here: they are the plan's (:attr:`~backprop_core.planner.Plan.blas_threads`), held by the
        strategy :func:`~backprop_core.planner.build` made; a limit of its own here would override the
        plan's (a whole batch in one chunk of m ran on one thread where its plan chose every core)."""
        try:
            yield self
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
