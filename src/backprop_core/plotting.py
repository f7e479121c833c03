"""Pictures: the cost curve and the decision boundary, on matplotlib Axes.

matplotlib is an optional extra (``pip install 'backprop-core[plot]'``).
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError, MissingDependencyError


def pyplot():
    """matplotlib.pyplot, drawing to files (Agg) unless a backend was chosen already."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("plotting needs matplotlib: pip install 'backprop-core[plot]'") from None
    return plt


def plot_cost_history(history, ax=None):
    """Cost against iteration from ``model.cost_history_`` (pairs of (iteration, cost))."""
    plt = pyplot()
    ax = ax or plt.gca()
    its, costs = zip(*history) if history else ((), ())
    ax.plot(its, costs, color="tab:blue")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost J")
    ax.set_title("cross-entropy cost")
    ax.grid(True, alpha=0.3)
    return ax


def plot_decision_boundary(model, X, y, ax=None, resolution: int = 300):
    """Shade where a fitted two-feature model predicts 1, with the points X (m, 2) over it."""
    plt = pyplot()
    X, y = np.asarray(X, dtype=float), np.asarray(y).reshape(-1)
    if X.ndim != 2 or X.shape[1] != 2:
        raise InvalidInputError(f"a decision boundary needs two features; X has shape {X.shape}")
    ax = ax or plt.gca()
    pad = 0.1 * (X.max(axis=0) - X.min(axis=0)) + 0.5
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.c_[xx.ravel(), yy.ravel()]
    Z = np.asarray(model.predict(grid)).reshape(xx.shape)
    ax.contourf(xx, yy, Z, levels=[-0.5, 0.5, 1.5], colors=["#f4c2c2", "#b9d3ee"], alpha=0.8)
    ax.scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm_r", s=12, edgecolors="k", linewidths=0.3)
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    return ax
