"""Building an NNEF document: identifiers, invocations, variables and the extensions they need."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from torch_to_nnef._rust import Q40Tensor
from torch_to_nnef.check.versions import needs_newer
from torch_to_nnef.errors import DTypeError, TranslationError
from torch_to_nnef.ir import Dim, Value
from torch_to_nnef.ir.quantized import PendingQ4_0


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
        text = repr(value).replace("e+", "e")  # tract < 0.23 reads 1e38, not 1e+38
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} in NNEF")


def dim_literal(d: Dim) -> str:
    """A dimension: an int or a symbol expression in tract's syntax (no spaces; torch's floor
    division ``//`` is tract's ``/`` on these non-negative sizes; sympy's ``Max`` and ``Min``, as
    from Python's ``max(0, n - S)`` on a size, are tract's ``max`` and ``min``). A leading minus is
    written as a subtraction from 0: tract's parser reads ``-P-S+1`` as ``-(P-S+1)``, and reads no
    unary minus in a dimension.
    """
    if isinstance(d, int):
        return str(d)
    text = re.sub(r"\s+", "", d).replace("//", "/")
    text = re.sub(r"\b(Max|Min)\(", lambda m: m[1].lower() + "(", text)
    text = re.sub(r"(^|[(,])-", r"\g<1>0-", text)
    # tract has no powers: H_8**2 (a flattened square of one symbol) as H_8*H_8
    return re.sub(r"([A-Za-z_]\w*)\*\*(\d+)", lambda m: "*".join([m[1]] * int(m[2])), text)


NAMING_SCHEMES = ("raw", "natural_verbose", "natural_verbose_camel", "numeric")
"""How intermediate identifiers are named: after the ATen node (``raw``: ``conv2d_1``), after the
module path and node (``natural_verbose``: ``features_0_conv2d``; ``natural_verbose_camel``:
``features0Conv2d``), or by a counter (``numeric``: ``v12``). Inputs and outputs keep their names.
"""


def _camel(text: str) -> str:
    parts = [p for p in re.split(r"[\W_]+", text) if p]
    return (parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])) if parts else text


_ORDERINGS = ("lt", "le", "gt", "ge")
_SIGNED = ("i8", "i16", "i32", "i64", "f16", "f32", "f64")
_COORDINATE_OPS = frozenset(
    {"unsqueeze", "squeeze", "reshape", "transpose", "slice", "tile", "add", "sub", "mul", "neg", "min", "max"}
)
"""Ops whose result tract still sees as a function of coordinates when their operands are."""

TOOLS_OPERATORS = frozenset(
    {
        *("gather", "cast", "any_reduce", "all_reduce"),
        *("gelu", "silu", "selu"),
        *("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh"),
        *("min_max_linear_quantize", "zero_point_linear_quantize"),
    }
)
"""Operators the Khronos tools define (``nnef.StandardOperations``, the NNEF-Tools interpreter) that
the NNEF 1.0.5 text lacks: written for ``KhronosNNEF()``, refused with ``KhronosNNEF(strict_spec=True)``."""

SPEC_OPERATORS = frozenset(
    {
        *("external", "variable", "constant", "update"),
        *("reshape", "transpose", "concat", "split", "slice", "squeeze", "unsqueeze", "stack", "unstack"),
        *("tile", "pad"),
        *("add", "sub", "mul", "div", "pow", "exp", "log", "log2", "sin", "cos", "abs", "sign", "rcp", "neg"),
        *("copy", "lt", "gt", "le", "ge", "eq", "ne", "and", "or", "not", "floor", "ceil", "round"),
        *("select", "sqr", "sqrt", "rsqr", "rsqrt", "min", "max", "clamp", "matmul", "linear"),
        *("conv", "deconv", "separable_conv", "separable_deconv", "box", "debox", "argmax_pool", "sample"),
        *("desample", "nearest_downsample", "area_downsample", "nearest_upsample", "multilinear_upsample"),
        *("sum_reduce", "max_reduce", "min_reduce", "argmax_reduce", "argmin_reduce", "mean_reduce", "moments"),
        *("relu", "sigmoid", "tanh", "softabs", "softmax", "softplus", "elu", "prelu", "leaky_relu"),
        *("max_pool_with_index", "max_pool", "avg_pool", "rms_pool"),
        *("local_response_normalization", "local_mean_normalization", "local_variance_normalization"),
        *("local_contrast_normalization", "l1_normalization", "l2_normalization", "batch_normalization"),
        *("avg_roi_pool", "max_roi_pool", "roi_resample", "avg_roi_align", "max_roi_align"),
        *("linear_quantize", "logarithmic_quantize", "copy_n", "add_n"),
    }
)
"""The operators of the NNEF 1.0.5 text, all that ``KhronosNNEF(strict_spec=True)`` writes."""

LITERAL_PREFIXES = ("true", "false")
"""Identifiers starting with these are read as the logical literal by tract's parser."""


class NNEFBuilder:
    """Accumulates the body of an NNEF graph for one target."""

    def __init__(
        self,
        *,
        tract: bool,
        naming_scheme: str = "raw",
        tract_version: tuple[int, int, int] | None = None,
        spec_only: bool = False,
    ) -> None:
        """Args:
        tract: tract's extensions may be used.
        naming_scheme: how intermediate identifiers are named (one of :data:`NAMING_SCHEMES`).
        tract_version: the target tract release: operators it cannot read are listed in
            :attr:`too_new`.
        spec_only: no operator of :data:`TOOLS_OPERATORS` (the tools define them, the
            specification's text does not): one raises a :class:`TranslationError`.
        """
        if naming_scheme not in NAMING_SCHEMES:
            raise ValueError(f"unknown naming scheme {naming_scheme!r}: use one of {', '.join(NAMING_SCHEMES)}")
        self.tract = tract
        self.spec_only = spec_only
        self.naming_scheme = naming_scheme
        self.scope = ""
        """The module path of the node being translated (used by the natural schemes)."""
        self.lines: list[str] = []
        self.extensions: list[str] = []
        self.variables: dict[str, Any] = {}
        self._variable_refs: dict[str, Ref] = {}
        self.block_quantized: set[str] = set()
        """Refs of the variables stored as Q4_0 blocks (ops reading them may need extra attributes)."""
        self.fragments: list[str] = []
        """Fragment definitions written before the graph (e.g. the bodies of ``tract_core_scan`` loops)."""
        self._used: set[str] = set()
        self._reserved: set[str] = set()
        self._counter = 0
        self.tract_version = tract_version
        self.too_new: list[tuple[str, tuple[int, int, int], str]] = []
        """(operator, release it needs, :attr:`where`) of each operator the target cannot read."""
        self.where = ""
        """What is being translated (``aten::cumsum at encoder.norm (model.py:12)``), for :attr:`too_new`."""
        self._defined_at: dict[str, int] = {}
        """Line index of the assignment of each op result (inputs and variables are not listed)."""
        self._renamed: dict[str, Ref] = {}
        self._coordinates: dict[str, str] = {}
        """Results that tract sees as functions of element coordinates (built from ``tract_core_range``
        by the ops of :data:`_COORDINATE_OPS`), with their dtype (see :meth:`_order_of_coordinates`)."""
        self._scalars: set[str] = set()
        """Variables of one element (tract keeps a coordinate expression through them)."""

    def need(self, extension: str) -> None:
        """Declares an extension (``tract_registry tract_core``, ``tract_symbol S``)."""
        if extension not in self.extensions:
            self.extensions.append(extension)

    def fresh(self, base: str, *, keep: bool = False) -> Ref:
        """A new identifier derived from ``base`` under the naming scheme (as is when ``keep``)."""
        if not keep and self.naming_scheme == "numeric":
            base = f"v{self._counter}"
            self._counter += 1
        elif not keep and self.naming_scheme.startswith("natural") and self.scope:
            base = f"{self.scope}_{base}"
            if self.naming_scheme == "natural_verbose_camel":
                base = _camel(base)
        name = re.sub(r"\W", "_", base) or "t"
        # tract's parser reads an identifier that starts with a logical literal as that literal
        if not (name[0].isalpha() or name[0] == "_") or name.startswith(LITERAL_PREFIXES):
            name = "t_" + name
        candidate, i = name, 1
        while candidate in self._used:
            candidate = f"{name}_{i}"
            i += 1
        self._used.add(candidate)
        return Ref(candidate)

    def op(self, name: str, *args: Any, out: str | None = None, **attrs: Any) -> Ref:
        """Emits ``out = name(args, key = value, ...)`` and returns ``out``.

        ``copy`` of an identifier emits nothing and returns the identifier: translations use it to
        name a result, and the graph's outputs are named by :meth:`output`.
        """
        if name == "copy" and len(args) == 1 and not attrs and isinstance(args[0], Ref):
            return args[0]
        if name in _ORDERINGS and self.tract and not attrs and len(args) == 2:
            rewritten = self._order_of_coordinates(name, args[0], args[1], out)
            if rewritten is not None:
                return rewritten
        self.require(name)
        result = self.fresh(out or name)
        parts = [literal(a) for a in args] + [f"{k} = {literal(v)}" for k, v in attrs.items()]
        self._defined_at[result] = len(self.lines)
        self.lines.append(f"{result} = {name}({', '.join(parts)});")
        if self.tract:
            self._track_coordinates(name, args, attrs, result)
        return result

    def _track_coordinates(self, name: str, args: Sequence[Any], attrs: dict[str, Any], result: Ref) -> None:
        if name == "tract_core_range":
            self._coordinates[result] = "i64"
            return
        refs = [a for a in args if isinstance(a, Ref)]
        found = [self._coordinates[r] for r in refs if r in self._coordinates]
        if not found or not all(r in self._coordinates or r in self._scalars for r in refs):
            return
        if name == "tract_core_cast":
            self._coordinates[result] = str(attrs.get("to", ""))
        elif name in _COORDINATE_OPS:
            self._coordinates[result] = found[0]

    def _order_of_coordinates(self, name: str, a: Any, b: Any, out: str | None) -> Ref | None:
        """``a <= b`` (``lt``, ``gt``, ``ge`` alike) of two tensors of coordinates (``range(S)[None, :] <=
        range(S)[:, None]``: a causal mask) as ``b - a >= 0``.

        tract (0.23.9) reads such a comparison as "coordinate j >= coordinate i" and splits the ops
        the mask selects along axis j at the bound "coordinate i", which has no value outside the
        mask: the model fails to run ("Undetermined symbol in expression"). It does not split on a
        difference compared with zero.
        """
        dtype = self._coordinates.get(a) if isinstance(a, Ref) else None
        if dtype not in _SIGNED or not isinstance(b, Ref) or self._coordinates.get(b) != dtype:
            return None
        low, high = (a, b) if name in ("le", "lt") else (b, a)
        gap = self.op("sub", high, low, out=(out or name) + "_gap")
        zero = 0.0 if dtype.startswith("f") else 0
        return self.op("ge" if name in ("le", "ge") else "gt", gap, zero, out=out or name)

    def require(self, operator: str) -> None:
        """Notes ``operator`` in :attr:`too_new` when the target tract release cannot run it (every
        emitted operator goes through here).
        """
        if self.spec_only and operator.split("<", 1)[0] in TOOLS_OPERATORS:
            raise TranslationError(
                f"{self.where or 'the graph'}: needs {operator.split('<', 1)[0]}, which the NNEF 1.0.5 text lacks "
                "(KhronosNNEF(strict_spec=True)): KhronosNNEF() writes it for the Khronos tools"
            )
        if self.tract_version is not None:
            since = needs_newer(operator, self.tract_version)
            if since is not None:
                self.too_new.append((operator, since, self.where))

    def ops(self, name: str, *args: Any, outs: Sequence[str], **attrs: Any) -> list[Ref]:
        """Emits ``[out_0, out_1, ...] = name(args, key = value, ...)`` for an op returning an array."""
        self.require(name)
        results = [self.fresh(o) for o in outs]
        parts = [literal(a) for a in args] + [f"{k} = {literal(v)}" for k, v in attrs.items()]
        self.lines.append(f"[{', '.join(results)}] = {name}({', '.join(parts)});")
        return results

    def fragment(self, base: str, parameters: Sequence[Ref], results: Sequence[Ref], body: NNEFBuilder) -> str:
        """Declares a fragment whose body was emitted in its own builder ``body`` (parameters and
        results are scalar tensors) and returns its name, unique in the document. The body's
        extensions are declared here; it cannot declare variables (pass weights as parameters).
        """
        if body.variables:
            raise ValueError(f"fragment {base}: variables {sorted(body.variables)} must be passed as parameters")
        name = re.sub(r"\W", "_", base) + f"_{len(self.fragments)}"
        for extension in body.extensions:
            self.need(extension)
        params = ", ".join(f"{p}: tensor<scalar>" for p in parameters)
        outs = ", ".join(f"{r}: tensor<scalar>" for r in results)
        lines = "\n".join("  " + line for line in body.lines)
        self.fragments.append(f"fragment {name}( {params} ) -> ( {outs} )\n{{\n{lines}\n}}")
        return name

    def copy(self, value: Ref, out: str) -> Ref:
        """A new identifier ``out`` for the same tensor as ``value`` (e.g. one that
        ``graph.quant`` gives other quantization parameters); :meth:`op` would alias it.
        """
        self.require("copy")
        result = self.fresh(out)
        self._defined_at[result] = len(self.lines)
        self.lines.append(f"{result} = copy({value});")
        return result

    def final_name(self, ref: Ref) -> Ref:
        """The identifier ``ref`` has in the finished document (outputs rename the ops they name)."""
        return self._renamed.get(ref, ref)

    def reserve(self, names: list[str]) -> None:
        """Keeps the graph's input and output names for :meth:`external` and :meth:`output`."""
        self._reserved = set(names)
        self._used.update(names)

    def _claim(self, name: str) -> Ref:
        if name in self._reserved:
            self._reserved.discard(name)
            return Ref(name)
        return self.fresh(name, keep=True)

    def output(self, value: Ref, name: str, dtype: str | None = None) -> Ref:
        """Names the graph output ``name`` (kept as given, whatever the naming scheme).

        Called once the body is complete. The op that computes ``value`` is renamed to ``name``;
        only an output that repeats an input, a variable or another output gets an identity op:
        ``copy``, or for tract a cast to ``dtype`` (tract merges a ``copy`` into its operand, so two
        outputs would share one name; releases before 0.23.0 do not read ``copy`` at all).
        """
        value = self._renamed.get(value, value)
        ref = self._claim(name)
        if ref == value:
            return ref
        at = self._defined_at.get(value)
        if at is not None and value not in self._renamed.values():
            self._rename(value, ref, at)
            return ref
        if not self.tract or dtype is None:
            self.lines.append(f"{ref} = copy({value});")
        else:
            self.lines.append(f"{ref} = tract_core_cast({value}, to = {literal(dtype)});")
            self.need("tract_registry tract_core")
        return ref

    def _rename(self, old: Ref, new: Ref, start: int) -> None:
        """Renames identifier ``old`` to ``new`` from line ``start`` on (literals and op names untouched)."""
        word = re.compile(rf"(?<![\w.]){re.escape(old)}(?!\w)(?!\s*\()")  # not an operator's name
        for i in range(start, len(self.lines)):
            pieces = re.split(r"('[^']*')", self.lines[i])
            self.lines[i] = "".join(p if p.startswith("'") else word.sub(new, p) for p in pieces)
        self._renamed[old] = new
        self._defined_at[new] = self._defined_at.pop(old)

    def external(self, value: Value, name: str) -> Ref:
        """Declares a graph input."""
        ref = self._claim(name)
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
        same ref, so callers must use one label per content). A :class:`Q40Tensor` (or the
        :class:`PendingQ4_0` of a weight not in memory) is declared as a float variable of its
        logical shape and listed in :attr:`block_quantized`.
        """
        if label in self._variable_refs:
            return self._variable_refs[label]
        base = label.replace(".", "_").replace("/", "_")
        if self.naming_scheme == "numeric":
            ref = self.fresh(base)
        else:
            ref = self.fresh(_camel(base) if self.naming_scheme == "natural_verbose_camel" else base, keep=True)
        if isinstance(tensor, (Q40Tensor, PendingQ4_0)):  # tract reads the blocks as a block-quantized float constant
            kind, dims = "scalar", tuple(tensor.shape)
            self.block_quantized.add(ref)
        elif hasattr(tensor, "detach"):  # a torch tensor: its dtype and shape, not its data (it may be on a GPU)
            dtype = tensor.dtype
            kind = "scalar" if dtype.is_floating_point else "logical" if str(dtype) == "torch.bool" else "integer"
            dims = tuple(tensor.shape)
        else:
            array = np.asarray(tensor)
            kind = "scalar" if array.dtype.kind == "f" else "logical" if array.dtype == bool else "integer"
            dims = array.shape
        shape = "[" + ", ".join(str(d) for d in dims) + "]"
        self.lines.append(f"{ref} = variable<{kind}>(label = {literal(label)}, shape = {shape});")
        if math.prod(dims) == 1:
            self._scalars.add(ref)
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
                *(f"\n{f}" for f in self.fragments),
                "",
                f"graph {name}( {', '.join(inputs)} ) -> ( {', '.join(outputs)} )",
                "{",
                body,
                "}",
                "",
            ]
        )
