# Hand-written stub of the Rust extension module; checked against it by mypy.stubtest.
from collections.abc import Sequence
from os import PathLike
from typing import Any, final

import numpy as np

_Path = str | PathLike[str]

__all__ = [
    "ArchiveWriter",
    "Q40Tensor",
    "TractModel",
    "check_labels",
    "compare",
    "read_dat",
    "scan_archive",
    "tract_q4_0_reference",
    "tract_read_dat",
    "tract_version",
    "write_archive",
    "write_dat",
    "write_dats",
]

@final
class ArchiveWriter:
    def __new__(
        cls,
        path: _Path,
        *,
        kind: str | None = None,
        compression_level: int = 0,
        flavor: str = "tract",
        q4_0_legacy: bool = False,
        overwrite: bool = False,
    ) -> ArchiveWriter: ...
    @property
    def written(self) -> int: ...
    def add_text(self, name: str, text: str) -> None: ...
    def add_tensor(self, label: str, tensor: np.ndarray | Q40Tensor) -> None: ...
    def begin_tensor(self, label: str, dtype: str, shape: Sequence[int], *, q4_0: bool = False) -> None: ...
    def write(self, array: np.ndarray, *, threads: int | None = None) -> None: ...
    def write_file_region(
        self, path: _Path, offset: int, length: int, *, values: str | None = None, threads: int | None = None
    ) -> None: ...
    def end_tensor(self) -> None: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...

@final
class Q40Tensor:
    """Q4_0 blocks (GGML order) with their logical shape, held or deferred (packed from Q4_0 values
    when written or asked for)."""

    @staticmethod
    def quantize(
        array: np.ndarray, *, bf16: bool = False, threads: int | None = None, name: str = "tensor"
    ) -> Q40Tensor: ...
    @staticmethod
    def of_values(array: np.ndarray, *, name: str = "tensor") -> Q40Tensor: ...
    @staticmethod
    def from_blocks(blocks: bytes, shape: Sequence[int]) -> Q40Tensor: ...
    @property
    def shape(self) -> list[int]: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def deferred(self) -> bool: ...
    def to_bytes(self) -> bytes: ...
    def dequantize(self) -> np.ndarray: ...
    def dequantize_into(self, out: np.ndarray) -> None: ...  # float32 or float16

@final
class TractModel:
    """An NNEF model loaded into the linked tract."""

    def __new__(
        cls,
        source: _Path | bytes,
        *,
        symbols: Sequence[tuple[str, int]] | None = None,
        registries: Sequence[str] | None = None,
        optimize: bool = True,
    ) -> TractModel: ...
    @property
    def inputs(self) -> list[tuple[str, str, str]]: ...
    @property
    def outputs(self) -> list[tuple[str, str, str]]: ...
    @property
    def properties(self) -> list[tuple[str, str]]: ...
    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...

def write_dat(
    path: _Path,
    tensor: np.ndarray | Q40Tensor,
    *,
    flavor: str = "tract",
    q4_0_legacy: bool = False,
    overwrite: bool = False,
) -> None: ...
def write_dats(
    directory: _Path,
    tensors: dict[str, np.ndarray | Q40Tensor],
    *,
    flavor: str = "tract",
    q4_0_legacy: bool = False,
    overwrite: bool = False,
) -> list[str]: ...
def read_dat(path: _Path) -> np.ndarray | Q40Tensor: ...
def tract_read_dat(path: _Path) -> np.ndarray: ...
def tract_q4_0_reference(array: np.ndarray) -> bytes: ...
def write_archive(
    path: _Path,
    graph_nnef: str,
    tensors: dict[str, np.ndarray | Q40Tensor],
    *,
    graph_quant: str | None = None,
    kind: str | None = None,
    compression_level: int = 6,
    flavor: str = "tract",
    q4_0_legacy: bool = False,
    overwrite: bool = False,
) -> None: ...
def scan_archive(source: _Path | bytes) -> list[str]: ...
def compare(expected: np.ndarray, got: np.ndarray, tolerance: str = "approximate") -> dict[str, Any]: ...
def check_labels(labels: Sequence[str]) -> None: ...
def tract_version() -> str: ...
