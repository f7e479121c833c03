"""An estimator in the scikit-learn manner: samples are rows.

``fit(X, y)`` takes X (m, n_features) and y (m,) for one binary label or
(m, n_outputs) for several independent ones (multi-label).  Results come back
in the caller's library and on the caller's device: NumPy in, NumPy out, even
when trained on a GPU.
"""

from __future__ import annotations

import inspect

import numpy as np
from array_api_compat import array_namespace

from . import equations, training
from .activations import get_activation
from .backends import backend_for_array, get_backend
from .errors import BackpropCoreError, DeviceMemoryError, DistributedTrainingError, InvalidInputError, TrainingDivergedError
from .errors import TrainingInterrupted
from .initialization import INITS
from .parameters import unpack
from .persistence import load_parameters, save_parameters
from .validation import as_array, check_finite, check_same_place, to_backend


class NotFittedError(BackpropCoreError, ValueError, AttributeError):
    """The estimator was used before ``fit``."""


class BackpropClassifier:
    """One hidden layer, sigmoid output(s), full-batch gradient descent.

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
    seed : seed of the NumPy Generator drawing the initial weights
    init : {"normal", "xavier", "he"}, default "normal" (standard normal x 0.01)
    cost_every : read and record the cost every this many iterations
    batch_size : None for full-batch gradient descent (the lecture); an int for
        mini-batch gradient descent over ``epochs`` passes of shuffled data
    epochs : passes over the data in mini-batch mode (default 10); unused otherwise
    chunk_size : full batch computed over chunks of this many examples, to the same
        parameters; "auto" (default) chunks on the numpy backend where it is faster
        (m at least two cache-sized chunks), None never chunks
    workers : threads that share the chunks; None for every core on the numpy
        backend, 1 elsewhere
    stream : keep the data on the host and stream chunks through the device each
        iteration; "auto" (default) does so when the data would not fit on a GPU
    fused : run each iteration as the equations compiled into one GPU kernel (the
        cupy backend, narrow networks); "auto" (default) does so where it has been
        measured to pay, True asks for it, False never

    Dask arrays are accepted directly: training then runs on Dask (see the
    ``dask`` backend), with the parameters on the client.

    Fitted attributes: ``parameters_`` (on the training device), ``cost_history_``
    (list of (iteration, cost)), ``n_iter_``, ``n_features_in_``, ``n_outputs_``,
    ``dtype_``, ``backend_`` (the adapter it trained on) and ``plan_`` (how the
    planner ran the fit: mode, chunk size, threads, and why).
    """

    def __init__(self, hidden_units=4, activation="tanh", learning_rate=1.2, num_iterations=10000,
                 backend="numpy", device=None, dtype=None, seed=0, init="normal", cost_every=100,
                 batch_size=None, epochs=None, chunk_size="auto", workers=None, stream="auto", fused="auto"):
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

    # -- scikit-learn protocol -------------------------------------------------------
    def get_params(self, deep=True):
        return {name: getattr(self, name) for name in inspect.signature(type(self)).parameters}

    def set_params(self, **params):
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise InvalidInputError(f"invalid parameter {name!r} for {type(self).__name__}; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    _estimator_type = "classifier"  # scikit-learn before 1.6

    def __sklearn_tags__(self):
        # scikit-learn >= 1.6 asks estimators for tags; it is imported only when it asks.
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(multi_class=False, multi_label=True),
                    input_tags=InputTags(), array_api_support=True)

    def __repr__(self):
        defaults = inspect.signature(type(self)).parameters
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k].default]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- training --------------------------------------------------------------------
    def _check_hyperparameters(self):
        if self.init not in INITS:
            raise InvalidInputError(f"unknown init {self.init!r}; choose one of {list(INITS)}")
        return get_activation(self.activation)

    def fit(self, X, y, *, callback=None):
        """Train on X (m, n_features) and y (m,) or (m, n_outputs) of 0/1 labels.

        ``callback(iteration, cost)`` is called at each cost read (every ``cost_every``).

        Validation happens before anything is changed, so a failed call leaves
        a previously fitted model as it was.  If training diverges or is
        interrupted, the model keeps the last good parameters and the error is
        raised.
        """
        g = self._check_hyperparameters()
        X, y = as_array(X, "X"), as_array(y, "y")
        check_same_place({"X": X, "y": y})
        if X.ndim != 2:
            raise InvalidInputError(f"X must be 2-D, shape (n_samples, n_features); got shape {tuple(X.shape)}")
        if y.ndim not in (1, 2):
            raise InvalidInputError(
                f"y must be 1-D (n_samples,) or 2-D (n_samples, n_outputs); got shape {tuple(y.shape)}")
        if y.shape[0] != X.shape[0]:
            raise InvalidInputError(f"X has {X.shape[0]} samples but y has {y.shape[0]}; they must match")
        started = {}

        def record(plan, backend, dtype):
            started.update(plan=plan, backend=backend, dtype=dtype)

        try:
            done = training.fit(
                _columns(X), _columns(y), hidden_units=self.hidden_units, activation=g,
                learning_rate=self.learning_rate, num_iterations=self.num_iterations,
                backend=self.backend, device=self.device, dtype=self.dtype, init=self.init, seed=self.seed,
                cost_every=self.cost_every, callback=callback, chunk_size=self.chunk_size,
                workers=self.workers, stream=self.stream, batch_size=self.batch_size, epochs=self.epochs,
                fused=self.fused, on_plan=record)
        except (TrainingDivergedError, TrainingInterrupted, DeviceMemoryError, DistributedTrainingError) as exc:
            self._set_fitted(exc.parameters, exc.history, exc.iteration, y.ndim, **started)
            raise
        self._set_fitted(done.result.parameters, done.result.history, done.result.n_iter, y.ndim,
                         plan=done.plan, backend=done.backend, dtype=done.dtype)
        return self

    def _set_fitted(self, parameters, history, n_iter, y_ndim, *, plan, backend, dtype):
        self.parameters_ = parameters
        self.cost_history_ = list(history)
        self.n_iter_ = n_iter
        self.n_features_in_ = parameters["W1"].shape[1]
        self.n_outputs_ = parameters["W2"].shape[0]
        self.dtype_ = dtype
        self.backend_ = backend
        self.plan_ = plan
        self._y_ndim = y_ndim

    # -- prediction ------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "parameters_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")

    def _probabilities(self, X):
        """A2 as (m, n_outputs) in the caller's library and device."""
        self._check_fitted()
        X = as_array(X, "X")
        if X.ndim != 2:
            raise InvalidInputError(f"X must be 2-D, shape (n_samples, n_features); got shape {tuple(X.shape)}")
        if X.shape[1] != self.n_features_in_:
            raise InvalidInputError(f"X has {X.shape[1]} features but the model was trained on {self.n_features_in_}")
        if X.shape[0] == 0:
            raise InvalidInputError("X is empty (0 samples)")
        backend = self.backend_
        Xd = to_backend(_columns(X), backend, self.dtype_, "X")
        check_finite(Xd, backend.xp, "X")
        with backend.context():
            _, _, _, A2 = equations.forward(Xd, *unpack(self.parameters_), get_activation(self.activation))
        A2 = A2.T
        if backend.holds(X):
            return A2
        return backend_for_array(X).asarray(backend.to_numpy(A2), self.dtype_)

    def predict_proba(self, X):
        """Probabilities: (m, 2) columns [P(0), P(1)] for a 1-D y, else (m, n_outputs) of P(1)."""
        P = self._probabilities(X)
        if self._y_ndim == 1:
            xp = array_namespace(P)
            return xp.concat([1.0 - P, P], axis=1)
        return P

    def predict(self, X):
        """0/1 labels, (m,) for a 1-D y, else (m, n_outputs), in X's library and float dtype."""
        P = self._probabilities(X)
        xp = array_namespace(P)
        labels = xp.astype(P > 0.5, P.dtype)
        return labels[:, 0] if self._y_ndim == 1 else labels

    def score(self, X, y) -> float:
        """Mean accuracy (for several outputs, every output of a sample must be right)."""
        pred = self.predict(X)
        y = as_array(y, "y")
        pred_host = backend_for_array(pred).to_numpy(pred)
        y_host = np.asarray(backend_for_array(y).to_numpy(y), dtype=pred_host.dtype)
        if y_host.shape != pred_host.shape:
            raise InvalidInputError(f"y has shape {y_host.shape} but predictions have shape {pred_host.shape}")
        correct = pred_host == y_host
        return float(np.mean(correct if correct.ndim == 1 else np.all(correct, axis=1)))

    # -- saving ----------------------------------------------------------------------
    def save(self, path) -> None:
        """Write parameters and hyperparameters to ``path`` (.npz; no pickle)."""
        self._check_fitted()
        host = {k: self.backend_.to_numpy(v) for k, v in self.parameters_.items()}
        meta = {"estimator": type(self).__name__, "params": self.get_params(),
                "dtype": self.dtype_, "y_ndim": self._y_ndim, "n_iter": self.n_iter_,
                "cost_history": self.cost_history_}
        meta["params"]["device"] = None if meta["params"]["device"] is None else self.backend_.device_name
        save_parameters(path, host, meta)

    @classmethod
    def load(cls, path, *, backend=None, device=None, dtype=None):
        """Load a model saved by :meth:`save`, optionally onto another backend/device/dtype."""
        host, meta = load_parameters(path)
        params = dict(meta["params"])
        if backend is not None:
            params["backend"], params["device"] = backend, device
        model = cls(**params)
        be = get_backend(model.backend, model.device)
        dtype = dtype or meta["dtype"]
        model._set_fitted(be.parameters_from_host(host, dtype), [tuple(h) for h in meta["cost_history"]],
                          meta["n_iter"], meta["y_ndim"], plan=None, backend=be, dtype=dtype)
        return model


def _columns(a):
    """Samples-as-rows to examples-as-columns: (m, n) -> (n, m); (m,) -> (1, m)."""
    xp = array_namespace(a)
    return xp.reshape(a, (1, a.shape[0])) if a.ndim == 1 else a.T
