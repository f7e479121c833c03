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
import itertools
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

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


#: Most blocks a batch is cut into (:func:`block_bounds`): enough that a worker on a core it shares
#: with other work holds the others up by at most one block of a step's 32.
MAX_BLOCKS = 32
#: Bytes the blocks' sums may hold together (one gradient-sized slot per block): a wide network
#: gets fewer blocks (784-512-1 in float64: 5 slots of 3.2 MB), never more memory.
BLOCK_SUMS_BYTES = 16 << 20


def sum_bytes(n0: int, n1: int, n2: int, itemsize: int) -> int:
    """Bytes of one block's sums: dW1 (n1, n0), db1 (n1, 1), dW2 (n2, n1), db2 (n2, 1) and the cost."""
    return itemsize * (n1 * n0 + n1 + n2 * n1 + n2 + 1)


def most_blocks(slot_bytes: int) -> int:
    """The most blocks any batch is cut into when one block's sums take ``slot_bytes``: at most
    :data:`MAX_BLOCKS`, and at most what fits in :data:`BLOCK_SUMS_BYTES` (at least one)."""
    return max(1, min(MAX_BLOCKS, BLOCK_SUMS_BYTES // max(1, slot_bytes)))


def block_bounds(m: int, chunk_size: int, slot_bytes: int) -> list[list[tuple[int, int]]]:
    """The chunks of range(m) (:func:`chunk_bounds`) grouped, in order, into blocks of consecutive chunks.

    Workers take blocks as they free up, and each block's sums have a slot of
    their own, added to the others in block order: so the bits depend on m,
    the chunk size and ``slot_bytes`` (one block's sums, :func:`sum_bytes`),
    never on how many workers ran or which took which block.  The count is at
    most :data:`MAX_BLOCKS`, and at most what fits in :data:`BLOCK_SUMS_BYTES`.
    """
    chunks = chunk_bounds(m, chunk_size)
    count = min(len(chunks), most_blocks(slot_bytes))
    return [chunks[len(chunks) * i // count:len(chunks) * (i + 1) // count] for i in range(count)]


def in_order(block_sums):
    """The blocks' sums added in block order (the one order every plan adds them in)."""
    total = None
    for part in block_sums:
        total = add_parts(total, part)
    return total


def share_sums(gradients, chunks, params, m: int):
    """One block's sums: the gradients of its ``chunks`` (pairs Xc, Yc) added in order.

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


def pinned_in_turn():
    """An initializer for a pool's threads: the k-th thread started runs on the k-th core of those the
    starting thread may use, and on no other (None where there is one core, or no way to pin).

    The caller waits while the pool computes, so each thread has a core of its own.  Unpinned, the
    scheduler often woke both of a step's threads on one core, where they took turns: at 784-512-1,
    m = 2^10, on 2 cores, the chunk calibration measured chunks of 512 on two threads at 93 k
    examples/s with a spread of 40%, too unstable to choose, and 102 to 109 k/s pinned, stable in
    two runs of three (the bench's plans, docs/performance.md).  The fused step's pool and the
    worker processes are pinned for the same reason."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    turns, taking = itertools.count(), threading.Lock()

    def pin():
        with taking:
            k = next(turns)
        with contextlib.suppress(OSError):  # the process's cores changed since: left where it is
            os.sched_setaffinity(0, {cores[k % len(cores)]})  # on Linux, 0 is the calling thread
    return pin


class ChunkedGradients:
    """``(dW1, db1, dW2, db2, J)`` of a whole batch, summed over chunks of its m columns.

    ``make_gradients(with_cost)`` returns a function ``(params, Xc, Yc, m) ->
    (dW1, db1, dW2, db2, J)`` for one chunk; it is called once per worker, so a
    function may keep buffers of its own.  ``X`` and ``Y`` may be on the
    backend's device, or NumPy arrays on the host with ``stream=True``: each
    chunk is then copied to the device as it is needed, the next one's copy
    started before the current one is computed (on GPUs it runs on a side
    stream, overlapping the compute).  ``workers`` threads, each pinned to a core
    of its own (:func:`pinned_in_turn`), take blocks of chunks as they free up
    (:func:`block_bounds`; array libraries release the GIL in their kernels);
    the blocks' sums are added in block order, so the result does not depend
    on which thread computed what.
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
        W1, W2 = params["W1"], params["W2"]
        blocks = block_bounds(m, self.chunk_size, sum_bytes(W1.shape[1], W1.shape[0], W2.shape[0],
                                                            np.dtype(self.dtype).itemsize))
        functions = self._functions(with_cost)
        if self.workers == 1 or len(blocks) == 1:  # one stream of chunks, so uploads overlap across blocks too
            chunks = self._chunks(X, Y, [chunk for block in blocks for chunk in block])
            return in_order(share_sums(functions[0], itertools.islice(chunks, len(block)), params, m)
                            for block in blocks)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="backprop-chunk",
                                            initializer=pinned_in_turn())
        sums, claims, claiming = [None] * len(blocks), iter(range(len(blocks))), threading.Lock()
        stopped = threading.Event()  # the step failed or was interrupted: take no more blocks

        def work(gradients):
            while not stopped.is_set():
                with claiming:
                    b = next(claims, None)
                if b is None:
                    return
                sums[b] = self._share(gradients, blocks[b], params, X, Y, m)

        running = [self._pool.submit(work, fn) for fn in functions[:len(blocks)]]
        try:
            for done in running:
                done.result()  # a thread's exception is raised here
        except BaseException:
            stopped.set()
            raise
        return in_order(sums)

    @contextlib.contextmanager
    def running(self):
        """The workers' pool while they run, shut down however the run ends.  BLAS's threads are not
        set here: they are the plan's (:attr:`~backprop_core.planner.Plan.blas_threads`), held by the
        strategy :func:`~backprop_core.building.build` made; a limit of its own here would override the
        plan's (a whole batch in one chunk of m ran on one thread where its plan chose every core)."""
        try:
            yield self
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
