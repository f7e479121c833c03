"""The estimator's scikit-learn face: labels, softmax, weights, early stopping, the protocol, every check."""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import pickle
import subprocess
import sys
import textwrap
import warnings

import joblib
import numpy as np
import pytest
from sklearn.exceptions import DataConversionWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.utils.estimator_checks import check_estimator
from sklearn.utils.validation import check_is_fitted

import backprop_core as bc
from backprop_core import planner
from backprop_core.backends import register_backend, unregister_backend
from backprop_core.backends.numpy_backend import NumpyBackend
from backprop_core.equations import OUTPUTS

from conftest import assert_close, lecture


# -- every check -----------------------------------------------------------------------------
#: The only checks allowed to skip, each because it cannot apply here.
CANNOT_APPLY = {
    "check_classifiers_multilabel_output_format_decision_function": "the model has no decision_function",
    **{name: "needs SCIPY_ARRAY_API=1 before SciPy is imported: run in a subprocess below"
       for name in ("check_array_api_input", "check_array_api_mixed_inputs", "check_array_api_same_namespace")},
}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
# scikit-learn's own test data are not standardized; the model rightly says so, which is not a check.
@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
@pytest.mark.filterwarnings("ignore:The features' scale:UserWarning")
def test_check_estimator_passes_every_check():
    results = check_estimator(bc.BackpropClassifier(), on_fail=None)  # the defaults, as a user keeps them
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert failed == []
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= set(CANNOT_APPLY), skipped - set(CANNOT_APPLY)
    assert sum(r["status"] == "passed" for r in results) >= 60


def device_unusable(array_namespace, device_name, import_module=importlib.import_module) -> str | None:
    """Why scikit-learn's array API checks cannot compute with ``array_namespace`` on ``device_name``
    here, or None where they can (or skip it themselves).

    scikit-learn asks only whether PyTorch is built with CUDA, and asks CuPy for its GPUs in a way
    that raises where there is no driver; pip may bring PyTorch's CUDA build, or CuPy, to a machine
    without a GPU, and those checks then fail with the driver's words instead of skipping.
    """
    try:
        if array_namespace == "torch" and str(device_name).startswith("cuda"):
            torch = import_module("torch")
            if torch.backends.cuda.is_built():
                torch.cuda.init()  # raises with the driver's words where CUDA cannot start
                torch.zeros(1, device="cuda")
        elif array_namespace == "cupy":
            import_module("cupy").cuda.runtime.getDeviceCount()
    except ImportError:
        return None  # scikit-learn skips a library that is not installed
    except Exception as exc:  # RuntimeError, CUDARuntimeError, AssertionError: whatever the build raises
        return f"{array_namespace} cannot compute on a GPU here: {type(exc).__name__}: {exc}"
    return None


def skipping_unusable(array_api_for_tests, skip, unusable=device_unusable):
    """scikit-learn's ``_array_api_for_tests`` that raises ``skip(reason)`` where ``unusable`` says why."""

    def for_tests(array_namespace, device_name=None, dtype_name=None):
        reason = unusable(array_namespace, device_name)
        if reason:
            raise skip(reason)
        return array_api_for_tests(array_namespace, device_name, dtype_name)

    return for_tests


def _fake_library(torch_built=True, driver=None):
    """import_module for fakes of torch and cupy whose CUDA calls raise ``driver`` (None: they work)."""
    from types import SimpleNamespace

    def call(*args, **kwargs):
        if driver is not None:
            raise driver

    torch = SimpleNamespace(backends=SimpleNamespace(cuda=SimpleNamespace(is_built=lambda: torch_built)),
                            cuda=SimpleNamespace(init=call), zeros=call)
    cupy = SimpleNamespace(cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=call)))
    return {"torch": torch, "cupy": cupy}.__getitem__


INSUFFICIENT = RuntimeError("CUDA driver version is insufficient for CUDA runtime version")


@pytest.mark.parametrize("namespace, device", [("torch", "cuda"), ("cupy", None)])
def test_gpu_array_api_checks_skip_saying_why_where_no_gpu_works(namespace, device):
    reason = device_unusable(namespace, device, _fake_library(driver=INSUFFICIENT))
    assert reason == (f"{namespace} cannot compute on a GPU here: RuntimeError: CUDA driver version is "
                      "insufficient for CUDA runtime version")
    assert device_unusable(namespace, device, _fake_library()) is None  # a working GPU runs the checks


def test_cpu_array_api_checks_and_cpu_builds_are_left_to_scikit_learn():
    assert device_unusable("torch", "cpu", _fake_library(driver=INSUFFICIENT)) is None
    assert device_unusable("torch", "cuda", _fake_library(torch_built=False, driver=INSUFFICIENT)) is None

    def missing(name):
        raise ImportError(name)

    assert device_unusable("cupy", None, missing) is None


def test_the_patched_check_skips_only_what_cannot_run():
    class Skip(Exception):
        pass

    asked = []
    patched = skipping_unusable(lambda *args: asked.append(args) or "namespace", Skip,
                                lambda ns, device: "no driver" if device == "cuda" else None)
    with pytest.raises(Skip, match="no driver"):
        patched("torch", "cuda", "float32")
    assert patched("torch", "cpu", "float32") == "namespace" and asked == [("torch", "cpu", "float32")]


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_check_estimator_array_api_checks_pass():
    # SciPy reads SCIPY_ARRAY_API once, at import: a fresh interpreter runs the array API checks
    # (array-api-strict, torch on the CPU; GPU namespaces skip, saying why, where no GPU works:
    # device_unusable).
    script = "\n".join(["import importlib", inspect.getsource(device_unusable), inspect.getsource(skipping_unusable),
                        textwrap.dedent("""
        import json, warnings
        warnings.simplefilter("ignore")
        import sklearn.utils.estimator_checks as checks
        from sklearn.utils.estimator_checks import check_estimator
        import backprop_core as bc
        checks._array_api_for_tests = skipping_unusable(checks._array_api_for_tests, checks.SkipTest)
        results = check_estimator(bc.BackpropClassifier(max_iter=50), on_fail=None)
        print(json.dumps([[r["check_name"], r["status"], str(r["exception"])[:200]] for r in results]))
    """)])
    env = {**__import__("os").environ, "SCIPY_ARRAY_API": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r for r in results if r[1] == "failed"] == []
    array_api = [r for r in results if r[0].startswith("check_array_api")]
    assert sum(r[1] == "passed" for r in array_api) >= 5, array_api


# -- labels ------------------------------------------------------------------------------------
LABEL_KINDS = {
    "strings": lambda k: np.array(["no", "yes"])[k],
    "booleans": lambda k: k.astype(bool),
    "minus one and one": lambda k: 2 * k - 1,
    "one and two": lambda k: k + 1,
    "floats 0 and 2": lambda k: 2.0 * k,
}


@pytest.mark.parametrize("kind", list(LABEL_KINDS))
def test_binary_labels_of_any_kind_come_back_as_they_went_in(moons, kind):
    X, k = moons
    y = LABEL_KINDS[kind](k)
    model = lecture(max_iter=2000).fit(X, y)
    np.testing.assert_array_equal(model.classes_, np.unique(y))
    pred = model.predict(X)
    assert pred.dtype == y.dtype
    assert set(np.unique(pred)) <= set(model.classes_)
    assert model.score(X, y) >= 0.95


def test_predict_proba_columns_follow_classes_(iris):
    X, k = iris
    y = np.array(["virginica", "setosa", "versicolor"])[k]  # sorted order differs from the codes
    model = lecture(max_iter=1500, learning_rate_init=0.5).fit(X, y)
    assert list(model.classes_) == ["setosa", "versicolor", "virginica"]
    P = model.predict_proba(X)
    np.testing.assert_array_equal(model.predict(X), model.classes_[np.argmax(P, axis=1)])
    for j, c in enumerate(model.classes_):
        assert P[y == c, j].mean() > 0.8, c


def test_pandas_series_labels_and_data_frame_features(moons):
    pd = pytest.importorskip("pandas", reason="pandas is not installed")
    X, k = moons
    frame = pd.DataFrame(X, columns=["width", "height"])
    y = pd.Series(np.array(["no", "yes"])[k])
    model = lecture(max_iter=1000).fit(frame, y)
    assert list(model.feature_names_in_) == ["width", "height"]
    assert model.score(frame, y) > 0.9
    with pytest.raises(ValueError, match="missing 'width'; not in the model 'w'"):
        model.predict(frame.rename(columns={"width": "w"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X)


@pytest.mark.parametrize("y, target_type, output, n_outputs", [
    (lambda k: k % 2, "binary", "sigmoid", 1),
    (lambda k: k, "multiclass", "softmax", 3),
    (lambda k: np.eye(3, dtype=int)[k], "multilabel-indicator", "sigmoid", 3),  # one-hot, as scikit-learn reads it
], ids=["binary", "multiclass", "indicator"])
def test_target_type_is_decided_as_scikit_learn_decides(iris, y, target_type, output, n_outputs):
    X, k = iris
    model = lecture(max_iter=1500, learning_rate_init=0.5).fit(X, y(k))
    assert (model.target_type_, model.output_, model.n_outputs_) == (target_type, output, n_outputs)


def test_one_hot_labels_train_as_independent_labels_that_are_learnt(iris):
    X, k = iris
    Y = np.eye(3, dtype=int)[k]
    model = lecture(max_iter=3000, learning_rate_init=0.5).fit(X, Y)
    pred = model.predict(X)
    assert pred.dtype == Y.dtype and pred.shape == Y.shape
    assert model.score(X, Y) >= 0.9  # every label of a row right


def test_a_column_vector_y_warns_and_trains_as_a_1d_y(moons):
    X, k = moons
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        column = lecture(max_iter=100).fit(X, k[:, None])
    flat = lecture(max_iter=100).fit(X, k)
    np.testing.assert_array_equal(column.parameters_["W1"], flat.parameters_["W1"])


def test_labels_on_any_backend_predict_in_its_namespace(backend, iris):
    X, k = iris
    dtype = backend.default_dtype
    y = k + 1  # classes 1, 2, 3
    model = lecture(max_iter=300, learning_rate_init=0.5, backend=backend.name,
                    device=backend.requested_device)
    model.fit(backend.asarray(X, dtype), backend.asarray(y, "int32"))
    reference = lecture(max_iter=300, learning_rate_init=0.5, dtype=dtype).fit(X, y)
    np.testing.assert_array_equal(model.classes_, [1, 2, 3])
    assert model.output_ == "softmax"
    assert_close(model.predict(backend.asarray(X, dtype)), reference.predict(X).astype(np.int32), backend, "int32",
                 rtol=0, atol=0)
    assert_close(model.predict_proba(backend.asarray(X, dtype)), reference.predict_proba(X), backend, dtype)


# -- multiclass by softmax -----------------------------------------------------------------------
def test_softmax_learns_three_classes(iris):
    X, k = iris
    model = lecture(max_iter=2000, learning_rate_init=0.5).fit(X, k)
    P = model.predict_proba(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert model.score(X, k) >= 0.97


def test_functional_api_takes_the_output_as_a_keyword(iris):
    X, k = iris
    Y = np.eye(3)[k].T  # one-hot columns: the lecture's convention
    parameters = bc.nn_model(X.T, Y, 6, 1000, learning_rate=0.5, output="softmax")
    A2, cache = bc.forward_propagation(X.T, parameters, output="softmax")
    np.testing.assert_allclose(A2.sum(axis=0), 1.0)
    assert bc.compute_cost(A2, Y, cache=cache, output="softmax") < 0.2
    pred = bc.predict(parameters, X.T, output="softmax")
    np.testing.assert_array_equal(pred.sum(axis=0), 1.0)
    assert np.mean(np.argmax(pred, axis=0) == k) >= 0.95


def test_functional_softmax_refuses_labels_that_are_not_one_hot(iris):
    X, k = iris
    with pytest.raises(ValueError, match="one-hot"):
        bc.nn_model(X.T, np.eye(3)[k].T * 0 + 1, 4, 10, output="softmax")


# -- sample weights ------------------------------------------------------------------------------
def test_integer_weights_equal_repeated_examples(iris):
    X, k = iris
    w = np.arange(len(k)) % 3  # 0, 1 or 2 copies of each example
    weighted = lecture(max_iter=300, learning_rate_init=0.5).fit(X, k, sample_weight=w)
    repeated = lecture(max_iter=300, learning_rate_init=0.5).fit(np.repeat(X, w, axis=0),
                                                                                 np.repeat(k, w))
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(weighted.parameters_[name], repeated.parameters_[name], rtol=1e-9, atol=1e-12)


def test_weights_shift_the_decision(moons):
    X, k = moons
    heavy = np.where(k == 1, 20.0, 1.0)
    plain = lecture(hidden_units=2, max_iter=300).fit(X, k)
    weighted = lecture(hidden_units=2, max_iter=300).fit(X, k, sample_weight=heavy)
    assert weighted.predict(X).mean() > plain.predict(X).mean() + 0.05


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_weights_and_softmax_over_chunks_match_the_whole_batch(output):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((20_000, 3))
    k = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0) * (output == "softmax")
    w = rng.uniform(0.0, 2.0, len(k))
    with bc.execution_context(chunk_size=4096, workers=2):
        chunked = lecture(max_iter=20).fit(X, k, sample_weight=w)
    with bc.execution_context(chunk_size=None):
        whole = lecture(max_iter=20).fit(X, k, sample_weight=w)
    assert chunked.plan_.mode == "chunks" and whole.plan_.mode == "whole batch"
    assert chunked.output_ == output
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(chunked.parameters_[name], whole.parameters_[name], rtol=1e-9, atol=1e-12)


def test_weights_train_in_mini_batches(moons):
    X, k = moons
    model = bc.BackpropClassifier(batch_size=32, epochs=100, learning_rate=0.5)
    model.fit(X, k, sample_weight=np.ones(len(k)))
    assert model.plan_.mode == "mini-batch" and model.score(X, k) > 0.85


def test_weights_follow_X_to_its_library(moons):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    X, k = moons
    w = np.where(k == 1, 2.0, 1.0)
    on_host = lecture(max_iter=100).fit(X, k, sample_weight=w)
    mixed = lecture(max_iter=100).fit(X, torch.asarray(k), sample_weight=torch.asarray(w))
    np.testing.assert_array_equal(mixed.parameters_["W1"], on_host.parameters_["W1"])


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_one_number_weighs_every_example_alike_on_a_device_too(moons):
    torch = pytest.importorskip("torch", reason="torch is not installed")
    X, k = moons
    Xt, kt = torch.asarray(X), torch.asarray(k)
    plain = lecture(max_iter=100, backend="torch", device="cpu").fit(Xt, kt)
    weighted = lecture(max_iter=100, backend="torch", device="cpu").fit(Xt, kt, sample_weight=3.0)
    torch.testing.assert_close(weighted.parameters_["W1"], plain.parameters_["W1"])


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_the_buffered_executor_computes_weights_and_softmax_as_the_equations_do(output):
    rng = np.random.default_rng(4)
    n2 = 3 if output == "softmax" else 1
    X = rng.standard_normal((2, 500))
    labels = rng.integers(0, n2 if n2 > 1 else 2, 500)
    Y = np.eye(n2)[:, labels] if n2 > 1 else labels[None, :].astype(float)
    weights = rng.random(500) + 0.5
    start = bc.initialize_parameters(2, 5, n2, init="xavier", seed=2)
    runs = {}
    for executor in ("equations", "buffered"):
        plan = planner.Plan("chunks", executor=executor, chunk_size=128)
        runs[executor] = bc.train(X, Y, start, activation=bc.get_activation("tanh"), learning_rate=0.5,
                                  num_iterations=20, backend=bc.get_backend("numpy"), plan=plan,
                                  output=OUTPUTS[output], sample_weight=weights)
    for k in start:
        np.testing.assert_allclose(runs["buffered"].parameters[k], runs["equations"].parameters[k], rtol=1e-12,
                                   err_msg=k)


def test_dask_trains_a_softmax_output_and_refuses_only_early_stopping(moons):
    da = pytest.importorskip("dask.array", reason="dask is not installed")
    X, k = moons
    three = np.arange(len(k)) % 3
    Xd, yd = da.from_array(X, chunks=(100, 2)), da.from_array(three, chunks=100)
    on_dask = lecture(max_iter=50).fit(Xd, yd)
    assert on_dask.plan_.mode == "dask" and on_dask.output_ == "softmax"
    on_host = lecture(max_iter=50).fit(X, three)
    assert_close(on_dask.parameters_["W1"], on_host.parameters_["W1"], bc.get_backend("numpy"), "float64", rtol=1e-9)
    with pytest.raises(ValueError, match="training on Dask does not support early stopping"):
        lecture(max_iter=5, early_stopping=True).fit(Xd, yd)


# -- early stopping ------------------------------------------------------------------------------
def test_early_stopping_stops_and_records_both_curves(moons):
    X, k = moons
    model = lecture(max_iter=100_000, cost_every=20, early_stopping=True).fit(X, k)
    assert model.n_iter_ < 100_000
    reads = len(model.validation_scores_)
    assert len(model.validation_loss_curve_) == reads and len(model.loss_curve_) == reads
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.best_iteration_ % 20 == 0 and model.best_iteration_ <= model.n_iter_


@pytest.mark.parametrize("data", ["iris", "moons"])
def test_early_stopping_keeps_the_best_parameters(request, data):
    X, k = request.getfixturevalue(data)
    settings = dict(num_iterations=20_000, cost_every=50, learning_rate=0.5, seed=3, batch_size=None, optimizer="gd",
                    n_iter_no_change=None)  # the refit below runs to its end, as the lecture's
    model = bc.BackpropClassifier(early_stopping=True, validation_fraction=0.2, **settings).fit(X, k)
    train, held = train_test_split(np.arange(len(k)), test_size=0.2, random_state=3, stratify=k)
    assert model.score(X[held], k[held]) == pytest.approx(model.best_validation_score_)
    # The same steps on the training split alone, stopped at the best iteration, give the same parameters.
    settings["num_iterations"] = model.best_iteration_
    again = bc.BackpropClassifier(**settings).fit(X[train], k[train])
    for name in ("W1", "b1", "W2", "b2"):
        np.testing.assert_allclose(model.parameters_[name], again.parameters_[name], rtol=1e-12)


@pytest.mark.parametrize("strategy, execution", [({"batch_size": None}, {"chunk_size": 1024, "workers": 2}),
                                                 ({"batch_size": 500, "epochs": 400}, {})],
                         ids=["chunks", "mini-batch"])
def test_early_stopping_works_with_every_strategy(strategy, execution):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((5000, 2))
    k = (X[:, 0] * X[:, 1] > 0).astype(int)
    settings = dict(num_iterations=4000, cost_every=10, early_stopping=True, n_iter_no_change=5, learning_rate=0.5,
                    optimizer="gd")
    with bc.execution_context(**execution):
        model = bc.BackpropClassifier(**settings, **strategy).fit(X, k)
    assert model.plan_.mode == ("chunks" if "chunk_size" in execution else "mini-batch")
    assert len(model.validation_scores_) == len(model.loss_curve_)
    if "chunk_size" in execution:  # the same steps as the whole batch, so the same checks and the same stop
        with bc.execution_context(chunk_size=None):
            whole = bc.BackpropClassifier(**settings, batch_size=None).fit(X, k)
        np.testing.assert_allclose(model.validation_loss_curve_, whole.validation_loss_curve_, rtol=1e-9)
        assert model.n_iter_ == whole.n_iter_ < 4000


def test_without_early_stopping_there_is_no_validation_curve(moons):
    X, k = moons
    model = lecture(max_iter=100).fit(X, k)
    assert model.validation_scores_ is None and model.validation_loss_curve_ is None
    assert model.n_iter_ == 100


def test_early_stopping_runs_on_every_backend(backend, moons):
    X, k = moons
    dtype = backend.default_dtype
    model = lecture(max_iter=3000, cost_every=10, early_stopping=True, n_iter_no_change=3,
                    backend=backend.name, device=backend.requested_device)
    model.fit(backend.asarray(X, dtype), backend.asarray(k, "int32"))
    assert all(0.0 <= s <= 1.0 for s in model.validation_scores_)
    assert model.n_iter_ < 3000
    assert backend.owns(model.predict(backend.asarray(X, dtype)))


def test_verbose_prints_the_cost_and_the_validation_score(moons, capsys):
    X, k = moons
    lecture(max_iter=40, cost_every=20, early_stopping=True, verbose=True).fit(X, k)
    out = capsys.readouterr().out
    assert "Iteration 0, loss = " in out and "Iteration 20, loss = " in out
    assert out.count("Validation score: ") == 3  # iterations 0, 20 and the final 40


@pytest.mark.parametrize("params, message", [
    ({"validation_fraction": 0.0}, "validation_fraction must be a positive"),
    ({"validation_fraction": 1.0}, r"validation_fraction must be in \(0, 1\)"),
    ({"n_iter_no_change": 0}, "n_iter_no_change must be a positive integer"),
    ({"tol": -1.0}, "tol must be a non-negative"),
])
def test_bad_early_stopping_settings_are_named(moons, params, message):
    X, k = moons
    with pytest.raises(ValueError, match=message):
        lecture(max_iter=5, early_stopping=True, **params).fit(X, k)


# -- the protocol ---------------------------------------------------------------------------------
ROUND_TRIPS = {
    "pickle": lambda model, tmp: pickle.loads(pickle.dumps(model)),
    "deepcopy": lambda model, tmp: copy.deepcopy(model),
    "joblib": lambda model, tmp: (joblib.dump(model, tmp / "m.joblib"), joblib.load(tmp / "m.joblib"))[1],
}


@pytest.mark.parametrize("how", list(ROUND_TRIPS))
def test_a_fitted_model_round_trips_from_any_backend(backend, iris, tmp_path, how):
    X, k = iris
    dtype = backend.default_dtype
    Xd = backend.asarray(X, dtype)
    model = lecture(max_iter=200, learning_rate_init=0.5, backend=backend.name,
                    device=backend.requested_device).fit(Xd, backend.asarray(k, "int32"))
    copied = ROUND_TRIPS[how](model, tmp_path)
    assert copied.backend_.name == backend.name  # back on the backend it trained on
    assert_close(copied.predict_proba(Xd), backend.to_numpy(model.predict_proba(Xd)), backend, dtype,
                 rtol=0, atol=0)
    np.testing.assert_array_equal(copied.classes_, model.classes_)


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_under_array_api_dispatch_predict_takes_only_the_library_and_device_of_fit():
    # scikit-learn's rule; SciPy reads SCIPY_ARRAY_API once, at import: a fresh interpreter.
    pytest.importorskip("array_api_strict", reason="array-api-strict is not installed")
    script = textwrap.dedent("""
        import pickle, numpy as np, sklearn, array_api_strict as xs, backprop_core as bc
        X = np.random.default_rng(0).standard_normal((40, 2))
        y = (X[:, 0] > 0).astype(float)
        on = lambda device: xs.asarray(X, device=xs.Device(device))
        from backprop_core.estimator import LECTURE
        model = bc.BackpropClassifier(**(LECTURE | dict(max_iter=5, backend="array_api_strict"))).fit(on("CPU_DEVICE"), y)
        with sklearn.config_context(array_api_dispatch=True):
            for fitted in (model, pickle.loads(pickle.dumps(model))):
                assert type(fitted.predict(on("CPU_DEVICE"))) is type(on("CPU_DEVICE"))
                for other, where in ((on("device1"), "array_api_strict on device1"), (X, "numpy on cpu"),
                                     (X.tolist(), "numpy on cpu")):
                    try:
                        fitted.predict(other)
                    except bc.InvalidInputError as exc:
                        assert f"fitted on array_api_strict on CPU_DEVICE, called with {where} " in str(exc), exc
                    else:
                        raise AssertionError(f"{where}: predicted")
    """)
    env = {**__import__("os").environ, "SCIPY_ARRAY_API": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_unpickling_imports_no_array_library_until_the_model_is_used(tmp_path, moons):
    pytest.importorskip("torch", reason="torch is not installed")
    X, k = moons
    model = lecture(max_iter=50, backend="torch", device="cpu").fit(X, k)
    joblib.dump(model, tmp_path / "m.joblib")
    script = textwrap.dedent(f"""
        import sys, joblib
        model = joblib.load({str(tmp_path / "m.joblib")!r})
        assert "torch" not in sys.modules, "unpickling imported torch"
        model.predict([[0.0, 0.0]])
        print(model.backend_.name, "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["torch", "True"]


class _Vanishing(NumpyBackend):
    """A backend that exists where a model is trained and not where it is unpickled (as a GPU)."""

    name = "vanishing"


def test_a_model_whose_backend_cannot_run_here_predicts_with_numpy(moons):
    X, k = moons
    register_backend("vanishing", _Vanishing)
    try:
        model = lecture(max_iter=100, backend="vanishing").fit(X, k)
        expected = model.predict_proba(X)
        data = pickle.dumps(model)
    finally:
        unregister_backend("vanishing")
    restored = pickle.loads(data)
    with pytest.warns(UserWarning, match="trained on the vanishing backend .* computes with NumPy"):
        P = restored.predict_proba(X)
    np.testing.assert_array_equal(P, expected)
    assert restored.backend_.name == "numpy"


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_grid_search_over_numpy_scalars_in_two_processes_and_a_json_save(moons, tmp_path):
    X, k = moons
    grid = {"hidden_units": np.arange(2, 5, 2), "learning_rate_init": np.arange(0.5, 1.3, 0.7)}
    search = GridSearchCV(lecture(max_iter=300), grid, cv=3, n_jobs=2).fit(X, k)
    best = search.best_estimator_
    assert isinstance(best.hidden_units, np.integer)
    assert search.best_score_ > 0.8
    best.save(tmp_path / "best.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "best.npz")
    assert loaded.hidden_units == best.hidden_units
    np.testing.assert_array_equal(loaded.predict(X), best.predict(X))


def test_numpy_scalar_hyperparameters_are_accepted_everywhere(moons, tmp_path):
    X, k = moons
    scalars = dict(hidden_units=np.int64(5), learning_rate=np.float64(0.8), num_iterations=np.int32(300),
                   seed=np.int64(2), cost_every=np.int64(20), early_stopping=np.bool_(True),
                   validation_fraction=np.float32(0.2), n_iter_no_change=np.int64(4), tol=np.float64(1e-3))
    full_batch = dict(batch_size=None, optimizer="gd")  # where num_iterations and the chunks count
    with bc.execution_context(chunk_size=np.int64(128), workers=np.int64(2)):  # taken there too
        model = bc.BackpropClassifier(**scalars, **full_batch).fit(X, k)
    assert (model.plan_.chunk_size, model.plan_.workers) == (128, 2)
    with bc.execution_context(chunk_size=128, workers=2):
        plain = bc.BackpropClassifier(**{name: value.item() for name, value in scalars.items()}, **full_batch).fit(X, k)
    np.testing.assert_array_equal(model.parameters_["W1"], plain.parameters_["W1"])
    model.save(tmp_path / "m.npz")  # the hyperparameters are written as JSON numbers
    assert bc.BackpropClassifier.load(tmp_path / "m.npz").get_params() == plain.get_params()


def test_save_and_load_keep_the_fitted_labels_and_layers(iris, tmp_path):
    X, k = iris
    y = np.array(["a", "b", "c"])[k]
    model = lecture(max_iter=300, learning_rate_init=0.5, activation="relu").fit(X, y)
    model.save(tmp_path / "m.npz")
    model.set_params(activation="sigmoid")  # not what the parameters were trained with
    loaded = bc.BackpropClassifier.load(tmp_path / "m.npz")
    assert (loaded.output_, loaded.activation_, loaded.target_type_) == ("softmax", "relu", "multiclass")
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_a_file_saved_before_labels_were_fitted_still_loads(moons, tmp_path):
    from backprop_core.persistence import save_parameters

    X, k = moons
    model = lecture(max_iter=100).fit(X, k.astype(float))
    old = {"estimator": "BackpropClassifier", "params": {"num_iterations": 100}, "dtype": "float64",
           "y_ndim": 1, "n_iter": 100, "cost_history": model.cost_history_}
    save_parameters(tmp_path / "old.npz", {n: model.parameters_[n] for n in ("W1", "b1", "W2", "b2")}, old)
    loaded = bc.BackpropClassifier.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.target_type_ == "binary" and loaded.output_ == "sigmoid"


def test_set_params_changes_nothing_until_the_next_fit(iris):
    X, k = iris
    model = lecture(max_iter=200, learning_rate_init=0.5).fit(X, k)
    before = model.predict_proba(X)
    model.set_params(activation="relu", hidden_units=9, learning_rate_init=0.1, dtype="float32", init="he")
    np.testing.assert_array_equal(model.predict_proba(X), before)
    model.fit(X, k)
    assert model.activation_ == "relu" and model.parameters_["W1"].shape == (9, 4)


# The old names, in the lecture's full-batch gradient descent they were written for
FITTED = dict(num_iterations=200, learning_rate=0.5, hidden_units=5, activation="relu", standardize=True, seed=4,
              batch_size=None, optimizer="gd")


@pytest.mark.parametrize("changes", [
    {"standardize": False},
    {"hidden_units": 8},
    {"activation": "sigmoid", "learning_rate": 0.1, "num_iterations": 5, "dtype": "float32", "seed": 9},
], ids=["standardize", "hidden_units", "others"])
def test_a_fitted_model_saves_what_it_fitted_whatever_set_params_did_since(iris, tmp_path, changes):
    X, k = iris
    model = bc.BackpropClassifier(**FITTED).fit(X, k)
    expected = model.predict_proba(X)
    model.set_params(**changes)
    model.save(tmp_path / "m.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)
    assert loaded.get_params() == bc.BackpropClassifier(**FITTED).get_params()
    assert model.fitted_params_ == loaded.fitted_params_ == bc.BackpropClassifier(**FITTED).get_params()
    assert model.get_params()["hidden_units"] == changes.get("hidden_units", 5)  # set_params still holds


def test_the_next_fit_records_and_saves_the_new_hyperparameters(iris, tmp_path):
    X, k = iris
    model = bc.BackpropClassifier(**FITTED).fit(X, k)
    model.set_params(hidden_units=3, standardize=False).fit(X, k)
    refitted = FITTED | {"hidden_units": 3, "standardize": False}
    assert model.fitted_params_ == bc.BackpropClassifier(**refitted).get_params()
    model.save(tmp_path / "m.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "m.npz")
    assert (loaded.hidden_units, loaded.standardize, loaded.parameters_["W1"].shape) == (3, False, (3, 4))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_a_failed_refit_keeps_the_fitted_hyperparameters_for_the_save(iris, tmp_path):
    X, k = iris
    model = bc.BackpropClassifier(**FITTED).fit(X, k)
    expected = model.predict_proba(X)
    with pytest.raises(bc.TrainingDivergedError):
        model.set_params(learning_rate=1e12, hidden_units=9).fit(X, k)
    model.save(tmp_path / "m.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "m.npz")
    assert loaded.get_params() == bc.BackpropClassifier(**FITTED).get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)


def test_a_model_pickled_before_it_recorded_its_hyperparameters_saves_what_its_weights_need(iris, tmp_path):
    X, k = iris
    model = bc.BackpropClassifier(**FITTED).fit(X, k)
    expected = model.predict_proba(X)
    del model.fitted_params_  # as unpickled from an earlier version
    model.set_params(hidden_units=8, activation="tanh", standardize=False)
    model.save(tmp_path / "m.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "m.npz")
    assert (loaded.hidden_units, loaded.activation, loaded.standardize) == (5, "relu", True)
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)


@pytest.mark.parametrize("kind", ["pandas object strings", "longdouble indicator"])
def test_labels_of_a_dtype_a_file_does_not_name_save_and_predict_alike(moons, tmp_path, kind):
    X, k = moons
    if kind == "pandas object strings":
        pd = pytest.importorskip("pandas", reason="pandas is not installed")
        y, predicted_dtype = pd.Series(np.array(["no", "yes"])[k], dtype=object), np.dtype("<U3")
    else:
        y, predicted_dtype = np.stack([k, 1 - k], axis=1).astype(np.longdouble), np.dtype("float32")
    model = lecture(max_iter=100).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "m.npz")
    assert model.predict(X).dtype == loaded.predict(X).dtype == predicted_dtype
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_unfitted_use_raises_scikit_learns_not_fitted_error(moons, tmp_path):
    X, k = moons
    model = lecture(max_iter=20)
    for use in (model.predict, model.predict_proba, model.predict_log_proba):
        with pytest.raises(SklearnNotFittedError):
            use(X)
    with pytest.raises(SklearnNotFittedError):
        model.save(tmp_path / "m.npz")
    with pytest.raises(SklearnNotFittedError):
        check_is_fitted(model)
    check_is_fitted(model.fit(X, k))


def test_no_warning_from_a_plain_fit_and_predict(moons):
    X, k = moons
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lecture(max_iter=20).fit(X, k).predict(X)


# -- measured against the peer ----------------------------------------------------------------------
@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_the_comparison_with_mlp_runs_end_to_end(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "vs_mlp.py"
    out = subprocess.run([sys.executable, str(script), "--out", str(tmp_path), "--datasets", "moons,digits",
                          "--repeats", "1", "--quick", "--machine", "test"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "vs_mlp.jsonl").read_text().splitlines()]
    fits = [r for r in records if r["kind"] == "fit"]
    assert {r["entry"] for r in fits} == {"backprop-core", "MLP full-batch GD", "MLP adam", "MLP lbfgs"}
    assert {r["classes"] for r in fits} == {2, 10}
    table = (tmp_path / "vs_mlp.md").read_text()
    assert "| moons |" in table and "| digits, 10 classes (scaled) |" in table
