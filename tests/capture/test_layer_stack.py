"""Layer repetition: which layers of a stack repeat (offset and period), and the graph of a capture of
the traced layers with the others repeated, node for node the graph a capture of every layer gives."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from torch_to_nnef.capture import layer_stack
from torch_to_nnef.capture.layer_stack import Stack, StackMismatch, find_period, find_stack
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.ir import Graph, SymInt, Value


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ("aaaa", (0, 1)),
        ("abbbb", (1, 1)),  # DeepSeek: a dense layer, then mixture-of-experts layers
        ("aabbbbb", (2, 1)),
        ("ababab", (0, 2)),  # sliding and full attention alternating
        ("ababa", (0, 2)),  # the last period partial
        ("aaaaab" * 4 + "aa", (0, 6)),  # Gemma 3's 5:1 pattern over 26 layers
        ("cababab", (1, 2)),
        ("abcabca", (0, 3)),
        ("aab", None),  # nothing left to repeat
        ("abab", None),
        ("abcd", None),
        ("aaab" * 2, None),
        ("", None),
    ],
)
def test_period_traces_the_fewest_layers(keys: str, expected: tuple[int, int] | None):
    assert find_period(list(keys)) == expected


def test_stack_places_each_layer_in_its_period():
    stack = Stack("model.layers", 26, offset=2, period=6)
    assert stack.traced == 14
    assert [stack.template(j) for j in range(12, 26)] == [12, 13, 8, 9, 10, 11, 12, 13, 8, 9, 10, 11, 12, 13]
    assert stack.describe() == "model.layers: layers 0-1, then layers alike by periods of 6"
    assert Stack("layers", 5, offset=1).describe() == "layers: layer 0, then alike layers"
    assert Stack("layers", 5).describe() == "layers: alike layers"


class Block(nn.Module):
    """A layer that caches its input: windowed layers read the last two cached positions, the others
    all of them through a ReLU."""

    def __init__(self, windowed: bool, layer_idx: int, scaled_by_index: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.windowed = windowed
        self.layer_idx = layer_idx
        self.scaled_by_index = scaled_by_index

    def forward(self, x: torch.Tensor, cache: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        cached = torch.cat([cache, x], dim=1)
        h = self.linear(x)
        if self.windowed:
            h = h * cached[:, -2:].mean(1, keepdim=True)
        else:
            h = torch.relu(h) + cached.mean(1, keepdim=True)
        if self.scaled_by_index:  # code that differs by the layer's index alone
            h = h * (self.layer_idx + 1)
        if y is not None:  # a second value passed to the next layer
            return x + h + y, y - h, cached
        return x + h, cached


class Net(nn.Module):
    """A stack of :class:`Block` (``windowed`` for each), each with its cache as a graph input and
    output; with ``two_streams``, the layers pass a second value to the next."""

    def __init__(self, windowed: list[bool], two_streams: bool = False, scaled_by_index: bool = False) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 4)
        self.layers = nn.ModuleList(Block(w, i, scaled_by_index) for i, w in enumerate(windowed))
        self.head = nn.Linear(4, 4)
        self.two_streams = two_streams

    def forward(self, x: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.embed(x)
        y = x * 0.5
        out = []
        for layer, cache in zip(self.layers, caches):
            if self.two_streams:
                x, y, cached = layer(x, cache, y)
            else:
                x, cached = layer(x, cache)
            out.append(cached)
        return (self.head(x + y if self.two_streams else x), *out)


def _stack(net: Net) -> Stack:
    stack = find_stack(net, len(net.layers))
    assert stack is not None
    return stack


def _names(layers: int) -> list[str]:
    return ["x", *(f"cache_{i}" for i in range(layers))]


def _captures(net: Net, stack: Stack) -> tuple[Graph, Graph]:
    """The graph of a capture of every layer, and that of the traced layers with the others repeated."""
    layers = len(net.layers)
    generator = torch.Generator().manual_seed(0)
    args = [
        torch.randn(1, 3, 4, generator=generator),
        *(torch.randn(1, 2, 4, generator=generator) for _ in range(layers)),
    ]
    axes = {"x": {1: "S"}, **{f"cache_{i}": {1: "P"} for i in range(layers)}}
    full, _ = capture(net, args, _names(layers), axes)
    with layer_stack.truncated(net, stack.path, stack.traced):
        short_names = _names(stack.traced)
        short, _ = capture(net, args[: len(short_names)], short_names, {n: axes[n] for n in short_names})
    tensors = dict(net.state_dict(keep_vars=True))
    repeated = layer_stack.repeat_layers(short, stack, tensors.__getitem__, lambda j: [f"cache_{j}"])
    return full, repeated


def _assert_same_graph(full: Graph, repeated: Graph) -> None:
    """The two graphs compute the same: the same inputs, nodes in the same order with operands
    from the same places (inputs by name, weights by PyTorch name), the same outputs."""
    assert [v.name for v in full.inputs] == [v.name for v in repeated.inputs]
    same: dict[str, str] = {v.name: v.name for v in full.inputs}
    by_torch_name = {p.torch_name: name for name, p in repeated.parameters.items()}
    same.update({name: by_torch_name[p.torch_name] for name, p in full.parameters.items()})

    def check(a: Any, b: Any) -> None:
        if isinstance(a, Value):
            assert isinstance(b, Value) and same[a.name] == b.name and a.dtype == b.dtype
        elif isinstance(a, SymInt):
            assert isinstance(b, SymInt) and layer_stack._size(a.expr) == layer_stack._size(b.expr)
        elif isinstance(a, (list, tuple)):
            assert type(a) is type(b) and len(a) == len(b)
            for x, y in zip(a, b):
                check(x, y)
        elif isinstance(a, dict):
            assert isinstance(b, dict) and a.keys() == b.keys()
            for k in a:
                check(a[k], b[k])
        else:
            assert a == b

    assert len(full.nodes) == len(repeated.nodes)
    for a, b in zip(full.nodes, repeated.nodes):
        assert (a.kind, a.module_path) == (b.kind, b.module_path)
        check(a.args, b.args)
        same.update({x.name: y.name for x, y in zip(a.outputs, b.outputs)})
    assert [same[v.name] for v in full.outputs] == [v.name for v in repeated.outputs]
    assert sorted(p.torch_name for p in full.parameters.values()) == sorted(
        p.torch_name for p in repeated.parameters.values()
    )


@pytest.mark.parametrize(
    ("windowed", "offset", "period"),
    [
        ([True] * 4, 0, 1),
        ([False, True, True, True, True], 1, 1),
        ([True, False] * 3, 0, 2),
        ([True, False, True, False, True], 0, 2),  # the last period partial
        ([False, True, True, False, True, True, False], 0, 3),  # the last period partial
        ([True, True, False, True, False, True, False], 1, 2),
    ],
    ids=["alike", "offset", "periods", "partial", "partial-of-3", "offset-and-periods"],
)
def test_repeated_graph_is_the_full_capture(windowed: list[bool], offset: int, period: int):
    net = Net(windowed).eval()
    stack = _stack(net)
    assert stack == Stack("layers", len(windowed), offset, period)
    _assert_same_graph(*_captures(net, stack))


def test_layers_passing_two_values_repeat_by_whole_periods_only():
    """A partial last period is repeated when the layers pass one value to the next only: the nodes
    after the stack read the last layer's, the one that layer's own next layer would read."""
    net = Net([True, False] * 3, two_streams=True).eval()
    _assert_same_graph(*_captures(net, _stack(net)))
    net = Net([True, False] * 2 + [True], two_streams=True).eval()
    with pytest.raises(StackMismatch, match="the last period is partial"):
        _captures(net, _stack(net))


def test_layers_differing_by_their_index_alone_are_not_repeated():
    """Code that reads the layer's index looks alike module by module; the traced periods differ."""
    net = Net([True] * 4, scaled_by_index=True).eval()
    stack = _stack(net)
    assert stack == Stack("layers", 4)
    with pytest.raises(StackMismatch, match="differ"):
        _captures(net, stack)


class Config:
    """A model config with per-layer lists."""

    def __init__(self, **lists: Any) -> None:
        self.num_hidden_layers = 6
        vars(self).update(lists)


def test_layers_alike_by_module_config_and_caller():
    class Plain(nn.Module):
        def __init__(self, scales: list[float]) -> None:
            super().__init__()
            self.layers = nn.ModuleList(Block(False, i) for i in range(len(scales)))
            for layer, scale in zip(self.layers, scales):
                layer.scale = scale  # type: ignore[assignment]

    assert find_stack(Plain([1.0] * 3), 3) == Stack("layers", 3)
    assert find_stack(Plain([1.0, 1.0, 2.0]), 3) is None  # a different constant in the code
    assert find_stack(Plain([2.0, 1.0, 1.0, 1.0]), 4) == Stack("layers", 4, offset=1)
    assert find_stack(Plain([1.0, 1.0]), 2) is None  # nothing to repeat
    net = Plain([1.0] * 3)
    net.layers[2].linear = nn.Linear(4, 4, bias=False)
    assert find_stack(net, 3) is None
    assert find_stack(Plain([1.0] * 3), 4) is None  # no stack of 4 layers

    net = Plain([1.0] * 6)
    net.config = Config(layer_types=["sliding", "full"] * 3)  # type: ignore[assignment]
    assert find_stack(net, 6) == Stack("layers", 6, period=2)
    net.config = Config(layer_types=["sliding", "full"] * 3, eos_token_id=[1, 2, 3, 4, 5, 6])  # type: ignore[assignment]
    assert find_stack(net, 6) == Stack("layers", 6, period=2)  # a list that is not about layers
    net.config = Config(no_rope_layers=[0, 1, 1, 1, 1, 1])  # type: ignore[assignment]
    assert find_stack(net, 6) == Stack("layers", 6, offset=1)
    net.config = Config(no_rope_layers=[1, 1, 1, 0, 1, 1])  # type: ignore[assignment]
    assert find_stack(net, 6) is None
    assert find_stack(Plain([1.0] * 6), 6, per_layer=[0, 1] * 3) == Stack("layers", 6, period=2)

    with layer_stack.truncated(net, "layers", 4):
        assert len(net.layers) == 4 and net.config.num_hidden_layers == 4
    assert len(net.layers) == 6 and net.config.num_hidden_layers == 6
