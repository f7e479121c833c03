"""How to run a fit: one decision, made here for every entry point.

:func:`plan` looks at the backend, the network's shape, m, the dtype and the
user's options and returns a :class:`Plan`: the whole batch at once, chunks of
it (how big, on how many threads), chunks streamed from the host, mini-batches,
or Dask.  :func:`build` turns a plan into the strategy the loop runs.  The
estimator, the functional API, the command line and the benchmark all call
these two, so they all get the same, fastest mode, and the plan says what it
chose and why (``BackpropClassifier.plan_``, and the ``backprop_core`` logger
at DEBUG level).

On a CPU the chunk size and thread count are not guessed: they come from a
quick calibration of the actual network on this machine, measured once per
shape, activation and dtype in a process and recorded in the plan.  On NumPy
the calibration also measures worker processes (:mod:`backprop_core.processes`),
which threads cannot match where many short NumPy calls contend for the GIL,
and what starting them costs once per fit; they run a fit only where that
measurement says they finish it sooner.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
from array_api_compat import is_numpy_namespace

from . import gpu_lowering, processes
from .activations import get_activation
from .backends._base import cpu_cores
from .chunked import ChunkedGradients, one_blas_thread, working_bytes_per_example
from .equations import SIGMOID, get_output
from .errors import InvalidInputError
from .strategies import (Chunked, Fused, MiniBatch, WholeBatch, make_buffered_gradients,
                         make_equations_gradients)

log = logging.getLogger("backprop_core")

#: Below this working set a fit runs the whole batch at once (it stays in cache: chunks cannot
#: pay); from it up, the calibration decides.  In examples: 2-4-1 about 12,000, 64-64-1 about
#: 800, 784-512-1 about 90 (float32).
MIN_CALIBRATED_BYTES = 1 << 20
#: The largest intermediates one CPU chunk may hold (the calibration's candidates stop there):
#: on two threads, large chunks pay (fewer Python-level calls contend for the GIL).
MAX_CPU_CHUNK_BYTES = 64 << 20
#: Working memory of one streamed GPU chunk: large enough that its ~30 kernel launches are
#: negligible, small enough that two chunks in flight fit beside the parameters.
GPU_CHUNK_BYTES = 256 << 20
#: Stream when the data need more than this share of the device's free memory.
STREAM_ABOVE_FREE_SHARE = 0.5
#: Seconds the calibration of worker processes may take (beside the threads' own budget).
PROCESS_CALIBRATION_S = 1.0
#: Worker processes run a fit only where they are predicted to take at most this share of
#: the threads' time: each step waits for a process on another core, which a busy machine
#: may not give at once, and a fresh process's first steps are slower than the calibration's.
PROCESS_MARGIN = 0.85
#: How the chunks' workers run: "auto" (the calibration decides), on threads, or on processes.
PARALLEL = ("auto", "threads", "processes")


@dataclass(frozen=True)
class Plan:
    """How a fit runs.

    ``mode``: "whole batch", "chunks", "streamed chunks", "mini-batch" or "dask".
    ``executor``: what computes a chunk's gradients: "equations" (the
    equations array by array, compiled by the backend where it can: jax.jit) or
    another lowering of the traced equations.  ``workers`` share the chunks,
    as threads or, with ``parallel="processes"``, as processes (the calling
    one and ``workers - 1`` others).  ``reason`` says why.
    """

    mode: str
    executor: str = "equations"
    chunk_size: int | None = None
    workers: int = 1
    parallel: str = "threads"
    batch_size: int | None = None
    epochs: int | None = None
    reason: str = ""
    measured: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def streams(self) -> bool:
        return self.mode == "streamed chunks"

    def __str__(self):
        parts = [self.mode]
        if self.chunk_size:
            parts.append(f"chunks of {self.chunk_size:,}")
        if self.workers > 1:
            parts.append(f"{self.workers} {self.parallel}")
        if self.batch_size:
            parts.append(f"batches of {self.batch_size:,} for {self.epochs} epochs")
        parts.append(f"executor {self.executor}")
        return ", ".join(parts) + (f" ({self.reason})" if self.reason else "")


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def plan(backend, shape, dtype: str, activation, *, chunk_size="auto", workers=None, stream="auto",
         batch_size=None, epochs=None, fused="auto", host_data: bool = False, output=SIGMOID,
         weighted: bool = False, early_stopping: bool = False, parallel="auto", iterations=None,
         rule=None) -> Plan:
    """The plan for training an n0-n1-n2 network on m examples: ``shape = (n0, n1, n2, m)``.

    ``activation``: an :class:`~backprop_core.activations.Activation` or its name.
    ``chunk_size``: "auto", None (never chunk) or a number of examples.
    ``workers``: how many share the chunks (None: the planner's choice).
    ``parallel``: whether the workers are "threads" or "processes" (only the
    numpy backend runs processes), or "auto": what the calibration measured
    faster for a fit of ``iterations`` steps, counting the processes' start
    (with ``iterations=None``, as in a benchmark's steady state, the rate of
    one step alone decides).
    ``stream``: True, False or "auto" (stream host data through a GPU when they
    would not fit).  ``batch_size``/``epochs``: mini-batch gradient descent.
    ``fused``: True, False or "auto": the equations compiled into one GPU kernel
    on backends that can (:mod:`backprop_core.fused`); "auto" uses it where it
    has been measured to pay.  ``host_data``: the data are NumPy arrays on the
    host (only those can be streamed).  ``output``, ``weighted``: the output
    layer, and whether examples carry weights (both decide the executor:
    :func:`executor_for`).  ``early_stopping``: held-out data are scored at the
    cost reads.  ``rule``: the fit's :class:`~backprop_core.optimizers.UpdateRule`
    (None: the lecture's gradient descent); the fused kernel computes only the lecture's.
    """
    n0, n1, n2, m = shape
    activation = get_activation(activation)
    if workers is not None:
        workers = _positive_int(workers, "workers")
    if iterations is not None:
        iterations = _positive_int(iterations, "iterations")
    network = _process_network(backend, parallel, (n0, n1, n2), activation, output, weighted, dtype, m,
                               chunk_size=chunk_size, stream=stream, batch_size=batch_size)
    if stream not in (True, False, "auto"):
        raise InvalidInputError(f"stream must be True, False or 'auto', got {stream!r}")
    if chunk_size not in (None, "auto"):
        chunk_size = _positive_int(chunk_size, "chunk_size (or 'auto' or None)")
    itemsize = np.dtype(dtype).itemsize
    need = m * working_bytes_per_example(n0, n1, n2, itemsize)

    if backend.distributed:
        if early_stopping:  # the stratified split would bring every label to the client
            raise InvalidInputError(
                "training on Dask does not support early stopping yet: compute the arrays "
                "(X.compute()) to train on one device")
        if batch_size is not None or isinstance(chunk_size, int) or stream is True:
            raise InvalidInputError(
                "on Dask the chunks are the Dask array's own (rechunk it to change them); "
                "batch_size, chunk_size and stream do not apply")
        return _logged(Plan("dask", reason="Dask arrays train where their chunks are"))

    fits = _fits_on_device(backend, need)
    if batch_size is not None:
        batch_size = _positive_int(batch_size, "batch_size")
        epochs = 10 if epochs is None else _positive_int(epochs, "epochs")
        if stream is True or (stream == "auto" and host_data and not fits):
            raise InvalidInputError(
                "mini-batch training needs the data on the device, and they would not fit: use full "
                "batch (batch_size=None), which streams chunks through the device")
        return _logged(Plan("mini-batch", batch_size=batch_size, epochs=epochs,
                            reason="batch_size was given"))

    fused_plan = _fused_plan(backend, shape, fused, explicit=isinstance(chunk_size, int) or stream is True,
                             output=output, weighted=weighted, fits=fits or not host_data, rule=rule)
    if fused_plan is not None:
        return _logged(fused_plan)

    if stream is True and not host_data:
        raise InvalidInputError("only NumPy arrays on the host can be streamed through a device")
    if stream is True or (stream == "auto" and host_data and backend.on_gpu and not fits):
        size = chunk_size if isinstance(chunk_size, int) else chunk_size_for_bytes(
            n0, n1, n2, itemsize, _gpu_chunk_bytes(backend))
        why = "stream=True" if stream is True else \
            f"the data need {need / 2**30:.1f} GiB, more than half the device's free memory"
        return _logged(Plan("streamed chunks", chunk_size=size, workers=workers or 1, reason=why))

    executor = executor_for(backend, output, weighted)
    if isinstance(chunk_size, int):
        return _logged(Plan("chunks", executor=executor, chunk_size=chunk_size,
                            workers=workers or backend.default_workers,
                            parallel="processes" if parallel == "processes" else "threads",
                            reason="chunk_size was given"))
    if chunk_size is None or not backend.chunks_by_default:
        if executor == "equations":
            return _logged(Plan("whole batch", reason="chunk_size=None" if chunk_size is None
                                else f"the {backend.name} backend runs best on the whole batch"))
        return _logged(Plan("whole batch", executor=executor, chunk_size=m, reason="chunk_size=None"
                            if chunk_size is None else f"the {backend.name} backend runs best on the whole batch"))
    return _logged(_cpu_plan(backend, shape, dtype, activation, workers, executor, parallel, iterations,
                             network))


def _process_network(backend, parallel, shape, activation, output, weighted, dtype, m, *, chunk_size, stream,
                     batch_size):
    """The network as worker processes rebuild it, where processes may run this fit over m
    examples; None where they may not.  Refuses, by name, what makes parallel="processes"
    impossible."""
    if parallel not in PARALLEL:
        raise InvalidInputError(f"parallel must be 'auto', 'threads' or 'processes', got {parallel!r}")
    if parallel == "threads":
        return None
    asked = parallel == "processes"
    activation, output = get_activation(activation), get_output(output)
    numpy_host = not backend.distributed and not backend.on_gpu and is_numpy_namespace(backend.xp)
    network = processes.Network.of(shape, activation, output, weighted, dtype) if numpy_host else None
    need, free = processes.shared_bytes(shape[0], shape[2] + weighted, m, dtype), processes.shared_memory_free()
    fits = free is None or need <= free
    if not asked:
        return network if processes.available() and fits else None
    if not numpy_host:
        raise InvalidInputError(
            f"parallel='processes' runs chunks on worker processes, which only the numpy backend does "
            f"(its arrays are host memory); the {backend.name} backend computes on its own")
    if not processes.available():
        raise InvalidInputError("parallel='processes' needs a POSIX system that can start an interpreter; "
                                "use parallel='threads'")
    if network is None:
        raise InvalidInputError(
            f"parallel='processes': worker processes rebuild the activation and the output layer by name, "
            f"and the activation {activation.name!r} or the output {output.name!r} given is a function of the "
            f"caller's, not the library's own; use parallel='threads'")
    if not fits:
        raise InvalidInputError(
            f"parallel='processes' copies X and Y into shared memory: they need {need / 2**20:,.0f} MiB and "
            f"/dev/shm has {free / 2**20:,.0f} MiB free; use parallel='threads' (or, in a container, give it "
            f"a larger shared memory, e.g. docker run --shm-size)")
    for given, what in ((batch_size is not None, "batch_size (mini-batches run one at a time)"),
                        (chunk_size is None, "chunk_size=None (the batch is never cut into chunks)"),
                        (stream is True, "stream=True (chunks streamed through a device)")):
        if given:
            raise InvalidInputError(f"parallel='processes' shares a batch's chunks among processes: "
                                    f"it does not apply with {what}")
    return network


def _fused_plan(backend, shape, fused, explicit: bool, *, output, weighted, fits, rule=None) -> Plan | None:
    """The fused kernel's plan where it is asked for and applies; None to plan otherwise."""
    from .fused import choose

    if fused not in (True, False, "auto", None):
        raise InvalidInputError(f"fused must be True, False or 'auto', got {fused!r}")
    if not fused:
        return None
    if not backend.fuses_kernels:
        if fused is True:
            raise InvalidInputError(f"fused=True needs a backend that compiles fused kernels (cupy), "
                                    f"not {backend.name!r}")
        return None
    if fused is True and explicit:
        raise InvalidInputError("the fused kernel runs the whole batch on the device: "
                                "chunk_size and stream=True do not apply with fused=True")
    use, why = choose(fused, *shape[:3])
    if use and (output != SIGMOID or weighted):
        use, why = False, "the fused kernel computes the sigmoid output without sample weights"
    if use and not fits:
        use, why = False, "the data do not fit on the device: chunks are streamed instead"
    if use and rule is not None and not rule.lecture:  # the kernel's update is the lecture's, fused in
        use, why = False, f"the fused kernel updates by gradient descent without L2 penalty, not by {rule}"
    if use and not explicit:
        return Plan("whole batch", executor="fused", reason=why)
    if fused is True:
        warnings.warn(f"fused=True: {why}", stacklevel=4)
    return None


def _logged(p: Plan) -> Plan:
    log.debug("plan: %s", p)
    return p


def _fits_on_device(backend, need: int) -> bool:
    free = backend.free_memory() if backend.on_gpu else None
    return free is None or need <= STREAM_ABOVE_FREE_SHARE * free


def _gpu_chunk_bytes(backend) -> int:
    free = backend.free_memory()
    return GPU_CHUNK_BYTES if free is None else max(16 << 20, min(GPU_CHUNK_BYTES, free // 8))


def chunk_size_for_bytes(n0: int, n1: int, n2: int, itemsize: int, target_bytes: int) -> int:
    """The largest power of two of examples whose intermediates fit in ``target_bytes`` (at least 256)."""
    size = max(256, target_bytes // working_bytes_per_example(n0, n1, n2, itemsize))
    return 1 << (int(size).bit_length() - 1)


def default_executor(backend) -> str:
    """The fastest way this backend computes a chunk's gradients.

    On NumPy: the traced equations lowered to calls into buffers made once
    ("buffered", :mod:`backprop_core.buffered`).  On CuPy: the equations
    themselves until the traced equations lowered to kernels and cuBLAS
    ("kernels", :mod:`backprop_core.gpu_lowering`) have proven faster on a GPU,
    or when the environment asks for them (``gpu_lowering.ENVIRONMENT``).
    Elsewhere the equations, compiled by the backend where it can (jax.jit).
    """
    if is_numpy_namespace(backend.xp):
        return "buffered"
    if backend.fuses_kernels:  # the backends that run kernels made by this library: CuPy
        return gpu_lowering.cupy_executor()
    return "equations"


def executor_for(backend, output=SIGMOID, weighted: bool = False) -> str:
    """The executor for a fit.  The buffered lowering follows any traced graph, softmax
    outputs and weighted examples included (the fused kernel is planned apart)."""
    return default_executor(backend)


# -- the CPU: chunk size and threads from a calibration ---------------------------------
_calibrations: dict = {}


def _cpu_plan(backend, shape, dtype, activation, workers, executor, parallel, iterations, network) -> Plan:
    n0, n1, n2, m = shape
    working = m * working_bytes_per_example(n0, n1, n2, np.dtype(dtype).itemsize)
    if working < MIN_CALIBRATED_BYTES:
        return Plan("whole batch", executor=executor, chunk_size=m if executor != "equations" else None,
                    workers=1, reason=f"the step's {working / 2**10:,.0f} KiB of intermediates stay in cache: "
                                      "one pass")
    rates, start_s, step_s = {}, 0.0, 0.0
    if parallel != "processes":
        rates.update({(c, w, "threads"): r for (c, w), r in calibration(backend, n0, n1, n2, activation,
                                                                          dtype).items()})
    measured = None
    if network is not None and executor == "buffered":
        measured = process_calibration(backend, n0, n1, n2, activation, dtype)
    if measured is not None:
        rates.update({(c, w, "processes"): r for (c, w), r in measured.rates.items()})
        start_s, step_s = measured.start_seconds(m), measured.step_s
    choice = choose_chunking(rates, m, workers=workers, iterations=iterations, process_start_s=start_s,
                             process_step_s=step_s)
    if choice is None:
        return Plan("whole batch", executor=executor, chunk_size=m if executor != "equations" else None,
                    workers=1, reason="no calibrated chunking fits this m", measured=rates)
    (c, w, how), why = choice
    return Plan("chunks", executor=executor, chunk_size=c, workers=w, parallel=how, reason=why, measured=rates)


def step_seconds(key, rate: float, m: int, process_step_s: float = 0.0) -> float:
    """Seconds of one step over m examples by ``key = (chunk_size, workers, parallel)``, calibrated
    at ``rate`` examples/s.  Worker processes each take every workers-th chunk (the slowest
    finishes last) and pay ``process_step_s`` per step for their round trip."""
    c, w, how = key
    if how != "processes":
        return m / rate
    chunks = -(-m // c)
    slowest = -(-chunks // w)  # chunks of the process with the most
    return slowest * c * w / rate + process_step_s


def choose_chunking(rates: dict, m: int, *, workers=None, iterations=None, process_start_s: float = 0.0,
                    process_step_s: float = 0.0):
    """The fastest calibrated way to run ``iterations`` steps over m examples, and why:
    ``((chunk_size, workers, parallel), reason)``, or None when no candidate fits.

    ``rates``: examples/s by ``(chunk_size, workers, parallel)``, as measured
    (for processes, with their round trip not counted: :func:`step_seconds`
    adds ``process_step_s``).  A candidate fits when each of its workers has a
    chunk and it has the ``workers`` asked for (None: any).  Worker processes
    also cost ``process_start_s`` seconds once per fit (starting them, sharing
    the data), paid against ``iterations`` steps; with ``iterations=None`` (a
    benchmark's steady state) one step's time alone decides.  Processes must
    win by :data:`PROCESS_MARGIN`.
    """
    feasible = [key for key in rates if key[0] * key[1] <= m and (workers is None or key[1] == workers)]
    if not feasible:
        return None
    step = {key: step_seconds(key, rates[key], m, process_step_s) for key in feasible}

    def seconds(key):  # the fit's time, or a step's where the number of steps is unknown, as judged
        if key[2] != "processes":
            return step[key] if iterations is None else iterations * step[key]
        return (step[key] if iterations is None else iterations * step[key] + process_start_s) / PROCESS_MARGIN

    best = min(feasible, key=seconds)
    why = f"calibrated here: {m / step[best] / 1e6:.3g} M examples/s at this m"
    if best[2] == "processes":
        why += f" on {best[1]} processes, whose start takes {process_start_s:.2g} s" + (
            " (not counted: the number of iterations is unknown)" if iterations is None
            else f", repaid over {iterations:,} iterations")
    if best[1] > 1:  # against what fewer workers, or threads, reach
        alone = [step[k] for k in feasible if k[2] == "threads" and (k[1] == 1 or best[2] == "processes")]
        if alone:
            why += f" (best on {'one thread' if best[2] == 'threads' else 'threads'} {m / min(alone) / 1e6:.3g} M/s)"
    faster = [step[k] for k in feasible if k[2] == "processes" and step[k] < step[best]]
    if faster:
        why += (f"; processes would reach {m / min(faster) / 1e6:.3g} M/s, not enough to pay for "
                + ("their round trips" if iterations is None else
                   f"their start ({process_start_s:.2g} s) over {iterations:,} iterations"))
    return best, why


def calibration(backend, n0, n1, n2, activation, dtype, budget_s: float = 1.0) -> dict:
    """Examples/s of a chunked gradient pass on this machine, by (chunk size, threads).

    Measured once per (backend, shape, activation, dtype) in a process, on
    random data of the network's shape, within about ``budget_s`` seconds.
    """
    key = (backend.name, n0, n1, n2, activation.name, dtype)
    if key not in _calibrations:
        _calibrations[key] = _measure(backend, n0, n1, n2, activation, dtype, budget_s)
    return _calibrations[key]


def _candidates(n0, n1, n2, itemsize):
    per_example = working_bytes_per_example(n0, n1, n2, itemsize)
    sizes = [1 << k for k in range(8, 20) if (1 << k) * per_example <= MAX_CPU_CHUNK_BYTES]
    return sizes[-7:] or [256]


def _calibration_data(backend, n0, n1, n2, dtype, m):
    """Random X (n0, m), Y (n2, m) and parameters, on the backend."""
    from .initialization import initial_parameters_host

    rng = np.random.default_rng(0)
    X = backend.asarray(rng.standard_normal((n0, m)), dtype)
    Y = backend.asarray((rng.random((n2, m)) > 0.5).astype(np.float64), dtype)
    return X, Y, backend.parameters_from_host(initial_parameters_host(n0, n1, n2, "xavier", 0), dtype)


def _median_seconds(step) -> float:
    """Seconds of ``step()``: the median of three calls after one untimed (buffers, compilation,
    threads started).  The median, not the best: two threads are erratic where they contend for
    the GIL, and a lucky best would choose them where they mostly lose."""
    step()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return sorted(times)[1]


def _measure(backend, n0, n1, n2, activation, dtype, budget_s):
    threads = sorted({1, cpu_cores()})
    sizes = _candidates(n0, n1, n2, np.dtype(dtype).itemsize)
    X, Y, params = _calibration_data(backend, n0, n1, n2, dtype, sizes[-1] * threads[-1])
    executor = default_executor(backend)
    rates, start = {}, time.perf_counter()
    with backend.context():
        for w in threads:
            for c in sizes:
                if time.perf_counter() - start > budget_s:
                    break
                make = make_gradients(backend, executor, activation, (n0, n1, n2), dtype, c)
                chunked = ChunkedGradients(make, c, backend=backend, dtype=dtype, workers=w)
                m = c * w  # a chunk per thread
                Xm, Ym = X[:, :m], Y[:, :m]
                with chunked.running():
                    rates[(c, w)] = m / _median_seconds(lambda: chunked(params, Xm, Ym))
    log.debug("calibration of %d-%d-%d %s %s: %s", n0, n1, n2, activation.name, dtype,
              {k: f"{v / 1e6:.3g} M/s" for k, v in rates.items()})
    return rates


@dataclass(frozen=True)
class ProcessCalibration:
    """What worker processes measured on this machine.

    ``rates``: examples/s by (chunk size, processes), their round trip not
    counted; ``step_s``: the round trip, paid once per step (parameters out,
    sums back, the wait for the last worker); ``start_s``: starting and
    stopping them, and ``share_s_per_example``: copying an example's X and Y
    into shared memory, both paid once per fit.
    """

    rates: dict
    step_s: float
    start_s: float
    share_s_per_example: float

    def start_seconds(self, m: int) -> float:
        """What a fit over m examples pays once for its worker processes."""
        return self.start_s + m * self.share_s_per_example


_process_calibrations: dict = {}


def process_calibration(backend, n0, n1, n2, activation, dtype,
                        budget_s: float = PROCESS_CALIBRATION_S) -> ProcessCalibration | None:
    """Worker processes on this machine (one per core, :mod:`backprop_core.processes`), measured
    once per (backend, shape, activation, dtype) in a process; None where they cannot run."""
    key = (backend.name, n0, n1, n2, activation.name, dtype)
    if key not in _process_calibrations:
        _process_calibrations[key] = _measure_processes(backend, n0, n1, n2, activation, dtype, budget_s)
    return _process_calibrations[key]


def _measure_processes(backend, n0, n1, n2, activation, dtype, budget_s):
    count = cpu_cores()
    network = processes.Network.of((n0, n1, n2), activation, SIGMOID, False, dtype)
    if count < 2 or network is None or not processes.available():
        return None
    sizes = _candidates(n0, n1, n2, np.dtype(dtype).itemsize)
    m = sizes[-1] * count
    X, Y, params = _calibration_data(backend, n0, n1, n2, dtype, m)
    many, fixed = {}, []
    with backend.context(), one_blas_thread():
        t0 = time.perf_counter()
        workers = processes.WorkerProcesses(network, count)
        try:
            started = time.perf_counter()
            workers.share(X, Y)
            shared = time.perf_counter()
            for c in sizes:
                if time.perf_counter() - shared > budget_s:
                    break
                make = make_gradients(backend, "buffered", activation, (n0, n1, n2), dtype, c)
                # One step of a chunk per process (a + b) and one of n chunks each (a + n b):
                # b is a chunk's time, a what every step pays beside its chunks.
                n = m // (c * count)
                workers.split(c, m, make)
                many[c] = (_median_seconds(lambda: workers(params)), n)
                if n > 1:
                    workers.split(c, c * count, make)
                    fixed.append((n * _median_seconds(lambda: workers(params)) - many[c][0]) / (n - 1))
        finally:
            closing = time.perf_counter()
            workers.close()
            closed = time.perf_counter()
    step_s = max(0.0, float(np.median(fixed))) if fixed else 0.0
    rates = {(c, count): m / max(t - step_s, t / 2) for c, (t, n) in many.items()}  # t/2: noise ate it
    measured = ProcessCalibration(rates, step_s, (started - t0) + (closed - closing), (shared - started) / m)
    log.debug("calibration of %d-%d-%d %s %s on %d processes: %s; a step's round trip %.3g ms, their start "
              "%.3g s", n0, n1, n2, activation.name, dtype, count, {k: f"{v / 1e6:.3g} M/s" for k, v in rates.items()},
              1e3 * measured.step_s, measured.start_s)
    return measured


# -- from a plan to the strategy the loop runs ------------------------------------------
def make_gradients(backend, executor: str, activation, shape, dtype, columns: int, output=SIGMOID,
                   weighted: bool = False):
    """``make(with_cost)`` for :class:`ChunkedGradients` computing by ``executor``, on chunks of
    at most ``columns`` examples of an n0-n1-n2 network (``shape``)."""
    if executor == "equations":
        return make_equations_gradients(backend, activation, output, weighted)
    if executor == "buffered":
        return make_buffered_gradients(backend, activation, shape, dtype, columns, output, weighted)
    if executor == "kernels":
        return gpu_lowering.make_kernel_gradients(backend, activation, shape, dtype, columns, output, weighted)
    raise InvalidInputError(f"unknown executor {executor!r}")


def build(p: Plan, X, Y, parameters, activation, learning_rate, backend, dtype, seed=0, output=SIGMOID,
          weighted: bool = False, rule=None, state=None):
    """The strategy that runs plan ``p`` on X (n0, m) and Y (n2, m).

    A ``weighted`` fit's Y carries the weights as its last row (n2 + 1, m).
    ``rule``: the :class:`~backprop_core.optimizers.UpdateRule` (None: the lecture's
    gradient descent at ``learning_rate``) and ``state`` its optimizer's start state.
    """
    lecture = rule is None or rule.lecture
    if p.mode == "dask":
        from .dask_training import DaskFullBatch

        return DaskFullBatch(X, Y, parameters, activation, learning_rate, backend, output, weighted, rule, state)
    if p.mode == "mini-batch":
        return MiniBatch(X, Y, activation, learning_rate, backend, p.batch_size, seed, output, weighted, rule,
                         state)
    if p.executor == "fused":
        if not lecture:  # the planner does not choose it for such a fit (_fused_plan)
            raise InvalidInputError(f"the fused kernel updates by gradient descent only, not by {rule}")
        from .fused import FusedStep

        n1 = parameters["W1"].shape[0]
        step = FusedStep(X.shape[0], n1, Y.shape[0], activation, learning_rate, dtype, backend.device)
        return Fused(X, Y, step, backend)
    if p.chunk_size is None:
        return WholeBatch(X, Y, activation, learning_rate, backend, output, weighted, rule, state)
    n0, n2 = X.shape[0], parameters["W2"].shape[0]
    n1 = parameters["W1"].shape[0]
    # The kernels' whole-batch step fuses the lecture's update; another rule takes the same kernels'
    # gradients (one chunk of m) below and applies itself to them.
    if p.executor == "kernels" and p.mode == "whole batch" and lecture:  # replayed as a CUDA graph
        return gpu_lowering.KernelSteps(X, Y, (n0, n1, n2), activation, learning_rate, backend, dtype, output,
                                        weighted)
    make = make_gradients(backend, p.executor, activation, (n0, n1, n2), dtype, p.chunk_size, output, weighted)
    if p.parallel == "processes" and p.workers > 1:
        network = _process_network(backend, "processes", (n0, n1, n2), activation, output, weighted, dtype,
                                   X.shape[1], chunk_size=p.chunk_size, stream=p.streams, batch_size=None)
        gradients = processes.ProcessChunkedGradients(make, p.chunk_size, backend=backend, dtype=dtype,
                                                      workers=p.workers, network=network)
        return processes.ProcessChunked(X, Y, learning_rate, backend, gradients, rule, state)
    gradients = ChunkedGradients(make, p.chunk_size, backend=backend, dtype=dtype, workers=p.workers,
                                 stream=p.streams)
    return Chunked(X, Y, learning_rate, backend, gradients, rule, state)
