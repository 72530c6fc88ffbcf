"""The op registry: one translation function per ATen kind, registered by decorator."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch_to_nnef.errors import T2NError
from torch_to_nnef.ir import Node, Value
from torch_to_nnef.nnef_graph import NNEFBuilder, Ref


class RegistryError(T2NError, RuntimeError):
    """A malformed or duplicate registration (a bug in a translation module)."""


@dataclass
class Context:
    """What a translation function sees: the builder, the target, and the refs of values."""

    g: NNEFBuilder
    tract: bool
    refs: dict[str, Ref] = field(default_factory=dict)
    declare: Callable[[Value], Ref] | None = None
    target: Any = None

    def flag(self, name: str) -> bool:
        """A boolean option of the inference target (``force_norm_in_f32``...); False if it has none."""
        return bool(getattr(self.target, name, False))

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


Translation = Callable[[Context, Node], Sequence[Ref] | Ref]

_KIND = re.compile(r"^[a-z_][a-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*$")
_REGISTRY: dict[str, Translation] = {}


def register(*kinds: str) -> Callable[[Translation], Translation]:
    """Registers a translation for one or more kinds (``"aten::relu"``); fails on duplicates."""

    def deco(fn: Translation) -> Translation:
        for kind in kinds:
            if not _KIND.match(kind):
                raise RegistryError(f"malformed op kind {kind!r} for {fn.__name__}: expected 'namespace::name'")
            if kind in _REGISTRY:
                raise RegistryError(f"{kind} is registered twice ({_REGISTRY[kind].__name__} and {fn.__name__})")
            _REGISTRY[kind] = fn
        return fn

    return deco


def lookup(kind: str) -> Translation | None:
    """The translation of ``kind``, if any."""
    return _REGISTRY.get(kind)


def supported_kinds() -> list[str]:
    """Every registered kind, sorted."""
    return sorted(_REGISTRY)
