"""Every bad input raises an exception that names the problem, and loses nothing."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc


@pytest.fixture()
def data(flower_data):
    X, Y = flower_data
    return X.T.copy(), Y[0].astype(float)


@pytest.fixture()
def fitted(data):
    X, y = data
    return bc.BackpropClassifier(num_iterations=300).fit(X, y)


def _nan_at(X, i, j, value):
    X = X.copy()
    X[i, j] = value
    return X


BAD_FITS = {  # id: (make the arguments from X and y, error, message)
    "fewer labels": (lambda X, y: (X[:-1], y), ValueError, "400 samples|399 samples"),
    "labels 0 and 2": (lambda X, y: (X, y * 2), ValueError, "binary labels"),
    "labels -0.5 and 0.5": (lambda X, y: (X, y - 0.5), ValueError, "binary labels"),
    "NaN in X": (lambda X, y: (_nan_at(X, 3, 1, np.nan), y), ValueError, "X contains NaN or infinite"),
    "inf in X": (lambda X, y: (_nan_at(X, 0, 0, np.inf), y), ValueError, "X contains NaN or infinite"),
    "no samples": (lambda X, y: (np.zeros((0, 2)), np.zeros(0)), ValueError, "empty"),
    "no features": (lambda X, y: (X[:, :0], y), ValueError, "empty"),
    "X 1-D": (lambda X, y: (X[:, 0], y), ValueError, "X must be 2-D"),
    "y 3-D": (lambda X, y: (X, y[:, None, None]), ValueError, "y must be 1-D"),
    "complex X": (lambda X, y: (X.astype(complex), y), TypeError, "complex"),
    "ragged X": (lambda X, y: ([[1, 2], [3]], [0, 1]), ValueError, "ragged"),
    "X None": (lambda X, y: (None, y), ValueError, "X is None"),
}


def _fails_and_keeps(fitted, args, error, message):
    before = {k: v.copy() for k, v in fitted.parameters_.items()}
    with pytest.raises(error, match=message) as info:
        fitted.fit(*args)
    assert isinstance(info.value, bc.BackpropCoreError), "not one of the project's own errors"
    for k in before:
        np.testing.assert_array_equal(fitted.parameters_[k], before[k])


@pytest.mark.parametrize("case", list(BAD_FITS))
def test_bad_fit_input_is_named_and_the_fitted_model_survives(data, fitted, case):
    make, error, message = BAD_FITS[case]
    _fails_and_keeps(fitted, make(*data), error, message)


def test_arrays_of_two_libraries_are_refused(data, fitted):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    X, y = data
    _fails_and_keeps(fitted, (X, torch.asarray(y)), TypeError, "numpy array but y is a torch array")


def test_arrays_on_two_devices_are_refused():
    xs = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    X = xs.asarray(np.ones((4, 2)), device=xs.Device("CPU_DEVICE"))
    y = xs.asarray(np.array([0.0, 1.0, 0.0, 1.0]), device=xs.Device("device1"))
    with pytest.raises(ValueError, match="on device .* but y is on device"):
        bc.BackpropClassifier(num_iterations=5, backend="array_api_strict").fit(X, y)


@pytest.mark.parametrize("params, message", [
    ({"hidden_units": 0}, "hidden_units must be a positive integer"),
    ({"hidden_units": 2.5}, "hidden_units must be a positive integer"),
    ({"learning_rate": 0.0}, "learning_rate must be a positive"),
    ({"learning_rate": -1.0}, "learning_rate must be a positive"),
    ({"learning_rate": float("nan")}, "learning_rate must be a positive"),
    ({"num_iterations": 0}, "num_iterations must be a positive integer"),
    ({"activation": "softmax"}, "unknown activation 'softmax'"),
    ({"backend": "tensorflow"}, "unknown backend 'tensorflow'"),
    ({"init": "zeros"}, "unknown init 'zeros'"),
    ({"dtype": "float16"}, "dtype must be"),
])
def test_bad_hyperparameters_are_named(data, fitted, params, message):
    X, y = data
    before = fitted.parameters_["W1"].copy()
    with pytest.raises(ValueError, match=message):
        fitted.set_params(**params).fit(X, y)
    np.testing.assert_array_equal(fitted.parameters_["W1"], before)


def test_integer_and_boolean_inputs_are_cast(data):
    X, y = data
    Xi = np.round(X * 10).astype(np.int64)
    model = bc.BackpropClassifier(num_iterations=200).fit(Xi, y.astype(bool))
    assert model.parameters_["W1"].dtype == np.float64
    assert model.predict(Xi).dtype == np.float64
    labels = bc.BackpropClassifier(num_iterations=200).fit(X, y.astype(np.uint8))
    assert labels.score(X, y) > 0.5


def test_unavailable_backend_says_what_to_install(data):
    X, y = data
    with pytest.raises(bc.BackendUnavailableError, match="install|GPU"):
        bc.BackpropClassifier(backend="cupy").fit(X, y)


def test_prediction_input_is_checked(fitted):
    with pytest.raises(ValueError, match="3 features but the model was trained on 2"):
        fitted.predict(np.ones((5, 3)))
    with pytest.raises(ValueError, match="X contains NaN"):
        fitted.predict(np.array([[np.nan, 1.0]]))
    with pytest.raises(bc.NotFittedError, match="not fitted"):
        bc.BackpropClassifier().predict(np.ones((2, 2)))


def test_functional_api_checks(flower_data):
    X, Y = flower_data
    with pytest.raises(ValueError, match="Y must be 2-D"):
        bc.nn_model(X, Y[0], 4, 10)
    with pytest.raises(ValueError, match="X has 400 examples .* Y has 399"):
        bc.nn_model(X, Y[:, :-1], 4, 10)
    with pytest.raises(ValueError, match="n_h .* must be a positive integer"):
        bc.nn_model(X, Y, 0, 10)
    with pytest.raises(ValueError, match="n_x .* must be a positive integer"):
        bc.initialize_parameters(0, 4, 1)
    with pytest.raises(ValueError, match="learning_rate"):
        bc.update_parameters(bc.initialize_parameters(2, 4, 1), {}, learning_rate=-1)
    with pytest.raises(ValueError, match="missing"):
        bc.forward_propagation(X, {"W1": np.ones((4, 2))})
    with pytest.raises(ValueError, match="X has 3 features .* W1 expects 2"):
        bc.forward_propagation(np.ones((3, 5)), bc.initialize_parameters(2, 4, 1))
