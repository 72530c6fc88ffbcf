"""A stack of decoder layers captured in part: the layers that repeat are traced twice, then repeated.

Tracing is what an export of a deep decoder spends its time on (torch.export walks every operation
of every layer with symbolic shapes). A :class:`Stack` says how the layers of an ``nn.ModuleList``
repeat: its first ``offset`` layers may each differ (DeepSeek's dense layers before its
mixture-of-experts ones), and from there every layer is alike the layer ``period`` before it (1:
all alike; 2: sliding-window and full attention alternating; 6: Gemma 3's five sliding-window
layers and a full one). Alike: the same code (same class, same plain attributes in every
submodule, the same entries in the config's per-layer lists such as ``layer_types``), weights of
the same shapes, and whatever the caller adds (the shapes of the layer's caches).

The model is captured with its first ``offset + 2 * period`` layers only (the traced layers), and
each following layer repeats the layer of the second period at its place in the period
(:meth:`Stack.template`): its nodes, with that layer's weights and, for each per-layer graph input
and output (a key-value cache), that layer's own. The last period may be partial.

Two periods, not one: the second period's nodes read the first period's results exactly as every
following period reads its predecessor's, which is what each copy is wired to. The two periods are
compared node by node, each layer of the first with the layer of the second at its place (kinds,
constant arguments, where each operand comes from); any difference keeps the full capture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import torch
from torch import nn

from torch_to_nnef.ir import Graph, Node, Parameter, SymInt, Value, values_in

LOGGER = logging.getLogger(__name__)

_PER_LAYER_ATTRIBUTES = frozenset({"layer_idx", "layer_id", "layer_number", "idx"})
"""Module attributes that number a layer (its place in the cache) rather than change its code."""

_PLAIN = (bool, int, float, str, type(None))


@dataclasses.dataclass(frozen=True)
class Stack:
    """How the layers of an ``nn.ModuleList`` repeat.

    Attributes:
        path: module path of the ``nn.ModuleList`` (``model.model.layers``).
        num_layers: its layers.
        offset: its first layers, traced and never repeated (they may each differ).
        period: from ``offset`` on, each layer is alike the layer ``period`` before it.
    """

    path: str
    num_layers: int
    offset: int = 0
    period: int = 1

    @property
    def traced(self) -> int:
        """The layers captured: the offset and two periods."""
        return self.offset + 2 * self.period

    def template(self, layer: int) -> int:
        """The traced layer that ``layer`` repeats: the second period's layer at its place in the
        period (``layer`` itself for a traced layer).
        """
        if layer < self.traced:
            return layer
        return self.offset + self.period + (layer - self.offset) % self.period

    def describe(self) -> str:
        """The stack in a few words (``model.model.layers: layer 0, then layers alike by periods of 2``)."""
        alike = "alike layers" if self.period == 1 else f"layers alike by periods of {self.period}"
        if self.offset == 0:
            return f"{self.path}: {alike}"
        first = "layer 0" if self.offset == 1 else f"layers 0-{self.offset - 1}"
        return f"{self.path}: {first}, then {alike}"


def find_period(keys: Sequence[Hashable]) -> tuple[int, int] | None:
    """The ``(offset, period)`` of a sequence of layers that traces the fewest of them, or None.

    ``keys[i]`` is what must be equal between two alike layers. From ``offset`` on, ``keys[i]``
    equals ``keys[i - period]``; the layers traced, ``offset + 2 * period``, must leave at least
    one to repeat. Of two periods that trace as many layers, the shorter is taken.
    """
    count = len(keys)
    best: tuple[int, int] | None = None
    for period in range(1, count // 2 + 1):
        breaks = [i for i in range(period, count) if keys[i] != keys[i - period]]
        offset = breaks[-1] - period + 1 if breaks else 0
        traced = offset + 2 * period
        if traced < count and (best is None or traced < best[0] + 2 * best[1]):
            best = (offset, period)
    return best


def find_stack(model: nn.Module, num_layers: int, per_layer: Sequence[Hashable] | None = None) -> Stack | None:
    """The stack of ``num_layers`` layers in ``model`` that repeat, or None.

    The first ``nn.ModuleList`` of ``num_layers`` layers for which :func:`find_period` finds an
    offset and a period, two layers being alike when they have the same class, parameters and
    buffers of the same names, shapes, dtypes and types, the same plain attributes (numbers,
    strings, flags) in every submodule, the layer index aside, the same entries in each list of the
    model's configs that has one entry per layer and names layers (``layer_types``), and the same
    ``per_layer`` entry (what the caller needs alike: the shapes of their caches).
    """
    if num_layers < 3:
        return None
    per_config = _per_layer_config(model, num_layers)
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) != num_layers:
            continue
        keys = [
            (type(layer), _signature(layer), per_config[i], per_layer[i] if per_layer is not None else None)
            for i, layer in enumerate(module)
        ]
        found = find_period(keys)
        if found is not None:
            return Stack(str(path), num_layers, *found)
    return None


def _configs(model: nn.Module) -> list[Any]:
    """The configs of ``model``'s modules, each once."""
    return list({id(c): c for c in (getattr(m, "config", None) for m in model.modules()) if c is not None}.values())


def _per_layer_config(model: nn.Module, num_layers: int) -> list[tuple[tuple[str, Any], ...]]:
    """For each layer, its entries of the configs' per-layer lists: lists of ``num_layers`` plain
    values whose name says they are about layers (``layer_types``, ``no_rope_layers``).
    """
    entries: list[list[tuple[str, Any]]] = [[] for _ in range(num_layers)]
    for config in _configs(model):
        for name, value in sorted(vars(config).items()):
            if (
                "layer" in name
                and isinstance(value, (list, tuple))
                and len(value) == num_layers
                and all(isinstance(v, _PLAIN) for v in value)
            ):
                for i, v in enumerate(value):
                    entries[i].append((name, v))
    return [tuple(e) for e in entries]


def _signature(layer: nn.Module) -> tuple[Any, ...]:
    """What must be equal between two layers that run the same code."""
    items: list[Any] = []
    for name, sub in layer.named_modules():
        attrs = tuple(
            sorted(
                (k, v)
                for k, v in vars(sub).items()
                if not k.startswith("_") and k not in _PER_LAYER_ATTRIBUTES and isinstance(v, _PLAIN)
            )
        )
        items.append((name, type(sub).__name__, attrs))
    for name, tensor in [*layer.named_parameters(), *layer.named_buffers()]:
        items.append((name, type(tensor).__name__, tuple(tensor.shape), tensor.dtype))
    return tuple(items)


@contextlib.contextmanager
def truncated(model: nn.Module, path: str, keep: int = 2) -> Iterator[None]:
    """While the block runs, the stack at ``path`` holds its first ``keep`` layers only, and the
    model's config (``num_hidden_layers``, ``layer_types``) says so.
    """
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    full = getattr(parent, name)
    saved: list[tuple[Any, str, Any]] = []
    try:
        setattr(parent, name, nn.ModuleList(list(full)[:keep]))
        for config in _configs(model):
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
    """The two traced periods differ, or the graph is not one the copies can be wired into."""


def _under(module_path: str, prefix: str) -> bool:
    return module_path == prefix or module_path.startswith(prefix + ".")


@dataclasses.dataclass
class _Layers:
    """The nodes of the two traced periods in a graph captured with ``stack.traced`` layers.

    Unit ``u`` is layer ``stack.offset + u``: units ``0 .. period - 1`` make the first period,
    ``period .. 2 * period - 1`` the second. A layer's nodes are those run inside its module and
    those outside it that compute from that layer's own graph inputs only (the cache objects built
    from the cache tensors before the stack), or, after the stack, from its results only (a cast of
    the cache it returned).
    """

    graph: Graph
    stack: Stack
    units: list[list[int]]
    """Each unit's nodes (indices in the graph), in the same order for the two periods."""
    producer: dict[str, tuple[int, int, int]]
    """Value name -> (unit, position of its node in that unit's list, output index)."""
    producers: dict[str, Node]
    """Value name -> the node computing it, for every node of the graph."""
    own: dict[str, tuple[int, int]]
    """Per-layer graph input name -> (unit, its place among that layer's inputs)."""
    extractors: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The extractor of each opaque node kind."""
    crossings: dict[str, str] = dataclasses.field(default_factory=dict)
    """Each value of the first period the second reads -> what the first reads in its place (and back)."""

    @property
    def period(self) -> int:
        return self.stack.period

    def layer(self, unit: int) -> int:
        return self.stack.offset + unit

    def output(self, unit: int, position: int, index: int) -> Value:
        return self.graph.nodes[self.units[unit][position]].outputs[index]

    @classmethod
    def find(cls, graph: Graph, stack: Stack, own: dict[str, tuple[int, int]]) -> _Layers:
        path, count = stack.path, 2 * stack.period
        reached: list[set[str]] = [set() for _ in range(count)]
        for name, (u, _) in own.items():
            reached[u].add(name)
        which: dict[int, int] = {}
        for i, node in enumerate(graph.nodes):
            names = {v.name for v in values_in(node.args)}
            stacked = node.module_path.startswith(f"{path}.")
            inside = [
                u
                for u in range(count)
                if _under(node.module_path, f"{path}.{stack.offset + u}") or (not stacked and names & reached[u])
            ]
            if len(inside) > 1:
                raise StackMismatch(f"{node.kind} at {node.where()} computes from several layers' own inputs")
            if inside:
                which[i] = inside[0]
                if not stacked:  # computed from the layer's own inputs only
                    reached[inside[0]].update(o.name for o in node.outputs)
        units: list[list[int]] = [[] for _ in range(count)]
        producer: dict[str, tuple[int, int, int]] = {}

        def add(u: int, i: int) -> None:
            units[u].append(i)
            producer.update({out.name: (u, len(units[u]) - 1, k) for k, out in enumerate(graph.nodes[i].outputs)})

        for i, u in which.items():
            add(u, i)
        # after the stack, nodes outside it that read one layer of the first period's results only
        # (a cast of the cache it returned) are that layer's; those reading the second period's
        # layer at its place alike are that one's
        in_stack = {i for i, n in enumerate(graph.nodes) if n.module_path.startswith(f"{path}.")}
        first_post: list[tuple[int, int]] = []
        for i, node in enumerate(graph.nodes):
            if i in in_stack or i in which:
                continue
            origins = {producer[v.name][0] for v in values_in(node.args) if v.name in producer}
            if len(origins) == 1 and (u := next(iter(origins))) < stack.period:
                first_post.append((i, u))
                add(u, i)
        taken = set(which) | {i for i, _ in first_post}
        for i0, u in first_post:
            a = graph.nodes[i0]
            mirrored = [
                (u + stack.period, *producer[v.name][1:]) if v.name in producer and producer[v.name][0] == u else None
                for v in values_in(a.args)
            ]
            for i, node in enumerate(graph.nodes):
                if i in taken or i in in_stack or node.kind != a.kind:
                    continue
                reads = [
                    producer[v.name] if v.name in producer and producer[v.name][0] >= stack.period else None
                    for v in values_in(node.args)
                ]
                if reads == mirrored:
                    taken.add(i)
                    add(u + stack.period, i)
                    break
            else:
                raise StackMismatch(
                    f"{a.kind} at {a.where()} reads the results of layer {stack.offset + u}, and nothing those of "
                    f"layer {stack.offset + u + stack.period}"
                )
        producers = {o.name: n for n in graph.nodes for o in n.outputs}
        return cls(graph, stack, units, producer, producers, own)

    def reads(self, unit: int) -> set[tuple[int, int, int]]:
        """The values of other units that the nodes of ``unit`` read."""
        return {
            self.producer[v.name]
            for i in self.units[unit]
            for v in values_in(self.graph.nodes[i].args)
            if v.name in self.producer and self.producer[v.name][0] != unit
        }


def repeat_layers(
    graph: Graph,
    stack: Stack,
    tensor: Callable[[str], Any],
    layer_inputs: Callable[[int], Sequence[str]],
    opaque_kinds: MutableMapping[str, Any] | None = None,
    module: Callable[[str], Any] | None = None,
) -> Graph:
    """The graph of the model with all ``stack.num_layers`` layers, from ``graph`` captured with the
    first ``stack.traced``.

    Args:
        graph: captured with the stack truncated to its first ``stack.traced`` layers.
        stack: the layers and how they repeat; its path is a module path of the captured model
            (``model.model.layers``).
        tensor: the full model's tensor of a PyTorch name (``model.model.layers.5.mlp.up_proj.weight``).
        layer_inputs: the names of the graph inputs of layer ``j`` (its cache), in the same order
            for alike layers; those of the traced layers are inputs of ``graph``.
        opaque_kinds: the extractor of each opaque module's node kind (each knows one module): the
            copies of an opaque module of the second period get a kind of their own, whose
            extractor (of the same class) knows that layer's module, given by ``module``.
        module: the full model's submodule of a path (``model.model.layers.5.mlp.experts``); without
            it, a layer holding an opaque module is not repeated.

    Raises:
        StackMismatch: the two traced periods differ, values cross the stack in a way the copies
            cannot reproduce, or a layer holds an opaque module and no ``module`` is given.
    """
    path, offset, period, traced, num_layers = stack.path, stack.offset, stack.period, stack.traced, stack.num_layers
    inputs_by_name = {v.name: v for v in graph.inputs}
    own = {name: (u, m) for u in range(2 * period) for m, name in enumerate(layer_inputs(offset + u))}
    if not set(own) <= set(inputs_by_name):
        raise StackMismatch(f"the per-layer inputs of layers {offset} to {traced - 1} are not all graph inputs")
    layers = _Layers.find(graph, stack, own)
    for q in range(period):
        count_a, count_b = len(layers.units[q]), len(layers.units[q + period])
        if not count_b or count_a != count_b:
            raise StackMismatch(f"layers {offset + q} and {offset + q + period} have {count_a} and {count_b} nodes")
    second = sorted(i for u in range(period, 2 * period) for i in layers.units[u])
    unit_of = {i: u for u, nodes in enumerate(layers.units) for i in nodes}
    extractors = opaque_kinds if opaque_kinds is not None else {}
    opaque = sorted({graph.nodes[i].kind for i in second} & set(extractors))
    if opaque and module is None:
        raise StackMismatch(f"the repeated layers hold opaque modules ({', '.join(opaque)})")
    layers.extractors = extractors
    shared_params = {v for v, p in graph.parameters.items() if not p.torch_name.startswith(f"{path}.")}
    for q in range(period):
        for a, b in zip(layers.units[q], layers.units[q + period]):
            _compare(graph.nodes[a], graph.nodes[b], layers, q, shared_params)
    in_layers = set(unit_of)
    # the second period's nodes: before the stack (from their own inputs), in its modules, after the stack
    inside = [i for i in second if graph.nodes[i].module_path.startswith(f"{path}.")]
    before = [i for i in second if i < inside[0] and i not in inside]
    after = [i for i in second if i > inside[-1] and i not in inside]
    if len(before) + len(inside) + len(after) != len(second):
        raise StackMismatch("the repeated layers' nodes outside their modules are not all before or after the stack")
    last = inside[-1]
    tail_reads: set[tuple[int, int, int]] = set()
    for i, node in enumerate(graph.nodes):
        if i in in_layers:
            continue
        used = [layers.producer[v.name] for v in values_in(node.args) if v.name in layers.producer]
        if used and (i < last or any(u < period for u, _, _ in used)):
            raise StackMismatch(f"{node.kind} at {node.where()} reads the layers' values out of order")
        tail_reads.update(used)

    taken = {v.name for v in graph.inputs} | set(graph.parameters) | {o.name for n in graph.nodes for o in n.outputs}

    def unique(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    parameters = dict(graph.parameters)
    inputs = list(graph.inputs)
    mappings: dict[int, dict[str, Value]] = {}
    for j in range(traced, num_layers):
        template = layer_inputs(stack.template(j))
        names = layer_inputs(j)
        if len(names) != len(template):
            raise StackMismatch(
                f"layer {j} has {len(names)} per-layer inputs, layer {stack.template(j)} has {len(template)}"
            )
        mappings[j] = {}
        for name, new in zip(template, names):
            old = inputs_by_name[name]
            mappings[j][name] = Value(new, old.dtype, old.shape)
            inputs.append(mappings[j][name])
    identity = {o.name: o for i in second for o in graph.nodes[i].outputs} | inputs_by_name
    new_kinds: dict[str, Any] = {}
    """The extractors of the copies' opaque nodes, given to ``opaque_kinds`` once the graph is complete."""

    def earlier(name: str, unit: int, source: int, j: int) -> Value:
        """Layer ``j``'s operand ``name``, a value of unit ``unit`` (another layer's) that the
        template of ``j``, unit ``source``, reads.
        """
        if name in own:
            from_unit, m = own[name]
            second_name = layer_inputs(layers.layer(from_unit + (period if from_unit < period else 0)))[m]
        else:
            from_unit, position, index = layers.producer[name]
            u = from_unit + (period if from_unit < period else 0)
            second_name = layers.output(u, position, index).name
        layer = j - (source - unit)
        found = identity.get(second_name) if layer < traced else mappings[layer].get(second_name)
        if found is None:
            raise StackMismatch(f"layer {j} reads {name} of layer {layer} before it is computed")
        return found

    def copy(i: int, j: int) -> Node:
        """Node ``i`` of the second period for layer ``j``."""
        node, mapping = graph.nodes[i], mappings[j]
        source = unit_of[i]
        template_prefix, prefix = f"{path}.{layers.layer(source)}", f"{path}.{j}"
        for arg in values_in(node.args):
            if arg.name in mapping:
                continue
            origin = own.get(arg.name, layers.producer.get(arg.name))
            if origin is not None and origin[0] != source:  # another layer's value
                mapping[arg.name] = earlier(arg.name, origin[0], source, j)
            elif origin is not None:
                raise StackMismatch(f"{node.kind} at {node.where()} reads {arg.name} before it is computed")
            elif arg.name in graph.parameters and arg.name not in shared_params:
                torch_name = prefix + graph.parameters[arg.name].torch_name[len(template_prefix) :]
                value_name = unique("p_" + torch_name.replace(".", "_"))
                parameters[value_name] = Parameter(torch_name, tensor(torch_name))
                mapping[arg.name] = Value(value_name, arg.dtype, arg.shape)
        outs = tuple(Value(unique(f"{o.name}_layer{j}"), o.dtype, o.shape) for o in node.outputs)
        mapping.update({o.name: n for o, n in zip(node.outputs, outs)})
        module_path = node.module_path
        if _under(module_path, template_prefix):
            module_path = prefix + module_path[len(template_prefix) :]
        kind = node.kind
        if kind in extractors and module is not None:  # the same extractor, on layer j's module
            extractor = extractors[kind]
            path_j = prefix + extractor.path[len(template_prefix) :]
            kind = unique(f"{node.kind}_layer{j}")
            new_kinds[kind] = type(extractor)(module(path_j), path_j)
        return dataclasses.replace(
            node, kind=kind, args=_substitute(node.args, mapping), outputs=outs, module_path=module_path
        )

    # what follows the stack reads the last layers' results
    tail_sources = _tail(layers, tail_reads)
    # each group of the second period's nodes is repeated after its last node, layer after layer:
    # the order of a capture of every layer
    groups = [g for g in (before, inside, after) if g]
    copies = {
        g[-1]: [copy(k, j) for j in range(traced, num_layers) for k in g if unit_of[k] == stack.template(j) - offset]
        for g in groups
    }
    tail = {name: mappings[layer][source] for name, (layer, source) in tail_sources.items()}
    extractors.update(new_kinds)
    nodes: list[Node] = []
    for i, node in enumerate(graph.nodes):
        nodes.append(
            node if i <= last or i in in_layers else dataclasses.replace(node, args=_substitute(node.args, tail))
        )
        nodes.extend(copies.get(i, []))
    per_layer_outputs = {
        u: [o for o in graph.outputs if layers.producer.get(o.name, (-1,))[0] == u] for u in range(period, 2 * period)
    }
    outputs = list(graph.outputs) + [
        mappings[j][o.name] for j in range(traced, num_layers) for o in per_layer_outputs[stack.template(j) - offset]
    ]
    return Graph(
        inputs=inputs,
        outputs=outputs,
        nodes=nodes,
        parameters=parameters,
        symbols=dict(graph.symbols),
        steps=dict(graph.steps),
    )


def _tail(layers: _Layers, reads: set[tuple[int, int, int]]) -> dict[str, tuple[int, str]]:
    """For each value of the second period that the nodes after the stack read (``reads``), the
    layer and the value of its template that gives the value of the full stack to read in its place.

    With whole periods, it is the same value of the layer as far from the last one. When the last
    period is partial, the last layer is not at the last traced layer's place in the period: the
    nodes after the stack must then read one value of the last traced layer, the one the second
    period's first layer reads of the layer before it, and the last layer's template must give one
    value to the layer after it, which is read in its place.

    Raises:
        StackMismatch: the last period is partial and the layers do not pass one value from each to
            the next.
    """
    stack, period = layers.stack, layers.period
    shift = stack.num_layers - stack.traced
    if shift % period == 0:
        sources: dict[str, tuple[int, str]] = {}
        for u, position, index in reads:
            name = layers.output(u, position, index).name
            sources[name] = (layers.layer(u) + shift, name)
        return sources
    end_unit = stack.template(stack.num_layers - 1) - stack.offset
    ends = layers.reads(end_unit + 1)
    read = next(iter(reads)) if len(reads) == 1 else None
    if (
        read is None
        or len(ends) != 1
        or read[0] != 2 * period - 1
        or next(iter(ends))[0] != end_unit
        or layers.reads(period) != {(period - 1, *read[1:])}
    ):
        raise StackMismatch(
            "the last period is partial, and the layers do not pass one value from each to the next that the "
            "nodes after the stack read"
        )
    value, end = layers.output(*read), layers.output(*next(iter(ends)))
    if not _alike(value, end):
        raise StackMismatch(f"the last period is partial, and the layers' results {value} and {end} differ")
    return {value.name: (stack.num_layers - 1, end.name)}


def _alike(x: Value, y: Value) -> bool:
    """Whether ``x`` and ``y`` have the same dtype and shape: symbolic sizes are compared as
    expressions (a capture writes ``P + S`` or ``S + P`` as the order of torch's symbols has it).
    """
    return (
        x.dtype == y.dtype
        and len(x.shape) == len(y.shape)
        and all(
            a == b or (isinstance(a, str) and isinstance(b, str) and _size(a) == _size(b))
            for a, b in zip(x.shape, y.shape)
        )
    )


def _same_constant(x: Any, y: Any) -> bool:
    """Whether two arguments other than values are equal (symbolic integers as expressions)."""
    if isinstance(x, SymInt) and isinstance(y, SymInt):
        return x == y or _size(x.expr) == _size(y.expr)
    return type(x) is type(y) and x == y


@functools.lru_cache(maxsize=4096)
def _size(text: str) -> Any:
    """A symbolic size as a sympy expression, its names as symbols (the text itself if it does not parse)."""
    import sympy  # type: ignore[import-untyped]
    from sympy.parsing.sympy_parser import parse_expr  # type: ignore[import-untyped]

    names = {n: sympy.Symbol(n) for n in re.findall(r"\b([A-Za-z_]\w*)\b(?!\s*\()", text)}
    try:
        return parse_expr(text, local_dict=names)
    except Exception:
        return text


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
    if not _alike(x, y) or depth > 8:
        return False
    params = layers.graph.parameters
    if x.name in shared_params and y.name in shared_params:
        a, b = params[x.name].tensor, params[y.name].tensor
        if not (isinstance(a, torch.Tensor) and type(a) is type(b)):
            return False
        if "meta" in (a.device.type, b.device.type):  # no values: the same tensor, or both empty
            return a is b or (a.numel() == 0 and b.numel() == 0 and a.shape == b.shape and a.dtype == b.dtype)
        return bool(torch.equal(a, b))
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
        return not isinstance(p, Value) and not isinstance(q, Value) and _same_constant(p, q)

    return same(nx.args, ny.args)


def _compare(a: Node, b: Node, layers: _Layers, unit: int, shared_params: set[str]) -> None:
    """Raises :class:`StackMismatch` unless node ``b`` of the second period does what node ``a`` of
    the first does (in unit ``unit``), on the second period's operands.
    """
    where = f"{b.kind} at {b.where()}"
    first, second = (
        f"{layers.stack.path}.{layers.layer(unit)}.",
        f"{layers.stack.path}.{layers.layer(unit + layers.period)}.",
    )
    opaque_a, opaque_b = layers.extractors.get(a.kind), layers.extractors.get(b.kind)
    same_kind = a.kind == b.kind or (
        opaque_a is not None
        and opaque_b is not None
        and type(opaque_a) is type(opaque_b)
        and opaque_a.path.startswith(first)
        and opaque_b.path == second + opaque_a.path[len(first) :]
    )
    if not same_kind or len(a.outputs) != len(b.outputs):
        raise StackMismatch(
            f"{a.kind} in layer {layers.layer(unit)} but {where} in layer {layers.layer(unit + layers.period)}"
        )
    for x, y in zip(a.outputs, b.outputs):
        if not _alike(x, y):
            raise StackMismatch(f"{where}: outputs {x} and {y} differ")
    _compare_args(a.args, b.args, layers, (first, second), shared_params, where)


def _compare_args(
    x: Any, y: Any, layers: _Layers, prefixes: tuple[str, str], shared_params: set[str], where: str
) -> None:
    if isinstance(x, Value) and isinstance(y, Value):
        period, params = layers.period, layers.graph.parameters
        origin_x, origin_y = layers.producer.get(x.name), layers.producer.get(y.name)
        if origin_y is not None and origin_y[0] >= period:
            same = origin_x == (origin_y[0] - period, *origin_y[1:])
        elif origin_y is not None:  # the second period reads the first's result: the first reads one from before
            same = (
                origin_x is None
                and x.name not in params
                and x.name not in layers.own
                and _alike(x, y)
                and layers.crossings.setdefault(y.name, x.name) == x.name
                and layers.crossings.setdefault(x.name, y.name) == y.name
            )
        elif y.name in layers.own:
            unit, m = layers.own[y.name]
            same = layers.own.get(x.name) == (unit - period, m) and _alike(x, y)
        elif y.name in params and y.name not in shared_params:
            px, py = params.get(x.name), params[y.name]
            first, second = prefixes
            same = (
                px is not None
                and px.torch_name.startswith(first)
                and py.torch_name.startswith(second)
                and px.torch_name[len(first) :] == py.torch_name[len(second) :]
            )
        else:
            same = _equivalent(x, y, layers, shared_params)
        if not same:
            raise StackMismatch(f"{where}: operand {y.name} of the second period does not match operand {x.name}")
    elif isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        if type(x) is not type(y) or len(x) != len(y):
            raise StackMismatch(f"{where}: arguments {x} and {y} differ")
        for xi, yi in zip(x, y):
            _compare_args(xi, yi, layers, prefixes, shared_params, where)
    elif isinstance(x, dict) and isinstance(y, dict):
        if x.keys() != y.keys():
            raise StackMismatch(f"{where}: arguments {x} and {y} differ")
        for k in x:
            _compare_args(x[k], y[k], layers, prefixes, shared_params, where)
    elif isinstance(x, Value) or isinstance(y, Value) or not _same_constant(x, y):
        raise StackMismatch(f"{where}: arguments {x!r} and {y!r} differ")
