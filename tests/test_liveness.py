"""One buffer plan for both buffered targets (lowering/liveness.py).

The plans of the NumPy buffered step and of the CuPy kernels on the graphs of
every activation, output, weighting and cost variant were recorded by the two
analyses the targets had before they shared this one (tests/buffer_plans.py
wrote tests/data/buffer_plans.json at that commit); the shared one must give
the same plans.
"""

from __future__ import annotations

import json

import pytest

from backprop_core.lowering.liveness import Read, Step, Write, plan_buffers

import buffer_plans

RECORDED = json.loads(buffer_plans.RECORDED.read_text())


@pytest.fixture(scope="module")
def plans():
    return json.loads(json.dumps(buffer_plans.plans(), sort_keys=True))  # JSON's keys and lists, as recorded


def test_every_recorded_graph_is_planned_again(plans):
    assert set(plans) == set(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_shared_plan_is_the_plan_each_target_had(name, plans):
    assert plans[name] == RECORDED[name]


# -- the rules, on small hand-made programs -----------------------------------------------------------------
def test_a_dead_value_s_buffer_goes_to_the_next_value_of_its_key():
    plan = plan_buffers([Step(writes=(Write("a", "k"),)), Step(reads=(Read("a"),), writes=(Write("b", "k"),)),
                         Step(reads=(Read("b"),), writes=(Write("c", "k"),))])
    # b is written while a is read (not over it): two buffers; c takes a's, freed after b's step.
    assert plan.ordinal == {"a": 0, "b": 1, "c": 0} and plan.made() == {"k": 2}


def test_a_step_writes_over_a_dying_input_only_where_it_may():
    plan = plan_buffers([Step(writes=(Write("a", "k"),)), Step(reads=(Read("a", overwritable=True),),
                                                               writes=(Write("b", "k"),))])
    assert plan.ordinal == {"a": 0, "b": 0}


def test_kept_values_and_values_of_another_key_are_never_shared():
    plan = plan_buffers([Step(writes=(Write("a", "k"),)), Step(reads=(Read("a", True),), writes=(Write("b", "j"),)),
                         Step(writes=(Write("c", "k"),))], kept={"a"})
    assert plan.index == {"a": 0, "b": 1, "c": 2}


def test_an_unpooled_value_keeps_its_buffer_and_a_step_may_keep_what_dies_in_it():
    plan = plan_buffers([Step(writes=(Write("s", "k", pooled=False), Write("a", "k"))),
                         Step(reads=(Read("s", True), Read("a", True)), writes=(Write("b", "k"),), frees=False),
                         Step(writes=(Write("c", "k"),))])
    # s and a die in a step that keeps them; b, never read, is freed at once: c takes b's buffer.
    assert plan.ordinal == {"s": 0, "a": 1, "b": 2, "c": 2}


def test_a_value_never_read_is_freed_at_once():
    plan = plan_buffers([Step(writes=(Write("a", "k"),)), Step(writes=(Write("b", "k"),))])
    assert plan.ordinal == {"a": 0, "b": 0}
