"""Pictures: the data, the cost curve and the decision boundary, on matplotlib Axes.

matplotlib is an optional extra (``pip install 'backprop-core[plot]'``).  This
module never chooses a matplotlib backend: a notebook or an interactive session
keeps showing figures after any ``plot_*`` call.  Programs that only write files
choose one themselves (the command line does).

Every function draws on ``ax`` when given (else on pyplot's current Axes) and
returns that Axes; titles are the caller's.

Data come in either convention, decided by the labels' shape:

* samples as rows (scikit-learn): ``X`` (m, n) with ``y`` (m,);
* examples as columns (the lecture): ``X`` (n, m) with ``Y`` (1, m).

Any other shape of the labels is refused, so no X is ever guessed at.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import is_array_api_obj

from .backends import backend_for_array
from .errors import InvalidInputError, InvalidTypeError, MissingDependencyError

#: Colours of class 0 and class 1: points in the strong tone, predicted regions in the pale one.
CLASS_COLORS = ("#c0392b", "#2166ac")
REGION_COLORS = ("#f4c2c2", "#c6dbef")


def pyplot():
    """matplotlib.pyplot, imported on first use; the backend is matplotlib's own choice."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plotting needs matplotlib: pip install 'backprop-core[plot]'") from None
    return plt


def examples_as_rows(X, y):
    """``(X, y)`` as host NumPy arrays with samples as rows: X (m, n), y (m,).

    ``y`` of shape (m,) means X is (m, n); ``Y`` of shape (1, m) means the
    lecture's columns, X (n, m).  Arrays of any supported library are accepted.
    """
    X, y = _host(X, "X"), _host(y, "y")
    if X.ndim != 2:
        raise InvalidInputError(f"X must be 2-D; got shape {X.shape}")
    if y.ndim == 1:
        if X.shape[0] != y.shape[0]:
            hint = (" (for the lecture's columns, give Y the shape (1, m))"
                    if X.shape[1] == y.shape[0] else "")
            raise InvalidInputError(f"y has shape {y.shape}, so examples are rows, but X has shape {X.shape}: "
                                    f"{X.shape[0]} rows for {y.shape[0]} labels{hint}")
        X_rows, y_rows = X, y
    elif y.ndim == 2 and y.shape[0] == 1:
        if X.shape[1] != y.shape[1]:
            hint = " (for samples as rows, give y the shape (m,))" if X.shape[0] == y.shape[1] else ""
            raise InvalidInputError(f"Y has shape {y.shape}, so examples are columns, but X has shape {X.shape}: "
                                    f"{X.shape[1]} columns for {y.shape[1]} labels{hint}")
        X_rows, y_rows = X.T, y[0]
    else:
        raise InvalidInputError(f"labels of shape {y.shape} are ambiguous; give y (m,) with X (m, n) "
                                "(samples as rows) or Y (1, m) with X (n, m) (the lecture's columns)")
    if y_rows.shape[0] == 0:
        raise InvalidInputError("X and y hold no examples")
    if not np.all(np.isfinite(X_rows)):
        raise InvalidInputError("X holds NaN or infinite values; they cannot be placed on a plot")
    return X_rows, y_rows


def plot_data(X, y, ax=None):
    """The examples coloured by class, with a class legend.

    X (m, 2) with y (m,), or the lecture's X (2, m) with Y (1, m); labels 0/1.
    """
    X, y = _two_features(X, y)
    ax = _axes(ax)
    _scatter_classes(ax, X, y)
    _label_axes(ax)
    ax.legend(loc="best", fontsize="small")
    return ax


def plot_cost_history(history, ax=None, *, title: str | None = "cross-entropy cost"):
    """Cost J against iteration from ``model.cost_history_`` (pairs of (iteration, cost))."""
    try:
        its, costs = zip(*history) if len(history) else ((), ())
    except (TypeError, ValueError):
        raise InvalidInputError("history must be a sequence of (iteration, cost) pairs, "
                                "such as a fitted model's cost_history_") from None
    ax = _axes(ax)
    ax.plot(its, costs, color="tab:blue")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost J")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return ax


def plot_decision_boundary(model, X, y, ax=None, *, activation=None, title: str | None = None,
                           resolution: int = 300):
    """Shade the region where ``model`` predicts class 1, with the examples over it.

    X (m, 2) with y (m,), or the lecture's X (2, m) with Y (1, m); labels 0/1.
    ``model`` is one of:

    * a fitted estimator (anything with ``predict`` taking rows (k, 2));
    * a parameters dict ``W1 b1 W2 b2`` of one output, with ``activation``
      (default: the one ``nn_model``'s parameters record, else "tanh", the
      lecture's; one contradicting the record is refused, as ``predict``
      refuses it); it is evaluated on the host in float64;
    * a callable taking grid points as rows (k, 2) and returning k labels, as in
      the lecture: ``plot_decision_boundary(lambda x: predict(parameters, x.T), X, Y)``.

    ``title`` may name ``{accuracy}``, the share of the drawn examples the model
    gets right: ``title="training accuracy {accuracy:.1%}"``.
    """
    X, y = _two_features(X, y)
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise InvalidInputError(f"resolution must be an integer >= 2, got {resolution!r}")
    classify = _classifier(model, activation)
    lo, hi = _limits(X)
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    Z = classify(np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    ax = _axes(ax)
    ax.contourf(xx, yy, Z, levels=[-0.5, 0.5, 1.5], colors=list(REGION_COLORS))
    points = _scatter_classes(ax, X, y)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    _label_axes(ax)
    # Each entry shows a class's point over its region's shade, so one legend explains both.
    from matplotlib.patches import Patch

    handles = [(Patch(facecolor=shade, edgecolor="none"), dots) for shade, dots in zip(REGION_COLORS, points)]
    ax.legend(handles, [dots.get_label() for dots in points], title="points: true, shade: predicted",
              loc="best", fontsize="small", title_fontsize="small")
    if title:
        ax.set_title(title.format(accuracy=float(np.mean(classify(X) == y))))
    return ax


def _host(x, what):
    if x is None:
        raise InvalidInputError(f"{what} is None; pass an array")
    if is_array_api_obj(x):
        x = backend_for_array(x).to_numpy(x)
    try:
        x = np.asarray(x)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what} could not be read as an array: {exc}") from None
    if x.dtype.kind not in "biuf":
        raise InvalidTypeError(f"{what} has dtype {x.dtype}; plots need real numbers")
    return x


def _two_features(X, y):
    X, y = examples_as_rows(X, y)
    if X.shape[1] != 2:
        raise InvalidInputError(f"a 2-D plot needs two features; X has {X.shape[1]} "
                                f"(as rows, X has shape {X.shape})")
    if not np.all((y == 0) | (y == 1)):
        raise InvalidInputError(f"labels must be 0 or 1; got {np.unique(y)[:5].tolist()}")
    return X.astype(float), y.astype(float)


def _classifier(model, activation):
    """A function from grid rows (k, 2) to k host labels, whatever ``model`` is."""
    if isinstance(model, dict):
        from .functional import TrainedParameters, predict

        host = {k: _host(v, f"parameters[{k!r}]").astype(float) for k, v in model.items()}
        if isinstance(model, TrainedParameters):  # the copy keeps what they were trained with
            host = TrainedParameters(host, activation=model.activation, output=model.output)
        # As predict does: the recorded activation (tanh for a plain dict); a contradicting one refused.
        return _flat(lambda rows: predict(host, rows.T, activation=activation))
    if activation is not None:
        raise InvalidInputError("activation= applies to a parameters dict; a fitted model or a "
                                "callable carries its own")
    if hasattr(model, "predict"):
        return _flat(model.predict)
    if callable(model):
        return _flat(model)
    raise InvalidTypeError(f"model must be a fitted estimator, a parameters dict or a callable; "
                           f"got {type(model).__name__}")


def _flat(predict_rows):
    def classify(rows):
        Z = _host(predict_rows(rows), "the model's predictions").reshape(-1)
        if Z.shape[0] != rows.shape[0]:
            raise InvalidInputError(f"the model gave {Z.shape[0]} predictions for {rows.shape[0]} points; "
                                    "a decision boundary needs one 0/1 label per point")
        return Z.astype(float)
    return classify


def _limits(X):
    pad = 0.1 * (X.max(axis=0) - X.min(axis=0)) + 0.5
    return X.min(axis=0) - pad, X.max(axis=0) + pad


def _axes(ax):
    return pyplot().gca() if ax is None else ax


def _scatter_classes(ax, X, y):
    """One scatter per class, labelled "class 0" and "class 1"; returns them."""
    return [ax.scatter(X[y == label, 0], X[y == label, 1], color=color, s=14, edgecolors="k", linewidths=0.3,
                       label=f"class {label}")
            for label, color in enumerate(CLASS_COLORS)]


def _label_axes(ax):
    ax.set_xlabel("x1 (first feature)")
    ax.set_ylabel("x2 (second feature)")
