"""Building an NNEF document: identifiers, invocations, variables and the extensions they need."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from torch_to_nnef.errors import DTypeError
from torch_to_nnef.ir import Dim, Value

_TRACT_DTYPES = {"f16", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool"}


class Ref(str):
    """An identifier in the NNEF graph (as opposed to a string literal)."""


def literal(value: Any) -> str:
    """Formats a Python value as an NNEF literal."""
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DTypeError(f"NNEF has no literal for {value}")
        text = repr(value)
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} in NNEF")


def dim_literal(d: Dim) -> str:
    """A dimension: an int or a symbol expression (written without spaces)."""
    return str(d) if isinstance(d, int) else re.sub(r"\s+", "", d)


class NNEFBuilder:
    """Accumulates the body of an NNEF graph for one target."""

    def __init__(self, *, tract: bool) -> None:
        self.tract = tract
        self.lines: list[str] = []
        self.extensions: list[str] = []
        self.variables: dict[str, Any] = {}
        self._variable_refs: dict[str, Ref] = {}
        self._used: set[str] = set()

    def need(self, extension: str) -> None:
        """Declares an extension (``tract_registry tract_core``, ``tract_symbol S``)."""
        if extension not in self.extensions:
            self.extensions.append(extension)

    def fresh(self, base: str) -> Ref:
        """A new identifier derived from ``base``."""
        name = re.sub(r"\W", "_", base) or "t"
        if not (name[0].isalpha() or name[0] == "_"):
            name = "t_" + name
        candidate, i = name, 1
        while candidate in self._used:
            candidate = f"{name}_{i}"
            i += 1
        self._used.add(candidate)
        return Ref(candidate)

    def op(self, name: str, *args: Any, out: str | None = None, **attrs: Any) -> Ref:
        """Emits ``out = name(args, key = value, ...)`` and returns ``out``."""
        result = self.fresh(out or name)
        parts = [literal(a) for a in args] + [f"{k} = {literal(v)}" for k, v in attrs.items()]
        self.lines.append(f"{result} = {name}({', '.join(parts)});")
        return result

    def external(self, value: Value, name: str) -> Ref:
        """Declares a graph input."""
        ref = self.fresh(name)
        shape = "[" + ", ".join(dim_literal(d) for d in value.shape) + "]"
        if self.tract:
            self.lines.append(f"{ref} = tract_core_external(shape = {shape}, datum_type = '{value.dtype}');")
            self.need("tract_registry tract_core")
        else:
            kind = "scalar" if value.dtype.startswith("f") else "logical" if value.dtype == "bool" else "integer"
            self.lines.append(f"{ref} = external<{kind}>(shape = {shape});")
        return ref

    def variable(self, tensor: Any, label: str) -> Ref:
        """Declares a weight stored as ``<label>.dat`` (once per label: the same label gives the
        same ref, so callers must use one label per content).
        """
        if label in self._variable_refs:
            return self._variable_refs[label]
        array = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
        ref = self.fresh(label.replace(".", "_").replace("/", "_"))
        kind = "scalar" if array.dtype.kind == "f" else "logical" if array.dtype == bool else "integer"
        shape = "[" + ", ".join(str(d) for d in array.shape) + "]"
        self.lines.append(f"{ref} = variable<{kind}>(label = {literal(label)}, shape = {shape});")
        self.variables[label] = tensor
        self._variable_refs[label] = ref
        return ref

    def document(self, name: str, inputs: list[Ref], outputs: list[Ref], header: list[str]) -> str:
        """The complete ``graph.nnef`` text."""
        ext = [f"extension {e};" for e in self.extensions]
        body = "\n".join("  " + line for line in self.lines)
        return "\n".join(
            [
                "version 1.0;",
                "",
                *ext,
                *header,
                "",
                f"graph {name}( {', '.join(inputs)} ) -> ( {', '.join(outputs)} )",
                "{",
                body,
                "}",
                "",
            ]
        )
