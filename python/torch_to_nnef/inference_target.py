"""Inference targets: what the exported NNEF must run on, and how it is checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.tract import Tolerance
from torch_to_nnef.tract_versions import OLDEST_TRACT, SDPA_TRACT, TRANSFORMERS_TRACT

__all__ = ["OLDEST_TRACT", "SDPA_TRACT", "TRANSFORMERS_TRACT", "InferenceTarget", "KhronosNNEF", "TractNNEF"]


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
        force_attention_inner_in_f32: in f16 models, compute attention scores and softmax in f32.
        force_linear_accumulation_in_f32: in f16 models, run linear/matmul in f32 and cast back.
        force_norm_in_f32: in f16 models, compute normalisations (layer, group, batch, RMS,
            instance) in f32 and cast back.
        reify_sdpa_operator: write ``scaled_dot_product_attention`` as tract's fused
            ``tract_transformers_sdpa`` (tract >= 0.22.0) instead of its expansion.
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
    """Export restricted to the operators of the Khronos NNEF specification.

    Args:
        version: specification version (only ``1.0.x`` exists).
        check_io: verify the export with tract restricted to the specification's operators.
        check_io_tolerance: tract tolerance level used by the check.
    """

    version: str = "1.0.5"
    check_io: bool = False
    check_io_tolerance: Tolerance = "approximate"

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


InferenceTarget = Union[TractNNEF, KhronosNNEF]
