"""Every plan kind runs BLAS on the threads its plan reports, and gives the caller's setting back.

The plans are those the planner returns on NumPy (:func:`backprop_core.planner.plan`), made here
directly so that each kind is tested whatever this machine's calibration would choose.  A spy on the
built strategy's step reads threadpoolctl's BLAS threads while the step runs.  The caller's setting is
always the other of 1 and 2 than the plan's, so a path that leaves it, or pins its own, fails.
"""

from __future__ import annotations

import signal
from dataclasses import replace

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import backprop_core as bc
from backprop_core import building, calibrations, lowering, measuring, planner, processes
from backprop_core.activations import get_activation
from backprop_core.backends import get_backend
from backprop_core.errors import TrainingInterrupted
from backprop_core.execution import execution_context
from backprop_core.planner import Plan
from backprop_core.training import train

TANH = get_activation("tanh")
M = 512  # examples: chunks of 128 give every worker chunks to share

#: id -> (plan as the planner returns it, optimizer).  Whole batch: chunk_size=None (equations) or a
#: buffered step of m (fused with the lecture's update; another rule sums one chunk of m);
#: chunks: chunk_size given (threads, processes; at least m: one chunk); streamed chunks: stream=True
#: with host data; mini-batch: batch_size;
#: the fused CPU step: what the planner's measured target returns.
PLANS = {
    "whole-batch-equations": (Plan("whole batch"), "gd"),
    "whole-batch-buffered": (Plan("whole batch", executor="buffered", chunk_size=M), "gd"),
    "whole-batch-buffered-adam": (Plan("whole batch", executor="buffered", chunk_size=M), "adam"),
    "chunks-1-thread": (Plan("chunks", executor="buffered", chunk_size=128, workers=1), "gd"),
    "chunks-2-threads": (Plan("chunks", executor="buffered", chunk_size=128, workers=2), "gd"),
    "chunks-2-threads-equations": (Plan("chunks", chunk_size=128, workers=2), "gd"),
    "one-chunk-of-m": (Plan("chunks", executor="buffered", chunk_size=M, workers=1), "gd"),
    "streamed-chunks": (Plan("streamed chunks", chunk_size=128, workers=1), "gd"),
    "processes": (Plan("chunks", executor=processes.EXECUTOR, chunk_size=128, workers=2,
                       parallel="processes"), "gd"),
    "mini-batch": (Plan("mini-batch", batch_size=128, epochs=2), "gd"),
    "cpu-fused": (Plan("whole batch", executor="cpu-fused", workers=1), "gd"),
}
#: The kinds whose step computes with NumPy's BLAS (the planner sets their threads).
PINNED = [k for k in PLANS if k != "cpu-fused"]


def _blas_threads() -> int:
    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def _other(threads: int) -> int:
    return 2 if threads == 1 else 1


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, M))
    Y = (X[:1] > 0).astype(np.float64)
    backend = get_backend("numpy")
    params = backend.parameters_from_host(bc.initialize_parameters(5, 8, 1, seed=0), "float64")
    return X, Y, params, backend


def _plan(kind: str, threads) -> tuple[Plan, str]:
    p, optimizer = PLANS[kind]
    if p.executor == "cpu-fused":
        target = lowering.find("cpu-fused")
        backend = get_backend("numpy")
        applies, why = target.applies(lowering.target.Fit(backend, (5, 8, 1), TANH,
                                                          "float64"))
        if not applies:
            pytest.skip(f"the fused CPU step does not run here: {why}")
    if p.parallel == "processes" and not processes.available():
        pytest.skip("worker processes cannot start on this system")
    return replace(p, blas_threads=threads), optimizer


@pytest.fixture
def seen(monkeypatch):
    """BLAS's threads at each step of the strategy built last while the test runs (a fit's: the
    planner's own timings build theirs before it), and its plan (``seen.plan``).  ``seen.fail`` set
    to a function makes that strategy's second step call it (after computing): one that raises, or
    sends a signal."""

    class Seen(list):
        fail = plan = None

    record = Seen()
    build = building.build

    def spied(p, *args, **kwargs):
        strategy = build(p, *args, **kwargs)
        steps = []
        record.clear()
        record.plan = p
        step = strategy.step

        def spy(params, i, with_cost):
            steps.append(_blas_threads())
            if record.plan is p:
                record.append(steps[-1])
            result = step(params, i, with_cost)
            if record.fail is not None and record.plan is p and len(steps) == 2:
                record.fail()
            return result

        strategy.step = spy
        return strategy

    monkeypatch.setattr(building, "build", spied)
    return record


def _fit(p: Plan, optimizer: str):
    X, Y, params, backend = _data()
    return train(X, Y, params, activation=TANH, learning_rate=0.1, num_iterations=4, backend=backend,
                 plan=p, optimizer=optimizer)


# -- inside the step: the plan's threads -------------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", PINNED)
def test_each_step_runs_blas_on_the_threads_the_plan_reports(kind, threads, seen):
    p, optimizer = _plan(kind, threads)
    with threadpool_limits(_other(threads), user_api="blas"):
        _fit(p, optimizer)
    assert seen and set(seen) == {threads}


@pytest.mark.parametrize("caller", [1, 2])
def test_a_step_without_numpys_blas_leaves_the_callers_threads(caller, seen):
    p, optimizer = _plan("cpu-fused", None)
    with threadpool_limits(caller, user_api="blas"):
        _fit(p, optimizer)
    assert seen and set(seen) == {caller}


def test_the_planner_leaves_blas_to_the_fused_cpu_step():
    p, _ = PLANS["cpu-fused"]
    threads, _ = planner.blas_plan(p, get_backend("numpy"), (5, 8, 1, M), "float64", TANH)
    assert threads is None


@pytest.mark.parametrize("kind", ["chunks-1-thread", "chunks-2-threads", "streamed-chunks", "processes"])
def test_the_planner_gives_chunks_one_blas_thread_per_worker_without_measuring(kind, monkeypatch):
    def measured(*args):
        raise AssertionError("a one-pass measurement for a plan of several chunks")

    monkeypatch.setattr(calibrations, "blas_calibration", measured)
    monkeypatch.setattr(planner, "cpu_cores", lambda: 2)
    p, _ = PLANS[kind]  # on a network whose one pass would be measured: 2.1e9 multiply-adds
    assert planner.blas_plan(p, get_backend("numpy"), (128, 256, 1, 1 << 16), "float64", TANH)[0] == 1


@pytest.mark.parametrize("optimizer", ["gd", "adam"])
def test_a_planned_pass_over_one_chunk_of_m_runs_on_the_cores_its_plan_measured(optimizer, seen, monkeypatch):
    """The reviewer's case from the planner itself: one chunk of m, every core measured faster."""
    for module in (planner, calibrations):  # the cores the plan and its timings count
        monkeypatch.setattr(module, "cpu_cores", lambda: 2)
    monkeypatch.setattr(calibrations, "blas_calibration", lambda *a: {1: measuring.Timing((2e-3,) * 9),
                                                                        2: measuring.Timing((1e-3,) * 9)})
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((64, M)), np.ones((1, M))  # 256 * 64 * 512: 8.4e6 multiply-adds
    backend = get_backend("numpy")
    params = backend.parameters_from_host(bc.initialize_parameters(64, 256, 1, seed=0), "float64")
    with threadpool_limits(1, user_api="blas"), execution_context(chunk_size=M):
        train(X, Y, params, activation=TANH, learning_rate=1e-3, num_iterations=2, backend=backend,
              optimizer=optimizer)
    assert seen and set(seen) == {2}


def test_a_planned_fit_on_any_backend_runs_its_plans_threads_or_the_callers(backend, seen):
    """NumPy and array-api-strict compute with NumPy's BLAS, pinned; the others thread their own."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((5, M)), (rng.random((1, M)) > 0.5).astype(np.float64)
    params = backend.parameters_from_host(bc.initialize_parameters(5, 8, 1, seed=0), "float32")
    with threadpool_limits(2, user_api="blas"), execution_context(chunk_size=None):
        train(backend.asarray(X, "float32"), backend.asarray(Y, "float32"), params, activation=TANH,
              learning_rate=0.1, num_iterations=2, backend=backend)
    assert seen and set(seen) == {2 if seen.plan.blas_threads is None else seen.plan.blas_threads}


def test_the_calibration_times_chunks_on_one_blas_thread_per_worker(monkeypatch):
    seen = []

    def timed(candidates, **options):  # the candidates' BLAS threads as they are timed
        for call in candidates.values():
            call()
            seen.append(_blas_threads())
        return {key: measuring.Timing((1e-3,)) for key in candidates}

    monkeypatch.setattr(measuring, "time_interleaved", timed)
    monkeypatch.setattr(calibrations, "_calibrations", {})
    with threadpool_limits(2, user_api="blas"):
        calibrations.calibration(get_backend("numpy"), 5, 8, 1, TANH, "float64")
        assert _blas_threads() == 2
    assert seen and set(seen) == {1}


# -- after the fit: the caller's setting, however the fit ends ------------------------------------------
@pytest.mark.parametrize("kind", list(PLANS))
def test_the_callers_threads_come_back_after_a_fit(kind, seen):
    p, optimizer = _plan(kind, 1 if kind in PINNED else None)
    with threadpool_limits(2, user_api="blas"):
        _fit(p, optimizer)
        assert _blas_threads() == 2


@pytest.mark.parametrize("kind", list(PLANS))
def test_the_callers_threads_come_back_after_an_exception(kind, seen):
    p, optimizer = _plan(kind, 1 if kind in PINNED else None)
    def fail():
        raise RuntimeError("raised by the test's spy")

    seen.fail = fail
    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(RuntimeError, match="the test's spy"):
            _fit(p, optimizer)
        assert _blas_threads() == 2


def _interrupt():
    raise KeyboardInterrupt


@pytest.mark.parametrize("ctrl_c", [_interrupt, lambda: signal.raise_signal(signal.SIGINT)],
                         ids=["KeyboardInterrupt", "SIGINT"])
@pytest.mark.parametrize("kind", list(PLANS))
def test_the_callers_threads_come_back_after_ctrl_c(kind, ctrl_c, seen, ctrl_c_raises):
    p, optimizer = _plan(kind, 1 if kind in PINNED else None)
    seen.fail = ctrl_c
    with threadpool_limits(2, user_api="blas"):
        with pytest.raises(TrainingInterrupted):
            _fit(p, optimizer)
        assert _blas_threads() == 2
