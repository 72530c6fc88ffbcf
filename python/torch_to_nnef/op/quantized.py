"""Translations of torch's int8 quantized ops (static, per-tensor affine activations) for tract.

The jit front-end (:mod:`torch_to_nnef.capture.jit`) gives quantized tensors as
:class:`~torch_to_nnef.capture.jit.QuantizedValue`: raw ``u8``/``i8`` integers with a scale and a
zero point. In the archive they stay integers: each identifier that holds a quantized tensor (and
each int8 weight) gets a ``zero_point_linear_quantize`` line in ``graph.quant``, from which tract
types it ``QU8``/``QI8``/``QI32`` and runs integer kernels.

How each op runs in tract:

- ``quantize_per_tensor``: ``copy`` of the float input into a quantized identifier (tract rounds
  half to even and saturates, as torch does); for releases before 0.23.0, which do not read
  ``copy``, ``tract_core_cast(x, to = 'u8')`` (or ``'i8'``): tract reads it as a cast to the
  quantized type that ``graph.quant`` gives the identifier.
- ``dequantize``: ``tract_core_cast(x, to = 'f32')``.
- convolutions and linear layers: an integer ``conv``/``matmul`` of the int8 weights with the
  quantized input into an exact ``i32`` accumulator (``graph.quant``: scale = input scale x weight
  scale, zero point 0), then, in f32, the per-channel weight scales (per-channel weights), the
  float bias and the fused ReLU, and the requantization to the output's scale and zero point. This
  is torch's fbgemm/qnnpack order (integer accumulation, float bias, one rounding at the end).
- element-wise ops (``add``, ``mul``, ``cat``, ``relu``, ``hardswish``, ``sigmoid``, pooling
  averages...): the inputs are dequantized, the float translation of the ATen op runs, and the
  result is requantized: torch computes these the same way.
- data movement (reshape, flatten, permute, max pooling...): the float translations run on the
  integers unchanged and tract keeps their quantized type.

Against torch (fbgemm), each op above gives the same integers in the tests; whole models may land
one or two steps apart on a few values (a rounding boundary crossed in a different order of the
float epilogue, then carried by the next layers): see tests/op/test_quantized.py.

Per-channel weights must be symmetric (zero points 0, torch's ``per_channel_symmetric``): the
accumulator does not depend on the weight scales, which are applied per output channel in f32; in the
archive such a weight is int8 with scale 1 in ``graph.quant`` and its scales an f32 variable
``<weight label>_scales``.
KhronosNNEF: quantized models are refused with a clear error (the NNEF specification's
quantization file has no integer-kernel semantics that the Khronos tools execute).
"""

from __future__ import annotations

import weakref
from typing import Any

from torch_to_nnef.check.versions import COPY_TRACT
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Node, QuantizedValue, Value
from torch_to_nnef.ir.quantized import FLOAT_OVERLOADS, TORCH_QUANTIZED, VIA_FLOAT
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref
from torch_to_nnef.op.registry import Context, register, resolve, translate_node

_QUANT: weakref.WeakKeyDictionary[NNEFBuilder, dict[str, str]] = weakref.WeakKeyDictionary()


def _tract_only(ctx: Context) -> None:
    if not ctx.tract:
        raise TranslationError(
            f"{ctx.where()}: quantized models export to TractNNEF only (the Khronos tools do not "
            "run NNEF quantized integer kernels); export the float model for KhronosNNEF"
        )


def graph_quant(g: NNEFBuilder) -> str | None:
    """The ``graph.quant`` document of what the quantized translations declared in ``g``, if any."""
    entries = _QUANT.get(g)
    if not entries:
        return None
    final = {g.final_name(Ref(ref)): text for ref, text in entries.items()}
    return "".join(f'"{ref}": {final[ref]}\n' for ref in sorted(final))


def _declare(ctx: Context, ref: Ref, dtype: str, scale: float, zero_point: int) -> None:
    bits, signed = {"u8": (8, "false"), "i8": (8, "true"), "i32": (32, "true")}[dtype]
    _QUANT.setdefault(ctx.g, {})[str(ref)] = (
        f"zero_point_linear_quantize(zero_point = {int(zero_point)}, scale = {float(scale)!r}, bits = {bits}, "
        f"signed = {signed}, symmetric = false);"
    )


def _qref(ctx: Context, v: Value) -> Ref:
    """The ref of a quantized value, declared in ``graph.quant`` (weights when first used; the same
    parameters again for activations, which tract then keeps as they are).
    """
    if not isinstance(v, QuantizedValue):
        raise TranslationError(f"{ctx.where()}: {v.name} should be a quantized tensor")
    ref: Ref = ctx.ref(v)
    _declare(ctx, ref, v.dtype, v.scale, v.zero_point)
    return ref


def _requantize(ctx: Context, x: Ref, out: QuantizedValue) -> Ref:
    """Rounds the f32 ``x`` to ``out``'s integers (half to even, saturating): a new identifier that
    ``graph.quant`` gives ``out``'s parameters, a ``copy`` of ``x`` or, before tract 0.23.0, a cast
    to ``out``'s integer type (which tract reads with the parameters of ``graph.quant``).
    """
    if ctx.tract_at_least(COPY_TRACT):
        ref = ctx.g.copy(x, out.name)
    else:
        ref = ctx.g.op("tract_core_cast", x, to=out.dtype, out=out.name)
    _declare(ctx, ref, out.dtype, out.scale, out.zero_point)
    return ref


def _dequantized(ctx: Context, v: Any) -> Any:
    """An f32 IR value standing for a quantized one (its ref a cast); other arguments as they are."""
    if isinstance(v, QuantizedValue):
        wide = Value(v.name + "_f32", "f32", v.shape)
        if wide.name not in ctx.refs:
            ctx.refs[wide.name] = ctx.g.op("tract_core_cast", _qref(ctx, v), to="f32", out=wide.name)
        return wide
    if isinstance(v, (list, tuple)):
        return type(v)(_dequantized(ctx, x) for x in v)
    return v


def _float_op(ctx: Context, kind: str, overload: str, args: tuple[Any, ...], relu: bool = False) -> list[Ref]:
    """Runs the float translation of ``kind.overload`` on dequantized ``args``; requantizes to the
    outputs of the node being translated.
    """
    node = ctx.node
    assert node is not None
    registration = resolve(kind, overload)
    if registration is None:
        raise TranslationError(f"{ctx.where()}: no float translation of {kind} to compute it with")
    outs = tuple(Value(o.name + "_f32", "f32", o.shape) for o in node.outputs)
    float_node = Node(kind, tuple(_dequantized(ctx, a) for a in args), outs, node.module_path, overload=overload)
    result = translate_node(ctx, float_node, registration)
    refs = [result] if isinstance(result, Ref) else list(result)
    if relu:
        refs = [ctx.g.op("relu", r, out=o.name + "_relu") for r, o in zip(refs, outs)]
    return [_requantize(ctx, r, o) if isinstance(o, QuantizedValue) else r for r, o in zip(refs, node.outputs)]


@register("aten::quantize_per_tensor", "aten::quantize_per_tensor.tensor_qparams")
def aten_quantize_per_tensor(ctx: Context, self: Value, scale: float, zero_point: int, dtype: Any) -> Ref:
    """quantize_per_tensor(Tensor self, float scale, int zero_point, ScalarType dtype) -> Tensor: the
    float input rounded into the output's integers (``.tensor_qparams``, FX's form, has its scale and
    zero point read from their tensors by the capture).
    """
    _tract_only(ctx)
    out = ctx.out
    if not isinstance(out, QuantizedValue):
        raise TranslationError(f"{ctx.where()}: its output carries no quantization parameters")
    ref = ctx.ref(self) if self.dtype == "f32" else ctx.g.op("tract_core_cast", ctx.ref(self), to="f32")
    return _requantize(ctx, ref, out)


@register("aten::dequantize.self")
def aten_dequantize(ctx: Context, self: Value) -> Ref:
    """dequantize.self(Tensor self) -> Tensor: ``scale * (q - zero_point)`` in f32."""
    _tract_only(ctx)
    ref = _qref(ctx, self) if isinstance(self, QuantizedValue) else ctx.ref(self)
    return ctx.g.op("tract_core_cast", ref, to="f32", out=ctx.out.name)


@register("quantized::add", "quantized::add_relu", "quantized::mul", "quantized::mul_relu")
def quantized_binary(ctx: Context, qa: Value, qb: Value, scale: float, zero_point: int) -> list[Ref]:
    """add(Tensor qa, Tensor qb, float scale, int zero_point) -> Tensor qc (also add_relu, mul,
    mul_relu): computed in f32, then requantized.
    """
    _tract_only(ctx)
    assert ctx.node is not None
    kind, _, relu = TORCH_QUANTIZED[ctx.node.kind]
    return _float_op(ctx, kind, FLOAT_OVERLOADS.get(kind, ""), (qa, qb), relu)


@register("quantized::cat")
def quantized_cat(ctx: Context, qx: list[Value], dim: int, scale: float | None, zero_point: int | None) -> list[Ref]:
    """cat(Tensor[] qx, int dim, float? scale, int? zero_point) -> Tensor: in f32, then requantized."""
    _tract_only(ctx)
    return _float_op(ctx, "aten::cat", "", (qx, dim))


@register("quantized::hardswish")
def quantized_hardswish(ctx: Context, input: Value, output_scale: float, output_zero_point: int) -> list[Ref]:
    """hardswish(Tensor input, float output_scale, int output_zero_point) -> Tensor."""
    _tract_only(ctx)
    return _float_op(ctx, "aten::hardswish", "", (input,))


@register(*(f"quantized::aten_{k}" for k in sorted(VIA_FLOAT)))
def quantized_via_float(ctx: Context, *args: Any, **kwargs: Any) -> list[Ref]:
    """An ATen op applied to quantized tensors (``torch.relu(q)``, ``torch.sigmoid(q)``, ``q.mean()``...):
    its arguments, the ATen schema's, go to the float translation of that operator (bound there); the
    result is requantized to the output's parameters.
    """
    _tract_only(ctx)
    node = ctx.node
    assert node is not None
    kind = "aten::" + node.kind.removeprefix("quantized::aten_")
    return _float_op(ctx, kind, node.overload, (*args, kwargs) if kwargs else args)


@register("quantized::conv1d", "quantized::conv1d_relu", "quantized::conv2d", "quantized::conv2d_relu")
def quantized_conv(
    ctx: Context,
    qx: Value,
    weight: Value,
    bias: Value | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    output_scale: float,
    output_zero_point: int,
    weight_scales: Value | None,
) -> Ref:
    """conv2d(Tensor qx, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, int groups,
    float output_scale, int output_zero_point, Tensor? weight_scales) -> Tensor (the packed weights unpacked
    by the jit front-end: ``weight`` the int8 weight, ``weight_scales`` its per-channel scales or None).
    """
    _tract_only(ctx)
    acc = _accumulator(ctx, qx, weight)
    conv = ctx.g.op(
        "conv",
        _qref(ctx, qx),
        _qref(ctx, weight),
        0,
        border="constant",
        stride=list(stride),
        padding=[(p, p) for p in padding],
        dilation=list(dilation),
        groups=groups,
        out=ctx.out.name + "_acc",
    )
    _declare(ctx, conv, "i32", acc, 0)
    return _finish(ctx, conv, bias, weight_scales, channel_axis=1)


@register("quantized::linear", "quantized::linear_relu")
def quantized_linear(
    ctx: Context,
    qx: Value,
    weight: Value,
    bias: Value | None,
    output_scale: float,
    output_zero_point: int,
    weight_scales: Value | None,
) -> Ref:
    """linear(Tensor qx, Tensor weight, Tensor? bias, float output_scale, int output_zero_point,
    Tensor? weight_scales) -> Tensor (the packed weights unpacked by the jit front-end).
    """
    _tract_only(ctx)
    acc = _accumulator(ctx, qx, weight)
    wq = _qref(ctx, weight)
    if qx.rank > 2:
        wq = ctx.g.op("unsqueeze", wq, axes=list(range(qx.rank - 2)), out=weight.name + "_aligned")
    mm = ctx.g.op("matmul", _qref(ctx, qx), wq, transposeA=False, transposeB=True, out=ctx.out.name + "_acc")
    _declare(ctx, mm, "i32", acc, 0)
    return _finish(ctx, mm, bias, weight_scales, channel_axis=qx.rank - 1)


def _accumulator(ctx: Context, x: Any, w: Any) -> float:
    if not isinstance(x, QuantizedValue) or not isinstance(w, QuantizedValue):
        raise TranslationError("a quantized convolution or linear layer needs a quantized input and weight")
    return x.scale * w.scale


def _finish(ctx: Context, acc: Ref, bias: Any, w_scales: Any, channel_axis: int) -> Ref:
    """f32 epilogue of an integer convolution/matmul: per-channel scales, bias, the fused ReLU of the
    ``*_relu`` kinds, requantization.
    """
    g = ctx.g
    node = ctx.node
    assert node is not None
    relu = node.kind.endswith("_relu")
    out = node.outputs[0]
    rank = out.rank
    y = g.op("tract_core_cast", acc, to="f32", out=out.name + "_f32")

    def along_channels(v: Value) -> Ref:
        ref = ctx.ref(v)
        axes = [a for a in range(rank) if a != channel_axis]
        if channel_axis == rank - 1:
            axes = list(range(rank - 1))
        return g.op("unsqueeze", ref, axes=axes, out=v.name + "_aligned") if axes else ref

    if w_scales is not None:
        y = g.op("mul", y, along_channels(w_scales), out=out.name + "_scaled")
    if bias is not None:
        y = g.op("add", y, along_channels(bias), out=out.name + "_biased")
    if relu:
        y = g.op("relu", y, out=out.name + "_relu")
    if not isinstance(out, QuantizedValue):
        raise TranslationError(f"{node.kind} at {node.where()}: its output carries no quantization parameters")
    return _requantize(ctx, y, out)
