"""The planner measures speed, not noise: interleaved samples, one noise rule, the same plan twice;
and BLAS runs on the threads the plan decided, the caller's setting restored after."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import backprop_core as bc
from backprop_core import building, calibrations, measuring, planner
from backprop_core.backends import get_backend
from backprop_core.backends.numpy_backend import NumpyBackend
from backprop_core.chunked import ChunkedGradients
from backprop_core.measuring import Timing

TANH = bc.get_activation("tanh")
TIME_INTERLEAVED = measuring.time_interleaved


class FakeClock:
    """Seconds that pass only when a fake computation says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def _chunk_plans_only(monkeypatch):
    """These tests are about how the chunk and BLAS candidates are measured and read: the lowering
    targets, timed after them (and by the same rule, tests/test_planner.py), are off here."""
    from backprop_core.lowering import cpu_fused

    monkeypatch.setenv(cpu_fused.ENVIRONMENT, "0")


def _blas_threads() -> int:
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


# -- sampling ------------------------------------------------------------------------------------
def test_candidates_are_timed_in_rounds_that_rotate():
    clock, calls = FakeClock(), []

    def call(key, seconds):
        def run():
            calls.append(key)
            clock.now += seconds
        return run

    timings = measuring.time_interleaved({"a": call("a", 1.0), "b": call("b", 2.0), "c": call("c", 3.0)},
                                         rounds=3, clock=clock)
    assert calls[:3] == ["a", "b", "c"]  # one untimed call each
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {k: t.samples for k, t in timings.items()} == {"a": (1.0,) * 3, "b": (2.0,) * 3, "c": (3.0,) * 3}


def test_the_budget_buys_more_rounds_up_to_a_limit():
    clock = FakeClock()

    def tick():
        clock.now += 0.125

    assert len(measuring.time_interleaved({"a": tick}, rounds=3, clock=clock)["a"].samples) == 3
    # The untimed first call counts against the budget: 1 + 7 calls fill its second.
    assert len(measuring.time_interleaved({"a": tick}, rounds=3, budget_s=1.0, clock=clock)["a"].samples) == 7
    assert len(measuring.time_interleaved({"a": tick}, rounds=3, max_rounds=5, budget_s=9.0,
                                          clock=clock)["a"].samples) == 5


def test_prepare_runs_untimed_before_each_call():
    clock, prepared = FakeClock(), []

    def prepare(key):
        prepared.append(key)
        clock.now += 100.0  # not counted

    timings = measuring.time_interleaved({1: lambda: None}, prepare=prepare, rounds=4, clock=clock)
    assert prepared == [1] * 5 and timings[1].samples == (0.0,) * 4


# -- the other threads at rest before the rounds ----------------------------------------------------
# A thread spinning in Python is no witness: it waits for the GIL, asleep, whenever the test holds it.
# BLAS's threads spin in C, as the planner meets them; the rule itself is tested on a fake clock.
LINUX_THREADS = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc/self/task")
TWO_CORES = pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                               reason="needs two cores for BLAS to split a product")


class Restless:
    """Other threads that run for the first ``busy`` checks (None: always), on a fake clock."""

    def __init__(self, monkeypatch, busy=None):
        self.now, self.busy, self.checks, self.pauses = 0.0, busy, 0, 0
        monkeypatch.setattr(measuring, "_restless_since", None)
        monkeypatch.setattr(measuring, "_others_running", self.running)
        monkeypatch.setattr(time, "monotonic", lambda: self.now)
        monkeypatch.setattr(time, "sleep", self.sleep)

    def running(self):
        self.checks += 1
        return self.busy is None or self.checks <= self.busy

    def sleep(self, seconds):
        self.pauses += 1
        self.now += seconds


def _split_product():
    a = np.ones((1500, 1500), np.float32)
    with threadpool_limits(2, user_api="blas"):
        a @ a


def test_a_timing_starts_once_the_other_threads_rest(monkeypatch):
    threads = Restless(monkeypatch, busy=3)
    assert measuring.settled(limit_s=5.0)
    assert threads.pauses == 3


def test_nothing_running_costs_no_wait(monkeypatch):
    threads = Restless(monkeypatch, busy=0)
    assert measuring.settled()
    assert threads.pauses == 0


def test_threads_that_never_rest_are_waited_for_once(monkeypatch):
    threads = Restless(monkeypatch)
    assert not measuring.settled(limit_s=0.05, pause_s=0.01)
    first = threads.pauses
    assert 0 < first <= 6
    assert not measuring.settled(limit_s=5.0)  # within RESTLESS_S of the wait that ran out
    assert threads.pauses == first
    threads.now += measuring.RESTLESS_S
    assert not measuring.settled(limit_s=0.05, pause_s=0.01)  # later, waited for again
    assert threads.pauses > first


@LINUX_THREADS
@TWO_CORES
def test_blas_threads_are_seen_running_right_after_a_product_they_split():
    _split_product()
    assert measuring._others_running()


@LINUX_THREADS
@TWO_CORES
def test_blas_threads_rest_once_settled(monkeypatch):
    """A product OpenBLAS split leaves its threads spinning; once settled, none of them runs."""
    monkeypatch.setattr(measuring, "_restless_since", None)

    def ran():
        out = {}
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/schedstat") as f:
                out[tid] = int(f.read().split()[0])
        return out
    _split_product()
    assert measuring.settled(limit_s=5.0)
    before = ran()
    time.sleep(0.05)
    after = ran()
    me = str(threading.get_native_id())
    assert sum(t - before.get(tid, t) for tid, t in after.items() if tid != me) < 1e6, "a thread ran 1 ms or more"


def test_each_timing_waits_for_the_other_threads_after_its_first_calls(monkeypatch):
    order = []
    monkeypatch.setattr(measuring, "settled", lambda: order.append("settled"))
    measuring.time_interleaved({"a": lambda: order.append("a")}, rounds=2, clock=FakeClock())
    assert order == ["a", "settled", "a", "a"]


# -- the noise rule ------------------------------------------------------------------------------
STEADY = Timing((1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01, 0.99, 1.00))


def _scaled(timing, factor):
    return Timing(tuple(factor * s for s in timing.samples))


def test_a_stable_candidate_faster_beyond_the_margin_replaces_the_safe_choice():
    ok, why = measuring.replaces(_scaled(STEADY, 0.5), STEADY)
    assert ok and "2.00x faster" in why


def test_a_candidate_within_the_margin_is_a_tie_the_safe_choice_wins():
    ok, why = measuring.replaces(_scaled(STEADY, 1.0 - measuring.MARGIN / 2), STEADY)
    assert not ok and "a tie" in why


def test_an_unstable_measurement_keeps_the_safe_choice_however_fast():
    erratic = Timing((0.1, 0.1, 0.9, 0.1, 2.0, 0.1, 1.5, 0.1, 0.8))  # a core shared with another process
    assert not erratic.stable
    ok, why = measuring.replaces(erratic, STEADY)
    assert not ok and "unstable" in why and "too busy" in why
    ok, why = measuring.replaces(_scaled(STEADY, 0.5), erratic)
    assert not ok and "the safe choice measured unstable" in why


def test_too_few_samples_are_never_stable():
    assert not Timing((1.0, 1.0, 1.0)).stable
    assert Timing((1.0, 1.0, 1.0, 1.0)).stable


# -- the planner under a fake clock: the same machine, the same plan --------------------------
def _fake_machine(monkeypatch, seconds_per_example, noise, seed):
    """Calibrations that compute nothing: a chunked pass over m examples on w threads 'takes'
    m * seconds_per_example(c, w) seconds of a fake clock, times the factor ``noise(rng, w)``."""
    clock, rng = FakeClock(), np.random.default_rng(seed)

    class Chunked(ChunkedGradients):
        def __call__(self, params, X, Y, with_cost=False):
            clock.now += X.shape[1] * seconds_per_example(self.chunk_size, self.workers) * noise(rng, self.workers)

        @contextlib.contextmanager
        def running(self):
            yield self

    monkeypatch.setattr(calibrations, "ChunkedGradients", Chunked)
    for module in (planner, calibrations):  # the cores the plan and its timings count
        monkeypatch.setattr(module, "cpu_cores", lambda: 2)
    monkeypatch.setattr(calibrations, "_calibrations", {})
    monkeypatch.setattr(measuring, "time_interleaved", lambda *a, **k: TIME_INTERLEAVED(*a, **k, clock=clock))


def _planned(monkeypatch, seconds_per_example, noise, seed):
    _fake_machine(monkeypatch, seconds_per_example, noise, seed)
    p = planner.plan(get_backend("numpy"), (2, 4, 1, 1 << 20), "float32", TANH, parallel="threads")
    return (p.mode, p.chunk_size, p.workers, p.parallel), p.reason


def _jitter(spread):
    return lambda rng, w: 1.0 + spread * rng.random()


def _two_threads(speedup):
    """Chunks of 8,192 best; two threads ``speedup`` times one thread's rate."""
    return lambda c, w: (1.0 if c == 8192 else 1.3) * 1e-8 / (speedup if w == 2 else 1.0)


@pytest.mark.parametrize("speedup, expected", [(1.6, (8192, 2)), (1.05, (8192, 1))],
                         ids=["two threads clearly faster", "a tie within the margin"])
def test_planning_twice_on_the_same_machine_gives_the_same_plan(monkeypatch, speedup, expected):
    plans = [_planned(monkeypatch, _two_threads(speedup), _jitter(0.1), seed) for seed in (1, 2, 3)]
    assert {p for p, _ in plans} == {("chunks", *expected, "threads")}


def test_a_noisy_machine_falls_back_to_the_safe_plan_and_says_why(monkeypatch):
    def noise(rng, w):  # a second process takes the second thread's core away at random moments
        return 1.0 + 0.1 * rng.random() + (8.0 if w == 2 and rng.random() < 0.4 else 0.0)

    plan, reason = _planned(monkeypatch, _two_threads(1.6), noise, seed=0)
    assert plan == ("chunks", 8192, 1, "threads")
    assert "the noise rule kept it" in reason and "unstable" in reason


@pytest.mark.skipif(get_backend("numpy").default_workers < 2, reason="threads are compared on two cores or more")
def test_with_a_real_clock_each_plan_follows_the_rule(monkeypatch):
    # Speed is not checked (this machine may be busy), only that the decision is the rule's.
    for _ in range(2):
        monkeypatch.setattr(calibrations, "_calibrations", {})
        p = planner.plan(get_backend("numpy"), (2, 4, 1, 1 << 18), "float32", TANH, parallel="threads")
        chosen = (p.chunk_size, p.workers, p.parallel)
        alone = [k for k in p.measured if k[1] == 1 and k[0] <= 1 << 18]
        safe = min(alone, key=lambda k: 1 / p.measured[k])
        assert all(len(p.timings[k].samples) >= measuring.ROUNDS for k in p.measured)
        if chosen != safe:
            ok, why = measuring.replaces(p.timings[chosen], p.timings[safe], candidate_s=1 / p.measured[chosen],
                                         safe_s=1 / p.measured[safe])
            assert ok, why


# -- BLAS threads ---------------------------------------------------------------------------------
def _numpy_plan(shape, **options):
    return planner.plan(get_backend("numpy"), shape, "float64", TANH, **options)


def test_a_small_one_pass_step_runs_blas_on_one_thread_and_says_why():
    p = _numpy_plan((30, 32, 1, 569))  # the practitioner's breast cancer fit
    assert p.mode == "whole batch" and p.blas_threads == 1
    assert "BLAS on 1: the largest product has 5.46e+05 multiply-adds, too few to split" in p.reason
    assert "BLAS on 1 thread" in str(p)


def test_chunks_run_one_blas_thread_per_worker():
    assert _numpy_plan((2, 4, 1, 1 << 14), chunk_size=1024, workers=2).blas_threads == 1
    assert _numpy_plan((2, 4, 1, 1 << 14), chunk_size=1024, workers=1).blas_threads == 1


def test_a_large_one_pass_product_uses_every_core_only_where_measured_faster(monkeypatch):
    for module in (planner, calibrations):  # the cores the plan and its timings count
        monkeypatch.setattr(module, "cpu_cores", lambda: 2)
    fast = {1: STEADY, 2: _scaled(STEADY, 0.6)}
    monkeypatch.setattr(calibrations, "blas_calibration", lambda *a: fast)
    p = _numpy_plan((784, 512, 1, 4096), chunk_size=None)
    assert p.blas_threads == 2 and "2 threads measured 1.67x faster" in p.reason
    monkeypatch.setattr(calibrations, "blas_calibration", lambda *a: {1: STEADY, 2: _scaled(STEADY, 0.95)})
    p = _numpy_plan((784, 512, 1, 4096), chunk_size=None)
    assert p.blas_threads == 1 and "a tie" in p.reason


def test_blas_threads_are_planned_where_numpys_blas_computes():
    strict = planner.plan(get_backend("array_api_strict"), (30, 32, 1, 569), "float32", TANH)
    assert strict.blas_threads == 1  # array-api-strict computes with NumPy


def test_backends_that_thread_their_own_products_are_left_alone():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    assert torch is not None
    assert planner.plan(get_backend("torch", "cpu"), (30, 32, 1, 569), "float32", TANH).blas_threads is None


def test_the_plans_blas_threads_hold_while_a_fit_runs_and_the_callers_come_back():
    X, Y = np.random.default_rng(0).standard_normal((30, 569)), np.ones((1, 569))
    p = bc.initialize_parameters(30, 32, 1, seed=0)
    backend = get_backend("numpy")
    plan = _numpy_plan((30, 32, 1, 569))
    with threadpool_limits(2, user_api="blas"):
        strategy = building.build(plan, X, Y, backend.parameters_from_host(p, "float64"), TANH, 0.1, backend,
                                 "float64")
        with strategy.running():
            assert _blas_threads() == 1
        assert _blas_threads() == 2


# -- the products' orientation --------------------------------------------------------------------
def test_rows_transposed_are_laid_out_once_per_fit_as_the_products_run_fastest():
    rows = np.random.default_rng(0).standard_normal((569, 30))
    X = building.row_major(rows.T)
    assert X.flags.c_contiguous and np.array_equal(X, rows.T)
    already = np.ascontiguousarray(rows.T)
    assert building.row_major(already) is already


def test_a_fit_on_transposed_rows_gives_the_parameters_of_one_on_their_copy():
    rows = np.random.default_rng(0).standard_normal((600, 5))
    y = (rows[:, 0] > 0).astype(np.float64)[None, :]
    on_view = bc.nn_model(rows.T, y, 4, 50)
    on_copy = bc.nn_model(np.ascontiguousarray(rows.T), y, 4, 50)
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_array_equal(on_view[name], on_copy[name])


def test_a_plan_is_a_frozen_record_with_blas_threads():
    p = planner.Plan("whole batch", blas_threads=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.blas_threads = 2


# -- a busy machine: unstable for everyone, and still one candidate faster round by round ----------
def _paired(candidate, safe, rounds=7):
    return Timing(tuple(candidate), rounds), Timing(tuple(safe), rounds)


LOAD = (1.0, 3.0, 1.0, 2.5, 1.2, 3.5, 1.0, 2.0, 3.0)  # another process's load, round by round


def test_a_candidate_faster_in_every_round_by_the_margin_dominates():
    candidate, safe = _paired([0.6 * x for x in LOAD], LOAD)
    won, why = measuring.dominates(candidate, safe)
    assert won and "faster in 9 of 9 interleaved rounds, 1.67x in the median round (1.67x on the mean ratio)" in why


def test_one_round_lost_is_no_dominance():
    slower_once = [0.6 * x for x in LOAD[:-1]] + [LOAD[-1] * 1.01]
    won, why = measuring.dominates(*_paired(slower_once, LOAD))
    assert not won and why.startswith("faster in 8 of 9 interleaved rounds, 1.67x in the median round")


def test_every_round_won_within_the_margin_is_no_dominance():
    assert not measuring.dominates(*_paired([0.95 * x for x in LOAD], LOAD))[0]


def test_samples_of_different_rounds_or_too_few_rounds_are_not_compared():
    candidate, safe = Timing(tuple(0.6 * x for x in LOAD), 1), Timing(LOAD, 2)
    assert measuring.dominates(candidate, safe) == (False, "not timed in the same rounds")
    assert not measuring.dominates(*_paired([0.6 * x for x in LOAD[:5]], LOAD[:5]))[0]


def test_an_unstable_candidate_that_dominates_replaces_the_safe_choice_and_says_why():
    candidate, safe = _paired([0.6 * x for x in LOAD], LOAD)
    assert not candidate.stable and not safe.stable
    ok, why = measuring.replaces(candidate, safe)
    assert ok and "measured unstable" in why and "but faster in 9 of 9 interleaved rounds" in why
    unpaired = Timing(candidate.samples)
    ok, why = measuring.replaces(unpaired, safe)
    assert not ok and "not timed in the same rounds: the machine is too busy to tell" in why


def test_dominance_is_judged_on_the_fits_seconds():
    # The candidate timed twice the examples in each sample: per fit, it is 1.2x slower, not 1.67x faster.
    candidate, safe = _paired([1.2 * x for x in LOAD], LOAD)
    ok, why = measuring.replaces(candidate, safe, candidate_s=candidate.median * 2, safe_s=safe.median)
    assert not ok and "faster in 0 of 9" in why


def _rounds_of_load(levels, candidates_per_round):
    """Noise for _fake_machine: a load that changes from round to round and holds within one."""
    calls = iter(range(10**9))
    return lambda rng, w: levels[(next(calls) // candidates_per_round) % len(levels)] * (1.0 + 0.02 * rng.random())


def _calibrated_candidates():
    return len(calibrations._candidates(2, 4, 1, 4)) * 2  # chunk sizes of a 2-4-1 network in float32, 1 and 2 threads


@pytest.mark.parametrize("speedup, expected", [(1.6, (8192, 2)), (1.05, (8192, 1)), (1.0, (8192, 1))],
                         ids=["two threads clearly faster", "a tie within the margin", "no faster"])
def test_a_busy_machine_plans_what_is_faster_in_every_round_the_same_way_twice(monkeypatch, speedup, expected):
    plans = []
    for seed in (1, 2, 3):
        load = _rounds_of_load(np.random.default_rng(seed).choice([1.0, 2.0, 4.0], 40), _calibrated_candidates())
        plans.append(_planned(monkeypatch, _two_threads(speedup), load, seed))
    assert {p for p, _ in plans} == {("chunks", *expected, "threads")}
    if speedup > 1.5:
        assert all("measured unstable" in why and "but faster in" in why for _, why in plans), plans


def test_a_plan_lucky_in_most_rounds_does_not_win_on_a_busy_machine(monkeypatch):
    def lucky(rng, w):  # two threads 1.25x faster on the medians, but each call's load is its own:
        return (0.8 if w == 2 else 1.0) * rng.choice([1.0, 3.0])  # they win most rounds, not all

    for seed in (0, 3):
        (mode, _, workers, _), reason = _planned(monkeypatch, _two_threads(1.0), lucky, seed=seed)
        assert workers == 1 and "on 2 threads: it measured unstable" in reason and "too busy to tell" in reason
