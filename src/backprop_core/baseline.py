"""The lecture's baseline: logistic regression, whose decision boundary is a straight line.

On the flower it gets about half the points right (the lecture's 47%), which is
why the network needs a hidden layer.  It is scikit-learn's
``LogisticRegressionCV``, as in the lecture; scikit-learn is optional
(``pip install scikit-learn``, or the ``baseline`` extra).
"""

from __future__ import annotations

import inspect
from typing import NamedTuple

import numpy as np

from .errors import MissingDependencyError
from .plotting import examples_as_rows


#: The lecture's settings (an L2 penalty, C chosen by accuracy, the plain fitted
#: attributes), for the parameters whose default scikit-learn is changing: newer
#: versions mark those defaults "warn" and would warn at every fit.
LECTURE_SETTINGS = {"l1_ratios": (0.0,), "scoring": "accuracy", "use_legacy_attributes": False}


class Baseline(NamedTuple):
    """A fitted ``classifier`` (samples as rows) and its training ``accuracy`` in [0, 1]."""

    classifier: object
    accuracy: float


def fit_logistic_regression(X, y, **options) -> Baseline:
    """Fit ``LogisticRegressionCV(**options)`` on X, y in either convention.

    ``y`` (m,) with X (m, n): samples as rows; ``Y`` (1, m) with X (n, m): the
    lecture's columns (see :func:`backprop_core.plotting.examples_as_rows`).
    The classifier predicts from rows (k, n), so it draws through
    ``plot_decision_boundary(baseline.classifier, X, y)`` directly.
    """
    try:
        from sklearn.linear_model import LogisticRegressionCV
    except ImportError:
        raise MissingDependencyError("the logistic-regression baseline needs scikit-learn: "
                          "pip install scikit-learn (or 'backprop-core[baseline]')") from None
    X_rows, y_rows = examples_as_rows(X, y)
    defaults = inspect.signature(LogisticRegressionCV).parameters
    for name, value in LECTURE_SETTINGS.items():
        if name in defaults and isinstance(defaults[name].default, str) and defaults[name].default == "warn":
            options.setdefault(name, value)
    classifier = LogisticRegressionCV(**options).fit(X_rows, y_rows)
    return Baseline(classifier, float(np.mean(classifier.predict(X_rows) == y_rows)))
