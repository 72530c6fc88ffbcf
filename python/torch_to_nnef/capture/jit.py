"""Capturing a PyTorch module into the IR with ``torch.jit.trace``.

The second front-end, for models that ``torch.export`` refuses: chiefly those quantized with
torch's eager or FX API, whose packed weights are script objects (``torch.jit.trace`` records them
as ``quantized::conv2d_relu``, ``quantized::linear``...). The traced graph feeds the same IR as
:mod:`torch_to_nnef.capture.torch_export`: ATen kinds keep the argument conventions of the ``torch.export``
front-end (positional arguments in schema order, keyword-only ones in a trailing dict, dtypes as
``"f32"``...), and the few kinds that ``torch.jit.trace`` records at another level of the
dispatcher (``aten::_convolution``, ``aten::batch_norm``, in-place ``aten::relu_``...) are renamed
to the ones ``torch.export`` produces, so that no translation depends on the front-end. The trace
mutates tensors in place (``y[:, 1:3] = v`` is a ``copy_`` into a ``slice`` of ``y``); the IR is kept
functional by writing such writes back into the base, as ``torch.export``'s ``slice_scatter``.

Complex tensors (FFTs, STFT) keep the ``c64``/``c128`` dtypes and the nodes touching them are keyed
in the ``complex::`` namespace, as the ``torch.export`` front-end keys them; ``x.real`` and ``x.imag``
become the ``view_as_real`` and ``select`` that ``torch.export`` records.

Quantized tensors become :class:`QuantizedValue` (the raw ``u8``/``i8`` integers with their scale
and zero point); a quantized op's packed weights are unpacked into int8 parameters. The traced
shapes are fixed: dynamic axes are refused with a clear error (use the ``torch.export`` front-end).
The one size that follows the data is the length of a ``torch.arange`` of 0-d tensors (its bounds are
kept as tensors, where ``torch.export`` gives a number tied to no input): ``u0``, followed through
elementwise ops, ``unsqueeze`` and whole slices, refused elsewhere rather than frozen at its traced value.
"""

from __future__ import annotations

import linecache
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from torch_to_nnef.capture.errors import JitCaptureError
from torch_to_nnef.capture.quantized import output_qparams, unpack_node
from torch_to_nnef.capture.torch_export import TORCH_DTYPES, complex_io_advice, touches_complex
from torch_to_nnef.ir import COMPLEX_DTYPES, Dim, Graph, Node, Parameter, QuantizedValue, Value
from torch_to_nnef.ir.quantized import PASS_THROUGH, UNPACKED_SCHEMAS

LOGGER = logging.getLogger(__name__)

_SCALAR_TYPES = {
    "Float": "f32",
    "Half": "f16",
    "Double": "f64",
    "Long": "i64",
    "Int": "i32",
    "Short": "i16",
    "Char": "i8",
    "Byte": "u8",
    "UInt16": "u16",
    "UInt32": "u32",
    "UInt64": "u64",
    "Bool": "bool",
    "QUInt8": "u8",
    "QInt8": "i8",
    "ComplexFloat": "c64",
    "ComplexDouble": "c128",
}

_TORCH_DTYPES = {t: d for t, d in TORCH_DTYPES.items() if d not in COMPLEX_DTYPES}
"""The tensor dtypes the jit front-end carries (the torch.export ones, complex aside)."""

_SCALAR_TYPE_CODES = {
    0: "u8",
    1: "i8",
    2: "i16",
    3: "i32",
    4: "i64",
    5: "f16",
    6: "f32",
    7: "f64",
    9: "c64",
    10: "c128",
    11: "bool",
    27: "u16",
    28: "u32",
    29: "u64",
}
"""``c10::ScalarType`` codes, as ``torch.jit.trace`` records a ``dtype`` argument."""


@dataclass(frozen=True)
class _View:
    """How a traced tensor aliases another: ``kind(base, *args[1:])`` in IR terms (``args`` as the IR node
    had them), or the same storage when ``kind`` is None (an in-place op's result, ``detach``...).
    """

    base: torch._C.Value
    kind: str | None = None
    args: tuple[Any, ...] = ()
    node: torch._C.Node | None = None
    known: bool = True
    """False where the op may have copied instead (``reshape`` of a non-contiguous tensor): neither
    written back nor taken again."""


_SAME_STORAGE = {"aten::detach", "aten::alias", "aten::contiguous", "aten::_to_copy", "aten::lift_fresh"}
"""Views that are the whole tensor (``_to_copy`` only when it keeps the dtype)."""

_RESHAPING = {
    "aten::view",
    "aten::reshape",
    "aten::_unsafe_view",
    "aten::flatten",
    "aten::unflatten",
    "aten::unsqueeze",
    "aten::squeeze",
}
"""Views that only reshape: a write through one is reshaped back."""

_VIEW_IF_CONTIGUOUS = {"aten::reshape", "aten::flatten", "aten::contiguous"}
"""Ops that return a view of a contiguous tensor (``reshape`` and ``flatten`` may copy another, ``contiguous``
copies it)."""


def _contiguous(v: torch._C.Value) -> bool:
    """Whether the traced tensor ``v`` is laid out contiguously (size-1 axes aside)."""
    t = v.type()
    sizes = t.sizes() if isinstance(t, torch._C.TensorType) else None
    strides = t.strides() if isinstance(t, torch._C.TensorType) else None
    if sizes is None or strides is None:
        return False
    expected = 1
    for size, stride in reversed(list(zip(sizes, strides))):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


def _aliasing(node: torch._C.Node) -> tuple[bool, bool, bool]:
    """Whether ``node`` writes its first argument in place, returns a view of it, or writes another argument
    (an ``out=`` tensor), from its schema's alias annotations (``Tensor(a!) self``, ``-> Tensor(a)``).
    """
    try:
        schema = torch._C.parse_schema(node.schema())
    except RuntimeError:  # no schema (prim ops)
        return False, False, False
    if not schema.arguments:
        return False, False, False
    first = schema.arguments[0].alias_info
    writes_other = any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments[1:])
    if first is None:
        return False, False, writes_other
    if first.is_write:
        return True, False, writes_other
    returned = schema.returns[0].alias_info if schema.returns else None
    return False, returned is not None, writes_other


def reason_for_jit(model: torch.nn.Module) -> str | None:
    """Why ``model`` needs the jit front-end up front (``None`` when torch.export may capture it)."""
    for name, module in model.named_modules():
        if type(module).__module__.startswith(("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")):
            return f"{name or '<top>'} is a torch quantized module ({type(module).__name__})"
        for tname, t in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if t.is_quantized:
                return f"{name}.{tname} is a quantized tensor"
    return None


_TRACER_WARNING: type[Warning] = getattr(torch.jit, "TracerWarning", Warning)

_RENAMED = {
    "aten::_convolution": "aten::convolution",
    "aten::batch_norm": "aten::_native_batch_norm_legit_no_training",
    "aten::to": "aten::_to_copy",
    "aten::feature_dropout": "aten::dropout",
    "aten::alpha_dropout": "aten::dropout",
}
"""Kinds that ``torch.jit.trace`` records above the level ``torch.export`` captures at."""

_FOLDED = {
    "aten::size",
    "aten::Int",
    "aten::ScalarImplicit",
    "aten::Float",
    "prim::NumToTensor",
    "aten::dim",
    "aten::numel",
}
"""Integer bookkeeping evaluated at trace time (the shapes are fixed)."""

_TAKES_TENSOR_NUMBERS = {"aten::arange", "aten::full", "aten::new_full"}
"""Ops whose numbers may be 0-d tensors of the model (``torch.arange(start, end, step)``, ``torch.full(size, v)``
of tensors): the tensor is kept (tract's range takes tensors, a fill value may be one) where
``aten::ScalarImplicit`` would make it a number."""

_FOLLOWS_DATA_SIZES = {
    f"aten::{name}"
    for name in (
        "abs neg exp log sqrt rsqrt sin cos tanh sigmoid relu floor ceil round trunc sign reciprocal square "
        "bitwise_not logical_not _to_copy clone detach alias contiguous lift_fresh "
        "add sub rsub mul div floor_divide remainder fmod pow eq ne lt le gt ge maximum minimum "
        "bitwise_and bitwise_or bitwise_xor __and__ __or__ __xor__ logical_and logical_or logical_xor "
        "where clamp clamp_min clamp_max masked_fill"
    ).split()
}
"""Elementwise ops (their result is the broadcast of their tensors) that a tensor whose length comes from
data (a range of tensor bounds) may go through: its length is followed as a symbol."""

_WHOLE_END = 2**63 - 1
"""The end a trace records for a slice to the end of an axis (``x[None, :]``)."""


def capture_jit(
    model: torch.nn.Module,
    args: Sequence[torch.Tensor],
    input_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    *,
    refuse_unsound: bool = False,
) -> tuple[Graph, None]:
    """Traces ``model`` on ``args`` with ``torch.jit.trace`` and converts the graph to the IR.

    torch's tracer warns when the trace may not hold for other inputs (Python control flow on a
    tensor's value, ``.item()``, ``.tolist()``...): these warnings are logged, or, with
    ``refuse_unsound``, raised as an error (the automatic fallback from ``torch.export`` never
    exports a graph that froze one branch of the model).

    Raises:
        JitCaptureError: dynamic axes were asked for (the trace only knows the example's sizes),
            the trace failed, or it holds a construct with no IR equivalent.
    """
    if dynamic_axes:
        raise JitCaptureError(
            f"dynamic axes {dict(dynamic_axes)} cannot be exported with the torch.jit.trace front-end: a trace records "
            "the example's sizes only. Export with frontend='export' (torch.export keeps symbolic sizes), or drop "
            "dynamic_axes and export one archive per size"
        )
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha is not None else False
    try:
        if mha is not None:  # the fused fast path of nn.TransformerEncoderLayer / MultiheadAttention is one opaque op
            mha.set_fastpath_enabled(False)
        with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", _TRACER_WARNING)
            traced = torch.jit.trace(model, tuple(args), check_trace=False, strict=False)  # type: ignore[no-untyped-call]
    except Exception as exc:  # torch raises many types here; all mean "cannot trace"
        head = "\n".join(str(exc).strip().splitlines()[:8])
        raise JitCaptureError(
            f"torch.jit.trace could not trace {type(model).__name__}: {type(exc).__name__}: {head}"
        ) from exc
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fastpath)
    unsound = []
    for warning in caught:
        if issubclass(warning.category, _TRACER_WARNING):
            unsound.append(f"{warning.filename}:{warning.lineno}: {warning.message}")
            LOGGER.warning("torch.jit.trace: %s (%s:%s)", warning.message, warning.filename, warning.lineno)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if unsound and refuse_unsound:
        raise JitCaptureError(
            "torch.jit.trace would record only the path this example takes: " + "; ".join(unsound[:3])
        )
    return _Converter(model, traced, input_names).run(), None


_STAND_IN_OVERLOADS = {"slice": "Tensor", "select": "int", "transpose": "int", "fill": "Scalar"}
"""The overload of the ops recorded in place of another (``narrow`` as a slice, ``.real`` as a select, the
transpose that writes a view back, a copy of a number as a fill) where torch has no default one."""


def _functional(kind: str) -> str:
    """The kind of an in-place variant's functional form (``aten::relu_`` -> ``aten::relu``)."""
    return kind[:-1] if kind.endswith("_") and not kind.endswith("__") else kind


def _ir_overload(node: torch._C.Node, kind: str) -> str:
    """The overload of the IR node made of the traced ``node`` as ``kind``: the traced op's when ``kind``
    is that op (in place or not, on complex or quantized tensors); for an op recorded in place of
    another, the one of :data:`_STAND_IN_OVERLOADS` or the default one.
    """
    if kind in UNPACKED_SCHEMAS:
        return ""
    name = kind.split("::")[1]
    if kind.startswith("quantized::aten_"):
        name = name.removeprefix("aten_")
    if name == _functional(node.kind()).split("::")[1]:
        return _overload(node)
    return _STAND_IN_OVERLOADS.get(name, "")


def _overload(node: torch._C.Node) -> str:
    """The overload name of the traced op's schema (``"Tensor"`` of ``aten::add.Tensor``), "" if none."""
    try:
        return str(torch._C.parse_schema(node.schema()).overload_name)
    except RuntimeError:  # no schema (prim ops)
        return ""


def _quantized_math(kind: str, inputs: list[Any]) -> bool:
    """Whether an ATen op computes on quantized tensors (rather than only moving their integers)."""
    flat = [x for i in inputs for x in (i if isinstance(i, list) else [i])]
    if not any(isinstance(x, QuantizedValue) for x in flat):
        return False
    base = kind[:-1] if kind.endswith("_") and not kind.endswith("__") else kind
    return base not in PASS_THROUGH and base != "aten::dequantize"


def _dtype_of(v: torch._C.Value, where: str) -> tuple[str, tuple[int, ...], bool]:
    t = v.type()
    scalar = t.scalarType() if isinstance(t, torch._C.TensorType) else None
    sizes = t.sizes() if isinstance(t, torch._C.TensorType) else None
    if scalar is None or sizes is None:
        raise JitCaptureError(f"{where}: the trace did not record the dtype and shape of {v.debugName()}")
    if scalar not in _SCALAR_TYPES:
        raise JitCaptureError(f"{where}: dtype {scalar} cannot be exported to NNEF; cast it")
    return _SCALAR_TYPES[scalar], tuple(int(s) for s in sizes), scalar.startswith("Q")


def _broadcast_dim(dims: list[Dim]) -> Dim:
    """One axis of tensors broadcast together: a static size other than 1 where there is one, else a size
    from data, else 1.
    """
    sizes = [d for d in dims if d != 1]
    return next((d for d in sizes if isinstance(d, int)), sizes[0] if sizes else 1)


def _source(node: torch._C.Node) -> str:
    """``file:line in function: code`` of the innermost frame of the user's code."""
    text = str(node.sourceRange() or "")
    frames = re.findall(r"^(\S[^\n(]*)\((\d+)\): (\S+)", text, re.M)
    user = [f for f in frames if "/torch/" not in f[0] and "torch_to_nnef" not in f[0]]
    if not user:
        return ""
    file, line, func = user[0]
    code = linecache.getline(file, int(line)).strip()
    return f"{file}:{line} in {func}" + (f": {code}" if code else "")


def _scope(node: torch._C.Node) -> str:
    """``__module.features/__module.features.0`` -> ``features.0``."""
    last = node.scopeName().split("/")[-1]
    return last.removeprefix("__module").lstrip(".")


class _Converter:
    """One pass over the inlined trace graph."""

    def __init__(self, model: torch.nn.Module, traced: Any, input_names: Sequence[str]) -> None:
        self.model = model
        self.traced = traced
        self.input_names = list(input_names)
        self.graph = traced.inlined_graph
        self.classes = {name: type(m).__name__ for name, m in model.named_modules()}
        self.values: dict[torch._C.Value, Any] = {}
        self.objects: dict[torch._C.Value, tuple[Any, str]] = {}
        self.parameters: dict[str, Parameter] = {}
        self.by_tensor: dict[int, Value] = {}
        self.nodes: list[Node] = []
        self.used: set[str] = set(self.input_names)
        self.views: dict[torch._C.Value, _View] = {}
        self.derived: dict[torch._C.Value, list[torch._C.Value]] = {}
        self.stale: set[torch._C.Value] = set()
        self.pending: dict[torch._C.Value, tuple[torch._C.Value, torch._C.Node, str]] = {}
        self.data_sizes: dict[str, int] = {}
        """The sizes that come from data (``u0``: the length of a range of tensor bounds), with their traced
        value."""

    def name(self, base: str) -> str:
        base = re.sub(r"\W", "_", base).strip("_") or "v"
        if base[0].isdigit():
            base = "v" + base
        candidate, i = base, 1
        while candidate in self.used:
            candidate = f"{base}_{i}"
            i += 1
        self.used.add(candidate)
        return candidate

    def parameter(self, tensor: torch.Tensor, torch_name: str, q: tuple[float, int] | None = None) -> Value:
        """The IR value of a weight (one per tensor); ``q`` gives a quantized one's parameters."""
        key = id(tensor)
        if key in self.by_tensor:
            return self.by_tensor[key]
        if tensor.dtype in (torch.complex64, torch.complex128):
            raise JitCaptureError(
                f"weight {torch_name} is {tensor.dtype}: NNEF has no complex tensors; store torch.view_as_real "
                "of it and call torch.view_as_complex in forward"
            )
        if tensor.dtype not in _TORCH_DTYPES:
            raise JitCaptureError(f"weight {torch_name}: dtype {tensor.dtype} cannot be exported to NNEF; cast it")
        name = self.name(torch_name)
        dtype, shape = _TORCH_DTYPES[tensor.dtype], tuple(tensor.shape)
        v: Value = Value(name, dtype, shape) if q is None else QuantizedValue(name, dtype, shape, q[0], q[1])
        self.parameters[name] = Parameter(torch_name, tensor)
        self.by_tensor[key] = v
        return v

    def run(self) -> Graph:
        graph_inputs = list(self.graph.inputs())
        self.objects[graph_inputs[0]] = (self.traced, "")
        inputs: list[Value] = []
        for jit_input, name in zip(graph_inputs[1:], self.input_names):
            dtype, shape, _ = _dtype_of(jit_input, f"input {name!r}")
            if dtype in COMPLEX_DTYPES:
                raise JitCaptureError(complex_io_advice("input", name, dtype))
            v = Value(name, dtype, shape)
            self.values[jit_input] = v
            inputs.append(v)
        for node in self.graph.nodes():
            self.convert(node)
        outputs: list[Value] = []
        for out in self.graph.return_node().inputs():
            outputs.extend(self.flat_outputs(self.arg(out, "the outputs") if out in self.values else None))
        for out in outputs:
            if isinstance(out, QuantizedValue):
                raise JitCaptureError(
                    f"the model returns the quantized tensor {out.name}: end it with torch.ao.quantization.DeQuantStub "
                    "(or call .dequantize()) so that its outputs are floats"
                )
            if out.dtype in COMPLEX_DTYPES:
                raise JitCaptureError(complex_io_advice("output", out.name, out.dtype))
        return Graph(inputs=inputs, outputs=outputs, nodes=self.nodes, parameters=self.parameters)

    def flat_outputs(self, value: Any) -> list[Value]:
        if isinstance(value, Value):
            return [value]
        if isinstance(value, (list, tuple)):
            return [v for item in value for v in self.flat_outputs(item)]
        if value is not None:
            LOGGER.warning("the model returns %r among its outputs: it is not a tensor and is dropped", value)
        return []

    def arg(self, v: torch._C.Value, where: str) -> Any:
        if v in self.pending:
            self.flush(v)
        if v in self.stale:
            self.refresh(v, where)
        if v in self.values:
            return self.values[v]
        if v in self.objects:
            obj, path = self.objects[v]
            if isinstance(obj, torch.Tensor):
                return self.parameter(obj, path)
            return obj
        raise JitCaptureError(f"{where}: the trace uses {v.debugName()}, which this front-end did not convert")

    def convert(self, node: torch._C.Node) -> None:
        kind = node.kind()
        where = " ".join(p for p in (_scope(node), _source(node)) if p) or "<top>"
        outs = list(node.outputs())
        if kind == "prim::Constant":
            value = outs[0].toIValue()
            if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_quantized:
                self.values[outs[0]] = value.item()  # a Python number the trace wrapped (``x * 2``)
            elif isinstance(value, torch.Tensor):  # its own label: the archive stores one tensor per label
                self.objects[outs[0]] = (value, self.name(f"constant_{outs[0].debugName()}"))
            else:
                self.values[outs[0]] = value
            return
        if kind == "prim::GetAttr":
            owner, path = self.objects[node.input()]
            attr = node.s("name")
            self.objects[outs[0]] = (getattr(owner, attr), f"{path}.{attr}" if path else attr)
            return
        inputs = [self.arg(i, f"{kind} at {where}") for i in node.inputs()]
        if kind == "aten::quantize_per_tensor":  # FX-quantized models keep scale and zero point as tensors
            for at, jit_input in list(enumerate(node.inputs()))[1:3]:
                obj = self.objects.get(jit_input, (None, ""))[0]
                if isinstance(obj, torch.Tensor):
                    inputs[at] = obj.item()
        if kind in ("prim::ListConstruct", "prim::TupleConstruct"):
            self.values[outs[0]] = inputs if kind == "prim::ListConstruct" else tuple(inputs)
            return
        if kind in ("prim::ListUnpack", "prim::TupleUnpack"):
            for out, item in zip(outs, inputs[0]):
                self.values[out] = item
            return
        if kind == "aten::ScalarImplicit" and isinstance(inputs[0], Value) and self.tensor_number(outs[0]):
            self.values[outs[0]] = inputs[0]  # kept a tensor: tract's range and fills take tensors
            return
        if kind in _FOLDED:
            self.values[outs[0]] = self.fold(kind, inputs, where)
            return
        if kind in ("prim::TupleIndex", "aten::__getitem__"):
            self.values[outs[0]] = inputs[0][inputs[1]]
            return
        if kind.startswith("prim::"):
            raise JitCaptureError(f"{kind} at {where}: a TorchScript construct with no NNEF equivalent")
        if (
            kind.startswith("quantized::")
            or any(isinstance(i, torch.ScriptObject) for i in inputs)
            or _quantized_math(kind, inputs)
        ):
            kind, inputs = unpack_node(kind, inputs, self, where)
            if kind.startswith("quantized::aten_"):  # the ATen op's arguments, keyword-only ones in a trailing dict
                inputs = self.normalise(node, node.kind(), inputs)[1]
        elif kind.startswith("aten::") and self.foldable(inputs):
            folded = self.evaluate(node, kind, inputs, where)
            if folded is not None:
                self.values[outs[0]] = folded
                return
            kind, inputs = self.normalise(node, kind, inputs)
        else:
            kind, inputs = self.normalise(node, kind, inputs)
        sized = self.sized_by_data(inputs)
        if sized is not None:
            if kind == "aten::slice" and inputs[2] in (0, None) and inputs[3] in (None, _WHOLE_END) and inputs[4] == 1:
                self.values[outs[0]] = inputs[0]  # x[None, :]: the whole axis
                self.alias(outs[0], _View(node.inputsAt(0)))
                return
            if kind not in _FOLLOWS_DATA_SIZES and kind != "aten::unsqueeze":
                raise JitCaptureError(
                    f"{kind} at {where}: {sized.name} has a length computed from the values of a tensor (a "
                    "torch.arange of tensor bounds), which this front-end follows through elementwise operations, "
                    "unsqueeze and whole slices only; compute the rest outside the exported module"
                )
        if kind in ("aten::real", "aten::imag") and touches_complex(inputs[:1]):
            kind, inputs = self.complex_part(node, kind, inputs[0])
        ir_outs = tuple(self.output_value(o, kind, node, inputs, where) for o in outs)
        if kind == "aten::arange" and any(isinstance(i, Value) for i in inputs):
            ir_outs = (self.range_of_tensors(ir_outs[0], where),)
        elif sized is not None:
            ir_outs = tuple(self.followed(kind, inputs, o, where) for o in ir_outs)
        unpacked = [self.unpacked_list(o, kind, inputs, where) for o in outs]
        if any(u is not None for u in unpacked):
            for jit_out, items in zip(outs, unpacked):
                self.values[jit_out] = items
            ir_outs = tuple(v for items in unpacked for v in (items or ()))
        else:
            if kind == "aten::_native_batch_norm_legit_no_training":
                ir_outs = ir_outs[:1]
            for jit_out, ir_out in zip(outs, ir_outs):
                self.values[jit_out] = ir_out
        if kind.startswith("aten::") and touches_complex((*inputs, *ir_outs)):
            kind = "complex::" + kind.split("::", 1)[1]  # as the torch.export front-end keys them
        self.emit(node, kind, inputs, tuple(o for o in ir_outs if isinstance(o, Value)))
        self.track_aliases(node, kind, inputs, ir_outs, unpacked, where)

    def emit(self, node: torch._C.Node, kind: str, args: Sequence[Any], outputs: tuple[Value, ...]) -> None:
        """Appends an IR node that comes from the traced ``node`` (its module path and source line)."""
        module_path = _scope(node)
        self.nodes.append(
            Node(
                kind=kind,
                args=tuple(args),
                outputs=outputs,
                module_path=module_path,
                module_class=self.classes.get(module_path, ""),
                source=_source(node),
                overload=_ir_overload(node, kind),
            )
        )

    def track_aliases(
        self,
        node: torch._C.Node,
        kind: str,
        inputs: list[Any],
        ir_outs: tuple[Any, ...],
        unpacked: list[list[Value] | None],
        where: str,
    ) -> None:
        """Keeps the IR functional where the trace writes in place: ``y[:, 1:3] = v`` is traced as a
        ``copy_`` into a ``slice`` of ``y`` and ``y`` itself is used afterwards, so a write into a view is
        written back into its base (``slice_scatter``, ``select_scatter``...) and the other views of that
        base are computed again when next used.
        """
        writes, is_view, writes_other = _aliasing(node)
        if writes_other:
            raise JitCaptureError(
                f"{node.kind()} at {where}: the model writes its result into an out= tensor; assign the result instead"
            )
        outs = list(node.outputs())
        target = node.inputsAt(0)
        if not (writes or is_view) or not (isinstance(self.values.get(target), Value) or target in self.objects):
            return
        if writes:
            if isinstance(ir_outs[0], Value):
                self.write(target, ir_outs[0], node, where)
                self.alias(outs[0], _View(target))
            return
        for jit_out, items in zip(outs, unpacked):
            if items is not None:  # a list of views (split, unbind): not written back, refused if written
                users = [u.user for u in jit_out.uses()]
                for item in users[0].outputs():
                    self.alias(item, _View(target, f"{kind}[]", (), node))
                return
        if not isinstance(ir_outs[0], Value) or not isinstance(inputs[0], Value):
            return
        if node.kind() == "aten::to" and node.namedInput("copy").toIValue():
            return  # to(..., copy=True): a new tensor
        known = kind not in _VIEW_IF_CONTIGUOUS or _contiguous(target)
        if kind == "aten::contiguous" and not known:
            return  # a contiguous copy
        if kind in _SAME_STORAGE:
            if kind == "aten::_to_copy" and ir_outs[0].dtype != inputs[0].dtype:
                return  # a cast: a new tensor
            self.alias(outs[0], _View(target))
            return
        self.alias(outs[0], _View(target, kind, tuple(inputs), node, known))

    def alias(self, view: torch._C.Value, how: _View) -> None:
        self.views[view] = how
        self.derived.setdefault(how.base, []).append(view)

    def write(self, target: torch._C.Value, result: Value, node: torch._C.Node, where: str) -> None:
        """``target`` now holds ``result``: the bases it is a view of are due to be written back (when next
        used: a base never read again costs nothing), its other views are made stale.
        """
        self.values[target] = result
        chain = [target]
        while (view := self.views.get(target)) is not None:
            self.pending[view.base] = (target, node, where)
            target = view.base
            chain.append(target)
        derived = [d for c in chain for d in self.derived.get(c, [])]
        while derived:
            v = derived.pop()
            if v not in chain and v not in self.stale:
                self.stale.add(v)
                derived.extend(self.derived.get(v, []))

    def flush(self, base: torch._C.Value) -> None:
        """Writes the pending write of one of ``base``'s views back into it."""
        written, node, where = self.pending.pop(base)
        result = self.arg(written, where)
        self.values[base] = self.written_back(self.views[written], self.arg(base, where), result, node, where)

    def written_back(self, view: _View, base: Value, result: Value, node: torch._C.Node, where: str) -> Value:
        """``base`` with its part that ``view`` shows replaced by ``result``."""
        kind, args = view.kind, view.args
        if kind is None:
            return result
        if not view.known:
            raise JitCaptureError(
                f"{node.kind()} at {where}: the model writes in place into the result of {kind} on the non-contiguous "
                f"{base.name}, which may be a copy or a view; clone it first, or export with frontend='export'"
            )
        out = Value(self.name(f"{base.name}_written"), base.dtype, base.shape)
        if kind == "aten::slice":
            _, dim, start, end, step = args
            dim %= base.rank
            size = base.shape[dim]
            start = 0 if start is None else start
            if start in (0, -size) and (end is None or end >= size) and step == 1 and result.shape == base.shape:
                return result  # the whole axis
            self.emit(node, "aten::slice_scatter", [base, result, dim, start, end, step], (out,))
        elif kind == "aten::select":
            self.emit(node, "aten::select_scatter", [base, result, args[1], args[2]], (out,))
        elif kind in _RESHAPING:
            self.emit(node, "aten::view", [result, list(base.shape)], (out,))
        elif kind == "aten::transpose":
            self.emit(node, "aten::transpose", [result, args[1], args[2]], (out,))
        elif kind == "aten::permute":
            dims = [d % base.rank for d in args[1]]
            self.emit(node, "aten::permute", [result, [dims.index(d) for d in range(base.rank)]], (out,))
        elif kind == "aten::t":
            self.emit(node, "aten::t", [result], (out,))
        else:
            raise JitCaptureError(
                f"{node.kind()} at {where}: the model writes in place into {base.name} through "
                f"{kind.removesuffix('[]')}, which this front-end cannot write back; write it out of place "
                "(torch.where, index_put, scatter, torch.cat) or export with frontend='export'"
            )
        return out

    def refresh(self, v: torch._C.Value, where: str) -> None:
        """The view ``v`` of a base written since: taken again from the base's new value."""
        self.stale.discard(v)
        view = self.views[v]
        base = self.arg(view.base, where)
        if view.kind is None:
            self.values[v] = base
            return
        if not view.known:
            raise JitCaptureError(
                f"{where}: the model uses the result of {view.kind} on the non-contiguous {base.name} after writing "
                "in place into that tensor, and it may be a copy or a view; clone it first, or export with "
                "frontend='export'"
            )
        if view.kind.endswith("[]") or view.node is None:
            raise JitCaptureError(
                f"{where}: the model uses a piece of a {view.kind.removesuffix('[]')} result after writing in "
                "place into the tensor it was taken from; take it after the write, or export with frontend='export'"
            )
        old = self.values[v]
        new = Value(self.name(old.name), old.dtype, old.shape)
        self.emit(view.node, view.kind, [base, *view.args[1:]], (new,))
        self.values[v] = new

    def complex_part(self, node: torch._C.Node, kind: str, x: Value) -> tuple[str, list[Any]]:
        """``x.real`` / ``x.imag`` of a complex tensor as ``torch.export`` records them: ``view_as_real``
        (its parts on a trailing axis), then a ``select`` of one part (the select is returned).
        """
        parts = Value(self.name(f"{x.name}_parts"), COMPLEX_DTYPES[x.dtype], (*x.shape, 2))
        self.emit(node, "complex::view_as_real", [x], (parts,))
        return "aten::select", [parts, x.rank, 0 if kind == "aten::real" else 1]

    @staticmethod
    def tensor_number(number: torch._C.Value) -> bool:
        """Whether the number a trace made of a 0-d tensor is used only by ops that may take the tensor."""
        uses = number.uses()
        return bool(uses) and all(u.user.kind() in _TAKES_TENSOR_NUMBERS for u in uses)

    @staticmethod
    def sized_by_data(inputs: list[Any]) -> Value | None:
        """The first tensor among ``inputs`` with a size that comes from data (the traced sizes are fixed)."""
        flat = [x for i in inputs for x in (i if isinstance(i, (list, tuple)) else [i])]
        return next((x for x in flat if isinstance(x, Value) and not all(isinstance(d, int) for d in x.shape)), None)

    def range_of_tensors(self, out: Value, where: str) -> Value:
        """The result of a ``torch.arange`` of tensor bounds: its length a new size from data."""
        size = f"u{len(self.data_sizes)}"
        self.data_sizes[size] = int(out.shape[0])
        LOGGER.info(
            "torch.arange at %s has tensor bounds: its length (%d in the trace) is computed from their values at run "
            "time",
            where,
            out.shape[0],
        )
        return Value(out.name, out.dtype, (size,))

    def followed(self, kind: str, inputs: list[Any], out: Any, where: str) -> Any:
        """The result of an elementwise op or unsqueeze of tensors sized by data, with their sizes from data."""
        if not isinstance(out, Value):
            return out
        shape: tuple[Dim, ...]
        if kind == "aten::unsqueeze":
            x, dim = inputs[:2]
            dim %= x.rank + 1
            shape = (*x.shape[:dim], 1, *x.shape[dim:])
        else:
            shapes = [x.shape for x in inputs if isinstance(x, Value)]
            rank = max(len(s) for s in shapes)
            dims = [[s[a - rank + len(s)] for s in shapes if a - rank + len(s) >= 0] for a in range(rank)]
            shape = tuple(_broadcast_dim(d) for d in dims)
        if tuple(self.data_sizes[d] if isinstance(d, str) else d for d in shape) != out.shape:
            raise JitCaptureError(
                f"{kind} at {where}: the trace gives its result the shape {out.shape}, not the one of its tensors "
                f"{shape}; compute it outside the exported module"
            )
        return Value(out.name, out.dtype, shape)

    def fold(self, kind: str, inputs: list[Any], where: str) -> Any:
        if kind in ("aten::size", "aten::numel") and self.sized_by_data(inputs[:1]) is not None:
            raise JitCaptureError(
                f"{kind} at {where}: the size of {inputs[0].name} comes from the values of a tensor (a torch.arange "
                "of tensor bounds): this front-end cannot use it as a number; compute it outside the exported module"
            )
        if kind == "aten::size":
            x = inputs[0]
            return list(x.shape) if len(inputs) == 1 else x.shape[inputs[1]]
        if kind == "aten::dim":
            return inputs[0].rank
        if kind == "aten::numel":
            return math.prod(inputs[0].shape)
        value = inputs[0]
        if isinstance(value, Value):
            raise JitCaptureError(
                f"{kind} at {where}: the model turns the tensor {value.name} into a Python number (.item(), int(), "
                "float()); the exported graph cannot depend on a tensor's values this way"
            )
        return value

    @staticmethod
    def foldable(inputs: list[Any]) -> bool:
        flat = [x for i in inputs for x in (i if isinstance(i, (list, tuple)) else [i])]
        return not any(isinstance(x, (Value, torch.Tensor, torch.ScriptObject)) for x in flat)

    def evaluate(self, node: torch._C.Node, kind: str, inputs: list[Any], where: str) -> Any:
        """Shape arithmetic the trace recorded on 0-d tensors of sizes (``embed_dim // num_heads``),
        computed now: a Python number, or None when the op is not such arithmetic.
        """
        outs = list(node.outputs())
        if len(outs) != 1 or not all(isinstance(i, (int, float, bool, str, type(None), torch.device)) for i in inputs):
            return None
        t = outs[0].type()
        if not isinstance(t, torch._C.TensorType) or t.sizes() != []:
            return None
        try:
            schema = torch._C.parse_schema(node.schema())
            args, kwargs = [], {}
            for a, v in zip(schema.arguments, inputs):
                v = torch.tensor(v) if str(a.type) == "Tensor" else v
                if a.kwarg_only:
                    kwargs[a.name] = v
                else:
                    args.append(v)
            result = getattr(torch.ops.aten, kind.split("::")[1])(*args, **kwargs)
        except Exception:  # not evaluable here: translated as an op
            return None
        return result.item() if isinstance(result, torch.Tensor) and result.dim() == 0 else None

    def normalise(self, node: torch._C.Node, kind: str, inputs: list[Any]) -> tuple[str, list[Any]]:
        """Schema-order positionals, keyword-only arguments in a trailing dict, ``torch.export``'s kinds."""
        try:
            schema = node.schema()
        except RuntimeError:
            schema = "(no schema)"
        if kind.endswith("_") and not kind.endswith("__"):  # in-place variants (relu_): same result
            kind = kind[:-1]
        if kind == "aten::_convolution":
            inputs = inputs[:9]
        elif kind == "aten::batch_norm":
            # batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled)
            x, w, b, mean, var, training, momentum, eps = inputs[:8]
            if training or mean is None:
                # the default overload's arguments (running statistics None without them)
                return "aten::_native_batch_norm_legit", [x, w, b, mean, var, True, momentum, eps]
            inputs = [x, w, b, mean, var, momentum, eps]
        kwargs: dict[str, Any] = {}
        positional: list[Any] = []
        if schema != "(no schema)":
            parsed = torch._C.parse_schema(schema)
            scalar_types = set(re.findall(r"ScalarType\??\s+(\w+)", schema))  # parsed, their type reads "int"
            for argument, value in zip(parsed.arguments, inputs):
                if argument.name in scalar_types and isinstance(value, int):
                    value = _SCALAR_TYPE_CODES.get(value, value)
                if argument.kwarg_only:
                    if argument.name in ("layout", "device", "pin_memory", "memory_format") or value is None:
                        continue
                    kwargs[argument.name] = value
                else:
                    positional.append(value)
        else:
            positional = inputs
        if kind == "aten::to":
            # to(self, dtype, non_blocking, copy, memory_format) / to(self, device, dtype, ...) / to(self, other, ...)
            dtype = next((a for a in positional[1:3] if isinstance(a, str) and a in _SCALAR_TYPE_CODES.values()), None)
            other = positional[1] if len(positional) > 1 and isinstance(positional[1], Value) else None
            if other is not None:
                dtype = other.dtype
            positional = positional[:1]
            kwargs = {"dtype": dtype} if dtype else {}
        if kind == "aten::chunk":  # chunk(self, chunks, dim): torch.export gives split_with_sizes
            x, chunks, dim = positional
            size = x.shape[dim]
            step = -(-size // chunks)
            sizes = [min(step, size - i) for i in range(0, size, step)]
            return "aten::split_with_sizes", [x, sizes, dim]
        if kind == "aten::narrow":  # narrow(self, dim, start, length): a slice
            x, dim, start, length = positional
            start = start % x.shape[dim] if start < 0 else start
            return "aten::slice", [x, dim, start, start + length, 1]
        if kind in ("aten::expand_as", "aten::view_as", "aten::reshape_as"):
            target = "aten::expand" if kind == "aten::expand_as" else "aten::reshape"
            return target, [positional[0], list(positional[1].shape)]
        if kind == "aten::copy" and not isinstance(positional[1], Value):  # y[0] = 5: a 0-d constant made a number
            return "aten::fill", positional[:2]
        if kind == "aten::_convolution_mode":  # padding given as "same" / "valid": conv1d.padding's arguments
            return f"aten::conv{positional[0].rank - 2}d", positional
        if kind == "aten::index_put" and not isinstance(positional[2], Value):  # a constant the trace made a number
            x = positional[0]
            torch_dtype = next(t for t, d in _TORCH_DTYPES.items() if d == x.dtype)
            positional[2] = self.parameter(torch.tensor(positional[2], dtype=torch_dtype), f"constant_{x.name}_values")
        kind = _RENAMED.get(kind, kind)
        return kind, [*positional, kwargs] if kwargs else positional

    def unpacked_list(self, out: torch._C.Value, kind: str, inputs: list[Any], where: str) -> list[Value] | None:
        """A list of tensors (``unbind``, ``split``) as the values its ``prim::ListUnpack`` gives."""
        if not isinstance(out.type(), torch._C.ListType):
            return None
        users = [u.user for u in out.uses()]
        if len(users) != 1 or users[0].kind() != "prim::ListUnpack":
            raise JitCaptureError(
                f"{kind} at {where}: its list of tensors is used other than unpacked; index it instead"
            )
        return [self.output_value(o, kind, users[0], inputs, where) for o in users[0].outputs()]

    def output_value(self, out: torch._C.Value, kind: str, node: torch._C.Node, inputs: list[Any], where: str) -> Any:
        if not isinstance(out.type(), torch._C.TensorType):
            return None
        dtype, shape, quantized = _dtype_of(out, f"{kind} at {where}")
        base = out.debugName().split(".")[0]
        name = self.name(base if not base.isdigit() else kind.split("::")[-1])
        if not quantized:
            return Value(name, dtype, shape)
        scale, zero_point = output_qparams(kind, inputs, where)
        return QuantizedValue(name, dtype, shape, scale, zero_point)
