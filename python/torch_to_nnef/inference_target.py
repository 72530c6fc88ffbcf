"""Inference targets: what the exported NNEF must run on, and how it is checked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.tract import Tolerance

OLDEST_TRACT = (0, 21, 0)
"""The oldest tract release whose NNEF dialect this exporter writes."""


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
    """

    version: str = "0.23.9"
    check_io: bool = False
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None
    check_io_tolerance: Tolerance = "approximate"
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

    @property
    def is_tract(self) -> bool:
        """True: tract's extensions are available."""
        return True


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
