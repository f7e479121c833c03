"""One planner decides how every fit runs, and says what it chose."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import backprop_core as bc
from backprop_core import planner
from backprop_core.backends import get_backend
from backprop_core.backends.numpy_backend import NumpyBackend

TANH = bc.get_activation("tanh")


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
    feasible = {k: r for k, r in p.measured.items() if k[0] * k[1] <= 1 << 18}
    assert (p.chunk_size, p.workers) == max(feasible, key=feasible.get)
    assert "calibrated here" in p.reason


def test_calibration_is_measured_once_per_network_and_dtype():
    backend = get_backend("numpy")
    first = planner.calibration(backend, 3, 5, 1, TANH, "float32")
    assert planner.calibration(backend, 3, 5, 1, TANH, "float32") is first
    assert all(c & (c - 1) == 0 and w >= 1 and rate > 0 for (c, w), rate in first.items())


def test_the_users_choices_win():
    assert _plan(chunk_size=None, shape=(2, 4, 1, 1 << 18)).mode == "whole batch"
    p = _plan(chunk_size=1000, workers=3)
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
    ({"chunk_size": 0}, "chunk_size .* must be a positive integer"),
    ({"workers": 0}, "workers must be a positive integer"),
    ({"batch_size": 2.5}, "batch_size must be a positive integer"),
    ({"batch_size": 10, "epochs": 0}, "epochs must be a positive integer"),
])
def test_impossible_plans_are_named(options, message):
    with pytest.raises(bc.InvalidInputError, match=message):
        _plan(**options)


def test_minibatch_that_would_not_fit_is_refused_before_training():
    with pytest.raises(bc.InvalidInputError, match="mini-batch training needs the data on the device"):
        _plan(_SmallGpu(free=1 << 10), shape=(2, 4, 1, 1 << 20), host_data=True, batch_size=64)


def test_every_entry_point_asks_the_planner(flower_data, caplog):
    X, Y = flower_data
    with caplog.at_level(logging.DEBUG, logger="backprop_core"):
        bc.nn_model(X, Y, 4, 10, chunk_size=100, workers=2)
    assert any("plan: chunks, chunks of 100, 2 threads" in r.getMessage() for r in caplog.records)
    model = bc.BackpropClassifier(num_iterations=10, chunk_size=100, workers=2).fit(X.T, Y[0])
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
