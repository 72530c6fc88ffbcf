"""A stack of identical layers captured once: two layers traced, the second one repeated.

Tracing is what an export of a deep decoder spends its time on (torch.export walks every operation
of every layer with symbolic shapes). When the layers of an ``nn.ModuleList`` are the same code
with weights of the same shapes, the model is captured with its first two layers only, and the
second layer's nodes are repeated in the IR for every following layer, with that layer's weights
and, for each per-layer graph input and output (a key-value cache), that layer's own.

Two layers, not one: the second layer's nodes read the first layer's results exactly as every
following layer reads its predecessor's, which is what each copy is wired to. The first two layers
are compared node by node (kinds, constant arguments, where each operand comes from); any
difference, and any sign that the layers are not the same code (layer types in the config, module
attributes other than the layer index), keeps the full capture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import torch
from torch import nn

from torch_to_nnef.ir import Graph, Node, Parameter, Value, values_in

LOGGER = logging.getLogger(__name__)

_PER_LAYER_ATTRIBUTES = frozenset({"layer_idx", "layer_id", "layer_number", "idx"})
"""Module attributes that number a layer (its place in the cache) rather than change its code."""

_PLAIN = (bool, int, float, str, type(None))


def find_stack(model: nn.Module, num_layers: int) -> str | None:
    """Path of the ``nn.ModuleList`` of ``num_layers`` identical layers in ``model``, or None.

    Identical: same class, parameters and buffers of the same names, shapes, dtypes and types,
    and the same plain attributes (numbers, strings, flags) in every submodule, the layer index
    aside. A config with per-layer ``layer_types`` must give every layer the same type.
    """
    if num_layers < 3:
        return None
    config = getattr(model, "config", None)
    if config is None and hasattr(model, "model"):
        config = getattr(model.model, "config", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None and len(set(layer_types)) > 1:
        return None
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != num_layers:
            continue
        first = _signature(module[1])
        if all(type(layer) is type(module[1]) and _signature(layer) == first for layer in module):
            return str(path)
    return None


def _signature(layer: nn.Module) -> list[Any]:
    """What must be equal between two layers that run the same code."""
    items: list[Any] = []
    for name, sub in layer.named_modules():
        attrs = sorted(
            (k, v)
            for k, v in vars(sub).items()
            if not k.startswith("_") and k not in _PER_LAYER_ATTRIBUTES and isinstance(v, _PLAIN)
        )
        items.append((name, type(sub).__name__, attrs))
    for name, tensor in [*layer.named_parameters(), *layer.named_buffers()]:
        items.append((name, type(tensor).__name__, tuple(tensor.shape), tensor.dtype))
    return items


@contextlib.contextmanager
def truncated(model: nn.Module, path: str, keep: int = 2) -> Iterator[None]:
    """While the block runs, the stack at ``path`` holds its first ``keep`` layers only, and the
    model's config (``num_hidden_layers``, ``layer_types``) says so.
    """
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    full = getattr(parent, name)
    configs = {id(c): c for c in (getattr(m, "config", None) for m in model.modules()) if c is not None}
    saved: list[tuple[Any, str, Any]] = []
    try:
        setattr(parent, name, nn.ModuleList(list(full)[:keep]))
        for config in configs.values():
            for attr in ("num_hidden_layers", "layer_types"):
                value = getattr(config, attr, None)
                if value is None:
                    continue
                saved.append((config, attr, value))
                setattr(config, attr, keep if attr == "num_hidden_layers" else list(value)[:keep])
        yield
    finally:
        setattr(parent, name, full)
        for config, attr, value in reversed(saved):
            setattr(config, attr, value)


class StackMismatch(Exception):
    """The first two layers' nodes differ: the stack cannot be repeated."""


@dataclasses.dataclass
class _Layers:
    """The nodes of the first two layers in a graph captured with two layers, in graph order.

    A layer's nodes are those run inside its module and those outside it that compute from that
    layer's own graph inputs only (the cache objects built from the cache tensors before the stack).
    """

    graph: Graph
    path: str
    first: list[int]
    second: list[int]
    producer: dict[str, tuple[int, int]]
    """Value name -> (layer 0 or 1, position of its node in that layer's list)."""
    producers: dict[str, Node]
    """Value name -> the node computing it, for every node of the graph."""
    extractors: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The extractor of each opaque node kind."""

    @classmethod
    def find(cls, graph: Graph, path: str, own_inputs: tuple[set[str], set[str]]) -> _Layers:
        which: dict[int, int] = {}
        reached = (set(own_inputs[0]), set(own_inputs[1]))
        for i, node in enumerate(graph.nodes):
            names = {v.name for v in values_in(node.args)}
            inside = [
                k
                for k in (0, 1)
                if node.module_path == f"{path}.{k}"
                or node.module_path.startswith(f"{path}.{k}.")
                or (names & reached[k] and not node.module_path.startswith(f"{path}."))
            ]
            if len(inside) > 1:
                raise StackMismatch(f"{node.kind} at {node.where()} computes from both layers' own inputs")
            if inside:
                which[i] = inside[0]
                if not node.module_path.startswith(f"{path}."):  # computed from the layer's own inputs only
                    reached[inside[0]].update(o.name for o in node.outputs)
        layers: tuple[list[int], list[int]] = ([], [])
        producer: dict[str, tuple[int, int]] = {}

        def add(k: int, i: int) -> None:
            layers[k].append(i)
            producer.update({out.name: (k, len(layers[k]) - 1) for out in graph.nodes[i].outputs})

        found = set(which)
        for i, k in which.items():
            add(k, i)
        # after the stack, nodes outside it that read the first layer's results only (a cast of the
        # cache it returned) are the first layer's; those reading the second's alike are the second's
        in_stack = {i for i, n in enumerate(graph.nodes) if n.module_path.startswith(f"{path}.")}
        first_post = []
        for i, node in enumerate(graph.nodes):
            if i in in_stack or i in found:
                continue
            origins = {producer[v.name][0] for v in values_in(node.args) if v.name in producer}
            if origins == {0}:
                first_post.append(i)
                add(0, i)
        taken = set(found) | set(first_post)
        for i0 in first_post:
            a = graph.nodes[i0]
            mirrored = [
                (1, producer[v.name][1]) if v.name in producer and producer[v.name][0] == 0 else None
                for v in values_in(a.args)
            ]
            for i, node in enumerate(graph.nodes):
                if i in taken or i in in_stack or node.kind != a.kind:
                    continue
                reads = [
                    producer[v.name] if v.name in producer and producer[v.name][0] == 1 else None
                    for v in values_in(node.args)
                ]
                if reads == mirrored:
                    taken.add(i)
                    add(1, i)
                    break
            else:
                raise StackMismatch(
                    f"{a.kind} at {a.where()} reads the first layer's results, and nothing the second's"
                )
        producers = {o.name: n for n in graph.nodes for o in n.outputs}
        return cls(graph, path, layers[0], layers[1], producer, producers)


def repeat_layers(
    graph: Graph,
    path: str,
    num_layers: int,
    tensor: Callable[[str], Any],
    per_layer_inputs: Mapping[str, Callable[[int], str]],
    opaque_kinds: MutableMapping[str, Any] | None = None,
    module: Callable[[str], Any] | None = None,
) -> Graph:
    """The graph of the model with ``num_layers`` layers, from ``graph`` captured with two.

    Args:
        graph: captured with the stack at ``path`` truncated to its first two layers.
        path: module path of the stack in the captured model (``model.model.layers``).
        num_layers: layers of the full stack.
        tensor: the full model's tensor of a PyTorch name (``model.model.layers.5.mlp.up_proj.weight``).
        per_layer_inputs: the graph inputs of the second layer (its cache), each with the name of
            that input for layer ``j`` (``0`` gives the first layer's).
        opaque_kinds: the extractor of each opaque module's node kind (each knows one module): the
            copies of an opaque module of the second layer get a kind of their own, whose
            extractor (of the same class) knows that layer's module, given by ``module``.
        module: the full model's submodule of a path (``model.model.layers.5.mlp.experts``); without
            it, a layer holding an opaque module is not repeated.

    Raises:
        StackMismatch: the first two layers differ, values cross the stack in a way the copies
            cannot reproduce, or a layer holds an opaque module.
    """
    inputs_by_name = {v.name: v for v in graph.inputs}
    own = ({make(0) for make in per_layer_inputs.values()}, set(per_layer_inputs))
    if not own[0] <= set(inputs_by_name) or not own[1] <= set(inputs_by_name):
        raise StackMismatch("the per-layer inputs of layers 0 and 1 are not all graph inputs")
    layers = _Layers.find(graph, path, own)
    first, second = layers.first, layers.second
    if not second or len(first) != len(second):
        raise StackMismatch(f"layers 0 and 1 have {len(first)} and {len(second)} nodes")
    extractors = opaque_kinds if opaque_kinds is not None else {}
    opaque = sorted({graph.nodes[i].kind for i in second} & set(extractors))
    if opaque and module is None:
        raise StackMismatch(f"layer 1 holds opaque modules ({', '.join(opaque)})")
    layers.extractors = extractors
    shared_params = {v for v, p in graph.parameters.items() if not p.torch_name.startswith(f"{path}.")}
    for a, b in zip(first, second):
        _compare(graph.nodes[a], graph.nodes[b], layers, own, shared_params)
    in_layers = set(first) | set(second)
    # the second layer's nodes: before the stack (from its own inputs), in its module, after the stack
    inside = [i for i in second if graph.nodes[i].module_path.startswith(f"{path}.")]
    before = [i for i in second if i < inside[0] and i not in inside]
    after = [i for i in second if i > inside[-1] and i not in inside]
    if len(before) + len(inside) + len(after) != len(second):
        raise StackMismatch("the second layer's nodes outside its module are not all before or after the stack")
    last = inside[-1]
    for i, node in enumerate(graph.nodes):
        if i in in_layers:
            continue
        used = [layers.producer[v.name] for v in values_in(node.args) if v.name in layers.producer]
        if used and (i < last or any(k == 0 for k, _ in used)):
            raise StackMismatch(f"{node.kind} at {node.where()} reads the layers' values out of order")

    taken = {v.name for v in graph.inputs} | set(graph.parameters) | {o.name for n in graph.nodes for o in n.outputs}

    def unique(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    parameters = dict(graph.parameters)
    inputs = list(graph.inputs)
    second_prefix = f"{path}.1"
    mappings: list[dict[str, Value]] = []
    for j in range(2, num_layers):
        mapping: dict[str, Value] = {}
        for name, make_name in per_layer_inputs.items():
            old = inputs_by_name[name]
            mapping[name] = Value(make_name(j), old.dtype, old.shape)
            inputs.append(mapping[name])
        mappings.append(mapping)

    def copy(i: int, j: int, previous: dict[str, Value]) -> Node:
        """Node ``i`` of the second layer for layer ``j`` (``previous``: layer ``j - 1``'s values)."""
        node, mapping = graph.nodes[i], mappings[j - 2]
        prefix = f"{path}.{j}"
        for arg in values_in(node.args):
            if arg.name in mapping:
                continue
            origin = layers.producer.get(arg.name)
            if origin is not None and origin[0] == 0:  # the previous layer's result
                k = [o.name for o in graph.nodes[first[origin[1]]].outputs].index(arg.name)
                mapping[arg.name] = previous[graph.nodes[second[origin[1]]].outputs[k].name]
            elif arg.name in graph.parameters and arg.name not in shared_params:
                torch_name = prefix + graph.parameters[arg.name].torch_name[len(second_prefix) :]
                value_name = unique("p_" + torch_name.replace(".", "_"))
                parameters[value_name] = Parameter(torch_name, tensor(torch_name))
                mapping[arg.name] = Value(value_name, arg.dtype, arg.shape)
        outs = tuple(Value(unique(f"{o.name}_layer{j}"), o.dtype, o.shape) for o in node.outputs)
        mapping.update({o.name: n for o, n in zip(node.outputs, outs)})
        module_path = node.module_path
        if module_path == second_prefix or module_path.startswith(second_prefix + "."):
            module_path = prefix + module_path[len(second_prefix) :]
        kind = node.kind
        if kind in extractors and module is not None:  # the same extractor, on layer j's module
            extractor = extractors[kind]
            path_j = prefix + extractor.path[len(second_prefix) :]
            kind = unique(f"{node.kind}_layer{j}")
            extractors[kind] = type(extractor)(module(path_j), path_j)
        return dataclasses.replace(
            node, kind=kind, args=_substitute(node.args, mapping), outputs=outs, module_path=module_path
        )

    identity = {o.name: o for i in second for o in graph.nodes[i].outputs}
    # each group of the second layer's nodes is repeated after its last node: the order of a
    # capture of every layer; what follows the stack reads the last layer's results
    nodes: list[Node] = []
    for i, node in enumerate(graph.nodes):
        nodes.append(
            node
            if i <= last or i in in_layers
            else dataclasses.replace(node, args=_substitute(node.args, mappings[-1] if mappings else {}))
        )
        for group in (before, inside, after):
            if group and i == group[-1]:
                for j in range(2, num_layers):
                    previous = identity if j == 2 else mappings[j - 3]
                    nodes.extend(copy(k, j, previous) for k in group)
    per_layer_outputs = [o for o in graph.outputs if layers.producer.get(o.name, (0, 0))[0] == 1]
    outputs = list(graph.outputs) + [mapping[o.name] for mapping in mappings for o in per_layer_outputs]
    return Graph(
        inputs=inputs,
        outputs=outputs,
        nodes=nodes,
        parameters=parameters,
        symbols=dict(graph.symbols),
        steps=dict(graph.steps),
    )


def _substitute(args: Any, mapping: Mapping[str, Value]) -> Any:
    if isinstance(args, Value):
        return mapping.get(args.name, args)
    if isinstance(args, (list, tuple)):
        return type(args)(_substitute(a, mapping) for a in args)
    if isinstance(args, dict):
        return {k: _substitute(v, mapping) for k, v in args.items()}
    return args


def _equivalent(x: Value, y: Value, layers: _Layers, shared_params: set[str], depth: int = 0) -> bool:
    """Whether ``x`` and ``y``, computed before the stack, are the same value: the same one, equal
    weights outside the stack, or the same operation on equivalent operands (each layer's cache
    object makes its own empty tensor, for example).
    """
    if x.name == y.name:
        return True
    if x.dtype != y.dtype or x.shape != y.shape or depth > 8:
        return False
    params = layers.graph.parameters
    if x.name in shared_params and y.name in shared_params:
        a, b = params[x.name].tensor, params[y.name].tensor
        return isinstance(a, torch.Tensor) and type(a) is type(b) and bool(torch.equal(a, b))
    nx, ny = layers.producers.get(x.name), layers.producers.get(y.name)
    if nx is None or ny is None or nx.kind != ny.kind or nx.outputs.index(x) != ny.outputs.index(y):
        return False

    def same(p: Any, q: Any) -> bool:
        if isinstance(p, Value) and isinstance(q, Value):
            return _equivalent(p, q, layers, shared_params, depth + 1)
        if isinstance(p, (list, tuple)) and isinstance(q, (list, tuple)):
            return type(p) is type(q) and len(p) == len(q) and all(same(a, b) for a, b in zip(p, q))
        if isinstance(p, dict) and isinstance(q, dict):
            return p.keys() == q.keys() and all(same(p[k], q[k]) for k in p)
        return not isinstance(p, Value) and not isinstance(q, Value) and type(p) is type(q) and p == q

    return same(nx.args, ny.args)


def _compare(a: Node, b: Node, layers: _Layers, own: tuple[set[str], set[str]], shared_params: set[str]) -> None:
    """Raises :class:`StackMismatch` unless node ``b`` of the second layer does what node ``a`` of the
    first does, on the second layer's operands.
    """
    where = f"{b.kind} at {b.where()}"
    opaque_a, opaque_b = layers.extractors.get(a.kind), layers.extractors.get(b.kind)
    same_kind = a.kind == b.kind or (
        opaque_a is not None
        and opaque_b is not None
        and type(opaque_a) is type(opaque_b)
        and opaque_a.path.startswith(f"{layers.path}.0.")
        and opaque_b.path == f"{layers.path}.1." + opaque_a.path[len(layers.path) + 3 :]
    )
    if not same_kind or len(a.outputs) != len(b.outputs):
        raise StackMismatch(f"{a.kind} in layer 0 but {where} in layer 1")
    for x, y in zip(a.outputs, b.outputs):
        if x.dtype != y.dtype or x.shape != y.shape:
            raise StackMismatch(f"{where}: outputs {x} and {y} differ")
    _compare_args(a.args, b.args, layers, own, shared_params, where)


def _compare_args(
    x: Any, y: Any, layers: _Layers, own: tuple[set[str], set[str]], shared_params: set[str], where: str
) -> None:
    if isinstance(x, Value) and isinstance(y, Value):
        origin_x, origin_y = layers.producer.get(x.name), layers.producer.get(y.name)
        params = layers.graph.parameters
        if origin_y is not None and origin_y[0] == 1:
            same = origin_x == (0, origin_y[1])
        elif origin_y is not None:  # layer 1 reads layer 0's result: layer 0 reads one from before the stack
            same = origin_x is None and x.name not in params and x.dtype == y.dtype and x.shape == y.shape
        elif y.name in own[1]:
            same = x.name in own[0] and x.shape == y.shape and x.dtype == y.dtype
        elif y.name in params and y.name not in shared_params:
            px, py = params.get(x.name), params[y.name]
            cut = len(layers.path) + 2
            same = (
                px is not None
                and px.torch_name.startswith(f"{layers.path}.0.")
                and px.torch_name[cut:] == py.torch_name[cut:]
            )
        else:
            same = _equivalent(x, y, layers, shared_params)
        if not same:
            raise StackMismatch(f"{where}: operand {y.name} of layer 1 does not match operand {x.name} of layer 0")
    elif isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        if type(x) is not type(y) or len(x) != len(y):
            raise StackMismatch(f"{where}: arguments {x} and {y} differ")
        for xi, yi in zip(x, y):
            _compare_args(xi, yi, layers, own, shared_params, where)
    elif isinstance(x, dict) and isinstance(y, dict):
        if x.keys() != y.keys():
            raise StackMismatch(f"{where}: arguments {x} and {y} differ")
        for k in x:
            _compare_args(x[k], y[k], layers, own, shared_params, where)
    elif isinstance(x, Value) or isinstance(y, Value) or x != y or type(x) is not type(y):
        raise StackMismatch(f"{where}: arguments {x!r} and {y!r} differ")
