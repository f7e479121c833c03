"""The traced step as scalar expressions for one example: what a fused kernel computes.

A :class:`tracing.Graph` records arrays.  Lowering it gives every node an
object array of :class:`Scalar` expressions of the node's shape, the examples
axis M standing for *one* example (size 1): ``W1 @ X`` becomes n1 expressions in
that example's n0 inputs, ``tanh`` maps over them, and a node that sums over the
examples (``dZ2 @ A1.T``, ``sum(dZ1, axis=1)``, the cost) becomes
*accumulators*: one per element, each adding up a per-example expression.

Every scalar falls in one of three phases, by what it depends on:

``uniform``
    parameters and scalar inputs only (W1, m, ``1/m``, the learning rate);
    the same for every example, computed once per thread.
``example``
    one example's inputs (X, Y): the body of the loop over the examples.
``after``
    the accumulators' totals: the gradients' scaling and the update, once
    the sums over all examples are in.

Expressions are hash-consed (the same op on the same arguments is one
Scalar), so common subexpressions are shared by construction.  Each keeps the
equations' own operations in their order, so a lowering rounds as the
equations do except where a sum's order is free: within a matrix product,
over the examples, and where a compiler contracts ``a * b + c`` into one FMA.

Why a small graph of our own rather than SymPy: the traced graph already is an
expression graph over tracing.OPS, so scalarising it needs only broadcasting and
the sum rules below, and printing is a table per target.  SymPy would
canonicalise the arithmetic (reorder sums and products, write ``x / y`` as
``x * y**-1``) and print floats to 15 significant digits, so the kernel would
no longer compute what the equations compute, operation for operation; and it
would be a heavy run-time dependency of the GPU path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ... import equations, tracing
from ...errors import BackpropCoreError
from ...parameters import NAMES as PARAMETERS

UNIFORM, EXAMPLE, AFTER = "uniform", "example", "after"
_RANK = {UNIFORM: 0, EXAMPLE: 1, AFTER: 2}
GRADIENTS = tuple("d" + name for name in PARAMETERS)  # dW1, db1, dW2, db2
#: A sum or max within one example (over rows) combines pairwise with these ops.
PAIRWISE = {"sum": "add", "max": "maximum"}
#: Every op a computed Scalar can have (the leaves are "input", "const" and "total").
SCALAR_OPS = (*tracing.ELEMENTWISE_UNARY, *tracing.ELEMENTWISE_BINARY, "where", "astype", "maximum")


class NotFusableError(BackpropCoreError, ValueError):
    """The traced step cannot become one pass over the examples; the message says why."""


@dataclass(eq=False, frozen=True)
class Scalar:
    """One value for one example.

    ``op`` is an element-wise op of tracing.OPS, ``maximum`` (of two), or a
    leaf: ``input`` (element ``index`` of input ``name``), ``const``
    (``value``) or ``total`` (the result of accumulator ``index``).
    """

    op: str
    args: tuple = ()
    dtype: str = "float"
    phase: str = UNIFORM
    name: str = ""
    index: tuple | int = ()
    value: float | None = None

    def __repr__(self):
        if self.op == "input":
            return f"{self.name}{list(self.index)}"
        if self.op == "const":
            return repr(self.value)
        if self.op == "total":
            return f"total{self.index}"
        return f"{self.op}({', '.join(map(repr, self.args))})"


@dataclass
class Program:
    """The lowered step: inputs, accumulators, outputs, every scalar in order.

    ``example_inputs``: name -> rows per example (X: n0, Y: n2).
    ``parameters``: name -> shape, in the order of the flat parameter buffer.
    ``scalar_inputs``: names of the 0-d inputs (m, learning_rate).
    ``accumulators``: the per-example contributions whose sums over the
    examples the kernel accumulates; ``total`` k is the sum of contribution k.
    ``outputs``: name -> object array of Scalars (uniform or after phase): the
    updated parameters under their own names, the gradients as dW1..db2, and J
    when the cost was asked for.
    ``scalars``: every Scalar made, each after its arguments.
    """

    example_inputs: dict
    parameters: dict
    scalar_inputs: tuple
    accumulators: list
    outputs: dict
    scalars: list = field(repr=False)

    def needed(self, roots) -> list:
        """The scalars ``roots`` depend on (themselves included), each after its arguments."""
        wanted, stack = set(), [r for r in roots if r is not None]
        while stack:
            s = stack.pop()
            if id(s) not in wanted:
                wanted.add(id(s))
                stack.extend(s.args)
        return [s for s in self.scalars if id(s) in wanted]

    @property
    def output_scalars(self) -> list:
        return [s for arr in self.outputs.values() for s in arr.flat]


class Builder:
    """Makes Scalars, each distinct computation once, and registers accumulators."""

    def __init__(self):
        self.scalars, self._known = [], {}
        self.accumulators, self._accumulated = [], {}

    def make(self, op, args=(), dtype="float", phase=None, **attrs) -> Scalar:
        key = (op, dtype, tuple(id(a) for a in args), repr(sorted(attrs.items())))
        found = self._known.get(key)
        if found is not None:
            return found
        if phase is None:
            phases = {a.phase for a in args}
            if EXAMPLE in phases and AFTER in phases:
                raise NotFusableError(
                    f"{op} mixes a per-example value with a sum over the examples; "
                    "a single pass over the examples cannot compute it")
            phase = max(phases, key=_RANK.get, default=UNIFORM)
        scalar = Scalar(op, tuple(args), dtype, phase, **attrs)
        self._known[key] = scalar
        self.scalars.append(scalar)
        return scalar

    def const(self, value: float) -> Scalar:
        return self.make("const", value=float(value))

    def leaves(self, name: str, shape, phase: str) -> np.ndarray:
        """An input's elements (shape with M as 1)."""
        out = np.empty(_local(shape), dtype=object)
        for idx in np.ndindex(out.shape):
            out[idx] = self.make("input", phase=phase, name=name, index=idx)
        return out

    def accumulate(self, contribution: Scalar) -> Scalar:
        """The total over the examples of ``contribution`` (one accumulator per distinct one)."""
        if contribution.phase == AFTER:
            raise NotFusableError("a sum over the examples of a value that itself needs such a sum "
                                  "takes two passes over the examples; the fused kernel makes one")
        if id(contribution) not in self._accumulated:
            self._accumulated[id(contribution)] = len(self.accumulators)
            self.accumulators.append(contribution)
        return self.make("total", phase=AFTER, index=self._accumulated[id(contribution)])


def _local(shape) -> tuple:
    """A node's shape for one example: the examples axis M has size 1."""
    return tuple(1 if d is tracing.M else d for d in shape)


def _map(fn, *arrays) -> np.ndarray:
    """``fn`` applied element by element over broadcast object arrays."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=object) for a in arrays))
    out = np.empty(arrays[0].shape, dtype=object)
    for idx in np.ndindex(out.shape):
        out[idx] = fn(*(a[idx] for a in arrays))
    return out


def _fold(b: Builder, arr: np.ndarray, axes, op: str, keepdims: bool) -> np.ndarray:
    """Combine ``arr`` over ``axes`` with the binary ``op``, left to right."""
    axes = tuple(sorted(axes))
    kept = [i for i in range(arr.ndim) if i not in axes]
    moved = np.transpose(arr, kept + list(axes))
    lead = moved.shape[:len(kept)]
    flat = moved.reshape(lead + (-1,))
    out = np.empty(lead, dtype=object)
    for idx in np.ndindex(lead):
        items = flat[idx]
        acc = items[0]
        for item in items[1:]:
            acc = b.make(op, (acc, item))
        out[idx] = acc
    if keepdims:
        out = out.reshape(tuple(1 if i in axes else n for i, n in enumerate(arr.shape)))
    return out


# -- one rule per op of tracing.OPS -----------------------------------------------------------
def _elementwise(b, node, *args):
    return _map(lambda *xs: b.make(node.op, xs, node.dtype), *args)


def _astype(b, node, x):
    return _map(lambda s: s if s.dtype == node.dtype else b.make("astype", (s,), node.dtype), x)


def _transpose(b, node, x):
    return np.transpose(x)


def _matmul(b, node, x, y):
    if node.reduces_examples:
        # (r, M) @ (M, c): for one example, the outer product of its two columns,
        # each element summed over the examples.
        return _map(lambda s, t: b.accumulate(b.make("multiply", (s, t))), x, y)
    out = np.empty((x.shape[0], y.shape[1]), dtype=object)
    for i, j in np.ndindex(out.shape):
        acc = b.make("multiply", (x[i, 0], y[0, j]))
        for k in range(1, x.shape[1]):
            acc = b.make("add", (acc, b.make("multiply", (x[i, k], y[k, j]))))
        out[i, j] = acc
    return out


def _reduce(b, node, x):
    axes, keep, combine = node.attrs["axis"], node.attrs["keepdims"], PAIRWISE[node.op]
    if not node.reduces_examples:
        return _fold(b, x, axes, combine, keep)
    if node.op != "sum":
        # Nothing in the equations takes a max over the examples (softmax's is over rows).
        raise NotFusableError(f"a {node.op} over the examples is not fused; only sums are")
    examples_axis = node.args[0].shape.index(tracing.M)
    within = tuple(a for a in axes if a != examples_axis)
    per_example = _fold(b, x, within, combine, keepdims=True) if within else x
    totals = _map(b.accumulate, per_example)
    return totals if keep else totals.reshape(_local(node.shape))


#: How each op of tracing.OPS (but "input", which the caller binds) lowers.
RULES = {
    **{op: _elementwise for op in (*tracing.ELEMENTWISE_UNARY, *tracing.ELEMENTWISE_BINARY, "where")},
    "astype": _astype,
    "transpose": _transpose,
    "matmul": _matmul,
    "sum": _reduce,
    "max": _reduce,
    "const": lambda b, node: np.asarray(b.const(node.attrs["value"]), dtype=object),
}


def lower(b: Builder, graph: tracing.Graph, bindings: dict) -> tuple:
    """The graph's outputs as object arrays of Scalars; ``bindings``: input name -> array."""
    values = {}
    for node in graph.nodes:
        if node.op == "input":
            values[node.id] = bindings[node.attrs["name"]]
            continue
        rule = RULES.get(node.op)
        if rule is None:
            raise NotFusableError(f"no fused lowering for op {node.op!r}; add a rule to {__name__}.RULES")
        args = [values[a.id] if isinstance(a, tracing.Node) else np.asarray(b.const(a), dtype=object)
                for a in node.args]
        out = rule(b, node, *args)
        if out.shape != _local(node.shape):
            raise AssertionError(f"lowering {node!r} gave shape {out.shape}")
        values[node.id] = out
    return tuple(None if o is None else values[o.id] for o in graph.outputs)


def lower_step(n0: int, n1: int, n2: int, g, with_cost: bool, output=equations.SIGMOID) -> Program:
    """``equations.gradients`` then ``equations.update`` of an n0-n1-n2 network, lowered.

    Inputs: X (n0 per example), Y (n2 per example), the parameters W1, b1, W2,
    b2, and the scalars m (the batch's size) and learning_rate.  ``output``: the output
    layer (sigmoid, or softmax, whose max and sum over the rows stay within one example).
    """
    grads_graph = tracing.trace_gradients(n0, n1, n2, g, with_cost=with_cost, output=output)
    shapes = {name: node.shape for name, node in grads_graph.inputs.items()}
    update_graph = tracing.trace(equations.update, {**{p: shapes[p] for p in PARAMETERS},
                                                    **{d: shapes[p] for d, p in zip(GRADIENTS, PARAMETERS)},
                                                    "learning_rate": ()})
    b = Builder()
    bindings = {}
    for name, shape in shapes.items():
        phase = EXAMPLE if tracing.M in shape else UNIFORM
        bindings[name] = b.leaves(name, shape, phase)
    *grads, J = lower(b, grads_graph, bindings)
    bindings.update(zip(GRADIENTS, grads))
    bindings["learning_rate"] = b.leaves("learning_rate", (), UNIFORM)
    updated = lower(b, update_graph, bindings)
    outputs = {**dict(zip(PARAMETERS, updated)), **({"J": J} if J is not None else {}),
               **dict(zip(GRADIENTS, grads))}
    return Program(example_inputs={k: shapes[k][0] for k in shapes if tracing.M in shapes[k]},
                   parameters={p: shapes[p] for p in PARAMETERS},
                   scalar_inputs=tuple(k for k in shapes if shapes[k] == ()) + ("learning_rate",),
                   accumulators=b.accumulators, outputs=outputs, scalars=b.scalars)
