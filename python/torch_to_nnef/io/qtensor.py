"""Quantized weights that PyTorch still computes with: :class:`QTensor` and its Q4_0 flavour.

A :class:`QTensorTractScaleOnly` is a float tensor holding the *dequantized* values of its Q4_0
blocks, with the blocks themselves (a :class:`~torch_to_nnef.io.q4_0.Q40Tensor`) attached, or, for
an f32 or f16 weight quantized in place, packed again from those values when exported (they
quantize back to the same blocks, so the model holds no second copy of its weights). PyTorch
runs the model with those values, and ``torch.export`` captures it like any float model; the
exporter then writes the blocks (``.dat`` item type 0x3040, or 0x2040 for tract < 0.21.11)
instead of floats, so tract computes with exactly the same weights.

A QTensor is an ``nn.Parameter`` (``requires_grad=False`` by default), so it replaces a module's
weight directly (``linear.weight = fp_to_tract_q4_0_with_min_max_calibration(linear.weight)``).
How it behaves with the usual tools:

- operations, ``.detach()``, ``.clone()``, ``tensor.to(other dtype or device)`` give plain float
  tensors of the dequantized values; ``module.to(...)``, ``.half()``, ``.cuda()`` keep the QTensor
  (PyTorch swaps its data in place) and its blocks;
- ``nn.Parameter(q, requires_grad=False)`` is a QTensor of the same blocks over the same memory
  (and exports as Q4_0), so ``module.weight = nn.Parameter(q)`` keeps the quantized weight;
- ``copy.deepcopy`` copies it with its blocks (which are immutable and shared);
- ``module.state_dict()`` holds the dequantized values as plain tensors: they quantize back to the
  very same blocks, so saving a state dict and compressing again loses nothing;
- ``torch.save`` of a QTensor (or of a whole module holding one) stores the values and the
  blocks; ``torch.load(weights_only=True)`` reads it back once this module is imported (it
  registers its rebuild function as a safe global), otherwise torch names the missing global;
- changing the values in place (``load_state_dict``, an optimizer step) is detected: on export the
  new values are quantized again, and refused if they are not Q4_0 values (see
  :meth:`QTensorTractScaleOnly.to_q4_0`).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Mapping
from typing import Any

import torch

from torch_to_nnef.errors import DTypeError, QTensorError, ShapeError
from torch_to_nnef.io.q4_0 import Q40Tensor, quantize_q4_0
from torch_to_nnef.ir import Graph, Value
from torch_to_nnef.ir.quantized import PendingQ4_0

LOGGER = logging.getLogger(__name__)

__all__ = [
    "Q4_0_CONV_TRACT",
    "Q4_0_GGML_TRACT",
    "Q4_0_TRACT",
    "QTensor",
    "QTensorError",
    "QTensorTractScaleOnly",
    "fp_to_tract_q4_0_with_min_max_calibration",
    "q4_0_weights_for_export",
]

Q4_0_TRACT = (0, 21, 6)
"""First tract release that reads Q4_0 weights (item type 0x2040)."""
Q4_0_GGML_TRACT = (0, 21, 11)
"""First tract release with the GGML block order (item type 0x3040); older ones read 0x2040."""
Q4_0_CONV_TRACT = (0, 21, 12)
"""First tract release that convolves with Q4_0 kernels."""

_BLOCK = 32
_PARAMETER_NEW = torch.nn.Parameter.__new__.__code__
_FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


class QTensor(torch.nn.Parameter):
    """A weight stored in a quantized form, seen by PyTorch as the float tensor of its dequantized
    values. Subclasses define the stored form; see the module documentation for how it behaves.
    """

    def __new__(cls, values: torch.Tensor, *args: Any, requires_grad: bool = False, **kwargs: Any) -> QTensor:
        """A tensor of class ``cls`` over the memory of ``values`` (subclasses add their stored form)."""
        return torch.Tensor._make_subclass(cls, values.detach(), requires_grad)  # type: ignore[no-any-return]

    def __init__(self, values: torch.Tensor, *args: Any, requires_grad: bool = False, **kwargs: Any) -> None:
        self._quantized_version = self._version

    def __deepcopy__(self, memo: dict[int, Any]) -> QTensor:
        if id(self) in memo:
            return memo[id(self)]  # type: ignore[no-any-return]
        result = self._rebuilt(self.data.clone(memory_format=torch.preserve_format))
        memo[id(self)] = result
        return result

    def _rebuilt(self, values: torch.Tensor) -> QTensor:
        """A QTensor of the same class and stored form over ``values``."""
        raise NotImplementedError(f"{type(self).__name__} must define _rebuilt")

    def detach(self) -> torch.Tensor:  # type: ignore[override]
        """The dequantized values as a plain tensor, as for any parameter (``state_dict()`` holds
        them); for ``nn.Parameter(q)``, which requires a tensor of its own class, this QTensor
        without autograd history (same class, stored form and memory).
        """
        if sys._getframe(1).f_code is not _PARAMETER_NEW:
            return self.dequantize()
        rebuilt = self._rebuilt(self.dequantize())
        rebuilt._quantized_version = self._quantized_version  # detached tensors share the version counter
        return rebuilt

    def dequantize(self) -> torch.Tensor:  # type: ignore[override]
        """The dequantized values as a plain float tensor over this tensor's memory (of its dtype
        and device).
        """
        values: torch.Tensor = torch.Tensor.detach(self)
        return values

    def __repr__(self) -> str:  # type: ignore[override]
        return f"{type(self).__name__}(shape={list(self.shape)}, dtype={self.dtype}, device={self.device})"


class QTensorTractScaleOnly(QTensor):
    """Q4_0 blocks (GGML ``block_q4_0``: 32 consecutive values of a row share one f16 scale, no
    offset) and the float tensor of their dequantized values, which PyTorch computes with.

    Build one with :func:`fp_to_tract_q4_0_with_min_max_calibration`, or from blocks:
    ``QTensorTractScaleOnly(values, blocks)`` where ``values`` must be the blocks' dequantized
    values (in any float dtype and on any device). With ``blocks=None`` the values (f32 or f16)
    are Q4_0 values already and the blocks are packed from them only when needed (exported,
    pickled): Q4_0 values quantize back to blocks that decode to exactly the same values (the
    very same bytes, but for a block whose scale underflowed to zero), so nothing is lost and no
    second copy of the weight is held; values that are not Q4_0 values are refused
    then with a :class:`QTensorError`.
    """

    _q4_0: Q40Tensor | None

    def __new__(
        cls, values: torch.Tensor, blocks: Q40Tensor | None, *, requires_grad: bool = False
    ) -> QTensorTractScaleOnly:
        """Checks that ``values`` match ``blocks`` in shape and are floats."""
        if blocks is not None and list(values.shape) != list(blocks.shape):
            raise ShapeError(f"values of shape {list(values.shape)} for Q4_0 blocks of shape {blocks.shape}")
        if values.dtype not in _FLOATS:
            raise DTypeError(f"a Q4_0 weight holds float values, not {values.dtype}")
        if blocks is None:
            _check_blockable(values.shape)
        return super().__new__(cls, values, requires_grad=requires_grad)  # type: ignore[return-value]

    def __init__(self, values: torch.Tensor, *args: Any, requires_grad: bool = False) -> None:
        if "_q4_0" in self.__dict__:
            # ``nn.Parameter(q)`` returns ``q.detach()``, built already, and Python initialises it again
            return
        if len(args) != 1:
            raise TypeError("QTensorTractScaleOnly(values, blocks) takes the Q4_0 blocks (or None) after the values")
        (blocks,) = args
        super().__init__(values)
        self._q4_0 = blocks
        self.percentile = 1.0
        """For a weight on the meta device: the percentile its values are clipped to, block by block,
        before they are quantized (see :meth:`calibrated`)."""

    def _rebuilt(self, values: torch.Tensor) -> QTensorTractScaleOnly:
        rebuilt = type(self)(values, self._q4_0, requires_grad=self.requires_grad)
        rebuilt.percentile = self.percentile
        return rebuilt

    @property
    def pending(self) -> bool:
        """True for a weight on the meta device: its blocks are made from its float values as they
        are read (:meth:`calibrated`), when the archive is written.
        """
        return self.device.type == "meta"

    def calibrated(self, rows: torch.Tensor) -> torch.Tensor:
        """The values whose Q4_0 blocks (min-max, as :func:`quantize_q4_0` makes them) stand for
        ``rows`` of a pending weight's float values: a piece of whole blocks of 32, clipped to
        :attr:`percentile` block by block. Blocks are independent, so the pieces of a weight give
        the blocks of the whole weight.
        """
        if self.percentile >= 1.0:
            return rows
        return _clip_to_percentile(rows, self.percentile)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        blocks = self.to_q4_0()
        return (_rebuild_q4_0, (self.data, blocks.to_bytes(), list(blocks.shape), self.requires_grad))

    def to_q4_0(self) -> Q40Tensor:
        """The Q4_0 blocks of the current values.

        Held blocks are returned as they are, unless the values were changed in place since
        quantization (``load_state_dict``, an optimizer step): they are then quantized again and
        kept only if they are Q4_0 values already (dequantizing the new blocks gives them back
        exactly), as a reloaded state dict of this model is. Without held blocks, the values of a
        contiguous f32 or f16 CPU tensor give a deferred :class:`Q40Tensor` (packed, and checked,
        when written); others are quantized and checked now.

        Raises:
            QTensorError: the values were changed to values that Q4_0 cannot hold exactly, or the
                weight is on the meta device (it has no values yet: see :attr:`pending`).
        """
        if self.pending:
            raise QTensorError("a Q4_0 weight on the meta device has no blocks until its values are read")
        if self._q4_0 is None:
            values = self.dequantize()
            if self._version != self._quantized_version:  # refused now rather than when written
                _requantized(values)
                self._quantized_version = self._version
            if values.device.type == "cpu" and values.dtype in _DEFERRABLE and values.is_contiguous():
                return Q40Tensor.of_values(values.numpy(), name="QTensor")
            return _requantized(values)
        if self._version != self._quantized_version:
            self._q4_0, self._quantized_version = _requantized(self.dequantize()), self._version
        return self._q4_0

    @property
    def q4_0_nbytes(self) -> int:
        """Size of the Q4_0 blocks in bytes (18 per 32 values)."""
        return math.prod(self.shape) // _BLOCK * 18


_DEFERRABLE = (torch.float32, torch.float16)


def _check_blockable(shape: torch.Size) -> None:
    """Refuses a shape whose rows (the dimensions after the first) are not whole Q4_0 blocks."""
    if len(shape) < 2 or math.prod(shape[1:]) % _BLOCK:
        raise ShapeError(
            f"Q4_0 packs each row (the dimensions after the first) in blocks of {_BLOCK}, for tensors of rank >= 2; "
            f"shape {list(shape)} cannot be packed"
        )


def _requantized(values: torch.Tensor) -> Q40Tensor:
    """The blocks of ``values``, which must be Q4_0 values already."""
    fresh = quantize_q4_0(values.float() if values.dtype == torch.float64 else values, name="QTensor")
    back = torch.from_numpy(fresh.dequantize()).to(device=values.device, dtype=values.dtype)
    if not torch.equal(back, values):
        raise QTensorError(
            "the values of this Q4_0 weight were changed in place (load_state_dict, an optimizer step) to "
            "values Q4_0 cannot hold: quantize them again with fp_to_tract_q4_0_with_min_max_calibration"
        )
    return fresh


def _rebuild_q4_0(values: torch.Tensor, blocks: bytes, shape: list[int], requires_grad: bool) -> QTensorTractScaleOnly:
    """Unpickles a :class:`QTensorTractScaleOnly` (``torch.load``)."""
    return QTensorTractScaleOnly(values, Q40Tensor.from_blocks(blocks, shape), requires_grad=requires_grad)


torch.serialization.add_safe_globals([_rebuild_q4_0])


def _clip_to_percentile(values: torch.Tensor, percentile: float) -> torch.Tensor:
    """Each block of 32 clipped to its ``percentile`` quantile of magnitudes, in row chunks."""
    blocks = values.reshape(-1, _BLOCK)
    k = max(1, math.ceil(percentile * _BLOCK))
    out = torch.empty_like(blocks)
    step = 1 << 18
    for start in range(0, blocks.shape[0], step):
        chunk = blocks[start : start + step]
        bound = chunk.abs().kthvalue(k, dim=1, keepdim=True).values
        torch.clamp(chunk, -bound, bound, out=out[start : start + step])
    return out.reshape(values.shape)


def fp_to_tract_q4_0_with_min_max_calibration(
    tensor: torch.Tensor, percentile: float = 1.0, *, threads: int | None = None, inplace: bool = False
) -> QTensorTractScaleOnly:
    """Quantizes a float weight to Q4_0 with min-max calibration (each block of 32 consecutive
    values of a row is scaled by its value of largest magnitude), byte-identical to tract's own
    quantizer. The input is left unchanged unless ``inplace``.

    Args:
        tensor: f32, f16, bf16 or f64 weight (an ``nn.Parameter`` too) of rank >= 2 whose rows (the
            dimensions after the first) hold a multiple of 32 values, with finite values.
        percentile: below 1, the values of each block are first clipped to that quantile of their
            magnitudes (outliers saturate, the others keep a finer scale).
        threads: quantization threads (default: all cores).
        inplace: for a contiguous CPU tensor, write the dequantized values over its own memory (the
            QTensor then shares it): no second full-size buffer, as when a model's weights are
            replaced (:mod:`torch_to_nnef.io.compress`). For f32 and f16 the blocks are then not
            held either: they are packed again from the values when exported (see
            :class:`QTensorTractScaleOnly`), so a compressed model takes no more memory than
            its float weights.

    Returns:
        A :class:`QTensorTractScaleOnly` of the same dtype and device, ``requires_grad=False``. For
        a weight on the meta device (a model built without its weights), a pending one
        (:attr:`QTensorTractScaleOnly.pending`): its blocks are made as its values are read from
        the model's checkpoint, when the archive is written.

    Raises:
        ShapeError: rank below 2, or rows whose size is not a multiple of 32.
        DTypeError: not a float tensor.
        QTensorError: non-finite values (a block holding one would decode to NaN or infinities),
            or a percentile outside (0, 1].
    """
    values = tensor.detach()
    if values.dtype not in _FLOATS:
        raise DTypeError(f"Q4_0 quantizes float weights, not {values.dtype}")
    _check_blockable(values.shape)
    if not 0.0 < percentile <= 1.0:
        raise QTensorError(f"percentile must be in (0, 1], got {percentile}")
    if values.device.type == "meta":  # quantized as its values are read, when exported
        pending = QTensorTractScaleOnly(values, None)
        pending.percentile = percentile
        return pending
    # A finite sum proves every value finite without a full-size mask; only an overflowing or
    # non-finite sum needs the exact check.
    if not (bool(torch.isfinite(values.sum())) or bool(torch.isfinite(values).all())):
        raise QTensorError("the weight holds NaN or infinite values; Q4_0 would spread them over their blocks")
    source = values.float() if values.dtype == torch.float64 else values
    if percentile < 1.0:
        source = _clip_to_percentile(source, percentile)
    blocks = quantize_q4_0(source, threads=threads, name="weight")
    if inplace and values.device.type == "cpu" and values.is_contiguous():
        if values.dtype in _DEFERRABLE:  # decoded straight into the weight's own memory, blocks dropped
            blocks.dequantize_into(values.numpy())
            return QTensorTractScaleOnly(values, None)
        # bf16 (rounding may lose Q4_0 values): decoded in f32 (one weight's worth, transient),
        # rounded into the weight's own memory, blocks kept
        values.copy_(torch.from_numpy(blocks.dequantize()).view(values.shape))
        return QTensorTractScaleOnly(values, blocks)
    dequantized = torch.from_numpy(blocks.dequantize())
    if values.dtype != torch.float32 or values.device.type != "cpu":
        dequantized = dequantized.to(device=values.device, dtype=values.dtype)
    return QTensorTractScaleOnly(dequantized, blocks)


# --- export -------------------------------------------------------------------------------------

_LINEAR = frozenset({"aten::linear"})
_MATMUL = frozenset({"aten::matmul", "aten::mm", "aten::bmm"})
_CONV = frozenset({"aten::conv1d", "aten::conv2d", "aten::conv3d"})
_EMBEDDING = frozenset({"aten::embedding"})


def _use_refusal(kind: str, index: int, weight: Value, target: Any, widened: frozenset[str]) -> str | None:
    """Why tract cannot read the Q4_0 weight as argument ``index`` of ``kind`` (None: it can)."""
    if kind in widened and weight.dtype == "f16":
        return f"{kind} computes in f32 here (force_*_in_f32) and tract cannot cast Q4_0 blocks"
    if kind in _LINEAR and index == 1:
        return None
    if kind in _MATMUL and index == 0 and weight.rank == 2:
        return None
    if kind in _MATMUL:
        return f"{kind} contracts its first axis; Q4_0 blocks run along the last one (use it as the left operand)"
    if kind in _CONV and index == 1:
        if target.version_tuple >= Q4_0_CONV_TRACT:
            return None
        return f"tract {target.version} cannot convolve with Q4_0 kernels (tract >= 0.21.12 can)"
    if kind in _EMBEDDING and index == 0:
        return None
    return f"{kind} cannot read Q4_0 blocks"


_SAME_AXES = frozenset({"aten::contiguous", "aten::clone", "aten::alias", "aten::_to_copy", "aten::to"})


def _concatenated_contraction(x: Any, producers: Mapping[str, Any]) -> bool:
    """Whether the input ``x`` of a linear layer is, through transpositions, a concatenation along
    the axis the layer contracts (its last).
    """
    if not isinstance(x, Value) or not x.rank:
        return False
    axis = x.rank - 1
    node = producers.get(x.name)
    while node is not None:
        source = node.args[0] if node.args else None
        rank = source[0].rank if isinstance(source, (list, tuple)) and source else getattr(source, "rank", 0)
        if node.kind == "aten::cat":
            dim = node.args[1] if len(node.args) > 1 and isinstance(node.args[1], int) else 0
            return bool(rank) and dim % rank == axis
        if node.kind == "aten::transpose" and len(node.args) == 3 and rank:
            first, second = node.args[1] % rank, node.args[2] % rank
            axis = second if axis == first else first if axis == second else axis
        elif node.kind == "aten::permute" and len(node.args) == 2 and rank:
            axis = list(node.args[1])[axis] % rank
        elif node.kind not in _SAME_AXES:
            return False
        node = producers.get(source.name) if isinstance(source, Value) else None
    return False


def q4_0_weights_for_export(
    graph: Graph, target: Any, widened: frozenset[str] = frozenset()
) -> dict[str, Q40Tensor | PendingQ4_0]:
    """The Q4_0 blocks to write for the graph's QTensor parameters, by placeholder name (a
    :class:`PendingQ4_0` for a weight on the meta device).

    A QTensor parameter is written as Q4_0 when every use of it is one tract reads Q4_0 in:
    the weight of ``linear``, the left operand of a 2-D ``matmul``/``mm``, the kernel of a
    convolution (tract >= 0.21.12), the table of an ``embedding``. Otherwise (and for
    :class:`~torch_to_nnef.check.targets.KhronosNNEF`, which has no Q4_0) it is written as
    its dequantized floats, the reason logged as a warning: the exported model computes the same
    values either way.

    Args:
        graph: the captured graph.
        target: the inference target.
        widened: node kinds the export computes in f32 (f16 models with ``force_*_in_f32``).

    Raises:
        QTensorError: the target is tract < 0.21.6, which has no Q4_0.
    """
    quantized = {name: p for name, p in graph.parameters.items() if isinstance(p.tensor, QTensorTractScaleOnly)}
    if not quantized:
        return {}
    if not target.is_tract:
        LOGGER.warning(
            "the NNEF specification has no Q4_0: %d quantized weight(s) written as their dequantized floats",
            len(quantized),
        )
        return {}
    if target.version_tuple < Q4_0_TRACT:
        names = ", ".join(sorted(p.torch_name for p in quantized.values()))
        raise QTensorError(
            f"tract {target.version} cannot read Q4_0 weights (tract >= 0.21.6 can): target a newer tract, or "
            f"export the float model; quantized: {names}"
        )
    refusals: dict[str, list[str]] = {}
    producers = {out.name: node for node in graph.nodes for out in node.outputs}
    for node in graph.nodes:
        for index, arg in enumerate(node.args):
            args: Any = arg.values() if isinstance(arg, Mapping) else arg if isinstance(arg, (list, tuple)) else [arg]
            for a in args:
                if isinstance(a, Value) and a.name in quantized:
                    reason = _use_refusal(node.kind, index if a is arg else -1, a, target, widened)
                    if reason is None and node.kind in _LINEAR and _concatenated_contraction(node.args[0], producers):
                        reason = (
                            "its input is a concatenation along the contracted axis, which tract splits the "
                            "product over, slicing the weight (it cannot slice Q4_0 blocks)"
                        )
                    if reason is not None:
                        refusals.setdefault(a.name, []).append(f"{reason} (at {node.where()})")
    for name, reasons in refusals.items():
        LOGGER.warning("%s written as dequantized floats, not Q4_0: %s", quantized[name].torch_name, "; ".join(reasons))
    return {
        name: PendingQ4_0(tuple(p.tensor.shape), p.tensor) if p.tensor.pending else p.tensor.to_q4_0()
        for name, p in quantized.items()
        if name not in refusals
    }
