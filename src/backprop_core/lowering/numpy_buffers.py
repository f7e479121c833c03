"""The traced gradients run as NumPy calls writing into buffers made once.

:func:`backprop_core.tracing.trace_gradients` turns ``equations.gradients``
into a graph; this module lowers that graph, once, to a fixed list of NumPy
calls.  Run array by array, NumPy spends much of a CPU step on what is not the
math: every intermediate is a fresh array (above glibc's mmap threshold each one
page-faults), ``W2.T @ dZ2`` with n2 = 1, a matrix product whose contraction
has size 1, is an order of magnitude slower than the same outer product written
as a broadcast multiply, and ``where`` branches on every element.  Here each
per-example node writes with ``out=`` into a buffer of ``columns`` examples
allocated when the object is made; the nodes run in an order that lets arrays
die early, and a dead node's buffer is reused (in place where an operand dies);
transposes are views; the sums over the examples are BLAS products on
transposed views; ``where`` picks bits.  No line of the lecture's math is
written here: change an equation and the lowering follows the trace.

A chunk of c <= ``columns`` examples runs in the buffers' first c columns.  One
instance computes one chunk at a time; give each thread its own :meth:`copy`.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from functools import partial

import numpy as np

from .. import tracing
from ..activations import get_activation
from ..equations import SIGMOID
from ..errors import InvalidInputError, InvalidTypeError
from ..parameters import split_weights, unpack, updated
from ..tracing import M, Node
from .liveness import Read, Step, Write, plan_buffers
from .ops import OPS, python_call
from .target import EXECUTOR, Target

#: What a plan calls this target (``Plan.executor``).
NAME = "buffered"

# -- the rules: how each op runs --------------------------------------------------------
#: The element-wise ops as NumPy ufuncs (``where`` has its own, bit-picking form: _where_into).
_UFUNCS = {name: op.numpy for name, op in OPS.items() if name not in ("where", "maximum")}



def _where_into(dtype):
    """``out = where(condition, a, b)`` chosen bit by bit: b ^ ((a ^ b) * condition).

    np.where and masked copies branch on every element, and on data whose
    signs vary they run about six times slower than these three passes, which
    pick exactly the bits of a or of b (NaN, -0.0 and inf included).  ``out``
    may be a's buffer (a is read once, first), never b's.
    """
    bits = np.dtype(f"u{dtype.itemsize}")

    def as_bits(x):
        return x.view(bits) if isinstance(x, np.ndarray) else np.asarray(x, dtype).view(bits)

    def where_into(condition, a, b, out):
        out_bits, b_bits = out.view(bits), as_bits(b)
        np.bitwise_xor(as_bits(a), b_bits, out=out_bits)
        np.multiply(out_bits, condition, out=out_bits)
        np.bitwise_xor(out_bits, b_bits, out=out_bits)

    return where_into


def _cast_into(a, out):
    np.copyto(out, a, casting="unsafe")  # bool -> float is 0/1; float -> bool is a != 0


def _transpose(a):
    return a.T


def _contraction(node: Node):
    a, _ = node.args
    return a.shape[1]


def _may_reuse(node: Node) -> tuple:
    """Argument positions whose dying buffer the node may write its result into."""
    if node.op in _UFUNCS or node.op == "astype" or (node.op == "matmul" and _contraction(node) == 1):
        return tuple(range(len(node.args)))  # element by element: reading and writing in step
    if node.op == "where":
        return (1,)  # see _where_into
    return ()  # a matmul or a reduction reads all of an operand for each result


def _numpy_call(node: Node, dtype):
    """The NumPy function computing ``node`` from its arguments (accepts ``out=`` where it can)."""
    op = node.op
    if op == "negative":
        # NumPy 2.4's np.negative writes wrong numbers when its input steps 16 bytes (float32)
        # or 64 (float64) and its output is strided: a one-example chunk of a buffer with 4 or
        # 8 columns.  Multiplying by -1 is exact and gives the same bits.
        return partial(np.multiply, np.asarray(-1.0, dtype))
    if op in _UFUNCS:
        return _UFUNCS[op]
    if op == "matmul":
        # (r, 1) @ (1, c) is an outer product: a broadcast multiply is 12x faster than matmul.
        return np.multiply if _contraction(node) == 1 else np.matmul
    if op in ("sum", "max"):
        # The ufunc's reduce is what np.sum and np.max call, less 1 us of Python around it.
        reduce = np.add.reduce if op == "sum" else np.maximum.reduce
        return partial(reduce, axis=node.attrs["axis"], keepdims=node.attrs["keepdims"])
    if op == "where":
        return np.where
    if op == "astype":
        target = dtype if node.dtype == "float" else np.bool_
        return lambda a: np.array(a, dtype=target)  # a copy, as xp.astype makes
    if op == "transpose":
        return _transpose
    return None


# -- steps: closures over slot numbers of one list of values ----------------------------
def _into(f, args, out):
    """A step running ``f(*args, out=out)`` on the slots' values."""
    if len(args) == 1:
        a, = args
        return lambda v: f(v[a], out=v[out])
    if len(args) == 2:
        a, b = args
        return lambda v: f(v[a], v[b], out=v[out])
    a, b, c = args
    return lambda v: f(v[a], v[b], v[c], out=v[out])


def _assign(f, args, out):
    """A step storing ``f(*args)`` in slot ``out``."""
    if len(args) == 1:
        a, = args

        def step(v):
            v[out] = f(v[a])
    elif len(args) == 2:
        a, b = args

        def step(v):
            v[out] = f(v[a], v[b])
    else:
        def step(v):
            v[out] = f(*[v[i] for i in args])
    return step


# -- the analysis --------------------------------------------------------------------------
def _schedule(nodes, outputs, itemsize: int) -> list:
    """The nodes in an order that keeps fewer per-example arrays alive at once.

    The trace runs in the equations' order, so A1 lives from the forward pass
    to dW2 = dZ2 A1^T near the end.  Greedily, of the nodes whose arguments are
    computed, run first the one that frees the most bytes per example net of
    what it allocates (views first; ties in the trace's order).  Each op still
    computes what it computed, so the numbers do not change.
    """
    position = {n.id: i for i, n in enumerate(nodes)}
    root = {}  # a transpose is a view of its argument's array
    for n in nodes:
        root[n.id] = root[n.args[0].id] if n.op == "transpose" else n.id

    def roots(n):
        return {root[a.id] for a in n.args if isinstance(a, Node)}

    def width(n):
        if not n.per_example or n.op in ("input", "transpose"):
            return 0  # inputs belong to the caller; views cost nothing
        return math.prod(d for d in n.shape if d is not M) * (1 if n.dtype == "bool" else itemsize)

    by_id = {n.id: n for n in nodes}
    users = Counter(r for n in nodes if n.op != "transpose" for r in roots(n))
    kept = {root[o.id] for o in outputs if o is not None}

    def gain(n):
        if n.op in ("input", "transpose"):
            return math.inf, -position[n.id]
        freed = sum(width(by_id[r]) for r in roots(n) if users[r] == 1 and r not in kept)
        return freed - width(n), -position[n.id]

    order, done, waiting = [], set(), list(nodes)
    while waiting:
        ready = [n for n in waiting if all(a.id in done for a in n.args if isinstance(a, Node))]
        best = max(ready, key=gain)
        order.append(best)
        done.add(best.id)
        waiting.remove(best)
        if best.op != "transpose":
            users.subtract(roots(best))
    return order


class _Program:
    """What a graph lowers to, shared by every copy: slots, steps, buffer layout.

    Every node has a slot in a list of values.  Slots hold: the inputs, constants,
    views of buffers of per-example nodes (fixed for a chunk size c) and the small
    results computed per call.  Buffers are described by (shape with ``columns``
    last, dtype); a node's view puts the examples axis where its shape has M.
    """

    # What a node is, deciding how it runs.  PYTHON: a scalar of m and constants, computed
    # in Python on each call.  VALUE: a NumPy call returning its result on each call (results
    # without an examples axis, views of the inputs).  BUFFERED: written into a buffer.
    # BUFFER_VIEW: a transpose of a buffered node, a view fixed per chunk size.
    INPUT, CONSTANT, PYTHON, VALUE, BUFFERED, BUFFER_VIEW = range(6)

    def __init__(self, graph: tracing.Graph, dtype: np.dtype):
        self.dtype = dtype
        nodes = _schedule(graph.nodes, graph.outputs, dtype.itemsize)
        self.slot = {n.id: i for i, n in enumerate(nodes)}
        for n in graph.inputs.values():  # an input no output needs still takes its argument
            self.slot.setdefault(n.id, len(self.slot))
        self.size = len(self.slot)  # slots, with one more for each Python constant argument
        self.constants = []   # (slot, value), in the template of every chunk size
        self.steps = []       # run in order on each call
        self.described = []   # one line per step, for people
        self.views = []       # (slot, ("buffer", index, axis) or ("transpose", slot)), in node order
        self.buffers = []     # (shape without the examples axis, "float" or "bool")
        kinds = {}
        for node in nodes:
            kinds[node.id] = self._classify(node, kinds)
        self.kinds = kinds
        self._allocate(nodes, graph.outputs)
        for node in nodes:
            self._lower(node)
        # Inputs in the graph's order: (name, slot, node).  Scalars are stored as Python floats.
        self.inputs = [(name, self.slot[n.id], n) for name, n in graph.inputs.items()]
        # Where a call's number of examples c is read: the first per-example input's M axis.
        self.examples_at = next(((i, n.shape.index(M)) for i, (_, _, n) in enumerate(self.inputs)
                                 if n.per_example), None)
        self.outputs = [None if o is None else (self.slot[o.id], self._finish(o)) for o in graph.outputs]

    def examples_in(self, values):
        """The number of examples in a call's inputs (None if they are not arrays)."""
        if self.examples_at is None:
            return 0
        i, axis = self.examples_at
        try:
            return values[i].shape[axis]
        except (AttributeError, IndexError, TypeError):
            return None

    def _arg_slots(self, node):
        slots = []
        for a in node.args:
            if isinstance(a, Node):
                slots.append(self.slot[a.id])
                continue
            # A Python constant gets a slot of its own.  Beside an array of the dtype it is
            # cast to that dtype anyway; as a 0-d array it costs NumPy half as much per call.
            slots.append(self.size)
            typed = self.kinds[node.id] == self.BUFFERED
            self.constants.append((self.size, np.asarray(a, self.dtype) if typed else a))
            self.size += 1
        return tuple(slots)

    def _classify(self, node: Node, kinds) -> int:
        if node.op not in tracing.OPS or (node.op not in ("input", "const") and _numpy_call(node, self.dtype) is None):
            raise InvalidInputError(
                f"no NumPy lowering for op {node.op!r} (node #{node.id}, shape {node.shape}); "
                "add a rule to backprop_core.lowering.numpy_buffers")
        if node.per_example and sum(d is M for d in node.shape) != 1:
            raise InvalidInputError(f"node #{node.id} ({node.op}) has shape {node.shape}: one examples axis expected")
        arg_kinds = {kinds[a.id] for a in node.args if isinstance(a, Node)}
        if node.op == "input":
            return self.INPUT
        if node.op == "const":
            if node.per_example:
                raise InvalidInputError(f"constant node #{node.id} has per-example shape {node.shape}")
            return self.CONSTANT
        if node.op == "transpose" and node.per_example:
            return self.BUFFER_VIEW if arg_kinds <= {self.BUFFERED, self.BUFFER_VIEW} else self.VALUE
        if node.per_example:
            return self.BUFFERED
        if arg_kinds <= {self.CONSTANT}:
            return self.CONSTANT  # folded below, once
        scalar_args = all(a.shape == () for a in node.args if isinstance(a, Node))
        if node.shape == () and scalar_args and arg_kinds <= {self.INPUT, self.CONSTANT, self.PYTHON} \
                and python_call(node) is not None:
            return self.PYTHON
        return self.VALUE

    def _allocate(self, nodes, outputs):
        """Give each per-example node a buffer, reusing the buffers of dead nodes (:mod:`.liveness`)."""
        owner = {}  # a transpose is a view of its argument's buffer, which lives until its last view dies
        for node in nodes:
            kind = self.kinds[node.id]
            if kind == self.BUFFERED:
                owner[node.id] = node.id
            elif kind == self.BUFFER_VIEW:
                owner[node.id] = owner[node.args[0].id]
        steps = []
        for node in nodes:
            reads = tuple(Read(owner[a.id], pos in _may_reuse(node)) for pos, a in enumerate(node.args)
                          if isinstance(a, Node) and a.id in owner)
            buffered = self.kinds[node.id] == self.BUFFERED
            writes = (Write(node.id, (tuple(d for d in node.shape if d is not M), node.dtype)),) if buffered else ()
            steps.append(Step(reads, writes, frees=buffered))
        plan = plan_buffers(steps, kept={owner[o.id] for o in outputs if o is not None and o.id in owner})
        self.buffer_of, self.buffers = plan.index, plan.buffers

    def _lower(self, node: Node):
        kind, slot = self.kinds[node.id], self.slot[node.id]
        if kind == self.INPUT:
            return
        if kind == self.CONSTANT:
            self.constants.append((slot, self._fold(node)))
            return
        args = self._arg_slots(node)
        if kind == self.BUFFER_VIEW:
            self.views.append((slot, ("transpose", args[0])))
            return
        into = kind == self.BUFFERED
        if kind == self.PYTHON:
            f = python_call(node)
        elif not into:
            f = _numpy_call(node, self.dtype)
        else:
            self.views.append((slot, ("buffer", self.buffer_of[node.id], node.shape.index(M))))
            f = _numpy_call(node, self.dtype)
            if node.op == "astype":
                f = _cast_into
            elif node.op == "where":
                f = _where_into(self.dtype if node.dtype == "float" else np.dtype(np.bool_))
        self.steps.append(_into(f, args, slot) if into else _assign(f, args, slot))
        self.described.append(self._describe(node, f, into))

    def _describe(self, node: Node, f, into: bool) -> str:
        args = ", ".join(f"#{a.id}" if isinstance(a, Node) else repr(a) for a in node.args)
        name = getattr(getattr(f, "func", f), "__name__", repr(f))
        where = f"buffer {self.buffer_of[node.id]}" if into else "a view" if f is _transpose else "a new value"
        return f"#{node.id} = {node.op}({args}) {node.shape}: {name} -> {where}"

    def _fold(self, node: Node):
        """The value of a node that depends on constants only."""
        if node.op == "const":
            value = node.attrs["value"]
        else:
            values = dict(self.constants)
            args = [values[self.slot[a.id]] if isinstance(a, Node) else a for a in node.args]
            call = python_call(node) if node.shape == () else _numpy_call(node, self.dtype)
            value = call(*args)
        if node.shape == ():
            return float(value) if node.dtype == "float" else bool(value)
        return np.asarray(value, dtype=self.dtype if node.dtype == "float" else np.bool_)

    def _finish(self, node: Node):
        """How an output's value becomes a fresh array the caller may keep."""
        dtype = self.dtype if node.dtype == "float" else np.bool_
        kind = self.kinds[node.id]
        if kind == self.VALUE and node.op != "transpose":
            # A fresh array already, or a NumPy scalar from a reduction to 0-d.
            return lambda value: value if type(value) is np.ndarray else np.asarray(value)
        return lambda value: np.array(value, dtype=dtype)  # a copy: buffers and inputs live on


class BufferedGradients:
    """``equations.gradients`` for one network shape, activation and dtype, on chunks of
    at most ``columns`` examples, run as NumPy calls into buffers made once.

    Built from the graph of :func:`tracing.trace_gradients`; called with the
    graph's inputs in order (or by name): ``X`` (n0, c), ``Y`` (n2, c), ``W1``
    (n1, n0), ``b1`` (n1, 1), ``W2`` (n2, n1), ``b2`` (n2, 1), NumPy arrays of
    ``dtype``, and ``m``, the whole batch's size.  X and Y may be strided views
    (``X[:, a:b]``) of larger arrays, with c <= ``columns``.  Returns the
    graph's outputs: ``(dW1, db1, dW2, db2, J)``, fresh arrays of ``dtype``
    scaled by 1/m, so the results of a batch's chunks add up (J is None when
    the graph was traced without the cost).

    Not thread-safe: one instance runs one chunk at a time.  :meth:`copy` gives
    another thread its own buffers without analysing the graph again.
    """

    #: How many chunk sizes keep their prepared views (a batch has two: the chunk and the rest).
    KEPT_SIZES = 8

    def __init__(self, graph: tracing.Graph, dtype, columns: int):
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise InvalidTypeError(f"dtype {dtype!r} is not a NumPy dtype") from None
        if dtype.kind != "f":
            raise InvalidTypeError(f"dtype must be a real floating dtype (float32, float64), got {dtype}")
        if isinstance(columns, bool) or not isinstance(columns, numbers.Integral) or columns <= 0:
            raise InvalidInputError(f"columns must be a positive integer, got {columns!r}")
        self._program = _Program(graph, dtype)
        self.dtype, self.columns = dtype, int(columns)
        self._make_buffers()

    def _make_buffers(self):
        self._buffers = [np.empty((*shape, self.columns), dtype=self.dtype if kind == "float" else np.bool_)
                         for shape, kind in self._program.buffers]
        self._prepared = {}

    def copy(self) -> "BufferedGradients":
        """The same program with buffers of its own (for another thread)."""
        twin = object.__new__(BufferedGradients)
        twin._program, twin.dtype, twin.columns = self._program, self.dtype, self.columns
        twin._make_buffers()
        return twin

    def __repr__(self):
        program = self._program
        head = (f"BufferedGradients({len(program.steps)} NumPy calls, {len(self._buffers)} buffers of "
                f"{self.columns} columns, {self.dtype}, {self.buffer_bytes / 2**20:.2f} MiB)")
        return "\n  ".join([head, *program.described])

    @property
    def buffer_bytes(self) -> int:
        """Memory held in buffers (what a chunk of ``columns`` examples needs beyond X and Y)."""
        return sum(b.nbytes for b in self._buffers)

    def __call__(self, *args, **kwargs):
        program = self._program
        values = args if not kwargs and len(args) == len(program.inputs) else self._bind(args, kwargs)
        prepared = self._prepared.get(program.examples_in(values))
        if prepared is None or not _fits(values, prepared[1], self.dtype):
            prepared = self._prepare(self._check(values))
        v = prepared[0][:]
        for (_, slot, node), value in zip(program.inputs, values):
            # A NumPy scalar m would be a "strong" float64 and turn float32 gradients float64.
            v[slot] = float(value) if node.shape == () else value
        for step in program.steps:
            step(v)
        return tuple(None if out is None else out[1](v[out[0]]) for out in program.outputs)

    def _bind(self, args, kwargs):
        names = [name for name, _, _ in self._program.inputs]
        if len(args) > len(names):
            raise InvalidTypeError(f"expected {len(names)} inputs {names}, got {len(args)}")
        given = dict(zip(names, args))
        for name, value in kwargs.items():
            if name not in names:
                raise InvalidTypeError(f"unexpected input {name!r}; the inputs are {names}")
            if name in given:
                raise InvalidTypeError(f"input {name!r} given twice")
            given[name] = value
        missing = [n for n in names if n not in given]
        if missing:
            raise InvalidTypeError(f"missing input(s) {missing}; the inputs are {names}")
        return tuple(given[n] for n in names)

    def _check(self, values) -> int:
        """Validate the inputs, naming what is wrong; returns the chunk's number of examples c."""
        c = None
        for (name, _, node), value in zip(self._program.inputs, values):
            if node.shape == ():
                if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                    raise InvalidTypeError(f"{name} must be a finite real number, got {value!r}")
                continue
            if not isinstance(value, np.ndarray):
                raise InvalidTypeError(f"{name} must be a NumPy array, got {type(value).__name__}")
            if value.dtype != self.dtype:
                raise InvalidTypeError(f"{name} has dtype {value.dtype}, but this step was built for {self.dtype}")
            if node.per_example and c is None and value.ndim == len(node.shape):
                c = value.shape[node.shape.index(M)]
                if c > self.columns:
                    raise InvalidInputError(
                        f"{name} has {c} examples, more than the {self.columns} columns of the buffers")
            expected = tuple(c if d is M else d for d in node.shape)
            if value.shape != expected:
                shape = tuple("c" if d is M else d for d in node.shape)
                raise InvalidInputError(f"{name} has shape {value.shape}, expected {shape}"
                                        + (f" with c = {c}" if node.per_example and c is not None else ""))
        return 0 if c is None else c

    def _prepare(self, c: int) -> tuple:
        """What is fixed for chunks of c examples: the slots' constants and buffer views, and
        the inputs' shapes (None for a scalar)."""
        prepared = self._prepared.get(c)
        if prepared is None:
            program = self._program
            template = [None] * program.size
            for slot, value in program.constants:
                template[slot] = value
            for slot, view in program.views:
                if view[0] == "transpose":
                    template[slot] = template[view[1]].T
                else:
                    _, index, axis = view
                    template[slot] = np.moveaxis(self._buffers[index][..., :c], -1, axis)
            shapes = tuple(None if node.shape == () else tuple(c if d is M else d for d in node.shape)
                           for _, _, node in program.inputs)
            if len(self._prepared) >= self.KEPT_SIZES:
                self._prepared.clear()
            prepared = self._prepared[c] = (template, shapes)
        return prepared


def _fits(values, shapes, dtype) -> bool:
    """The quick check of every call: exact types, dtypes and shapes (else :meth:`_check` explains)."""
    for value, shape in zip(values, shapes):
        if shape is None:
            if not (type(value) is int or type(value) is float and math.isfinite(value)):
                return False
        elif type(value) is not np.ndarray or value.dtype != dtype or value.shape != shape:
            return False
    return True


def buffered_gradients(n0: int, n1: int, n2: int, g, dtype, columns: int,
                       with_cost: bool = True) -> BufferedGradients:
    """:class:`BufferedGradients` of the n0-n1-n2 network with activation ``g`` (a name or an Activation)."""
    for name, n in (("n0", n0), ("n1", n1), ("n2", n2)):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
            raise InvalidInputError(f"{name} must be a positive integer, got {n!r}")
    try:
        g = get_activation(g)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    return BufferedGradients(tracing.trace_gradients(int(n0), int(n1), int(n2), g, with_cost), dtype, columns)


# -- the target ----------------------------------------------------------------------------
def applies(fit) -> tuple[bool, str]:
    """The buffered step runs any traced graph (softmax, weights, every rule) on NumPy arrays on the host."""
    if not fit.host_numpy:
        return False, "the buffered NumPy step runs on NumPy arrays on the host"
    if str(fit.dtype) not in ("float32", "float64"):
        return False, f"the buffered NumPy step computes in float32 or float64, not {fit.dtype}"
    return True, "NumPy calls into buffers made once"


def make_gradients(backend, g, shape, dtype: str, columns: int, output=SIGMOID, weighted: bool = False):
    """``make(with_cost)`` for :class:`~backprop_core.chunked.ChunkedGradients`: a chunk's
    ``(dW1, db1, dW2, db2, J)`` by :class:`BufferedGradients`, one set of buffers per worker.

    ``shape`` is (n0, n1, n2); chunks hold at most ``columns`` examples.  Like every
    executor's function, it passes through the adapter's ``compile`` hook (NumPy's
    runs it as it is).
    """
    n0, n1, n2 = shape
    programs = {}

    def make(with_cost):
        if with_cost not in programs:  # traced and analysed once; each worker copies the buffers
            graph = tracing.trace_gradients(n0, n1, n2, g, with_cost, weighted, output=output)
            programs[with_cost] = BufferedGradients(graph, dtype, columns)
            compute = programs[with_cost]
        else:
            compute = programs[with_cost].copy()

        def gradients(params, Xc, Yc, m):
            Yc, weights = split_weights(Yc, weighted)
            if weighted:
                return compute(Xc, Yc, *unpack(params), m, weights)
            return compute(Xc, Yc, *unpack(params), m)

        return backend.compile(gradients)

    return make


def gradients(fit, columns: int):
    """The executor's question: ``make(with_cost)`` for chunks of at most ``columns`` examples."""
    return make_gradients(fit.backend, fit.activation, fit.shape, fit.dtype, columns, fit.output, fit.weighted)


class BufferedStep:
    """One whole-batch iteration: the buffered gradients of all m examples, then the lecture's update.

    ``step(params, X, Y, with_cost) -> (params, J)`` (the target's call shape): X (n0, m),
    Y (n2, m) (a weighted fit: (n2 + 1, m), the weights last); the buffers are made on the
    first call for its m (again if a larger batch comes).
    """

    def __init__(self, fit, learning_rate: float):
        self.fit, self.learning_rate = fit, learning_rate
        self._columns, self._gradients = 0, {}

    def prepare(self, a):
        return a

    def __call__(self, params, X, Y, with_cost: bool):
        m = X.shape[1]
        if m > self._columns:
            self._columns, self._gradients = m, {}
        if with_cost not in self._gradients:
            self._gradients[with_cost] = gradients(self.fit, self._columns)(with_cost)
        *grads, J = self._gradients[with_cost](params, X, Y, m)
        return updated(params, grads, self.learning_rate), J


def compile(fit, learning_rate: float, *, threads=None) -> BufferedStep:  # noqa: A001 - the targets' question
    """The whole-batch step (one thread: the chunk plans share chunks among threads through :func:`gradients`)."""
    return BufferedStep(fit, learning_rate)


TARGET = Target(NAME, EXECUTOR, applies, compile, gradients, blas=True)
