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
import math
import warnings

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import validate_data

from . import equations, training
from .activations import get_activation
from .backends import BackendUnavailableError, backend_for_array, get_backend
from .errors import BackpropCoreError, DeviceMemoryError, DistributedTrainingError, InvalidInputError
from .errors import InvalidTypeError, TrainingDivergedError, TrainingInterrupted
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


class BackpropClassifier(ClassifierMixin, BaseEstimator):
    """One hidden layer, full-batch gradient descent from the lecture's equations.

    Two classes train one sigmoid output (the lecture); more classes a softmax
    output over them; a 0/1 indicator matrix one sigmoid output per label.

    Parameters
    ----------
    hidden_units : int, default 4
    activation : {"tanh", "sigmoid", "relu", "leaky_relu"}, default "tanh"
    learning_rate : float, default 1.2
    num_iterations : int, default 10000
    backend : str, default "numpy"; also "cupy", "torch", "jax", "array_api_strict", ...
    device : backend-specific (e.g. 0, "cuda", "cpu"); None for the backend's default
    dtype : "float32" or "float64"; None for the backend's default, which is
        float64 on a CPU and float32 on a GPU (float32 always for jax)
    seed : seed of the NumPy Generator drawing the initial weights (and the
        validation split)
    init : {"normal", "xavier", "he"}, default "normal" (standard normal x 0.01)
    cost_every : read and record the cost every this many iterations
    batch_size : None for full-batch gradient descent (the lecture); an int for
        mini-batch gradient descent over ``epochs`` passes of shuffled data
    epochs : passes over the data in mini-batch mode (default 10); unused otherwise
    chunk_size : full batch computed over chunks of this many examples, to the same
        parameters; "auto" (default) lets the planner chunk where its calibration on
        this machine measured chunks faster (the numpy backend), None never chunks
    workers : threads (or processes) that share the chunks; None for every core on
        the numpy backend, 1 elsewhere
    parallel : {"auto", "threads", "processes"}, default "auto"; how the workers run:
        "processes" (the numpy backend only) starts worker processes once per fit and
        shares the data with them, which pays where many short NumPy calls would make
        threads take turns on the GIL; "auto" uses them where the planner's calibration
        measured them faster for the fit's num_iterations, their start counted
    stream : keep the data on the host and stream chunks through the device each
        iteration; "auto" (default) does so when the data would not fit on a GPU
    fused : run each iteration as the equations compiled into one GPU kernel (the
        cupy backend, narrow networks); "auto" (default) does so where it has been
        measured to pay, True asks for it, False never
    early_stopping : hold out ``validation_fraction`` of the data (stratified),
        score it at every cost read, stop when the score has not improved by
        ``tol`` for more than ``n_iter_no_change`` reads in a row, and keep the
        parameters that scored best (as scikit-learn's MLPClassifier does)
    validation_fraction : float in (0, 1), default 0.1
    n_iter_no_change : int, default 10 (cost reads, one every ``cost_every`` iterations)
    tol : float, default 1e-4
    verbose : print the cost (and the validation score) at every cost read
    iteration_timeout : float, default 300; on a Dask cluster, the seconds one
        iteration may take (retries after a lost worker included) before the fit
        stops with a DistributedTrainingError; unused on one device
    standardize : learn each feature's mean and standard deviation at fit and
        train on (X - mean) / scale; predict applies the same.  Gradient descent
        with one learning rate suits features of similar spread: data whose
        features lie far from 0 or spread over tens of units (``blobs``) need it.
        A constant feature gets scale 1.

    Notes
    -----
    Dask arrays are accepted directly: training then runs on Dask (see the
    ``dask`` backend), with the parameters on the client.

    Fitted attributes: ``classes_``, ``target_type_`` ("binary", "multiclass" or
    "multilabel-indicator"), ``activation_`` and ``output_`` (the hidden
    activation and output layer the parameters belong to), ``fitted_params_``
    (``get_params()`` as it was at fit, a device object by its name: what
    :meth:`save` writes; ``set_params`` changes only the next fit), ``parameters_`` (on
    the training device), ``n_features_in_`` (and ``feature_names_in_`` for
    data frames), ``n_outputs_``, ``cost_history_`` (list of (iteration, cost)),
    ``loss_curve_`` (the costs alone), ``n_iter_``, ``validation_scores_`` and
    ``validation_loss_curve_`` (accuracy and cost on the held-out data at each
    read, None without early stopping), ``best_validation_score_``,
    ``best_iteration_``, ``dtype_``, ``backend_`` (the adapter it trained on),
    ``plan_`` (how the planner ran the fit: mode, chunk size, threads, and why),
    and ``feature_mean_`` and ``feature_scale_`` (n_features,) float64 (None
    unless ``standardize``).

    A fitted model pickles (and deep-copies) with its parameters as host NumPy
    arrays and its backend by name and device; it goes back to that backend on
    first use, or, where that backend cannot run (a GPU model unpickled on a
    machine without a GPU), predicts with NumPy on the host, with a warning.
    """

    def __init__(self, hidden_units=4, activation="tanh", learning_rate=1.2, num_iterations=10000,
                 backend="numpy", device=None, dtype=None, seed=0, init="normal", cost_every=100,
                 batch_size=None, epochs=None, chunk_size="auto", workers=None, stream="auto", fused="auto",
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10, tol=1e-4,
                 verbose=False, iteration_timeout=300.0, standardize=False, parallel="auto"):
        self.hidden_units = hidden_units
        self.activation = activation
        self.learning_rate = learning_rate
        self.num_iterations = num_iterations
        self.backend = backend
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.init = init
        self.cost_every = cost_every
        self.batch_size = batch_size
        self.epochs = epochs
        self.chunk_size = chunk_size
        self.workers = workers
        self.stream = stream
        self.fused = fused
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.iteration_timeout = iteration_timeout
        self.standardize = standardize
        self.parallel = parallel

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
        return hasattr(self, "_network")

    # -- training --------------------------------------------------------------------
    def _check_hyperparameters(self):
        """The hidden activation, checked; every other setting that fit does not check later."""
        if self.init not in INITS:
            raise InvalidInputError(f"unknown init {self.init!r}; choose one of {list(INITS)}")
        check_seed(self.seed)
        if not isinstance(self.standardize, (bool, np.bool_)):
            raise InvalidInputError(f"standardize must be True or False, got {self.standardize!r}")
        if self.early_stopping:
            fraction = self.validation_fraction
            check_positive(fraction, "validation_fraction")
            if not fraction < 1:
                raise InvalidInputError(f"validation_fraction must be in (0, 1), got {fraction!r}")
            check_positive(self.n_iter_no_change, "n_iter_no_change", integer=True)
            check_non_negative(self.tol, "tol")
        return get_activation(self.activation)

    def fit(self, X, y, sample_weight=None, *, callback=None):
        """Train on X (m, n_features) and y (m,) of class labels or (m, n_labels) of 0/1.

        ``sample_weight`` (m,): non-negative weights; the cost and its gradients
        become weighted means over the examples.  ``callback(iteration, cost)``
        is called at each cost read (every ``cost_every``).

        A fit is all or nothing for a fitted model: if validation fails, or
        training diverges, is interrupted, runs out of device memory or loses
        its cluster, the model is left exactly as it was, and the error carries
        the failed run's parameters (``error.parameters``: the lowest cost read
        when it diverged, the last completed iteration otherwise).  A first fit
        that fails so keeps those parameters instead, so nothing trained is lost.
        """
        g = self._check_hyperparameters()
        twin = type(self)(**self.get_params())  # records n_features_in_ and names, so self is untouched
        X, y = self._check_X(X, y, twin)
        y, labels = read_labels(y, X.shape[0])
        Y = follow(X, encode_labels(y, labels))
        if sample_weight is not None:
            sample_weight = follow(X, self._check_sample_weight(sample_weight, X))
        output = "softmax" if labels.target_type == "multiclass" else "sigmoid"
        scaling = _feature_scaling(X, sample_weight, self.dtype) if self.standardize else None
        if scaling is not None:
            X = _standardized(X, *scaling)
        validation = None
        if self.early_stopping:
            X, Y, sample_weight, validation = self._split(X, Y, sample_weight, labels)
        if self.verbose:
            callback = _verbose(callback)
        started = {}

        def record(plan, backend, dtype):
            started.update(plan=plan, backend=backend, dtype=dtype)

        fitted = dict(labels=labels, twin=twin, params=twin.get_params(), activation=g.name, output=output,
                      place=_place(X), scaling=scaling)
        try:
            done = training.fit(
                _columns(X), _columns(Y), hidden_units=self.hidden_units, activation=g,
                learning_rate=self.learning_rate, num_iterations=self.num_iterations,
                backend=self.backend, device=self.device, dtype=self.dtype, init=self.init, seed=self.seed,
                cost_every=self.cost_every, callback=callback, chunk_size=self.chunk_size,
                workers=self.workers, stream=self.stream, batch_size=self.batch_size, epochs=self.epochs,
                fused=self.fused, on_plan=record, output=output, sample_weight=sample_weight, validation=validation,
                n_iter_no_change=self.n_iter_no_change, tol=self.tol, parallel=self.parallel,
                on_validation=_print_validation if self.verbose else None, iteration_timeout=self.iteration_timeout)
        except (TrainingDivergedError, TrainingInterrupted, DeviceMemoryError, DistributedTrainingError) as exc:
            if not self.__sklearn_is_fitted__():  # a refit leaves the fitted model; the error holds the run's
                self._set_fitted(exc.parameters, exc.history, exc.iteration, None, None, **fitted, **started)
            raise
        result = done.result
        self._set_fitted(result.parameters, result.history, result.n_iter, result.validation,
                         result.best_iteration, **fitted, plan=done.plan, backend=done.backend, dtype=done.dtype)
        return self

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
            return validate_data(twin, X, y, dtype=FLOAT_DTYPES, multi_output=True, y_numeric=False)

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

    def _split(self, X, Y, sample_weight, labels):
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
            train, held = train_test_split(np.arange(X.shape[0]), test_size=float(self.validation_fraction),
                                           random_state=self.seed, stratify=stratify)
        except ValueError as exc:
            raise InvalidInputError(f"cannot hold out validation_fraction={self.validation_fraction} "
                                    f"for early stopping: {exc}") from None
        xp = array_namespace(X)
        index = "int32" if X.shape[0] < 2**31 else "int64"  # JAX has no int64 by default

        def take(a, rows):
            return None if a is None else xp.take(a, owner.asarray(rows, index), axis=0)

        return (take(X, train), take(Y, train), take(sample_weight, train),
                (_columns(take(X, held)), _columns(take(Y, held)), take(sample_weight, held)))

    def _set_fitted(self, parameters, history, n_iter, validation, best_iteration, *, labels, twin, params,
                    activation, output, plan, backend, dtype, place=None, scaling=None):
        self._network = _Placed(parameters, backend, dtype)
        self.fitted_params_ = _recorded_params(params, backend)
        self.feature_mean_, self.feature_scale_ = (None, None) if scaling is None else scaling
        self._fit_input = place or _place(None)
        self.classes_ = labels.classes
        self.target_type_ = labels.target_type
        self._label_dtype = labels.dtype
        self.activation_ = activation
        self.output_ = output
        self.n_features_in_ = twin.n_features_in_
        if hasattr(twin, "feature_names_in_"):
            self.feature_names_in_ = twin.feature_names_in_
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.n_outputs_ = parameters["W2"].shape[0]
        self.cost_history_ = list(history)
        self.loss_curve_ = [J for _, J in self.cost_history_]
        self.n_iter_ = n_iter
        self.validation_scores_ = None if validation is None else [s for _, _, s in validation]
        self.validation_loss_curve_ = None if validation is None else [J for _, J, _ in validation]
        self.best_validation_score_ = None if validation is None else max(self.validation_scores_)
        self.best_iteration_ = best_iteration
        self.dtype_ = dtype
        self.plan_ = plan

    @property
    def parameters_(self):
        """``{"W1", "b1", "W2", "b2"}`` on the device the model computes on."""
        self._check_fitted()
        return self._network.parameters

    @property
    def backend_(self):
        """The adapter the model computes with."""
        self._check_fitted()
        return self._network.backend

    # -- prediction ------------------------------------------------------------------
    def _check_fitted(self):
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                                 "appropriate arguments before using this estimator.")

    def _check_place(self, X, method):
        """Under scikit-learn's array_api_dispatch, its rule: the namespace and device of fit."""
        from sklearn import get_config

        fitted = getattr(self, "_fit_input", None)  # None: pickled before fit recorded it; nothing to hold to
        if get_config()["array_api_dispatch"] and fitted is not None and not _in_place(X, fitted):
            raise InvalidInputError(
                f"Inputs passed to {type(self).__name__}.{method}() must use the same namespace and the same "
                f"device as those passed to fit(): fitted on {_where(fitted)}, called with "
                f"{_where(_place(X))} (without array_api_dispatch, this estimator answers in the library it is "
                "asked in)")

    def _probabilities(self, X, method):
        """A2 as (m, n_outputs) in the caller's library and device."""
        self._check_fitted()
        self._check_place(X, method)
        if is_device_array(X):
            X = _check_device_X(as_array(X, "X"))
            if X.shape[1] != self.n_features_in_:
                raise InvalidInputError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                                        f"expecting {self.n_features_in_} features as input.")
        else:
            X = in_fitted_order(X, getattr(self, "feature_names_in_", None))  # a frame's columns by name
            with _project_errors():
                X = validate_data(self, X, reset=False, dtype=FLOAT_DTYPES)
        backend = self.backend_
        Xd = to_backend(_columns(X), backend, self.dtype_, "X")
        check_finite(Xd, backend.xp, "X")
        if getattr(self, "feature_mean_", None) is not None:  # the features as fit saw them
            Xd = _standardized(Xd, backend.asarray(self.feature_mean_[:, None], self.dtype_),
                               backend.asarray(self.feature_scale_[:, None], self.dtype_))
        with backend.context():
            _, _, _, A2 = equations.forward(Xd, *unpack(self.parameters_), get_activation(self.activation_),
                                            equations.get_output(self.output_))
        A2 = A2.T
        if backend.holds(X):
            return A2
        return _in_callers_library(backend.to_numpy(A2), X, self.dtype_)

    def predict_proba(self, X):
        """Probabilities (m, n_classes) in ``classes_`` order; (m, n_labels) of P(1) for indicator y."""
        P = self._probabilities(X, "predict_proba")
        if self.target_type_ == "binary":
            xp = array_namespace(P)
            return xp.concat([1.0 - P, P], axis=1)
        return P

    def predict_log_proba(self, X):
        """The logarithm of :meth:`predict_proba`."""
        self._check_place(X, "predict_log_proba")
        P = self.predict_proba(X)
        return array_namespace(P).log(P)

    def predict(self, X):
        """Labels of the kind fitted: (m,) from ``classes_``, or (m, n_labels) of 0/1 for indicator y.

        In X's library and on its device where the labels are numbers; string
        labels come back as a NumPy array.
        """
        P = self._probabilities(X, "predict")
        return labels_from_classes(P, Labels(self.classes_, self.target_type_, self._label_dtype))

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
        self._check_fitted()
        names = getattr(self, "feature_names_in_", None)
        params = getattr(self, "fitted_params_", None) or self._params_of_an_old_pickle()
        # A diverged run's record ends in a NaN or infinite cost; the file keeps the finite reads.
        history = [(i, J) for i, J in self.cost_history_ if math.isfinite(J)]
        meta = {"estimator": type(self).__name__, "params": _jsonable_params(params),
                "dtype": self.dtype_, "n_iter": self.n_iter_, "cost_history": history,
                "classes": self.classes_.tolist(), "classes_dtype": self.classes_.dtype.str,
                "target_type": self.target_type_,
                # label_dtype_name: a model pickled before it named y's dtype as fit found it
                "label_dtype": label_dtype_name(self._label_dtype, self.classes_, self.target_type_),
                "activation": self.activation_, "output": self.output_,
                "n_features_in": int(self.n_features_in_),
                "feature_names_in": None if names is None else [str(n) for n in names],
                # getattr: a model pickled before standardize existed has neither
                "feature_mean": _as_list(getattr(self, "feature_mean_", None)),
                "feature_scale": _as_list(getattr(self, "feature_scale_", None))}
        save_parameters(path, self._network.host(), meta)

    def _params_of_an_old_pickle(self) -> dict:
        """A model pickled before ``fitted_params_`` existed: get_params(), with what its weights
        need (their rows, their activation, their scaling) as the weights show it."""
        params = self.get_params() | {"hidden_units": int(self._network.host()["W1"].shape[0]),
                                      "activation": self.activation_,
                                      "standardize": getattr(self, "feature_mean_", None) is not None}
        if _is_portable(params["device"]):
            return params  # nothing to name: the backend need not wake (a GPU's, where none is)
        return _recorded_params(params, self.backend_)

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
        params = dict(meta["params"])
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
