"""Running NNEF models in the tract engine linked into this package, and comparing outputs.

Nothing is downloaded and no process is started: the model is loaded by the tract crates inside
the extension module.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

from torch_to_nnef import _rust
from torch_to_nnef.errors import IOMismatchError, ShapeError
from torch_to_nnef.io.dat import PathLike, TensorLike, as_numpy

LOGGER = logging.getLogger(__name__)

Tolerance = Literal["exact", "close", "approximate", "very", "super", "ultra"]
"""tract's tolerance levels (atol, rtol, allowed outliers): exact 0; close 1e-7 (f16 1e-3);
approximate 1e-4, 5e-4 (f16 1e-3, 5e-3); very 5e-2, 1e-2; super 0.1, 0.05, 1e-4;
ultra 0.2, 0.1, 5e-4."""

Registry = Literal["tract_core", "tract_transformers", "tract_pulse"]
ALL_REGISTRIES: tuple[Registry, ...] = ("tract_core", "tract_transformers", "tract_pulse")

TRACT_VERSION: str = _rust.tract_version()
"""The tract release linked into this package."""

ModelSource = Union[PathLike, bytes]


class TractModel:
    """An NNEF model loaded into tract, optimized and ready to run.

    Args:
        source: a folder, ``.tar`` or ``.tgz`` path, or the bytes of a ``.tar``/``.tgz``.
        symbols: values for symbolic dimensions, e.g. ``{"S": 100}``; unbound symbols are
            resolved from the input shapes at run time.
        registries: operator registries to resolve; ``()`` keeps the NNEF specification only.
        optimize: run tract's optimizer (as a deployment would); ``False`` only declutters.

    Raises:
        TractError: tract cannot load the model (its message says why).
        UnsafePathError: an archive member or folder entry would escape the model.
    """

    def __init__(
        self,
        source: ModelSource,
        *,
        symbols: Mapping[str, int] | None = None,
        registries: Sequence[Registry] = ALL_REGISTRIES,
        optimize: bool = True,
    ) -> None:
        src: str | bytes = source if isinstance(source, bytes) else os.fspath(source)
        self._model = _rust.TractModel(
            src,
            symbols=list((symbols or {}).items()),
            registries=list(registries),
            optimize=optimize,
        )

    @property
    def input_names(self) -> list[str]:
        """Names of the inputs, in order."""
        return [name for name, _, _ in self._model.inputs]

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs, in order."""
        return [name for name, _, _ in self._model.outputs]

    @property
    def inputs(self) -> list[tuple[str, str, str]]:
        """``(name, dtype, shape)`` of each input, shapes possibly symbolic (``1,S,80``)."""
        return self._model.inputs

    @property
    def outputs(self) -> list[tuple[str, str, str]]:
        """``(name, dtype, shape)`` of each output."""
        return self._model.outputs

    @property
    def properties(self) -> dict[str, str]:
        """The model's ``tract_core_properties`` (export metadata), as text."""
        return dict(self._model.properties)

    def run(self, inputs: Sequence[TensorLike]) -> list[np.ndarray]:
        """Runs the model on numpy arrays or torch tensors, in input order."""
        arrays = [as_numpy(t, name=f"input {i}") for i, t in enumerate(inputs)]
        for (name, _, shape), array in zip(self._model.inputs, arrays):
            _check_steps(name, shape, array.shape)
        return self._model.run(arrays)


_STEPPED = re.compile(r"(?:(\d+)\+)?(\d+)\*[A-Za-z_]\w*(?:\+(\d+))?")
"""An input dimension in steps, as tract prints it: ``8*H_8``, ``1+2*T_2``."""


def _check_steps(name: str, shape: str, sizes: Sequence[int]) -> None:
    """Refuses an input whose size on an axis written in steps (``8*H_8``: a U-Net's height, which
    the model needs a multiple of 8, see :class:`torch_to_nnef.ir.SizeStep`) is not one of them,
    naming the axis and the sizes it takes (tract itself would only say that it cannot determine ``H_8``).
    """
    dims = shape.split(",") if shape else []
    for axis, (dim, size) in enumerate(zip(dims, sizes)):
        m = _STEPPED.fullmatch(dim.replace(" ", ""))
        if m is None:
            continue
        offset, step = int(m[1] or m[3] or 0), int(m[2])
        if size < offset or (size - offset) % step:
            kind = f"multiples of {step}" if not offset else f"sizes {step}*k+{offset}"
            raise ShapeError(
                f"input {name!r} has size {size} on axis {axis}, where this model takes {dim}, i.e. {kind} only: "
                "resize or pad the input to such a size"
            )


@dataclass(frozen=True)
class OutputReport:
    """How one output compared with its expected value."""

    name: str
    passed: bool
    problem: str
    max_abs_err: float
    max_rel_err: float
    outliers: int
    outlier_fraction: float
    allowed_outlier_fraction: float
    atol: float
    rtol: float
    first_outlier: int | None

    def describe(self) -> str:
        """One line: name, verdict, errors."""
        verdict = "ok" if self.passed else "MISMATCH"
        if self.problem:
            return f"{self.name}: {verdict}: {self.problem}"
        return (
            f"{self.name}: {verdict} (max abs err {self.max_abs_err:.3g}, max rel err "
            f"{self.max_rel_err:.3g}, outliers {self.outliers} = {self.outlier_fraction:.2e} "
            f"of {self.allowed_outlier_fraction:.0e} allowed, atol {self.atol:g}, rtol {self.rtol:g})"
        )


def compare_outputs(
    expected: Sequence[TensorLike],
    got: Sequence[TensorLike],
    *,
    tolerance: Tolerance = "approximate",
    names: Sequence[str] | None = None,
) -> list[OutputReport]:
    """Compares outputs pairwise at one of tract's tolerance levels.

    An element passes when both values are NaN, both the same infinity, or
    ``|expected - got| <= atol + rtol * |got|``; integer outputs must match exactly.
    """
    if len(expected) != len(got):
        raise IOMismatchError(f"expected {len(expected)} outputs, got {len(got)}")
    names = list(names) if names is not None else [f"output_{i}" for i in range(len(got))]
    reports = []
    for name, e, g in zip(names, expected, got):
        r = _rust.compare(as_numpy(e, name=name), as_numpy(g, name=name), tolerance)
        reports.append(OutputReport(name=name, **r))
    return reports


def check_outputs(
    expected: Sequence[TensorLike],
    got: Sequence[TensorLike],
    *,
    tolerance: Tolerance = "approximate",
    names: Sequence[str] | None = None,
) -> list[OutputReport]:
    """Like :func:`compare_outputs`, raising :class:`IOMismatchError` (with every output's
    errors in the message) when any output fails.
    """
    reports = compare_outputs(expected, got, tolerance=tolerance, names=names)
    for r in reports:
        LOGGER.info("%s", r.describe())
    if not all(r.passed for r in reports):
        lines = "\n  ".join(r.describe() for r in reports)
        raise IOMismatchError(f"outputs differ beyond tolerance {tolerance!r}:\n  {lines}")
    return reports
