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

What computes the step is asked of the lowering targets
(:mod:`backprop_core.lowering`), never named here: the first executor that
applies computes the chunks (:func:`_executor`); a target the ``fused`` option
asks for runs where it applies (:func:`_asked_plan`); the measured targets (the
fused step in C on the CPU) are timed in turns with the plan just made, the
faster runs, and the plan's reason says why a target did not (:func:`_target_plan`).

The candidates, targets included, are timed interleaved and read by one noise
rule (:mod:`backprop_core.measuring`): the safe plan stays unless another is
measured faster beyond a margin, and stable, or faster in every round it was
timed in beside the safe plan (a busy machine's samples spread, but alike).
Every plan also says how many threads BLAS runs on (:func:`blas_plan`), which
the strategy :func:`build` makes holds while it runs: :func:`build` is the one
place a fit's BLAS threads are pinned, for every plan kind (its docstring says
where each path pins).
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
from array_api_compat import is_array_api_strict_namespace, is_numpy_namespace

from . import lowering, measuring, processes
from .activations import get_activation
from .backends._base import cpu_cores
from .blas import blas_threads, one_blas_thread, switch
from .chunked import MAX_BLOCKS, ChunkedGradients, cap_workers, working_bytes_per_example
from .equations import SIGMOID, get_output
from .errors import InvalidInputError
from .execution import FIELDS as EXECUTION_FIELDS
from .execution import Execution
from .lowering.target import ASKED, EXECUTOR, MEASURED, Fit
from .optimizers import beyond_lecture
from .strategies import Chunked, Lowered, MiniBatch, WholeBatch, make_equations_gradients

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
#: A one-pass step whose largest product has fewer multiply-adds than this runs BLAS on one
#: thread without measuring: OpenBLAS splits products from about 2.6e5 multiply-adds up, and
#: below this the split gains little on a quiet machine and loses much on a busy one.
ONE_THREAD_MACS = 1 << 22
#: Seconds a one-pass step's BLAS threads may be measured beyond the noise rule's samples.
BLAS_CALIBRATION_S = 0.3


@dataclass(frozen=True)
class Plan:
    """How a fit runs.

    ``mode``: "whole batch", "chunks", "streamed chunks", "mini-batch" or "dask".
    ``executor``: what computes a chunk's gradients: "equations" (the
    equations array by array, compiled by the backend where it can: jax.jit) or
    another lowering of the traced equations.  ``workers`` share the chunks,
    as threads or, with ``parallel="processes"``, as processes (the calling
    one and ``workers - 1`` others).  ``blas_threads``: the threads BLAS
    runs on while the fit runs (one per worker for chunks; None: as the
    caller left it, where BLAS is not the library's: a GPU, Dask, torch, jax).
    ``reason`` says why.  ``timings``: what the calibration measured, by
    candidate (:class:`backprop_core.measuring.Timing`).
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
    blas_threads: int | None = None
    timings: dict = field(default_factory=dict, compare=False, repr=False)

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
        if self.blas_threads is not None:
            parts.append(f"BLAS on {self.blas_threads} thread{'s' if self.blas_threads > 1 else ''}")
        return ", ".join(parts) + (f" ({self.reason})" if self.reason else "")


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{what} must be a positive integer, got {value!r}")
    return int(value)


def plan(backend, shape, dtype: str, activation, execution: Execution | None = None, **options) -> Plan:
    """The plan for training an n0-n1-n2 network on m examples: ``shape = (n0, n1, n2, m)``.

    ``activation``: an :class:`~backprop_core.activations.Activation` or its name.
    ``execution``: how the fit may run (:class:`~backprop_core.execution.Execution`,
    checked when it was made; None: the defaults); a fit passes the one it read as
    it started.  Its settings may also be given one by one among ``options``
    (``plan(..., chunk_size=1024)``, as benchmarks and tests do), which replace
    the execution's.  Read here:
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
    on backends that can (:mod:`backprop_core.lowering.cuda_fused`); "auto" uses it where it
    has been measured to pay.  ``host_data``: the data are NumPy arrays on the
    host (only those can be streamed).  ``output``, ``weighted``: the output
    layer, and whether examples carry weights (each target says whether it runs
    them: :mod:`backprop_core.lowering`).  ``early_stopping``: held-out data are scored at the
    cost reads.  ``rule``: the fit's :class:`~backprop_core.optimizers.UpdateRule`
    (None: the lecture's gradient descent); the fused targets compute only the lecture's.
    BLAS's threads: :func:`blas_plan`.
    """
    settings = {name: options.pop(name) for name in EXECUTION_FIELDS if name in options}
    execution = (execution or Execution()).replace(**settings)
    p = _mode_plan(backend, shape, dtype, activation, **execution.plan_options(), **options)
    threads, why = blas_plan(p, backend, shape, dtype, activation)
    if threads is None:
        return p
    p = replace(p, blas_threads=threads, reason=f"{p.reason}; BLAS on {threads}: {why}")
    log.debug("plan: %s", p)
    return p


def _mode_plan(backend, shape, dtype: str, activation, *, chunk_size="auto", workers=None, stream="auto",
               batch_size=None, epochs=None, fused="auto", host_data: bool = False, output=SIGMOID,
               weighted: bool = False, early_stopping: bool = False, parallel="auto", iterations=None,
               rule=None) -> Plan:
    """:func:`plan` but BLAS's threads."""
    n0, n1, n2, m = shape
    activation = get_activation(activation)
    if workers is not None:  # checked by the Execution: a positive integer
        workers = cap_workers(workers)
    if iterations is not None:
        iterations = _positive_int(iterations, "iterations")
    network = _process_network(backend, parallel, (n0, n1, n2), activation, output, weighted, dtype, m,
                               chunk_size=chunk_size, stream=stream, batch_size=batch_size)
    if chunk_size not in (None, "auto"):  # a chunk holds at most the whole batch
        chunk_size = min(chunk_size, m)
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

    fit = Fit(backend, (n0, n1, n2), activation, dtype, get_output(output), weighted, rule)
    asked_plan = _asked_plan(fit, fused, explicit=isinstance(chunk_size, int) or stream is True,
                             fits=fits or not host_data)
    if asked_plan is not None:
        return _logged(asked_plan)

    if stream is True and not host_data:
        raise InvalidInputError("only NumPy arrays on the host can be streamed through a device")
    if stream is True or (stream == "auto" and host_data and backend.on_gpu and not fits):
        size = chunk_size if isinstance(chunk_size, int) else chunk_size_for_bytes(
            n0, n1, n2, itemsize, _gpu_chunk_bytes(backend))
        why = "stream=True" if stream is True else \
            f"the data need {need / 2**30:.1f} GiB, more than half the device's free memory"
        return _logged(Plan("streamed chunks", chunk_size=size, workers=workers or 1, reason=why))

    executor = _executor(fit)
    if isinstance(chunk_size, int):
        chunks = -(-m // chunk_size)
        return _logged(Plan("chunks", executor=executor, chunk_size=chunk_size,
                            workers=cap_workers(workers, chunks) if workers else min(backend.default_workers, chunks),
                            parallel="processes" if parallel == "processes" else "threads",
                            reason="chunk_size was given"))
    if chunk_size is None or not backend.chunks_by_default:
        if executor == "equations":
            fallback = Plan("whole batch", reason="chunk_size=None" if chunk_size is None
                            else f"the {backend.name} backend runs best on the whole batch")
        else:
            fallback = Plan("whole batch", executor=executor, chunk_size=m, reason="chunk_size=None"
                            if chunk_size is None else f"the {backend.name} backend runs best on the whole batch")
    else:
        fallback = _cpu_plan(backend, shape, dtype, activation, workers, executor, parallel, iterations, network)
    if parallel == "processes" or stream is True:
        return _logged(fallback)
    return _logged(_target_plan(fit, m, workers, fallback))


def _process_network(backend, parallel, shape, activation, output, weighted, dtype, m, *, chunk_size, stream,
                     batch_size):
    """The network as worker processes rebuild it, where processes may run this fit over m
    examples; None where they may not.  Refuses, by name, what makes parallel="processes"
    impossible."""
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


def _asked_plan(fit: Fit, fused, explicit: bool, *, fits: bool) -> Plan | None:
    """The plan of a target the ``fused`` option asks for (``ASKED``: the fused CUDA kernel) where it
    applies; None to plan otherwise."""
    if not fused:
        return None
    if not fit.backend.fuses_kernels:  # what the option is about: kernels this library compiles
        if fused is True:
            raise InvalidInputError(f"fused=True needs a backend that compiles fused kernels (cupy), "
                                    f"not {fit.backend.name!r}")
        return None
    if fused is True and explicit:
        raise InvalidInputError("the fused kernel runs the whole batch on the device: "
                                "chunk_size and stream=True do not apply with fused=True")
    whys = []
    for target in lowering.TARGETS:
        if target.chosen != ASKED:
            continue
        use, why = target.applies(fit)
        if use and fused == "auto" and not target.proven():
            use, why = False, "fused='auto' waits for GPU measurements; pass fused=True to use it now"
        if use and not fits:
            use, why = False, "the data do not fit on the device: chunks are streamed instead"
        if use and not explicit:
            return Plan("whole batch", executor=target.name, reason=why)
        whys.append(why)
    if fused is True:
        warnings.warn(f"fused=True: {'; '.join(whys)}", stacklevel=5)
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


def _executor(fit: Fit) -> str:
    """The name of what computes a fit's chunks: the first executor target that applies
    (:mod:`backprop_core.lowering`: NumPy's buffered step; CuPy's kernels once proven or asked
    for), else "equations", the equations compiled by the backend where it can (jax.jit)."""
    for target in lowering.TARGETS:
        if target.chosen == EXECUTOR and target.applies(fit)[0]:
            return target.name
    return "equations"


def default_executor(backend) -> str:
    """The fastest way this backend computes a chunk's gradients (:func:`_executor` of any fit on it)."""
    return _executor(Fit(backend))


# -- the lowering targets: asked whether they apply, timed against the plan they would replace ----------
#: The largest batch a target and the plan it would replace are timed on (examples).
MAX_TARGET_CALIBRATION = 1 << 20
#: Seconds the interleaved timing of the targets may go on past its first rounds, for more samples.
TARGET_CALIBRATION_S = 0.5
_target_timings: dict = {}


def _target_plan(fit: Fit, m: int, workers, fallback: Plan) -> Plan:
    """The fastest of ``fallback`` and the MEASURED lowering targets that apply to this fit
    (:mod:`backprop_core.lowering`), each timed on this machine, interleaved with the fallback, on the
    fit's m up to :data:`MAX_TARGET_CALIBRATION` examples.  Why a target does not run is added to the
    plan's reason; a target that fuses the update applies only the lecture's rule (``fit.rule``)."""
    notes, best, best_rate, fallback_rate = [], fallback, None, None
    timed = None  # the fallback as it would run: BLAS on the threads blas_plan gives it, not the caller's
    for target in lowering.TARGETS:
        if target.chosen != MEASURED:
            continue
        applies, why = target.applies(fit)
        if not applies:
            notes.append(f"{target.name}: {why}")
            continue
        try:
            if timed is None:
                threads, _ = blas_plan(fallback, fit.backend, (*fit.shape, m), fit.dtype, fit.activation)
                timed = replace(fallback, blas_threads=threads)
            examples, timings = _time_target(target, fit, m, workers, timed)
        except lowering.BuildError as exc:
            notes.append(f"{target.name}: {str(exc).splitlines()[0]}")
            continue
        except Exception as exc:  # noqa: BLE001 - a step that fails here fails again in the loop, which says so
            notes.append(f"{target.name}: not timed ({type(exc).__name__}: {str(exc)[:100]})")
            continue
        fallback_timing = timings.pop(None)
        threads, on_threads = target_threads(timings)
        timing = timings[threads]
        rate, fallback_rate = examples / timing.median, examples / fallback_timing.median
        faster, verdict = target_replaces(timing, fallback_timing)
        by_threads = ", ".join(f"{t}: {examples / s.median / 1e6:.3g} M/s (spread {s.spread:.0%})"
                               for t, s in sorted(timings.items()))
        if faster and rate > (best_rate or 0.0):
            best_rate = rate
            best = Plan("whole batch", executor=target.name, workers=threads,
                        reason=f"{why}; measured here {rate / 1e6:.3g} M examples/s on {threads} thread(s) "
                               f"({on_threads}; by threads {by_threads}), against {fallback_rate / 1e6:.3g} M/s "
                               f"for {fallback.mode} by {fallback.executor}: {verdict}",
                        measured={k: examples / t.median for k, t in timings.items()})
        else:
            notes.append(f"{target.name}: measured {rate / 1e6:.3g} M/s on {threads} thread(s) ({on_threads}; by "
                         f"threads {by_threads}) against {fallback_rate / 1e6:.3g} M/s here, kept the plan: "
                         f"{verdict}")
    if best is fallback and notes:
        best = replace(fallback, reason="; ".join([fallback.reason, *notes]) if fallback.reason else "; ".join(notes))
    return best


def _time_target(target, fit: Fit, m, workers, fallback: Plan) -> tuple:
    """``(examples, {threads: Timing})``: the seconds ``target`` takes for ``examples`` examples by its
    thread count, and ``fallback``'s (key None), timed interleaved (:func:`measuring.time_interleaved`) on
    min(m, MAX_TARGET_CALIBRATION) examples, each sample right after an untimed step of its own (as in
    a fit); once per fit's shape, m, dtype and fallback in a process.
    The fallback runs with BLAS on its ``blas_threads`` (as :func:`build` pins them): timed on the
    caller's threads instead, a busy machine's slow split products would count against it."""
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
        timings[None] = _Calibrated(examples / calibrated)
    else:
        strategy = build(fallback, X, Y, params, activation, 0.01, backend, dtype, output=output)
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


def target_threads(timings: dict) -> tuple[int, str]:
    """``(threads, why)``: the thread count a target runs on, from its timings by thread count
    (``{threads: Timing}``), by the noise rule (:func:`measuring.replaces`) as among chunk plans.

    The fewest threads are the safe choice: no pool thread to wake, no second core to wait for,
    which a busy machine may not give.  More threads replace them only where measured faster
    beyond the margin, both stable; of those, the fastest.  So a pool measured unstable leaves
    the target on one thread, where that was measured stable, instead of taking the whole
    target down with it (the bench worker's plan at 2-4-1, 2^16 kept processes at 163 M/s so).
    """
    safe = min(timings)
    best, why = safe, "the one count timed" if len(timings) == 1 else ""
    refused = []
    for threads in sorted(timings):
        if threads == safe:
            continue
        ok, rule = measuring.replaces(timings[threads], timings[safe])
        if not ok and timings[threads].median >= timings[safe].median:  # not "a tie": slower
            rule = f"{timings[safe].median / timings[threads].median:.2f}x as fast"
        if ok and timings[threads].pessimistic < timings[best].pessimistic:
            best, why = threads, f"{threads} threads against {safe}: {rule}"
        elif not ok:
            refused.append(f"{threads} against {safe}: {rule}")
    if best == safe and refused:
        why = f"kept {safe}: " + "; ".join(refused)
    return best, why


def target_replaces(timing, fallback_timing) -> tuple[bool, str]:
    """The noise rule (:func:`measuring.replaces`) for a target's timing against its fallback's.

    The fallback may be worker processes, known by a :class:`_Calibrated` time
    (not started again).  That time is a prediction, and an optimistic one (a
    busy machine, a fresh process's first steps), which is why processes must
    beat threads by more than 1 - :data:`PROCESS_MARGIN`; against a target that
    runs in this process they are the risky choice too, so the target, measured
    stable, is the safe one, and the processes stay only if predicted faster than
    it by that same margin.
    """
    if not isinstance(fallback_timing, _Calibrated):
        return measuring.replaces(timing, fallback_timing)
    if not timing.stable:
        return measuring.replaces(timing, None, safe_s=fallback_timing.seconds)  # says it is unstable
    stay, _ = measuring.replaces(None, timing, candidate_s=fallback_timing.seconds, margin=1.0 - PROCESS_MARGIN)
    ratio = timing.median / fallback_timing.seconds
    if stay:
        return False, (f"worker processes are predicted {ratio:.2f}x faster, beyond the "
                       f"{1.0 - PROCESS_MARGIN:.0%} margin processes must win by")
    return True, (f"worker processes are predicted {ratio:.2f}x as fast, not faster by the "
                  f"{1.0 - PROCESS_MARGIN:.0%} margin processes must win by; measured stable")


@dataclass(frozen=True)
class _Calibrated:
    """A time known from the processes' calibration, without samples of its own to judge."""

    seconds: float

    @property
    def median(self) -> float:
        return self.seconds


# -- BLAS's threads ---------------------------------------------------------------------
def _numpy_blas(backend) -> bool:
    """Does this backend compute with NumPy's BLAS on the host (numpy, array-api-strict)?"""
    xp = backend.xp
    return not backend.on_gpu and not backend.distributed and (
        is_numpy_namespace(xp) or is_array_api_strict_namespace(xp))


def blas_plan(p: Plan, backend, shape, dtype, activation) -> tuple:
    """``(threads, why)``: how many threads BLAS runs on for plan ``p``, or (None, "") where BLAS is
    not NumPy's (a GPU, Dask, torch and jax thread their own).

    The rule: chunks run one BLAS thread per worker (the workers are the
    threads); a one-pass step (the whole batch, a mini-batch, or chunks of
    which m makes one) runs one thread where its largest product has fewer
    than :data:`ONE_THREAD_MACS` multiply-adds, and otherwise every core only
    where that was measured faster under the noise rule
    (:mod:`backprop_core.measuring`).  Who holds the threads decided here:
    :func:`build`, and only it (see there).
    """
    target = lowering.find(p.executor)
    if not _numpy_blas(backend) or (target is not None and not target.blas):
        return None, ""  # the target's step computes without NumPy's BLAS
    if p.mode in ("chunks", "streamed chunks") and p.chunk_size is not None and p.chunk_size < shape[3]:
        return 1, f"one for each of the {p.workers} {p.parallel}" if p.workers > 1 else "one worker"
    n0, n1, n2, m = shape
    if p.mode == "mini-batch":
        m = min(m, p.batch_size)
    macs = n1 * max(n0, n2) * m
    cores = cpu_cores()
    if cores < 2 or macs < ONE_THREAD_MACS:
        return 1, f"the largest product has {macs:.3g} multiply-adds, too few to split"
    executor = "equations" if p.chunk_size is None else p.executor
    timings = blas_calibration(backend, (n0, n1, n2), activation, dtype, m, executor)
    faster, why = measuring.replaces(timings[cores], timings[1])
    return (cores, f"{cores} threads measured {why}") if faster else (1, f"{cores} threads: {why}")


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
        gradients = make_gradients(backend, executor, activation, shape, dtype, m)(False)
        step = partial(gradients, params, X, Y, m)
        with backend.context(), one_blas_thread():  # the caller's threads come back at its end
            _blas_calibrations[key] = measuring.time_interleaved(
                {1: step, cpu_cores(): step}, prepare=switch, budget_s=BLAS_CALIBRATION_S)
    return _blas_calibrations[key]


# -- the CPU: chunk size and threads from a calibration ---------------------------------
_calibrations: dict = {}


def _cpu_plan(backend, shape, dtype, activation, workers, executor, parallel, iterations, network) -> Plan:
    n0, n1, n2, m = shape
    working = m * working_bytes_per_example(n0, n1, n2, np.dtype(dtype).itemsize)
    if working < MIN_CALIBRATED_BYTES:
        return Plan("whole batch", executor=executor, chunk_size=m if executor != "equations" else None,
                    workers=1, reason=f"the step's {working / 2**10:,.0f} KiB of intermediates stay in cache: "
                                      "one pass")
    rates, timings, start_s, step_s = {}, {}, 0.0, 0.0
    if parallel != "processes":
        rates.update({(c, w, "threads"): r for (c, w), r in calibration(backend, n0, n1, n2, activation,
                                                                          dtype).items()})
        timings.update({(c, w, "threads"): t for (c, w), t in calibration_timings(backend, n0, n1, n2, activation,
                                                                                    dtype).items()})
    measured, references = None, {}
    if network is not None and executor == processes.EXECUTOR:
        measured = process_calibration(backend, n0, n1, n2, activation, dtype, reference=reference_chunk(rates, m))
    if measured is not None:
        rates.update({(c, w, "processes"): r for (c, w), r in measured.rates.items()})
        timings.update({(c, w, "processes"): t for (c, w), t in measured.timings.items()})
        start_s, step_s = measured.start_seconds(m), measured.step_s
        references = process_references(measured)
    choice = choose_chunking(rates, m, workers=workers, iterations=iterations, process_start_s=start_s,
                             process_step_s=step_s, timings=timings, references=references)
    if choice is None:
        return Plan("whole batch", executor=executor, chunk_size=m if executor != "equations" else None,
                    workers=1, reason="no calibrated chunking fits this m", measured=rates, timings=timings)
    (c, w, how), why = choice
    return Plan("chunks", executor=executor, chunk_size=c, workers=w, parallel=how, reason=why, measured=rates,
                timings=timings)


def reference_chunk(rates: dict, m: int) -> int | None:
    """The chunk size of the fastest one-thread pass of ``rates`` (the chunk calibration's, by
    ``(chunk_size, workers, "threads")``) that fits in m: the pass worker processes are timed beside."""
    alone = [c for (c, w, how) in rates if w == 1 and how == "threads" and c <= m]
    return max(alone, key=lambda c: rates[(c, 1, "threads")]) if alone else None


def process_references(measured) -> dict:
    """``references`` for :func:`choose_chunking` from a :class:`ProcessCalibration`: each process
    candidate's reference pass, its timing in the same rounds, and the pass's rate."""
    return {(c, w, "processes"): ((measured.reference, 1, "threads"), t, measured.reference / t.median)
            for (c, w), t in measured.references.items()}


def step_seconds(key, rate: float, m: int, process_step_s: float = 0.0) -> float:
    """Seconds of one step over m examples by ``key = (chunk_size, workers, parallel)``, calibrated
    at ``rate`` examples/s.  Worker processes take blocks of chunks as they free up
    (:func:`~backprop_core.chunked.block_bounds`): on cores of their own, the one that takes the
    last block finishes last; and they pay ``process_step_s`` per step for their round trip."""
    c, w, how = key
    if how != "processes":
        return m / rate
    chunks = -(-m // c)
    blocks = min(chunks, MAX_BLOCKS)
    slowest = -(-blocks // w) * chunks / blocks  # chunks of the process with the most blocks
    return slowest * c * w / rate + process_step_s


def choose_chunking(rates: dict, m: int, *, workers=None, iterations=None, process_start_s: float = 0.0,
                    process_step_s: float = 0.0, timings=None, references=None):
    """The fastest calibrated way to run ``iterations`` steps over m examples, and why:
    ``((chunk_size, workers, parallel), reason)``, or None when no candidate fits.

    ``rates``: examples/s by ``(chunk_size, workers, parallel)``, as measured
    (for processes, with their round trip not counted: :func:`step_seconds`
    adds ``process_step_s``).  A candidate fits when each of its workers has a
    chunk and it has the ``workers`` asked for (None: any).  Worker processes
    also cost ``process_start_s`` seconds once per fit (starting them, sharing
    the data), paid against ``iterations`` steps; with ``iterations=None`` (a
    benchmark's steady state) one step's time alone decides.

    The noise rule (:mod:`backprop_core.measuring`) decides: the safe choice is
    the fastest candidate on one worker; another replaces it only if it is
    faster by more than :data:`~backprop_core.measuring.MARGIN` (processes: by
    more than 1 - :data:`PROCESS_MARGIN`) and, where ``timings`` (a
    :class:`~backprop_core.measuring.Timing` by candidate) are given, both
    were measured stable, or the candidate dominated the safe choice round by
    round (:func:`~backprop_core.measuring.dominates`).  Of those that qualify,
    the one fastest after its margin wins.

    ``references``: for a candidate timed apart from the safe choice (worker
    processes, which hold one split at a time), ``(safe key, Timing, rate)`` of
    the safe choice timed again in the same rounds, at ``rate`` examples/s.
    Where its key is the safe choice's, the candidate's time is the safe
    choice's times the ratio measured in those rounds (a busy moment slows
    both alike, and cancels), and it is judged against those samples.
    """
    feasible = [key for key in rates if key[0] * key[1] <= m and (workers is None or key[1] == workers)]
    if not feasible:
        return None
    step = {key: step_seconds(key, rates[key], m, process_step_s) for key in feasible}

    def seconds(key):  # the fit's time, or a step's where the number of steps is unknown
        start = process_start_s if key[2] == "processes" and iterations is not None else 0.0
        return step[key] if iterations is None else iterations * step[key] + start

    def margin(key):
        return 0.0 if key == safe else (1.0 - PROCESS_MARGIN) if key[2] == "processes" else measuring.MARGIN

    alone = [k for k in feasible if k[1] == 1]
    safe = min(alone or feasible, key=seconds)
    # a reference is a one-worker pass, so only a safe choice of one worker has any, and the
    # processes' times they rescale never move which one-worker candidate is the safe choice
    references = {k: (t, r) for k, (ref, t, r) in (references or {}).items() if k in step and ref == safe}
    for key, (_, rate) in references.items():
        step[key] *= step[safe] / (m / rate)
    timings = timings or {}
    qualified, refused, rules = [safe], [], {}
    for key in feasible:
        if key == safe:
            continue
        versus = references[key][0] if key in references else timings.get(safe)
        ok, rule = measuring.replaces(timings.get(key), versus, candidate_s=seconds(key),
                                      safe_s=seconds(safe), margin=margin(key))
        if ok:
            qualified.append(key)
            rules[key] = rule
        else:
            refused.append((key, rule))
    best = min(qualified, key=lambda k: seconds(k) / (1.0 - margin(k)))
    why = f"calibrated here: {m / step[best] / 1e6:.3g} M examples/s at this m"
    if best[2] == "processes":
        why += f" on {best[1]} processes, whose start takes {process_start_s:.2g} s" + (
            " (not counted: the number of iterations is unknown)" if iterations is None
            else f", repaid over {iterations:,} iterations")
    if best[1] > 1:  # against what fewer workers, or threads, reach
        alone = [step[k] for k in feasible if k[2] == "threads" and (k[1] == 1 or best[2] == "processes")]
        if alone:
            why += f" (best on {'one thread' if best[2] == 'threads' else 'threads'} {m / min(alone) / 1e6:.3g} M/s)"
    def judged_stable(key):  # both sides, as measuring.replaces judged them (a time without samples is not judged)
        versus = references[key][0] if key in references else timings.get(safe)
        return all(t is None or t.stable for t in (timings.get(key), versus))

    faster = [k for k in feasible if k[2] == "processes" and step[k] < step[best]]
    if faster and best[2] != "processes" and all(judged_stable(k) for k in faster):
        why += (f"; processes would reach {m / min(step[k] for k in faster) / 1e6:.3g} M/s, not enough to pay for "
                + ("their round trips" if iterations is None else
                   f"their start ({process_start_s:.2g} s) over {iterations:,} iterations"))
    if best != safe:
        on = "one thread" if safe[1] == 1 else f"{safe[1]} {safe[2]}"
        why += f"; against chunks of {safe[0]:,} on {on}: {rules[best]}"

    unstable = [(k, rule) for k, rule in refused if seconds(k) < seconds(best) and not judged_stable(k)]
    if unstable:
        (c, w, how), rule = min(unstable, key=lambda kr: seconds(kr[0]))
        why += f"; the noise rule kept it over chunks of {c:,} on {w} {how}: {rule}"
    return best, why


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
    executor = default_executor(backend)
    steps = {}
    with contextlib.ExitStack() as alive:
        alive.enter_context(backend.context())
        alive.enter_context(one_blas_thread())  # as blas_plan pins a chunked fit: one per worker
        for w in threads:
            for c in sizes:
                make = make_gradients(backend, executor, activation, (n0, n1, n2), dtype, c)
                chunked = alive.enter_context(ChunkedGradients(make, c, backend=backend, dtype=dtype,
                                                               workers=w).running())
                m = c * w  # a chunk per thread
                steps[(c, w)] = partial(chunked, params, X[:, :m], Y[:, :m])
        timings = measuring.time_interleaved(steps, budget_s=budget_s)
    rates = {(c, w): c * w / t.median for (c, w), t in timings.items()}
    log.debug("calibration of %d-%d-%d %s %s: %s", n0, n1, n2, activation.name, dtype,
              {k: f"{v / 1e6:.3g} M/s (spread {timings[k].spread:.0%})" for k, v in rates.items()})
    return rates, timings


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
    the processes (the safe plan :func:`choose_chunking` weighs them against), so that
    the noise rule can compare them round by round on a machine that other work shares."""
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
                make = make_gradients(backend, default_executor(backend), activation, (n0, n1, n2), dtype, reference)
                chunked = alive.enter_context(ChunkedGradients(make, reference, backend=backend, dtype=dtype).running())

                def one_thread():
                    with workers.unpinned():
                        chunked(params, X[:, :reference], Y[:, :reference])
                alone = one_thread
            for c in sizes:
                if time.perf_counter() - shared > budget_s:
                    break
                make = make_gradients(backend, processes.EXECUTOR, activation, (n0, n1, n2), dtype, c)
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


# -- from a plan to the strategy the loop runs ------------------------------------------
def make_gradients(backend, executor: str, activation, shape, dtype, columns: int, output=SIGMOID,
                   weighted: bool = False):
    """``make(with_cost)`` for :class:`ChunkedGradients` computing by ``executor`` (an executor target's
    name, or "equations"), on chunks of at most ``columns`` examples of an n0-n1-n2 network (``shape``)."""
    if executor == "equations":
        return make_equations_gradients(backend, activation, output, weighted)
    target = lowering.find(executor)
    if target is None or target.gradients is None:
        raise InvalidInputError(f"unknown executor {executor!r}")
    return target.gradients(Fit(backend, shape, get_activation(activation), dtype, get_output(output), weighted),
                            columns)


def build(p: Plan, X, Y, parameters, activation, learning_rate, backend, dtype, seed=0, output=SIGMOID,
          weighted: bool = False, rule=None, state=None):
    """The strategy that runs plan ``p`` on X (n0, m) and Y (n2, m), BLAS on ``p.blas_threads``
    while it runs (the caller's setting restored after).

    Where each path's BLAS threads are pinned: here, once, for every plan kind (the whole
    batch by the equations or a lowered step, chunks on threads or in the calling process
    of several, one chunk of m, mini-batches): the strategy's ``running()`` enters
    :func:`~backprop_core.blas.blas_threads` (``p.blas_threads``) before the strategy's own
    context, and leaves it however the run ends (an exception, Ctrl-C), which gives the
    caller's setting back.  Nothing inside pins again (:class:`ChunkedGradients` does not), so
    the plan's number is what runs.  Two other places pin, outside a fit's strategy: worker
    processes pin one thread each for their life (:mod:`backprop_core.processes`, as
    :func:`blas_plan` plans processes), and the calibrations pin as the plan they time would
    run.  ``p.blas_threads`` None (a GPU, Dask, torch, jax, the fused CPU step's own threads)
    leaves the caller's setting as it is.

    A ``weighted`` fit's Y carries the weights as its last row (n2 + 1, m).
    ``rule``: the :class:`~backprop_core.optimizers.UpdateRule` (None: the lecture's
    gradient descent at ``learning_rate``) and ``state`` its optimizer's start state.
    NumPy data are laid out once, here, as the step's products run fastest
    (:func:`row_major`).
    """
    if not p.streams and p.parallel != "processes":  # streamed chunks, and processes' shared copy, are cut as they go
        X = row_major(X)
    return _pinned(_strategy(p, X, Y, parameters, activation, learning_rate, backend, dtype, seed, output,
                             weighted, rule, state), p.blas_threads)


def row_major(X):
    """X (n0, m) with each feature's m values contiguous, copied once if it is a NumPy array laid out
    otherwise.  A caller's (m, n0) rows transposed are a view in the other order, on which
    OpenBLAS's threaded ``W1 @ X`` took 81 to 660 us against 21 to 37 us for the same product on
    the copy (569 examples, 30 features, 32 units); other arrays are left as they are."""
    if isinstance(X, np.ndarray) and X.ndim == 2 and not X.flags.c_contiguous:
        return np.ascontiguousarray(X)
    return X


def _pinned(strategy, threads):
    """``strategy``, its ``running()`` context holding BLAS on ``threads`` threads (None: as it is)."""
    if threads is None:
        return strategy
    running = strategy.running

    @contextlib.contextmanager
    def pinned():
        with blas_threads(threads), running():
            yield

    strategy.running = pinned
    return strategy


def _strategy(p: Plan, X, Y, parameters, activation, learning_rate, backend, dtype, seed, output, weighted,
              rule, state):
    lecture = beyond_lecture(rule) is None
    if p.mode == "dask":
        from .dask_training import DaskFullBatch

        return DaskFullBatch(X, Y, parameters, activation, learning_rate, backend, output, weighted, rule, state)
    if p.mode == "mini-batch":
        return MiniBatch(X, Y, activation, learning_rate, backend, p.batch_size, seed, output, weighted, rule,
                         state)
    n0, n2 = X.shape[0], parameters["W2"].shape[0]
    n1 = parameters["W1"].shape[0]
    target = lowering.find(p.executor)
    # A target's step runs the whole batch and fuses the lecture's update: the fused targets always (the
    # planner chooses them only for it), an executor in a whole-batch plan (a chunk of m) of the lecture's
    # rule.  Another rule takes an executor's gradients (one chunk of m) below and applies itself to them.
    executor_step = p.mode == "whole batch" and p.chunk_size is not None and lecture
    if target is not None and (target.chosen != EXECUTOR or executor_step):
        if not lecture:  # the planner does not choose it for such a fit (_target_plan, _asked_plan)
            raise InvalidInputError(f"the {target.name} step updates by gradient descent only, not by {rule}")
        fit = Fit(backend, (n0, n1, n2), get_activation(activation), dtype, get_output(output), weighted)
        step = target.compile(fit, learning_rate, threads=p.workers)
        return Lowered(step.prepare(X), step.prepare(Y), backend.compile(step), backend)  # NumPy's hook: as is
    if p.chunk_size is None:
        return WholeBatch(X, Y, activation, learning_rate, backend, output, weighted, rule, state)
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
