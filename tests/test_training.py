"""The training loop: history, divergence, interruption, and no per-iteration host reads."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.activations import get_activation
from backprop_core.backends import get_backend
from conftest import lecture


def _setup(flower_data, backend_name="numpy", device=None):
    backend = get_backend(backend_name, device)
    X, Y = flower_data
    dtype = backend.default_dtype
    p = bc.initialize_parameters(2, 4, 1, backend=backend, dtype=dtype)
    return backend, backend.asarray(X, dtype), backend.asarray(Y, dtype), p


def test_history_records_every_k_and_the_final_cost(flower_data):
    backend, X, Y, p = _setup(flower_data)
    result = bc.train(X, Y, p, activation=get_activation("tanh"), learning_rate=1.2,
                      num_iterations=250, backend=backend, cost_every=100)
    assert [i for i, _ in result.history] == [0, 100, 200, 250]
    costs = [J for _, J in result.history]
    assert costs[0] == pytest.approx(np.log(2), abs=1e-3)  # tiny weights: A2 ~ 0.5
    assert costs == sorted(costs, reverse=True)


def test_divergence_stops_with_advice_and_keeps_finite_parameters(flower_data):
    backend, X, Y, p = _setup(flower_data)
    with pytest.raises(bc.TrainingDivergedError, match="smaller learning rate") as info:
        bc.train(X, Y, p, activation=get_activation("relu"), learning_rate=1e12,
                 num_iterations=200, backend=backend, cost_every=1)
    kept = info.value.parameters
    assert all(np.all(np.isfinite(v)) for v in kept.values())
    assert not np.isfinite(info.value.history[-1][1])


def test_estimator_keeps_last_finite_parameters_after_divergence(flower_data):
    X, Y = flower_data
    model = lecture(activation="relu", learning_rate_init=1e12, max_iter=200, cost_every=1)
    with pytest.raises(bc.TrainingDivergedError):
        model.fit(X.T, Y[0])
    assert all(np.all(np.isfinite(v)) for v in model.parameters_.values())
    assert np.all(np.isfinite(model.predict_proba(X.T)))


def _ctrl_c_at(iteration):
    """A cost-read callback that presses Ctrl-C when the loop reads the cost of ``iteration``."""

    def callback(i, cost):
        if i == iteration:
            raise KeyboardInterrupt

    return callback


def test_interrupt_keeps_parameters_of_last_completed_iteration(flower_data):
    backend, X, Y, p = _setup(flower_data)
    run = dict(activation=get_activation("tanh"), learning_rate=1.2, backend=backend, cost_every=10)
    with pytest.raises(bc.TrainingInterrupted) as info:
        bc.train(X, Y, p, num_iterations=100, callback=_ctrl_c_at(30), **run)
    assert info.value.iteration == 30
    expected = bc.train(X, Y, p, num_iterations=30, **run).parameters
    for k in expected:
        np.testing.assert_array_equal(info.value.parameters[k], expected[k])


def test_estimator_keeps_parameters_when_interrupted(flower_data):
    X, Y = flower_data
    model = lecture(max_iter=1000, cost_every=10)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X.T, Y[0], callback=_ctrl_c_at(10))
    assert model.n_iter_ == 10
    assert model.predict(X.T).shape == (400,)


def test_loop_reads_the_device_only_every_k_iterations(flower_data, monkeypatch):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    backend, X, Y, p = _setup(flower_data, "torch", "cpu")
    reads = {"float": 0, "bool": 0, "item": 0}
    for name, attr in (("float", "__float__"), ("bool", "__bool__"), ("item", "item")):
        original = getattr(torch.Tensor, attr)

        def counting(self, *a, _name=name, _original=original, **kw):
            reads[_name] += 1
            return _original(self, *a, **kw)

        monkeypatch.setattr(torch.Tensor, attr, counting)
    bc.train(X, Y, p, activation=get_activation("tanh"), learning_rate=1.2,
             num_iterations=100, backend=backend, cost_every=25)
    # One check of the start parameters before the loop; in it, the cost at iterations 0, 25,
    # 50, 75 and the final cost.
    assert reads == {"float": 5, "bool": 1, "item": 0}


@pytest.mark.parametrize("activation", sorted(bc.ACTIVATIONS))
def test_every_activation_learns_the_flower(flower_data, activation):
    X, Y = flower_data
    # Each below 8 / 4.26 = 1.88, the flower's limit under the features' scale rule.
    lr = {"tanh": 1.2, "sigmoid": 1.8, "relu": 0.5, "leaky_relu": 0.5}[activation]
    model = lecture(hidden_units=10, activation=activation, learning_rate=lr,
                    max_iter=4000, init="xavier").fit(X.T, Y[0])
    assert model.score(X.T, Y[0]) >= 0.85


def test_multilabel_outputs_train_independently():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 2))
    y = np.stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] * X[:, 1] > 0], axis=1).astype(np.uint8)
    model = lecture(hidden_units=8, max_iter=3000, learning_rate_init=1.0).fit(X, y)
    assert model.predict(X).shape == (300, 3)
    assert model.predict_proba(X).shape == (300, 3)
    per_output = (model.predict(X) == y).mean(axis=0)
    assert np.all(per_output >= 0.9), per_output


@pytest.mark.parametrize("init", ["normal", "xavier", "he"])
def test_initialisation_is_seeded_and_scaled(init):
    a = bc.initialize_parameters(100, 50, 1, init=init, seed=3)
    b = bc.initialize_parameters(100, 50, 1, init=init, seed=3)
    c = bc.initialize_parameters(100, 50, 1, init=init, seed=4)
    np.testing.assert_array_equal(a["W1"], b["W1"])
    assert not np.array_equal(a["W1"], c["W1"])
    assert np.all(a["b1"] == 0) and np.all(a["b2"] == 0)
    expected = {"normal": 0.01, "xavier": np.sqrt(2 / 150), "he": np.sqrt(2 / 100)}[init]
    assert a["W1"].std() == pytest.approx(expected, rel=0.05)


def test_explicit_initial_parameters_are_used(flower_data):
    X, Y = flower_data
    start = bc.initialize_parameters(2, 4, 1, seed=11)
    a = bc.nn_model(X, Y, 4, 30, parameters=start)
    b = bc.nn_model(X, Y, 4, 30, seed=11)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
