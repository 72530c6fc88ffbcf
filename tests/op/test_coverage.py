"""The published supported-op page is generated from the registry and the recorded op cases, and kept current."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import Fn, r
from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.export import observe_exports
from torch_to_nnef.op import coverage, lookup, supported_kinds

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "supported_ops.md"
CASES = ROOT / "docs" / "op_cases.json"
FLOORS = ROOT / "docs" / "tract_releases.json"
TABLE = f"{(Path(__file__).resolve().parent / 'test_elementwise.py').relative_to(ROOT).as_posix()}::test_op_table"
REGENERATE = "run `make coverage` (or python -m torch_to_nnef.op.coverage docs/supported_ops.md)"


def test_supported_ops_table_is_current():
    assert DOC.read_text() == coverage.render(coverage.load_cases(CASES), coverage.load_floors(FLOORS)), (
        f"docs/supported_ops.md is stale: {REGENERATE}"
    )


def test_every_registered_kind_has_a_recorded_case():
    untested = coverage.untested_kinds(coverage.load_cases(CASES))
    assert untested == [], f"registered kinds without a passing recorded case: {untested}; add cases, then {REGENERATE}"


def test_every_translation_documents_its_schema():
    undocumented = [k for k in supported_kinds() if not (lookup(k).__doc__ or "").strip()]
    assert undocumented == []


def test_not_applicable_kinds_are_core_and_unregistered():
    core_kinds = {name.rsplit(".", 1)[0] for name in coverage.core_aten_overloads()}
    assert set(coverage.NOT_APPLICABLE) <= core_kinds
    assert not set(coverage.NOT_APPLICABLE) & set(supported_kinds())


def test_core_set_is_read_from_torch():
    core = coverage.core_aten_overloads()
    assert {"aten::add.Tensor", "aten::convolution.default", "aten::sym_size.int"} <= set(core)
    for name in core:
        kind, overload = name.rsplit(".", 1)
        op = getattr(getattr(torch.ops.aten, kind.split("::")[1]), overload)
        assert torch.Tag.core in op.tags
    assert "aten::conv2d.default" not in core  # kept whole by run_decompositions({}), yet not core


def test_min_tract_version_reads_the_measured_floors():
    floors = {"releases": ["0.21.5", "0.23.9"], "cases": 3, "kinds": {"aten::cumsum": {"since": "0.23.9", "cases": 2}}}
    assert coverage.min_tract_version("aten::cumsum", floors) == "0.23.9"
    oldest = ".".join(map(str, coverage.OLDEST_TRACT))
    assert coverage.min_tract_version("aten::relu", floors) == f"{oldest} (not probed)"


def test_measured_floors_cover_the_probed_kinds():
    floors = coverage.load_floors(FLOORS)
    assert floors["kinds"], "docs/tract_releases.json holds no floors: rerun tools/probe_tract_releases.py"
    for kind, entry in floors["kinds"].items():
        assert entry["since"] in floors["releases"] and entry["cases"] >= 1, kind


def test_render_counts_cases_per_kind_and_target():
    cases: dict[str, Any] = {
        "cases": {
            "t::a": {
                "kinds": {"khronos": ["aten::relu"], "tract": ["aten::relu"]},
                "overloads": ["aten::relu.default"],
            },
            "t::b": {"kinds": {"tract": ["aten::erf", "aten::relu"]}, "overloads": ["aten::relu.default"]},
        }
    }
    floors = {"releases": ["0.21.5"], "cases": 1, "kinds": {"aten::relu": {"since": "0.21.5", "cases": 1}}}
    text = coverage.render(cases, floors)
    oldest = ".".join(map(str, coverage.OLDEST_TRACT))
    assert "| `aten::relu` | 0.21.5 | yes | 2 |" in text
    assert f"| `aten::erf` | {oldest} (not probed) | no | 1 |" in text
    assert "| `aten::abs` | no case | no | 0 |" in text
    # erf's overload was not recorded: registered, but not counted as tested
    assert "| `aten::erf.default` | registered, no recorded case of this overload |" in text
    assert "| `aten::relu.default` |" not in text
    assert "| `aten::rand.default` | not applicable (random)" in text
    assert "| `aten::atan2.out` | not applicable (mutation)" in text
    core = coverage.core_aten_overloads()
    assert f"1 of the {len(core)} core overloads are translated and tested" in text
    assert "aten::abs" in coverage.untested_kinds(cases)
    for kind in coverage.unknown_to_torch():  # no graph can hold them: listed, not required
        assert kind not in coverage.untested_kinds(cases)
        assert f"`{kind}`" in text.split("Registered kinds that are no operator of torch", 1)[1].split("\n")[0]


def test_observer_sees_only_exports_that_succeed(tmp_path: Path):
    seen: list[tuple[list[str], list[str], bool]] = []

    def observe(graph: Any, exported: Any, target: Any) -> None:
        overloads = [coverage.overload_name(n.target) for n in exported.graph.nodes if n.op == "call_function"]
        seen.append(([n.kind for n in graph.nodes], overloads, target.is_tract))

    remove = observe_exports(observe)
    try:
        export_model_to_nnef(Fn(torch.erf), (r(2, 3),), tmp_path / "a.nnef", KhronosNNEF(check_io=True))
        with pytest.raises(TranslationError):
            export_model_to_nnef(
                Fn(lambda x: x << 1), (torch.ones(2, dtype=torch.int64),), tmp_path / "b", KhronosNNEF()
            )
    finally:
        remove()
    export_model_to_nnef(Fn(torch.erf), (r(2, 3),), tmp_path / "c.nnef", TractNNEF())
    assert seen == [(["aten::erf"], ["aten::erf.default"], False)]


def test_recording_run_writes_the_cases_of_passing_tests(tmp_path: Path):
    out = tmp_path / "cases.json"
    env = {**os.environ, coverage.RECORD_ENV: str(out)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *(f"{TABLE}[{t}-erf]" for t in ("tract", "khronos")),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    cases = json.loads(out.read_text())["cases"]
    assert cases == {
        f"{TABLE}[khronos-erf]": {
            "kinds": {"khronos": ["aten::erf"]},
            "overloads": ["aten::erf.default"],
        },
        f"{TABLE}[tract-erf]": {
            "kinds": {"tract": ["aten::erf"]},
            "overloads": ["aten::erf.default"],
        },
    }
