"""What each tract release reads, as measured by ``tools/probe_tract_releases.py``.

The probe exports every op-table case for the oldest release, installs tract releases from PyPI
and runs each archive in each of them, comparing with PyTorch (releases probed: 0.21.0, 0.21.5,
0.21.13, 0.22.1, 0.23.0, 0.23.1, 0.23.2, 0.23.3, 0.23.5, 0.23.6, 0.23.7, 0.23.8, 0.23.9; the
floors of every kind are in ``docs/tract_releases.json``).
Translations write something else for releases older than the ``*_TRACT`` floors below; the
operators of :data:`OPERATOR_SINCE` have no such replacement and are refused, by name, for a
target that cannot read them.
"""

from __future__ import annotations

OLDEST_TRACT = (0, 21, 5)
"""The oldest release this exporter writes for: 0.21.0 could not resolve symbols outside of
``tract_core_external`` shapes, read boolean ``.dat`` files or ``tract_core_trilu`` bounds."""

TRANSFORMERS_TRACT = (0, 21, 13)
"""First release with the ``tract_transformers`` registry (rms_norm, ...)."""

SDPA_TRACT = (0, 22, 0)
"""First release with ``tract_transformers_sdpa``."""

MOE_FFN_TRACT = (0, 23, 9)
"""First release with ``tract_moe_ffn`` (the ``tract_transformers`` mixture-of-experts block)."""

COPY_TRACT = (0, 23, 0)
"""First release reading the standard ``copy``, ``any_reduce`` and ``all_reduce`` (an output that
repeats a value is written as a cast to its own type before, a requantization as a cast to its
integer type, and any/all as max/min reductions)."""

NEAREST_UPSAMPLE_TRACT = (0, 23, 3)
"""First release whose ``nearest_upsample`` loads (0.23.0 to 0.23.2 lack the ``length_of`` its
fragment calls); before it, nearest resizing is written as tiling."""

POOL_PADDING_TRACT = (0, 23, 6)
"""First release computing padded ``avg_pool`` windows (border 'constant') and ``box`` sums as
PyTorch does; before it, the zeros are written with an explicit ``pad`` and a box sum is an
average times the window's size."""

GRID_SAMPLE_TRACT = (0, 23, 3)
"""First release defining ``tract_core_grid_sample`` (0.23.2 does not); before it, 2-D bilinear or
nearest sampling with zeros or border padding is written with specification ops, and other modes
are refused."""

CUMSUM_TRACT = (0, 23, 9)
"""First release with ``tract_core_cumsum``; before it, float cumulative sums over a static axis
are a product with a triangle of ones, and others are refused."""

SCATTER_TRACT = (0, 23, 0)
"""First release whose ``tract_core_scatter_elements`` and ``tract_core_scatter_nd`` give PyTorch's
results in every probed case (before it, reductions such as scatter_add and index_add differ)."""

TOPK_TRACT = (0, 21, 13)
"""First release whose ``tract_core_topk`` runs every probed sort and topk case (0.21.5 aborts on a
descending argsort)."""

OPERATOR_SINCE: dict[str, tuple[int, int, int]] = {
    "copy": COPY_TRACT,
    "tract_core_scatter_elements": SCATTER_TRACT,
    "tract_core_scatter_nd": SCATTER_TRACT,
    "tract_core_topk": TOPK_TRACT,
    "any_reduce": COPY_TRACT,
    "all_reduce": COPY_TRACT,
    "nearest_upsample": NEAREST_UPSAMPLE_TRACT,
    "tract_core_cumsum": CUMSUM_TRACT,
    "tract_core_grid_sample": GRID_SAMPLE_TRACT,
    "tract_transformers_sdpa": SDPA_TRACT,
    "tract_moe_ffn": MOE_FFN_TRACT,
}
"""NNEF operator -> first tract release that reads it and computes it as PyTorch does."""


def version_text(version: tuple[int, int, int]) -> str:
    """``(0, 21, 5)`` -> ``"0.21.5"``."""
    return ".".join(map(str, version))


def needs_newer(operator: str, version: tuple[int, int, int]) -> tuple[int, int, int] | None:
    """The release ``operator`` needs when the target ``version`` is older than it, else None."""
    since = OPERATOR_SINCE.get(operator)
    return since if since is not None and version < since else None
