"""The kernels' whole-batch step: the partitioned step replayed as a CUDA graph.

:class:`GraphStep` is the target's step object (``step(params, X, Y, with_cost)
-> (params, J)``, :mod:`backprop_core.lowering.target`): one program for the
step with the cost and one without (the gradients, then the update), their
buffers made once for the batch it is given, each run eagerly the first time
and captured then into a graph that every later iteration replays with one
launch.  The parameters live in one flat buffer the programs read; the update
writes the new ones, and J, into ``out``; a copy at the end of the step (in
the graph) carries them back into the parameter buffer for the next
iteration, and a copy after it hands the caller a fresh array, so parameters
the loop keeps (the last good ones) are never written over.  A step queues its
work and returns: no host read.  The loop runs it as it runs every target's
step (:class:`backprop_core.strategies.Lowered`); nothing here knows the loop.
"""

from __future__ import annotations

import math

from ...equations import SIGMOID
from ...errors import InvalidInputError
from ...parameters import NAMES as PARAMETERS
from ...parameters import split_weights
from .partition import INLINE_TERMS
from .program import Program, step_graph
from .steps import cupy_device, shape_name


class GraphStep:
    """The whole batch's iteration (gradients and update) as the partitioned step, replayed as a graph.

    ``step(params, X, Y, with_cost) -> (params, J)``: X (n0, m) and Y (n2, m)
    (a weighted fit: (n2 + 1, m), the weights last) are arrays of ``dtype``
    where ``device(backend, dtype)`` computes (CuPy by default); the buffers
    and graphs are made for the X and Y of the first call, and again when
    other arrays come.  ``graphs``: capture each program on its first run and
    replay it after.  ``shape``: (n0, n1, n2).
    """

    def __init__(self, shape, g, learning_rate: float, backend, dtype: str, output=SIGMOID,
                 weighted: bool = False, graphs: bool = True, inline_terms: int = INLINE_TERMS,
                 device=cupy_device):
        n0, n1, n2 = shape
        self.X = self.Y = None
        self.backend, self.dtype = backend, dtype
        self.learning_rate, self.weighted, self._make_device = float(learning_rate), weighted, device
        self.programs = {with_cost: Program(step_graph(n0, n1, n2, g, with_cost, output, weighted), dtype,
                                            inline_terms=inline_terms, shape=shape_name(n0, n1, n2), activation=g.name)
                         for with_cost in (False, True)}
        self.device = None
        self._graphs, self._no_graph = {}, None if graphs else "not asked for"
        self._holds = None  # the parameters dict the parameter buffer holds now

    def prepare(self, a):
        """``a`` as the step reads it: as it is (the launches read any strides)."""
        return a

    # -- made on the first step (inside the loop, so running out of memory is reported as such) --------
    def _prepare(self, X, Y):
        if self.device is None:
            self.device = self._make_device(self.backend, self.dtype)
        device = self.device
        self.X, self.Y = X, Y
        self._graphs, self._holds = {}, None
        if not device.capturable and self._no_graph is None:
            self._no_graph = device.how
        m = self.X.shape[1]
        programs = self.programs.values()
        with device.context():
            self.arena = device.arena(self.programs[True], m, out_size=max(p.out_size for p in programs),
                                      ones_size=max(p.ones_per_column for p in programs) * m)
            inputs = self.programs[True].inputs
            size = sum(math.prod(inputs[name].shape) for name in PARAMETERS)
            self.P = device.empty(size, self.dtype)
            self._views, at = {}, 0
            for name in PARAMETERS:
                shape = inputs[name].shape
                self._views[name] = self.P[at:at + math.prod(shape)].reshape(shape)
                at += math.prod(shape)
            Y, weights = split_weights(self.Y, self.weighted)
            values = {"X": self.X, "Y": Y, **self._views, "m": m, "learning_rate": self.learning_rate}
            if self.weighted:
                values["weights"] = weights
            self.bound = {}
            for with_cost, program in self.programs.items():
                program.check(values)
                self.bound[with_cost] = program.bind(self.arena, values)
        self._new_parameters = self.arena.out[:size]  # the update's outputs, in the parameters' order

    def _load(self, params: dict):
        """Make the parameter buffer hold ``params`` (nothing to do when it already does)."""
        if params is self._holds:
            return
        if not isinstance(params, dict) or set(params) != set(PARAMETERS):
            raise InvalidInputError(f"params must be a dict of {PARAMETERS}")
        for name, view in self._views.items():
            value = params[name]
            if tuple(value.shape) != view.shape:
                raise InvalidInputError(f"{name} has shape {tuple(value.shape)}, expected {view.shape}")
            view[...] = value

    def _enqueue(self, with_cost: bool, stream):
        """The program's launches, then the new parameters copied into the parameter buffer."""
        self.device.launch(self.programs[with_cost], self.bound[with_cost], stream)
        self.device.copy(self.P, self._new_parameters, stream)

    def _run(self, with_cost: bool):
        stream = self.device.stream()
        graph = self._graphs.get(with_cost)
        if graph is not None:
            self.device.replay(graph, stream)
            return
        self._enqueue(with_cost, stream)  # the first run is eager: kernels compiled, cuBLAS set up
        if self._no_graph is None:
            try:
                self._graphs[with_cost] = self.device.capture(lambda s: self._enqueue(with_cost, s))
            except Exception as exc:  # still correct, one launch at a time
                self._no_graph = f"capture failed: {type(exc).__name__}: {exc}"

    def _result(self, with_cost: bool):
        program = self.programs[with_cost]
        fresh = self.arena.out[:program.out_size].copy()  # the loop may keep these: never written again
        new = {}
        for name, (offset, shape) in zip(PARAMETERS, program.out_layout):
            new[name] = fresh[offset:offset + math.prod(shape)].reshape(shape)
        J = fresh[program.out_layout[4][0]] if with_cost else None
        return new, J

    def __call__(self, params, X, Y, with_cost):
        if X is not self.X or Y is not self.Y:
            self._prepare(X, Y)
        with self.device.context():
            self._load(params)
            self._run(with_cost)
            new, J = self._result(with_cost)
        self._holds = new
        return new, J

    @property
    def levers(self) -> dict:
        """What this executor does per iteration, for the benchmark's record."""
        step, with_cost = self.programs[False], self.programs[True]
        graphs = [g for g in self._graphs.values() if g is not None]
        return {
            "executor": "kernels",
            "graph_replay": bool(graphs),
            "graph_replay_note": self._no_graph or ("replayed" if graphs else "not captured yet"),
            "launches_per_step": step.launches, "launches_per_step_with_cost": with_cost.launches,
            "launch_kinds": step.partition.counts(),
            "fused_chains": step.partition.chains,
            "ops_in_chains": sum(len(s.nodes) for s in step.partition.steps if s.is_chain),
            "tf32": self.dtype == "float32" and self.backend.precision == "tf32",
            "cublas": self.device.how if self.device is not None else "not set up yet",
            "buffer_bytes": self.arena.nbytes if self.device is not None else None,
        }
