"""A chunk's gradients by the kernels executor, and the device they run on.

:func:`make_kernel_gradients` gives :class:`~backprop_core.chunked.ChunkedGradients`
a chunk's gradients by the partitioned program, launched one by one (each
chunk's data are at another address, which a graph would have to be captured
for again).  The whole-batch step that replays the step as a CUDA graph is
:class:`.graph_step.GraphStep`, the target's step object.

Both run on a *device*: :class:`.cupy_runner.CupyDevice` on a GPU, and
:class:`.host.HostDevice` on NumPy with the chains built as host C++, which is
how this bookkeeping is tested without a GPU.
"""

from __future__ import annotations

import math

from ...equations import SIGMOID
from ...errors import InvalidInputError
from ...parameters import split_weights
from .partition import INLINE_TERMS
from .program import Program, gradients_graph


def cupy_device(backend, dtype: str):
    from .cupy_runner import CupyDevice

    return CupyDevice(backend, dtype)


def shape_name(n0, n1, n2) -> str:
    return f"{n0}-{n1}-{n2}"


def make_kernel_gradients(backend, g, shape, dtype: str, columns: int, output=SIGMOID, weighted: bool = False,
                          inline_terms: int = INLINE_TERMS, device=cupy_device):
    """``make(with_cost)`` for :class:`~backprop_core.chunked.ChunkedGradients`: a chunk's
    ``(dW1, db1, dW2, db2, J)`` by the partitioned gradients, launched one by one.

    ``shape`` is (n0, n1, n2); chunks hold at most ``columns`` examples.
    Buffers are made once per chunk size (a batch has two: the chunk and the rest).
    """
    n0, n1, n2 = shape
    programs, devices = {}, []

    def make(with_cost):
        if with_cost not in programs:
            programs[with_cost] = Program(gradients_graph(n0, n1, n2, g, with_cost, output, weighted), dtype,
                                          inline_terms=inline_terms, shape=shape_name(n0, n1, n2), activation=g.name)
        program, arenas = programs[with_cost], {}

        def gradients(params, Xc, Yc, m):
            if not devices:
                devices.append(device(backend, dtype))
            here = devices[0]
            Yc, weights = split_weights(Yc, weighted)
            values = {"X": Xc, "Y": Yc, **params, "m": m}
            if weighted:
                values["weights"] = weights
            c = program.check(values)
            if c > columns:
                raise InvalidInputError(f"a chunk of {c} examples is larger than the {columns} the kernels were made for")
            with here.context():
                if c not in arenas:
                    if len(arenas) >= 2:
                        arenas.clear()
                    arenas[c] = here.arena(program, c)
                here.launch(program, program.bind(arenas[c], values), here.stream())
                fresh = arenas[c].out[:program.out_size].copy()
            return tuple(None if layout is None else fresh[layout[0]:layout[0] + math.prod(layout[1])]
                         .reshape(layout[1]) for layout in program.out_layout)

        return gradients

    return make
