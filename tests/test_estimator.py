"""The scikit-learn-style estimator."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.estimator import LECTURE
from conftest import lecture


def test_fit_predict_score(flower_data):
    X, Y = flower_data
    model = bc.BackpropClassifier(**LECTURE).fit(X.T, Y[0])  # the course's network, the course's accuracy
    assert model.score(X.T, Y[0]) >= 0.9
    P = model.predict_proba(X.T)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(model.predict(X.T), model.classes_[(P[:, 1] > 0.5).astype(int)])
    assert model.n_iter_ == 10000 and model.n_features_in_ == 2 and model.n_outputs_ == 1
    assert model.cost_history_[-1][0] == 10000
    assert model.loss_curve_ == [J for _, J in model.cost_history_]
    assert model.output_ == "sigmoid" and model.activation_ == "tanh" and model.target_type_ == "binary"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtypes(flower_data, dtype):
    X, Y = flower_data
    model = lecture(max_iter=500, dtype=dtype).fit(X.T, Y[0])
    assert model.parameters_["W1"].dtype == np.dtype(dtype)
    assert model.predict_proba(X.T).dtype == np.dtype(dtype)


def test_default_dtype_is_float64_on_cpu_and_float32_on_gpu_backends():
    assert bc.get_backend("numpy").default_dtype == "float64"
    assert bc.backends.make_backend("cupy").default_dtype == "float32"  # on_gpu needs no import


def test_lists_are_accepted(flower_data):
    model = lecture(max_iter=50).fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    assert model.predict([[0.0, 1.0]]).shape == (1,)


def test_nn_model_and_the_lecture_preset_train_the_same_network(flower_data):
    # nn_model's defaults are the lecture's, as LECTURE's are: the same weights, step for step
    X, Y = flower_data
    functional = bc.nn_model(X, Y, 4, 300)
    estimator = bc.BackpropClassifier(**(LECTURE | {"max_iter": 300})).fit(X.T, Y[0])
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(estimator.parameters_[name], functional[name], rtol=1e-12, err_msg=name)


def test_the_defaults_are_the_practitioners_and_the_lecture_is_a_preset():
    from backprop_core.estimator import PRACTITIONER

    defaults = bc.BackpropClassifier().get_params()
    assert PRACTITIONER == {name: defaults[name] for name in PRACTITIONER} == dict(
        hidden_units=100, activation="relu", optimizer="adam", learning_rate_init=0.001, max_iter=200, alpha=1e-4,
        batch_size="auto", init="xavier", n_iter_no_change=10, tol=1e-4)  # MLPClassifier()'s
    assert LECTURE == dict(hidden_units=4, activation="tanh", optimizer="gd", learning_rate_init=1.2, max_iter=10000,
                           alpha=0.0, batch_size=None, init="normal", n_iter_no_change=None, tol=1e-4)


def test_params_protocol():
    model = bc.BackpropClassifier(hidden_units=7)
    assert model.get_params()["hidden_units"] == 7
    assert model.set_params(learning_rate=0.5) is model and model.learning_rate == 0.5
    assert repr(model) == "BackpropClassifier(hidden_units=7, learning_rate=0.5)"
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        model.set_params(bogus=1)


def test_sklearn_clone_and_cross_validation(flower_data):
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_score

    X, Y = flower_data
    model = lecture(max_iter=1000)
    assert clone(model).get_params() == model.get_params()
    # The flower's points are ordered along the petals: shuffle, or a fold is unseen territory.
    scores = cross_val_score(model, X.T, Y[0], cv=KFold(3, shuffle=True, random_state=0))
    assert np.all(scores > 0.85)
