"""Properties that must hold for any shapes and values (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from backprop_core import equations
from backprop_core.activations import ACTIVATIONS, get_activation
from backprop_core.backends import get_backend
from backprop_core.chunked import ChunkedGradients
from backprop_core.initialization import initial_parameters_host
from backprop_core.strategies import make_equations_gradients

shapes = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 3), st.integers(1, 60))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, chunk=st.integers(1, 70), workers=st.integers(1, 3),
       activation=st.sampled_from(sorted(ACTIVATIONS)), seed=st.integers(0, 2**31))
def test_chunks_sum_to_the_whole_batch(shape, chunk, workers, activation, seed):
    n0, n1, n2, m = shape
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n0, m))
    Y = (rng.random((n2, m)) > 0.5).astype(float)
    p = initial_parameters_host(n0, n1, n2, "xavier", seed)
    g = get_activation(activation)
    whole = equations.gradients(X, Y, p["W1"], p["b1"], p["W2"], p["b2"], g, with_cost=True)
    backend = get_backend("numpy")
    chunked = ChunkedGradients(make_equations_gradients(backend, g), chunk, backend=backend, dtype="float64",
                               workers=workers)
    with chunked.running():
        parts = chunked(p, X, Y, with_cost=True)
    for a, b in zip(whole, parts):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


@settings(max_examples=60, deadline=None)
@given(z=st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=1, max_size=20),
       y=st.integers(0, 1))
def test_cost_from_logits_is_finite_and_nonnegative(z, y):
    Z2 = np.array([z])
    Y = np.full_like(Z2, float(y))
    with np.errstate(over="raise", invalid="raise"):
        J = float(equations.cost_from_logits(Z2, Y))
    assert np.isfinite(J) and J >= 0


@settings(max_examples=40, deadline=None)
@given(z=st.lists(st.floats(-700, 700), min_size=1, max_size=20))
def test_sigmoid_is_in_the_unit_interval_and_symmetric(z):
    Z = np.array(z)
    A = equations.sigmoid(Z)
    assert np.all((A >= 0) & (A <= 1))
    np.testing.assert_allclose(A + equations.sigmoid(-Z), 1.0, atol=1e-15)
