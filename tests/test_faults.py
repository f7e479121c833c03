"""Nothing lost, nothing let in: failed refits, divergence, bad starts, unsafe scales, mismatched parameters.

(Cluster failures are in test_dask.py, bad arrays in test_bad_input.py.)
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.activations import get_activation
from backprop_core.backends import get_backend, register_backend, unregister_backend
from backprop_core.backends.numpy_backend import NumpyBackend
from backprop_core.datasets import blobs, noisy_moons
from backprop_core.loop import diverged
from conftest import lecture

FITTED_ATTRIBUTES = ("classes_", "target_type_", "activation_", "output_", "n_features_in_", "n_outputs_",
                     "n_iter_", "cost_history_", "loss_curve_", "dtype_", "plan_")


# -- a refit is all or nothing -------------------------------------------------------------------
class _OutOfMemoryAfter(NumpyBackend):
    """NumPy whose compiled steps run out of memory from their ``calls``-th call on, as a full GPU would."""

    name = "numpy-out-of-memory"

    def __init__(self, device=None, calls=20):
        super().__init__(device)
        self.calls = calls

    def compile(self, fn):
        def step(*args):
            self.calls -= 1
            if self.calls < 0:
                raise MemoryError("out of memory allocating 1.5 GiB")
            return fn(*args)

        return step


@pytest.fixture()
def out_of_memory_backend():
    register_backend(_OutOfMemoryAfter.name, _OutOfMemoryAfter)
    yield _OutOfMemoryAfter.name
    unregister_backend(_OutOfMemoryAfter.name)


def _ctrl_c_at(iteration):
    def callback(i, cost):
        if i == iteration:
            raise KeyboardInterrupt

    return callback


# id: (hyperparameters of the failing fit, its callback, the error it raises)
FAILED_FITS = {
    "diverged": ({"activation": "relu", "learning_rate_init": 1e12}, None, bc.TrainingDivergedError),
    "diverged with a finite cost": ({"learning_rate_init": 1e6}, None, bc.TrainingDivergedError),
    "interrupted": ({}, _ctrl_c_at(50), bc.TrainingInterrupted),
    "out of device memory": ({"backend": "numpy-out-of-memory"}, None, bc.DeviceMemoryError),
}


def _fitted_state(model):
    return ({k: v.copy() for k, v in model.parameters_.items()},
            {name: getattr(model, name) for name in FITTED_ATTRIBUTES})


@pytest.mark.parametrize("case", list(FAILED_FITS))
def test_a_failed_refit_leaves_the_fitted_model_exactly_as_it_was(flower_data, out_of_memory_backend, case):
    X, Y = flower_data
    settings, callback, error = FAILED_FITS[case]
    model = lecture(max_iter=300, cost_every=10).fit(X.T, Y[0])
    parameters, attributes = _fitted_state(model)
    with pytest.raises(error):
        model.set_params(**settings).fit(X.T, Y[0], callback=callback)
    for k, before in parameters.items():
        np.testing.assert_array_equal(model.parameters_[k], before, err_msg=k)
    for name, before in attributes.items():
        np.testing.assert_equal(getattr(model, name), before, err_msg=name)
    assert model.backend_.name == "numpy"


@pytest.mark.parametrize("case", list(FAILED_FITS))
def test_the_error_of_a_failed_refit_carries_the_failed_runs_parameters(flower_data, out_of_memory_backend, case):
    X, Y = flower_data
    settings, callback, error = FAILED_FITS[case]
    model = lecture(max_iter=300, cost_every=10, seed=1).fit(X.T, Y[0])
    with pytest.raises(error) as info:
        model.set_params(seed=2, **settings).fit(X.T, Y[0], callback=callback)
    kept, iteration = info.value.parameters, info.value.iteration
    # The failed run's own: what a fresh run of the same settings holds after as many iterations.
    fresh = bc.BackpropClassifier(**{**model.get_params(), "backend": "numpy", "max_iter": iteration or 1})
    expected = fresh.fit(X.T, Y[0]).parameters_ if iteration else \
        bc.initialize_parameters(2, 4, 1, seed=2)
    for k in expected:
        np.testing.assert_array_equal(kept[k], expected[k], err_msg=k)


@pytest.mark.parametrize("case", list(FAILED_FITS))
def test_a_failed_first_fit_keeps_what_was_trained(flower_data, out_of_memory_backend, case):
    X, Y = flower_data
    settings, callback, error = FAILED_FITS[case]
    model = lecture(max_iter=300, cost_every=10, **settings)
    with pytest.raises(error) as info:
        model.fit(X.T, Y[0], callback=callback)
    for k, kept in info.value.parameters.items():
        np.testing.assert_array_equal(model.parameters_[k], kept, err_msg=k)
    assert model.n_iter_ == info.value.iteration
    assert np.all(np.isfinite(model.predict_proba(X.T)))


def test_a_minibatch_fit_that_runs_out_of_memory_midway_keeps_the_updates_it_completed(flower_data,
                                                                                        out_of_memory_backend):
    X, Y = flower_data
    model = bc.BackpropClassifier(backend=out_of_memory_backend, batch_size=100, epochs=20, cost_every=4)
    # 20 compiled calls: the start's cost on all the data, then 19 updates; the 20th update fails.
    with pytest.raises(bc.DeviceMemoryError, match="at update 19: use a smaller batch_size than 100") as info:
        model.fit(X.T, Y[0])
    assert model.plan_.mode == "mini-batch" and model.n_steps_ == info.value.iteration == 19
    assert model.n_iter_ == 5  # epochs (of 4 updates), the last one stopped midway
    # The same 19 updates, stopped there by Ctrl-C on NumPy.
    stopped = bc.BackpropClassifier(batch_size=100, epochs=20, cost_every=1)
    with pytest.raises(bc.TrainingInterrupted):
        stopped.fit(X.T, Y[0], callback=_ctrl_c_at(19))
    assert stopped.n_steps_ == 19
    for k, kept in info.value.parameters.items():
        np.testing.assert_array_equal(model.parameters_[k], kept, err_msg=k)
        np.testing.assert_array_equal(kept, stopped.parameters_[k], err_msg=k)


# -- divergence: one rule, every activation ------------------------------------------------------
@pytest.mark.parametrize("start, end, expected", [
    (0.693, 0.2, False),          # learned
    (0.693, 1.3, False),          # worse, but not twice the start
    (0.693, 1.4, True),           # more than twice the start and ln 2 above it
    (0.001, 0.6, False),          # from nearly perfect parameters: a small rise, not divergence
    (0.001, 0.7, True),           # ... but more than ln 2 above a start that good is
    (100.0, 199.0, False),
    (100.0, 201.0, True),
    (0.693, float("nan"), True),
    (0.693, float("inf"), True),
])
def test_the_divergence_rule(start, end, expected):
    assert diverged(start, end) is expected


@pytest.mark.parametrize("activation", sorted(bc.ACTIVATIONS))
def test_an_absurd_learning_rate_diverges_on_every_activation(flower_data, activation):
    # With tanh or sigmoid hidden units the cost stays finite (89,026 for tanh): judged at the end.
    X, Y = flower_data
    with pytest.raises(bc.TrainingDivergedError,
                       match=r"learning rate 1000000\.0 is likely too large for the scale of the features"):
        bc.nn_model(X, Y, 4, 2000, learning_rate=1e6, activation=activation, cost_every=100)


def test_divergence_keeps_the_parameters_of_the_lowest_cost_read(flower_data):
    X, Y = flower_data
    run = dict(activation="sigmoid", learning_rate=50.0, cost_every=10)
    with pytest.raises(bc.TrainingDivergedError, match="far above its start") as info:
        bc.nn_model(X, Y, 4, 1000, **run)
    costs = dict(info.value.history)
    lowest = min(costs, key=costs.get)
    assert info.value.iteration == lowest > 0
    with pytest.warns(UserWarning, match="unsafe"):  # trained without diverging, at a rate still too large
        expected = bc.nn_model(X, Y, 4, lowest, **run)
    for k in expected:
        np.testing.assert_array_equal(info.value.parameters[k], expected[k], err_msg=k)


def test_a_cost_that_rises_and_comes_back_down_is_not_divergence():
    # A large learning rate's "catapult": the cost peaks far above its start, then falls to near 0.
    X, Y = noisy_moons()
    result = bc.train(X, Y.astype(float), bc.initialize_parameters(2, 8, 1), activation=get_activation("tanh"),
                      learning_rate=10.0, num_iterations=300, backend=get_backend("numpy"), cost_every=1)
    costs = [J for _, J in result.history]
    assert max(costs) > 10 * costs[0]
    assert costs[-1] < 0.1 * costs[0]


def test_a_mini_batch_run_is_judged_on_all_the_data(flower_data):
    # One example's cost (a mini-batch of 1) jumps far above the start now and then in a healthy
    # run; the end is judged by the cost of all the data, which has fallen.
    X, Y = flower_data
    result = bc.train(X, Y.astype(float), bc.initialize_parameters(2, 4, 1), activation=get_activation("tanh"),
                      learning_rate=0.5, num_iterations=1, backend=get_backend("numpy"), cost_every=1,
                      batch_size=1, epochs=30)
    costs = [J for _, J in result.history]
    assert any(diverged(costs[0], J) for J in costs[1:-1])
    assert costs[-1] < costs[0]


# -- the start: finite parameters, named --------------------------------------------------------------
@pytest.mark.parametrize("name, value", [("W1", np.nan), ("b2", np.inf)])
def test_start_parameters_that_are_not_finite_are_named(flower_data, name, value):
    X, Y = flower_data
    start = bc.initialize_parameters(2, 4, 1)
    start[name][0, 0] = value
    with pytest.raises(bc.InvalidInputError, match=f"start parameters {name} contain NaN or infinite"):
        bc.nn_model(X, Y, 4, 10, parameters=start)
    with pytest.raises(bc.InvalidInputError, match=f"start parameters {name} contain NaN or infinite"):
        bc.train(X, Y.astype(float), start, activation=get_activation("tanh"), learning_rate=1.2,
                 num_iterations=10, backend=get_backend("numpy"))


# -- the features' scale and the learning rate ---------------------------------------------------------
def test_the_blobs_at_the_lectures_learning_rate_warn_naming_scale_rate_and_fix():
    X, Y = blobs()
    with pytest.warns(UserWarning, match=r"mean square of 51\.2 in the largest feature\) makes learning_rate=1\.2 "
                                         r"unsafe.*standardize=True on BackpropClassifier"):
        lecture(max_iter=50).fit(X.T, Y[0])
    with pytest.warns(bc.FeatureScaleWarning, match=r"learning_rate=1\.2 unsafe") as told:
        bc.nn_model(X, Y, 4, 50)
    (advice,) = [w.message.advice for w in told if isinstance(w.message, bc.FeatureScaleWarning)]
    assert advice.learning_rate == 1.2 and advice.safe_rate == pytest.approx(8 / advice.largest)


@pytest.mark.parametrize("data", ["flower", "standardized blobs"])
def test_features_of_a_safe_scale_do_not_warn(flower_data, data):
    if data == "flower":
        X, Y = flower_data
    else:
        X, Y = blobs()
        X = (X - X.mean(axis=1, keepdims=True)) / X.std(axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lecture(max_iter=50, learning_rate_init=1.2).fit(X.T, Y[0])


def test_a_diverged_run_names_the_unsafe_scale_in_its_error_instead_of_warning(flower_data):
    X, Y = flower_data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(bc.TrainingDivergedError, match=r"diverged.*mean square of 4\.26.*at most 1\.88"):
            bc.nn_model(X, Y, 4, 1000, learning_rate=1e6)


# -- parameters remember what trained them (issue 14) ---------------------------------------------------
@pytest.fixture(scope="module")
def relu_parameters(flower_data):
    X, Y = flower_data
    return bc.nn_model(X, Y, 10, 4000, activation="relu", learning_rate=0.5, init="xavier")


def test_predict_uses_the_activation_the_parameters_were_trained_with(flower_data, relu_parameters):
    X, Y = flower_data
    np.testing.assert_array_equal(bc.predict(relu_parameters, X), bc.predict(dict(relu_parameters), X,
                                                                              activation="relu"))
    assert np.mean(bc.predict(relu_parameters, X) == Y) >= 0.85


@pytest.mark.parametrize("step", ["predict", "forward_propagation", "backward_propagation", "nn_model"])
def test_another_activation_than_the_parameters_own_is_refused_naming_both(flower_data, relu_parameters, step):
    X, Y = flower_data
    calls = {
        "predict": lambda: bc.predict(relu_parameters, X, activation="tanh"),
        "forward_propagation": lambda: bc.forward_propagation(X, relu_parameters, activation="tanh"),
        "backward_propagation": lambda: bc.backward_propagation(
            relu_parameters, bc.forward_propagation(X, relu_parameters)[1], X, Y, activation="tanh"),
        "nn_model": lambda: bc.nn_model(X, Y, 10, 10, parameters=relu_parameters, activation="tanh"),
    }
    with pytest.raises(bc.InvalidInputError, match="trained with activation 'relu', not 'tanh'"):
        calls[step]()


def test_a_plain_dict_keeps_the_lectures_tanh(flower_data, relu_parameters):
    X, _ = flower_data
    plain = dict(relu_parameters)
    np.testing.assert_array_equal(bc.predict(plain, X), bc.predict(plain, X, activation="tanh"))
    assert not np.array_equal(bc.predict(plain, X), bc.predict(relu_parameters, X))


def test_the_output_is_recorded_too():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 300))
    Y = np.eye(3)[(X[0] > 0).astype(int) + (X[1] > 0)].T
    parameters = bc.nn_model(X, Y, 6, 500, learning_rate=0.5, output="softmax")
    assert (parameters.activation, parameters.output) == ("tanh", "softmax")
    assert np.all(bc.predict(parameters, X).sum(axis=0) == 1)  # one-hot columns: softmax, not sigmoid
    with pytest.raises(bc.InvalidInputError, match="trained with output 'softmax', not 'sigmoid'"):
        bc.predict(parameters, X, output="sigmoid")


def test_the_record_survives_the_lectures_update_pickling_and_continued_training(flower_data, relu_parameters):
    X, Y = flower_data
    _, cache = bc.forward_propagation(X, relu_parameters)
    updated = bc.update_parameters(relu_parameters, bc.backward_propagation(relu_parameters, cache, X, Y), 0.5)
    again = pickle.loads(pickle.dumps(relu_parameters))
    more = bc.nn_model(X, Y, 10, 10, parameters=relu_parameters, learning_rate=0.5)
    for p in (updated, again, more):
        assert isinstance(p, dict) and set(p) == {"W1", "b1", "W2", "b2"}
        assert (p.activation, p.output) == ("relu", "sigmoid")


def test_a_model_kept_from_a_diverged_first_fit_saves_and_loads(flower_data, tmp_path):
    X, Y = flower_data
    model = lecture(activation="relu", learning_rate_init=1e12, max_iter=200, cost_every=1)
    with pytest.raises(bc.TrainingDivergedError):
        model.fit(X.T, Y[0])
    assert not np.isfinite(model.cost_history_[-1][1])  # the record says what happened
    model.save(tmp_path / "kept.npz")
    loaded = bc.BackpropClassifier.load(tmp_path / "kept.npz")
    np.testing.assert_array_equal(loaded.predict(X.T), model.predict(X.T))
    assert all(np.isfinite(J) for _, J in loaded.cost_history_)
