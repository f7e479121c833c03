"""The course's own flower and initial weights give the course's own numbers.

The expected values are the course's printed output (its planar-data notebook): the costs of
``nn_model(X, Y, n_h=4, num_iterations=10000, print_cost=True)`` and the accuracies of its sweep
over the hidden layer's size at 5,000 iterations.
"""

from __future__ import annotations

import numpy as np
import pytest

import backprop_core as bc
from backprop_core.datasets import flower
from backprop_core.estimator import LECTURE
from backprop_core.initialization import initial_parameters_host


def test_the_course_flower_is_the_legacy_generators_draw():
    X, Y = flower(course=True)
    legacy = np.random.RandomState(1)
    t = np.linspace(0, 3.12, 200) + legacy.randn(200) * 0.2
    r = 4 * np.sin(4 * t) + legacy.randn(200) * 0.2
    np.testing.assert_array_equal(X[:, :200], np.stack([r * np.sin(t), r * np.cos(t)]))
    assert X.shape == (2, 400) and Y.dtype == np.uint8 and Y.sum() == 200


def test_the_course_flower_leaves_numpys_global_state_alone():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    flower(course=True)
    assert np.random.rand() == expected


def test_init_course_draws_as_initialize_parameters_does():
    params = initial_parameters_host(2, 4, 1, "course", seed=2)
    legacy = np.random.RandomState(2)
    np.testing.assert_array_equal(params["W1"], legacy.randn(4, 2) * 0.01)
    np.testing.assert_array_equal(params["W2"], legacy.randn(1, 4) * 0.01)
    assert not params["b1"].any() and not params["b2"].any()


def test_the_default_flower_is_another_draw():
    assert not np.array_equal(flower()[0], flower(course=True)[0])


COURSE_COSTS = {0: 0.693048, 1000: 0.288083, 2000: 0.254385, 3000: 0.233864, 4000: 0.226792,
                5000: 0.222644, 6000: 0.219731, 7000: 0.217504}


def test_the_lecture_run_prints_the_course_costs(capsys):
    X, Y = flower(course=True)
    bc.nn_model(X, Y, n_h=4, num_iterations=8000, print_cost=True, init="course", seed=2)
    printed = dict(line.removeprefix("Cost after iteration ").split(": ")
                   for line in capsys.readouterr().out.splitlines())
    assert {int(i): float(J) for i, J in printed.items() if int(i) in COURSE_COSTS} == COURSE_COSTS


#: The course's sweep: accuracy (%) of n_h hidden units after 5,000 iterations.
COURSE_SWEEP = {1: 67.5, 2: 67.25, 3: 90.75, 4: 90.5, 5: 91.25, 20: 90.0, 50: 90.25}


@pytest.mark.slow
def test_the_course_sweep_over_hidden_units_is_reproduced_exactly():
    X, Y = flower(course=True)
    found = {}
    for n_h in COURSE_SWEEP:
        parameters = bc.nn_model(X, Y, n_h, num_iterations=5000, init="course", seed=2)
        found[n_h] = float(np.mean(bc.predict(parameters, X) == Y)) * 100
    assert found == COURSE_SWEEP


def test_the_estimator_takes_the_course_start(flower_data):
    X, Y = flower(course=True)
    model = bc.BackpropClassifier(**(LECTURE | dict(init="course", random_state=2, max_iter=5000,
                                                    cost_every=1000))).fit(X.T, Y[0])
    assert model.score(X.T, Y[0]) == pytest.approx(0.905)
