"""The lowered step printed as CUDA C++: one kernel over the examples, one tiny kernel after.

``bc_partial_<variant>``: a grid-stride loop over the examples; each thread
keeps the parameters and one accumulator per sum in registers, computes the
per-example expressions of :mod:`.scalar` for each of its examples and adds
their contributions; each block then adds its threads' sums (a shuffle tree in
each warp, then one warp per accumulator) and writes them to ``block_sums``
(accumulator-major: ``block_sums[k * blocks + block]``).

``bc_finalize_<variant>``: one block; a warp per accumulator adds the block
sums, lane by lane in a fixed order, and thread 0 computes the after phase:
the gradients' scaling and the update.  No float atomics anywhere: for a
given grid the sums are added in the same order on every run, so the result
has the same bits.

Variants: ``cost`` also accumulates the cost J; ``step`` does not (the loop
asks for the cost only every few iterations).  ``out`` holds the updated
parameters at the offsets they had in ``p``, then J, then the gradients
(:attr:`KernelSource.offsets`).

The source also compiles as host C++ (``g++ -x c++``): ``bc_host_partial_*``
and ``bc_host_finalize_*`` run the very same per-example and after-phase
lines in a plain loop over the examples, which is how the printed arithmetic is
tested on a machine without a GPU (:mod:`.host`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ...activations import Activation
from ..ops import OPS
from .limits import check_activation, check_dtype, check_shape
from .scalar import AFTER, EXAMPLE, GRADIENTS, UNIFORM, Program, lower_step

#: Threads per block of the partial kernel (8 warps).
BLOCK = 256
WARP = 32
#: The variants and whether each accumulates the cost.
VARIANTS = {"cost": True, "step": False}
DTYPES = {"float32": "float", "float64": "double"}


@dataclass(frozen=True)
class KernelSource:
    """One network's CUDA source, and what its caller needs to launch it.

    ``offsets``: output name -> (offset, shape) in ``out``; the parameters sit
    at the same offsets in the input buffer ``p`` (size ``parameter_size``).
    ``accumulators``: variant -> number of sums over the examples (the rows
    of ``block_sums``).  ``example_inputs`` / ``scalar_inputs``: the kernel's
    arguments, in order (each example input comes with two strides, in elements).
    """

    text: str
    dtype: str
    shape: tuple
    activation: str
    parameter_size: int
    output_size: int
    offsets: dict
    accumulators: dict
    example_inputs: tuple
    scalar_inputs: tuple

    def kernel(self, stage: str, variant: str) -> str:
        """Name of the ``partial`` or ``finalize`` kernel of a variant."""
        return f"bc_{stage}_{variant}"

    def host_function(self, stage: str, variant: str) -> str:
        return f"bc_host_{stage}_{variant}"


#: The C form of each scalar op ({f}: "f" in single precision, as in tanhf); astype is by
#: target type, in Printer.
C_OPERATIONS = {**{name: op.c for name, op in OPS.items()}, "astype": None}


class Printer:
    """C expressions for Scalars, in single or double precision."""

    def __init__(self, dtype: str, names: dict):
        self.single = dtype == "float32"
        self.f = "f" if self.single else ""
        self.names = names

    def literal(self, value: float) -> str:
        if math.isnan(value):
            return "BC_NAN"
        if math.isinf(value):
            return "BC_INF" if value > 0 else "(-BC_INF)"
        # The shortest decimal that rounds back to the same float of the kernel's precision.
        text = str(np.float32(value)) + "f" if self.single else repr(float(value))
        return f"({text})" if text.startswith("-") else text

    def ref(self, s) -> str:
        return self.literal(s.value) if s.op == "const" else self.names[id(s)]

    def expr(self, s) -> str:
        args = [self.ref(a) for a in s.args]
        if s.op == "astype":
            one, zero = self.literal(1.0), self.literal(0.0)
            return f"({args[0]} ? {one} : {zero})" if s.dtype == "float" else f"({args[0]} != {zero})"
        return C_OPERATIONS[s.op].format(*args, f=self.f)


def _ctype(s) -> str:
    return "bool" if s.dtype == "bool" else "real"


#: How a per-example line reads row ``row`` of input ``name`` at example ``e``: any strides.
STRIDED_LOAD = "{name}[{row} * {name}_s0 + e * {name}_s1]"


class Emitter:
    """Names every scalar of one program and prints the lines of each phase."""

    def __init__(self, program: Program, dtype: str, layout: dict, load: str = STRIDED_LOAD):
        self.program, self.layout, self.load = program, layout, load
        self.names = {}
        for position, s in enumerate(program.scalars):
            if s.op == "input":
                self.names[id(s)] = s.name if s.index == () else "_".join([s.name, *map(str, _row(s))])
            elif s.op == "total":
                self.names[id(s)] = f"total{s.index}"
            else:
                self.names[id(s)] = f"t{position}"
        self.pr = Printer(dtype, self.names)

    def lines(self, scalars, phases) -> list:
        """Declarations of ``scalars`` of the given phases (inputs load, totals are bound elsewhere)."""
        out = []
        for s in scalars:
            if s.phase not in phases or s.op in ("const", "total"):
                continue
            name = self.names[id(s)]
            if s.op == "input":
                if s.phase == UNIFORM and s.index != ():  # a parameter element, from p
                    offset, shape = self.layout[s.name]
                    out.append(f"const real {name} = p[{offset + int(np.ravel_multi_index(s.index, shape))}];")
                elif s.phase == EXAMPLE:
                    out.append(f"const real {name} = {self.load.format(name=s.name, row=_row(s)[0])};")
                continue  # scalar inputs are kernel arguments
            out.append(f"const {_ctype(s)} {name} = {self.pr.expr(s)};")
        return out

    def partial_parts(self):
        """(lines before the loop, lines of the loop body, the accumulator updates)."""
        needed = self.program.needed(self.program.accumulators)
        before = self.lines(needed, (UNIFORM,))
        body = self.lines(needed, (EXAMPLE,))
        adds = [f"acc{k} += {self.pr.ref(c)};" for k, c in enumerate(self.program.accumulators)]
        return before, body, adds

    def finalize_body(self, totals: str) -> list:
        """The after phase: totals read from ``totals[k]``, every output stored into ``out``."""
        outputs = self.program.outputs
        needed = self.program.needed([s for arr in outputs.values() for s in arr.flat])
        lines = [f"const real total{k} = {totals}[{k}];" for k in range(len(self.program.accumulators))]
        lines += self.lines(needed, (UNIFORM, AFTER))
        for name, arr in outputs.items():
            offset, shape = self.layout[name]
            lines += [f"out[{offset + i}] = {self.pr.ref(s)};" for i, s in enumerate(arr.flat)]
        return lines


def _row(s) -> tuple:
    """An input element's index without the examples axis (X[k, e] is X_k)."""
    return s.index[:-1] if s.phase == EXAMPLE else s.index


def layout(program: Program) -> tuple[dict, int, int]:
    """``(offsets, parameter_size, output_size)``: name -> (offset, shape) of each parameter
    in ``p`` and each output in ``out``.

    ``out`` holds the updated parameters where ``p`` holds them (so an output
    buffer is the next call's input as it stands), then J (its slot kept in
    both variants), then the gradients.
    """
    offsets, at = {}, 0
    for name, shape in program.parameters.items():
        offsets[name], at = (at, shape), at + math.prod(shape)
    size = at
    offsets["J"], at = (at, ()), at + 1
    for name in GRADIENTS:
        shape = program.outputs[name].shape
        offsets[name], at = (at, shape), at + math.prod(shape)
    return offsets, size, at


def indent(lines, depth) -> str:
    pad = "    " * depth
    return "\n".join(pad + line for line in lines)


def _signature_inputs(program: Program) -> str:
    parts = []
    for name in program.example_inputs:
        parts.append(f"const real* __restrict__ {name}, const long long {name}_s0, const long long {name}_s1")
    return ", ".join(parts)


def _scalars(program: Program) -> str:
    return ", ".join(f"const real {name}" for name in program.scalar_inputs)


def _variant_text(variant: str, program: Program, dtype: str, offsets: dict) -> str:
    em = Emitter(program, dtype, offsets)
    before, body, adds = em.partial_parts()
    k = len(program.accumulators)
    zero = em.pr.literal(0.0)
    accs = [f"real acc{i} = {zero};" for i in range(k)]
    inputs, scalars = _signature_inputs(program), _scalars(program)
    after = em.finalize_body("totals")
    warp_tree = [f"acc{i} = bc_warp_sum(acc{i});" for i in range(k)]
    to_shared = [f"warp_sums[{i}][warp] = acc{i};" for i in range(k)]
    return f"""
// ---- variant "{variant}": {k} sums over the examples ----
#ifdef BC_CUDA
extern "C" __global__ void __launch_bounds__(BC_BLOCK)
bc_partial_{variant}({inputs}, const long long count, {scalars},
        const real* __restrict__ p, real* __restrict__ block_sums)
{{
{indent(before, 1)}
{indent(accs, 1)}
    const long long stride = (long long)gridDim.x * BC_BLOCK;
    for (long long e = (long long)blockIdx.x * BC_BLOCK + threadIdx.x; e < count; e += stride) {{
{indent(body, 2)}
{indent(adds, 2)}
    }}
    // The block's sums in a fixed order: a shuffle tree within each warp, then
    // one warp per accumulator over the warps' sums.
    __shared__ real warp_sums[{k}][BC_WARPS];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
{indent(warp_tree, 1)}
    if (lane == 0) {{
{indent(to_shared, 2)}
    }}
    __syncthreads();
    for (int k = warp; k < {k}; k += BC_WARPS) {{
        const real v = bc_warp_sum(lane < BC_WARPS ? warp_sums[k][lane] : {zero});
        if (lane == 0) block_sums[k * gridDim.x + blockIdx.x] = v;
    }}
}}

extern "C" __global__ void __launch_bounds__(1024)
bc_finalize_{variant}(const real* __restrict__ block_sums, const int blocks, {scalars},
        const real* __restrict__ p, real* __restrict__ out)
{{
    __shared__ real totals[{k}];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    for (int k = warp; k < {k}; k += warps) {{
        real v = {zero};
        for (int b = lane; b < blocks; b += 32) v += block_sums[k * blocks + b];
        v = bc_warp_sum(v);
        if (lane == 0) totals[k] = v;
    }}
    __syncthreads();
    if (threadIdx.x != 0) return;
{indent(after, 1)}
}}
#else
extern "C" void bc_host_partial_{variant}({inputs}, const long long count, {scalars},
        const real* __restrict__ p, real* __restrict__ sums)
{{
{indent(before, 1)}
{indent(accs, 1)}
    for (long long e = 0; e < count; ++e) {{
{indent(body, 2)}
{indent(adds, 2)}
    }}
{indent([f"sums[{i}] = acc{i};" for i in range(k)], 1)}
}}

extern "C" void bc_host_finalize_{variant}(const real* __restrict__ totals, {scalars},
        const real* __restrict__ p, real* __restrict__ out)
{{
{indent(after, 1)}
}}
#endif
"""


PREAMBLE = """\
// Generated by backprop_core.lowering.cuda_fused from equations.gradients and equations.update
// for a {shape} network with activation {activation}, in {dtype}.
// Change the equations, not this file: the kernel is derived from them.
#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define BC_CUDA 1
#endif
#ifdef BC_CUDA
#define BC_INLINE __device__ __forceinline__
#define BC_INF {cuda_inf}
#define BC_NAN {cuda_nan}
#else
#include <math.h>
#define BC_INLINE static inline
#define BC_INF ((real)INFINITY)
#define BC_NAN ((real)NAN)
#endif
typedef {ctype} real;
#define BC_BLOCK {block}
#define BC_WARPS (BC_BLOCK / 32)

// max that keeps a NaN from either side, as NumPy's max does
BC_INLINE real bc_max(const real a, const real b) {{ return (a > b || a != a) ? a : b; }}

#ifdef BC_CUDA
// Lane 0 ends with the warp's sum, added in the same order on every run.
__device__ __forceinline__ real bc_warp_sum(real v)
{{
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    return v;
}}
#endif
"""

SPECIALS = {"float32": ("__int_as_float(0x7f800000)", "__int_as_float(0x7fffffff)"),
             "float64": ("__longlong_as_double(0x7ff0000000000000LL)", "__longlong_as_double(0x7ff8000000000000LL)")}


@functools.lru_cache(maxsize=64)
def _source(n0: int, n1: int, n2: int, activation: Activation, dtype: str) -> KernelSource:
    programs = {v: lower_step(n0, n1, n2, activation, with_cost) for v, with_cost in VARIANTS.items()}
    offsets, psize, osize = layout(programs["cost"])
    inf, nan = SPECIALS[dtype]
    text = PREAMBLE.format(shape=f"{n0}-{n1}-{n2}", activation=activation.name, dtype=dtype,
                            cuda_inf=inf, cuda_nan=nan, ctype=DTYPES[dtype], block=BLOCK)
    text += "".join(_variant_text(v, p, dtype, offsets) for v, p in programs.items())
    any_program = programs["cost"]
    return KernelSource(text=text, dtype=dtype, shape=(n0, n1, n2), activation=activation.name,
                        parameter_size=psize, output_size=osize, offsets=offsets,
                        accumulators={v: len(p.accumulators) for v, p in programs.items()},
                        example_inputs=tuple(any_program.example_inputs),
                        scalar_inputs=any_program.scalar_inputs)


def kernel_source(n0: int, n1: int, n2: int, activation, dtype: str) -> KernelSource:
    """The CUDA source of the fused step (made once per shape, activation and dtype)."""
    n0, n1, n2 = check_shape(n0, n1, n2)
    return _source(n0, n1, n2, check_activation(activation), check_dtype(dtype))


def max_grid(multiprocessors: int, blocks_per_multiprocessor: int) -> int:
    """Blocks that fill the device once (at least one per multiprocessor)."""
    return multiprocessors * max(1, blocks_per_multiprocessor)


def grid_size(count: int, multiprocessors: int, blocks_per_multiprocessor: int) -> int:
    """Blocks of the partial kernel: enough to fill the device once, no more than the examples need."""
    return max(1, min(-(-count // BLOCK), max_grid(multiprocessors, blocks_per_multiprocessor)))


def finalize_threads(accumulators: int) -> int:
    """Threads of the finalize kernel: a warp per accumulator, at most 1024."""
    return WARP * min(accumulators, 1024 // WARP)
