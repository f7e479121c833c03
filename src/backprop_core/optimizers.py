"""The course's update rules after gradient descent: momentum, RMSprop and Adam.

Each takes the gradients the equations give (:func:`backprop_core.equations.gradients`)
and moves the parameters, in the course's notation (t counts updates, from 1)::

    gradient descent  W = W - alpha dW                            (the lecture's; the default)
    momentum          vdW = beta vdW + (1 - beta) dW;  W = W - alpha vdW
    RMSprop           sdW = beta2 sdW + (1 - beta2) dW^2;  W = W - alpha dW / (sqrt(sdW) + epsilon)
    Adam              both, then vdW_c = vdW / (1 - beta1^t),  sdW_c = sdW / (1 - beta2^t);
                      W = W - alpha vdW_c / (sqrt(sdW_c) + epsilon)

(alpha here is the learning rate, as in the course; the L2 penalty's lambda is
the fit's ``alpha``, :func:`backprop_core.equations.penalized`.)  The same for
b1, b2.  What a rule carries from one update to the next is its *state*, a dict
of arrays named as in the course, each the shape of its parameter: ``vdW1 vdb1
vdW2 vdb2`` (momentum, Adam), ``sdW1 ... sdb2`` (RMSprop, Adam), and ``t``
(Adam; a 0-d array of the parameters' float dtype, exact up to 2^24 updates in
float32).  They start at zero, made like the parameters (same library, device
and dtype), and every update returns new arrays (JAX arrays are immutable).

Written once against the Python Array API standard, as the equations are: no
array library is imported, scalars are Python floats, nothing is read back to
the host.  :class:`UpdateRule` is what a training step applies: the L2 penalty,
then the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from array_api_compat import array_namespace, device

from . import equations
from .errors import InvalidInputError
from .parameters import NAMES, pack, unpack


def _probability(value, what: str) -> float:
    """A decay rate in [0, 1), as a Python float (a NumPy scalar would change the dtype of float32 arrays)."""
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise InvalidInputError(f"{what} must be a number in [0, 1), got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise InvalidInputError(f"{what} must be in [0, 1), got {value!r}")
    return value


def _positive(value, what: str) -> float:
    """A positive finite number, as a Python float."""
    number = None if isinstance(value, bool) or not hasattr(value, "__float__") else float(value)
    if number is None or not (math.isfinite(number) and number > 0.0):
        raise InvalidInputError(f"{what} must be a positive finite number, got {value!r}")
    return number


class Optimizer:
    """An update rule: :meth:`init` makes its state, :meth:`update` applies it.

    ``moments``: the state's arrays per parameter, by prefix ("v": vdW, "s":
    sdW); ``counts``: whether it keeps t.  Subclasses are frozen dataclasses
    whose fields are the rule's hyperparameters.
    """

    name: ClassVar[str]
    moments: ClassVar[tuple] = ()
    counts: ClassVar[bool] = False

    @property
    def state_names(self) -> tuple:
        """The state's keys, e.g. ``("vdW1", "vdb1", "vdW2", "vdb2", "sdW1", ..., "t")`` for Adam."""
        return tuple(f"{v}d{k}" for v in self.moments for k in NAMES) + (("t",) if self.counts else ())

    def init(self, parameters: dict) -> dict:
        """The state before the first update: zeros like each parameter (and t = 0)."""
        xp = array_namespace(parameters["W1"])
        state = {f"{v}d{k}": xp.zeros_like(parameters[k]) for v in self.moments for k in NAMES}
        if self.counts:
            W1 = parameters["W1"]
            state["t"] = xp.zeros((), dtype=W1.dtype, device=device(W1))
        return state

    def update(self, parameters: dict, gradients: tuple, state: dict, learning_rate: float):
        """``(new parameters, new state)`` after one update along ``gradients = (dW1, db1, dW2, db2)``."""
        raise NotImplementedError


@dataclass(frozen=True)
class GradientDescent(Optimizer):
    """The lecture's ``W = W - alpha dW`` (:func:`backprop_core.equations.update`); no state."""

    name: ClassVar[str] = "gd"

    def update(self, parameters, gradients, state, learning_rate):
        return pack(equations.update(*unpack(parameters), *gradients, learning_rate)), state


@dataclass(frozen=True)
class Momentum(Optimizer):
    """Gradient descent with momentum: ``vdW = beta vdW + (1 - beta) dW; W = W - alpha vdW``.

    This is torch.optim.SGD with ``momentum=beta, dampening=beta`` started from
    a zero momentum buffer (torch's own first step copies dW into the buffer
    instead of weighing it by 1 - beta).
    """

    beta: float = 0.9
    name: ClassVar[str] = "momentum"
    moments: ClassVar[tuple] = ("v",)

    def __post_init__(self):
        object.__setattr__(self, "beta", _probability(self.beta, "momentum's beta"))

    def update(self, parameters, gradients, state, learning_rate):
        beta, new, vd = self.beta, {}, {}
        for k, dW in zip(NAMES, gradients):
            v = beta * state["vd" + k] + (1.0 - beta) * dW
            new[k], vd["vd" + k] = parameters[k] - learning_rate * v, v
        return new, vd


@dataclass(frozen=True)
class RMSprop(Optimizer):
    """``sdW = beta2 sdW + (1 - beta2) dW^2; W = W - alpha dW / (sqrt(sdW) + epsilon)``.

    torch.optim.RMSprop with ``alpha=beta2, eps=epsilon`` (epsilon outside the
    square root there too).  beta2 0.9 by default, as in Hinton's lecture that
    introduced it (torch's default is 0.99).
    """

    beta2: float = 0.9
    epsilon: float = 1e-8
    name: ClassVar[str] = "rmsprop"
    moments: ClassVar[tuple] = ("s",)

    def __post_init__(self):
        object.__setattr__(self, "beta2", _probability(self.beta2, "RMSprop's beta2"))
        object.__setattr__(self, "epsilon", _positive(self.epsilon, "RMSprop's epsilon"))

    def update(self, parameters, gradients, state, learning_rate):
        xp = array_namespace(*gradients)
        beta2, new, sd = self.beta2, {}, {}
        for k, dW in zip(NAMES, gradients):
            s = beta2 * state["sd" + k] + (1.0 - beta2) * (dW * dW)
            new[k], sd["sd" + k] = parameters[k] - learning_rate * dW / (xp.sqrt(s) + self.epsilon), s
        return new, sd


@dataclass(frozen=True)
class Adam(Optimizer):
    """Momentum and RMSprop with bias correction (t counts updates): torch.optim.Adam's rule.

    Defaults are the course's (and the paper's): beta1 0.9, beta2 0.999, epsilon 1e-8.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    name: ClassVar[str] = "adam"
    moments: ClassVar[tuple] = ("v", "s")
    counts: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "beta1", _probability(self.beta1, "Adam's beta1"))
        object.__setattr__(self, "beta2", _probability(self.beta2, "Adam's beta2"))
        object.__setattr__(self, "epsilon", _positive(self.epsilon, "Adam's epsilon"))

    def update(self, parameters, gradients, state, learning_rate):
        xp = array_namespace(*gradients)
        beta1, beta2 = self.beta1, self.beta2
        t = xp.asarray(state["t"] + 1.0)  # asarray: NumPy gives a 0-d array's sum as a scalar
        correction1, correction2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
        new, moved = {}, {"t": t}
        for k, dW in zip(NAMES, gradients):
            v = beta1 * state["vd" + k] + (1.0 - beta1) * dW
            s = beta2 * state["sd" + k] + (1.0 - beta2) * (dW * dW)
            v_corrected, s_corrected = v / correction1, s / correction2
            new[k] = parameters[k] - learning_rate * v_corrected / (xp.sqrt(s_corrected) + self.epsilon)
            moved["vd" + k], moved["sd" + k] = v, s
        return new, {name: moved[name] for name in self.state_names}


OPTIMIZERS = {cls.name: cls for cls in (GradientDescent, Momentum, RMSprop, Adam)}


def get_optimizer(optimizer) -> Optimizer:
    """An :class:`Optimizer` from its name ("gd", "momentum", "rmsprop", "adam": default
    hyperparameters) or itself."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    try:
        return OPTIMIZERS[optimizer]()
    except (KeyError, TypeError):
        raise InvalidInputError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)} or pass an "
                                f"Optimizer such as backprop_core.optimizers.Adam(beta1=0.9)") from None


def check_state_keys(optimizer: Optimizer, state) -> None:
    """Refuse, by name, a state that is not ``optimizer``'s (a dict with its keys)."""
    if not isinstance(state, dict):
        raise InvalidInputError(f"optimizer_state must be a dict of arrays, got {type(state).__name__}")
    expected = set(optimizer.state_names)
    if set(state) != expected:
        raise InvalidInputError(
            f"optimizer_state does not belong to optimizer {optimizer.name!r}: it has keys {sorted(state)}, "
            f"the optimizer keeps {sorted(expected)}")


def check_state(optimizer: Optimizer, state, parameters: dict) -> None:
    """Refuse, by name, a state that ``optimizer`` cannot resume from with ``parameters``:
    another rule's, shapes that differ from the parameters', values not finite, a negative sdW or t.

    ``state`` and ``parameters`` are arrays of one library; one host read.
    """
    check_state_keys(optimizer, state)
    for name in state:
        shape = () if name == "t" else tuple(parameters[name[2:]].shape)
        if tuple(state[name].shape) != shape:
            raise InvalidInputError(f"optimizer_state[{name!r}] has shape {tuple(state[name].shape)}, the "
                                    f"parameters need {shape}")
    if not state:
        return
    xp = array_namespace(*state.values())
    names = list(state)
    sound = [xp.all(xp.isfinite(state[k]) & (state[k] >= 0.0)) if k[0] in "st" else xp.all(xp.isfinite(state[k]))
             for k in names]
    ok = xp.stack(sound)
    if not bool(xp.all(ok)):
        bad = [k for k, good in zip(names, sound) if not bool(good)]
        raise InvalidInputError(f"optimizer_state {', '.join(bad)} must be finite (and sdW, t non-negative)")


@dataclass(frozen=True)
class UpdateRule:
    """What a training step does with its gradients: adds the L2 penalty ``alpha`` (the course's
    lambda), then applies ``optimizer`` at ``learning_rate``.

    :attr:`lecture` is the lecture's step (gradient descent, no penalty): steps
    that fuse their update (the fused kernel, the kernels' whole-batch step)
    compute only that one.
    """

    optimizer: Optimizer
    learning_rate: float
    alpha: float = 0.0

    @property
    def lecture(self) -> bool:
        return isinstance(self.optimizer, GradientDescent) and not self.alpha

    def __call__(self, parameters: dict, state: dict, gradients: tuple, J, m: int):
        """``(new parameters, new state, J)``: J (None where not computed) with the penalty added.

        ``gradients`` are the data's ``(dW1, db1, dW2, db2)`` over ``m`` examples.
        """
        *gradients, J = equations.penalized(parameters["W1"], parameters["W2"], *gradients, J, self.alpha, m)
        new, state = self.optimizer.update(parameters, tuple(gradients), state, self.learning_rate)
        return new, state, J

    def cost(self, parameters: dict, J, m: int):
        """The cost J of the data over ``m`` examples with the penalty added."""
        if not self.alpha:
            return J
        return J + equations.l2_cost(parameters["W1"], parameters["W2"], self.alpha, m)

    def __str__(self):
        return f"optimizer {self.optimizer}" + (f", alpha {self.alpha:g}" if self.alpha else "")


def beyond_lecture(rule: UpdateRule | None) -> UpdateRule | None:
    """``rule`` where a step must apply it, None where it is the lecture's (or not given): the
    steps that fuse the lecture's update compute it themselves."""
    return None if rule is None or rule.lecture else rule
