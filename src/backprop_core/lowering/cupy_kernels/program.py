"""A partition made runnable: where every value lives, and the launches of one call.

:class:`Program` takes a traced graph, partitions it
(:mod:`.partition`), prints its chains (:mod:`.source`) and decides where each
value that leaves a launch is kept:

* the graph's outputs: one flat buffer, ``out``, in the graph's order (the
  updated W1, b1, W2, b2 at the offsets the parameters have in one flat
  buffer, then J), so one copy hands them all to the caller;
* per-example values (A1, dZ2, dZ1, ...): buffers of the chunk's size, made
  once and reused as soon as the last launch reading a value has run (a chain
  may write over an input that dies in it);
* other values (a product's sums before the scaling by 1/m): small buffers of
  their own.

:meth:`Program.bind` turns these into concrete launches on the arrays of an
:class:`Arena` (one per chunk size, shared by the programs of one executor,
which never run at once) and the caller's inputs.  Nothing here imports an
array library: the arena is given functions that make arrays, so the same
launches run on CuPy (:mod:`.cupy_runner`) and, for the tests, on NumPy with
the chains compiled as host C++ (:mod:`.host`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from ... import equations, tracing
from ...errors import InvalidInputError, InvalidTypeError
from ...equations import SIGMOID
from ...tracing import M, Node
from ..ops import python_call
from ..liveness import Read, Step as LiveStep, Write, plan_buffers
from .gemm import BlasCall, blas_call, layout_of
from .partition import EXAMPLE_CHAIN, GEMM, HOST, INLINE_TERMS, INPUT, SUM, VIEW, partition
from .source import COLUMN, SCALAR, ChainKernel, chain_source


# -- the graphs an executor runs ------------------------------------------------------------------
def gradients_graph(n0, n1, n2, g, with_cost: bool, output=SIGMOID, weighted: bool = False) -> tracing.Graph:
    """``equations.gradients`` traced: outputs dW1, db1, dW2, db2 and J (None without the cost)."""
    return tracing.trace_gradients(n0, n1, n2, g, with_cost, weighted, output=output)


def step_graph(n0, n1, n2, g, with_cost: bool, output=SIGMOID, weighted: bool = False) -> tracing.Graph:
    """``equations.gradients`` then ``equations.update``, traced as one graph.

    Inputs: X, Y, W1, b1, W2, b2, m, learning_rate (and weights).  Outputs: the
    updated W1, b1, W2, b2 and J, the cost of the parameters that went in
    (None without the cost).
    """
    inputs = {"X": (n0, M), "Y": (n2, M), "W1": (n1, n0), "b1": (n1, 1), "W2": (n2, n1), "b2": (n2, 1),
              "m": (), "learning_rate": ()}
    if weighted:
        inputs["weights"] = (1, M)

    def step(X, Y, W1, b1, W2, b2, m, learning_rate, weights=None):
        *grads, J = equations.gradients(X, Y, W1, b1, W2, b2, g, m=m, with_cost=with_cost, output=output,
                                        weights=weights)
        return (*equations.update(W1, b1, W2, b2, *grads, learning_rate), J)

    return tracing.trace(step, inputs)


# -- where values live ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Storage:
    """Where a node's value is: ``kind`` "input", "host", "view" (of ``base``), "buffer"
    or "small" (``spec``, ``ordinal``), or "out" (``offset``, at the node's shape)."""

    kind: str
    name: str = ""
    base: Node | None = None
    spec: tuple = ()
    ordinal: int = 0
    offset: int = 0


def _spec(node: Node) -> tuple:
    return node.shape, node.dtype


class Arena:
    """The arrays of one chunk size: buffers by (spec, ordinal), ``out`` and a vector of ones.

    ``empty(shape, dtype)`` and ``ones(n, dtype)`` make arrays of the library
    that runs the launches; ``dtype`` is the programs' float dtype (a name).
    Buffers are made on first use and kept.
    """

    def __init__(self, columns: int, dtype: str, empty, ones, out_size: int, ones_size: int):
        self.columns, self.dtype, self._empty = columns, dtype, empty
        self.out = empty((out_size,), dtype)
        self.ones = ones(max(1, ones_size), dtype)
        self._buffers = {}

    def buffer(self, spec, ordinal):
        key = (spec, ordinal)
        if key not in self._buffers:
            shape, kind = spec
            self._buffers[key] = self._empty(tuple(self.columns if d is M else d for d in shape),
                                             self.dtype if kind == "float" else "bool")
        return self._buffers[key]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._buffers.values()) + self.out.nbytes + self.ones.nbytes


# -- launches -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainLaunch:
    """A chain kernel, its threads (``count``, and ``inner``, the extent of its shape's last axis)
    and its other arguments: ``("array", a)``, ``("stride", n)``, ``("real", x)`` or
    ``("bool", b)``, in the kernel's order."""

    kernel: ChainKernel
    count: int
    inner: int
    args: tuple


@dataclass(frozen=True)
class GemmLaunch:
    """``C = A @ B`` by cuBLAS (``call``); ``matmul``: a product of the equations (TF32 may
    apply), not a sum over the examples (always full precision)."""

    call: BlasCall
    C: object
    A: object
    B: object
    matmul: bool


@dataclass(frozen=True)
class Bound:
    """One call's launches, in order, and its outputs (views of ``out``; None where the graph returns None)."""

    launches: tuple
    outputs: tuple


class Program:
    """One traced graph partitioned, printed and given storage.

    ``dtype``: "float32" or "float64".  ``shape`` and ``activation`` name the
    network in the printed source.  ``inline_terms``: see
    :data:`.partition.INLINE_TERMS`.
    """

    def __init__(self, graph: tracing.Graph, dtype: str, *, inline_terms: int = INLINE_TERMS,
                 shape: str = "traced", activation: str = "traced"):
        if dtype not in ("float32", "float64"):
            raise InvalidInputError(f"the kernels compute in float32 or float64, not {dtype!r}")
        self.graph, self.dtype = graph, dtype
        self.partition = partition(graph, inline_terms)
        self.source = chain_source(self.partition, dtype, shape, activation)
        self._kernels = {id(k.step): k for k in self.source.kernels}
        self.inputs = dict(graph.inputs)
        self.storage = {}
        for name, node in graph.inputs.items():
            self.storage[node.id] = Storage(INPUT, name=name)
        for node in self.partition.host:
            self.storage[node.id] = Storage(HOST)
        for node in self.partition.views:
            base = node.args[0]
            self.storage[node.id] = Storage(VIEW, base=base)
        self._place_outputs()
        self._place_buffers()
        self.ones_per_column = max((self._ones_needed(s.nodes[0]) for s in self.partition.steps if s.kind == SUM),
                                   default=0)

    # -- placement --------------------------------------------------------------------------
    def _place_outputs(self):
        self.out_layout, at = [], 0
        for node in self.graph.outputs:
            if node is None:
                self.out_layout.append(None)
                continue
            if node.id in self.storage:
                raise InvalidInputError(f"the graph returns node #{node.id} ({node.op}) twice or returns an "
                                        "input, a host scalar or a view: nothing on the device computes it")
            if node.per_example:
                raise InvalidInputError(f"the graph returns node #{node.id} with an examples axis {node.shape}; "
                                        "only results without one are returned")
            self.storage[node.id] = Storage("out", offset=at)
            self.out_layout.append((at, node.shape))
            at += math.prod(node.shape)
        self.out_size = at

    def _place_buffers(self):
        """Per-example values in buffers shared once they die (:mod:`..liveness`); others in small arrays."""
        base = {n.id: self.storage[n.id].base for n in self.partition.views}

        def root(node):
            while node.id in base:
                node = base[node.id]
            return node

        steps, kinds = [], {}
        for step in self.partition.steps:
            writes = []
            for node in step.outputs:
                if node.id not in self.storage:  # else a graph output, in `out`
                    kinds[node.id] = "buffer" if node.per_example else "small"
                    writes.append(Write(node.id, (kinds[node.id], _spec(node)), pooled=node.per_example))
            reads = tuple(Read(root(a).id, self._written_over_safely(step, a, kinds)) for a in step.inputs)
            steps.append(LiveStep(reads, tuple(writes)))
        plan = plan_buffers(steps)
        for node_id, kind in kinds.items():
            self.storage[node_id] = Storage(kind, spec=plan.buffers[plan.index[node_id]][1],
                                            ordinal=plan.ordinal[node_id])
        self.buffer_specs = plan.made()

    def _written_over_safely(self, step, a: Node, kinds) -> bool:
        """May an output of ``step`` be written over input ``a``'s buffer, ``a`` dying there?

        Only in a chain, whose thread loads all it reads before it stores, and
        where no other thread reads what it overwrites: one thread per example
        reads only its own examples; one thread per element is safe only for an
        input read element for element (not a view, not broadcast).
        """
        if step.kind != EXAMPLE_CHAIN:
            return False  # a product or a sum reads all of an operand for each result
        kernel = self._kernels[id(step)]
        return kernel.layout == COLUMN or (kinds.get(a.id) == "buffer" and a.shape == kernel.shape)

    @staticmethod
    def _ones_needed(node: Node) -> int:
        """Ones per example column a sum over the examples multiplies by (a flattened sum needs rows * c)."""
        (arg,) = node.args
        axes = node.attrs["axis"]
        return math.prod(arg.shape[a] for a in axes if arg.shape[a] is not M)

    # -- what people read ---------------------------------------------------------------------
    @property
    def launches(self) -> int:
        return self.partition.launches

    def __repr__(self):
        lines = [f"Program({self.dtype}, {self.launches} launches per call: {self.partition.counts()}, "
                 f"{sum(self.buffer_specs.values())} buffers)"]
        for step in self.partition.steps:
            reads = ", ".join(f"#{a.id}" for a in step.inputs)
            writes = ", ".join(f"#{n.id}->{self.storage[n.id].kind}" for n in step.outputs)
            lines.append(f"{step.kind} of {len(step.nodes)} node(s): reads {reads}; writes {writes}")
        return "\n  ".join(lines)

    # -- one call -------------------------------------------------------------------------------
    def arena(self, columns: int, empty, ones, *, out_size=None, ones_size=None) -> Arena:
        """An :class:`Arena` for chunks of ``columns`` examples (sizes may cover other programs too)."""
        return Arena(columns, self.dtype, empty, ones, self.out_size if out_size is None else out_size,
                     self.ones_per_column * columns if ones_size is None else ones_size)

    def check(self, values: dict) -> int:
        """Validate the inputs (name -> array or number), naming what is wrong; returns the examples c."""
        c = None
        for name, node in self.inputs.items():
            if name not in values:
                raise InvalidTypeError(f"missing input {name!r}; the inputs are {list(self.inputs)}")
            value = values[name]
            if node.shape == ():
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                    raise InvalidTypeError(f"{name} must be a finite real number, got {value!r}")
                continue
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise InvalidTypeError(f"{name} must be an array, got {type(value).__name__}")
            if str(value.dtype) != self.dtype:
                raise InvalidTypeError(f"{name} has dtype {value.dtype}, but these kernels compute in {self.dtype}")
            if node.per_example and c is None and len(value.shape) == len(node.shape):
                c = value.shape[node.shape.index(M)]
            expected = tuple(c if d is M else d for d in node.shape)
            if tuple(value.shape) != expected:
                shape = tuple("c" if d is M else d for d in node.shape)
                raise InvalidInputError(f"{name} has shape {tuple(value.shape)}, expected {shape}")
        if c == 0:
            raise InvalidInputError("the inputs have no examples")
        return c

    def bind(self, arena: Arena, values: dict) -> Bound:
        """The launches computing the graph on ``values`` (name -> array or number), into ``arena``.

        The chunk's examples must number ``arena.columns``.
        """
        arrays, scalars = {}, {}
        for name, node in self.inputs.items():
            (scalars if node.shape == () else arrays)[node.id] = values[name]
        for node in self.partition.host:
            if node.op == "const":
                scalars[node.id] = node.attrs["value"]
                continue
            args = [scalars[a.id] if isinstance(a, Node) else a for a in node.args]
            scalars[node.id] = python_call(node)(*args)

        def array(node):
            if node.id not in arrays:
                where = self.storage[node.id]
                if where.kind == VIEW:
                    arrays[node.id] = array(where.base).T
                elif where.kind == "out":
                    size = math.prod(node.shape)
                    arrays[node.id] = arena.out[where.offset:where.offset + size].reshape(node.shape)
                else:
                    arrays[node.id] = arena.buffer(where.spec, where.ordinal)
            return arrays[node.id]

        launches = []
        for step in self.partition.steps:
            if step.is_chain:
                launches.append(self._chain_launch(step, arena.columns, array, scalars))
            elif step.kind == GEMM:
                node = step.nodes[0]
                a, b = node.args
                launches.append(_gemm(array(node), array(a), array(b), matmul=True))
            else:
                launches.append(self._sum_launch(step.nodes[0], array, arena))
        outputs = tuple(None if node is None else array(node) for node in self.graph.outputs)
        return Bound(tuple(launches), outputs)

    def _chain_launch(self, step, columns, array, scalars) -> ChainLaunch:
        kernel = self._kernels[id(step)]
        args = []
        for p in kernel.params:
            if p.kind == SCALAR:
                args.append(("bool" if p.node.dtype == "bool" else "real", scalars[p.node.id]))
                continue
            a = array(p.node)
            args.append(("array", a))
            args += [("stride", s) for s in layout_of(a)[1]]
        return ChainLaunch(kernel, *kernel.threads(columns), tuple(args))

    @staticmethod
    def _sum_launch(node: Node, array, arena) -> GemmLaunch:
        """A sum over the examples as a product with ones: ``D @ 1`` or ``1^T @ D``."""
        (arg,) = node.args
        D, C = array(arg), array(node)
        axis = arg.shape.index(M)
        others = [a for a in node.attrs["axis"] if a != axis]
        if others:  # over the rows too: the whole of D as one row of r * c numbers
            if tuple(layout_of(D)[1]) != _contiguous_strides(D.shape):
                raise InvalidInputError(f"node #{node.id}: a sum over all of node #{arg.id} needs it contiguous")
            D = D.reshape(1, math.prod(D.shape))
            axis = 1
        n = D.shape[axis]
        if D.ndim != 2:
            raise InvalidInputError(f"node #{node.id}: a sum over the examples of a {D.ndim}-D array")
        if axis == 1:
            return _gemm(C.reshape(D.shape[0], 1), D, arena.ones[:n].reshape(n, 1), matmul=False)
        return _gemm(C.reshape(1, D.shape[1]), arena.ones[:n].reshape(1, n), D, matmul=False)


def _contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for d in reversed(shape):
        strides.append(step)
        step *= d
    return tuple(reversed(strides))


def _gemm(C, A, B, matmul: bool) -> GemmLaunch:
    return GemmLaunch(blas_call(layout_of(C), layout_of(A), layout_of(B)), C, A, B, matmul)
