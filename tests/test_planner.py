"""One planner decides how every fit runs, and says what it chose."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import backprop_core as bc
from backprop_core import building, calibrations, chunked, measuring, planner, processes
from backprop_core.backends import get_backend
from backprop_core.backends.numpy_backend import NumpyBackend
from backprop_core.initialization import initial_parameters_host
from backprop_core.lowering import build_cache, cpu_fused
from backprop_core.measuring import Timing
from conftest import lecture

TANH = bc.get_activation("tanh")


@pytest.fixture(autouse=True)
def _numpy_plans_only(request, monkeypatch):
    """These tests are about the plans made of the array-API and buffered paths: the lowering
    targets, which the planner also times, are off unless a test asks for them."""
    if "with_targets" not in request.fixturenames:
        monkeypatch.setenv(cpu_fused.ENVIRONMENT, "0")


@pytest.fixture
def with_targets(monkeypatch, tmp_path_factory):
    """The planner asks the lowering targets (their builds cached in the test's own folder)."""
    monkeypatch.setenv("BACKPROP_CORE_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


class _SmallGpu(NumpyBackend):
    """Stands for a GPU with little free memory (the planner asks only on_gpu and free_memory)."""

    name = "small-gpu"
    chunks_by_default = False

    def __init__(self, device=None, free=1 << 20):
        super().__init__(device)
        self.free = free

    @property
    def on_gpu(self):
        return True

    def free_memory(self):
        return self.free


def _plan(backend="numpy", shape=(2, 4, 1, 400), dtype="float64", **options):
    backend = get_backend(backend) if isinstance(backend, str) else backend
    return planner.plan(backend, shape, dtype, TANH, **options)


def test_small_data_run_as_one_batch_without_calibrating():
    p = _plan(shape=(2, 4, 1, 400))
    assert p.mode == "whole batch" and p.workers == 1 and not p.measured
    assert "stay in cache" in p.reason


def test_large_data_on_the_cpu_follow_the_calibration():
    p = _plan(shape=(2, 4, 1, 1 << 18), dtype="float32")
    assert p.mode == "chunks" and p.measured
    # the processes' calibration the plan used (cached), and the same inputs the plan chose from: without
    # the references, processes that won by dominance beside their reference pass came out refused here
    measured = calibrations.process_calibration(get_backend("numpy"), 2, 4, 1, TANH, "float32",
                                           reference=planner.reference_chunk(p.measured, 1 << 18))
    step_s = 0.0 if measured is None else measured.step_s
    references = {} if measured is None else planner.process_references(measured)
    best, _ = planner.choose_chunking(p.measured, 1 << 18, process_step_s=step_s,  # iterations unknown
                                      timings=p.timings, references=references)
    assert (p.chunk_size, p.workers, p.parallel) == best
    assert "calibrated here" in p.reason


def test_calibration_is_measured_once_per_network_and_dtype():
    backend = get_backend("numpy")
    first = calibrations.calibration(backend, 3, 5, 1, TANH, "float32")
    assert calibrations.calibration(backend, 3, 5, 1, TANH, "float32") is first
    assert all(c & (c - 1) == 0 and w >= 1 and rate > 0 for (c, w), rate in first.items())


def test_the_users_choices_win(monkeypatch):
    # within the cores and the chunks (beyond them, workers are lowered: test_worker_counts.py)
    monkeypatch.setattr(chunked, "cpu_cores", lambda: 8)
    assert _plan(chunk_size=None, shape=(2, 4, 1, 1 << 18)).mode == "whole batch"
    p = _plan(chunk_size=1000, workers=3, shape=(2, 4, 1, 1 << 18))
    assert (p.mode, p.chunk_size, p.workers) == ("chunks", 1000, 3)
    p = _plan(shape=(2, 4, 1, 1 << 18), workers=1, dtype="float32")
    assert p.workers == 1
    p = _plan(batch_size=64)
    assert (p.mode, p.batch_size, p.epochs) == ("mini-batch", 64, 10)


def test_host_data_stream_through_a_gpu_only_when_they_would_not_fit():
    gpu = _SmallGpu(free=1 << 20)  # 1 MiB free
    assert _plan(gpu, shape=(2, 4, 1, 1000), host_data=True).mode == "whole batch"
    p = _plan(gpu, shape=(2, 4, 1, 1 << 20), host_data=True, dtype="float32")
    assert p.mode == "streamed chunks" and p.streams and "free memory" in p.reason
    assert p.chunk_size & (p.chunk_size - 1) == 0
    assert _plan(gpu, shape=(2, 4, 1, 1 << 20), host_data=False).mode == "whole batch"


def test_gpu_chunks_are_sized_by_bytes_from_one_rule():
    sizes = [planner.chunk_size_for_bytes(n0, n1, 1, 4, planner.GPU_CHUNK_BYTES)
             for n0, n1 in ((2, 4), (64, 64), (784, 512))]
    assert sizes == sorted(sizes, reverse=True)  # wider networks, fewer examples per chunk
    for size, (n0, n1) in zip(sizes, ((2, 4), (64, 64), (784, 512))):
        per_example = 4 * (n0 + 1 + 4 * n1 + 3)
        assert size * per_example <= planner.GPU_CHUNK_BYTES < 2 * size * per_example


@pytest.mark.parametrize("options, message", [
    ({"stream": True}, "only NumPy arrays on the host can be streamed"),
    ({"stream": "sometimes"}, "stream must be True, False or 'auto'"),
    ({"chunk_size": 0}, "chunk_size must be a positive integer"),
    ({"workers": 0}, "workers must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"batch_size": 10, "epochs": 0}, "epochs must be a positive integer"),
])
def test_impossible_plans_are_named(options, message):
    with pytest.raises(bc.InvalidInputError, match=message):
        _plan(**options)


def test_the_activation_may_be_given_by_name():
    backend = get_backend("numpy")
    by_name = planner.plan(backend, (3, 5, 1, 1 << 16), "float32", "tanh", parallel="threads")
    assert by_name == planner.plan(backend, (3, 5, 1, 1 << 16), "float32", TANH, parallel="threads")
    with pytest.raises(bc.InvalidInputError, match="unknown activation 'tanhh'"):
        planner.plan(backend, (3, 5, 1, 1 << 16), "float32", "tanhh")


def test_minibatch_that_would_not_fit_is_refused_before_training():
    with pytest.raises(bc.InvalidInputError, match="mini-batch training needs the data on the device"):
        _plan(_SmallGpu(free=1 << 10), shape=(2, 4, 1, 1 << 20), host_data=True, batch_size=64)


def test_every_entry_point_asks_the_planner(flower_data, caplog):
    X, Y = flower_data
    with caplog.at_level(logging.DEBUG, logger="backprop_core"):
        with bc.execution_context(chunk_size=100, workers=2):
            bc.nn_model(X, Y, 4, 10)
    assert any("plan: chunks, chunks of 100, 2 threads" in r.getMessage() for r in caplog.records)
    with bc.execution_context(chunk_size=100, workers=2):
        model = lecture(max_iter=10).fit(X.T, Y[0])
    assert (model.plan_.mode, model.plan_.chunk_size, model.plan_.workers) == ("chunks", 100, 2)


class _FusingNumpy(NumpyBackend):
    """Stands for a backend that compiles fused kernels (the planner asks only fuses_kernels)."""

    name = "fusing"
    fuses_kernels = True


def test_the_fused_kernel_is_planned_only_where_asked_for_and_it_applies():
    fusing = _FusingNumpy()
    p = _plan(fusing, fused=True)
    assert (p.mode, p.executor) == ("whole batch", "fused") and "sums per thread" in p.reason
    assert _plan(fusing, fused=False).executor != "fused"
    assert _plan(fusing, fused="auto").executor != "fused"  # until a GPU run has proven it
    with pytest.warns(UserWarning, match="over the fused kernel's limit"):
        wide = _plan(fusing, shape=(784, 512, 1, 1000), fused=True)
    assert wide.executor != "fused"
    with pytest.raises(bc.InvalidInputError, match="fused=True needs a backend that compiles fused kernels"):
        _plan("numpy", fused=True)
    with pytest.raises(bc.InvalidInputError, match="chunk_size and stream=True do not apply"):
        _plan(fusing, fused=True, chunk_size=100)


# -- threads or processes ------------------------------------------------------------------------
#: A calibration table, (chunk size, workers, parallel) -> examples/s of one step.
RATES = {(4096, 1, "threads"): 100e6, (4096, 2, "threads"): 90e6, (4096, 2, "processes"): 180e6,
         (65536, 2, "processes"): 150e6}


def test_processes_measured_faster_run_a_fit_of_unknown_length():
    (c, w, how), why = planner.choose_chunking(RATES, 1 << 20, process_start_s=0.3)
    assert (c, w, how) == (4096, 2, "processes")
    assert "on 2 processes" in why and "not counted" in why


def test_a_short_fit_does_not_pay_for_starting_processes():
    # 10 steps of 2^20 examples: 0.10 s on one thread; 0.06 s on processes, plus 0.3 s to start them.
    key, why = planner.choose_chunking(RATES, 1 << 20, iterations=10, process_start_s=0.3)
    assert key == (4096, 1, "threads")
    assert "not enough to pay for their start (0.3 s) over 10 iterations" in why


def test_a_long_fit_repays_the_start_of_processes():
    key, why = planner.choose_chunking(RATES, 1 << 20, iterations=1000, process_start_s=0.3)
    assert key == (4096, 2, "processes")
    assert "repaid over 1,000 iterations" in why


def test_the_round_trip_of_processes_keeps_small_batches_on_threads():
    # One chunk each: 46 us of work on processes plus their 100 us round trip, 82 us on one thread.
    assert planner.choose_chunking(RATES, 8192, process_step_s=100e-6)[0] == (4096, 1, "threads")
    assert planner.choose_chunking(RATES, 1 << 20, process_step_s=100e-6)[0] == (4096, 2, "processes")


def test_the_process_with_the_most_blocks_sets_the_pace():
    # Three chunks (three blocks) on two processes: one does two, so a step takes two chunks' time.
    assert planner.step_seconds((4096, 2, "processes"), 200e6, 3 * 4096) == pytest.approx(2 * 8192 / 200e6)
    assert planner.step_seconds((4096, 2, "processes"), 200e6, 4 * 4096, 1e-4) == pytest.approx(2 * 8192 / 200e6 + 1e-4)
    assert planner.step_seconds((4096, 1, "threads"), 100e6, 3 * 4096) == pytest.approx(3 * 4096 / 100e6)
    # 64 chunks in 32 blocks of two: 16 blocks each, the work split evenly.
    assert planner.step_seconds((4096, 2, "processes"), 200e6, 64 * 4096) == pytest.approx(64 * 4096 / 200e6)
    # 66 chunks in 32 blocks (two of three chunks): one process does 16 blocks, 33 chunks' worth on average.
    assert planner.step_seconds((4096, 2, "processes"), 200e6, 66 * 4096) == pytest.approx(2 * 33 * 4096 / 200e6)


def test_processes_must_win_by_a_margin():
    close = {(4096, 1, "threads"): 100e6, (4096, 2, "processes"): 100e6 / (planner.PROCESS_MARGIN + 0.05)}
    key, why = planner.choose_chunking(close, 1 << 20)
    assert key == (4096, 1, "threads") and "not enough to pay for their round trips" in why
    clear = {(4096, 1, "threads"): 100e6, (4096, 2, "processes"): 100e6 / (planner.PROCESS_MARGIN - 0.05)}
    assert planner.choose_chunking(clear, 1 << 20)[0] == (4096, 2, "processes")


def test_processes_slower_per_step_are_never_chosen():
    slow = {**RATES, (4096, 2, "processes"): 80e6, (65536, 2, "processes"): 70e6}
    assert planner.choose_chunking(slow, 1 << 20)[0] == (4096, 1, "threads")
    assert planner.choose_chunking(slow, 1 << 20, iterations=10**6)[0] == (4096, 1, "threads")


def test_the_choice_keeps_to_the_workers_asked_for_and_to_m():
    assert planner.choose_chunking(RATES, 1 << 20, workers=1)[0] == (4096, 1, "threads")
    assert planner.choose_chunking(RATES, 6000)[0] == (4096, 1, "threads")  # two chunks of 4096 need 8192
    assert planner.choose_chunking(RATES, 100) is None


def _busy_processes(reference_key=(4096, 1, "threads")):
    """A busy machine: one thread calibrated at 100 M/s at a quiet moment; processes timed later,
    round by round beside the safe plan again (at 50 M/s then), and 1/0.7 times as fast as it in
    every round of a load that rises and falls."""
    load = (1.0, 3.0, 1.0, 2.5, 1.2, 3.5, 1.0, 2.0, 3.0)
    alone, on_processes = Timing(load, 41), Timing(tuple(0.7 * x for x in load), 41)
    rates = {(4096, 1, "threads"): 100e6, (4096, 2, "processes"): 50e6 / 0.7}
    timings = {(4096, 1, "threads"): Timing((1.0,) * 9), (4096, 2, "processes"): on_processes}
    return planner.choose_chunking(rates, 1 << 20, timings=timings,
                                   references={(4096, 2, "processes"): (reference_key, alone, 50e6)})


def test_processes_faster_than_the_safe_plan_in_every_round_beside_it_run_on_a_busy_machine():
    (c, w, how), why = _busy_processes()
    assert (c, w, how) == (4096, 2, "processes")
    assert "143 M examples/s" in why, "the safe plan's rate times the ratio of the rounds"
    assert "against chunks of 4,096 on one thread: it measured unstable" in why
    assert "but faster in 9 of 9 interleaved rounds, 1.43x in the median round" in why


def test_a_reference_that_is_not_the_safe_plan_is_not_compared():
    key, why = _busy_processes(reference_key=(8192, 1, "threads"))
    assert key == (4096, 1, "threads")


def test_a_plan_says_whether_processes_or_threads_share_the_chunks():
    p = _plan(chunk_size=100, workers=2, parallel="processes")
    assert (p.parallel, p.workers) == ("processes", 2) and "2 processes" in str(p)
    assert _plan(chunk_size=100, workers=2).parallel == "threads"


@pytest.mark.skipif(get_backend("numpy").default_workers < 2,
                    reason="worker processes are calibrated on two cores or more")
@pytest.mark.skipif(not processes.available(), reason="worker processes need a POSIX system")
def test_large_data_on_numpy_calibrate_processes_beside_threads():
    shape = (2, 4, 1, 1 << 18)
    assert {k[2] for k in _plan(shape=shape, dtype="float32").measured} == {"threads", "processes"}
    measured = [c for key, c in calibrations._process_calibrations.items() if key[1:4] == (2, 4, 1) and c is not None]
    assert any(c.reference is not None and set(c.references) == set(c.timings)
               and all(c.references[k].rounds == c.timings[k].rounds for k in c.timings) for c in measured), \
        "the processes were timed in rounds beside the safe plan's pass"
    only = _plan(shape=shape, dtype="float32", parallel="threads")
    assert {k[2] for k in only.measured} == {"threads"} and only.parallel == "threads"
    only = _plan(shape=shape, dtype="float32", parallel="processes")
    assert {k[2] for k in only.measured} == {"processes"} and only.parallel == "processes"


@pytest.mark.skipif(get_backend("numpy").default_workers < 2,
                    reason="worker processes are calibrated on two cores or more")
@pytest.mark.skipif(not processes.available(), reason="worker processes need a POSIX system")
def test_the_process_calibration_measures_what_starting_them_costs():
    measured = calibrations.process_calibration(get_backend("numpy"), 2, 4, 1, TANH, "float32")
    assert measured.rates and all(w == get_backend("numpy").default_workers for _, w in measured.rates)
    assert measured.start_s > 0 and measured.share_s_per_example > 0 and measured.step_s >= 0
    assert measured.start_seconds(1 << 20) > measured.start_seconds(1)


def test_only_the_numpy_backend_runs_processes():
    strict = get_backend("array_api_strict")
    with pytest.raises(bc.InvalidInputError, match="only the numpy backend"):
        _plan(strict, chunk_size=100, parallel="processes")
    assert _plan(strict, chunk_size=100, workers=2).parallel == "threads"
    with pytest.raises(bc.InvalidInputError, match="only the numpy backend"):
        _plan(_SmallGpu(free=1 << 30), chunk_size=100, parallel="processes")


def test_a_callers_own_activation_cannot_cross_to_processes():
    mine = bc.activations.Activation("tanh", lambda Z: Z, lambda Z, A: 1.0 + 0.0 * Z)
    with pytest.raises(bc.InvalidInputError, match="the activation 'tanh' or the output 'sigmoid' given is a "
                                                   "function of the caller's"):
        planner.plan(get_backend("numpy"), (2, 4, 1, 400), "float64", mine, chunk_size=100, parallel="processes")


@pytest.mark.parametrize("options, message", [
    ({"parallel": "fibers"}, "parallel must be 'auto', 'threads' or 'processes'"),
    ({"parallel": "processes", "chunk_size": None}, "does not apply with chunk_size=None"),
    ({"parallel": "processes", "batch_size": 64}, "does not apply with batch_size"),
    ({"iterations": 0}, "iterations must be a positive integer"),
])
def test_impossible_parallel_plans_are_named(options, message):
    with pytest.raises(bc.InvalidInputError, match=message):
        _plan(**options)


def test_processes_are_planned_only_where_the_data_fit_in_shared_memory(monkeypatch):
    monkeypatch.setattr(processes, "shared_memory_free", lambda: 1 << 20)  # a container's small /dev/shm
    with pytest.raises(bc.InvalidInputError, match=r"they need 3 MiB and /dev/shm has 1 MiB free"):
        _plan(shape=(2, 4, 1, 1 << 17), dtype="float64", chunk_size=4096, parallel="processes")
    auto = _plan(shape=(2, 4, 1, 1 << 18), dtype="float32")
    assert {k[2] for k in auto.measured} == {"threads"} and auto.parallel == "threads"


# -- the lowering targets: asked, timed against the plan they would replace ------------------------------
needs_compiler = pytest.mark.skipif(build_cache.c_compiler() is None, reason="no C compiler (gcc or cc) here")


@needs_compiler
@pytest.mark.parametrize("m", [400, 1 << 16])
def test_a_target_that_applies_is_chosen_exactly_where_the_noise_rule_says_it_is_faster(m, with_targets):
    calibrations._target_timings.clear()
    p = _plan(shape=(2, 4, 1, m), dtype="float32")
    ((examples, timings),) = [t for key, t in calibrations._target_timings.items()
                              if key[0] == cpu_fused.NAME and key[3] == m]
    safe = timings.pop(None)
    threads, _ = planner.target_threads(timings)
    faster, verdict = planner.target_replaces(timings[threads], safe)  # safe: processes' calibrated time, or samples
    assert (p.executor == cpu_fused.NAME) == faster, p
    assert verdict in p.reason and f"on {threads} thread(s)" in p.reason
    assert p.executor != cpu_fused.NAME or p.workers == threads


def _timing(seconds, noisy=False):
    from backprop_core.measuring import Timing

    # noisy: the median's seconds, and a spread (interquartile range) far above the noise rule's
    return Timing((seconds,) * 5 + (3 * seconds,) * 4 if noisy else (seconds,) * 9)


@pytest.mark.parametrize("one, two, chosen", [
    (_timing(1.0), _timing(0.5), 2),  # measured faster beyond the margin, both stable
    (_timing(1.0), _timing(0.95), 1),  # a tie: the fewer threads
    (_timing(1.0), _timing(0.5, noisy=True), 1),  # a pool measured unstable does not replace one thread
    (_timing(1.0, noisy=True), _timing(0.5), 1),  # the safe choice's noise counts too
    (_timing(0.5), _timing(1.0), 1),
])
def test_a_targets_threads_follow_the_noise_rule_with_one_thread_the_safe_choice(one, two, chosen):
    threads, why = planner.target_threads({1: one, 2: two})
    assert threads == chosen, why
    assert ("kept 1" in why) == (chosen == 1)
    assert ("0.50x as fast" in why) == (two.median > one.median)  # slower is said so, not called a tie


def test_a_pool_measured_unstable_leaves_the_target_on_one_thread_where_that_wins(with_targets, monkeypatch):
    """The full bench's numpy plan at 2-4-1, 2^16: the fused step on 2 threads measured fastest but
    unstable, and the target lost to a plan at half its rate, though 1 thread measured stable and faster."""
    timings = {1: _timing(1.0), 2: _timing(0.6, noisy=True), None: _timing(2.0)}
    monkeypatch.setattr(calibrations, "time_target", lambda *args: (1000, dict(timings)))
    p = _plan(shape=(2, 4, 1, 1 << 12), dtype="float32")
    assert p.executor == cpu_fused.NAME and p.workers == 1, p
    assert "by threads 1: 0.001 M/s (spread 0%), 2: " in p.reason and "measured unstable" in p.reason


def test_a_kept_plan_says_what_each_thread_count_of_the_target_measured(with_targets, monkeypatch):
    timings = {1: _timing(1.0), 2: _timing(0.8), None: _timing(0.5)}
    monkeypatch.setattr(calibrations, "time_target", lambda *args: (1000, dict(timings)))
    p = _plan(shape=(2, 4, 1, 1 << 12), dtype="float32")
    assert p.executor != cpu_fused.NAME
    assert "cpu-fused: measured 0.00125 M/s on 2 thread(s) (2 threads against 1: 1.25x faster" in p.reason
    assert "by threads 1: 0.001 M/s (spread 0%), 2: 0.00125 M/s (spread 0%)" in p.reason


def test_a_target_replaces_processes_unless_they_are_predicted_faster_by_their_margin():
    from backprop_core.measuring import Timing

    steady = Timing((1.0,) * 9)  # a target's samples, stable: one second
    margin = 1.0 - planner.PROCESS_MARGIN
    assert planner.target_replaces(steady, calibrations.Calibrated(2.0))[0]  # processes twice as slow
    # A tie, or processes a little faster by their (optimistic) calibration: the target, measured here, runs.
    assert planner.target_replaces(steady, calibrations.Calibrated(1.0))[0]
    assert planner.target_replaces(steady, calibrations.Calibrated(1.0 - margin / 2))[0]
    stay, why = planner.target_replaces(steady, calibrations.Calibrated(1.0 - 2 * margin))
    assert not stay and "processes must win by" in why


def test_a_target_measured_unstable_does_not_replace_processes():
    from backprop_core.measuring import Timing

    noisy = Timing((1.0, 3.0) * 5)  # a spread far above the noise rule's
    stay, why = planner.target_replaces(noisy, calibrations.Calibrated(10.0))
    assert not stay and "unstable" in why


def test_wide_layers_keep_their_plan_and_say_why_the_target_does_not_apply(with_targets):
    p = _plan(shape=(64, 64, 1, 1 << 12), dtype="float32")
    assert p.executor == "buffered" and "cpu-fused: a 64-64-1 network needs 4226 sums" in p.reason


def test_the_environment_turns_the_target_off():
    p = _plan(shape=(2, 4, 1, 400), dtype="float32")
    assert p.executor == "buffered" and f"turned off ({cpu_fused.ENVIRONMENT}=0)" in p.reason


def test_without_a_compiler_the_plan_is_todays_and_says_so(with_targets, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    p = _plan(shape=(2, 4, 1, 400), dtype="float32")
    assert p.executor == "buffered" and "no C compiler" in p.reason


@needs_compiler
def test_a_target_plan_trains_as_the_equations_do(with_targets):
    backend = get_backend("numpy")
    p = planner.Plan("whole batch", executor=cpu_fused.NAME, workers=2)
    params = initial_parameters_host(2, 4, 1, "xavier", 0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 300))
    Y = (X[:1] * X[1:] > 0).astype(np.float64)
    fused = building.build(p, X, Y, params, TANH, 0.5, backend, "float64")
    whole = building.build(planner.Plan("whole batch"), X, Y, params, TANH, 0.5, backend, "float64")
    a, b = params, params
    for i in range(50):
        a, Ja = fused.step(a, i, True)
        b, Jb = whole.step(b, i, True)
        assert abs(float(Ja) - float(Jb)) <= 1e-12 * abs(float(Jb))
    for name in b:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-11, atol=1e-13)


# -- the planner's own measurements: what they run under, how they are read ---------------------------
def _blas_threads_now():
    import threadpoolctl

    return [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]


@needs_compiler
@pytest.mark.skipif(planner.cpu_cores() < 2, reason="one core: the caller's BLAS threads and the plan's are one")
def test_a_target_is_timed_against_its_fallback_on_the_blas_threads_the_fallback_would_run_on(
        with_targets, monkeypatch):
    from backprop_core.blas import blas_threads

    seen = []
    time_interleaved = measuring.time_interleaved

    def spy(candidates, **kw):
        if None in candidates:  # the target against its fallback
            seen.append(_blas_threads_now())
        return time_interleaved(candidates, **kw)

    monkeypatch.setattr(measuring, "time_interleaved", spy)
    # The fallback is the equations' whole batch, whose strategy leaves BLAS as it finds it (the
    # buffered chunks pin one thread of their own, which would hide what the planner sets).
    monkeypatch.setattr(building, "executor_for", lambda fit: "equations")
    calibrations._target_timings.clear()
    with blas_threads(planner.cpu_cores()):  # the caller leaves BLAS on every core
        p = _plan(shape=(2, 4, 1, 400), dtype="float32")
        after = _blas_threads_now()
    fallback_threads, _ = planner.blas_plan(planner.Plan("whole batch"), get_backend("numpy"), (2, 4, 1, 400),
                                            "float32", TANH)
    assert fallback_threads == 1  # a small product: the premise of the test
    assert seen and all(threads == [fallback_threads] * len(threads) for threads in seen), (seen, p)
    assert after == [planner.cpu_cores()] * len(after)  # the caller's setting back once planned


@needs_compiler
def test_each_sample_of_a_target_and_its_fallback_follows_a_step_of_its_own_as_in_a_fit(with_targets, monkeypatch):
    """The bench worker's sequence (bench/worker.py): a plan and its steps at a small m, then the plan
    at a larger m, whose fallback runs here between the target's samples.  Timed first after another
    candidate, the fused step woke its pool's threads from sleep, which a fit's steps, one after
    another, never pay: 2-4-1 at 2^16 on 2 threads measured "unstable" so (1 sample in 3 slow)."""
    events = []  # each step that ran ("fallback", or the fused step's thread count), each sample's start
    fused_call = cpu_fused.CpuFusedStep.__call__
    monkeypatch.setattr(cpu_fused.CpuFusedStep, "__call__",
                        lambda self, *args: (events.append(self.threads), fused_call(self, *args))[1])
    build = building.build

    def recorded_build(*args, **kwargs):
        strategy = build(*args, **kwargs)
        step = strategy.step
        strategy.step = lambda *a, **k: (events.append("fallback"), step(*a, **k))[1]
        return strategy

    monkeypatch.setattr(building, "build", recorded_build)
    time_interleaved = measuring.time_interleaved

    def spy(candidates, **kw):
        if None not in candidates:  # not the target against its fallback
            return time_interleaved(candidates, **kw)
        marked = {key: (lambda key, f: lambda: (events.append(("sample", key)), f())[1])(key, f)
                  for key, f in candidates.items()}
        return time_interleaved(marked, **kw)

    monkeypatch.setattr(measuring, "time_interleaved", spy)
    calibrations._target_timings.clear()
    backend = get_backend("numpy")
    X, Y = np.random.default_rng(0).standard_normal((2, 256)), np.ones((1, 256))
    params = backend.parameters_from_host(initial_parameters_host(2, 4, 1, "xavier", seed=0), "float32")
    first = _plan(shape=(2, 4, 1, 256), dtype="float32")
    strategy = build(first, backend.asarray(X, "float32"), backend.asarray(Y, "float32"), params, TANH, 0.1,
                     backend, "float32")
    with strategy.running():
        for i in range(3):
            params, _ = strategy.step(params, i, False)
    events.clear()  # the second plan's timings: below the calibration's m, its fallback runs here
    _plan(shape=(2, 4, 1, 4096), dtype="float32")
    samples = [(i, event[1]) for i, event in enumerate(events) if isinstance(event, tuple)]
    assert {key for _, key in samples} == {None, *sorted({1, planner.cpu_cores()})}, events
    before = [(key, next((e for e in reversed(events[:i]) if not isinstance(e, tuple)), "nothing"))
              for i, key in samples]
    assert all(last == ("fallback" if key is None else key) for key, last in before), before


def test_the_reason_names_a_faster_candidate_refused_because_it_measured_unstable():
    from backprop_core.measuring import Timing

    rates = {(4096, 1, "threads"): 100e6, (4096, 2, "threads"): 300e6}
    steady, noisy = Timing((1.0,) * 9), Timing((1.0, 1.0, 3.0, 0.5, 1.0, 2.0, 0.4, 1.0, 3.0))
    key, why = planner.choose_chunking(rates, 1 << 20, timings={(4096, 1, "threads"): steady,
                                                                (4096, 2, "threads"): noisy})
    assert key == (4096, 1, "threads") and "the noise rule kept it over chunks of 4,096 on 2 threads" in why
    key, why = planner.choose_chunking(rates, 1 << 20, timings={(4096, 1, "threads"): noisy,
                                                                (4096, 2, "threads"): steady})
    assert key == (4096, 1, "threads") and "the noise rule kept it" in why  # the safe choice's noise counts too


def test_a_faster_candidate_refused_for_a_tie_is_not_called_unstable():
    from backprop_core.measuring import Timing

    rates = {(4096, 1, "threads"): 100e6, (4096, 2, "threads"): 105e6}  # 5%: within the margin
    steady = Timing((1.0,) * 9)
    key, why = planner.choose_chunking(rates, 1 << 20, timings={(4096, 1, "threads"): steady,
                                                                (4096, 2, "threads"): steady})
    assert key == (4096, 1, "threads") and "noise rule kept it" not in why


def _cpu_by_thread() -> dict:
    """Nanoseconds each live thread of this process has run (Linux's schedstat)."""
    import os

    ran = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ran[int(tid)] = int(f.read().split()[0])
        except OSError:
            continue
    return ran


@needs_compiler
@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/task"), reason="reads Linux's /proc")
def test_nothing_a_finished_plan_measured_with_keeps_a_core_busy(with_targets):
    """The bench worker plans m after m in one process: the calibrations' threads and worker processes,
    the targets' pools and BLAS's threads must all be idle once a plan is made, or the next m's timings
    share their cores with them."""
    import os
    import threading
    import time

    calibrations._target_timings.clear()
    _plan(shape=(2, 4, 1, 1 << 12), dtype="float32")
    _plan(shape=(2, 4, 1, 1 << 16), dtype="float32", parallel="auto")  # calibrates threads and processes
    before = _cpu_by_thread()
    time.sleep(0.3)
    after = _cpu_by_thread()
    me = threading.get_native_id()
    busy = {tid: (after[tid] - before.get(tid, 0)) / 1e6 for tid in after if tid != me}
    assert all(ms < 5.0 for ms in busy.values()), busy  # ms of CPU in 300 ms of idling
    children = []
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/children") as f:
            children += f.read().split()
    for pid in children:  # only multiprocessing's resource tracker may outlive the processes' calibration
        with open(f"/proc/{pid}/cmdline") as f:
            assert "resource_tracker" in f.read(), pid


def test_processes_refused_because_their_reference_measured_unstable_are_named_so():
    # The processes measured steady, the safe plan's pass beside them not: they won only the rounds
    # in which the load fell on that pass.
    alone, on_processes = Timing((1.0, 3.0, 1.0, 2.5, 1.2, 3.5, 1.0, 2.0, 3.0), 42), Timing((1.0,) * 9, 42)
    rates = {(4096, 1, "threads"): 100e6, (4096, 2, "processes"): 50e6 / 0.7}
    key, why = planner.choose_chunking(
        rates, 1 << 20, iterations=1000, process_start_s=0.3,
        timings={(4096, 1, "threads"): Timing((1.0,) * 9), (4096, 2, "processes"): on_processes},
        references={(4096, 2, "processes"): ((4096, 1, "threads"), alone, 50e6)})
    assert key == (4096, 1, "threads")
    assert "the noise rule kept it over chunks of 4,096 on 2 processes: the safe choice measured unstable" in why
    assert "faster in 5 of 9" in why
    assert "not enough to pay for their start" not in why
