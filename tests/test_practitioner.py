"""The estimator as a scikit-learn user meets it: MLPClassifier's names, class weights, resumed
training (warm_start, partial_fit), and a fitted state that a refit replaces in one step."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

import backprop_core as bc
from backprop_core.errors import InvalidInputError
from backprop_core.estimator import LECTURE, PRACTITIONER
from conftest import lecture


# -- scikit-learn's names ---------------------------------------------------------------------
@pytest.mark.parametrize("old, new", [
    ({"seed": 3}, {"random_state": 3}),
    ({"num_iterations": 300, "batch_size": None}, {"max_iter": 300, "batch_size": None}),
    ({"learning_rate": 0.5}, {"learning_rate_init": 0.5}),
    ({"epochs": 7, "batch_size": 64}, {"max_iter": 7, "batch_size": 64}),
], ids=["seed", "num_iterations", "learning_rate", "epochs"])
def test_an_old_name_trains_as_the_new_one(moons, old, new):
    X, y = moons
    both = {} if "max_iter" in new else {"max_iter": 200}
    by_old = bc.BackpropClassifier(**both, **old).fit(X, y)
    by_new = bc.BackpropClassifier(**both, **new).fit(X, y)
    np.testing.assert_array_equal(by_old.parameters_["W1"], by_new.parameters_["W1"])
    assert by_old.n_iter_ == by_new.n_iter_


def test_where_both_names_are_set_the_new_one_wins_as_a_grid_sets_it(moons):
    X, y = moons
    model = bc.BackpropClassifier(batch_size=None, num_iterations=500).set_params(max_iter=40).fit(X, y)
    assert model.n_iter_ == 40
    with pytest.raises(InvalidInputError, match="learning_rate_init"):
        bc.BackpropClassifier(learning_rate="adaptive").fit(X, y)


@pytest.mark.parametrize("old, message", [
    ({"num_iterations": 30}, r"num_iterations counts full-batch iterations, but batch_size='auto' takes mini-batches: "
                             r"give max_iter \(epochs\), or batch_size=None"),
    ({"epochs": 3, "batch_size": None}, r"epochs counts mini-batch passes, but batch_size=None takes full-batch steps: "
                                        r"give max_iter \(iterations\), or a batch_size"),
])
def test_an_old_count_in_the_other_mode_is_refused_not_ignored(moons, old, message):
    # num_iterations was the lecture's full-batch count: beside the mini-batch defaults it would count nothing
    X, y = moons
    with pytest.raises(InvalidInputError, match=message):
        bc.BackpropClassifier(**old).fit(X, y)


def test_every_init_parameter_is_stored_as_given_so_clone_keeps_it():
    model = bc.BackpropClassifier(batch_size=None, seed=5, num_iterations=10, learning_rate="constant",
                                  random_state=None)
    params = clone(model).get_params()
    assert (params["seed"], params["num_iterations"], params["learning_rate"], params["random_state"]) == \
        (5, 10, "constant", None)


def test_random_state_zero_and_none_work(moons):
    X, y = moons
    a = bc.BackpropClassifier(random_state=0, max_iter=50).fit(X, y)
    b = bc.BackpropClassifier(random_state=0, max_iter=50).fit(X, y)
    np.testing.assert_array_equal(a.parameters_["W1"], b.parameters_["W1"])
    c = bc.BackpropClassifier(random_state=None, max_iter=50).fit(X, y)
    assert not np.array_equal(a.parameters_["W1"], c.parameters_["W1"])


def test_mini_batch_counts_epochs_and_records_a_cost_per_epoch(moons):
    X, y = moons  # 300 examples in batches of 64: 5 updates an epoch
    model = bc.BackpropClassifier(batch_size=64, max_iter=12).fit(X, y)
    assert (model.n_iter_, model.n_steps_, model.t_) == (12, 60, 12 * 300)
    assert [i for i, _ in model.cost_history_] == [5 * e for e in range(13)]  # each epoch's start, and the end
    assert len(model.loss_curve_) == 13


def test_full_batch_records_a_cost_per_iteration_on_the_cpu(moons):
    X, y = moons
    model = lecture(max_iter=30).fit(X, y)
    assert model.n_iter_ == model.n_steps_ == 30
    assert [i for i, _ in model.cost_history_] == list(range(31))


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam"])
def test_each_optimizer_learns(iris, optimizer):
    X, y = iris
    rate = {"gd": 0.5, "momentum": 0.5, "rmsprop": 0.01, "adam": 0.01}[optimizer]
    model = bc.BackpropClassifier(optimizer=optimizer, learning_rate_init=rate, max_iter=300, alpha=1e-4).fit(X, y)
    assert model.score(X, y) >= 0.95


def test_alpha_shrinks_the_weights(moons):
    X, y = moons
    plain = bc.BackpropClassifier(hidden_units=10, max_iter=500).fit(X, y)
    penalised = bc.BackpropClassifier(hidden_units=10, max_iter=500, alpha=30.0).fit(X, y)

    def size(model):
        return sum(np.sum(model.parameters_[W] ** 2) for W in ("W1", "W2"))

    assert size(penalised) < 0.5 * size(plain)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.filterwarnings("ignore:The features' scale:UserWarning")
@pytest.mark.parametrize("option", [
    {"optimizer": "adam", "learning_rate_init": 0.01},
    {"optimizer": "momentum", "learning_rate_init": 0.5},
    {"optimizer": "rmsprop", "learning_rate_init": 0.01},
    {"alpha": 0.01},
    {"class_weight": "balanced"},
    {"random_state": None, "init": "xavier"},
    {"init": "course"},
    {"batch_size": None},
    {"n_iter_no_change": None},
    {"n_iter_no_change": 10, "tol": 1e-3},
    LECTURE | {"max_iter": 200},
], ids=lambda o: "LECTURE,max_iter=200" if o == LECTURE | {"max_iter": 200}
    else ",".join(f"{k}={v}" for k, v in o.items()))
def test_check_estimator_passes_with_each_new_option(option):
    # Each option on top of the defaults (test_sklearn checks the defaults alone); the lecture's network too
    results = check_estimator(bc.BackpropClassifier(**option), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert failed == []


#: warm_start means a second fit goes on from the first: these checks fit one instance several
#: times and compare with a single fit, which is what warm_start is meant not to do.
REFITS_ONE_INSTANCE = {"check_fit_idempotent", "check_classifiers_multilabel_representation_invariance",
                       "check_n_features_in_after_fitting", "check_supervised_y_2d"}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.filterwarnings("ignore:The features' scale:UserWarning")
def test_check_estimator_with_warm_start_fails_only_what_refitting_one_instance_must():
    results = check_estimator(bc.BackpropClassifier(max_iter=200, warm_start=True), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed <= REFITS_ONE_INSTANCE, failed - REFITS_ONE_INSTANCE


# -- class weights -------------------------------------------------------------------------------
def test_class_weight_equals_the_sample_weights_it_stands_for(moons):
    X, y = moons
    by_class = bc.BackpropClassifier(max_iter=200, class_weight={0: 1.0, 1: 3.0}).fit(X, y)
    by_sample = bc.BackpropClassifier(max_iter=200).fit(X, y, sample_weight=np.where(y == 1, 3.0, 1.0))
    np.testing.assert_allclose(by_class.parameters_["W1"], by_sample.parameters_["W1"], rtol=1e-12)


def test_class_weight_multiplies_sample_weight(moons):
    X, y = moons
    w = np.linspace(0.5, 2.0, y.shape[0])
    both = bc.BackpropClassifier(max_iter=200, class_weight={0: 2.0, 1: 1.0}).fit(X, y, sample_weight=w)
    product = bc.BackpropClassifier(max_iter=200).fit(X, y, sample_weight=w * np.where(y == 0, 2.0, 1.0))
    np.testing.assert_allclose(both.parameters_["W1"], product.parameters_["W1"], rtol=1e-12)


def test_balanced_class_weight_raises_the_rare_class_recall():
    X, y = make_classification(600, n_features=4, weights=[0.9, 0.1], random_state=1)
    X = StandardScaler().fit_transform(X)
    plain = bc.BackpropClassifier(max_iter=300).fit(X, y)
    balanced = bc.BackpropClassifier(max_iter=300, class_weight="balanced").fit(X, y)
    recall = [np.mean(m.predict(X)[y == 1] == 1) for m in (plain, balanced)]
    assert recall[1] > recall[0]


def test_class_weight_is_saved_and_loaded_with_its_labels(moons, tmp_path):
    X, y = moons
    labels = np.array(["no", "yes"])[y]
    model = bc.BackpropClassifier(max_iter=50, class_weight={"no": 1.0, "yes": 2.5}).fit(X, labels)
    model.save(tmp_path / "m.npz")
    assert bc.BackpropClassifier.load(tmp_path / "m.npz").class_weight == {"no": 1.0, "yes": 2.5}


# -- resumed training ------------------------------------------------------------------------------
def test_warm_start_continues_where_the_last_fit_ended(moons):
    X, y = moons
    once = lecture(max_iter=400).fit(X, y)  # gradient descent: no optimizer state that a warm start would reset
    twice = lecture(max_iter=200, warm_start=True).fit(X, y).fit(X, y)
    np.testing.assert_allclose(twice.parameters_["W1"], once.parameters_["W1"], rtol=1e-10)
    assert twice.n_iter_ == 400 and len(twice.loss_curve_) == 2 * 201


def test_without_warm_start_a_refit_starts_anew(moons):
    X, y = moons
    model = bc.BackpropClassifier(max_iter=200).fit(X, y)
    first = model.parameters_["W1"].copy()
    np.testing.assert_array_equal(model.fit(X, y).parameters_["W1"], first)
    assert model.n_iter_ == 200


def test_warm_start_refuses_other_classes_or_another_network(moons, iris):
    X, y = moons
    model = lecture(max_iter=20, warm_start=True).fit(X, y)
    with pytest.raises(InvalidInputError, match="same classes"):
        model.fit(X, y + 1)
    with pytest.raises(InvalidInputError, match="hidden_units 4 -> 8"):
        model.set_params(hidden_units=8).fit(X, y)


def test_partial_fit_is_one_epoch_and_keeps_the_optimizer_state(moons):
    X, y = moons
    settings = dict(optimizer="adam", learning_rate_init=0.01, batch_size=50, random_state=0)
    streamed = bc.BackpropClassifier(**settings)
    for _ in range(3):
        streamed.partial_fit(X, y, classes=[0, 1])
    assert (streamed.n_iter_, streamed.n_steps_, streamed.t_) == (3, 18, 900)
    # Adam's step count went on: three epochs of six updates
    assert float(streamed._state.optimizer_state[1]["t"]) == 18
    fresh_each_time = bc.BackpropClassifier(**settings, warm_start=True, max_iter=1)
    for _ in range(3):
        fresh_each_time.fit(X, y)
    assert float(fresh_each_time._state.optimizer_state[1]["t"]) == 6
    assert streamed.score(X, y) >= 0.75


def test_partial_fit_needs_classes_first_and_takes_a_batch_of_one_class(moons):
    X, y = moons
    model = bc.BackpropClassifier()
    with pytest.raises(InvalidInputError, match="classes must be passed on the first call"):
        model.partial_fit(X, y)
    model.partial_fit(X[y == 0], y[y == 0], classes=np.array([0, 1]))
    model.partial_fit(X[y == 1], y[y == 1])
    assert list(model.classes_) == [0, 1]
    with pytest.raises(InvalidInputError, match="not among classes"):
        model.partial_fit(X, y + 5)
    with pytest.raises(InvalidInputError, match="not the same as on the first call"):
        model.partial_fit(X, y, classes=[0, 1, 2])


@pytest.mark.filterwarnings("ignore:The features' scale")  # X + 100, scaled as the first call's X was
def test_partial_fit_keeps_the_first_calls_standardization(moons):
    X, y = moons
    model = bc.BackpropClassifier(standardize=True).partial_fit(X, y, classes=[0, 1])
    mean = model.feature_mean_.copy()
    model.partial_fit(X + 100.0, y)
    np.testing.assert_array_equal(model.feature_mean_, mean)


# -- a refit under readers ----------------------------------------------------------------------
def test_readers_see_the_old_model_or_the_new_one_never_a_mix(moons, tmp_path):
    X, y = moons
    # Two models that differ in every fitted attribute: classes, outputs, features' scale, width.
    old = dict(hidden_units=3, max_iter=50, standardize=False)
    new = dict(hidden_units=9, max_iter=50, standardize=True)
    probe = X[:40]
    answers = {bc.BackpropClassifier(**old).fit(X, y).predict_proba(probe).tobytes(),
               bc.BackpropClassifier(**new).fit(X, np.array(["a", "b"])[y]).predict_proba(probe).tobytes()}
    model = bc.BackpropClassifier(**old).fit(X, y)
    stop, seen, problems = threading.Event(), [], []

    def read():
        while not stop.is_set():
            try:
                P = model.predict_proba(probe)
                labels = model.predict(probe)
                seen.append(P.tobytes())
                if P.tobytes() not in answers:
                    problems.append("probabilities of neither model")
                if labels.dtype.kind not in "iU":
                    problems.append(f"labels of dtype {labels.dtype}")
            except Exception as exc:  # noqa: BLE001 - any error is a failure of the promise
                problems.append(repr(exc))

    def save():
        k = 0
        while not stop.is_set():
            k += 1
            try:
                model.save(tmp_path / f"m{k % 3}.npz")
            except Exception as exc:  # noqa: BLE001
                problems.append(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=save)]
    for t in readers:
        t.start()
    # At least 4 refits under the readers (a loaded machine plans and fits slowly: up to 120 s), up to 30.
    start = time.monotonic()
    refits = 0
    try:
        while (refits < 4 and time.monotonic() < start + 120) or (time.monotonic() < start + 20 and refits < 30):
            model.set_params(**new).fit(X, np.array(["a", "b"])[y])
            model.set_params(**old).fit(X, y)
            refits += 2
    finally:
        stop.set()
        for t in readers:
            t.join(timeout=30)
    assert problems == []
    assert len(set(seen)) == 2, "the readers saw both models"
    assert refits >= 4


# -- what a run says -------------------------------------------------------------------------------
def test_standardized_features_get_no_advice_to_standardize(moons):
    X, y = moons
    X = StandardScaler().fit_transform(X)
    with pytest.warns(bc.FeatureScaleWarning) as said:
        lecture(learning_rate_init=20.0, max_iter=20).fit(X, y)  # the advice is gradient descent's
    text = str(said[0].message)
    assert "standard scale already" in text and "Standardize" not in text and "at most 8" in text


def test_features_far_from_standard_scale_are_advised_to_be_standardized(moons):
    X, y = moons
    with pytest.warns(bc.FeatureScaleWarning, match="Standardize the features"):
        lecture(max_iter=20).fit(X * 10, y)


# -- settings a practitioner keeps ------------------------------------------------------------------
def test_a_plateau_of_the_training_cost_ends_the_run_as_mlps_rule_says(iris):
    X, y = iris
    model = bc.BackpropClassifier(max_iter=5000, n_iter_no_change=5, tol=1e-3).fit(X, y)
    assert model.n_iter_ < 5000
    # MLPClassifier's rule, replayed over the reads after the start: it first fires at the last one
    best, count, fired = np.inf, 0, []
    for J in model.loss_curve_[1:]:
        count = count + 1 if J > best - 1e-3 else 0
        best = min(best, J)
        fired.append(count > 5)
    assert fired[-1] and not any(fired[:-1])


def test_without_n_iter_no_change_every_iteration_runs(iris):
    X, y = iris
    assert bc.BackpropClassifier(max_iter=300, n_iter_no_change=None).fit(X, y).n_iter_ == 300


def test_max_iter_reached_before_the_plateau_warns_as_mlp_does(iris):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X, y = iris
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\) reached"):
        MLPClassifier(max_iter=5, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(5\) reached") as said:
        bc.BackpropClassifier(max_iter=5).fit(X, y)
    assert said[0].filename == __file__  # told at the caller's line


@pytest.mark.parametrize("fit", [
    lambda X, y: bc.BackpropClassifier(max_iter=5000, n_iter_no_change=5, tol=1e-3).fit(X, y),  # the plateau ended it
    lambda X, y: bc.BackpropClassifier(max_iter=5, n_iter_no_change=None).fit(X, y),  # no rule to converge by
    lambda X, y: lecture(max_iter=5).fit(X, y),  # the lecture's fixed count
    lambda X, y: bc.BackpropClassifier().partial_fit(X, y, classes=[0, 1, 2]),  # one epoch, as MLP's
], ids=["plateau", "no rule", "lecture", "partial_fit"])
def test_no_convergence_warning_where_nothing_was_cut_short(iris, fit):
    from sklearn.exceptions import ConvergenceWarning

    X, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit(X, y)


def test_mini_batch_cost_reads_are_the_mean_of_the_epochs_batches(moons):
    X, y = moons  # 300 examples: batches of 200 and 100
    model = bc.BackpropClassifier(batch_size=200, max_iter=3, n_iter_no_change=50, random_state=0).fit(X, y)
    batches = []
    reference = bc.BackpropClassifier(batch_size=200, max_iter=3, cost_every=1, n_iter_no_change=None, random_state=0)
    reference.fit(X, y, callback=lambda i, J: batches.append(J))
    # epoch 1's read (at update 2) is the weighted mean of updates 0 and 1 of the same run
    assert model.cost_history_[1][0] == 2
    assert model.cost_history_[1][1] == pytest.approx((200 * batches[0] + 100 * batches[1]) / 300, rel=1e-12)


def test_batch_size_auto_is_min_200_m(moons):
    X, y = moons
    model = bc.BackpropClassifier(batch_size="auto", max_iter=2).fit(X, y)
    assert model.plan_.batch_size == 200 and model.n_steps_ == 4
    small = bc.BackpropClassifier(batch_size="auto", max_iter=2).fit(X[:50], y[:50])
    assert small.plan_.batch_size == 50 and small.n_steps_ == 2


def test_the_defaults_learn_digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = bc.BackpropClassifier(max_iter=30).fit(X[:1200], y[:1200])
    assert model.score(X[1200:], y[1200:]) > 0.9


def test_a_model_pickled_before_its_state_was_one_object_still_predicts(moons):
    X, y = moons
    model = bc.BackpropClassifier(max_iter=50, standardize=True).fit(X, np.array(["a", "b"])[y])
    state = model._state
    old = {k: v for k, v in model.__dict__.items() if k != "_state"} | {  # as an earlier version pickled it
        "_network": state.network, "classes_": state.labels.classes, "target_type_": state.labels.target_type,
        "_label_dtype": state.labels.dtype, "activation_": state.activation, "output_": state.output,
        "n_features_in_": state.n_features_in, "fitted_params_": state.fitted_params,
        "feature_mean_": state.scaling[0], "feature_scale_": state.scaling[1], "_fit_input": state.fit_input,
        "n_outputs_": state.n_outputs, "cost_history_": list(state.cost_history),
        "loss_curve_": [J for _, J in state.cost_history], "n_iter_": state.n_iter, "validation_scores_": None,
        "validation_loss_curve_": None, "best_validation_score_": None, "best_iteration_": None,
        "dtype_": state.dtype, "plan_": state.plan}
    revived = bc.BackpropClassifier.__new__(bc.BackpropClassifier)
    revived.__setstate__(old)
    np.testing.assert_array_equal(revived.predict_proba(X), model.predict_proba(X))
    assert list(revived.classes_) == ["a", "b"] and revived.n_iter_ == 50


def test_each_partial_fit_call_shuffles_afresh_and_reproducibly(moons):
    X, y = moons
    runs = []
    for _ in range(2):
        model = bc.BackpropClassifier(batch_size=50, random_state=0)
        orders = []
        for _ in range(2):
            model.partial_fit(X, y, classes=[0, 1], callback=lambda i, J: orders.append(J))
        runs.append(orders)
    assert runs[0] == runs[1]  # reproducible
    from backprop_core.estimator import _shuffle_seed

    seeds = {_shuffle_seed(0, type("Fitted", (), {"n_steps": n})) for n in (6, 12, 18)}
    assert len(seeds) == 3 and 0 not in seeds  # each call its own shuffles
    assert _shuffle_seed(None, type("Fitted", (), {"n_steps": 6})) is None
