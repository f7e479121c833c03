"""Worker counts are capped by the cores and by the chunks, saying so when a request is lowered."""

from __future__ import annotations

import warnings

import pytest

from backprop_core import chunked, planner
from backprop_core.activations import get_activation
from backprop_core.backends import get_backend

NUMPY, TANH = get_backend("numpy"), get_activation("tanh")


def _plan(m, **kw):
    return planner.plan(NUMPY, (2, 4, 1, m), "float64", TANH, **kw)


@pytest.fixture
def cores(monkeypatch):
    monkeypatch.setattr(chunked, "cpu_cores", lambda: 4)  # a machine of 4 cores, whatever this one has


@pytest.mark.parametrize("parallel", ["threads", "processes"])
def test_more_workers_than_cores_are_lowered_to_the_cores_with_a_warning(cores, parallel):
    with pytest.warns(UserWarning, match=r"^200 workers asked for, 4 used: this process may run on 4 cores; "):
        plan = _plan(100_000, chunk_size=1000, workers=200, parallel=parallel)
    assert plan.workers == 4


def test_more_workers_than_chunks_are_lowered_to_the_chunks_with_a_warning(cores):
    with pytest.warns(UserWarning, match=r"^3 workers asked for, 2 used: the batch has 2 chunks; "):
        plan = _plan(2000, chunk_size=1000, workers=3, parallel="processes")
    assert plan.workers == 2


def test_the_default_is_lowered_to_the_chunks_quietly(cores):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _plan(2000, chunk_size=1000).workers == min(NUMPY.default_workers, 2)


def test_a_request_within_both_is_kept_quietly(cores):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _plan(100_000, chunk_size=1000, workers=3, parallel="processes").workers == 3
