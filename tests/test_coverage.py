"""The published supported-op table is generated from the registry and kept current."""

from __future__ import annotations

from pathlib import Path

from torch_to_nnef.op import coverage, lookup, supported_kinds

DOC = Path(__file__).resolve().parents[1] / "docs" / "supported_ops.md"


def test_supported_ops_table_is_current():
    assert DOC.read_text() == coverage.render(), (
        "docs/supported_ops.md is stale: run python -m torch_to_nnef.op.coverage docs/supported_ops.md"
    )


def test_every_translation_documents_its_schema():
    undocumented = [k for k in supported_kinds() if not (lookup(k).__doc__ or "").strip()]
    assert undocumented == []
