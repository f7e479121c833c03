"""The equations against independent oracles, in float64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from backprop_core import equations
from backprop_core.activations import ACTIVATIONS, get_activation
from backprop_core.initialization import initial_parameters_host

ACTIVATION_NAMES = sorted(ACTIVATIONS)


def _cost(X, Y, p, g):
    _, _, Z2, _ = equations.forward(X, p["W1"], p["b1"], p["W2"], p["b2"], g)
    return float(equations.cost_from_logits(Z2, Y))


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
@pytest.mark.parametrize("n2", [1, 3])
def test_gradients_match_central_differences(activation, n2):
    rng = np.random.default_rng(7)
    n0, n1, m = 3, 5, 11
    X = rng.standard_normal((n0, m))
    Y = (rng.random((n2, m)) > 0.5).astype(np.float64)
    p = initial_parameters_host(n0, n1, n2, "xavier", seed=3)
    p["b1"] = rng.standard_normal((n1, 1)) * 0.3  # away from relu's kink at 0 for most units
    g = get_activation(activation)
    Z1, A1, Z2, A2 = equations.forward(X, p["W1"], p["b1"], p["W2"], p["b2"], g)
    grads = dict(zip(["W1", "b1", "W2", "b2"], equations.backward(X, Y, p["W2"], Z1, A1, A2, g)))
    h = 1e-6
    for name, value in p.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = {k: v.copy() for k, v in p.items()}, {k: v.copy() for k, v in p.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            numeric[idx] = (_cost(X, Y, plus, g) - _cost(X, Y, minus, g)) / (2 * h)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-8, err_msg=f"d{name} ({activation})")


@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_activation_derivative_matches_central_difference(activation):
    g = get_activation(activation)
    Z = np.linspace(-4, 4, 81)
    Z = Z[np.abs(Z) > 1e-3]  # relu has no derivative at 0
    h = 1e-6
    numeric = (g(Z + h) - g(Z - h)) / (2 * h)
    np.testing.assert_allclose(g.prime(Z, g(Z)), numeric, rtol=1e-6, atol=1e-9)


def test_activation_values():
    Z = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(get_activation("tanh")(Z), np.tanh(Z))
    np.testing.assert_allclose(get_activation("sigmoid")(Z), 1 / (1 + np.exp(-Z)))
    np.testing.assert_allclose(get_activation("relu")(Z), np.maximum(Z, 0))
    np.testing.assert_allclose(get_activation("leaky_relu")(Z), np.where(Z > 0, Z, 0.01 * Z))


def test_sigmoid_is_stable_at_extremes():
    Z = np.array([[-1000.0, -40.0, 0.0, 40.0, 1000.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = equations.sigmoid(Z)
    assert np.all(np.isfinite(A))
    np.testing.assert_allclose(A, [[0.0, np.exp(-40.0), 0.5, 1.0, 1.0]], rtol=1e-12, atol=0)


def test_cost_matches_textbook_formula_where_it_is_finite():
    rng = np.random.default_rng(0)
    Z2 = rng.standard_normal((2, 50)) * 3
    Y = (rng.random((2, 50)) > 0.5).astype(float)
    A2 = 1 / (1 + np.exp(-Z2))
    textbook = -np.sum(Y * np.log(A2) + (1 - Y) * np.log(1 - A2)) / 50
    assert float(equations.cost_from_logits(Z2, Y)) == pytest.approx(textbook, rel=1e-12)
    assert float(equations.cost_from_probabilities(A2, Y)) == pytest.approx(textbook, rel=1e-9)


def test_cost_is_finite_when_the_output_saturates():
    Z2 = np.array([[800.0, -800.0, 800.0, -800.0]])
    Y = np.array([[1.0, 0.0, 0.0, 1.0]])
    J = float(equations.cost_from_logits(Z2, Y))
    assert J == pytest.approx((800 + 800) / 4)  # wrong with full confidence costs |z| each
    A2 = np.array([[1.0, 0.0, 1.0, 0.0]])  # exactly saturated, as float64 sigmoid gives
    assert np.isfinite(float(equations.cost_from_probabilities(A2, Y)))
    assert float(equations.cost_from_probabilities(A2, Y)) > 10


def test_one_step_decreases_the_cost():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 40))
    Y = (X[:1] * X[1:] > 0).astype(float)
    p = initial_parameters_host(2, 4, 1, "xavier", seed=0)
    g = get_activation("tanh")
    *new, J0 = equations.step(X, Y, p["W1"], p["b1"], p["W2"], p["b2"], g, 0.1, with_cost=True)
    q = dict(zip(["W1", "b1", "W2", "b2"], new))
    assert _cost(X, Y, q, g) < float(J0)
    assert float(J0) == pytest.approx(_cost(X, Y, p, g))
