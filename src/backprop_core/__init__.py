"""backprop-core: a one-hidden-layer network trained from its derived equations.

The functional API follows the lecture (examples as columns); the estimator
:class:`BackpropClassifier` follows scikit-learn (samples as rows).
"""

from .activations import ACTIVATIONS, Activation, get_activation
from .backends import (
    Backend,
    BackendUnavailableError,
    backend_names,
    get_backend,
    register_backend,
    unregister_backend,
)
from .errors import (
    BackpropCoreError,
    DeviceMemoryError,
    DistributedTrainingError,
    FeatureScaleWarning,
    InvalidInputError,
    InvalidTypeError,
    TrainingDivergedError,
    TrainingInterrupted,
)
from .functional import (
    backward_propagation,
    compute_cost,
    forward_propagation,
    initialize_parameters,
    layer_sizes,
    TrainedParameters,
    nn_model,
    predict,
    update_parameters,
)
from .execution import Execution, execution_context, get_execution
from .loop import TrainResult
from .optimizers import Adam, GradientDescent, Momentum, Optimizer, RMSprop
from .planner import Plan
from .training import train

__version__ = "0.1.0"


def __getattr__(name):
    # The estimator is scikit-learn's kind, and importing scikit-learn takes most of a second:
    # the lecture's functions and the command line's quick answers do not wait for it.
    if name in ("BackpropClassifier", "NotFittedError"):
        from . import estimator

        return getattr(estimator, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ACTIVATIONS", "Activation", "Adam", "Backend", "BackendUnavailableError", "BackpropClassifier",
    "BackpropCoreError", "DeviceMemoryError", "DistributedTrainingError", "Execution", "FeatureScaleWarning",
    "GradientDescent", "InvalidInputError", "InvalidTypeError", "Momentum", "NotFittedError", "Optimizer", "Plan",
    "RMSprop", "TrainResult", "TrainingDivergedError", "TrainedParameters", "TrainingInterrupted", "backend_names",
    "backward_propagation", "compute_cost", "execution_context", "forward_propagation", "get_activation",
    "get_backend", "get_execution", "initialize_parameters", "layer_sizes", "nn_model", "predict",
    "register_backend", "train", "unregister_backend", "update_parameters",
]
