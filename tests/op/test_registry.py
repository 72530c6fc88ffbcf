"""The op registry: every registered name is an operator of the installed torch, every translation
that takes the schema's arguments mirrors that schema, and nodes are bound to it by Python's rules."""

from __future__ import annotations

import pytest

from torch_to_nnef import op
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref
from torch_to_nnef.op.registry import RegistryError, register, registration_problems, translate_node


def test_every_registration_resolves_against_torch_ops():
    assert registration_problems() == []


def test_a_name_torch_does_not_have_is_reported():
    @register("aten::no_such_operator_here")
    def made_up(ctx, self):  # pragma: no cover - never called
        raise AssertionError

    try:
        assert registration_problems() == ["aten::no_such_operator_here (made_up): torch has no such operator"]
    finally:
        op.registry._REGISTRY.pop("aten::no_such_operator_here")


def test_parameters_that_differ_from_the_schema_are_reported():
    @register("aten::hardshrink")
    def hardshrink(ctx, x, lambd=0.5):  # pragma: no cover - never called
        raise AssertionError

    try:
        (problem,) = registration_problems()
        assert problem.startswith("aten::hardshrink (hardshrink): parameters (x, lambd) differ from the schema's (self")
    finally:
        op.registry._REGISTRY.pop("aten::hardshrink")


def test_malformed_duplicate_and_whole_node_registrations_are_refused():
    with pytest.raises(RegistryError, match="malformed"):
        register("relu")(lambda ctx, self: None)
    with pytest.raises(RegistryError, match="registered twice"):
        register("aten::relu")(lambda ctx, self: None)
    with pytest.raises(RegistryError, match="takes the whole node"):
        register("aten::hardshrink")(lambda ctx, node: None)


def test_arguments_are_bound_by_name_and_overload():
    seen = {}

    @register("aten::hardshrink")
    def hardshrink(ctx, self, lambd=0.5):
        seen.update(self=self, lambd=lambd, out=ctx.out)
        return Ref("done")

    x, y = Value("x", "f32", (2,)), Value("y", "f32", (2,))
    ctx = op.Context(g=NNEFBuilder(tract=True), tract=True)
    try:
        assert translate_node(ctx, Node("aten::hardshrink", (x,), (y,))) == Ref("done")
        assert seen == {"self": x, "lambd": 0.5, "out": y}
        translate_node(ctx, Node("aten::hardshrink", (x, {"lambd": 0.25}), (y,)))
        assert seen["lambd"] == 0.25
        assert op.resolve("aten::hardshrink", "out") is None  # a translation takes its own overload alone
        with pytest.raises(RegistryError, match=r"aten::hardshrink at <top>: its arguments do not fit"):
            translate_node(ctx, Node("aten::hardshrink", (x, 0.5, 3), (y,)))
    finally:
        op.registry._REGISTRY.pop("aten::hardshrink")


def test_nodes_carry_their_overload():
    import torch

    from torch_to_nnef.capture.torch_export import capture

    class M(torch.nn.Module):
        def forward(self, x):
            return torch.min(x, x * 2), x.add(1.0)

    graph, _ = capture(M(), [torch.randn(3)], ["x"], None)
    names = {n.op_name for n in graph.nodes}
    assert {"aten::min.other", "aten::mul.Tensor", "aten::add.Tensor"} <= names
