"""One buffer plan for the targets that keep per-example values in buffers: which values share memory.

A target lists its steps in the order they run (:class:`Step`): the values each
reads and the values it writes.  A value dies after the last step reading it;
its buffer then goes back to the pool of its key (shape and dtype) and is given
to the next value of that key written (the latest freed first).  A step may
write over a dying input only where it reads it element for element (the
target says so per read): such a buffer is freed before the step's outputs are
placed, the others after.  A value written and never read is freed at once.
A step may keep what dies in it (``Step.frees``): the NumPy step frees only
where it writes into a buffer, as its plan always has (freeing where a sum or a
product reads a buffer last too would reuse more; 64 of the 128 NumPy plans of
tests/buffer_plans.py would change).

The NumPy buffered step (:mod:`.numpy_buffers`, one step per node) and the CuPy
kernels (:mod:`.cupy_kernels.program`, one step per launch) both place their
values by :func:`plan_buffers`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Hashable


@dataclass(frozen=True)
class Read:
    """A step reads ``value`` (a view's base: whoever owns the memory); ``overwritable``: the step
    may write its outputs over it where it dies here."""

    value: Hashable
    overwritable: bool = False


@dataclass(frozen=True)
class Write:
    """A step writes ``value`` into a buffer of ``key``; ``pooled``: its buffer is shared with other
    values of the key once it dies (else it has one of its own)."""

    value: Hashable
    key: Hashable
    pooled: bool = True


@dataclass(frozen=True)
class Step:
    """What one step reads and writes, in the order it reads them; ``frees``: values dying here
    go back to their pools (else they keep their buffers to the end)."""

    reads: tuple = ()
    writes: tuple = ()
    frees: bool = True


@dataclass
class BufferPlan:
    """``ordinal[value]``: which buffer of its key a value is in; ``index[value]``: which buffer of
    all (``buffers``, their keys in the order they are made)."""

    ordinal: dict = field(default_factory=dict)
    index: dict = field(default_factory=dict)
    buffers: list = field(default_factory=list)

    def made(self) -> dict:
        """How many buffers of each key."""
        counts = defaultdict(int)
        for key in self.buffers:
            counts[key] += 1
        return dict(counts)


def plan_buffers(steps, kept=()) -> BufferPlan:
    """Place the values the ``steps`` write (module docstring); values in ``kept`` never die."""
    steps = list(steps)
    kept = set(kept)
    last_read = {}
    for s, step in enumerate(steps):
        for read in step.reads:
            last_read[read.value] = s
    plan, free, key_of = BufferPlan(), defaultdict(list), {}

    def release(value):
        free[key_of[value]].append((plan.ordinal[value], plan.index[value]))

    for s, step in enumerate(steps):
        dying = {}  # value -> may the outputs be written over it?
        for read in step.reads if step.frees else ():
            if read.value in key_of and last_read[read.value] == s and read.value not in kept:
                dying[read.value] = dying.get(read.value, True) and read.overwritable
        for value, reusable in dying.items():
            if reusable:
                release(value)
        for write in step.writes:
            key_of[write.value] = write.key
            pool = free[write.key]
            if write.pooled and pool:
                plan.ordinal[write.value], plan.index[write.value] = pool.pop()
            else:
                plan.ordinal[write.value] = sum(1 for k in plan.buffers if k == write.key)
                plan.index[write.value] = len(plan.buffers)
                plan.buffers.append(write.key)
            if not write.pooled:
                del key_of[write.value]  # never freed, never shared
        for value, reusable in dying.items():
            if not reusable:
                release(value)
        for write in step.writes:
            if write.value in key_of and write.value not in last_read and write.value not in kept:
                release(write.value)  # computed but never read
    return plan
