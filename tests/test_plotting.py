"""Pictures that explain themselves, the lecture's calls, and the logistic-regression baseline.

Figures are drawn on bare ``matplotlib.figure.Figure`` objects, so these tests
neither choose nor change a matplotlib backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib is not installed (the plot extra)")

from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

import backprop_core as bc  # noqa: E402
from backprop_core.errors import InvalidInputError, InvalidTypeError  # noqa: E402
from backprop_core.plotting import (  # noqa: E402
    CLASS_COLORS,
    examples_as_rows,
    plot_cost_history,
    plot_data,
    plot_decision_boundary,
)
from conftest import lecture  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture
def ax():
    return Figure().subplots()


@pytest.fixture(scope="module")
def fitted(flower_data):
    """A BackpropClassifier fitted on the flower, samples as rows."""
    X, Y = flower_data
    return lecture(max_iter=1000).fit(X.T, Y[0])


def contour_segments(ax):
    """The decision boundary's contour arrays: per filled level, its polygons."""
    (contour,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    return contour.allsegs


def assert_same_contours(a, b):
    segs_a, segs_b = contour_segments(a), contour_segments(b)
    assert len(segs_a) == len(segs_b)
    for level_a, level_b in zip(segs_a, segs_b):
        assert len(level_a) == len(level_b)
        for poly_a, poly_b in zip(level_a, level_b):
            np.testing.assert_array_equal(poly_a, poly_b)


def legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


# -- drawing on the caller's axes ---------------------------------------------------------

def test_every_plot_draws_on_the_given_axes_and_returns_them(flower_data, fitted):
    X, Y = flower_data
    fig = Figure()
    a, b, c = fig.subplots(1, 3)
    assert plot_data(X, Y, a) is a
    assert plot_cost_history(fitted.cost_history_, b) is b
    assert plot_decision_boundary(fitted, X.T, Y[0], c) is c
    assert len(a.collections) == 2 and len(b.lines) == 1 and contour_segments(c)


def test_cost_plot_is_cost_j_against_iteration(fitted, ax):
    plot_cost_history(fitted.cost_history_, ax)
    its, costs = ax.lines[0].get_data()
    np.testing.assert_array_equal(its, [i for i, _ in fitted.cost_history_])
    np.testing.assert_array_equal(costs, [J for _, J in fitted.cost_history_])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("iteration", "cost J")


# -- one decision boundary, whatever describes the model --------------------------------------

def test_estimator_parameters_dict_and_callable_draw_the_same_boundary(flower_data, fitted):
    X, Y = flower_data
    params = fitted.parameters_
    fig = Figure()
    a, b, c = fig.subplots(1, 3)
    plot_decision_boundary(fitted, X.T, Y[0], a)
    plot_decision_boundary(params, X, Y, b, activation="tanh")
    plot_decision_boundary(lambda x: bc.predict(params, x.T), X, Y, c)
    assert_same_contours(a, b)
    assert_same_contours(a, c)


def test_the_activation_decides_the_boundary_of_a_parameters_dict(flower_data, fitted):
    X, Y = flower_data
    fig = Figure()
    a, b = fig.subplots(1, 2)
    plot_decision_boundary(fitted.parameters_, X, Y, a, activation="tanh")
    plot_decision_boundary(fitted.parameters_, X, Y, b, activation="relu")
    with pytest.raises(AssertionError):
        assert_same_contours(a, b)


def test_parameters_that_record_their_activation_are_drawn_with_it(flower_data):
    X, Y = flower_data
    relu = bc.nn_model(X, Y, 4, 300, activation="relu", learning_rate=0.5)
    fig = Figure()
    a, b = fig.subplots(1, 2)
    plot_decision_boundary(relu, X, Y, a, title="{accuracy}")
    plot_decision_boundary(lambda x: bc.predict(relu, x.T), X, Y, b, title="{accuracy}")
    assert_same_contours(a, b)
    assert a.get_title() == b.get_title()
    with pytest.raises(bc.InvalidInputError, match="trained with activation 'relu', not 'tanh'"):
        plot_decision_boundary(relu, X, Y, Figure().subplots(), activation="tanh")


def test_the_lectures_call_works_as_written(flower_data, fitted):
    import matplotlib.pyplot as plt

    X, Y = flower_data
    parameters = fitted.parameters_
    predict = bc.predict
    plt.figure()
    try:
        ax = plot_decision_boundary(lambda x: predict(parameters, x.T), X, Y)
        assert ax is plt.gca() and contour_segments(ax)
    finally:
        plt.close("all")


def test_rows_and_the_lectures_columns_draw_the_same_picture(flower_data, fitted):
    X, Y = flower_data
    fig = Figure()
    a, b = fig.subplots(1, 2)
    plot_decision_boundary(fitted, X.T, Y[0], a)
    plot_decision_boundary(fitted, X, Y, b)
    assert_same_contours(a, b)
    for dots_a, dots_b in zip(a.collections[1:], b.collections[1:]):
        np.testing.assert_array_equal(dots_a.get_offsets(), dots_b.get_offsets())


def test_parameters_data_and_predictions_on_any_backend_draw_as_their_numpy_copies(backend, flower_data, fitted):
    X, Y = flower_data
    dtype = backend.default_dtype
    on_backend = backend.parameters_from_host({k: np.asarray(v) for k, v in fitted.parameters_.items()}, dtype)
    on_host = {k: backend.to_numpy(v) for k, v in on_backend.items()}
    X_backend, Y_backend = backend.asarray(X, dtype), backend.asarray(Y, dtype)
    fig = Figure()
    a, b, c, d = fig.subplots(1, 4)
    plot_decision_boundary(on_host, backend.to_numpy(X_backend), backend.to_numpy(Y_backend), a)
    plot_decision_boundary(on_backend, X_backend, Y_backend, b)
    assert_same_contours(a, b)

    def predict_on_backend(x):
        return bc.predict(on_backend, backend.asarray(x.T, dtype))

    plot_decision_boundary(predict_on_backend, X, Y, c)
    plot_decision_boundary(lambda x: backend.to_numpy(predict_on_backend(x)), X, Y, d)
    assert_same_contours(c, d)


def test_a_title_can_state_the_training_accuracy(flower_data, fitted, ax):
    X, Y = flower_data
    plot_decision_boundary(fitted, X, Y, ax, title="training accuracy {accuracy:.4f}")
    assert ax.get_title() == f"training accuracy {fitted.score(X.T, Y[0]):.4f}"


# -- figures that explain themselves --------------------------------------------------------

@pytest.mark.parametrize("draw", ["data", "boundary"])
def test_class_legend_and_axis_labels(draw, flower_data, fitted, ax):
    X, Y = flower_data
    if draw == "data":
        plot_data(X, Y, ax)
    else:
        plot_decision_boundary(fitted, X, Y, ax)
    assert legend_labels(ax) == ["class 0", "class 1"]
    assert ax.get_xlabel().startswith("x1") and ax.get_ylabel().startswith("x2")


def test_class_colours_are_those_of_the_points(flower_data, ax):
    X, Y = flower_data
    plot_data(X, Y, ax)
    for dots, label, color in zip(ax.collections, (0, 1), CLASS_COLORS):
        np.testing.assert_array_equal(dots.get_offsets(), X.T[Y[0] == label])
        assert tuple(dots.get_facecolor()[0]) == to_rgba(color)


@pytest.mark.slow  # 5 s or more (pytest --durations, a loaded 2-core machine)
def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    script = textwrap.dedent("""
        import matplotlib
        before = matplotlib.get_backend()
        import matplotlib.pyplot as plt
        from matplotlib.figure import Figure
        import backprop_core as bc
        from backprop_core import plotting
        from backprop_core.baseline import fit_logistic_regression
        from backprop_core.datasets import flower

        X, Y = flower()
        model = bc.BackpropClassifier(max_iter=20).fit(X.T, Y[0])
        baseline = fit_logistic_regression(X, Y)
        plotting.pyplot()
        for ax in (None, Figure().subplots()):
            plotting.plot_data(X, Y, ax)
            plotting.plot_cost_history(model.cost_history_, ax)
            plotting.plot_decision_boundary(model, X.T, Y[0], ax, resolution=20)
            plotting.plot_decision_boundary(model.parameters_, X, Y, ax, resolution=20)
            plotting.plot_decision_boundary(lambda x: bc.predict(model.parameters_, x.T), X, Y, ax, resolution=20)
            plotting.plot_decision_boundary(baseline.classifier, X, Y, ax, resolution=20)
        plt.savefig(r"%s")
        print(before, matplotlib.get_backend())
    """ % (tmp_path / "out.svg"))
    env = dict(os.environ, MPLBACKEND="svg")
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "svg"]


# -- bad input names the problem ----------------------------------------------------------

def test_three_features_cannot_make_a_2d_boundary(fitted, ax):
    with pytest.raises(InvalidInputError, match="two features; X has 3"):
        plot_decision_boundary(fitted, np.ones((5, 3)), np.ones(5), ax)


@pytest.mark.parametrize("X_shape, y_shape, message", [
    ((400, 2), (300,), "400 rows for 300 labels"),
    ((2, 400), (1, 300), "400 columns for 300 labels"),
    ((2, 400), (400,), r"give Y the shape \(1, m\)"),
    ((400, 2), (1, 400), r"give y the shape \(m,\)"),
    ((400, 2), (400, 1), "ambiguous"),
    ((800,), (400,), "X must be 2-D"),
])
def test_mismatched_X_and_y_are_named(X_shape, y_shape, message, ax):
    with pytest.raises(InvalidInputError, match=message):
        plot_data(np.zeros(X_shape), np.zeros(y_shape), ax)


def test_labels_other_than_0_and_1_are_named(ax):
    with pytest.raises(InvalidInputError, match="labels must be 0 or 1"):
        plot_data(np.zeros((3, 2)), np.array([0, 1, 2]), ax)


def test_activation_is_refused_for_a_model_that_carries_its_own(flower_data, fitted, ax):
    X, Y = flower_data
    with pytest.raises(InvalidInputError, match="activation= applies to a parameters dict"):
        plot_decision_boundary(fitted, X, Y, ax, activation="relu")


def test_a_model_of_unknown_kind_is_named(flower_data, ax):
    X, Y = flower_data
    with pytest.raises(InvalidTypeError, match="got str"):
        plot_decision_boundary("model.npz", X, Y, ax)


def test_a_model_without_one_label_per_point_is_named(flower_data, ax):
    X, Y = flower_data
    two_outputs = bc.initialize_parameters(2, 4, 2)
    with pytest.raises(InvalidInputError, match="one 0/1 label per point"):
        plot_decision_boundary(two_outputs, X, Y, ax)


def test_a_cost_history_that_is_not_pairs_is_named(ax):
    with pytest.raises(InvalidInputError, match=r"\(iteration, cost\) pairs"):
        plot_cost_history([0.7, 0.6], ax)


# -- the logistic-regression baseline ----------------------------------------------------------

def test_the_baseline_gets_about_half_the_flower_right(flower_data):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from backprop_core.baseline import fit_logistic_regression

    X, Y = flower_data
    classifier, accuracy = fit_logistic_regression(X, Y)
    assert 0.4 <= accuracy <= 0.6  # the lecture reports 47%
    assert accuracy == classifier.score(X.T, Y[0])


def test_the_baseline_fits_rows_and_columns_alike(flower_data):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from backprop_core.baseline import fit_logistic_regression

    X, Y = flower_data
    columns, rows = fit_logistic_regression(X, Y), fit_logistic_regression(X.T, Y[0])
    np.testing.assert_array_equal(columns.classifier.coef_, rows.classifier.coef_)
    assert columns.accuracy == rows.accuracy


def test_the_baseline_draws_through_the_same_boundary_plot(flower_data):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed")
    from backprop_core.baseline import fit_logistic_regression

    X, Y = flower_data
    clf = fit_logistic_regression(X, Y).classifier
    fig = Figure()
    a, b = fig.subplots(1, 2)
    plot_decision_boundary(clf, X, Y, a)
    plot_decision_boundary(lambda x: clf.predict(x), X, Y, b)  # the lecture's call
    assert_same_contours(a, b)
    assert legend_labels(a) == ["class 0", "class 1"]


def test_without_scikit_learn_the_baseline_says_what_to_install(monkeypatch, flower_data):
    from backprop_core.baseline import fit_logistic_regression

    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.linear_model", None)
    X, Y = flower_data
    with pytest.raises(ImportError, match=r"pip install scikit-learn \(or 'backprop-core\[baseline\]'\)"):
        fit_logistic_regression(X, Y)


def test_examples_as_rows_states_the_convention(flower_data):
    X, Y = flower_data
    X_rows, y_rows = examples_as_rows(X, Y)
    assert X_rows.shape == (400, 2) and y_rows.shape == (400,)
    np.testing.assert_array_equal(X_rows, X.T)


# -- the benchmark's figures ---------------------------------------------------------------------

@pytest.fixture
def bench_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import chunks
    import report

    return report, chunks


def _records(name):
    path = BENCH / "results" / "cpu-2026-11-27" / name
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_throughput_plot_names_dtype_and_machine_and_keeps_its_legend_off_the_data(bench_modules, tmp_path):
    report, _ = bench_modules
    fig = report.write_plot(_records("results.jsonl"), tmp_path / "throughput.png")
    assert (tmp_path / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    title = fig.get_suptitle()
    assert "float32" in title and "Intel(R) Xeon(R) Processor x 2" in title
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)
    labels = [t.get_text() for t in legend.get_texts()]
    assert {"numpy", "torch-nn (peer)", "floor (cpu)"} <= set(labels)


def test_chunks_plot_has_every_line_in_its_legend_each_one_distinct(bench_modules, tmp_path):
    _, chunks = bench_modules
    env, *rows = _records("chunks.jsonl")
    fig = chunks.write_plot(rows, env, tmp_path / "chunks.png")
    assert (tmp_path / "chunks.png").read_bytes()[:4] == b"\x89PNG"
    for ax in fig.axes:
        lines = ax.get_lines()
        assert sorted(legend_labels(ax)) == sorted(line.get_label() for line in lines)
        looks = {(to_rgba(line.get_color()), line.get_linestyle()) for line in lines}
        assert len(looks) == len(lines)
