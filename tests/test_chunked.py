"""Chunks summed in blocks that threads take as they free up: the same bits whoever takes which."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from backprop_core import building
from backprop_core.activations import get_activation
from backprop_core.backends import get_backend
from backprop_core.chunked import (BLOCK_SUMS_BYTES, MAX_BLOCKS, ChunkedGradients, block_bounds, chunk_bounds,
                                   sum_bytes)
from backprop_core.initialization import initial_parameters_host

NUMPY = get_backend("numpy")
TANH = get_activation("tanh")
NAMES = ("dW1", "db1", "dW2", "db2", "J")


def _problem(n0=3, n1=5, m=1000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m))
    Y = (rng.random((1, m)) > 0.5).astype(np.float64)
    return X, Y, initial_parameters_host(n0, n1, 1, "xavier", 1)


def _gradients(X, Y, params, chunk_size, workers, slow=None, calls=None):
    """The chunked gradients on ``workers`` threads; the ``slow`` one (an index) sleeps before each
    chunk, and ``calls[i]`` counts the chunks the i-th thread's function computed."""
    make = building.make_gradients(NUMPY, "buffered", TANH, (X.shape[0], params["W1"].shape[0], 1), "float64",
                                  chunk_size)
    made = []

    def counted(with_cost):
        index, gradients = len(made), make(with_cost)
        made.append(index)

        def run(*args):
            if calls is not None:
                calls[index] += 1
            if index == slow:
                time.sleep(0.01)
            return gradients(*args)
        return run

    chunked = ChunkedGradients(counted, chunk_size, backend=NUMPY, dtype="float64", workers=workers)
    with chunked.running():
        return chunked(params, X, Y, True)


# -- the blocks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("m, chunk_size", [(1000, 64), (1000, 1000), (100_000, 7), (5, 2)])
def test_blocks_hold_every_chunk_once_in_order(m, chunk_size):
    blocks = block_bounds(m, chunk_size, sum_bytes(3, 5, 1, 8))
    assert [chunk for block in blocks for chunk in block] == chunk_bounds(m, chunk_size)
    assert all(blocks) and len(blocks) <= MAX_BLOCKS


def test_the_blocks_sums_fit_in_their_memory_bound_however_wide_the_network():
    slot = sum_bytes(784, 512, 1, 8)
    blocks = block_bounds(1 << 20, 256, slot)
    assert len(blocks) * slot <= BLOCK_SUMS_BYTES and len(blocks) >= 1
    assert len(block_bounds(1 << 20, 256, 10 * BLOCK_SUMS_BYTES)) == 1  # even one slot over the bound: one block


# -- the same bits ---------------------------------------------------------------------------------
def test_sums_equal_the_one_pass_gradients_to_rounding():
    X, Y, params = _problem()
    got = _gradients(X, Y, params, 64, workers=2)
    expected = _gradients(X, Y, params, X.shape[1], workers=1)
    for name, a, b in zip(NAMES, got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("workers", [2, 3])
def test_the_bits_do_not_depend_on_how_many_threads_ran(workers):
    X, Y, params = _problem()
    for name, a, b in zip(NAMES, _gradients(X, Y, params, 64, workers), _gradients(X, Y, params, 64, 1)):
        assert np.array_equal(a, b), name


def test_a_slow_thread_takes_fewer_blocks_and_the_bits_stay_the_same():
    X, Y, params = _problem(m=2048)
    calls = [0, 0]
    slowed = _gradients(X, Y, params, 64, 2, slow=0, calls=calls)
    assert calls[0] < calls[1], f"the slow thread computed {calls[0]} chunks, the other {calls[1]}"
    assert sum(calls) == 2048 // 64
    for name, a, b in zip(NAMES, slowed, _gradients(X, Y, params, 64, 2)):
        assert np.array_equal(a, b), name


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a way to pin threads and two cores")
def test_each_thread_runs_on_a_core_of_its_own():
    """Unpinned, the scheduler woke both of a step's threads on one core, where they took turns."""
    cores = sorted(os.sched_getaffinity(0))
    X, Y, params = _problem(m=4096)
    make = building.make_gradients(NUMPY, "buffered", TANH, (3, 5, 1), "float64", 64)
    seen = {}

    def recorded(with_cost):
        gradients = make(with_cost)

        def run(*args):
            seen[threading.get_native_id()] = os.sched_getaffinity(0)
            time.sleep(0.001)  # a block outlasts the other threads' start: each takes some
            return gradients(*args)
        return run

    chunked = ChunkedGradients(recorded, 64, backend=NUMPY, dtype="float64", workers=len(cores))
    with chunked.running():
        for _ in range(3):
            chunked(params, X, Y, True)
    assert threading.get_native_id() not in seen, "the caller computed a block beside its threads"
    assert sorted(seen.values(), key=min) == [{core} for core in cores], seen


def test_a_failing_thread_fails_the_step_and_the_others_take_no_more_blocks():
    X, Y, params = _problem(m=4096)
    make = building.make_gradients(NUMPY, "buffered", TANH, (3, 5, 1), "float64", 64)
    taken, made = [], []

    def failing(with_cost):
        index, gradients = len(made), make(with_cost)
        made.append(index)

        def run(*args):
            taken.append(index)
            if index == 0:
                raise ValueError("a chunk failed")
            time.sleep(0.005)
            return gradients(*args)
        return run

    chunked = ChunkedGradients(failing, 64, backend=NUMPY, dtype="float64", workers=2)
    with chunked.running(), pytest.raises(ValueError, match="a chunk failed"):
        chunked(params, X, Y)
    # 64 chunks in 32 blocks: without the stop, the other thread would take all 31 left.
    assert len(taken) < 10, f"{len(taken)} chunks taken: the other thread went on taking blocks"
    assert not [t for t in threading.enumerate() if t.name.startswith("backprop-chunk")]


def test_one_worker_streams_the_next_chunk_before_using_the_current_one_across_blocks():
    events = []  # X's uploads and uses (X has 3 rows, Y 1)

    class Recording(type(NUMPY)):
        def upload(self, host, dtype):
            if host.shape[0] == 3:
                events.append("upload")
            ready = super().upload(host, dtype)
            if host.shape[0] == 3:
                get = ready.get
                ready.get = lambda: (events.append("use"), get())[1]
            return ready

    backend = Recording.__new__(Recording)
    backend.__dict__.update(NUMPY.__dict__)
    X, Y, params = _problem(m=64 * 40)  # 40 chunks in 32 blocks
    make = building.make_gradients(NUMPY, "buffered", TANH, (3, 5, 1), "float64", 64)
    chunked = ChunkedGradients(make, 64, backend=backend, dtype="float64", stream=True)
    with chunked.running():
        got = chunked(params, X, Y, True)
    uploads_before_use = [events[:i].count("upload") for i, e in enumerate(events) if e == "use"]
    assert uploads_before_use == [min(40, j + 2) for j in range(40)], "chunk j + 1 is on its way when j is used"
    for name, a, b in zip(NAMES, got, _gradients(X, Y, params, 64, 1)):
        assert np.array_equal(a, b), name
