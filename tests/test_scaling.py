"""Chunked full batch, streamed chunks and mini-batches: the same equations, the same parameters."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.backends import get_backend
from backprop_core.backends.numpy_backend import NumpyBackend
from backprop_core.chunked import chunk_bounds

from conftest import assert_close, lecture, train_problem as _train


@pytest.mark.parametrize("chunk_size, workers, stream", [(1000, 1, False), (777, 2, False), (4096, 3, False),
                                                         (600, 1, True), (1500, 2, True)])
def test_chunked_matches_all_at_once(backend, problem, chunk_size, workers, stream):
    X, Y, p = problem
    dtype = backend.default_dtype
    whole = _train(backend, X, Y, p, dtype, chunk_size=None)
    chunked = _train(backend, X, Y, p, dtype, chunk_size=chunk_size, workers=workers, stream=stream)
    tol = {"rtol": 1e-10, "atol": 1e-13} if dtype == "float64" else {"rtol": 1e-4, "atol": 1e-6}
    for k in whole.parameters:
        assert_close(chunked.parameters[k], backend.to_numpy(whole.parameters[k]), backend, dtype,
                     err_msg=k, **tol)
    np.testing.assert_allclose([J for _, J in chunked.history], [J for _, J in whole.history], **tol)


def test_chunk_bounds_cover_the_examples_once():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(8, 4) == [(0, 4), (4, 8)]
    with pytest.raises(bc.InvalidInputError, match="chunk_size must be a positive integer"):
        chunk_bounds(10, 0)


def test_the_estimator_chunks_large_data_on_numpy_to_the_same_parameters(monkeypatch):
    from backprop_core.lowering import cpu_fused

    monkeypatch.setenv(cpu_fused.ENVIRONMENT, "0")  # chunks are the subject: not the fused step, one pass
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300_000, 2)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.float32)
    auto = lecture(max_iter=5, dtype="float32").fit(X, y)
    assert auto.plan_.mode == "chunks" and auto.plan_.chunk_size < 300_000
    with bc.execution_context(chunk_size=None):
        plain = lecture(max_iter=5, dtype="float32").fit(X, y)
    assert plain.plan_.mode == "whole batch"
    for k in plain.parameters_:
        np.testing.assert_allclose(auto.parameters_[k], plain.parameters_[k], rtol=1e-4, atol=1e-6)


class _TinyDevice(NumpyBackend):
    """A device that holds at most 10,000 numbers per array, to exercise the out-of-memory path."""

    name = "tiny"

    def asarray(self, host, dtype):
        if np.size(host) > 10_000:
            raise MemoryError(f"cannot allocate {np.size(host)} numbers")
        return super().asarray(host, dtype)


def test_a_chunk_that_does_not_fit_is_named_and_parameters_are_kept(problem):
    X, Y, p = problem
    tiny = _TinyDevice()
    ok = _train(tiny, X, Y, p, "float64", chunk_size=1000, stream=True)  # 3,000 numbers per chunk
    assert ok.n_iter == 20
    advice = r"smaller chunk_size than 4000 \(execution_context\(chunk_size=\.\.\.\) around the fit\)"
    with pytest.raises(bc.DeviceMemoryError, match=advice) as info:
        _train(tiny, X, Y, p, "float64", chunk_size=4000, stream=True)  # 12,000
    assert info.value.iteration == 0
    np.testing.assert_array_equal(info.value.parameters["W1"], p["W1"])


def test_minibatch_reaches_the_lecture_accuracy_and_is_reproducible(flower_data):
    X, Y = flower_data
    a = lecture(batch_size=64, max_iter=300, learning_rate_init=0.5, random_state=4).fit(X.T, Y[0])
    b = lecture(batch_size=64, max_iter=300, learning_rate_init=0.5, random_state=4).fit(X.T, Y[0])
    c = lecture(batch_size=64, max_iter=300, learning_rate_init=0.5, random_state=5).fit(X.T, Y[0])
    assert a.score(X.T, Y[0]) >= 0.9
    assert a.n_iter_ == 300 and a.n_steps_ == 300 * 7  # epochs, and ceil(400 / 64) updates each
    np.testing.assert_array_equal(a.parameters_["W1"], b.parameters_["W1"])
    assert not np.array_equal(a.parameters_["W1"], c.parameters_["W1"])


def test_minibatch_is_the_same_on_every_backend(backend, flower_data):
    X, Y = flower_data
    dtype = backend.default_dtype
    runs = [bc.train(be.asarray(X, dtype), be.asarray(Y, dtype),
                     be.parameters_from_host(bc.initialize_parameters(2, 4, 1, seed=0), dtype),
                     activation=bc.get_activation("tanh"), learning_rate=0.5, num_iterations=1, backend=be,
                     batch_size=50, epochs=3, seed=7)
            for be in (get_backend("numpy"), backend)]
    assert runs[1].n_iter == 3 * 8
    for k in runs[0].parameters:
        assert_close(runs[1].parameters[k], runs[0].parameters[k], backend, dtype, err_msg=k)


class _SmallSteps(NumpyBackend):
    """A device whose steps fail for more than 500 numbers of data, as a full GPU would."""

    name = "small-steps"

    def compile(self, fn):
        def guarded(params, X, Y):
            if np.size(X) > 500:
                raise MemoryError(f"cannot allocate for {np.size(X)} numbers")
            return fn(params, X, Y)

        return guarded


def test_a_minibatch_that_does_not_fit_is_named_and_parameters_are_kept(flower_data):
    X, Y = flower_data
    start = bc.initialize_parameters(2, 4, 1)
    with pytest.raises(bc.DeviceMemoryError, match="smaller batch_size than 300") as info:
        bc.train(X, Y, start, activation=bc.get_activation("tanh"), learning_rate=0.5, num_iterations=1,
                 backend=_SmallSteps(), batch_size=300, epochs=2)  # 600 numbers per batch
    assert info.value.iteration == 0
    np.testing.assert_array_equal(info.value.parameters["W1"], start["W1"])


class _RecordingUploads(NumpyBackend):
    """Logs when each chunk's upload starts and when it is first used."""

    name = "recording-uploads"

    def __init__(self, device=None):
        super().__init__(device)
        self.log = []

    def upload(self, host, dtype):
        log = self.log
        log.append("start")

        class Handle:
            def get(self):
                log.append("use")
                return np.asarray(host, dtype=dtype)

        return Handle()


def test_streaming_starts_the_next_upload_before_the_current_chunk_is_used(problem):
    X, Y, p = problem
    backend = _RecordingUploads()
    streamed = _train(backend, X, Y, p, "float64", chunk_size=1000, stream=True)
    whole = _train(get_backend("numpy"), X, Y, p, "float64", chunk_size=None)
    np.testing.assert_allclose(streamed.parameters["W1"], whole.parameters["W1"], rtol=1e-10)
    # X and Y of chunk 0 start, then X and Y of chunk 1, and only then is chunk 0 used.
    assert backend.log[:6] == ["start", "start", "start", "start", "use", "use"]
