"""The exporter's own graph representation, independent of how the model was captured.

A :class:`Graph` holds typed values (dtype and shape, dimensions either ints or expressions over
the user's single-letter symbols) and nodes keyed by their ATen kind (``"aten::conv1d"``), each
remembering the module path and the user's source line it came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Union

from torch_to_nnef.ir.dtypes import COMPLEX_PARTS

Dim = Union[int, str]
"""A dimension: a static size, or an expression over symbols such as ``"S"`` or ``"S - 2"``."""

COMPLEX_DTYPES = COMPLEX_PARTS
"""Complex dtypes and the real dtype of their parts. A complex value of shape ``S`` is held in NNEF
as a real tensor of shape ``S + [2]`` (real and imaginary parts on a trailing axis, as tract does);
nodes touching one are keyed in the ``complex::`` namespace (``complex::abs``), so that only
translations written for that layout see them.
"""


@dataclass(frozen=True)
class Value:
    """A tensor flowing in the graph."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def rank(self) -> int:
        """Number of dimensions."""
        return len(self.shape)


@dataclass(frozen=True)
class QuantizedValue(Value):
    """A per-tensor affine quantized tensor: ``real = scale * (integer - zero_point)``; ``dtype`` is
    the storage type (``u8`` for ``torch.quint8``, ``i8`` for ``torch.qint8``).
    """

    scale: float = 1.0
    zero_point: int = 0


@dataclass
class Node:
    """One operation: ``outputs = kind(*args)``.

    ``args`` mirror the ATen schema: :class:`Value` for tensors, Python numbers, bools, strings,
    lists, ``None``; symbolic integers are given as :class:`SymInt`.
    """

    kind: str
    args: tuple[Any, ...]
    outputs: tuple[Value, ...]
    module_path: str = ""
    """Dotted path of the innermost module that ran it (``encoder.layers.0.linear1``); "" at the top."""
    module_class: str = ""
    source: str = ""
    overload: str = ""
    """The ATen overload (``"Tensor"`` of ``aten::add.Tensor``); "" for the default one."""

    @property
    def op_name(self) -> str:
        """The kind with its overload, as torch names it (``aten::add.Tensor``, ``aten::relu``)."""
        return f"{self.kind}.{self.overload}" if self.overload else self.kind

    def where(self) -> str:
        """``module path (class) (source line)`` for messages."""
        place = self.module_path or "<top>"
        if self.module_class:
            place = f"{place} ({self.module_class})"
        return f"{place} ({self.source})" if self.source else place


@dataclass(frozen=True)
class SymInt:
    """An integer known only symbolically (e.g. ``x.size(2)`` under a dynamic axis)."""

    expr: str


@dataclass
class Parameter:
    """A weight of the model: its PyTorch name and its tensor."""

    torch_name: str
    tensor: Any


@dataclass
class Graph:
    """A captured model."""

    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]
    parameters: dict[str, Parameter] = field(default_factory=dict)
    symbols: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    """Each symbol of the graph and its range of values (lowest, highest or None)."""
    steps: dict[str, SizeStep] = field(default_factory=dict)
    """The dynamic axes whose sizes the model needs in steps, by the user's letter."""


@dataclass(frozen=True)
class SizeStep:
    """A dynamic axis that only takes sizes ``step * symbol + offset`` (e.g. a U-Net's height, a
    multiple of 8 so that its skip connections meet): the graph is written over ``symbol`` so that
    tract can prove the sizes equal where the model joins them.
    """

    symbol: str
    step: int
    offset: int = 0

    @property
    def form(self) -> str:
        """The size as tract reads it: ``8*H_8``, ``2*T_2+1``."""
        return f"{self.step}*{self.symbol}" + (f"+{self.offset}" if self.offset else "")

    def describe(self) -> str:
        """``multiples of 8``, ``2*k+1``, for messages."""
        return f"multiples of {self.step}" if not self.offset else f"{self.step}*k+{self.offset}"

    def next_size(self, size: int) -> int:
        """The first size of this form at or above ``size``."""
        return size + (self.offset - size) % self.step


def values_in(args: Any) -> Iterator[Value]:
    """The :class:`Value` s among ``args`` (nested in lists, tuples and dicts), in order."""
    if isinstance(args, Value):
        yield args
    elif isinstance(args, (list, tuple)):
        for a in args:
            yield from values_in(a)
    elif isinstance(args, dict):
        for a in args.values():
            yield from values_in(a)
