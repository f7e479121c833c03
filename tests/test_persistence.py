"""Saving and loading: identical predictions, across backends, without pickle."""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc


def test_save_then_load_predicts_identically(tmp_path, flower_data):
    X, Y = flower_data
    model = bc.BackpropClassifier(hidden_units=5, num_iterations=500, seed=3).fit(X.T, Y[0])
    model.save(tmp_path / "model.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X.T), model.predict_proba(X.T))
    assert loaded.get_params() == model.get_params()
    assert loaded.cost_history_ == model.cost_history_


def test_load_onto_every_backend(tmp_path, flower_data, backend):
    X, Y = flower_data
    model = bc.BackpropClassifier(num_iterations=300).fit(X.T, Y[0])
    model.save(tmp_path / "model.npz")
    dtype = backend.default_dtype
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz", backend=backend.name,
                                        device=backend.requested_device, dtype=dtype)
    assert backend.owns(loaded.parameters_["W1"])
    P = loaded.predict_proba(X.T)  # NumPy in, NumPy out
    assert isinstance(P, np.ndarray)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(P, model.predict_proba(X.T), atol=tol)


def test_trained_elsewhere_loads_on_numpy(tmp_path, flower_data, backend):
    X, Y = flower_data
    model = bc.BackpropClassifier(num_iterations=200, backend=backend.name,
                                  device=backend.requested_device).fit(X.T, Y[0])
    model.save(tmp_path / "model.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz", backend="numpy")
    np.testing.assert_array_equal(loaded.predict(X.T), model.predict(X.T))


def test_files_that_are_not_models_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        bc.BackpropClassifier.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="not a backprop-core model"):
        bc.BackpropClassifier.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable"):
        bc.BackpropClassifier.load(tmp_path / "junk.npz")
    # An object array would need pickle to load: it is refused, never executed.
    np.savez(tmp_path / "pickled.npz", W1=np.array([object()]), __meta__=np.array("{}"))
    with pytest.raises(ValueError):
        bc.BackpropClassifier.load(tmp_path / "pickled.npz")


def test_saving_an_unfitted_model_is_refused(tmp_path):
    with pytest.raises(bc.NotFittedError):
        bc.BackpropClassifier().save(tmp_path / "m.npz")
