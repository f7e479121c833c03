"""Each element-wise chain printed as one kernel, from the fused kernel's scalar lowering.

A chain runs in one of two layouts:

``column``
    one thread per example, for a chain that combines rows of an example (an
    unrolled ``W2 @ A1``, softmax's sum over the outputs): its nodes are
    lowered by :func:`backprop_core.lowering.cuda_fused.scalar.lower` with the examples axis
    standing for one example, exactly as the fused kernel lowers them, so
    ``W2 @ A1`` with four hidden units becomes four multiply-adds;
``element``
    one thread per element of the chain's shape (the broadcast of its nodes'
    shapes, examples axis included), for every other chain: the nodes are
    lowered with each array standing for one element, so a 512-row ``tanh``
    is one line, not 512.  An input of fewer rows is read at stride 0; an
    output of fewer rows is stored by the threads of row 0.

The expressions are printed by the fused kernel's C printer
(:class:`backprop_core.lowering.cuda_fused.cuda.Printer`: ``tanhf``, ``1.0f``, ternaries for
``where``); this module only frames them: loads of a chain's inputs through
their strides, the loop, stores of the values something outside the chain
reads.  Every load comes before every store, and a thread reads only the
examples it writes, so an output may be written over a per-example input that
dies in the chain.

The text compiles both ways, as the fused source does: with NVRTC or nvcc
(``bc_chain<k>``: a grid-stride loop) and as host C++ (``bc_host_chain<k>``: a
plain loop), which is how it is tested without a GPU.  Every kernel takes
``(count, inner, ...)``: the threads, and the extent of the last axis of the
chain's shape (with the chunk's examples for the examples axis).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ... import tracing
from ..cuda_fused.cuda import PREAMBLE, SPECIALS, BLOCK, DTYPES, Printer
from ..cuda_fused.scalar import EXAMPLE, UNIFORM, Program as ScalarProgram, Builder, lower
from ...tracing import M, Node, broadcast
from .partition import EXAMPLE_CHAIN, HOST, INPUT, Partition, Step, crosses_rows

SCALAR, ARRAY, OUT = "scalar", "array", "out"
COLUMN, ELEMENT = "column", "element"


@dataclass(frozen=True)
class Param:
    """One argument of a chain kernel after ``(count, inner)``: a ``scalar`` (a C real or bool),
    an input ``array`` or an ``out`` array (each array followed by one stride per axis, in elements)."""

    kind: str
    node: Node
    name: str

    @property
    def ndim(self) -> int:
        return len(self.node.shape)


@dataclass(frozen=True)
class ChainKernel:
    """A chain's kernel: its names on the device and on the host, its layout and arguments.

    ``layout``: "column" (one thread per example) or "element" (one per
    element of ``shape``, which may hold the examples axis M).
    """

    name: str
    host_name: str
    step: Step
    params: tuple
    layout: str
    shape: tuple

    def threads(self, columns: int) -> tuple:
        """``(count, inner)`` for a chunk of ``columns`` examples."""
        if self.layout == COLUMN:
            return columns, columns
        shape = tuple(columns if d is M else d for d in self.shape)
        return math.prod(shape), shape[-1] if shape else 1


@dataclass(frozen=True)
class ChainSource:
    """Every chain kernel of one partition, in one text (``kernels`` in step order)."""

    text: str
    dtype: str
    kernels: tuple


def param_name(node: Node) -> str:
    """A C name for a node's array or scalar: the input's own name, else ``v<id>``."""
    return node.attrs["name"] if node.op == "input" else f"v{node.id}"


def _is_scalar(node: Node, roles) -> bool:
    return roles[node.id] == HOST or (roles[node.id] == INPUT and node.shape == ())


def _ctype(dtype: str) -> str:
    return "bool" if dtype == "bool" else "real"


def _params(step: Step, roles) -> tuple:
    ins = [Param(SCALAR if _is_scalar(a, roles) else ARRAY, a, param_name(a)) for a in step.inputs]
    return tuple(ins + [Param(OUT, n, param_name(n)) for n in step.outputs])


def layout_of(step: Step) -> tuple:
    """``(layout, shape)`` of a chain: "element" over the broadcast of its shapes where it
    can, "column" where it combines rows or its shapes do not broadcast together."""
    if step.kind == EXAMPLE_CHAIN and any(crosses_rows(n) for n in step.nodes):
        return COLUMN, ()
    try:
        return ELEMENT, broadcast(*(n.shape for n in step.nodes))
    except tracing.TraceError:
        return COLUMN, ()


def _signature(params) -> str:
    parts = ["const long long count", "const long long inner"]
    for p in params:
        ctype = _ctype(p.node.dtype)
        if p.kind == SCALAR:
            parts.append(f"const {ctype} {p.name}")
            continue
        if p.kind == OUT:
            parts.append(f"{ctype}* {p.name}")
        elif p.node.per_example:
            parts.append(f"const {ctype}* {p.name}")  # may be written over by an output: no __restrict__
        else:
            parts.append(f"const {ctype}* __restrict__ {p.name}")
        parts += [f"const long long {p.name}_s{d}" for d in range(p.ndim)]
    return ", ".join(parts)


def _offset(name: str, terms) -> str:
    """``terms``: (index expression, axis) pairs; zero indices are left out."""
    text = " + ".join(f"{i} * {name}_s{d}" if i != "1" else f"{name}_s{d}" for i, d in terms if i != "0")
    return text or "0"


def _shadow_op(node: Node, layout: str) -> str:
    if layout == ELEMENT and node.op == "matmul":
        return "multiply"  # an outer product, element by element
    return node.op


class _ChainPrinter:
    """Lowers one chain with the fused kernel's scalar lowering and prints its loop body."""

    def __init__(self, step: Step, params, dtype: str):
        self.step, self.params = step, params
        self.layout, self.shape = layout_of(step)
        by_column = self.layout == COLUMN
        b = Builder()
        shadow, bindings, nodes = {}, {}, []
        for p in params:
            if p.kind == OUT:
                continue
            shape = p.node.shape if by_column else ()
            shadow[p.node.id] = Node("input", (), shape, p.node.dtype, {"name": p.name})
            nodes.append(shadow[p.node.id])
            bindings[p.name] = self._leaves(b, p, shape, EXAMPLE if p.node.per_example else UNIFORM)
        for n in step.nodes:
            args = tuple(shadow[a.id] if isinstance(a, Node) else a for a in n.args)
            shadow[n.id] = Node(_shadow_op(n, self.layout), args, n.shape if by_column else (), n.dtype,
                                dict(n.attrs))
            nodes.append(shadow[n.id])
        outputs = tuple(shadow[n.id] for n in step.outputs)
        values = lower(b, tracing.Graph({}, outputs, nodes), bindings)
        self.stored = list(zip((p for p in params if p.kind == OUT), values))
        roots = [s for _, value in self.stored for s in value.flat]
        self.scalars = ScalarProgram({}, {}, (), [], {}, b.scalars).needed(roots)
        self.names = {}
        for position, s in enumerate(self.scalars):
            if s.op == "const":
                continue
            if s.op != "input":
                self.names[id(s)] = f"t{position}"
            elif s.index is None:  # a scalar argument
                self.names[id(s)] = s.name
            else:  # an element loaded from an array
                self.names[id(s)] = "_".join([s.name, *map(str, s.index)]) if s.index else f"{s.name}_value"
        self.printer = Printer(dtype, self.names)
        self.by_name = {p.name: p for p in params}

    @staticmethod
    def _leaves(b, p: Param, shape, phase) -> np.ndarray:
        """The input's elements for one example (or one element) as Scalars of its dtype."""
        if p.kind == SCALAR:
            return np.asarray(b.make("input", dtype=p.node.dtype, phase=UNIFORM, name=p.name, index=None),
                              dtype=object)
        local = tuple(1 if d is M else d for d in shape)
        out = np.empty(local, dtype=object)
        for idx in np.ndindex(local):
            out[idx] = b.make("input", dtype=p.node.dtype, phase=phase, name=p.name,
                              index=tuple(i for i, d in zip(idx, shape) if d is not M))
        return out

    def _aligned(self, p: Param):
        """(axis of p, axis of the chain's shape) pairs, right-aligned as broadcasting aligns them."""
        shift = len(self.shape) - len(p.node.shape)
        return [(a, a + shift) for a in range(len(p.node.shape))]

    def _address(self, p: Param, index) -> str:
        """Where element ``index`` (rows only, without the examples axis) of ``p`` is, for this thread."""
        shape = p.node.shape
        if self.layout == ELEMENT:
            return _offset(p.name, [(f"i{c}", a) for a, c in self._aligned(p) if shape[a] != 1])
        rows = iter(index)
        return _offset(p.name, [("e", d) if size is M else (str(next(rows)), d) for d, size in enumerate(shape)])

    def _guard(self, p: Param) -> str:
        """For an output of fewer rows than the chain: only the threads of row 0 store it."""
        if self.layout != ELEMENT:
            return ""
        zeros = [f"i{c} == 0" for a, c in self._aligned(p) if p.node.shape[a] == 1 and self.shape[c] != 1]
        zeros += [f"i{c} == 0" for c in range(len(self.shape) - len(p.node.shape))]
        return f"if ({' && '.join(zeros)}) " if zeros else ""

    def body(self) -> list:
        lines = self._body()
        if self.layout != ELEMENT or not self.shape:
            return lines
        index = ["e"] if len(self.shape) == 1 else ["e / inner", "e % inner"]
        used = " ".join(lines)
        return [f"const long long i{d} = {expr};" for d, expr in enumerate(index)
                if re.search(rf"\bi{d}\b", used)] + lines

    def _body(self) -> list:
        lines, computed = [], []
        for s in self.scalars:
            if s.op == "const":
                continue
            name, ctype = self.names[id(s)], _ctype(s.dtype)
            if s.op != "input":
                computed.append(f"const {ctype} {name} = {self.printer.expr(s)};")
            elif self.by_name[s.name].kind != SCALAR:  # a scalar is the kernel's argument itself
                lines.append(f"const {ctype} {name} = {s.name}[{self._address(self.by_name[s.name], s.index)}];")
        lines += computed
        for p, value in self.stored:
            guard = self._guard(p)
            for idx in np.ndindex(value.shape):
                rows = tuple(i for i, d in zip(idx, p.node.shape) if d is not M)
                lines.append(f"{guard}{p.name}[{self._address(p, rows)}] = {self.printer.ref(value[idx])};")
        return lines


def indent(lines, depth) -> str:
    pad = "    " * depth
    return "\n".join(pad + line for line in lines)


def _kernel_text(k: int, kernel: ChainKernel, body: list) -> str:
    signature = _signature(kernel.params)
    what = "one thread per example" if kernel.layout == COLUMN else \
        f"one thread per element of {tuple('m' if d is M else d for d in kernel.shape)}"
    ops = ", ".join(n.op for n in kernel.step.nodes)
    return f"""
// ---- chain {k}: {len(kernel.step.nodes)} ops ({ops}), {what} ----
#ifdef BC_CUDA
extern "C" __global__ void __launch_bounds__(BC_BLOCK)
{kernel.name}({signature})
{{
    const long long stride = (long long)gridDim.x * BC_BLOCK;
    for (long long e = (long long)blockIdx.x * BC_BLOCK + threadIdx.x; e < count; e += stride) {{
{indent(body, 2)}
    }}
}}
#else
extern "C" void {kernel.host_name}({signature})
{{
    for (long long e = 0; e < count; ++e) {{
{indent(body, 2)}
    }}
}}
#endif
"""


def chain_source(part: Partition, dtype: str, shape: str = "traced", activation: str = "traced") -> ChainSource:
    """The kernels of every chain of ``part`` in ``dtype`` ("float32" or "float64").

    ``shape`` ("2-4-1") and ``activation`` only name the network in the text's header.
    """
    inf, nan = SPECIALS[dtype]
    text = PREAMBLE.format(shape=shape, activation=activation, dtype=dtype, cuda_inf=inf,
                            cuda_nan=nan, ctype=DTYPES[dtype], block=BLOCK)
    text = text.replace("by backprop_core.lowering.cuda_fused", "by backprop_core.lowering.cupy_kernels", 1)
    kernels = []
    for step in part.steps:
        if not step.is_chain:
            continue
        k = len(kernels)
        params = _params(step, part.role)
        printer = _ChainPrinter(step, params, dtype)
        kernel = ChainKernel(f"bc_chain{k}", f"bc_host_chain{k}", step, params, printer.layout, printer.shape)
        kernels.append(kernel)
        text += _kernel_text(k, kernel, printer.body())
    return ChainSource(text, dtype, tuple(kernels))
