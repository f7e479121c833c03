"""How to run a fit: one decision, made here for every entry point.

:func:`plan` looks at the backend, the network's shape, m, the dtype and the
user's options and returns a :class:`Plan`: the whole batch at once, chunks of
it (how big, on how many threads), chunks streamed from the host, mini-batches,
or Dask.  :func:`~backprop_core.building.build` turns a plan into the strategy
the loop runs.  The estimator, the functional API, the command line and the
benchmark all call these two, so they all get the same, fastest mode, and the
plan says what it chose and why (``BackpropClassifier.plan_``, and the
``backprop_core`` logger at DEBUG level).

This module decides; what it decides by is measured on this machine by
:mod:`backprop_core.calibrations`, and what it decides is built by
:mod:`backprop_core.building`.

On a CPU the chunk size and thread count are not guessed: they come from a
quick calibration of the actual network on this machine, measured once per
shape, activation and dtype in a process and recorded in the plan.  On NumPy
the calibration also measures worker processes (:mod:`backprop_core.processes`),
which threads cannot match where many short NumPy calls contend for the GIL,
and what starting them costs once per fit; they run a fit only where that
measurement says they finish it sooner.

What computes the step is asked of the lowering targets
(:mod:`backprop_core.lowering`), never named here: the first executor that
applies computes the chunks (:func:`~backprop_core.building.executor_for`); a
target the ``fused`` option asks for runs where it applies (:func:`_asked_plan`);
the measured targets (the fused step in C on the CPU) are timed in turns with
the plan just made, the faster runs, and the plan's reason says why a target did
not (:func:`_target_plan`).

The candidates, targets included, are timed interleaved and read by one noise
rule (:mod:`backprop_core.measuring`): the safe plan stays unless another is
measured faster beyond a margin, and stable, or faster in every round it was
timed in beside the safe plan (a busy machine's samples spread, but alike).
Every plan also says how many threads BLAS runs on (:func:`blas_plan`), which
the strategy :func:`~backprop_core.building.build` makes holds while it runs:
it is the one place a fit's BLAS threads are pinned, for every plan kind (its
docstring says where each path pins).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
from array_api_compat import is_array_api_strict_namespace, is_numpy_namespace

from . import building, calibrations, lowering, measuring, processes
from .activations import get_activation
from .backends._base import cpu_cores
from .chunked import MAX_BLOCKS, cap_workers, working_bytes_per_example
from .equations import SIGMOID, get_output
from .errors import InvalidInputError
from .execution import FIELDS as EXECUTION_FIELDS
from .execution import Execution
from .lowering.target import ASKED, MEASURED, Fit

log = logging.getLogger("backprop_core")

#: Below this working set a fit runs the whole batch at once (it stays in cache: chunks cannot
#: pay); from it up, the calibration decides.  In examples: 2-4-1 about 12,000, 64-64-1 about
#: 800, 784-512-1 about 90 (float32).
MIN_CALIBRATED_BYTES = 1 << 20
#: Working memory of one streamed GPU chunk: large enough that its ~30 kernel launches are
#: negligible, small enough that two chunks in flight fit beside the parameters.
GPU_CHUNK_BYTES = 256 << 20
#: Stream when the data need more than this share of the device's free memory.
STREAM_ABOVE_FREE_SHARE = 0.5
#: Worker processes run a fit only where they are predicted to take at most this share of
#: the threads' time: each step waits for a process on another core, which a busy machine
#: may not give at once, and a fresh process's first steps are slower than the calibration's.
PROCESS_MARGIN = 0.85
#: A one-pass step whose largest product has fewer multiply-adds than this runs BLAS on one
#: thread without measuring: OpenBLAS splits products from about 2.6e5 multiply-adds up, and
#: below this the split gains little on a quiet machine and loses much on a busy one.
ONE_THREAD_MACS = 1 << 22


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
    network = building.process_network(backend, parallel, (n0, n1, n2), activation, output, weighted, dtype, m,
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

    executor = building.executor_for(fit)
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


# -- the lowering targets: asked whether they apply, timed against the plan they would replace ----------
def _target_plan(fit: Fit, m: int, workers, fallback: Plan) -> Plan:
    """The fastest of ``fallback`` and the MEASURED lowering targets that apply to this fit
    (:mod:`backprop_core.lowering`), each timed on this machine, interleaved with the fallback, on the
    fit's m up to :data:`~backprop_core.calibrations.MAX_TARGET_CALIBRATION` examples
    (:func:`~backprop_core.calibrations.time_target`).  Why a target does not run is added to the
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
            examples, timings = calibrations.time_target(target, fit, m, workers, timed)
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

    The fallback may be worker processes, known by a :class:`~backprop_core.calibrations.Calibrated` time
    (not started again).  That time is a prediction, and an optimistic one (a
    busy machine, a fresh process's first steps), which is why processes must
    beat threads by more than 1 - :data:`PROCESS_MARGIN`; against a target that
    runs in this process they are the risky choice too, so the target, measured
    stable, is the safe one, and the processes stay only if predicted faster than
    it by that same margin.
    """
    if not isinstance(fallback_timing, calibrations.Calibrated):
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
    :func:`~backprop_core.building.build`, and only it (see there).
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
    timings = calibrations.blas_calibration(backend, (n0, n1, n2), activation, dtype, m, executor)
    faster, why = measuring.replaces(timings[cores], timings[1])
    return (cores, f"{cores} threads measured {why}") if faster else (1, f"{cores} threads: {why}")


# -- the CPU: chunk size and threads from a calibration ---------------------------------
def _cpu_plan(backend, shape, dtype, activation, workers, executor, parallel, iterations, network) -> Plan:
    n0, n1, n2, m = shape
    working = m * working_bytes_per_example(n0, n1, n2, np.dtype(dtype).itemsize)
    if working < MIN_CALIBRATED_BYTES:
        return Plan("whole batch", executor=executor, chunk_size=m if executor != "equations" else None,
                    workers=1, reason=f"the step's {working / 2**10:,.0f} KiB of intermediates stay in cache: "
                                      "one pass")
    rates, timings, start_s, step_s = {}, {}, 0.0, 0.0
    if parallel != "processes":
        rates.update({(c, w, "threads"): r for (c, w), r in calibrations.calibration(
            backend, n0, n1, n2, activation, dtype).items()})
        timings.update({(c, w, "threads"): t for (c, w), t in calibrations.calibration_timings(
            backend, n0, n1, n2, activation, dtype).items()})
    measured, references = None, {}
    if network is not None and executor == processes.EXECUTOR:
        measured = calibrations.process_calibration(backend, n0, n1, n2, activation, dtype,
                                                    reference=reference_chunk(rates, m))
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
    """``references`` for :func:`choose_chunking` from a
    :class:`~backprop_core.calibrations.ProcessCalibration`: each process
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
