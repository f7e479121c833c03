"""The kernels executor for the training loop: the whole step replayed as a graph, or a chunk's gradients.

:class:`KernelSteps` is the loop's strategy for a whole batch on the device:
one program for the step with the cost and one without (the gradients, then
the update), their buffers made once, each run eagerly the first time and
captured then into a graph that every later iteration replays with one
launch.  The parameters live in one flat buffer the programs read; the update
writes the new ones, and J, into ``out``; a copy at the end of the step (in
the graph) carries them back into the parameter buffer for the next
iteration, and a copy after it hands the loop a fresh array, so parameters the
loop keeps (the last good ones) are never written over.  A step queues its
work and returns: no host read.

:func:`make_kernel_gradients` gives :class:`~backprop_core.chunked.ChunkedGradients`
a chunk's gradients the same way, launched one by one (each chunk's data are
at another address, which a graph would have to be captured for again).

Both run on a *device*: :class:`.cupy_runner.CupyDevice` on a GPU, and
:class:`.host.HostDevice` on NumPy with the chains built as host C++, which is
how this bookkeeping is tested without a GPU.
"""

from __future__ import annotations

import math

from ..equations import SIGMOID
from ..errors import InvalidInputError
from ..loop import Strategy
from ..parameters import NAMES as PARAMETERS
from ..strategies import split_weights
from .partition import INLINE_TERMS
from .program import Program, gradients_graph, step_graph


def cupy_device(backend, dtype: str):
    from .cupy_runner import CupyDevice

    return CupyDevice(backend, dtype)


def _name(n0, n1, n2) -> str:
    return f"{n0}-{n1}-{n2}"


class KernelSteps(Strategy):
    """The whole batch's iteration (gradients and update) as the partitioned step, replayed as a graph.

    X (n0, m) and Y (n2, m) (a weighted fit: (n2 + 1, m), the weights last)
    are arrays of ``dtype`` where ``device(backend, dtype)`` computes (CuPy by
    default).  ``graphs``: capture each program on its first run and replay it
    after.  ``shape``: (n0, n1, n2).
    """

    def __init__(self, X, Y, shape, g, learning_rate: float, backend, dtype: str, output=SIGMOID,
                 weighted: bool = False, graphs: bool = True, inline_terms: int = INLINE_TERMS,
                 device=cupy_device):
        n0, n1, n2 = shape
        self.X, self.Y, self.backend, self.dtype = X, Y, backend, dtype
        self.learning_rate, self.weighted, self._make_device = float(learning_rate), weighted, device
        self.programs = {with_cost: Program(step_graph(n0, n1, n2, g, with_cost, output, weighted), dtype,
                                            inline_terms=inline_terms, shape=_name(n0, n1, n2), activation=g.name)
                         for with_cost in (False, True)}
        self.device = None
        self._graphs, self._no_graph = {}, None if graphs else "not asked for"
        self._holds = None  # the parameters dict the parameter buffer holds now

    # -- made on the first step (inside the loop, so running out of memory is reported as such) --------
    def _prepare(self):
        self.device = device = self._make_device(self.backend, self.dtype)
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

    def step(self, params, i, with_cost):
        if self.device is None:
            self._prepare()
        with self.device.context():
            self._load(params)
            self._run(with_cost)
            new, J = self._result(with_cost)
        self._holds = new
        return new, J

    def cost(self, params):
        _, J = self.step(params, 0, True)
        self._holds = None  # the buffer holds the parameters after that step, which nobody was given
        return J

    def running(self):
        return self.backend.context()

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
                                          inline_terms=inline_terms, shape=_name(n0, n1, n2), activation=g.name)
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
