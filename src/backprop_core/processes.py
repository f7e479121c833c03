"""Chunks of the whole batch on worker processes, where threads take turns on the GIL.

On NumPy a chunk's step is some forty calls of a few microseconds each
(:mod:`backprop_core.lowering.numpy_buffers`); threads running them hold the GIL in turn,
so on narrow networks two threads are no faster than one.  A process has a
GIL of its own.

Once per fit, X and Y (with the weights row under Y) are copied into shared
memory, as data move to a device once per fit.  With k workers, the calling
process is worker 0 and k - 1 worker processes are the others, each with
buffers of its own, traced in that process from the network's shape and its
activation's and output's names (only names and numbers cross).  Each
iteration the parameters are written into a shared buffer, one byte per
worker over a pipe says "go", and every worker, the calling process among
them, takes the batch's blocks of chunks (:func:`~backprop_core.chunked.block_bounds`)
as it frees up: it skips a block whose claim byte is set, sets it, and writes
the block's sums into the block's own slot of a shared result buffer; then it
answers.  A worker on a core that other work shares does fewer blocks instead
of holding the others up.  Checking and setting a claim byte are two steps, so
two workers may both compute a block: harmless, as both write the same bits
into the same slot; none is lost, as every worker visits every block and
skips only those another has claimed (and a worker that fails fails the
step).  The calling process adds the slots in block order: a plan gives the
same bits on every run, whoever took which block, and the bits threads give.

A worker is a fresh interpreter, started as multiprocessing's "spawn" starts
one (never a fork of this process, whose threads, BLAS's among them, a fork
would copy mid-flight), but without running this process's main module again,
which spawn and forkserver do: a script that trains at its top level, with no
``if __name__ == "__main__"`` guard, would train again in every worker.
Workers ignore Ctrl-C and SIGTERM, which the calling process turns into
TrainingInterrupted (a signal sent to the whole process group, as a terminal's
Ctrl-C or a service's stop is, reaches them too: the calling process stops them
itself), and run BLAS on one thread.  Where there is a core for
each, the calling thread and each worker are pinned to cores of their own
while the workers live: the scheduler would otherwise often wake a worker on
the core of the thread that woke it, and the two would take turns there.
Workers are stopped, and the shared memory released, when the strategy's
``running()`` context ends, however it ends.  A process killed outright (an
out-of-memory kill of its whole group takes the resource tracker with it)
cannot release anything: its segments are named after it
(:data:`SEGMENT_PREFIX`, its process id, its pid namespace), and each start of
worker processes removes those of makers that no longer run
(:func:`remove_dead_segments`).  A worker that dies, or does not
answer in time, stops the fit with an error that says which one and what
happened.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import multiprocessing
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass
from multiprocessing import connection, resource_tracker
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from . import owners
from .activations import ACTIVATIONS, get_activation
from .blas import one_blas_thread
from .chunked import ChunkedGradients, block_bounds, in_order, most_blocks, share_sums, sum_bytes
from .equations import OUTPUTS, get_output
from .errors import DistributedTrainingError, InvalidInputError
from .lowering import numpy_buffers
from .parameters import pack, unpack
from .strategies import Chunked

#: The executor the worker processes compute their chunks by (they rebuild it by name: :class:`Network`).
EXECUTOR = numpy_buffers.NAME
#: Seconds a worker may take to answer beyond what the calling process's own share took
#: (a worker's share is about as long): longer, and it is taken for hung.
ROUND_TRIP_TIMEOUT_S = 60.0
#: A timeout grows with the step: at least this many times the calling process's share.
TIMEOUT_SHARES = 20
#: Seconds an idle worker has to stop when asked, before it is terminated.
STOP_WAIT_S = 2.0

_GO, _GO_WITH_COST, _QUIT, _OK = b"0", b"1", b"q", b"k"

#: The shared-memory segments this module makes are named SEGMENT_PREFIX, the maker's process id,
#: on Linux "n" and its pid namespace's number, "_" and 8 random hex digits (within macOS's 31).
SEGMENT_PREFIX = "bcore_"
_SEGMENT = re.compile(re.escape(SEGMENT_PREFIX) + owners.TAG + r"_[0-9a-f]{8}\Z")
_SHM = "/dev/shm"  # where Linux shows POSIX shared memory as files


class WorkerProcessError(RuntimeError):
    """A worker process died, failed or did not answer; the message says which and what happened.

    Training turns it into a :class:`~backprop_core.errors.DistributedTrainingError`
    holding the parameters of the last completed iteration (:class:`ProcessChunked`).
    """


@dataclass(frozen=True)
class Network:
    """What a worker needs to trace the equations itself: names and numbers, which pickle.

    ``activation`` and ``output`` are names in the library's registries
    (:data:`~backprop_core.activations.ACTIVATIONS`, :data:`~backprop_core.equations.OUTPUTS`);
    a weighted fit's Y carries the weights as its last row.
    """

    n0: int
    n1: int
    n2: int
    activation: str
    output: str = "sigmoid"
    weighted: bool = False
    dtype: str = "float64"

    @classmethod
    def of(cls, shape, activation, output, weighted: bool, dtype: str) -> "Network | None":
        """The network of ``shape`` (n0, n1, n2), or None when its activation or output is not
        the library's own under its name (a caller's functions cannot be rebuilt in a worker)."""
        activation, output = get_activation(activation), get_output(output)
        if ACTIVATIONS.get(activation.name) is not activation or OUTPUTS.get(output.name) is not output:
            return None
        n0, n1, n2 = (int(n) for n in shape)
        return cls(n0, n1, n2, activation.name, output.name, bool(weighted), str(np.dtype(dtype)))

    @property
    def parameter_shapes(self) -> tuple:
        """Shapes of W1, b1, W2, b2, which are also those of dW1, db1, dW2, db2."""
        return (self.n1, self.n0), (self.n1, 1), (self.n2, self.n1), (self.n2, 1)

    def make_gradients(self, columns: int):
        """``make(with_cost)`` of :class:`ChunkedGradients`: the buffered lowering, chunks of ``columns``."""
        from .backends import get_backend

        return numpy_buffers.make_gradients(get_backend("numpy"), get_activation(self.activation),
                                            (self.n0, self.n1, self.n2), self.dtype, columns,
                                            get_output(self.output), self.weighted)


def _views(buffer, shapes, dtype, offset=0) -> list:
    """Arrays of ``shapes`` laid end to end in ``buffer`` from ``offset`` (bytes)."""
    views = []
    for shape in shapes:
        views.append(np.ndarray(shape, dtype, buffer=buffer, offset=offset))
        offset += math.prod(shape) * dtype.itemsize
    return views


def _sum_shapes(network: Network) -> tuple:
    return (*network.parameter_shapes, ())  # dW1, db1, dW2, db2 and the cost J


def _params_bytes(network: Network) -> int:
    return sum(math.prod(s) for s in network.parameter_shapes) * np.dtype(network.dtype).itemsize


def _slot_bytes(network: Network) -> int:
    return sum_bytes(network.n0, network.n1, network.n2, np.dtype(network.dtype).itemsize)


def _slot_count(network: Network) -> int:
    """Slots for the most blocks a batch is cut into (:func:`~backprop_core.chunked.block_bounds`)."""
    return most_blocks(_slot_bytes(network))


def _control_views(buffer, network: Network) -> tuple:
    """The control segment's parts: the parameters, a slot of sums per block, a claim byte per block."""
    dtype, params_bytes, slot_bytes = np.dtype(network.dtype), _params_bytes(network), _slot_bytes(network)
    count = _slot_count(network)
    params = _views(buffer, network.parameter_shapes, dtype)
    slots = [_views(buffer, _sum_shapes(network), dtype, offset=params_bytes + b * slot_bytes) for b in range(count)]
    claims = np.ndarray((count,), np.uint8, buffer=buffer, offset=params_bytes + count * slot_bytes)
    return params, slots, claims


def _control_bytes(network: Network) -> int:
    return _params_bytes(network) + _slot_count(network) * (_slot_bytes(network) + 1)


def take_blocks(first: int, blocks, claims, slots, gradients, X, Y, params, m: int):
    """Compute every block of ``blocks`` whose claim is not set, from block ``first`` round to the
    one before it, each block's sums (:func:`~backprop_core.chunked.share_sums`) into its slot."""
    for i in range(len(blocks)):
        b = (first + i) % len(blocks)
        if claims[b]:
            continue  # another worker has it
        claims[b] = 1
        sums = share_sums(gradients, ((X[:, a:z], Y[:, a:z]) for a, z in blocks[b]), params, m)
        for view, value in zip(slots[b], sums):
            if value is not None:
                np.copyto(view, value)


def _command(sys_path, fd: int, tracker_fd: int, index: int, count: int, network: Network, control: str) -> list:
    """A fresh interpreter running worker ``index``: it imports what this process imports (its
    ``sys_path``), and not this process's main module, which a script may run unguarded."""
    boot = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "  # Ctrl-C and SIGTERM are the caller's
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "import json, sys; sys.path[:] = json.loads(sys.argv[1])\n"
            "from backprop_core.processes import _serve_command; _serve_command(sys.argv[2:])")
    return [sys.executable, "-c", boot, json.dumps(sys_path), str(fd), str(tracker_fd), str(index), str(count),
            json.dumps(dataclasses.asdict(network)), control]


def available() -> bool:
    """Can worker processes start here?  (A POSIX system, and an interpreter to start.)"""
    return os.name == "posix" and bool(sys.executable)


def shared_memory_free() -> int | None:
    """Bytes free for shared memory (Linux's /dev/shm), or None where that cannot be read.

    A container's is often small (Docker's default is 64 MiB), and writing past
    its end kills the writer with SIGBUS, so the data are measured against it first.
    """
    try:
        stat = os.statvfs("/dev/shm")
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def shared_bytes(n0: int, rows: int, m: int, dtype) -> int:
    """Bytes X (n0, m) and Y (rows, m) take in shared memory."""
    return (n0 + rows) * m * np.dtype(dtype).itemsize


# -- the worker ---------------------------------------------------------------------------------
def _serve_command(argv):
    """The worker's entry (:func:`_command`): serve the calling process until it says quit or is gone."""
    fd, tracker_fd, index, count = (int(a) for a in argv[:4])
    network, control = Network(**json.loads(argv[4])), argv[5]
    if tracker_fd >= 0:
        # As multiprocessing's own children do: segments this worker maps are registered with the
        # calling process's resource tracker (which unlinks them if that process dies), not with a
        # tracker of the worker's, which would unlink them when the worker ends.
        resource_tracker._resource_tracker._fd = tracker_fd
    one_blas_thread()  # threadpoolctl limits BLAS as the limit is made: here, for the worker's life
    conn = connection.Connection(fd)
    try:
        server = _Server(index, count, network, control)
    except Exception as exc:
        conn.send_bytes(_failure(exc))
        return
    conn.send_bytes(_OK)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the calling process is gone
        if message == _QUIT:
            return
        try:
            if message in (_GO, _GO_WITH_COST):
                server.step(message == _GO_WITH_COST)
            else:
                kind, *args = json.loads(message)
                {"data": server.data, "split": server.split}[kind](*args)
            conn.send_bytes(_OK)
        except Exception as exc:  # the calling process raises it
            conn.send_bytes(_failure(exc))


def _failure(exc) -> bytes:
    return json.dumps([type(exc).__name__, str(exc), traceback.format_exc()]).encode()


def _new_segment(size: int) -> SharedMemory:
    """A new segment named after this process (:data:`SEGMENT_PREFIX`)."""
    owner = owners.tag()
    while True:
        try:
            return SharedMemory(name=f"{SEGMENT_PREFIX}{owner}_{secrets.token_hex(4)}", create=True, size=size)
        except FileExistsError:  # 1 in 4 billion: draw again
            continue


def remove_dead_segments() -> list:
    """Unlink the segments (:data:`SEGMENT_PREFIX`) whose maker, in this pid namespace, no longer runs;
    returns their names.  Only Linux lists them (in /dev/shm); elsewhere nothing is done."""
    try:
        names = os.listdir(_SHM)
    except OSError:
        return []
    removed = []
    for name in names:
        match = _SEGMENT.match(name)
        if match is None or not owners.maker_ended(match[1], match[2]):
            continue  # not ours, another namespace's (whose pids mean nothing here), or its maker runs
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(_SHM, name))
            removed.append(name)
    return removed


def _attach(name: str) -> SharedMemory:
    if sys.version_info >= (3, 13):  # the calling process owns the segment and unlinks it
        return SharedMemory(name=name, track=False)
    return SharedMemory(name=name)


class _Server:
    """Worker ``index`` of ``count``: the shared parameters, the blocks' slots and claims, the data, the blocks."""

    def __init__(self, index: int, count: int, network: Network, control: str):
        self.index, self.count, self.network = index, count, network
        self.dtype = np.dtype(network.dtype)
        self.control = _attach(control)
        params, self.slots, self.claims = _control_views(self.control.buf, network)
        self.params = pack(params)
        self.segment = self.X = self.Y = None
        self.make, self.functions, self.blocks, self.m = None, {}, [], 0

    def data(self, name: str, x_shape, y_shape):
        """Map the batch the calling process shared (and unmap the one before)."""
        self.X = self.Y = None
        _close(self.segment)
        self.segment = _attach(name)
        self.X, self.Y = _views(self.segment.buf, (tuple(x_shape), tuple(y_shape)), self.dtype)

    def split(self, chunk_size: int, m: int):
        """Blocks of chunks of ``chunk_size`` over the first m examples."""
        self.make, self.functions = self.network.make_gradients(chunk_size), {}
        self.blocks, self.m = block_bounds(m, chunk_size, _slot_bytes(self.network)), m

    def step(self, with_cost: bool):
        """The blocks no other worker has claimed, starting this worker's index-th share of the way in."""
        if with_cost not in self.functions:
            self.functions[with_cost] = self.make(with_cost)
        take_blocks(len(self.blocks) * self.index // self.count, self.blocks, self.claims, self.slots,
                    self.functions[with_cost], self.X, self.Y, self.params, self.m)


def _close(segment):
    """Unmap a segment (views of it that are still alive keep the mapping until they die)."""
    if segment is not None:
        with contextlib.suppress(BufferError):
            segment.close()


# -- the calling process's side ----------------------------------------------------------------
class _Held:
    """The processes and shared memory of a :class:`WorkerProcesses`, released once, however it ends."""

    def __init__(self):
        self.workers, self.segments = [], []

    def release(self):
        for w in self.workers:  # an idle worker is asked to quit; a busy one would not listen
            if not w.busy and w.process.poll() is None:
                with contextlib.suppress(OSError):
                    w.conn.send_bytes(_QUIT)
        for w in self.workers:
            # Busy (computing, or hung: it holds nothing worth waiting for), or deaf to quit: killed,
            # as a worker ignores SIGTERM (the calling process's to act on) and a stopped one any signal but SIGKILL.
            if w.busy or not _waited(w.process, STOP_WAIT_S):
                w.process.kill()
                w.process.wait()
            w.conn.close()
        for segment in self.segments:
            _close(segment)
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()
        self.workers, self.segments = [], []


def _pin(pids) -> tuple | None:
    """Pin the calling thread and the processes ``pids`` to a core each, where there are enough;
    returns (the thread's id, the cores it may use until then), or None where nothing was pinned."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    before = os.sched_getaffinity(0)
    cores = sorted(before)
    if len(cores) <= len(pids):
        return None
    for pid, core in zip(pids, cores[1:]):
        os.sched_setaffinity(pid, {core})
    os.sched_setaffinity(0, {cores[0]})  # on Linux, pid 0 is the calling thread
    return threading.get_native_id(), before


def _waited(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    conn: connection.Connection
    busy: bool = False


class WorkerProcesses:
    """``count - 1`` worker processes which, with the calling process, sum a batch's gradients.

    ``network`` says what they compute; ``timeout`` is the least time a worker
    may take to answer.  :meth:`share` copies X (n0, m) and Y into shared
    memory, :meth:`split` cuts the first m examples into chunks, and a call
    ``(params, with_cost)`` returns ``(dW1, db1, dW2, db2, J)`` summed over
    every chunk, as :class:`~backprop_core.chunked.ChunkedGradients` does.
    :meth:`close` stops the processes and releases the memory (a context
    manager does, and so, as a last resort, does the garbage collector).
    ``X`` and ``Y`` are the shared copies (None before :meth:`share`).
    """

    def __init__(self, network: Network, count: int, *, timeout: float = ROUND_TRIP_TIMEOUT_S):
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise InvalidInputError(f"worker processes need a count of at least 2, got {count!r}")
        self.network, self.count, self.timeout = network, count, float(timeout)
        self.dtype = np.dtype(network.dtype)
        self._held = _Held()
        self._finalizer = weakref.finalize(self, self._held.release)
        self._broken = None
        remove_dead_segments()  # what fits killed outright left
        control = _new_segment(_control_bytes(network))
        self._held.segments.append(control)
        self._params, self._slots, self._claims = _control_views(control.buf, network)
        self._data = self.X = self.Y = None
        self._blocks, self._m, self._make, self._functions = [], 0, None, {}
        self._pinned = None
        try:
            tracker_fd = resource_tracker.getfd() if sys.version_info < (3, 13) else -1
            for index in range(1, count):
                here, there = multiprocessing.Pipe()
                with there:
                    fds = (there.fileno(), tracker_fd) if tracker_fd >= 0 else (there.fileno(),)
                    process = subprocess.Popen(
                        _command(sys.path, there.fileno(), tracker_fd, index, count, network, control.name),
                        pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
                self._held.workers.append(_Worker(index, process, here))
            for w in self._held.workers:
                self._answer(w, self.timeout)
            self._pinned = _pin([w.process.pid for w in self._held.workers])
        except BaseException:
            self.close()
            raise

    @property
    def pids(self) -> list:
        """The worker processes' ids (the calling process's own is not among them)."""
        return [w.process.pid for w in self._held.workers]

    def share(self, X, Y):
        """Copy X (n0, m) and Y (rows, m), NumPy arrays of the network's dtype, into shared memory."""
        for name, A in (("X", X), ("Y", Y)):
            if not isinstance(A, np.ndarray) or A.dtype != self.dtype or A.ndim != 2:
                raise InvalidInputError(f"worker processes take {name} as a 2-D NumPy array of {self.dtype}")
        if X.shape[1] != Y.shape[1]:
            raise InvalidInputError(f"X has {X.shape[1]} examples and Y {Y.shape[1]}")
        need, free = X.nbytes + Y.nbytes, shared_memory_free()
        if free is not None and need > free:
            raise MemoryError(f"worker processes share X and Y through shared memory: they need "
                              f"{need / 2**20:,.0f} MiB and /dev/shm has {free / 2**20:,.0f} MiB free")
        segment = _new_segment(max(1, need))
        self._held.segments.append(segment)
        Xs, Ys = _views(segment.buf, (X.shape, Y.shape), self.dtype)
        np.copyto(Xs, X)
        np.copyto(Ys, Y)
        self._tell_all(["data", segment.name, X.shape, Y.shape])
        old, self._data, self.X, self.Y = self._data, segment, Xs, Ys
        if old is not None:  # no worker maps it any more
            self._held.segments.remove(old)
            _close(old)
            old.unlink()
        self._blocks = []

    def split(self, chunk_size: int, m: int, make_gradients):
        """From now on: chunks of ``chunk_size`` over the first ``m`` shared examples, this process's
        share computed by ``make_gradients(with_cost)`` (the workers build their own)."""
        if self.X is None or not 0 < m <= self.X.shape[1]:
            raise InvalidInputError(f"split {m} examples: share at least that many first")
        self._tell_all(["split", int(chunk_size), int(m)])
        self._blocks, self._m = block_bounds(m, chunk_size, _slot_bytes(self.network)), int(m)
        self._make, self._functions = make_gradients, {}

    def __call__(self, params: dict, with_cost: bool = False):
        if self._broken:
            raise WorkerProcessError(self._broken)
        if not self._blocks:
            raise InvalidInputError("share the data and split them before computing gradients")
        for view, value in zip(self._params, unpack(params)):
            np.copyto(view, value)
        blocks = self._blocks
        self._claims[:len(blocks)] = 0  # the workers are idle: no one reads them now
        for w in self._held.workers:
            self._send(w, _GO_WITH_COST if with_cost else _GO)
        if with_cost not in self._functions:
            self._functions[with_cost] = self._make(with_cost)
        t0 = time.perf_counter()
        take_blocks(0, blocks, self._claims, self._slots, self._functions[with_cost], self.X, self.Y, params,
                    self._m)
        # When this process runs out of blocks, each worker has at most the one it took last to finish.
        timeout = max(self.timeout, TIMEOUT_SHARES * (time.perf_counter() - t0))
        for w in self._held.workers:
            self._answer(w, timeout)
        total = in_order((dW1, db1, dW2, db2, J if with_cost else None)
                         for dW1, db1, dW2, db2, J in self._slots[:len(blocks)])
        return tuple(None if t is None else np.array(t) for t in total)  # not views of the slots

    @contextlib.contextmanager
    def unpinned(self):
        """The calling thread free to run on all the cores it had while the block runs, as a pass
        without the workers runs (a calibration times one beside them)."""
        if self._pinned is None or self._pinned[0] != threading.get_native_id():
            yield
            return
        pinned = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self._pinned[1])
        try:
            yield
        finally:
            os.sched_setaffinity(0, pinned)

    def close(self):
        """Stop the workers, release the shared memory, and free the calling thread to run on
        any of its cores again (idempotent)."""
        self._params = self._slots = self._claims = self.X = self.Y = None
        self._finalizer()
        if self._pinned is not None and self._pinned[0] == threading.get_native_id():
            os.sched_setaffinity(0, self._pinned[1])
        self._pinned = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the round trip ------------------------------------------------------------------------
    def _tell_all(self, message):
        data = json.dumps(message).encode()
        for w in self._held.workers:
            self._send(w, data)
        for w in self._held.workers:
            self._answer(w, self.timeout)

    def _send(self, w: _Worker, data: bytes):
        try:
            w.conn.send_bytes(data)
        except OSError:
            raise self._failed(w, self._death(w)) from None
        w.busy = True

    def _answer(self, w: _Worker, timeout: float):
        """Wait for worker ``w``'s answer: it may come, the worker may die, or time may run out."""
        ready = connection.wait([w.conn], timeout)  # a worker's end closes when it dies
        if ready:
            try:
                answer = w.conn.recv_bytes()
            except (EOFError, OSError):
                raise self._failed(w, self._death(w)) from None
            w.busy = False
            if answer != _OK:
                kind, message, trace = json.loads(answer)
                error = MemoryError if kind == "MemoryError" else WorkerProcessError
                raise error(f"worker process {w.index} of {self.count} (pid {w.process.pid}) failed: "
                            f"{kind}: {message}\n{trace}")
            return
        raise self._failed(w, f"did not answer within {timeout:.3g} s")

    def _death(self, w: _Worker) -> str:
        if not _waited(w.process, 1.0):  # its exit status comes a moment after its pipe closes
            return "closed its pipe"
        code = w.process.returncode
        if code < 0:
            return f"died: killed by signal {signal.Signals(-code).name}"
        return f"died: exited with status {code}"

    def _failed(self, w: _Worker, what: str) -> WorkerProcessError:
        self._broken = f"worker process {w.index} of {self.count} (pid {w.process.pid}) {what}"
        return WorkerProcessError(self._broken)


class ProcessChunkedGradients(ChunkedGradients):
    """:class:`~backprop_core.chunked.ChunkedGradients` whose ``workers`` are processes, the calling
    one first, on NumPy data (X (n0, m), Y (rows, m)), for ``network``.

    The first call shares X and Y with the workers (a call with other arrays
    shares those); ``make_gradients`` computes the calling process's share.
    ``running()`` (or :meth:`close`) stops the workers.  A batch of one chunk,
    or one worker, runs in the calling process alone.
    """

    def __init__(self, make_gradients, chunk_size: int, *, backend, dtype: str, workers: int, network: Network,
                 timeout: float = ROUND_TRIP_TIMEOUT_S):
        super().__init__(make_gradients, chunk_size, backend=backend, dtype=dtype, workers=workers)
        self.network, self.timeout = network, timeout
        self._processes = None
        self._shared = None  # the (X, Y) the workers hold

    @property
    def pids(self) -> list:
        """The worker processes' ids while they run (none before the first call, nor after closing)."""
        return [] if self._processes is None else self._processes.pids

    def __call__(self, params, X, Y, with_cost=False):
        if self.workers == 1 or X.shape[1] <= self.chunk_size:
            return super().__call__(params, X, Y, with_cost)
        if self._processes is None:
            self._processes = WorkerProcesses(self.network, self.workers, timeout=self.timeout)
        if self._shared is None or self._shared[0] is not X or self._shared[1] is not Y:
            self._processes.share(X, Y)
            self._processes.split(self.chunk_size, X.shape[1], self.make_gradients)
            self._shared = (X, Y)
        return self._processes(params, with_cost)

    def close(self):
        if self._processes is not None:
            self._processes.close()
        self._processes = self._shared = None

    @contextlib.contextmanager
    def running(self):
        try:
            with super().running():
                yield self
        finally:
            self.close()


class ProcessChunked(Chunked):
    """:class:`~backprop_core.strategies.Chunked` over worker processes: a worker lost mid-fit stops
    the loop as a lost cluster does, with the parameters of the last completed iteration."""

    def __init__(self, X, Y, learning_rate: float, backend, gradients: ProcessChunkedGradients, rule=None,
                 state=None):
        super().__init__(X, Y, learning_rate, backend, gradients, rule, state)
        self.memory_advice = (f"use parallel='threads' (shared memory holds a copy of the data) or a smaller "
                              f"chunk_size than {gradients.chunk_size}, set around the fit by execution_context")

    def failure(self, exc, params, iteration, history):
        if isinstance(exc, WorkerProcessError):
            return DistributedTrainingError(
                f"{str(exc).splitlines()[0]}, during iteration {iteration}: training stopped with the "
                f"parameters of the last completed iteration", params, iteration, history)
        return super().failure(exc, params, iteration, history)
