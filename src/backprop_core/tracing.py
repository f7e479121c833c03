"""The step as data: run the equations on symbolic arrays and keep what they did.

A :class:`Symbol` stands for an array of known shape whose examples axis has
no size yet (:data:`M`): X is ``Symbol((n0, M))``, W1 is ``Symbol((n1, n0))``.
Symbols carry an Array API namespace of their own, so ``equations.gradients``
runs on them unchanged and every operation it makes becomes a :class:`Node`
of a :class:`Graph`.  Nothing here knows the lecture's math: change an
activation or an equation and the graph follows.

What the graph is for: code that runs the same step faster than array by array
(preallocated buffers on a CPU, one fused kernel on a GPU) is generated from
it, and :func:`evaluate` runs it back through any real namespace, which is how
a lowering is checked against the equations.

Shapes are tuples of ints and :data:`M`.  A node whose shape holds M has one
column per example; a ``matmul`` that contracts over M, or a ``sum`` over the M
axis, is a *reduction over the examples* (:meth:`Node.reduces_examples`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from .errors import BackpropCoreError


class _Examples:
    """The size of the examples axis, unknown while tracing."""

    def __repr__(self):
        return "M"


#: The symbolic number of examples (the m of the lecture).
M = _Examples()

ELEMENTWISE_UNARY = ("negative", "abs", "exp", "log", "log1p", "tanh", "sqrt")
ELEMENTWISE_BINARY = ("add", "subtract", "multiply", "divide", "pow",
                      "greater", "greater_equal", "less", "less_equal", "equal")
COMPARISONS = ("greater", "greater_equal", "less", "less_equal", "equal")
#: Every op a node can have.  "input" and "const" have no array arguments.
OPS = ("input", "const", *ELEMENTWISE_UNARY, *ELEMENTWISE_BINARY, "where", "astype",
       "matmul", "transpose", "sum", "max")

_ids = itertools.count()


class TraceError(BackpropCoreError, TypeError):
    """The traced code did something the tracer cannot record."""


@dataclass(eq=False)
class Node:
    """One array operation: ``op`` applied to ``args`` (nodes or Python floats).

    ``attrs`` holds what is not an array: the input's ``name``, a constant's
    ``value``, a reduction's ``axis`` and ``keepdims``.  ``dtype`` is "float" or
    "bool".
    """

    op: str
    args: tuple
    shape: tuple
    dtype: str = "float"
    attrs: dict = field(default_factory=dict)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def per_example(self) -> bool:
        """Does the node have one column per example?"""
        return M in self.shape

    @property
    def reduces_examples(self) -> bool:
        """Is the node a sum over the examples (its result has no examples axis)?"""
        if self.op == "matmul":
            a, b = self.args
            return a.shape[1] is M
        if self.op in ("sum", "max"):
            return self.args[0].per_example and not self.per_example
        return False

    def __repr__(self):
        label = self.attrs.get("name", self.attrs.get("value", ""))
        return f"Node#{self.id}({self.op}{' ' + str(label) if label != '' else ''}, shape={self.shape})"


def broadcast(*shapes) -> tuple:
    """The shape that arrays of ``shapes`` broadcast to (as the Array API broadcasts; M included)."""
    ndim = max(len(s) for s in shapes)
    out = []
    for dims in zip(*(((1,) * (ndim - len(s)) + tuple(s)) for s in shapes)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise TraceError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


class Symbol:
    """A symbolic array: a shape, a dtype kind and the node that makes it."""

    __array_priority__ = 1000  # NumPy scalars defer to the symbol's operators

    def __init__(self, node: Node):
        self.node = node

    # -- what code asks an array -----------------------------------------------------
    @property
    def shape(self):
        return self.node.shape

    @property
    def ndim(self):
        return len(self.node.shape)

    @property
    def dtype(self):
        return self.node.dtype

    @property
    def T(self):
        if self.ndim != 2:
            raise TraceError(".T needs a 2-D array")
        return _make("transpose", (self,), self.shape[::-1])

    @property
    def mT(self):
        return self.T

    def __array_namespace__(self, api_version=None):
        return namespace

    def __repr__(self):
        return f"Symbol({self.node!r})"

    def __bool__(self):
        raise TraceError("a traced array has no truth value: the step must not branch on data")

    __float__ = __int__ = __index__ = __bool__

    # -- operators ---------------------------------------------------------------------
    def __add__(self, other): return _binary("add", self, other)
    def __radd__(self, other): return _binary("add", other, self)
    def __sub__(self, other): return _binary("subtract", self, other)
    def __rsub__(self, other): return _binary("subtract", other, self)
    def __mul__(self, other): return _binary("multiply", self, other)
    def __rmul__(self, other): return _binary("multiply", other, self)
    def __truediv__(self, other): return _binary("divide", self, other)
    def __rtruediv__(self, other): return _binary("divide", other, self)
    def __pow__(self, other): return _binary("pow", self, other)
    def __gt__(self, other): return _binary("greater", self, other)
    def __ge__(self, other): return _binary("greater_equal", self, other)
    def __lt__(self, other): return _binary("less", self, other)
    def __le__(self, other): return _binary("less_equal", self, other)
    def __eq__(self, other): return _binary("equal", self, other)
    def __neg__(self): return _unary("negative", self)
    def __abs__(self): return _unary("abs", self)
    def __matmul__(self, other): return _matmul(self, other)
    def __rmatmul__(self, other): return _matmul(other, self)
    __hash__ = object.__hash__


def _make(op, args, shape, dtype="float", **attrs) -> Symbol:
    nodes = tuple(a.node if isinstance(a, Symbol) else a for a in args)
    return Symbol(Node(op, nodes, tuple(shape), dtype, attrs))


def _lift(x):
    """A Symbol or a Python number (kept as a float constant inside the node's args)."""
    if isinstance(x, Symbol):
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        try:
            return float(x)  # NumPy scalars from the equations' own arithmetic
        except (TypeError, ValueError):
            raise TraceError(f"cannot trace an operand of type {type(x).__name__}") from None
    return float(x)


def _shape(x):
    return x.shape if isinstance(x, Symbol) else ()


def _unary(op, x) -> Symbol:
    return _make(op, (x,), x.shape)


def _binary(op, a, b) -> Symbol:
    a, b = _lift(a), _lift(b)
    dtype = "bool" if op in COMPARISONS else "float"
    return _make(op, (a, b), broadcast(_shape(a), _shape(b)), dtype)


def _matmul(a, b) -> Symbol:
    if not (isinstance(a, Symbol) and isinstance(b, Symbol)) or a.ndim != 2 or b.ndim != 2:
        raise TraceError("the tracer records matmul of two 2-D arrays only")
    if a.shape[1] is not b.shape[0] and a.shape[1] != b.shape[0]:
        raise TraceError(f"matmul of shapes {a.shape} and {b.shape}")
    return _make("matmul", (a, b), (a.shape[0], b.shape[1]))


def _reduce(op, x, axis, keepdims) -> Symbol:
    axes = tuple(range(x.ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % x.ndim for a in axes)
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)) if keepdims \
        else tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return _make(op, (x,), shape, axis=axes, keepdims=keepdims)


class _Namespace:
    """The Array API functions the equations use, recording nodes instead of computing."""

    __name__ = "backprop_core.tracing"
    float32 = float64 = "float"
    bool = "bool"

    def __getattr__(self, name):
        raise TraceError(f"the tracer does not record {name!r}; add it to backprop_core.tracing")

    def abs(self, x): return _unary("abs", x)
    def exp(self, x): return _unary("exp", x)
    def log(self, x): return _unary("log", x)
    def log1p(self, x): return _unary("log1p", x)
    def tanh(self, x): return _unary("tanh", x)
    def sqrt(self, x): return _unary("sqrt", x)
    def negative(self, x): return _unary("negative", x)
    def add(self, a, b): return _binary("add", a, b)
    def subtract(self, a, b): return _binary("subtract", a, b)
    def multiply(self, a, b): return _binary("multiply", a, b)
    def divide(self, a, b): return _binary("divide", a, b)
    def matmul(self, a, b): return _matmul(a, b)

    def matrix_transpose(self, x):
        return x.T

    def where(self, condition, a, b):
        a, b = _lift(a), _lift(b)
        return _make("where", (condition, a, b), broadcast(condition.shape, _shape(a), _shape(b)))

    def astype(self, x, dtype, copy=True):
        if dtype not in ("float", "bool"):
            raise TraceError(f"astype to {dtype!r} while tracing")
        return _make("astype", (x,), x.shape, dtype)

    def sum(self, x, axis=None, keepdims=False, dtype=None):
        return _reduce("sum", x, axis, keepdims)

    def max(self, x, axis=None, keepdims=False):
        return _reduce("max", x, axis, keepdims)


namespace = _Namespace()


def symbol(name: str, shape) -> Symbol:
    """An input of the traced function: ``symbol("X", (n0, M))``, ``symbol("m", ())``."""
    return _make("input", (), shape, name=name)


@dataclass
class Graph:
    """What a traced function did: its named inputs, its outputs, and every node in order.

    ``nodes`` are topologically sorted (each after its arguments); an output
    may be None where the function returned None (the cost, when not asked for).
    """

    inputs: dict
    outputs: tuple
    nodes: list

    def __repr__(self):
        lines = [f"Graph(inputs={list(self.inputs)}, {len(self.nodes)} nodes)"]
        for n in self.nodes:
            args = ", ".join(f"#{a.id}" if isinstance(a, Node) else repr(a) for a in n.args)
            lines.append(f"  #{n.id} = {n.op}({args}) {n.shape}{' ' + str(n.attrs) if n.attrs else ''}")
        lines.append(f"  outputs: {[None if o is None else '#%d' % o.id for o in self.outputs]}")
        return "\n".join(lines)


def trace(fn, inputs: dict) -> Graph:
    """Run ``fn(**symbols)`` on a symbol per input (name -> shape); returns its :class:`Graph`.

    ``fn`` must return a Symbol or a tuple of Symbols (or None entries).
    """
    symbols = {name: symbol(name, shape) for name, shape in inputs.items()}
    result = fn(**symbols)
    outputs = result if isinstance(result, tuple) else (result,)
    for out in outputs:
        if out is not None and not isinstance(out, Symbol):
            raise TraceError(f"the traced function returned {type(out).__name__}, not an array")
    out_nodes = tuple(None if o is None else o.node for o in outputs)
    return _shared(Graph({k: s.node for k, s in symbols.items()}, out_nodes, _toposort(out_nodes)))


def _shared(graph: Graph) -> Graph:
    """The graph with each repeated computation made once (same op, same arguments).

    The equations write ``1.0 / m`` four times and ``abs(Z2)`` twice; whatever
    runs the graph should compute each once.
    """
    canonical, seen = {}, {}
    for node in graph.nodes:
        node.args = tuple(canonical.get(a.id, a) if isinstance(a, Node) else a for a in node.args)
        if node.op == "input":
            canonical[node.id] = node
            continue
        key = (node.op, node.dtype, node.shape, repr(sorted(node.attrs.items())),
               tuple(("node", a.id) if isinstance(a, Node) else ("const", a) for a in node.args))
        canonical[node.id] = seen.setdefault(key, node)
    outputs = tuple(None if o is None else canonical[o.id] for o in graph.outputs)
    return Graph(graph.inputs, outputs, _toposort(outputs))


def _toposort(outputs) -> list:
    order, seen = [], set()
    for root in outputs:
        if root is None or root.id in seen:
            continue
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if node.id in seen:
                continue
            seen.add(node.id)
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if isinstance(a, Node) and a.id not in seen)
    return order


def trace_gradients(n0: int, n1: int, n2: int, g, with_cost: bool = True, weighted: bool = False,
                    **kw) -> Graph:
    """The graph of ``equations.gradients`` for an n0-n1-n2 network and activation ``g``.

    Inputs: X (n0, M), Y (n2, M), W1, b1, W2, b2, the scalar m (the whole
    batch's size, which scales the sums) and, when ``weighted``, the examples'
    weights (1, M).  Outputs: dW1, db1, dW2, db2 and J (None unless
    ``with_cost``).  ``kw`` goes to ``equations.gradients`` (``output=``).
    """
    from . import equations

    inputs = {"X": (n0, M), "Y": (n2, M), "W1": (n1, n0), "b1": (n1, 1),
              "W2": (n2, n1), "b2": (n2, 1), "m": ()}
    if weighted:
        inputs["weights"] = (1, M)

    def gradients(X, Y, W1, b1, W2, b2, m, weights=None):
        return equations.gradients(X, Y, W1, b1, W2, b2, g, m=m, with_cost=with_cost, weights=weights, **kw)

    return trace(gradients, inputs)


# -- running a graph through a real namespace --------------------------------------------
#: The ops that are not element-wise; the element-wise ones are lowering.ops.OPS' reference forms.
_CALLS = {
    "matmul": lambda xp, a, b: a @ b,
    "transpose": lambda xp, a: a.T,
}


def evaluate(graph: Graph, values: dict, xp=None) -> tuple:
    """Compute the graph's outputs from real arrays ``values`` (name -> array or number).

    ``xp`` defaults to the namespace of the array inputs.  This is the
    reference every lowering of a graph is tested against.
    """
    if xp is None:
        from array_api_compat import array_namespace

        xp = array_namespace(*(v for v in values.values() if hasattr(v, "shape")))
    from .lowering.ops import OPS  # here: the lowering package imports this module

    like = next(v for v in values.values() if hasattr(v, "dtype") and hasattr(v, "shape"))
    computed = {}
    for node in graph.nodes:
        if node.op == "input":
            computed[node.id] = values[node.attrs["name"]]
            continue
        args = [computed[a.id] if isinstance(a, Node) else a for a in node.args]
        if node.op in _CALLS:
            out = _CALLS[node.op](xp, *args)
        elif node.op in OPS:
            out = OPS[node.op].reference(xp, *args)
        elif node.op == "astype":
            out = xp.astype(args[0], like.dtype if node.dtype == "float" else xp.bool)
        elif node.op in ("sum", "max"):
            out = getattr(xp, node.op)(args[0], axis=node.attrs["axis"], keepdims=node.attrs["keepdims"])
        else:
            raise TraceError(f"no evaluation rule for op {node.op!r}")
        computed[node.id] = out
    return tuple(None if o is None else computed[o.id] for o in graph.outputs)
