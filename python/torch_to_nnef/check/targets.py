"""Inference targets: what the exported NNEF must run on, and how it is checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Union, get_args

from torch_to_nnef.check.tract import Tolerance
from torch_to_nnef.check.versions import OLDEST_TRACT, SDPA_TRACT, TRANSFORMERS_TRACT
from torch_to_nnef.errors import InvalidArgumentError

__all__ = ["OLDEST_TRACT", "SDPA_TRACT", "TRANSFORMERS_TRACT", "InferenceTarget", "KhronosNNEF", "TractNNEF"]


Bf16As = Literal["f16", "f32"]
"""What a bfloat16 model is exported as (NNEF and tract have no bfloat16)."""

BF16_TOLERANCE: Tolerance = "very"
"""The tightest check of a bfloat16 model: its PyTorch reference keeps 8 significant bits (about 0.4%)."""


def check_tolerance(target: InferenceTarget, bf16_reference: bool) -> Tolerance:
    """The level ``target``'s check compares at: its ``check_io_tolerance``, loosened to
    :data:`BF16_TOLERANCE` when the PyTorch reference is computed in bfloat16.
    """
    levels: tuple[str, ...] = get_args(Tolerance)
    wanted = target.check_io_tolerance
    if bf16_reference and levels.index(wanted) < levels.index(BF16_TOLERANCE):
        return BF16_TOLERANCE
    return wanted


def _parse_version(version: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", version.strip())
    if not m:
        raise InvalidArgumentError(f"tract version {version!r} is not of the form MAJOR.MINOR.PATCH (e.g. '0.21.5')")
    major, minor, patch = (int(g) for g in m.groups())
    return major, minor, patch


@dataclass
class TractNNEF:
    """Export for the tract engine, in the NNEF dialect of tract ``version``.

    Args:
        version: tract release the model will run on (decides which operators may be used).
        check_io: run the exported model in the tract linked into this package and compare its
            outputs with PyTorch's.
        dynamic_axes: ``{input_or_output_name: {axis: "S"}}``; symbols are single letters.
        check_io_tolerance: tract tolerance level used by the check.
        force_attention_inner_in_f32: in f16 models, compute attention (``scaled_dot_product_attention``,
            its scores and softmax) and every softmax (attention written out, as
            ``nn.MultiheadAttention`` with ``need_weights`` does) in f32.
        force_linear_accumulation_in_f32: in f16 models, run linear/matmul in f32 and cast back.
        force_norm_in_f32: in f16 models, compute normalisations (layer, group, batch, RMS,
            instance) in f32 and cast back.
        reify_sdpa_operator: write ``scaled_dot_product_attention`` as tract's fused
            ``tract_transformers_sdpa`` (tract >= 0.22.0) instead of its expansion.
        bf16_as: what a bfloat16 model (weights, inputs and computations) is exported as, since
            tract has no bfloat16: ``"f16"`` keeps the size but not the range (f16 overflows
            above 65504 where bfloat16 reaches 3.4e38, so a model with larger activations gets
            inf), ``"f32"`` keeps the range at twice the size and slower kernels. A warning names
            the loss. The check then compares with the bfloat16 PyTorch model at no tighter than
            ``"very"`` (bfloat16 keeps 8 significant bits).
        specific_properties: extra ``key -> value`` strings stored in ``tract_core_properties``.
        dump_identity_properties: also store the host name, user name and command line of the
            export (off by default: archives carry no personal data unless asked).
    """

    version: str = "0.23.9"
    check_io: bool = False
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None
    check_io_tolerance: Tolerance = "approximate"
    force_attention_inner_in_f32: bool = False
    force_linear_accumulation_in_f32: bool = False
    force_norm_in_f32: bool = False
    reify_sdpa_operator: bool = False
    bf16_as: Bf16As = "f16"
    specific_properties: Mapping[str, str] | None = None
    dump_identity_properties: bool = False
    version_tuple: tuple[int, int, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.version_tuple = _parse_version(self.version)
        if self.version_tuple < OLDEST_TRACT:
            oldest = ".".join(map(str, OLDEST_TRACT))
            raise InvalidArgumentError(
                f"tract {self.version} is older than the oldest supported release {oldest}: "
                "upgrade tract or pin an older torch_to_nnef"
            )
        for name, axes in (self.dynamic_axes or {}).items():
            for axis, symbol in axes.items():
                if not (isinstance(symbol, str) and len(symbol) == 1 and symbol.isalpha()):
                    raise InvalidArgumentError(
                        f"dynamic axis {axis} of {name!r} is named {symbol!r}: tract symbols are a single "
                        "letter, e.g. {'input': {2: 'S'}}"
                    )

        if self.bf16_as not in get_args(Bf16As):
            raise InvalidArgumentError(f"bf16_as must be 'f16' or 'f32', got {self.bf16_as!r}")
        for key, value in (self.specific_properties or {}).items():
            if not (isinstance(key, str) and isinstance(value, str)):
                raise InvalidArgumentError(
                    f"specific_properties must map strings to strings, got {key!r}: {type(value).__name__}"
                )
        if self.reify_sdpa_operator and self.version_tuple < SDPA_TRACT:
            raise InvalidArgumentError(
                f"reify_sdpa_operator needs tract >= {'.'.join(map(str, SDPA_TRACT))} "
                f"(tract_transformers_sdpa); the target is {self.version}"
            )

    @property
    def is_tract(self) -> bool:
        """True: tract's extensions are available."""
        return True

    def has(self, feature: tuple[int, int, int]) -> bool:
        """Whether the target tract release is at least ``feature`` (one of the ``*_TRACT`` versions)."""
        return self.version_tuple >= feature


@dataclass
class KhronosNNEF:
    """Export for the Khronos NNEF tools: the operators their parser (``nnef``) and interpreter
    (NNEF-Tools) define, or, with ``strict_spec``, those of the specification's text only.

    A bfloat16 model is exported as f32 (see :attr:`bf16_as`).

    Args:
        version: specification version (only ``1.0.x`` exists).
        check_io: verify the export with the Khronos interpreter and with tract restricted to its
            standard registry (when it reads every operator used), each against PyTorch.
        check_io_tolerance: tolerance level used by the check.
        strict_spec: only the operators of the NNEF 1.0.5 text (:data:`SPEC_OPERATORS`): no
            ``gather``, ``cast``, ``any_reduce``... that the tools added (:data:`TOOLS_OPERATORS`).
    """

    version: str = "1.0.5"
    check_io: bool = False
    check_io_tolerance: Tolerance = "approximate"
    strict_spec: bool = False

    def __post_init__(self) -> None:
        if not re.fullmatch(r"1\.0\.\d+", self.version):
            raise InvalidArgumentError(f"NNEF specification version {self.version!r} is unknown: use '1.0.5'")

    @property
    def is_tract(self) -> bool:
        """False: only the specification's operators."""
        return False

    @property
    def dynamic_axes(self) -> None:
        """The specification has no symbolic dimensions."""
        return None

    @property
    def bf16_as(self) -> Bf16As:
        """``"f32"``: bfloat16 models are exported as f32 (the specification's ``scalar`` is read as
        f32, so f16 graphs cannot be checked).
        """
        return "f32"


InferenceTarget = Union[TractNNEF, KhronosNNEF]
