"""Saving and loading: identical predictions across backends, and saves that cannot lose a model."""

from __future__ import annotations

import json
import os
import sys
import threading
import zipfile

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.errors import InvalidInputError, ModelFileError
from backprop_core.backends import get_backend
from backprop_core.persistence import FORMAT, load_parameters, save_parameters

from conftest import assert_close, lecture


# -- the estimator's round trip ---------------------------------------------------------

def test_save_then_load_predicts_identically(tmp_path, flower_data):
    X, Y = flower_data
    model = lecture(hidden_units=5, max_iter=500, random_state=3).fit(X.T, Y[0])
    model.save(tmp_path / "model.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X.T), model.predict_proba(X.T))
    assert loaded.get_params() == model.get_params()
    assert loaded.cost_history_ == model.cost_history_


def test_load_onto_every_backend(tmp_path, flower_data, backend):
    X, Y = flower_data
    model = lecture(max_iter=300).fit(X.T, Y[0])
    model.save(tmp_path / "model.npz")
    dtype = backend.default_dtype
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz", backend=backend.name,
                                        device=backend.requested_device, dtype=dtype)
    assert backend.holds(loaded.parameters_["W1"])
    tol = 1e-12 if dtype == "float64" else 1e-5
    # NumPy in, NumPy out, in the dtype it was loaded in.
    assert_close(loaded.predict_proba(X.T), model.predict_proba(X.T), get_backend("numpy"), dtype,
                 rtol=1e-7, atol=tol)


def test_trained_elsewhere_loads_on_numpy(tmp_path, flower_data, backend):
    X, Y = flower_data
    model = lecture(max_iter=200, backend=backend.name,
                    device=backend.requested_device).fit(X.T, Y[0])
    model.save(tmp_path / "model.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz", backend="numpy")
    assert_close(loaded.predict(X.T), model.predict(X.T), get_backend("numpy"), "uint8", rtol=0, atol=0)


def test_numpy_scalar_hyperparameters_are_saved_as_json_numbers(tmp_path, flower_data):
    # As they come from a grid such as np.arange(1, 6) or np.linspace(0.1, 1.2, 12).
    X, Y = flower_data
    model = bc.BackpropClassifier(hidden_units=np.arange(1, 6)[3], learning_rate=np.float32(0.5),
                                  num_iterations=np.int32(50), seed=np.uint8(3), cost_every=np.int64(10),
                                  batch_size=None, optimizer="gd")
    model.fit(X.T, Y[0]).save(tmp_path / "model.npz")
    with zipfile.ZipFile(tmp_path / "model.npz") as z, z.open("__meta__.npy") as f:
        text = str(np.lib.format.read_array(f, allow_pickle=False))
    params = json.loads(text)["params"]
    assert (params["hidden_units"], params["learning_rate"], params["num_iterations"], params["seed"]) == (4, 0.5, 50, 3)
    assert type(params["hidden_units"]) is int and type(params["learning_rate"]) is float
    loaded = bc.BackpropClassifier.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(loaded.predict(X.T), model.predict(X.T))


def test_files_that_are_not_models_are_refused_by_the_estimator(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file"):
        bc.BackpropClassifier.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ModelFileError, match="other.npz .*members must be exactly"):
        bc.BackpropClassifier.load(tmp_path / "other.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ModelFileError, match="junk.npz .*not a zip archive"):
        bc.BackpropClassifier.load(tmp_path / "junk.npz")


@pytest.mark.parametrize("dtype", ["int8", "int64", "uint8", "bool", "float16", "complex128", "f2py"])
def test_load_casts_the_weights_only_to_float32_or_float64(tmp_path, flower_data, dtype):
    X, Y = flower_data
    lecture(max_iter=50).fit(X.T, Y[0]).save(tmp_path / "model.npz")
    with pytest.raises(InvalidInputError, match="'float32', 'float64' or None") as info:
        bc.BackpropClassifier.load(tmp_path / "model.npz", dtype=dtype)
    assert not isinstance(info.value, ModelFileError)  # the caller's argument is wrong, not the file
    for chosen in ("float32", "float64"):
        assert bc.BackpropClassifier.load(tmp_path / "model.npz", dtype=chosen).parameters_["W1"].dtype == chosen


def test_saving_an_unfitted_model_is_refused(tmp_path):
    with pytest.raises(bc.NotFittedError):
        bc.BackpropClassifier().save(tmp_path / "m.npz")


# -- saves that cannot lose a model ---------------------------------------------------------

def model(seed):
    rng = np.random.default_rng(seed)
    params = {"W1": rng.standard_normal((3, 2)), "b1": rng.standard_normal((3, 1)),
              "W2": rng.standard_normal((1, 3)), "b2": rng.standard_normal((1, 1))}
    meta = {"params": {"hidden_units": 3, "seed": seed}, "dtype": "float64", "y_ndim": 1, "n_iter": seed,
            "cost_history": [[0, 0.69]]}
    return params, meta


def assert_is(path, seed):
    params, meta = load_parameters(path)
    expected = model(seed)[0]
    for k in expected:
        np.testing.assert_array_equal(params[k], expected[k])
    assert meta["n_iter"] == seed


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "model.npz.tmp").symlink_to(victim)
    save_parameters(tmp_path / "model.npz", *model(1))
    assert victim.read_text() == "precious"
    assert_is(tmp_path / "model.npz", 1)


def test_each_save_writes_a_new_temporary_file_beside_the_target(tmp_path, monkeypatch):
    renamed = []
    replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renamed.append(os.fspath(src)), replace(src, dst)))
    for seed in (1, 2):
        save_parameters(tmp_path / "model.npz", *model(seed))
    assert len(set(renamed)) == 2
    assert all(os.path.dirname(name) == str(tmp_path) and name != f"{tmp_path}/model.npz.tmp" for name in renamed)


def test_a_link_at_the_target_is_replaced_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "model.npz").symlink_to(victim)
    save_parameters(tmp_path / "model.npz", *model(1))
    assert victim.read_text() == "precious"
    assert not (tmp_path / "model.npz").is_symlink()
    assert_is(tmp_path / "model.npz", 1)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644, 0o664])
def test_a_resave_keeps_the_files_permission_bits(tmp_path, mode):
    path = tmp_path / "model.npz"
    save_parameters(path, *model(1))
    path.chmod(mode)
    save_parameters(path, *model(2))
    assert path.stat().st_mode & 0o777 == mode


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o027])
def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_parameters(tmp_path / "model.npz", *model(1))
        with open(tmp_path / "by-open", "wb"):
            pass
    finally:
        os.umask(old)
    assert (tmp_path / "model.npz").stat().st_mode & 0o777 == (tmp_path / "by-open").stat().st_mode & 0o777


def fail(exc):
    def raiser(*args, **kwargs):
        raise exc
    return raiser


@pytest.mark.parametrize("where, exc", [
    ("numpy.savez", OSError(28, "No space left on device")),
    ("numpy.savez", KeyboardInterrupt()),
    ("os.fsync", OSError(5, "Input/output error")),
    ("os.replace", OSError(18, "Invalid cross-device link")),
])
def test_a_failed_save_keeps_the_old_model_and_leaves_no_temporary_file(tmp_path, monkeypatch, where, exc):
    path = tmp_path / "model.npz"
    save_parameters(path, *model(1))
    monkeypatch.setattr(where, fail(exc))
    with pytest.raises(type(exc)) as failed:
        save_parameters(path, *model(2))
    monkeypatch.undo()
    if isinstance(exc, OSError):  # the message names the file being saved, never the temporary one
        assert str(failed.value) == f"[Errno {exc.errno}] cannot save {path}: {exc.strerror}"
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_is(path, 1)


def test_a_folder_at_the_target_is_named_not_the_temporary_file(tmp_path):
    (tmp_path / "model.npz").mkdir()
    with pytest.raises(IsADirectoryError, match=rf"cannot save {tmp_path / 'model.npz'}: Is a directory$"):
        save_parameters(tmp_path / "model.npz", *model(1))
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def with_nan(params, meta):
    return params | {"W1": np.full((3, 2), np.nan)}, meta


@pytest.mark.parametrize("spoil, fragment", [
    (with_nan, "W1 holds 6 NaN or infinite"),
    (lambda p, m: (p | {"W2": np.ones((1, 4))}, m), r"parameters\['W2'\] has shape"),
    (lambda p, m: (p | {"b1": np.ones((3, 1), dtype=np.int64)}, m), "b1 has dtype int64"),
    (lambda p, m: ({k: v for k, v in p.items() if k != "b2"}, m), "exactly the keys"),
    (lambda p, m: (p, m | {"params": {"hidden_units": 4}}), "hidden_units is 4 but n1"),
    (lambda p, m: (p, m | {"params": {"seed": object()}}), "cannot be written as JSON"),
    (lambda p, m: (p, m | {"cost_history": [[0, float("nan")]]}), "cannot be written as JSON"),
    (lambda p, m: (p, m | {"extra": 1}), "unknown key"),
])
def test_a_save_that_would_not_load_back_is_refused_and_writes_nothing(tmp_path, spoil, fragment):
    path = tmp_path / "model.npz"
    save_parameters(path, *model(1))
    with pytest.raises(InvalidInputError, match=f"not saving .*model.npz: .*{fragment}"):
        save_parameters(path, *spoil(*model(2)))
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_is(path, 1)


def test_the_format_string_is_the_current_one_whatever_meta_says(tmp_path):
    params, meta = model(1)
    save_parameters(tmp_path / "model.npz", params, meta | {"format": "something else"})
    assert load_parameters(tmp_path / "model.npz")[1]["format"] == FORMAT


def test_concurrent_saves_from_two_threads_leave_one_whole_model(tmp_path):
    path = tmp_path / "model.npz"
    save_parameters(path, *model(1))
    seen, errors = [], []

    def saver(seed):
        try:
            for _ in range(40):
                save_parameters(path, *model(seed))
        except Exception as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=saver, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        seen.append(load_parameters(path)[1]["n_iter"])  # a reader never sees half a model
    for t in threads:
        t.join()
    assert not errors
    assert set(seen) <= {1, 2}
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert load_parameters(path)[1]["n_iter"] in (1, 2)


SAVER = """
import sys, numpy as np
from backprop_core.persistence import save_parameters
seed, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(seed)
params = {"W1": rng.standard_normal((3, 2)), "b1": rng.standard_normal((3, 1)),
          "W2": rng.standard_normal((1, 3)), "b2": rng.standard_normal((1, 1))}
meta = {"params": {"hidden_units": 3, "seed": seed}, "dtype": "float64", "y_ndim": 1, "n_iter": seed,
        "cost_history": [[0, 0.69]]}
for _ in range(100):
    save_parameters(path, params, meta)
"""


def test_concurrent_saves_from_two_processes_leave_one_whole_model(tmp_path, children):
    path = tmp_path / "model.npz"
    save_parameters(path, *model(1))
    savers = [children([sys.executable, "-c", SAVER, str(seed), str(path)]) for seed in (1, 2)]
    seen = []
    while any(p.poll() is None for p in savers):
        seen.append(load_parameters(path)[1]["n_iter"])
    assert [p.wait() for p in savers] == [0, 0]
    assert set(seen) <= {1, 2}
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]
    assert_is(path, load_parameters(path)[1]["n_iter"])


def test_the_file_format_knows_every_hyperparameter_of_the_estimator():
    from backprop_core.model_schema import HYPERPARAMETERS

    assert set(HYPERPARAMETERS) == set(bc.BackpropClassifier().get_params())
