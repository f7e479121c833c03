"""Every bad input raises an exception that names the problem, and loses nothing."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc
from conftest import lecture


@pytest.fixture()
def data(flower_data):
    X, Y = flower_data
    return X.T.copy(), Y[0].astype(float)


@pytest.fixture()
def fitted(data):
    X, y = data
    return lecture(max_iter=300).fit(X, y)


def _nan_at(X, i, j, value):
    X = X.copy()
    X[i, j] = value
    return X


def _sparse(X):
    import scipy.sparse

    return scipy.sparse.csr_matrix(X)


BAD_FITS = {  # id: (make the arguments from X and y, error, message); scikit-learn's words where it has them
    "fewer labels": (lambda X, y: (X[:-1], y), ValueError, r"inconsistent numbers of samples: \[399, 400\]"),
    "continuous y": (lambda X, y: (X, y - 0.5), ValueError, "Unknown label type: continuous"),
    "one class": (lambda X, y: (X, np.zeros_like(y)), ValueError, "only one class"),
    "NaN in y": (lambda X, y: (X, np.where(y > 0, np.nan, y)), ValueError, "Input y contains NaN"),
    "multiclass-multioutput y": (lambda X, y: (X, np.stack([y, 2 * y], axis=1)), ValueError,
                                 "y is multiclass-multioutput"),
    "strings and numbers in y": (lambda X, y: (X, np.array(["a", 1] * 200, dtype=object)), ValueError,
                                 "mixes labels|Mix of label input types"),
    "NaN in X": (lambda X, y: (_nan_at(X, 3, 1, np.nan), y), ValueError, "Input X contains NaN"),
    "inf in X": (lambda X, y: (_nan_at(X, 0, 0, np.inf), y), ValueError, "Input X contains infinity"),
    "no samples": (lambda X, y: (np.zeros((0, 2)), np.zeros(0)), ValueError, r"0 sample\(s\)"),
    "no features": (lambda X, y: (X[:, :0], y), ValueError, r"0 feature\(s\)"),
    "X 1-D": (lambda X, y: (X[:, 0], y), ValueError, "Expected 2D array, got 1D array"),
    "y 3-D": (lambda X, y: (X, y[:, None, None]), ValueError, "Found array with dim 3"),
    "complex X": (lambda X, y: (X.astype(complex), y), ValueError, "Complex data not supported"),
    "sparse X": (lambda X, y: (_sparse(X), y), TypeError, "Sparse data was passed for X, but dense data is required"),
    "ragged X": (lambda X, y: ([[1, 2], [3]], [0, 1]), ValueError, "inhomogeneous"),
    "X None": (lambda X, y: (None, y), ValueError, "X is None"),
    "y None": (lambda X, y: (X, None), ValueError, "requires y to be passed"),
}

BAD_WEIGHTS = {  # id: (make sample_weight from y, message)
    "too few": (lambda y: np.ones(len(y) - 1), r"sample_weight.shape == \(399,\), expected \(400,\)"),
    "negative": (lambda y: -np.ones(len(y)), "Negative values in data passed to `sample_weight`"),
    "all zero": (lambda y: np.zeros(len(y)), "at least one non-zero"),
    "NaN": (lambda y: np.full(len(y), np.nan), "Input sample_weight contains NaN"),
}

FITTED_ATTRIBUTES = ("classes_", "target_type_", "activation_", "output_", "n_features_in_", "n_outputs_",
                     "n_iter_", "cost_history_")


def _fails_and_keeps(fitted, args, error, message, **kw):
    before = {k: v.copy() for k, v in fitted.parameters_.items()}
    attributes = {name: getattr(fitted, name) for name in FITTED_ATTRIBUTES}
    with pytest.raises(error, match=message) as info:
        fitted.fit(*args, **kw)
    assert isinstance(info.value, bc.BackpropCoreError), "not one of the project's own errors"
    for k in before:
        np.testing.assert_array_equal(fitted.parameters_[k], before[k])
    for name, value in attributes.items():
        np.testing.assert_array_equal(getattr(fitted, name), value, err_msg=name)


@pytest.mark.parametrize("case", list(BAD_FITS))
def test_bad_fit_input_is_named_and_the_fitted_model_survives(data, fitted, case):
    make, error, message = BAD_FITS[case]
    _fails_and_keeps(fitted, make(*data), error, message)


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_bad_sample_weight_is_named_and_the_fitted_model_survives(data, fitted, case):
    make, message = BAD_WEIGHTS[case]
    X, y = data
    _fails_and_keeps(fitted, (X, y), ValueError, message, sample_weight=make(y))


@pytest.mark.parametrize("case", ["negative", "too few"])
def test_bad_sample_weight_on_a_device_is_named(case):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    X = torch.asarray(np.random.default_rng(0).standard_normal((40, 2)))
    y = torch.asarray(np.arange(40) % 2)
    w = torch.asarray(-np.ones(40) if case == "negative" else np.ones(39))
    with pytest.raises(ValueError, match="non-negative" if case == "negative" else r"shape \(39,\)"):
        lecture(max_iter=5).fit(X, y, sample_weight=w)


def test_bad_labels_on_a_device_are_named():
    torch = pytest.importorskip("torch", reason="torch is not installed")
    X = torch.asarray(np.random.default_rng(0).standard_normal((40, 2)))
    model = lecture(max_iter=5)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        model.fit(X, torch.linspace(0, 1, 40, dtype=torch.float64))
    with pytest.raises(ValueError, match="Input y contains NaN"):
        model.fit(X, torch.full((40,), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="only one class"):
        model.fit(X, torch.zeros(40))
    with pytest.raises(ValueError, match="multilabel indicator holds 0 and 1 only"):
        model.fit(X, torch.full((40, 2), 2.0))


def test_arrays_on_two_devices_train_where_X_is():
    # As in scikit-learn: y (and sample_weight) follow X's library and device.
    xs = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    X = xs.asarray(np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]]), device=xs.Device("CPU_DEVICE"))
    y = xs.asarray(np.array([0.0, 1.0, 0.0, 1.0]), device=xs.Device("device1"))
    model = lecture(max_iter=5, backend="array_api_strict").fit(X, y)
    assert model.predict(X).device == X.device


def test_the_functional_api_refuses_X_and_Y_on_two_devices_naming_both():
    xs = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    X = xs.asarray(np.array([[0.0, 1.0, 2.0, 3.0]]), device=xs.Device("CPU_DEVICE"))
    Y = xs.asarray(np.array([[0.0, 1.0, 0.0, 1.0]]), device=xs.Device("device1"))
    with pytest.raises(bc.InvalidInputError, match="X is on device CPU_DEVICE but Y is on device device1"):
        bc.nn_model(X, Y, 2, 5, backend="array_api_strict")


def test_the_functional_api_refuses_X_and_Y_of_two_libraries_naming_both():
    xs = pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    Y = xs.asarray(np.array([[0.0, 1.0, 0.0, 1.0]]))
    with pytest.raises(bc.InvalidTypeError, match="X is a numpy array but Y is a array_api_strict array"):
        bc.nn_model(np.array([[0.0, 1.0, 2.0, 3.0]]), Y, 2, 5)


@pytest.mark.parametrize("params, message", [
    ({"hidden_units": 0}, "hidden_units must be a positive integer"),
    ({"hidden_units": 2.5}, "hidden_units must be a positive integer"),
    ({"learning_rate_init": 0.0}, "learning_rate_init must be a positive"),
    ({"learning_rate_init": -1.0}, "learning_rate_init must be a positive"),
    ({"learning_rate_init": float("nan")}, "learning_rate_init must be a positive"),
    ({"max_iter": 0}, "max_iter must be a positive integer"),
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
    Xi = np.round(X * 10).astype(np.int64)  # features of tens: a learning rate for their scale
    model = lecture(max_iter=200, learning_rate_init=0.01).fit(Xi, y.astype(bool))
    assert model.parameters_["W1"].dtype == np.float64
    assert model.predict(Xi).dtype == np.bool_  # labels of the kind fitted
    labels = lecture(max_iter=200).fit(X, y.astype(np.uint8))
    assert labels.score(X, y) > 0.5


def test_unavailable_backend_says_what_to_install(data):
    X, y = data
    with pytest.raises(bc.BackendUnavailableError, match="install|GPU"):
        bc.BackpropClassifier(backend="cupy").fit(X, y)


def test_prediction_input_is_checked(fitted):
    with pytest.raises(ValueError, match="X has 3 features, but BackpropClassifier is expecting 2 features"):
        fitted.predict(np.ones((5, 3)))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        fitted.predict(np.array([[np.nan, 1.0]]))
    with pytest.raises(bc.NotFittedError, match="not fitted"):
        bc.BackpropClassifier().predict(np.ones((2, 2)))


def test_prediction_input_on_a_device_is_checked(fitted):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    with pytest.raises(ValueError, match="X has 3 features, but BackpropClassifier is expecting 2 features"):
        fitted.predict(torch.ones((5, 3), dtype=torch.float64))
    with pytest.raises(ValueError, match="X contains NaN"):
        fitted.predict(torch.tensor([[float("nan"), 1.0]], dtype=torch.float64))


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


# -- masked, sparse and big-endian arrays; seeds and cost reads -----------------------------------
def _masked(a):
    masked = np.ma.masked_array(a, mask=np.zeros(a.shape, dtype=bool))
    masked.mask.flat[0] = True
    return masked


FUNCTIONAL_ARRAYS = {  # id: (call with X (2, m), Y (1, m)) -> refused with the message
    "masked X": (lambda X, Y: bc.nn_model(_masked(X), Y, 4, 10), "X is a NumPy masked array.*fill them"),
    "masked Y": (lambda X, Y: bc.nn_model(X, _masked(Y), 4, 10), "Y is a NumPy masked array.*fill them"),
    "masked X to predict": (lambda X, Y: bc.predict(bc.initialize_parameters(2, 4, 1), _masked(X)),
                            "X is a NumPy masked array.*fill them"),
    "sparse X": (lambda X, Y: bc.nn_model(_sparse(X), Y, 4, 10), "Sparse data was passed for X, but dense data"),
    "sparse Y": (lambda X, Y: bc.nn_model(X, _sparse(Y), 4, 10), "Sparse data was passed for Y, but dense data"),
    "sparse X to predict": (lambda X, Y: bc.predict(bc.initialize_parameters(2, 4, 1), _sparse(X)),
                            "Sparse data was passed for X, but dense data"),
}


@pytest.mark.parametrize("case", list(FUNCTIONAL_ARRAYS))
def test_masked_and_sparse_arrays_are_refused_by_name(flower_data, case):
    call, message = FUNCTIONAL_ARRAYS[case]
    with pytest.raises(TypeError, match=message) as info:
        call(*flower_data)
    assert isinstance(info.value, bc.BackpropCoreError), "not one of the project's own errors"


@pytest.mark.parametrize("fit", [lambda X, Y: lecture(max_iter=10).fit(X.T, Y[0]),
                                 lambda X, Y: bc.nn_model(X, Y, 4, 10, backend="torch")],
                         ids=["estimator", "nn_model"])
def test_a_sparse_torch_tensor_is_refused_by_name(flower_data, fit):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    X, Y = flower_data
    with pytest.raises(TypeError, match=r"Sparse data was passed for X \(a torch tensor of layout torch.sparse_coo\)"
                                        r".*'.to_dense\(\)'") as info:
        fit(torch.from_numpy(X).to_sparse(), torch.from_numpy(Y))
    assert isinstance(info.value, bc.BackpropCoreError)


def test_big_endian_arrays_are_numbers(flower_data):
    X, Y = flower_data
    swapped = bc.nn_model(X.astype(">f8"), Y.astype(">i4"), 4, 50)
    native = bc.nn_model(X, Y, 4, 50)
    for k in native:
        np.testing.assert_array_equal(swapped[k], native[k])
    model = lecture(max_iter=50).fit(X.T.astype(">f8"), Y[0].astype(">i4"))
    np.testing.assert_array_equal(model.parameters_["W1"], native["W1"])


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_a_bad_seed_is_named(flower_data, seed):
    X, Y = flower_data
    with pytest.raises(ValueError, match="seed must be a non-negative integer or None"):
        bc.nn_model(X, Y, 4, 10, seed=seed)
    with pytest.raises(ValueError, match="seed must be a non-negative integer or None"):
        lecture(max_iter=10, seed=seed).fit(X.T, Y[0])


def test_cost_every_zero_is_named_everywhere(flower_data):
    from backprop_core.activations import get_activation
    from backprop_core.backends import get_backend

    X, Y = flower_data
    message = "cost_every must be a positive integer, got 0"
    with pytest.raises(ValueError, match=message):
        bc.nn_model(X, Y, 4, 10, cost_every=0)
    with pytest.raises(ValueError, match=message):
        lecture(max_iter=10, cost_every=0).fit(X.T, Y[0])
    with pytest.raises(ValueError, match=message):
        bc.train(X, Y.astype(float), bc.initialize_parameters(2, 4, 1), activation=get_activation("tanh"),
                 learning_rate=1.2, num_iterations=10, backend=get_backend("numpy"), cost_every=0)


def test_the_estimator_refuses_a_masked_X_by_name(data):
    X, y = data
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    masked.mask[0, 0] = True
    with pytest.raises(TypeError, match="masked array"):
        lecture(max_iter=5).fit(masked, y)


def test_the_estimator_names_a_bad_seed_before_early_stopping_splits(data):
    X, y = data
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        bc.BackpropClassifier(batch_size=None, num_iterations=5, early_stopping=True, seed=-1).fit(X, y)


def test_a_sparse_y_given_to_the_estimator_is_refused_naming_y(flower_data):
    sparse = pytest.importorskip("scipy.sparse", reason="scipy is not installed")
    X, Y = flower_data
    with pytest.raises(TypeError, match="Sparse data was passed for y, but dense data") as info:
        lecture(max_iter=10).fit(X.T, sparse.csr_matrix(Y.T))
    assert isinstance(info.value, bc.BackpropCoreError)
