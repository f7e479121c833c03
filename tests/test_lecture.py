"""The lecture's own results on the flower data."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc


def accuracy(parameters, X, Y):
    return float(np.mean(bc.predict(parameters, X) == Y))


def test_four_tanh_units_reach_ninety_percent(flower_data):
    X, Y = flower_data
    parameters = bc.nn_model(X, Y, n_h=4, num_iterations=10000, learning_rate=1.2)
    assert accuracy(parameters, X, Y) >= 0.90


def test_logistic_regression_cannot(flower_data):
    # The network with its hidden layer removed is logistic regression; trained on the
    # same data it stays near chance, as in the lecture (47%).
    X, Y = flower_data
    w, b = np.zeros((1, 2)), 0.0
    for _ in range(5000):
        A = 1 / (1 + np.exp(-(w @ X + b)))
        w -= 1.2 * (A - Y) @ X.T / 400
        b -= 1.2 * float(np.mean(A - Y))
    acc = float(np.mean(((w @ X + b) > 0) == Y))
    assert 0.4 <= acc <= 0.6


@pytest.mark.parametrize("n_h, low, high", [(1, 0.6, 0.8), (2, 0.6, 0.8), (3, 0.88, 1.0), (4, 0.88, 1.0),
                                            (5, 0.88, 1.0), (20, 0.88, 1.0), (50, 0.88, 1.0)])
def test_hidden_size_sweep(flower_data, n_h, low, high):
    X, Y = flower_data
    parameters = bc.nn_model(X, Y, n_h=n_h, num_iterations=5000)
    assert low <= accuracy(parameters, X, Y) <= high


def test_step_by_step_like_the_exercise(flower_data):
    X, Y = flower_data
    n_x, n_h, n_y = bc.layer_sizes(X, Y)
    assert (n_x, n_h, n_y) == (2, 4, 1)
    parameters = bc.initialize_parameters(n_x, n_h, n_y)
    costs = []
    for _ in range(200):
        A2, cache = bc.forward_propagation(X, parameters)
        costs.append(bc.compute_cost(A2, Y))
        grads = bc.backward_propagation(parameters, cache, X, Y)
        parameters = bc.update_parameters(parameters, grads, learning_rate=1.2)
    assert isinstance(costs[0], float)
    assert costs[-1] < costs[0]
    assert set(cache) == {"Z1", "A1", "Z2", "A2"}
    assert set(grads) == {"dW1", "db1", "dW2", "db2"}
    np.testing.assert_allclose(parameters["W1"], bc.nn_model(X, Y, 4, 200)["W1"], rtol=1e-12)


def test_compute_cost_is_finite_when_a2_saturates():
    Y = np.array([[1, 0, 1]])
    A2 = np.array([[0.0, 1.0, 1.0]])
    assert np.isfinite(bc.compute_cost(A2, Y))
