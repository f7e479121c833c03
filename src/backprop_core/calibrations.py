"""Measuring this machine: the timings the planner (:mod:`backprop_core.planner`) decides by.

Each calibration runs the actual network on random data of its shape, with BLAS
pinned as the plan it times would run, every candidate interleaved with the others
and read by one noise rule (:mod:`backprop_core.measuring`), and is measured once
per network, dtype and what else it depends on in a process (its cache here):

- :func:`calibration` (:func:`calibration_timings`): chunk sizes on one thread
  and on every core;
- :func:`process_calibration`: worker processes (:mod:`backprop_core.processes`),
  their round trip and their start, beside one thread's pass on a chunk;
- :func:`blas_calibration`: a one-pass step with BLAS on one thread and on every core;
- :func:`time_target`: a measured lowering target by its thread count, beside the
  plan it would replace, that plan built as a fit builds it (:mod:`backprop_core.building`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from . import building, measuring, processes
from .activations import get_activation
from .backends._base import cpu_cores
from .blas import one_blas_thread, switch
from .chunked import ChunkedGradients, working_bytes_per_example
from .equations import SIGMOID
from .lowering.target import Fit

log = logging.getLogger("backprop_core")

#: The largest intermediates one CPU chunk may hold (the calibration's candidates stop there):
#: on two threads, large chunks pay (fewer Python-level calls contend for the GIL).
MAX_CPU_CHUNK_BYTES = 64 << 20
#: Seconds the calibration of worker processes may take (beside the threads' own budget).
PROCESS_CALIBRATION_S = 1.0
#: Seconds a one-pass step's BLAS threads may be measured beyond the noise rule's samples.
BLAS_CALIBRATION_S = 0.3


# -- a measured lowering target, timed against the plan it would replace -------------------------------
#: The largest batch a target and the plan it would replace are timed on (examples).
MAX_TARGET_CALIBRATION = 1 << 20
#: Seconds the interleaved timing of the targets may go on past its first rounds, for more samples.
TARGET_CALIBRATION_S = 0.5
_target_timings: dict = {}


def time_target(target, fit: Fit, m, workers, fallback) -> tuple:
    """``(examples, {threads: Timing})``: the seconds ``target`` takes for ``examples`` examples by its
    thread count, and ``fallback``'s (a :class:`~backprop_core.planner.Plan`; key None), timed
    interleaved (:func:`measuring.time_interleaved`) on min(m, MAX_TARGET_CALIBRATION) examples,
    each sample right after an untimed step of its own (as in a fit); once per fit's shape, m,
    dtype and fallback in a process.
    The fallback runs with BLAS on its ``blas_threads`` (as :func:`~backprop_core.building.build` pins
    them): timed on the caller's threads instead, a busy machine's slow split products would count
    against it."""
    backend, shape, activation, dtype, output = fit.backend, fit.shape, fit.activation, fit.dtype, fit.output
    n0, n1, n2 = shape
    count = min(m, MAX_TARGET_CALIBRATION)
    key = (target.name, backend.name, shape, count, activation.name, output.name, dtype, workers, str(fallback))
    if key in _target_timings:
        examples, timings = _target_timings[key]
        return examples, dict(timings)
    X, Y, params = _calibration_data(backend, n0, n1, n2, dtype, count)
    threads = [workers] if workers else sorted({1, cpu_cores()})
    steps = {}
    for t in threads:
        step = target.compile(fit, 0.01, threads=t)
        Xt, Yt = step.prepare(backend.to_numpy(X)), step.prepare(backend.to_numpy(Y))
        steps[t] = partial(step, params, Xt, Yt, False)
    repeat = target_repeat(count)
    examples = count * repeat
    samples = {k: (lambda f: lambda: [f() for _ in range(repeat)])(f) for k, f in steps.items()}
    # Each sample follows one untimed step of its own candidate, as a fit's steps follow each other:
    # timed right after another candidate, the fused step's pool threads wake from sleep and its data
    # come back into cache.  That costs little (2-4-1, 2^16, 2 threads: 1.03x busy, 1.05x quiet in
    # bench/sample_order.py).  The 32-40% spreads the bench worker's plan at 2^16 measured came from the
    # pool's worker queued behind its caller on one core (the pool now pins its threads: cpu_source.POOL)
    # and, on a busy machine, from a core held by other work (bench/plan_cpu.py tells the two apart).
    warm = dict(steps)
    calibrated = fallback.measured.get((fallback.chunk_size, fallback.workers, fallback.parallel))
    if fallback.parallel == "processes" and calibrated:  # not started again: their calibrated rate
        timings = measuring.time_interleaved(samples, prepare=lambda k: warm[k](), budget_s=TARGET_CALIBRATION_S)
        timings[None] = Calibrated(examples / calibrated)
    else:
        strategy = building.build(fallback, X, Y, params, activation, 0.01, backend, dtype, output=output)
        warm[None] = partial(strategy.step, params, 0, False)
        samples[None] = lambda: [warm[None]() for _ in range(repeat)]
        with strategy.running():
            timings = measuring.time_interleaved(samples, prepare=lambda k: warm[k](), budget_s=TARGET_CALIBRATION_S)
    _target_timings[key] = (examples, timings)
    log.debug("%s on %s: %s", target.name, key,
              {k: f"{examples / t.median / 1e6:.3g} M/s" for k, t in timings.items()})
    return examples, dict(timings)


def target_repeat(count: int) -> int:
    """Steps of ``count`` examples in one sample of a target's timing: a sample of 65,536 examples, or of 64
    small steps."""
    return min(max(1, (1 << 16) // count), 64)


@dataclass(frozen=True)
class Calibrated:
    """A time known from the processes' calibration, without samples of its own to judge."""

    seconds: float

    @property
    def median(self) -> float:
        return self.seconds


# -- BLAS's threads ---------------------------------------------------------------------
_blas_calibrations: dict = {}


def blas_calibration(backend, shape, activation, dtype, m: int, executor: str) -> dict:
    """``{threads: Timing}`` of one pass over m examples (at most what fits in
    :data:`MAX_CPU_CHUNK_BYTES`) with BLAS on one thread and on every core,
    interleaved; measured once per network, m and executor in a process."""
    n0, n1, n2 = shape
    activation = get_activation(activation)
    m = min(m, max(256, MAX_CPU_CHUNK_BYTES // working_bytes_per_example(n0, n1, n2, np.dtype(dtype).itemsize)))
    key = (backend.name, n0, n1, n2, activation.name, dtype, m, executor)
    if key not in _blas_calibrations:
        X, Y, params = _calibration_data(backend, n0, n1, n2, dtype, m)
        gradients = building.make_gradients(backend, executor, activation, shape, dtype, m)(False)
        step = partial(gradients, params, X, Y, m)
        with backend.context(), one_blas_thread():  # the caller's threads come back at its end
            _blas_calibrations[key] = measuring.time_interleaved(
                {1: step, cpu_cores(): step}, prepare=switch, budget_s=BLAS_CALIBRATION_S)
    return _blas_calibrations[key]


# -- the CPU: chunk size and threads from a calibration ---------------------------------
_calibrations: dict = {}


def calibration(backend, n0, n1, n2, activation, dtype, budget_s: float = 1.0) -> dict:
    """Examples/s of a chunked gradient pass on this machine, by (chunk size, threads), from the
    median of the samples :func:`calibration_timings` holds.

    Measured once per (backend, shape, activation, dtype) in a process, on
    random data of the network's shape, with BLAS on one thread per worker:
    every candidate interleaved with the others
    (:func:`backprop_core.measuring.time_interleaved`), for at least
    :data:`~backprop_core.measuring.ROUNDS` samples each and more while
    ``budget_s`` seconds last.
    """
    key = (backend.name, n0, n1, n2, activation.name, dtype)
    if key not in _calibrations:
        _calibrations[key] = _measure(backend, n0, n1, n2, activation, dtype, budget_s)
    return _calibrations[key][0]


def calibration_timings(backend, n0, n1, n2, activation, dtype) -> dict:
    """The samples behind :func:`calibration`: a :class:`~backprop_core.measuring.Timing` by
    (chunk size, threads)."""
    calibration(backend, n0, n1, n2, activation, dtype)
    return _calibrations[(backend.name, n0, n1, n2, activation.name, dtype)][1]


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


def _measure(backend, n0, n1, n2, activation, dtype, budget_s):
    """``(rates, timings)`` by (chunk size, threads): every candidate alive at once, timed interleaved."""
    threads = sorted({1, cpu_cores()})
    sizes = _candidates(n0, n1, n2, np.dtype(dtype).itemsize)
    X, Y, params = _calibration_data(backend, n0, n1, n2, dtype, sizes[-1] * threads[-1])
    executor = building.default_executor(backend)
    steps = {}
    with contextlib.ExitStack() as alive:
        alive.enter_context(backend.context())
        alive.enter_context(one_blas_thread())  # as blas_plan pins a chunked fit: one per worker
        for w in threads:
            for c in sizes:
                make = building.make_gradients(backend, executor, activation, (n0, n1, n2), dtype, c)
                chunked = alive.enter_context(ChunkedGradients(make, c, backend=backend, dtype=dtype,
                                                               workers=w).running())
                m = c * w  # a chunk per thread
                steps[(c, w)] = partial(chunked, params, X[:, :m], Y[:, :m])
        timings = measuring.time_interleaved(steps, budget_s=budget_s)
    rates = {(c, w): c * w / t.median for (c, w), t in timings.items()}
    log.debug("calibration of %d-%d-%d %s %s: %s", n0, n1, n2, activation.name, dtype,
              {k: f"{v / 1e6:.3g} M/s (spread {timings[k].spread:.0%})" for k, v in rates.items()})
    return rates, timings


# -- worker processes: their rates, round trip and start --------------------------------
@dataclass(frozen=True)
class ProcessCalibration:
    """What worker processes measured on this machine.

    ``rates``: examples/s by (chunk size, processes), their round trip not
    counted; ``step_s``: the round trip, paid once per step (parameters out,
    sums back, the wait for the last worker); ``start_s``: starting and
    stopping them, and ``share_s_per_example``: copying an example's X and Y
    into shared memory, both paid once per fit.  ``timings``: the samples of
    each rate's step (:class:`~backprop_core.measuring.Timing`).
    ``reference``: the chunk size of one thread's pass timed in the same rounds
    as each rate's step, on one chunk (None: none was); ``references``: its
    samples, by the same keys as ``timings``.
    """

    rates: dict
    step_s: float
    start_s: float
    share_s_per_example: float
    timings: dict = field(default_factory=dict, compare=False)
    reference: int | None = None
    references: dict = field(default_factory=dict, compare=False)

    def start_seconds(self, m: int) -> float:
        """What a fit over m examples pays once for its worker processes."""
        return self.start_s + m * self.share_s_per_example


_process_calibrations: dict = {}


def process_calibration(backend, n0, n1, n2, activation, dtype, budget_s: float = PROCESS_CALIBRATION_S,
                        reference: int | None = None) -> ProcessCalibration | None:
    """Worker processes on this machine (one per core, :mod:`backprop_core.processes`), measured
    once per (backend, shape, activation, dtype, reference) in a process; None where they cannot run.

    ``reference``: a chunk size whose pass on one thread is timed in the same rounds as
    the processes (the safe plan :func:`~backprop_core.planner.choose_chunking` weighs them
    against), so that the noise rule can compare them round by round on a machine that other
    work shares."""
    key = (backend.name, n0, n1, n2, activation.name, dtype, reference)
    if key not in _process_calibrations:
        _process_calibrations[key] = _measure_processes(backend, n0, n1, n2, activation, dtype, budget_s, reference)
    return _process_calibrations[key]


def _measure_processes(backend, n0, n1, n2, activation, dtype, budget_s, reference=None):
    count = cpu_cores()
    network = processes.Network.of((n0, n1, n2), activation, SIGMOID, False, dtype)
    if count < 2 or network is None or not processes.available():
        return None
    sizes = _candidates(n0, n1, n2, np.dtype(dtype).itemsize)
    m = sizes[-1] * count
    X, Y, params = _calibration_data(backend, n0, n1, n2, dtype, m)
    many, fixed, references = {}, [], {}
    with contextlib.ExitStack() as alive:
        alive.enter_context(backend.context())
        alive.enter_context(one_blas_thread())
        alone = None
        t0 = time.perf_counter()
        workers = processes.WorkerProcesses(network, count)
        try:
            started = time.perf_counter()
            workers.share(X, Y)
            shared = time.perf_counter()
            if reference is not None:  # the safe plan's pass on one chunk, on any core, as a fit would run it
                make = building.make_gradients(backend, building.default_executor(backend), activation, (n0, n1, n2),
                                               dtype, reference)
                chunked = alive.enter_context(ChunkedGradients(make, reference, backend=backend, dtype=dtype).running())

                def one_thread():
                    with workers.unpinned():
                        chunked(params, X[:, :reference], Y[:, :reference])
                alone = one_thread
            for c in sizes:
                if time.perf_counter() - shared > budget_s:
                    break
                make = building.make_gradients(backend, processes.EXECUTOR, activation, (n0, n1, n2), dtype, c)
                # One step of a chunk per process (a + b) and one of n chunks each (a + n b):
                # b is a chunk's time, a what every step pays beside its chunks.  The workers hold
                # one split at a time, so each chunk size is timed apart from the others, in rounds
                # with the safe plan's pass (the reference) where one is given.
                n = m // (c * count)
                workers.split(c, m, make)
                timed = measuring.time_interleaved({c: partial(workers, params)} | ({} if alone is None
                                                                                     else {"alone": alone}))
                many[c] = (timed[c], n)
                if alone is not None:
                    references[(c, count)] = timed["alone"]
                if n > 1:
                    workers.split(c, c * count, make)
                    one = measuring.time_interleaved({c: partial(workers, params)})[c].median
                    fixed.append((n * one - many[c][0].median) / (n - 1))
        finally:
            closing = time.perf_counter()
            workers.close()
            closed = time.perf_counter()
    step_s = max(0.0, float(np.median(fixed))) if fixed else 0.0
    rates = {(c, count): m / max(t.median - step_s, t.median / 2) for c, (t, n) in many.items()}  # t/2: noise ate it
    timings = {(c, count): t for c, (t, n) in many.items()}
    measured = ProcessCalibration(rates, step_s, (started - t0) + (closed - closing), (shared - started) / m, timings,
                                  reference if references else None, references)
    log.debug("calibration of %d-%d-%d %s %s on %d processes: %s; a step's round trip %.3g ms, their start "
              "%.3g s", n0, n1, n2, activation.name, dtype, count, {k: f"{v / 1e6:.3g} M/s" for k, v in rates.items()},
              1e3 * measured.step_s, measured.start_s)
    return measured
