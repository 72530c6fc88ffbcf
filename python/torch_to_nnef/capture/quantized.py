"""The jit front-end's side of quantized models: torch's packed weights unpacked into IR arguments,
and the scale and zero point of each quantized result (conventions in :mod:`torch_to_nnef.ir.quantized`).
"""

from __future__ import annotations

from typing import Any

import torch

from torch_to_nnef.capture.errors import JitCaptureError
from torch_to_nnef.ir import QuantizedValue, Value
from torch_to_nnef.ir.quantized import TORCH_QUANTIZED, VIA_FLOAT


def _weight(conv: Any, w: torch.Tensor, path: str, where: str) -> tuple[Value, Value | None]:
    """The int8 weight as a quantized parameter, and its per-channel scales (or None)."""
    if w.qscheme() == torch.per_tensor_affine:
        return conv.parameter(w.int_repr(), path, (w.q_scale(), w.q_zero_point())), None
    if w.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        zero_points = w.q_per_channel_zero_points()
        if bool((zero_points != 0).any()) or w.q_per_channel_axis() != 0:
            raise JitCaptureError(
                f"{where}: per-channel weight {path} has non-zero zero points or is quantized along axis "
                f"{w.q_per_channel_axis()}: tract's NNEF quantization is per tensor, so per-channel weights must be "
                "symmetric along the output channels (qscheme=torch.per_channel_symmetric, as in "
                "torch.ao.quantization.get_default_qconfig('fbgemm')), or use a per-tensor weight observer"
            )
        scales = w.q_per_channel_scales().to(torch.float32)
        return conv.parameter(w.int_repr(), path, (1.0, 0)), conv.parameter(scales, path + "_scales")
    raise JitCaptureError(f"{where}: weight {path} uses the quantization scheme {w.qscheme()}, which is not exported")


def unpack_node(kind: str, inputs: list[Any], conv: Any, where: str) -> tuple[str, list[Any]]:
    """The IR kind and arguments of a quantized op of the trace (packed weights unpacked)."""
    if kind in ("quantized::conv1d", "quantized::conv1d_relu", "quantized::conv2d", "quantized::conv2d_relu"):
        x, packed, scale, zero_point = inputs
        w, b = packed.unpack()
        stride, padding, dilation, groups = packed.stride(), packed.padding(), packed.dilation(), packed.groups()
        if packed.transpose():
            raise JitCaptureError(f"{kind} at {where}: quantized transposed convolutions are not exported")
        if kind.startswith("quantized::conv1d"):
            w = w.squeeze(2)
            stride, padding, dilation = stride[1:], padding[1:], dilation[1:]
        path = _packed_path(conv, packed, "weight")
        weight, w_scales = _weight(conv, w, path, f"{kind} at {where}")
        bias = (
            conv.parameter(b.detach().to(torch.float32), _packed_path(conv, packed, "bias")) if b is not None else None
        )
        return kind, [x, weight, bias, list(stride), list(padding), list(dilation), groups, scale, zero_point, w_scales]
    if kind in ("quantized::linear", "quantized::linear_relu"):
        x, packed, scale, zero_point = inputs
        w, b = torch.ops.quantized.linear_unpack(packed)
        weight, w_scales = _weight(conv, w, _packed_path(conv, packed, "weight"), f"{kind} at {where}")
        bias = (
            conv.parameter(b.detach().to(torch.float32), _packed_path(conv, packed, "bias")) if b is not None else None
        )
        return kind, [x, weight, bias, scale, zero_point, w_scales]
    if kind in TORCH_QUANTIZED:
        return kind, inputs
    name = kind.removeprefix("aten::").rstrip("_")
    if kind.startswith("aten::") and name in VIA_FLOAT:
        return f"quantized::aten_{name}", inputs
    raise JitCaptureError(
        f"{kind} at {where}: this quantized operation is not exported yet (supported: quantize_per_tensor, dequantize, "
        f"quantized conv1d/conv2d/linear (+relu), add, add_relu, mul, cat, hardswish, and on quantized tensors "
        f"{', '.join(sorted(VIA_FLOAT))} and the data-movement ops)"
    )


def _packed_path(conv: Any, packed: Any, what: str) -> str:
    for obj, path in conv.objects.values():
        if obj is packed:
            return f"{path.removesuffix('._packed_params._packed_params').removesuffix('._packed_params')}.{what}"
    return f"quantized.{what}"


def output_qparams(kind: str, inputs: list[Any], where: str) -> tuple[float, int]:
    """The scale and zero point of a quantized op's output, from its (IR) arguments."""
    if kind == "aten::quantize_per_tensor":
        return float(inputs[1]), int(inputs[2])
    if kind.startswith(("quantized::conv", "quantized::linear")):
        at = 7 if kind.startswith("quantized::conv") else 3
        return float(inputs[at]), int(inputs[at + 1])
    if kind in TORCH_QUANTIZED:
        at = TORCH_QUANTIZED[kind][1]
        first = inputs[0][0] if isinstance(inputs[0], list) else inputs[0]
        scale, zero_point = inputs[at], inputs[at + 1]
        if scale is None:  # cat without explicit parameters keeps its first input's
            return first.scale, first.zero_point
        return float(scale), int(zero_point)
    first = next(
        (a for a in [*inputs, *(x for i in inputs if isinstance(i, list) for x in i)] if isinstance(a, QuantizedValue)),
        None,
    )
    if kind == "quantized::aten_sigmoid" and first is not None:
        # torch's quantized sigmoid: fixed output parameters covering [0, 1)
        return (1.0 / 256, 0) if first.dtype == "u8" else (1.0 / 256, -128)
    if first is None:
        raise JitCaptureError(f"{kind} at {where}: returns a quantized tensor from no quantized input")
    return first.scale, first.zero_point
