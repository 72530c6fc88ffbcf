"""The op registry: one translation function per ATen operator, registered by decorator.

A translation is registered under the operator's name as torch spells it, with its overload:
``@register("aten::add.Tensor", "aten::add.Scalar")``; a name without an overload is the default
one (``"aten::relu"``). Its parameters mirror the operator's schema, and the registry binds the
node's arguments to them by Python's own rules (positionals in schema order, keyword-only ones by
name)::

    @register("aten::leaky_relu")
    def leaky_relu(ctx: Context, self: Value, negative_slope: float = 0.01) -> Ref:
        ...

``ctx.node`` is the node being translated (its outputs, its place in the model for messages).
:func:`registration_problems` resolves every registered name against ``torch.ops`` and compares
each translation's parameters with the schema's arguments (the test suite runs it).

Names outside torch's namespaces are the IR's own conventions: ``complex::<name>`` is an ATen
operator on complex tensors (same schema, complex layout); ``quantized::aten_<name>`` an ATen
operator on quantized tensors (:data:`OWN_KINDS`); and torch's quantized convolutions and linear
layers carry their packed weights unpacked (the schemas of
:data:`~torch_to_nnef.ir.quantized.UNPACKED_SCHEMAS`).

A translation may not take the whole node (``def f(ctx, node)``): registering one fails, so that
every translation reads like its schema.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch_to_nnef.errors import T2NError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.ir.quantized import UNPACKED_SCHEMAS, VIA_FLOAT
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref


class RegistryError(T2NError, RuntimeError):
    """A malformed or duplicate registration (a bug in a translation module)."""


@dataclass
class Context:
    """What a translation function sees: the builder, the target, the refs of values and the node."""

    g: NNEFBuilder
    tract: bool
    refs: dict[str, Ref] = field(default_factory=dict)
    declare: Callable[[Value], Ref] | None = None
    target: Any = None
    node: Node | None = None
    """The node being translated (set by :func:`translate_node`)."""

    def at(self, node: Node) -> Context:
        """A copy of the context that translates ``node`` (it shares the refs and the builder)."""
        return dataclasses.replace(self, node=node)

    @property
    def out(self) -> Value:
        """The first output of the node being translated."""
        if self.node is None:
            raise RegistryError("no node is being translated")
        return self.node.outputs[0]

    def where(self) -> str:
        """``kind at module path (class) (source line)`` of the node being translated, for messages."""
        return f"{self.node.kind} at {self.node.where()}" if self.node is not None else "<graph>"

    def flag(self, name: str) -> bool:
        """A boolean option of the inference target (``force_norm_in_f32``...); False if it has none."""
        return bool(getattr(self.target, name, False))

    @property
    def khronos_tools(self) -> bool:
        """Whether the target is Khronos and may write the operators its tools added to the
        specification (``gather``, ``cast``...: ``KhronosNNEF()``, not ``strict_spec``).
        """
        return not self.tract and not bool(getattr(self.target, "strict_spec", False))

    def tract_at_least(self, version: tuple[int, int, int]) -> bool:
        """Whether the target is tract at ``version`` or later."""
        return self.tract and tuple(getattr(self.target, "version_tuple", (0, 0, 0))) >= version

    def ref(self, v: Any) -> Any:
        """The NNEF expression of an argument: a ref for a tensor, the value itself otherwise."""
        if isinstance(v, Value):
            if v.name not in self.refs:
                if self.declare is None:
                    raise KeyError(v.name)
                self.refs[v.name] = self.declare(v)
            return self.refs[v.name]
        return v


Translation = Callable[..., Sequence[Ref] | Ref]
"""``fn(ctx, *schema_arguments)``: the schema's arguments as parameters, after the context."""

_NAME = re.compile(r"^([a-z_][a-z0-9_]*)::([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?$")


@dataclass(frozen=True)
class Registration:
    """A translation and the operator name it is registered under."""

    name: str
    """``aten::add.Tensor``, ``aten::relu`` (the default overload)."""
    fn: Translation

    @property
    def kind(self) -> str:
        """The name without its overload (``aten::add``)."""
        return self.name.split(".", 1)[0]

    @property
    def overload(self) -> str:
        """The overload (``Tensor``), "" for the default one."""
        return self.name.split(".", 1)[1] if "." in self.name else ""


_REGISTRY: dict[str, Registration] = {}


def _takes_node(fn: Translation) -> bool:
    params = list(inspect.signature(fn).parameters)
    return len(params) == 2 and params[1] == "node"


def register(*names: str) -> Callable[[Translation], Translation]:
    """Registers a translation for one or more operators (``"aten::add.Tensor"``); fails on a
    malformed name or a name registered twice.
    """

    def deco(fn: Translation) -> Translation:
        if _takes_node(fn):
            raise RegistryError(
                f"{fn.__name__} takes the whole node: name its parameters as the schema of {', '.join(names)} does"
            )
        for name in names:
            if not _NAME.match(name):
                raise RegistryError(
                    f"malformed operator name {name!r} for {fn.__name__}: expected 'namespace::name' or "
                    "'namespace::name.overload'"
                )
            if name in _REGISTRY:
                raise RegistryError(f"{name} is registered twice ({_REGISTRY[name].fn.__name__} and {fn.__name__})")
            _REGISTRY[name] = Registration(name, fn)
        return fn

    return deco


def resolve(kind: str, overload: str = "") -> Registration | None:
    """The registration that translates ``kind.overload``: the one of that exact name (for the kinds
    of :data:`OWN_KINDS`, which forward any overload's arguments, the one of ``kind`` alone).
    """
    if overload:
        exact = _REGISTRY.get(f"{kind}.{overload}")
        if exact is not None:
            return exact
        return _REGISTRY.get(kind) if kind in OWN_KINDS else None
    return _REGISTRY.get(kind)


def lookup(kind: str, overload: str = "") -> Translation | None:
    """The translation of ``kind`` (with ``overload``), if any."""
    found = resolve(kind, overload)
    return found.fn if found is not None else None


def split_arguments(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A node's positional arguments and its keyword-only ones (the trailing dict, if any)."""
    if args and isinstance(args[-1], dict):
        return args[:-1], args[-1]
    return args, {}


def translate_node(ctx: Context, node: Node, registration: Registration | None = None) -> Sequence[Ref] | Ref:
    """Translates ``node`` with its registered translation, its arguments bound to the parameters."""
    found = registration or resolve(node.kind, node.overload)
    if found is None:
        raise RegistryError(f"{node.op_name} at {node.where()} has no translation")
    at = ctx.at(node)
    positional, keywords = split_arguments(node.args)
    try:
        return found.fn(at, *positional, **keywords)
    except TypeError as exc:
        signature = inspect.signature(found.fn)
        try:
            signature.bind(at, *positional, **keywords)
        except TypeError:  # the arguments do not fit the schema: say which operator and how
            raise RegistryError(
                f"{node.op_name} at {node.where()}: its arguments do not fit {found.fn.__name__}{signature}: {exc}"
            ) from exc
        raise


def registrations() -> list[Registration]:
    """Every registration, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def supported_kinds() -> list[str]:
    """Every registered operator kind (without overloads), sorted."""
    return sorted({r.kind for r in _REGISTRY.values()})


OWN_KINDS = frozenset(f"quantized::aten_{name}" for name in VIA_FLOAT)
"""Kinds the capture makes up for an ATen op on quantized tensors (:mod:`torch_to_nnef.ir.quantized`):
their arguments are the ATen op's, which their translation hands to the float translation."""

OWN_SCHEMAS = frozenset({"complex"})
"""Namespaces whose operators are the IR's own conventions over an ATen schema: ``complex::abs`` is
``aten::abs`` on the complex layout."""


def torch_schema(name: str) -> Any:
    """The ``torch.FunctionSchema`` of an operator name (``aten::add.Tensor``), None if torch has no
    such operator; ``complex::<name>`` is looked up as ``aten::<name>``, and the quantized operators
    whose packed weights the capture unpacks have the schemas of :data:`UNPACKED_SCHEMAS`.
    """
    import torch

    if name in UNPACKED_SCHEMAS:
        return torch._C.parse_schema(name + UNPACKED_SCHEMAS[name])
    match = _NAME.match(name)
    if match is None:
        return None
    namespace, op, overload = match.groups()
    if namespace in OWN_SCHEMAS:
        namespace = "aten"
    try:
        packet = getattr(getattr(torch.ops, namespace), op)
        return getattr(packet, overload or "default")._schema
    except (AttributeError, RuntimeError):
        return None


def registration_problems(own_kinds: frozenset[str] = OWN_KINDS) -> list[str]:
    """What is wrong with the registry, one line each: names torch does not have, and translations
    whose parameters do not mirror their operator's schema (names, order, keyword-only ones).

    ``own_kinds`` are kinds that capture gives with arguments of its own (no torch schema to match).
    """
    problems = []
    for reg in registrations():
        if reg.kind in own_kinds:
            continue
        schema = torch_schema(reg.name)
        if schema is None:
            problems.append(f"{reg.name} ({reg.fn.__name__}): torch has no such operator")
        else:
            problem = _signature_problem(reg.fn, schema)
            if problem:
                problems.append(f"{reg.name} ({reg.fn.__name__}): {problem}")
    return problems


def _signature_problem(fn: Translation, schema: Any) -> str | None:
    params = list(inspect.signature(fn).parameters.values())[1:]  # after ctx
    wanted = [(a.name, bool(a.kwarg_only)) for a in schema.arguments]
    got = [(p.name, p.kind is inspect.Parameter.KEYWORD_ONLY) for p in params[: len(wanted)]]
    if got != wanted:
        text = ", ".join(("*" if k else "") + n for n, k in wanted)
        return f"parameters ({', '.join(p.name for p in params)}) differ from the schema's ({text})"
    extra = [p.name for p in params[len(wanted) :] if p.default is inspect.Parameter.empty]
    if extra:
        return f"parameters {extra} are not in the schema and have no default"
    return None
