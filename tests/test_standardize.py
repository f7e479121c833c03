"""The estimator's ``standardize``: features scaled by what fit learnt, at fit and at predict.

Expected values come from NumPy written here (np.mean, np.std), never from
the estimator; model files are edited with np.load and np.savez.
"""

from __future__ import annotations

import warnings

import json
import pickle

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.datasets import blobs
from backprop_core.errors import InvalidInputError, ModelFileError

from backprop_core.backends import get_backend

from conftest import assert_close, lecture, tolerance


def spread_data(m=300, seed=0):
    """Two features far from 0 and of very different spread; a label a hidden layer can learn."""
    rng = np.random.default_rng(seed)
    X = np.c_[50 + 20 * rng.standard_normal(m), -3 + 0.01 * rng.standard_normal(m)]
    y = ((X[:, 0] - 50) * (X[:, 1] + 3) > 0).astype(int)
    return X, y


# -- what fit learns ------------------------------------------------------------------

def test_mean_and_scale_are_each_features_mean_and_standard_deviation(backend):
    X, y = spread_data()
    dtype = backend.default_dtype
    model = lecture(standardize=True, max_iter=20, backend=backend.name,
                    device=backend.requested_device)
    model.fit(backend.asarray(X, dtype), backend.asarray(y, "int32"))
    X_seen = X.astype(dtype)  # the statistics are computed where the data are, in their dtype
    # ... and come to the host as float64, whatever the backend.
    host = get_backend("numpy")
    assert_close(model.feature_mean_, X_seen.mean(axis=0, dtype=np.float64), host, "float64", **tolerance(dtype))
    assert_close(model.feature_scale_, X_seen.std(axis=0, dtype=np.float64), host, "float64", **tolerance(dtype))


def test_weighted_statistics_are_those_of_repeated_examples(backend):
    X, y = spread_data(m=60)
    repeats = np.arange(60) % 4  # 0 to 3 copies; weight 0 leaves an example out
    dtype = backend.default_dtype
    model = lecture(standardize=True, max_iter=20, backend=backend.name,
                    device=backend.requested_device)
    model.fit(backend.asarray(X, dtype), backend.asarray(y, "int32"), sample_weight=backend.asarray(repeats, dtype))
    X_repeated = np.repeat(X.astype(dtype), repeats, axis=0)
    host = get_backend("numpy")
    assert_close(model.feature_mean_, X_repeated.mean(axis=0, dtype=np.float64), host, "float64", **tolerance(dtype))
    assert_close(model.feature_scale_, X_repeated.std(axis=0, dtype=np.float64), host, "float64", **tolerance(dtype))


def test_a_feature_constant_where_the_weight_is_not_zero_gets_scale_one():
    X, y = spread_data(m=60)
    weights = np.ones(60)
    X[:, 1], X[0, 1], weights[0] = 0.1, 5.0, 0.0  # the one different value has weight 0
    model = lecture(standardize=True, max_iter=20).fit(X, y, sample_weight=weights)
    assert model.feature_scale_[1] == 1.0


def test_a_constant_feature_gets_scale_one():
    X, y = spread_data()
    X[:, 1] = 0.1  # 0.1 is not exact in binary: its computed spread is round-off, not 0
    model = lecture(standardize=True, max_iter=20).fit(X, y)
    np.testing.assert_allclose(model.feature_mean_, [X[:, 0].mean(), 0.1])
    np.testing.assert_allclose(model.feature_scale_, [X[:, 0].std(), 1.0])


@pytest.mark.parametrize("scale", [1e160, 1e300])  # the variance overflows float64; the spread does not
def test_a_spread_whose_variance_overflows_is_still_measured(scale):
    X, y = spread_data()
    plain = lecture(standardize=True, max_iter=200).fit(X, y)
    X[:, 0] *= scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        model = lecture(standardize=True, max_iter=200).fit(X, y)
    np.testing.assert_allclose(model.feature_mean_[0] / scale, plain.feature_mean_[0], rtol=1e-12)
    np.testing.assert_allclose(model.feature_scale_[0] / scale, plain.feature_scale_[0], rtol=1e-12)
    assert model.score(X, y) == plain.score(X[:, :] / [scale, 1.0], y)


def test_without_standardize_there_is_no_scaling():
    X, y = spread_data()
    with pytest.warns(UserWarning, match="features' scale"):  # such data are why standardize exists
        model = lecture(max_iter=20).fit(X, y)
    assert model.feature_mean_ is None and model.feature_scale_ is None


def test_standardize_must_be_a_boolean():
    X, y = spread_data()
    with pytest.raises(InvalidInputError, match="standardize must be True or False"):
        bc.BackpropClassifier(standardize="yes").fit(X, y)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
def test_a_standardizing_model_passes_check_estimator():
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(lecture(max_iter=200, standardize=True), on_fail=None)
    assert [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"] == []


# -- applied at fit and at predict ------------------------------------------------------

def test_fit_and_predict_see_the_standardized_features():
    X, y = spread_data()
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    scaled = lecture(standardize=True, max_iter=300).fit(X, y)
    by_hand = lecture(max_iter=300).fit(Z, y)
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(scaled.parameters_[name], by_hand.parameters_[name], rtol=1e-9, atol=1e-12)
    X_new = X[::7] + 1.5
    np.testing.assert_allclose(scaled.predict_proba(X_new),
                               by_hand.predict_proba((X_new - X.mean(axis=0)) / X.std(axis=0)), rtol=1e-9)


def test_blobs_train_well_only_standardized():
    """The README's advice: the built-in blobs (features spread over about +-10) need it."""
    X, Y = blobs()
    with pytest.warns(UserWarning, match="features' scale"):
        plain = lecture().fit(X.T, Y[0]).score(X.T, Y[0])  # the advice is gradient descent's
    scaled = lecture(standardize=True).fit(X.T, Y[0]).score(X.T, Y[0])
    assert plain < 0.75 and scaled > 0.95, (plain, scaled)


def test_a_failed_fit_keeps_the_scaling_it_had():
    X, y = spread_data()
    model = lecture(standardize=True, max_iter=20).fit(X, y)
    mean, scale = model.feature_mean_.copy(), model.feature_scale_.copy()
    with pytest.raises(ValueError):
        model.fit(np.c_[X, X], y[:10])
    np.testing.assert_array_equal(model.feature_mean_, mean)
    np.testing.assert_array_equal(model.feature_scale_, scale)


def test_a_pickled_model_keeps_its_scaling():
    X, y = spread_data()
    model = lecture(standardize=True, max_iter=200).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


# -- in the model file ------------------------------------------------------------------

def saved(tmp_path, **changes):
    """A standardized model saved, then its metadata edited with ``changes`` (None deletes a key)."""
    X, y = spread_data()
    model = lecture(standardize=True, max_iter=200).fit(X, y)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__meta__"][()]))
    for key, value in changes.items():
        target, _, name = key.rpartition(".")
        holder = meta[target] if target else meta
        if value is None:
            holder.pop(name)
        else:
            holder[name] = value
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return model, path, meta, X


def test_the_file_holds_mean_and_scale_as_lists_and_loads_them(tmp_path):
    model, path, meta, X = saved(tmp_path)
    assert meta["feature_mean"] == model.feature_mean_.tolist()
    assert meta["feature_scale"] == model.feature_scale_.tolist()
    assert meta["params"]["standardize"] is True
    loaded = bc.BackpropClassifier.load(path)
    np.testing.assert_array_equal(loaded.feature_scale_, model.feature_scale_)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


@pytest.mark.parametrize("changes, message", [
    ({"feature_scale": [1.0, 0.0]}, "feature_scale must be a list of positive finite numbers"),
    ({"feature_mean": ["a", 1.0]}, "feature_mean must be a list of finite numbers"),
    ({"feature_mean": [1.0, 2.0, 3.0], "feature_scale": [1.0, 1.0, 1.0]}, "for a model of 2 features"),
    ({"feature_scale": None}, "without the other"),
    ({"feature_mean": None, "feature_scale": None}, "standardize is true but feature_mean"),
    ({"params.standardize": False}, "standardize is not true"),
    ({"params.standardize": "yes"}, "hyperparameter standardize must be true or false"),
])
def test_bad_scaling_in_a_file_is_refused(tmp_path, changes, message):
    _, path, _, _ = saved(tmp_path, **changes)
    with pytest.raises(ModelFileError, match=message):
        bc.BackpropClassifier.load(path)
