"""An estimator in the scikit-learn manner: samples are rows.

``fit(X, y)`` takes X (m, n_features) and the labels scikit-learn accepts for
classification: y (m,) of any kind (strings, booleans, {-1, 1}, integers; two
classes train the lecture's sigmoid output, more a softmax output), or a 0/1
indicator matrix (m, n_labels) for several independent labels (sigmoid
outputs).  Results come back in the caller's library and on the caller's
device: NumPy in, NumPy out, even when trained on a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
import warnings
from dataclasses import dataclass

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import validate_data

from . import equations, training
from .activations import get_activation
from .backends import BackendUnavailableError, backend_for_array, get_backend
from .errors import BackpropCoreError, DeviceMemoryError, DistributedTrainingError, InvalidInputError
from .errors import InvalidTypeError, TrainingDivergedError, TrainingInterrupted
from .execution import FIELDS as EXECUTION_FIELDS, refuse_settings
from .execution import Execution
from .initialization import INITS
from .parameters import unpack
from .model_schema import classes_of
from .persistence import load_parameters, save_parameters
from .validation import (
    as_array,
    check_dtype_name,
    check_finite,
    check_non_negative,
    check_positive,
    check_seed,
    dtype_name,
    encode_labels,
    follow,
    in_fitted_order,
    Labels,
    is_device_array,
    label_dtype_name,
    labels_from_classes,
    read_labels,
    to_backend,
)

#: X is validated to one of these (integers and booleans become float64), then cast to ``dtype``.
FLOAT_DTYPES = (np.float64, np.float32)


class NotFittedError(BackpropCoreError, SklearnNotFittedError):
    """The estimator was used before ``fit`` (scikit-learn's NotFittedError, and the project's)."""


#: Old names of this estimator's settings, kept working: each means the scikit-learn name beside it.
ALIASES = {"seed": "random_state", "num_iterations": "max_iter", "epochs": "max_iter",
           "learning_rate": "learning_rate_init"}

#: The course's network and its training, as the lecture runs it: ``BackpropClassifier(**LECTURE)``
#: gives the course's numbers (4 tanh units, gradient descent at 1.2, 10,000 full-batch iterations
#: from a small normal draw, no penalty, no stopping rule).  ``nn_model`` and the command line's
#: lecture mode keep these values; the estimator's own defaults are :data:`PRACTITIONER`'s.
LECTURE = dict(hidden_units=4, activation="tanh", optimizer="gd", learning_rate_init=1.2, max_iter=10000,
               alpha=0.0, batch_size=None, init="normal", n_iter_no_change=None, tol=1e-4)

#: ``batch_size="auto"``, resolved to min(200, m) once m is known.
AUTO_BATCH = object()

#: The update rules :func:`backprop_core.training.fit` applies to the equations' gradients.
OPTIMIZERS = ("gd", "momentum", "rmsprop", "adam")


@dataclass(frozen=True)
class _Fitted:
    """Everything a fit decides, in one object: the estimator replaces it in one assignment.

    A reader (predict, predict_proba, save) takes it once and uses nothing else,
    so a refit on another thread shows it the old model or the new one, never a mix.
    """

    network: "_Placed"
    labels: Labels
    activation: str
    output: str
    n_features_in: int
    feature_names_in: object  # np.ndarray of names, or None
    fitted_params: dict | None
    scaling: tuple | None  # (mean, scale), (n,) float64 each
    fit_input: object  # the adapter of fit's input (scikit-learn's array_api_dispatch rule)
    cost_history: tuple
    n_iter: int
    n_steps: int
    steps_per_epoch: int | None  # None for full batch
    t: int
    validation: tuple | None
    best_iteration: int | None
    dtype: str
    plan: object
    n_outputs: int
    optimizer_state: object = None
    execution: Execution | None = None  # None: loaded from a file, or pickled before fits recorded it


def _fitted_attribute(field, doc, *, absent_if_none=False, writable=False):
    """A public fitted attribute, read from the one :class:`_Fitted` state.

    ``absent_if_none``: a None value reads as a missing attribute (``feature_names_in_``, as
    scikit-learn expects).  ``writable``: assigning replaces the state by a copy (one step).
    An unfitted estimator keeps what scikit-learn's validation records on it (a fit's twin).
    """

    def get(self):
        state = self.__dict__.get("_state")
        if state is None:
            seen = self.__dict__.get("_seen", {})
            if field in seen:
                return seen[field]
            raise AttributeError(f"{type(self).__name__} has no fitted {field!r}: it is not fitted")
        value = field_of(state)
        if absent_if_none and value is None:
            raise AttributeError(field)
        return value

    def field_of(state):
        return getattr(state, FIELDS.get(field, field))

    def put(self, value):
        state = self.__dict__.get("_state")
        if state is None or not writable:
            if state is not None:
                raise AttributeError(f"{field} is set by fit")
            self.__dict__.setdefault("_seen", {})[field] = value
            return
        self.__dict__["_state"] = dataclasses.replace(state, **{FIELDS.get(field, field): value})

    def drop(self):
        state = self.__dict__.get("_state")
        if state is None:
            self.__dict__.get("_seen", {}).pop(field, None)
        elif writable:
            self.__dict__["_state"] = dataclasses.replace(state, **{FIELDS.get(field, field): None})
        else:
            raise AttributeError(f"{field} is set by fit")

    return property(get, put, drop, doc)


#: Public attribute names (without the trailing _) whose :class:`_Fitted` field is named otherwise.
FIELDS = {"n_features_in_": "n_features_in", "feature_names_in_": "feature_names_in",
          "fitted_params_": "fitted_params", "cost_history_": "cost_history", "dtype_": "dtype",
          "plan_": "plan", "best_iteration_": "best_iteration", "n_iter_": "n_iter", "n_steps_": "n_steps",
          "t_": "t", "activation_": "activation", "output_": "output", "n_outputs_": "n_outputs",
          "execution_": "execution",
          "_network": "network", "_fit_input": "fit_input"}


class _NamesWhereExecutionWent:
    """scikit-learn forbids ``**kwargs`` in ``__init__``: before it, a setting that moved to the
    execution is named with where it went, instead of Python's "unexpected keyword argument".
    A base of its own, so that the signature scikit-learn reads stays ``__init__``'s."""

    def __new__(cls, *args, **kwargs):
        refuse_settings(cls.__name__, kwargs, InvalidTypeError)
        return super().__new__(cls)


class BackpropClassifier(ClassifierMixin, BaseEstimator, _NamesWhereExecutionWent):
    """One hidden layer trained from the lecture's equations, with scikit-learn's names.

    The defaults are a practitioner's, those of scikit-learn's ``MLPClassifier()``: 100 relu
    units from a xavier draw, Adam at 0.001 with an L2 penalty of 1e-4, mini-batches of
    min(200, m), at most 200 epochs, stopping once the training cost has not fallen by 1e-4
    for more than 10 epochs.  They suit standardized tabular data, and on scikit-learn's
    data sets score within a point of ``MLPClassifier()`` in no more time
    (bench/defaults.py).  The lecture's network is a teaching example, not a default to
    keep: 4 tanh units under full-batch gradient descent fit slowly and underfit wider
    problems (digits).  ``BackpropClassifier(**LECTURE)`` gives it, with the course's numbers.

    Two classes train one sigmoid output (the lecture); more classes a softmax
    output over them; a 0/1 indicator matrix one sigmoid output per label.

    Parameters
    ----------
    hidden_units : int, default 100
    activation : {"tanh", "sigmoid", "relu", "leaky_relu"}, default "relu"
    optimizer : {"gd", "momentum", "rmsprop", "adam"}, default "adam"; the update rule applied to
        the equations' gradients (the lecture's gradient descent, or the course's next three).
        Not scikit-learn's ``solver``: whether the steps take the whole batch or mini-batches is
        ``batch_size``'s choice, for every rule alike.
    learning_rate_init : float, default 0.001; the (constant) step size, as MLPClassifier names it
    max_iter : int, default 200; full-batch iterations, or epochs with mini-batches
        (as MLPClassifier counts them)
    alpha : float, default 1e-4; L2 penalty: (alpha / 2m) ||W||^2 added to the cost, as the course writes it
    batch_size : "auto" (default) for min(200, m), as MLPClassifier; an int for mini-batches of
        shuffled data; None for full-batch steps (the lecture)
    random_state : int or None, default 0; seeds the initial weights, the shuffles and the
        validation split (None: fresh from the operating system)
    class_weight : None, "balanced" or a dict {label: weight}; multiplied into ``sample_weight``
        (scikit-learn's ``compute_sample_weight``)
    warm_start : bool, default False; a fit starts from the fitted weights (same classes,
        features and network) instead of a fresh draw, and extends ``loss_curve_`` and ``n_iter_``
    momentum : float, default 0.9; the momentum rule's beta
    beta_1, beta_2, epsilon : Adam's (and RMSprop's ``beta_2`` and ``epsilon``), default 0.9, None
        (the rule's own: 0.999 for Adam, 0.9 for RMSprop, as the course has them) and 1e-8
    backend : str, default "numpy"; also "cupy", "torch", "jax", "array_api_strict", ...
    device : backend-specific (e.g. 0, "cuda", "cpu"); None for the backend's default
    dtype : "float32" or "float64"; None for the backend's default, which is
        float64 on a CPU and float32 on a GPU (float32 always for jax)
    init : {"normal", "xavier", "he", "course"}, default "xavier" ("normal": standard normal x 0.01;
        "course": the course's draw, ``np.random.seed(random_state)`` then ``randn`` x 0.01)
    cost_every : "auto" (default) or int; read and record the cost every this many
        iterations (mini-batch: updates).  "auto": once per epoch with mini-batches, every
        iteration of a full-batch fit on a CPU, every 100 on a GPU or a cluster (where a
        read waits for the device)
    early_stopping : hold out ``validation_fraction`` of the data (stratified),
        score it at every cost read, stop when the score has not improved by
        ``tol`` for more than ``n_iter_no_change`` reads in a row, and keep the
        parameters that scored best (as scikit-learn's MLPClassifier does)
    validation_fraction : float in (0, 1), default 0.1
    n_iter_no_change : int or None, default 10; with ``early_stopping``, the reads without
        improvement of the validation score it waits (None: 10); without, an int stops the run
        once the training cost has not fallen by ``tol`` for more than this many reads in a row
        (MLPClassifier's rule; mini-batch reads are then the epoch's mean batch cost), None runs
        all ``max_iter``
    tol : float, default 1e-4
    verbose : print the cost (and the validation score) at every cost read
    standardize : learn each feature's mean and standard deviation at fit and
        train on (X - mean) / scale; predict applies the same.  Gradient descent
        with one learning rate suits features of similar spread: data whose
        features lie far from 0 or spread over tens of units (``blobs``) need it.
        A constant feature gets scale 1.
    learning_rate, num_iterations, epochs, seed : the old names of ``learning_rate_init``,
        ``max_iter`` (both) and ``random_state``, still taken (None: not given).  Where the
        new name is set too (as scikit-learn's grids and checks set it), the new name wins.
        ``num_iterations`` counts full-batch iterations and ``epochs`` mini-batch passes: given
        alone where ``batch_size`` says the other mode, it is refused, naming ``max_iter``.
        ``learning_rate="constant"`` is also taken, as MLPClassifier's schedule of that name.

    Notes
    -----
    How a fit runs is not a parameter: chunks, workers, threads or processes,
    streams, the fused kernel and a cluster's iteration timeout change the time a
    fit takes, not the model, and come from the current execution
    (:func:`backprop_core.execution_context`, read once as a fit starts; the
    fitted ``execution_`` records it)::

        with backprop_core.execution_context(chunk_size=4096, workers=2):
            model.fit(X, y)

    Dask arrays are accepted directly: training then runs on Dask (see the
    ``dask`` backend), with the parameters on the client.

    Fitted attributes: ``classes_``, ``target_type_`` ("binary", "multiclass" or
    "multilabel-indicator"), ``activation_`` and ``output_`` (the hidden
    activation and output layer the parameters belong to), ``fitted_params_``
    (``get_params()`` as it was at fit, a device object by its name: what
    :meth:`save` writes; ``set_params`` changes only the next fit), ``parameters_`` (on
    the training device), ``n_features_in_`` (and ``feature_names_in_`` for
    data frames), ``n_outputs_``, ``cost_history_`` (list of (iteration, cost);
    mini-batch: (update, cost)), ``loss_curve_`` (the costs alone), ``n_iter_``
    (iterations, or epochs with mini-batches), ``n_steps_`` (updates of the
    parameters), ``t_`` (examples seen), ``validation_scores_`` and
    ``validation_loss_curve_`` (accuracy and cost on the held-out data at each
    read, None without early stopping), ``best_validation_score_``,
    ``best_iteration_``, ``dtype_``, ``backend_`` (the adapter it trained on),
    ``plan_`` (how the planner ran the fit: mode, chunk size, threads, and why),
    ``execution_`` (the :class:`~backprop_core.execution.Execution` it ran under),
    and ``feature_mean_`` and ``feature_scale_`` (n_features,) float64 (None
    unless ``standardize``).

    Threads: every fitted attribute lives in one object that a fit replaces in one
    assignment, and predict, predict_proba, score and save read it once; a call on
    one thread while another thread refits answers from the old model or the new one,
    never a mix.  Two fits of one estimator at once are not supported (the last to
    finish wins).

    A fitted model pickles (and deep-copies) with its parameters as host NumPy
    arrays and its backend by name and device; it goes back to that backend on
    first use, or, where that backend cannot run (a GPU model unpickled on a
    machine without a GPU), predicts with NumPy on the host, with a warning.
    """

    def __init__(self, hidden_units=100, activation="relu", *, optimizer="adam", learning_rate_init=0.001,
                 max_iter=200, alpha=1e-4, batch_size="auto", random_state=0, class_weight=None,
                 warm_start=False, momentum=0.9, beta_1=0.9, beta_2=None, epsilon=1e-8,
                 backend="numpy", device=None, dtype=None, init="xavier", cost_every="auto",
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4, verbose=False,
                 standardize=False, learning_rate=None, num_iterations=None, epochs=None, seed=None):
        self.hidden_units = hidden_units
        self.activation = activation
        self.optimizer = optimizer
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.alpha = alpha
        self.batch_size = batch_size
        self.random_state = random_state
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.momentum = momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.init = init
        self.cost_every = cost_every
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.standardize = standardize
        self.learning_rate = learning_rate
        self.num_iterations = num_iterations
        self.epochs = epochs
        self.seed = seed

    def set_params(self, **params):
        """scikit-learn's ``set_params``; the execution's settings are refused, naming ``execution_context``."""
        refuse_settings(type(self).__name__, params, InvalidInputError)
        return super().set_params(**params)

    # -- fitted attributes: all read from the one state a fit assigns ------------------
    classes_ = property(lambda self: self._fitted_state().labels.classes, doc="The class labels, sorted.")
    target_type_ = property(lambda self: self._fitted_state().labels.target_type)
    _label_dtype = property(lambda self: self._fitted_state().labels.dtype)
    activation_ = _fitted_attribute("activation_", "The hidden activation the parameters belong to.")
    output_ = _fitted_attribute("output_", "The output layer: 'sigmoid' or 'softmax'.")
    n_features_in_ = _fitted_attribute("n_features_in_", "Features seen at fit.")
    # Writable: the command line records a CSV header's names on the model it fitted on the array.
    feature_names_in_ = _fitted_attribute("feature_names_in_", "Column names seen at fit (data frames).",
                                          absent_if_none=True, writable=True)
    fitted_params_ = _fitted_attribute("fitted_params_", "get_params() as it was at fit.", writable=True)
    cost_history_ = _fitted_attribute("cost_history_", "(iteration, cost) at each cost read.", writable=True)
    n_iter_ = _fitted_attribute("n_iter_", "Iterations run (full batch), or epochs (mini-batches).")
    n_steps_ = _fitted_attribute("n_steps_", "Updates of the parameters made.")
    t_ = _fitted_attribute("t_", "Examples the updates have seen (as MLPClassifier's t_).")
    n_outputs_ = _fitted_attribute("n_outputs_", "Output units.")
    best_iteration_ = _fitted_attribute("best_iteration_", "Early stopping: the iteration of the kept parameters.")
    dtype_ = _fitted_attribute("dtype_", "The float dtype the model computes in.")
    plan_ = _fitted_attribute("plan_", "How the planner ran the fit.")
    execution_ = _fitted_attribute("execution_", "The execution the fit ran under (None for a loaded model).")
    _network = _fitted_attribute("_network", "The parameters and their backend.")
    _fit_input = _fitted_attribute("_fit_input", "The adapter of fit's input.")

    @property
    def loss_curve_(self):
        """The costs of ``cost_history_`` alone."""
        return [J for _, J in self.cost_history_]

    @property
    def feature_mean_(self):
        scaling = self._fitted_state().scaling
        return None if scaling is None else scaling[0]

    @property
    def feature_scale_(self):
        scaling = self._fitted_state().scaling
        return None if scaling is None else scaling[1]

    @property
    def validation_scores_(self):
        v = self._fitted_state().validation
        return None if v is None else [s for _, _, s in v]

    @property
    def validation_loss_curve_(self):
        v = self._fitted_state().validation
        return None if v is None else [J for _, J, _ in v]

    @property
    def best_validation_score_(self):
        scores = self.validation_scores_
        return None if scores is None else max(scores)

    def _fitted_state(self) -> _Fitted:
        """The one fitted state; take it once per call (a refit may replace it meanwhile)."""
        state = self.__dict__.get("_state")
        if state is None:
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")
        return state

    def _view(self, state: _Fitted):
        """An estimator that shows ``state``: scikit-learn's checks of X read it, not ``self``."""
        view = object.__new__(type(self))
        view.__dict__.update(_state=state)
        return view

    def __setstate__(self, state):
        super().__setstate__(state)
        if "_state" not in self.__dict__ and "_network" in self.__dict__:
            self.__dict__["_state"] = _state_of_an_old_pickle(self.__dict__)

    # -- scikit-learn protocol -------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = True
        # Arrays of every library are taken as they are; under scikit-learn's
        # array_api_dispatch its rule holds too (predict in the namespace of fit).
        tags.array_api_support = True
        return tags

    def __sklearn_is_fitted__(self):
        return self.__dict__.get("_state") is not None

    # -- training --------------------------------------------------------------------
    def _settings(self) -> dict:
        """get_params() with the old names resolved into the new ones, checked: what a fit uses.

        Read once per fit, so that ``set_params`` on another thread changes only the next one.
        """
        params = self.get_params()
        defaults = type(self)().get_params()
        s = dict(params)
        if params["learning_rate"] == "constant":  # MLPClassifier's schedule of that name: the only one here
            s["learning_rate"] = None
        elif isinstance(params["learning_rate"], str):
            raise InvalidInputError(
                f"learning_rate={params['learning_rate']!r}: this estimator keeps the learning rate constant "
                "(learning_rate='constant'); set its size with learning_rate_init")
        # As before they were aliases: num_iterations counts full-batch iterations, epochs mini-batch passes.
        # Given both (as the estimator's parameters once held them), each counts in its own mode; given
        # alone in the other mode, it is refused: since the defaults take mini-batches, a lecture-era
        # num_iterations would otherwise be quietly ignored.
        mini_batch = params["batch_size"] is not None
        own, other = ("epochs", "num_iterations") if mini_batch else ("num_iterations", "epochs")
        if params[other] is not None and params[own] is None:
            raise InvalidInputError(
                f"num_iterations counts full-batch iterations, but batch_size={params['batch_size']!r} takes "
                "mini-batches: give max_iter (epochs), or batch_size=None for the lecture's full-batch steps"
                if mini_batch else "epochs counts mini-batch passes, but batch_size=None takes full-batch "
                "steps: give max_iter (iterations), or a batch_size")
        s[other] = None
        said = {}  # a checked value is named as the caller named it
        for old, new in ALIASES.items():
            value = s[old]
            if value is None:
                continue
            if params[new] != defaults[new]:
                continue  # set too, the new name wins: scikit-learn's tools (a grid, its checks) set it
            said[new] = old
            s[new] = value
        if s["init"] not in INITS:
            raise InvalidInputError(f"unknown init {s['init']!r}; choose one of {list(INITS)}")
        if s["optimizer"] not in OPTIMIZERS:
            raise InvalidInputError(f"unknown optimizer {s['optimizer']!r}; choose one of {list(OPTIMIZERS)} "
                                    "(mini-batches are batch_size's choice, for every one)")
        check_seed(s["random_state"], said.get("random_state", "random_state"))
        check_positive(s["max_iter"], said.get("max_iter", "max_iter"), integer=True)
        check_positive(s["learning_rate_init"], said.get("learning_rate_init", "learning_rate_init"))
        check_non_negative(s["alpha"], "alpha")
        if s["cost_every"] != "auto":
            check_positive(s["cost_every"], "cost_every", integer=True)  # or "auto"
        for name in ("standardize", "warm_start"):
            if not isinstance(s[name], (bool, np.bool_)):
                raise InvalidInputError(f"{name} must be True or False, got {s[name]!r}")
        if s["early_stopping"]:
            fraction = s["validation_fraction"]
            check_positive(fraction, "validation_fraction")
            if not fraction < 1:
                raise InvalidInputError(f"validation_fraction must be in (0, 1), got {fraction!r}")
            if s["n_iter_no_change"] is None:
                s["n_iter_no_change"] = 10
        if s["n_iter_no_change"] is not None:
            check_positive(s["n_iter_no_change"], "n_iter_no_change", integer=True)
            check_non_negative(s["tol"], "tol")
        if s["batch_size"] == "auto":  # MLPClassifier's: min(200, m), decided once m is known
            s["batch_size"] = AUTO_BATCH
        s["g"] = get_activation(s["activation"])
        return s

    def fit(self, X, y, sample_weight=None, *, callback=None):
        """Train on X (m, n_features) and y (m,) of class labels or (m, n_labels) of 0/1.

        ``sample_weight`` (m,): non-negative weights; the cost and its gradients
        become weighted means over the examples (times ``class_weight``'s).
        ``callback(iteration, cost)`` is called at each cost read.

        With ``warm_start`` and a fitted model, training continues from its
        weights (a fresh optimizer, as MLPClassifier's); otherwise it starts anew.

        A fit is all or nothing for a fitted model: if validation fails, or
        training diverges, is interrupted, runs out of device memory or loses
        its cluster, the model is left exactly as it was, and the error carries
        the failed run's parameters (``error.parameters``: the lowest cost read
        when it diverged, the last completed iteration otherwise).  A first fit
        that fails so keeps those parameters instead, so nothing trained is lost.
        """
        return self._fit(X, y, sample_weight, callback, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None, *, callback=None):
        """One epoch over X, y (one iteration for full batch), from the fitted weights and the
        optimizer's state, as MLPClassifier's ``partial_fit``.

        ``classes``: every class ``y`` may ever hold, required on the first call (for an
        indicator y, leave it out); later calls check it is the same.  The first call
        learns the standardization (``standardize``) that the later ones keep.
        """
        return self._fit(X, y, sample_weight, callback, incremental=True, classes=classes)

    def _fit(self, X, y, sample_weight, callback, *, incremental, classes=None):
        s = self._settings()
        state = self.__dict__.get("_state")
        twin = type(self)(**self.get_params())  # records n_features_in_ and names, so self is untouched
        X, y = self._check_X(X, y, twin)
        previous = state if state is not None and (incremental or s["warm_start"]) else None
        if incremental:
            y, labels = _partial_fit_labels(y, X.shape[0], classes, None if state is None else state.labels)
        else:
            y, labels = read_labels(y, X.shape[0])
        if previous is not None:
            _check_continues(previous, labels, twin, s, "partial_fit" if incremental else "warm_start")
        Y = follow(X, encode_labels(y, labels))
        sample_weight = self._weights(sample_weight, s["class_weight"], X, y, labels)
        output = "softmax" if labels.target_type == "multiclass" else "sigmoid"
        if previous is not None:
            scaling = previous.scaling  # the weights were trained on these features
        else:
            scaling = _feature_scaling(X, sample_weight, s["dtype"]) if s["standardize"] else None
        if scaling is not None:
            X = _standardized(X, *scaling)
        validation = None
        if s["early_stopping"] and not incremental:  # as MLPClassifier: partial_fit holds nothing out
            X, Y, sample_weight, validation = self._split(X, Y, sample_weight, labels, s)
        m = s["_rows"] = X.shape[0]
        if s["batch_size"] is AUTO_BATCH:
            s["batch_size"] = min(200, m)
        per_epoch = None if s["batch_size"] is None else -(-m // min(int(s["batch_size"]), m))
        if callback is not None and s["verbose"]:
            callback = _verbose(callback)
        elif s["verbose"]:
            callback = _verbose(None)
        started = {}

        def record(plan, backend, dtype, execution):
            started.update(plan=plan, backend=backend, dtype=dtype, execution=execution)

        fitted = dict(labels=labels, twin=twin, params=twin.get_params(), activation=s["g"].name, output=output,
                      place=_place(X), scaling=scaling, per_epoch=per_epoch, previous=previous, m=m,
                      batch=None if per_epoch is None else min(int(s["batch_size"]), m))
        epochs = 1 if incremental else s["max_iter"]
        options = _optimizer_options(s, previous, incremental, _weight_of(sample_weight, m))
        try:
            done = training.fit(
                _columns(X), _columns(Y), hidden_units=s["hidden_units"], activation=s["g"],
                learning_rate=s["learning_rate_init"], num_iterations=epochs,
                backend=s["backend"], device=s["device"], dtype=s["dtype"], init=s["init"],
                seed=_shuffle_seed(s["random_state"], previous),
                parameters=None if previous is None else previous.network.parameters,
                cost_every=_cost_every(s, per_epoch), callback=callback, batch_size=s["batch_size"],
                epochs=None if per_epoch is None else epochs, on_plan=record, output=output,
                sample_weight=sample_weight, validation=validation, n_iter_no_change=s["n_iter_no_change"] or 10,
                stop_on_plateau=s["n_iter_no_change"] is not None and validation is None,
                tol=s["tol"], on_validation=_print_validation if s["verbose"] else None, **options)
        except (TrainingDivergedError, TrainingInterrupted, DeviceMemoryError, DistributedTrainingError) as exc:
            if state is None:  # a refit leaves the fitted model; the error holds the run's
                self._set_fitted(exc.parameters, exc.history, exc.iteration, None, None, **fitted, **started)
            raise
        result = done.result
        if s["n_iter_no_change"] is not None and not incremental:
            _warn_if_unconverged(result.n_iter, epochs if per_epoch is None else epochs * per_epoch, s["max_iter"])
        self._set_fitted(result.parameters, result.history, result.n_iter, result.validation,
                         result.best_iteration, **fitted, plan=done.plan, backend=done.backend, dtype=done.dtype,
                         execution=done.execution,
                         optimizer_state=_kept_state(options["optimizer"], result.optimizer_state, done.backend))
        return self

    def _weights(self, sample_weight, class_weight, X, y, labels):
        """The examples' weights: ``sample_weight`` times ``class_weight``'s, in X's library (or None)."""
        if sample_weight is not None:
            sample_weight = follow(X, self._check_sample_weight(sample_weight, X))
        if class_weight is None:
            return sample_weight
        from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight

        def host(a):
            return backend_for_array(a).to_numpy(a) if is_device_array(a) else np.asarray(a)

        host_y = host(y)
        with _project_errors():
            if labels.target_type == "multilabel-indicator":
                if isinstance(class_weight, dict):
                    raise InvalidInputError("class_weight for an indicator y is 'balanced' or a list of dicts, one "
                                            "per label column (scikit-learn's compute_sample_weight)")
                weights = compute_sample_weight(class_weight, host_y)
            else:
                # The classes y holds (a partial_fit batch may hold some only), each counted by its
                # examples' weights, so that weights stand for repeated examples ("balanced" too).
                # An example of weight 0 is as good as absent: it counts for no class.
                w = np.ones(host_y.shape[0]) if sample_weight is None else host(sample_weight).astype(np.float64)
                counted = w > 0
                present = np.unique(host_y[counted])
                per_class = compute_class_weight(class_weight, classes=present, y=host_y[counted],
                                                 sample_weight=w[counted])
                weights = np.zeros(host_y.shape[0])
                weights[counted] = per_class[np.searchsorted(present, host_y[counted])]
        weights = follow(X, weights)
        if sample_weight is None:
            return weights
        xp = array_namespace(sample_weight)
        return xp.astype(sample_weight, weights.dtype) * weights

    def _check_X(self, X, y, twin):
        """X (and y) checked as scikit-learn checks them; ``twin`` records the features seen."""
        if X is None:
            raise InvalidInputError("X is None; pass an array (n_samples, n_features)")
        if isinstance(X, np.ma.MaskedArray):  # scikit-learn would quietly train on the masked values
            as_array(X, "X")  # refuses it by name
        if is_device_array(X):  # checked where it lives: NumPy would pull it to the host
            X = _check_device_X(as_array(X, "X"))
            twin.n_features_in_ = X.shape[1]
            if y is None:
                raise InvalidInputError(
                    f"{type(self).__name__} requires y to be passed, but the target y is None")
            return X, as_array(y, "y")
        with _project_errors():
            # Finiteness not here: training.fit checks X once, after its cast to the fit's dtype
            # (which also names a float32 overflow), for the arrays of every library alike.
            return validate_data(twin, X, y, dtype=FLOAT_DTYPES, multi_output=True, y_numeric=False,
                                 ensure_all_finite=False)

    @staticmethod
    def _check_sample_weight(sample_weight, X):
        from sklearn.utils.validation import _check_sample_weight

        if is_device_array(X) and isinstance(sample_weight, (int, float, np.number)) \
                and not isinstance(sample_weight, bool):  # one weight for all, as scikit-learn reads a number
            sample_weight = np.full(X.shape[0], float(sample_weight))
        if is_device_array(sample_weight) or is_device_array(X):
            return as_array(sample_weight, "sample_weight")  # checked on the device by training.fit
        with _project_errors():
            return _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)

    def _split(self, X, Y, sample_weight, labels, s):
        """Hold out ``validation_fraction`` of the examples (stratified by class) for early stopping."""
        owner = backend_for_array(X)
        xp = array_namespace(Y)
        if labels.target_type == "binary":
            stratify = owner.to_numpy(Y[:, 0])
        elif labels.target_type == "multiclass":
            stratify = owner.to_numpy(xp.argmax(xp.astype(Y, xp.float32), axis=1))
        else:  # scikit-learn does not stratify multilabel targets either
            stratify = None
        try:
            train, held = train_test_split(np.arange(X.shape[0]), test_size=float(s["validation_fraction"]),
                                           random_state=s["random_state"], stratify=stratify)
        except ValueError as exc:
            raise InvalidInputError(f"cannot hold out validation_fraction={s['validation_fraction']} "
                                    f"for early stopping: {exc}") from None
        xp = array_namespace(X)
        index = "int32" if X.shape[0] < 2**31 else "int64"  # JAX has no int64 by default

        def take(a, rows):
            return None if a is None else xp.take(a, owner.asarray(rows, index), axis=0)

        return (take(X, train), take(Y, train), take(sample_weight, train),
                (_columns(take(X, held)), _columns(take(Y, held)), take(sample_weight, held)))

    def _set_fitted(self, parameters, history, n_iter, validation, best_iteration, *, labels, twin, params,
                    activation, output, plan, backend, dtype, place=None, scaling=None, per_epoch=None,
                    previous=None, m=0, batch=None, optimizer_state=None, execution=None):
        """Make the fit's state and assign it in one step; a continued fit extends the previous record."""
        steps = int(n_iter)
        epochs = steps if per_epoch is None else -(-steps // per_epoch)  # a stopped epoch counts, as MLP's
        history = [(int(i), float(J)) for i, J in history]
        if previous is not None:  # warm_start or partial_fit: the record goes on from the previous fit's
            history = list(previous.cost_history) + [(previous.n_steps + i, J) for i, J in history]
            steps += previous.n_steps
            epochs += previous.n_iter
        n = int(n_iter)  # this run's steps
        t = n * m if per_epoch is None else (n // per_epoch) * m + min((n % per_epoch) * batch, m)
        if previous is not None:
            t += previous.t
        names = getattr(twin, "feature_names_in_", None)
        self.__dict__["_state"] = _Fitted(
            network=_Placed(parameters, backend, dtype), labels=labels, activation=activation, output=output,
            n_features_in=twin.n_features_in_, feature_names_in=names,
            fitted_params=_recorded_params(params, backend), scaling=scaling, fit_input=place or _place(None),
            cost_history=tuple(history), n_iter=epochs, n_steps=steps, steps_per_epoch=per_epoch, t=t,
            validation=None if validation is None else tuple(validation), best_iteration=best_iteration,
            dtype=dtype, plan=plan, n_outputs=int(parameters["W2"].shape[0]), optimizer_state=optimizer_state,
            execution=execution)

    @property
    def parameters_(self):
        """``{"W1", "b1", "W2", "b2"}`` on the device the model computes on."""
        return self._fitted_state().network.parameters

    @property
    def backend_(self):
        """The adapter the model computes with."""
        return self._fitted_state().network.backend

    # -- prediction ------------------------------------------------------------------
    @staticmethod
    def _check_place(state, X, method, name):
        """Under scikit-learn's array_api_dispatch, its rule: the namespace and device of fit."""
        from sklearn import get_config

        fitted = state.fit_input  # None: pickled before fit recorded it; nothing to hold to
        if get_config()["array_api_dispatch"] and fitted is not None and not _in_place(X, fitted):
            raise InvalidInputError(
                f"Inputs passed to {name}.{method}() must use the same namespace and the same "
                f"device as those passed to fit(): fitted on {_where(fitted)}, called with "
                f"{_where(_place(X))} (without array_api_dispatch, this estimator answers in the library it is "
                "asked in)")

    def _probabilities(self, X, method, state=None):
        """A2 as (m, n_outputs) in the caller's library and device, from one fitted ``state``."""
        state = state or self._fitted_state()
        self._check_place(state, X, method, type(self).__name__)
        if is_device_array(X):
            X = _check_device_X(as_array(X, "X"))
            if X.shape[1] != state.n_features_in:
                raise InvalidInputError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                        f"expecting {state.n_features_in} features as input.")
        else:
            X = in_fitted_order(X, state.feature_names_in)  # a frame's columns by name, of the one state read
            with _project_errors():
                X = validate_data(self._view(state), X, reset=False, dtype=FLOAT_DTYPES,
                                  ensure_all_finite=False)  # checked below, once, after the cast
        backend = state.network.backend
        Xd = to_backend(_columns(X), backend, state.dtype, "X")
        check_finite(Xd, backend.xp, "X")
        if state.scaling is not None:  # the features as fit saw them
            mean, scale = state.scaling
            Xd = _standardized(Xd, backend.asarray(mean[:, None], state.dtype),
                               backend.asarray(scale[:, None], state.dtype))
        with backend.context():
            _, _, _, A2 = equations.forward(Xd, *unpack(state.network.parameters), get_activation(state.activation),
                                            equations.get_output(state.output))
        A2 = A2.T
        if backend.holds(X):
            return A2
        return _in_callers_library(backend.to_numpy(A2), X, state.dtype)

    def predict_proba(self, X):
        """Probabilities (m, n_classes) in ``classes_`` order; (m, n_labels) of P(1) for indicator y."""
        state = self._fitted_state()
        return _as_proba(self._probabilities(X, "predict_proba", state), state)

    def predict_log_proba(self, X):
        """The logarithm of :meth:`predict_proba`."""
        state = self._fitted_state()
        P = _as_proba(self._probabilities(X, "predict_log_proba", state), state)
        return array_namespace(P).log(P)

    def predict(self, X):
        """Labels of the kind fitted: (m,) from ``classes_``, or (m, n_labels) of 0/1 for indicator y.

        In X's library and on its device where the labels are numbers; string
        labels come back as a NumPy array.
        """
        state = self._fitted_state()
        return labels_from_classes(self._probabilities(X, "predict", state), state.labels)

    def score(self, X, y, sample_weight=None) -> float:
        """Mean accuracy (for indicator y, every label of a sample must be right), optionally weighted."""
        pred = self.predict(X)

        def host(a):
            return backend_for_array(a).to_numpy(a) if is_array_api_obj(a) else a

        with _project_errors():
            return float(accuracy_score(host(y), host(pred),
                                        sample_weight=None if sample_weight is None else host(sample_weight)))

    # -- saving ----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write parameters, hyperparameters and fitted labels to ``path`` (.npz; no pickle).

        A fitted model saves what it fitted: ``params`` are ``fitted_params_``, the
        hyperparameters as they were at fit, whatever ``set_params`` changed since.

        Metadata keys: ``estimator``, ``params``, ``dtype``, ``n_iter``,
        ``cost_history``, and the fitted ``classes`` (a list), ``classes_dtype``
        (a NumPy dtype string), ``target_type``, ``label_dtype``, ``activation``,
        ``output``, ``n_features_in``, ``feature_names_in`` (a list or None),
        and ``feature_mean`` and ``feature_scale`` (lists, or None unless ``standardize``).
        """
        state = self._fitted_state()  # once: a refit meanwhile saves the old model or the new one whole
        names = state.feature_names_in
        params = state.fitted_params or self._params_of_an_old_pickle(state)
        # A diverged run's record ends in a NaN or infinite cost; the file keeps the finite reads.
        history = [(i, J) for i, J in state.cost_history if math.isfinite(J)]
        classes = state.labels.classes
        scaling = state.scaling or (None, None)
        meta = {"estimator": type(self).__name__, "params": _jsonable_params(params),
                "dtype": state.dtype, "n_iter": state.n_iter, "cost_history": history,
                "classes": classes.tolist(), "classes_dtype": classes.dtype.str,
                "target_type": state.labels.target_type,
                # label_dtype_name: a model pickled before it named y's dtype as fit found it
                "label_dtype": label_dtype_name(state.labels.dtype, classes, state.labels.target_type),
                "activation": state.activation, "output": state.output,
                "n_features_in": int(state.n_features_in),
                "feature_names_in": None if names is None else [str(n) for n in names],
                "feature_mean": _as_list(scaling[0]), "feature_scale": _as_list(scaling[1])}
        save_parameters(path, state.network.host(), meta)

    def _params_of_an_old_pickle(self, state) -> dict:
        """A model pickled before ``fitted_params_`` existed: get_params(), with what its weights
        need (their rows, their activation, their scaling) as the weights show it."""
        params = self.get_params() | {"hidden_units": int(state.network.host()["W1"].shape[0]),
                                      "activation": state.activation,
                                      "standardize": state.scaling is not None}
        if _is_portable(params["device"]):
            return params  # nothing to name: the backend need not wake (a GPU's, where none is)
        return _recorded_params(params, state.network.backend)

    @classmethod
    def load(cls, path, *, backend="numpy", device=None, dtype=None):
        """Load a model saved by :meth:`save` onto ``backend`` and ``device`` (NumPy by default).

        Where the model computes is the caller's choice only: the backend and device the file
        records are replaced by these, so a file never decides what the program connects to
        (a model trained on a Dask cluster or a GPU loads on NumPy unless asked otherwise).
        ``dtype``: "float32" or "float64", or None for the file's own.
        """
        check_dtype_name(dtype)  # nothing but a float the network computes in (int8 would cast silently)
        host, meta = load_parameters(path)  # checked whole: each field, and against the others and the weights
        params = _params_from_json(meta["params"])
        params["backend"], params["device"] = backend, device
        model = cls(**params)
        be = get_backend(model.backend, model.device)
        dtype = dtype or meta["dtype"]
        n2, n0 = host["W2"].shape[0], host["W1"].shape[1]
        if "classes" in meta:
            labels = Labels(classes_of(meta), meta["target_type"], meta["label_dtype"])
            activation, output = meta["activation"], meta["output"]
        else:  # written before labels were fitted: 0/1 float labels, the lecture's sigmoid
            binary = meta.get("y_ndim", 1) == 1
            labels = Labels(np.array([0.0, 1.0]) if binary else np.arange(n2),
                            "binary" if binary else "multilabel-indicator", "float64")
            activation, output = params.get("activation", "tanh"), "sigmoid"
        twin = cls()
        twin.n_features_in_ = meta.get("n_features_in", n0)
        if meta.get("feature_names_in") is not None:
            twin.feature_names_in_ = np.asarray(meta["feature_names_in"], dtype=object)
        scaling = None if meta.get("feature_mean") is None else (
            np.asarray(meta["feature_mean"], dtype=np.float64), np.asarray(meta["feature_scale"], dtype=np.float64))
        model._set_fitted(be.parameters_from_host(host, dtype), [tuple(h) for h in meta["cost_history"]],
                          meta["n_iter"], None, None, labels=labels, twin=twin, params=model.get_params(),
                          activation=activation, output=output, plan=None, backend=be, dtype=dtype, scaling=scaling)
        return model


#: The estimator's defaults for the settings :data:`LECTURE` sets, by name: ``BackpropClassifier(**PRACTITIONER)``
#: is ``BackpropClassifier()``.  Kept from when the defaults were the lecture's, so that code written then
#: still means what it meant; read from the signature, so the two cannot differ.
PRACTITIONER = {name: inspect.signature(BackpropClassifier).parameters[name].default for name in LECTURE}


def _warn_if_unconverged(steps_run: int, steps_planned: int, max_iter: int) -> None:
    """scikit-learn's ConvergenceWarning, as MLPClassifier gives it: a fit with a stopping rule
    (``n_iter_no_change``, or early stopping) that ran all ``max_iter`` without the rule ending it."""
    if steps_run >= steps_planned:
        warnings.warn(f"Maximum iterations ({max_iter}) reached and the optimization hasn't converged yet: "
                      "raise max_iter, or the learning rate", ConvergenceWarning, stacklevel=4)


def _as_proba(P, state):
    """The sigmoid output of a binary model as two columns, P(classes_[0]) and P(classes_[1])."""
    if state.labels.target_type == "binary":
        xp = array_namespace(P)
        return xp.concat([1.0 - P, P], axis=1)
    return P


def _state_of_an_old_pickle(d: dict) -> _Fitted:
    """A model pickled before its fitted state was one object: its attributes, gathered (and removed)."""
    names = d.pop("feature_names_in_", None)
    mean, scale = d.pop("feature_mean_", None), d.pop("feature_scale_", None)
    labels = Labels(d.pop("classes_"), d.pop("target_type_"), d.pop("_label_dtype"))
    history = d.pop("cost_history_")
    scores, losses = d.pop("validation_scores_", None), d.pop("validation_loss_curve_", None)
    n_iter = d.pop("n_iter_")
    for gone in ("loss_curve_", "best_validation_score_"):
        d.pop(gone, None)
    network = d.pop("_network")
    return _Fitted(network=network, labels=labels, activation=d.pop("activation_"), output=d.pop("output_"),
                   n_features_in=d.pop("n_features_in_"), feature_names_in=names,
                   fitted_params=d.pop("fitted_params_", None), scaling=None if mean is None else (mean, scale),
                   fit_input=d.pop("_fit_input", None), cost_history=tuple(history), n_iter=n_iter,
                   n_steps=n_iter, steps_per_epoch=None, t=0,
                   validation=None if scores is None else tuple((0, J, s) for J, s in zip(losses, scores)),
                   best_iteration=d.pop("best_iteration_", None), dtype=d.pop("dtype_"), plan=d.pop("plan_", None),
                   n_outputs=d.pop("n_outputs_"))


def _partial_fit_labels(y, m, classes, fitted):
    """``(y, labels)`` for partial_fit: the first call's ``classes``, then the fitted ones; y is checked to
    hold none other (a batch may hold one class only)."""
    if y.ndim == 2 and y.shape[1] > 1 or (classes is None and fitted is None):
        if classes is None and fitted is None and not (y.ndim == 2 and y.shape[1] > 1):
            raise InvalidInputError("classes must be passed on the first call to partial_fit: every class y "
                                    "may ever hold (a batch may show only some)")
        y, labels = read_labels(y, m) if fitted is None else (y, fitted)
        if fitted is not None and labels.target_type != "multilabel-indicator":
            raise InvalidInputError("partial_fit got an indicator y, but the model was fitted on class labels")
        return y, labels
    given = None if classes is None else np.unique(np.asarray(classes))
    if fitted is not None:
        if given is not None and not np.array_equal(given, fitted.classes):
            raise InvalidInputError(f"`classes={given.tolist()!r}` is not the same as on the first call to "
                                    f"partial_fit, {fitted.classes.tolist()!r}")
        labels = fitted
    else:
        if given.shape[0] < 2:
            raise InvalidInputError(f"classes must hold at least 2 classes, got {given.tolist()!r}")
        labels = Labels(given, "binary" if given.shape[0] == 2 else "multiclass",
                        label_dtype_name(dtype_name(y.dtype) if hasattr(y, "dtype") else given.dtype.name,
                                         given, "multiclass"))
    if y.ndim == 2 and y.shape[1] == 1:
        y = array_namespace(y).reshape(y, (y.shape[0],)) if is_array_api_obj(y) else np.ravel(y)
    if y.shape[0] != m:
        raise InvalidInputError(f"Found input variables with inconsistent numbers of samples: [{m}, {y.shape[0]}]")
    host = backend_for_array(y).to_numpy(y) if is_device_array(y) else np.asarray(y)
    unseen = np.setdiff1d(np.unique(host), labels.classes)
    if unseen.size:
        raise InvalidInputError(f"y holds {unseen.tolist()[:5]!r}, not among classes {labels.classes.tolist()!r}")
    return y, labels


def _check_continues(previous: _Fitted, labels: Labels, twin, s: dict, how: str) -> None:
    """A fit that goes on from ``previous`` (warm_start or partial_fit) must fit the same network."""
    if not (np.array_equal(previous.labels.classes, labels.classes)
            and previous.labels.target_type == labels.target_type):
        raise InvalidInputError(f"{how} can only be used where y has the same classes as in the previous call to "
                                f"fit: previously {previous.labels.classes.tolist()!r}, now "
                                f"{labels.classes.tolist()!r}")
    if twin.n_features_in_ != previous.n_features_in:
        raise InvalidInputError(f"X has {twin.n_features_in_} features, but {type(twin).__name__} is expecting "
                                f"{previous.n_features_in} features as input ({how} continues the fitted model)")
    hidden = int(previous.network.host()["W1"].shape[0])
    changed = [f"{k} {old!r} -> {new!r}" for k, old, new in (
        ("hidden_units", hidden, s["hidden_units"]), ("activation", previous.activation, s["g"].name),
        ("standardize", previous.scaling is not None, bool(s["standardize"]))) if old != new]
    if changed:
        raise InvalidInputError(f"{how} continues the fitted network, but {', '.join(changed)} since: fit "
                                "anew (warm_start=False) or set them back")


def _cost_every(s: dict, per_epoch) -> int:
    """Iterations (updates) between cost reads: "auto" reads once an epoch with mini-batches, and
    for full batch every iteration on a CPU, every 100 where a read waits for a device."""
    if s["cost_every"] != "auto":
        return int(s["cost_every"])
    if per_epoch is not None:
        return per_epoch
    backend = s["backend"]
    try:
        be = get_backend(backend, s["device"])
    except BackpropCoreError:
        return 100  # training.fit says what is wrong with it
    return 100 if be.on_gpu or be.distributed else 1


def _weight_of(sample_weight, m: int) -> float:
    """The examples' total weight (one host read): m without weights."""
    if sample_weight is None:
        return float(m)
    return float(array_namespace(sample_weight).sum(sample_weight))


def _optimizer_options(s: dict, previous, incremental: bool, total_weight: float) -> dict:
    """What :func:`backprop_core.training.fit` takes about the update rule and the penalty; partial_fit
    resumes the previous call's optimizer state (a warm start begins a fresh one, as MLPClassifier's).

    The penalty is (alpha / 2 M) ||W||^2 with M the examples' total weight, so that weights stand for
    repeated examples; training.fit divides by the rows m, hence alpha m / M.
    """
    from .optimizers import Adam, Momentum, RMSprop

    name, beta_2 = s["optimizer"], {} if s["beta_2"] is None else {"beta2": s["beta_2"]}
    if name == "momentum":
        rule = Momentum(beta=s["momentum"])
    elif name == "rmsprop":
        rule = RMSprop(epsilon=s["epsilon"], **beta_2)
    elif name == "adam":
        rule = Adam(beta1=s["beta_1"], epsilon=s["epsilon"], **beta_2)
    else:
        rule = "gd"
    state = None
    if incremental and previous is not None and previous.optimizer_state is not None \
            and previous.optimizer_state[0] == rule:
        state = previous.optimizer_state[1]
    m = s["_rows"]
    alpha = float(s["alpha"]) * m / total_weight if total_weight > 0 else float(s["alpha"])
    return {"optimizer": rule, "alpha": alpha, "optimizer_state": state}


def _shuffle_seed(random_state, previous):
    """The seed of a fit: ``random_state``, or for one that goes on (partial_fit, warm_start) a seed
    drawn from it and the updates made so far, so that each call shuffles afresh, reproducibly."""
    if random_state is None or previous is None:
        return random_state
    return int(np.random.SeedSequence([int(random_state), previous.n_steps]).generate_state(1)[0])


def _kept_state(rule, state, backend):
    """(rule, its state on the host) for the next partial_fit; small, so it pickles anywhere."""
    if not state:
        return None
    return rule, {k: backend.to_numpy(v) for k, v in state.items()}


def _params_from_json(params: dict) -> dict:
    """Hyperparameters as a file records them, back as the estimator takes them."""
    params = {k: v for k, v in params.items() if k not in EXECUTION_FIELDS}  # a file written before they moved
    if isinstance(params.get("class_weight"), list):  # a dict's labels may be numbers: written as pairs
        params["class_weight"] = {label: weight for label, weight in params["class_weight"]}
    return params


class _Placed:
    """Fitted parameters and the backend they compute on.

    Pickled or deep-copied, they travel as host NumPy arrays with the backend's
    name and device, and return there on first use; where that backend cannot
    run here, they stay on the host and NumPy computes, with a warning.
    """

    def __init__(self, parameters, backend, dtype):
        self._parameters, self._backend, self.dtype = parameters, backend, dtype
        self.backend_name, self.device = backend.name, _portable_device(backend.requested_device)
        self._host = None

    def host(self) -> dict:
        if self._parameters is None:
            return self._host
        return {k: self._backend.to_numpy(v) for k, v in self._parameters.items()}

    def __getstate__(self):
        return {"host": self.host(), "backend_name": self.backend_name, "device": self.device,
                "dtype": self.dtype}

    def __setstate__(self, state):
        self._host, self.backend_name = state["host"], state["backend_name"]
        self.device, self.dtype = state["device"], state["dtype"]
        self._parameters = self._backend = None

    @property
    def backend(self):
        if self._backend is None:
            try:
                self._backend = get_backend(self.backend_name, self.device)
                self._backend.dtype(self.dtype)
            except (BackendUnavailableError, InvalidInputError) as exc:  # no GPU here, or no such plugin
                warnings.warn(f"this model was trained on the {self.backend_name} backend (device "
                              f"{self.device!r}), which cannot run here ({exc}); it computes with NumPy "
                              "on the host instead", UserWarning, stacklevel=4)
                self._backend = get_backend("numpy")
        return self._backend

    @property
    def parameters(self) -> dict:
        if self._parameters is None:
            self._parameters = self.backend.parameters_from_host(self._host, self.dtype)
        return self._parameters


def _place(X):
    """The adapter of an input's library on its device; lists and data frames (and None) count as NumPy."""
    return backend_for_array(X) if is_array_api_obj(X) else get_backend("numpy")


def _in_place(X, place) -> bool:
    """Is X in the library and on the device of ``place`` (an adapter, as :func:`_place` gives)?"""
    return place.holds(X if is_array_api_obj(X) else np.empty(0))  # NumPy's stand-in for lists and frames


def _where(place) -> str:
    try:
        return f"{place.name} on {place.device_name}"
    except BackendUnavailableError:  # unpickled where that device is missing: as it was named
        return f"{place.name} on {place.requested_device}"


def _is_portable(device) -> bool:
    """A device named by a string or an index (or None) travels with a pickle or a file; a live
    object (a Dask Client, a torch.device) does not."""
    return device is None or isinstance(device, (str, int))


def _portable_device(spec):
    return spec if _is_portable(spec) else None


def _recorded_params(params: dict, backend) -> dict:
    """The hyperparameters a fit ran with, as ``fitted_params_`` keeps them: a device given as a
    live object by the name that finds it again."""
    if _is_portable(params["device"]):
        return dict(params)
    return params | {"device": backend.device_name}


def _jsonable_params(params: dict) -> dict:
    """Hyperparameters as JSON values: NumPy scalars (from np.arange grids) become Python numbers."""
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        elif k == "device" and not _is_portable(v):
            v = str(v)
        elif k == "class_weight" and isinstance(v, dict):  # labels may be numbers: JSON keys are strings
            v = [[label.item() if isinstance(label, np.generic) else label, float(w)] for label, w in v.items()]
        out[k] = v
    return out


def _feature_scaling(X, sample_weight, dtype):
    """Each feature's mean and scale (its standard deviation; 1 where it is constant), (n,) float64.

    X (m, n); ``sample_weight`` (m,) or None.  Weighted, the statistics are those
    of the data with each example repeated as often as its weight says.
    Computed where X lives, in X's library: a device's or a cluster's data are
    reduced there, and only the 2n numbers come to the host.
    """
    owner = backend_for_array(X)
    xp = array_namespace(X)
    if not xp.isdtype(X.dtype, "real floating"):
        X = xp.astype(X, owner.dtype(dtype or owner.default_dtype))

    def host(a):
        return owner.to_numpy(a).astype(np.float64)

    low, high = xp.min(X, axis=0), xp.max(X, axis=0)
    with np.errstate(over="ignore"):  # squares that overflow are computed again below, scaled
        mean, std = _scaling_statistics_of(X, sample_weight, xp)
    if sample_weight is not None:
        counted = xp.reshape(sample_weight, (X.shape[0], 1)) > 0  # an example of weight 0 is as good as absent
        low, high = xp.min(xp.where(counted, X, high), axis=0), xp.max(xp.where(counted, X, low), axis=0)
    mean, std = host(mean), host(std)
    if not np.all(np.isfinite(std)) and np.all(np.isfinite(host(low))) and np.all(np.isfinite(host(high))):
        # Finite values whose squares overflow (around 1e160 in float64): the spread of X / s, s the
        # largest magnitude of each feature, times s, is the same spread, computed within range.
        s = xp.maximum(xp.abs(low), xp.abs(high))
        s = xp.where(s > 0, s, xp.ones_like(s))
        scaled = _scaling_statistics_of(X / s, sample_weight, xp)
        mean, std = host(scaled[0] * s), host(scaled[1] * s)
    # Constant means every value equal, decided exactly: a computed spread of such a
    # feature is round-off of its mean, whose size depends on the library's summation.
    constant = host(high) == host(low)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        check_finite(X, xp, "X")  # X's finiteness is checked once, by training.fit: reached first here
        j = int(np.flatnonzero(~(np.isfinite(mean) & np.isfinite(std)))[0])
        raise InvalidInputError(f"feature {j} cannot be standardized: its mean or standard deviation is not "
                                f"finite in {dtype_name(X.dtype)} (mean {mean[j]}, std {std[j]})")
    return mean, np.where(constant | (std == 0), 1.0, std)


def _scaling_statistics_of(X, sample_weight, xp):
    """Each feature's (weighted) mean and standard deviation, as arrays of X's library."""
    if sample_weight is None:
        return xp.mean(X, axis=0), xp.std(X, axis=0)
    w = xp.reshape(xp.astype(sample_weight, X.dtype), (X.shape[0], 1))
    mean = xp.sum(w * X, axis=0) / xp.sum(w)
    return mean, xp.sqrt(xp.sum(w * (X - mean) ** 2, axis=0) / xp.sum(w))


def _in_callers_library(host, X, dtype: str):
    """``host`` as an array of X's library on X's device, in ``dtype``, or in X's float dtype where
    that library has no ``dtype`` (JAX computes in float32 unless its 64-bit mode is on)."""
    caller = backend_for_array(X)
    try:
        caller.dtype(dtype)
    except BackendUnavailableError:
        dtype = _float_name(X, caller)
    return caller.asarray(host, dtype)


def _standardized(X, mean, scale):
    """(X - mean) / scale in X's library; mean and scale are host (n,) or arrays that broadcast."""
    if isinstance(mean, np.ndarray) and not isinstance(X, np.ndarray):
        owner = backend_for_array(X)
        dt = _float_name(X, owner)
        X = array_namespace(X).astype(X, owner.dtype(dt))
        mean, scale = owner.asarray(mean, dt), owner.asarray(scale, dt)
    return (X - mean) / scale


def _float_name(X, owner) -> str:
    """X's dtype where it is a real float, else the default float of X's library (``owner``, its adapter)."""
    return dtype_name(X.dtype) if array_namespace(X).isdtype(X.dtype, "real floating") else owner.default_dtype


def _as_list(a):
    return None if a is None else [float(v) for v in a]


@contextlib.contextmanager
def _project_errors():
    """scikit-learn's checks keep their messages (its own checks look for them) as the project's errors."""
    try:
        yield
    except BackpropCoreError:
        raise
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from exc
    except TypeError as exc:
        raise InvalidTypeError(str(exc)) from exc


def _check_device_X(X):
    """X of a library other than NumPy, checked where it lives, in scikit-learn's words."""
    if X.ndim != 2:
        raise InvalidInputError(f"Expected 2D array, got {X.ndim}D array instead; X must be "
                                "(n_samples, n_features). Reshape your data.")
    if X.shape[0] == 0:
        raise InvalidInputError(f"Found array with 0 sample(s) (shape={tuple(X.shape)}) while a minimum of 1 "
                                "is required.")
    if X.shape[1] == 0:
        raise InvalidInputError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 "
                                "is required.")
    return X


def _columns(a):
    """Samples-as-rows to examples-as-columns: (m, n) -> (n, m); (m,) -> (1, m)."""
    xp = array_namespace(a)
    return xp.reshape(a, (1, a.shape[0])) if a.ndim == 1 else a.T


def _verbose(callback):
    def show(iteration, cost):
        print(f"Iteration {iteration}, loss = {cost:.8f}")
        if callback is not None:
            callback(iteration, cost)

    return show


def _print_validation(iteration, cost, score):
    print(f"Validation score: {score:f}, validation loss = {cost:.8f}")
