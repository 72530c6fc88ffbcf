"""The IR's conventions for int8 quantized tensors (per-tensor affine), shared by the jit front-end
that produces them (:mod:`torch_to_nnef.capture.quantized`) and the translations that read them
(:mod:`torch_to_nnef.op.quantized`).

A quantized tensor is a :class:`~torch_to_nnef.ir.QuantizedValue`. Nodes on quantized tensors are
keyed as torch's own ``quantized::`` ops (packed weights unpacked into plain arguments), or, for an
ATen op computed in float and requantized, as ``quantized::aten_<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PASS_THROUGH = frozenset(
    f"aten::{k}"
    for k in (
        "flatten",
        "reshape",
        "view",
        "_unsafe_view",
        "permute",
        "transpose",
        "squeeze",
        "unsqueeze",
        "contiguous",
        "clone",
        "detach",
        "dropout",
        "max_pool1d",
        "max_pool2d",
        "slice",
        "select",
        "t",
    )
)
"""ATen kinds that move quantized integers without arithmetic: same scale and zero point out."""

VIA_FLOAT = frozenset(
    (
        "relu",
        "sigmoid",
        "hardswish",
        "hardtanh",
        "leaky_relu",
        "adaptive_avg_pool1d",
        "adaptive_avg_pool2d",
        "avg_pool1d",
        "avg_pool2d",
        "mean",
        "cat",
        "add",
        "mul",
        "upsample_nearest2d",
    )
)
"""ATen kinds computed in f32 on quantized inputs (as ``quantized::<name>``), then requantized."""

TORCH_QUANTIZED = {
    # torch kind: (ATen kind of the float computation, index of output_scale, fused relu)
    "quantized::add": ("aten::add", 2, False),
    "quantized::add_relu": ("aten::add", 2, True),
    "quantized::mul": ("aten::mul", 2, False),
    "quantized::mul_relu": ("aten::mul", 2, True),
    "quantized::cat": ("aten::cat", 2, False),
    "quantized::hardswish": ("aten::hardswish", 1, False),
}

FLOAT_OVERLOADS = {"aten::add": "Tensor", "aten::mul": "Tensor"}
"""The overload of the float ATen op that torch's quantized ops of :data:`TORCH_QUANTIZED` are computed
with, where it is not the default one."""

_CONV = (
    "(Tensor qx, Tensor weight, Tensor? bias, int[] stride, int[] padding, int[] dilation, int groups, "
    "float output_scale, int output_zero_point, Tensor? weight_scales) -> Tensor"
)
_LINEAR = (
    "(Tensor qx, Tensor weight, Tensor? bias, float output_scale, int output_zero_point, Tensor? weight_scales) "
    "-> Tensor"
)
UNPACKED_SCHEMAS = {
    **{f"quantized::{k}": _CONV for k in ("conv1d", "conv1d_relu", "conv2d", "conv2d_relu")},
    **{f"quantized::{k}": _LINEAR for k in ("linear", "linear_relu")},
}
"""The schemas of torch's quantized convolutions and linear layers as the IR holds them: their packed
weights unpacked into the int8 ``weight`` (a quantized value), the float ``bias`` and, for per-channel
weights, the f32 ``weight_scales`` (None for a per-tensor weight)."""


@dataclass(frozen=True)
class PendingQ4_0:
    """The Q4_0 blocks of a weight that is not in memory (a model whose weights are on the meta
    device): declared in the graph like the blocks themselves, and packed from the weight's values
    when the archive is written (see :class:`~torch_to_nnef.io.qtensor.QTensorTractScaleOnly`).
    """

    shape: tuple[int, ...]
    values: Any = field(default=None, compare=False, repr=False)
    """The pending weight (on the meta device) the blocks are made from, when known."""

    @property
    def nbytes(self) -> int:
        """The size of the blocks (18 bytes per 32 values)."""
        size = 1
        for d in self.shape:
            size *= d
        return size // 32 * 18
