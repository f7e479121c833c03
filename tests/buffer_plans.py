"""The buffer plans of both buffered targets on the graphs of every activation, as plain data.

``python tests/buffer_plans.py`` writes them to ``tests/data/buffer_plans.json``;
that file was written by the two liveness analyses the targets had before they
shared one (:mod:`backprop_core.lowering.liveness`), and test_liveness.py checks
that the shared one gives the same plans.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from backprop_core.activations import ACTIVATIONS
from backprop_core.equations import OUTPUTS
from backprop_core.lowering.cupy_kernels import Program, gradients_graph, step_graph
from backprop_core.lowering.numpy_buffers import BufferedGradients
from backprop_core.tracing import trace_gradients

RECORDED = Path(__file__).parent / "data" / "buffer_plans.json"
SHAPES = [(2, 4, 1), (3, 5, 2)]


def _configs():
    for g in ACTIVATIONS.values():
        for output in OUTPUTS.values():
            for shape in SHAPES:
                for weighted in (False, True):
                    for with_cost in (False, True):
                        yield f"{g.name}-{output.name}-{'-'.join(map(str, shape))}-" \
                              f"{'weighted' if weighted else 'unweighted'}-{'cost' if with_cost else 'step'}", \
                            (shape, g, output, weighted, with_cost)


def numpy_plan(graph, dtype) -> dict:
    """Each buffered node (by its position in the graph) -> its buffer, and the buffers' specs."""
    program = BufferedGradients(graph, dtype, 8)._program
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    placed = sorted(program.buffer_of.items(), key=lambda kv: position[kv[0]])
    return {"buffer_of": {str(position[k]): v for k, v in placed},
            "buffers": [[list(shape), kind] for shape, kind in program.buffers]}


def kernels_plan(graph, dtype) -> dict:
    """Each node kept in a buffer or a small array (by position) -> (kind, ordinal), and the counts."""
    program = Program(graph, dtype)
    position = {n.id: i for i, n in enumerate(graph.nodes)}
    placed = sorted(program.storage.items(), key=lambda kv: position[kv[0]])
    return {"storage": {str(position[k]): [s.kind, s.ordinal] for k, s in placed if s.kind in ("buffer", "small")},
            "made": sorted([kind, repr(spec), count] for (kind, spec), count in program.buffer_specs.items())}


def plans() -> dict:
    out = {}
    for name, (shape, g, output, weighted, with_cost) in _configs():
        for dtype in ("float32", "float64"):
            gradients = trace_gradients(*shape, g, with_cost, weighted, output=output)
            out[f"numpy-{name}-{dtype}"] = numpy_plan(gradients, np.dtype(dtype))
        out[f"kernels-gradients-{name}"] = kernels_plan(gradients_graph(*shape, g, with_cost, output, weighted),
                                                        "float32")
        out[f"kernels-step-{name}"] = kernels_plan(step_graph(*shape, g, with_cost, output, weighted), "float32")
    return out


if __name__ == "__main__":
    recorded = plans()  # one graph a line
    RECORDED.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(recorded[k], sort_keys=True)}"
                                            for k in sorted(recorded)) + "\n}\n")
    print(f"wrote {RECORDED}")
