"""The traced step cut into launches: matrix products, sums over the examples, element-wise chains.

Every node of a :class:`tracing.Graph` gets a role:

``gemm``
    a matrix product for cuBLAS: one that sums over the examples (``dZ2 @ A1.T``),
    or one whose weights are too many to unroll per example (``W1 @ X`` for 784
    inputs), or one of two parameter-shaped arrays;
``sum``
    a sum over the examples (``sum(dZ1, axis=1)``, the cost's total), run by
    cuBLAS as a product with a vector of ones;
``example``
    computed for each example on its own: element-wise ops, sums and maxima
    over one example's rows (softmax), outer products (``W2.T @ dZ2`` with one
    output), and matrix products with a per-example operand and few enough
    weights to unroll (``W2 @ A1`` with n1 = 4);
``uniform``
    element-wise ops on arrays without an examples axis (the scaling by 1/m,
    the update ``W - alpha dW``);
``host``
    a number made of the scalar inputs (m, the learning rate) and constants
    only, such as ``1.0 / m``: computed in Python once per call and passed to
    the kernels as an argument, as the equations compute it;
``view``
    a transpose: nothing is computed, the consumer reads with swapped strides;
``input``
    the graph's inputs.

Nodes of the ``example`` role are then grouped into *chains*, each ONE kernel,
and ``uniform`` nodes into chains of one shape.  Grouping merges a node with its neighbour's chain
unless that would put a matrix product or a sum both before and after the
chain (a cycle); merging runs from the last node back, so a value such as
``1 - A1**2`` joins the chain that consumes it late rather than being
written out early.  The result is maximal: two adjacent chains are left
apart only where merging them would make such a cycle.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

from ... import tracing
from ...errors import InvalidInputError
from ...tracing import Node

INPUT, HOST, VIEW, GEMM, SUM, EXAMPLE, UNIFORM = "input", "host", "view", "gemm", "sum", "example", "uniform"
#: Roles whose nodes are grouped into element-wise chains.
FUSIBLE = (EXAMPLE, UNIFORM)
#: Step kinds: each launches one kernel or one cuBLAS call per step.
EXAMPLE_CHAIN, UNIFORM_CHAIN = "example chain", "uniform chain"
CHAIN_OF = {EXAMPLE: EXAMPLE_CHAIN, UNIFORM: UNIFORM_CHAIN}

#: A matrix product with a per-example operand is unrolled inside a chain when
#: its other operand has at most this many elements (each becomes a multiply-add
#: per example in the printed kernel; beyond it cuBLAS computes the product).
#: It also bounds how many rows such a chain unrolls: with 512 (784-512-1's W2),
#: nvcc takes 37 s over the chain; with 64 (64-64-1), 1.5 s.  Provisional, like
#: fused.MAX_ACCUMULATORS: the GPU run decides it.
INLINE_TERMS = 256

_ELEMENTWISE = (*tracing.ELEMENTWISE_UNARY, *tracing.ELEMENTWISE_BINARY, "where", "astype", "const")


@dataclass(eq=False)
class Step:
    """One launch: ``kind`` (a chain kind, "gemm" or "sum") and its ``nodes``, each after its arguments.

    ``inputs``: the nodes outside the step that it reads (inputs, host
    scalars, views, other steps' results), in first-use order.  ``outputs``:
    the step's nodes that something outside it reads, or that the graph returns.
    """

    kind: str
    nodes: list
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)

    @property
    def is_chain(self) -> bool:
        return self.kind in (EXAMPLE_CHAIN, UNIFORM_CHAIN)

    def __repr__(self):
        ops = ", ".join(f"#{n.id} {n.op}" for n in self.nodes)
        return f"Step({self.kind}: {ops})"


@dataclass
class Partition:
    """The graph's nodes by role and its launching steps in the order they run.

    ``host``: the host scalars, each after its arguments.  ``views``: the
    transposes.  ``role``: node id -> role.  Every node but the inputs lands in
    exactly one step, in ``host`` or in ``views``.
    """

    graph: tracing.Graph
    steps: list
    host: list
    views: list
    role: dict

    @property
    def launches(self) -> int:
        """Kernels and cuBLAS calls one run of the graph makes."""
        return len(self.steps)

    @property
    def chains(self) -> int:
        """Element-wise chains, each one kernel."""
        return sum(step.is_chain for step in self.steps)

    def counts(self) -> dict:
        """Launches by kind."""
        out = {}
        for step in self.steps:
            out[step.kind] = out.get(step.kind, 0) + 1
        return out

    def __repr__(self):
        return "\n  ".join([f"Partition({self.launches} launches: {self.counts()})", *map(repr, self.steps)])


# -- roles --------------------------------------------------------------------------------------
def _uniform_operand_size(node: Node) -> int | None:
    """Elements of the operand without an examples axis, for a product with one per-example operand."""
    a, b = node.args
    if a.per_example == b.per_example:
        return None
    weights = b if a.per_example else a
    return math.prod(weights.shape)


def role_of(node: Node, roles: dict, inline_terms: int = INLINE_TERMS) -> str:
    """The role of ``node`` (see the module docstring), given its arguments' roles."""
    op = node.op
    if op == "input":
        return INPUT
    if op == "transpose":
        return VIEW
    arg_roles = {roles[a.id] for a in node.args if isinstance(a, Node)}
    scalar_inputs = all(a.shape == () for a in node.args if isinstance(a, Node))
    if node.shape == () and op in _ELEMENTWISE and scalar_inputs and arg_roles <= {INPUT, HOST}:
        return HOST  # m, the learning rate and constants only
    if op == "matmul":
        if node.reduces_examples:
            return GEMM
        if node.per_example and node.args[0].shape[1] == 1:
            return EXAMPLE  # an outer product (W2.T @ dZ2 with one output) is a broadcast multiply
        size = _uniform_operand_size(node)
        if size is None:
            if node.per_example:
                raise InvalidInputError(f"node #{node.id}: a product of two per-example arrays that does not "
                                        "sum over the examples has no GPU lowering")
            return GEMM  # two parameter-shaped operands
        return EXAMPLE if size <= inline_terms else GEMM
    if op in ("sum", "max"):
        if node.reduces_examples:
            if op != "sum":
                raise InvalidInputError(f"node #{node.id}: a {op} over the examples has no GPU lowering; only sums do")
            return SUM
        if node.per_example:
            return EXAMPLE  # over one example's rows (softmax)
        raise InvalidInputError(f"node #{node.id}: a {op} of an array without an examples axis has no GPU lowering")
    if op in _ELEMENTWISE:
        if op == "const" and node.shape != ():
            raise InvalidInputError(f"node #{node.id}: a constant array of shape {node.shape} has no GPU lowering")
        return EXAMPLE if node.per_example else UNIFORM
    raise InvalidInputError(f"no GPU lowering for op {op!r} (node #{node.id}); add a rule to {__name__}")


# -- grouping -------------------------------------------------------------------------------
class _Units:
    """Groups of nodes (one per future launch) and the dependencies between them."""

    def __init__(self, nodes, roles):
        self.roles = roles
        self.of = {n.id: n.id for n in nodes if roles[n.id] not in (INPUT, HOST, VIEW)}
        self.members = {u: [u] for u in self.of}
        self.base = {}  # a view's id -> the id of the node whose array it shows
        for n in nodes:
            if roles[n.id] == VIEW:
                a = n.args[0]
                self.base[n.id] = self.base.get(a.id, a.id)
        self.sources = {}  # node id -> ids of the launching nodes it reads (through views)
        self.viewed = {}   # node id -> ids of the nodes whose arrays it reads through a view
        for n in nodes:
            if n.id in self.of:
                self.sources[n.id] = {self.base.get(a.id, a.id) for a in n.args if isinstance(a, Node)} & set(self.of)
                self.viewed[n.id] = {self.base[a.id] for a in n.args if isinstance(a, Node) and a.id in self.base}

    def successors(self, unit) -> set:
        out = set()
        for other, members in self.members.items():
            if other != unit and any(self.of[s] == unit for m in members for s in self.sources[m]):
                out.add(other)
        return out

    def would_cycle(self, u, v) -> bool:
        """Would merging u and v close a cycle: a path from one to the other through a third unit,
        or a view read in one of an array the other computes (a view reads memory, written after)?"""
        for a, b in ((u, v), (v, u)):
            if any(self.of.get(x) == b for m in self.members[a] for x in self.viewed[m]):
                return True
        for start, goal in ((u, v), (v, u)):
            stack, seen = [w for w in self.successors(start) if w != goal], set()
            while stack:
                w = stack.pop()
                if w == goal:
                    return True
                if w not in seen:
                    seen.add(w)
                    stack.extend(self.successors(w))
        return False

    def merge(self, u, v):
        for member in self.members.pop(v):
            self.of[member] = u
            self.members[u].append(member)


def crosses_rows(node: Node) -> bool:
    """Does an ``example`` node combine several rows of one example (an unrolled product, a
    sum or max over the rows)?  A chain without such nodes runs one thread per element."""
    if node.op == "matmul":
        return node.args[0].shape[1] != 1
    return node.op in ("sum", "max")


def _compatible(a: Node, b: Node, roles) -> bool:
    ra, rb = roles[a.id], roles[b.id]
    if ra != rb or ra not in FUSIBLE:
        return False
    return ra == EXAMPLE or a.shape == b.shape  # one thread per element needs one shape


def partition(graph: tracing.Graph, inline_terms: int = INLINE_TERMS) -> Partition:
    """Cut ``graph`` into launches (see the module docstring)."""
    roles = {}
    for node in graph.nodes:
        roles[node.id] = role_of(node, roles, inline_terms)
    units = _Units(graph.nodes, roles)
    edges = [(a, n) for n in reversed(graph.nodes) for a in n.args
             if isinstance(a, Node) and _compatible(a, n, roles)]
    merged = True
    while merged:  # until no neighbouring chains can merge: the chains are maximal
        merged = False
        for a, n in edges:
            u, v = units.of[a.id], units.of[n.id]
            if u != v and not units.would_cycle(u, v):
                units.merge(u, v)
                merged = True
    return _steps(graph, roles, units)


def _steps(graph, roles, units) -> Partition:
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    by_id = {n.id: n for n in graph.nodes}
    order = _toposort(units, position)
    steps, step_of = [], {}
    for u in order:
        nodes = sorted((by_id[i] for i in units.members[u]), key=lambda n: position[n.id])
        role = roles[nodes[0].id]
        step = Step(CHAIN_OF.get(role, role), nodes)
        steps.append(step)
        for n in nodes:
            step_of[n.id] = step
    readers = {}  # node id -> steps reading it
    for step in steps:
        inside = {n.id for n in step.nodes}
        for n in step.nodes:
            for a in n.args:
                if isinstance(a, Node):
                    readers.setdefault(a.id, set()).add(id(step))
                    if a.id not in inside and a not in step.inputs:
                        step.inputs.append(a)
    # What the graph returns, and whatever a view shows, must be in memory.
    kept = {o.id for o in graph.outputs if o is not None} | set(units.base.values())
    for step in steps:
        step.outputs = [n for n in step.nodes if n.id in kept or readers.get(n.id, set()) - {id(step)}]
    host = [n for n in graph.nodes if roles[n.id] == HOST]
    views = [n for n in graph.nodes if roles[n.id] == VIEW]
    return Partition(graph, steps, host, views, roles)


def _toposort(units, position) -> list:
    """The units in dependency order, ties in the order of their first node in the trace."""
    succ = {u: units.successors(u) for u in units.members}
    indegree = {u: 0 for u in units.members}
    for u, vs in succ.items():
        for v in vs:
            indegree[v] += 1
    first = {u: min(position[m] for m in members) for u, members in units.members.items()}
    ready = [(first[u], u) for u, d in indegree.items() if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, u = heapq.heappop(ready)
        order.append(u)
        for v in succ[u]:
            indegree[v] -= 1
            if indegree[v] == 0:
                heapq.heappush(ready, (first[v], v))
    return order
