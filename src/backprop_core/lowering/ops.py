"""Every element-wise op of the traced step, with all its forms side by side: one row per op.

``reference``
    ``(xp, *args) -> array``: how :func:`backprop_core.tracing.evaluate`, the
    oracle every target is tested against, computes it in any Array API namespace.
``numpy``
    the NumPy ufunc (it takes ``out=``): the buffered NumPy step and the NumPy
    form of the fused expressions.
``python``
    on Python numbers: the scalars made only of m and constants, computed as
    the equations compute them.
``c``
    the C text (``{0}``, ``{1}``, ``{2}``: the arguments; ``{f}``: "f" in single
    precision, as in ``tanhf``), for the fused CUDA kernel and the fused CPU step.

Adding an op is one row here, plus its recording in ``tracing._Namespace``.
(``astype``, ``matmul``, ``transpose`` and the reductions are not element-wise
and each lowering handles them apart.)
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Op:
    """One element-wise op in every form (None where a form does not exist)."""

    reference: Callable
    numpy: Callable | None
    python: Callable | None
    c: str


def _unary(name, python, c) -> Op:
    return Op(lambda xp, a: getattr(xp, name)(a), getattr(np, name), python, c)


OPS = {
    # name          reference (the oracle)              NumPy              Python            C
    "negative": Op(lambda xp, a: -a, np.negative, operator.neg, "(-{0})"),
    "abs": _unary("abs", abs, "fabs{f}({0})"),
    "exp": _unary("exp", math.exp, "exp{f}({0})"),
    "log": _unary("log", math.log, "log{f}({0})"),
    "log1p": _unary("log1p", math.log1p, "log1p{f}({0})"),
    "tanh": _unary("tanh", math.tanh, "tanh{f}({0})"),
    "sqrt": _unary("sqrt", math.sqrt, "sqrt{f}({0})"),
    "add": Op(lambda xp, a, b: a + b, np.add, operator.add, "({0} + {1})"),
    "subtract": Op(lambda xp, a, b: a - b, np.subtract, operator.sub, "({0} - {1})"),
    "multiply": Op(lambda xp, a, b: a * b, np.multiply, operator.mul, "({0} * {1})"),
    "divide": Op(lambda xp, a, b: a / b, np.divide, operator.truediv, "({0} / {1})"),
    "pow": Op(lambda xp, a, b: a ** b, np.power, operator.pow, "pow{f}({0}, {1})"),
    "greater": Op(lambda xp, a, b: a > b, np.greater, operator.gt, "({0} > {1})"),
    "greater_equal": Op(lambda xp, a, b: a >= b, np.greater_equal, operator.ge, "({0} >= {1})"),
    "less": Op(lambda xp, a, b: a < b, np.less, operator.lt, "({0} < {1})"),
    "less_equal": Op(lambda xp, a, b: a <= b, np.less_equal, operator.le, "({0} <= {1})"),
    "equal": Op(lambda xp, a, b: a == b, np.equal, operator.eq, "({0} == {1})"),
    "where": Op(lambda xp, c, a, b: xp.where(c, a, b), np.where, lambda c, a, b: a if c else b,
                "({0} ? {1} : {2})"),
    # Within one example, a max over rows folds pairwise (the fused kernels); NaN wins, as in NumPy.
    "maximum": Op(lambda xp, a, b: xp.maximum(a, b), np.maximum, None, "bc_max({0}, {1})"),
}

# Scalars made only of m and constants are computed as the equations compute them, in
# Python: a Python float stays "weak" in NumPy, so (1.0 / m) * dW keeps float32 float32.
_PYTHON = {**{name: op.python for name, op in OPS.items() if op.python is not None},
           "sum": lambda a: a, "max": lambda a: a}  # over the no axes of a scalar


def python_call(node):
    """The Python function computing a scalar node (a :class:`~backprop_core.tracing.Node` of shape ())
    from Python numbers, None where it has none: the targets compute the scalars of m and constants so."""
    if node.op in _PYTHON:
        return _PYTHON[node.op]
    if node.op == "astype":
        return float if node.dtype == "float" else bool
    return None
