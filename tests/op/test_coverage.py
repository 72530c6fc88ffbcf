"""The supported-op page: rendered from the registry and what a run of the suite translated, and checked by that run."""

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
from torch_to_nnef.op import coverage, registrations, supported_kinds

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "supported_ops.md"
FLOORS = ROOT / "docs" / "tract_releases.json"


def test_every_translation_documents_its_schema():
    undocumented = [r.name for r in registrations() if not (r.fn.__doc__ or "").strip()]
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


def test_render_counts_cases_per_operator_and_target():
    cases: dict[str, Any] = {
        "cases": {
            "t::a": {
                "kinds": {"khronos": ["aten::relu"], "tract": ["aten::relu"]},
                "overloads": ["aten::relu.default"],
            },
            "t::b": {
                "kinds": {"tract": ["aten::erf", "aten::relu", "aten::add.Tensor"]},
                "overloads": ["aten::relu.default"],
            },
        }
    }
    floors = {"releases": ["0.21.5"], "cases": 1, "kinds": {"aten::relu": {"since": "0.21.5", "cases": 1}}}
    text = coverage.render(cases, floors)
    oldest = ".".join(map(str, coverage.OLDEST_TRACT))
    assert "| `aten::relu` | 0.21.5 | yes | 2 |" in text
    assert f"| `aten::erf` | {oldest} (not probed) | no | 1 |" in text
    assert f"| `aten::add.Tensor` | {oldest} (not probed) | no | 1 |" in text
    assert "| `aten::add.Scalar` | no case | no | 0 |" in text  # another overload: counted apart
    assert "| `aten::abs` | no case | no | 0 |" in text
    # erf's overload was not recorded: registered, but not counted as tested
    assert "| `aten::erf.default` | registered, no recorded case of this overload |" in text
    assert "| `aten::relu.default` |" not in text
    assert "| `aten::rand.default` | not applicable (random)" in text
    assert "| `aten::atan2.out` | not applicable (mutation)" in text
    core = coverage.core_aten_overloads()
    assert f"1 of the {len(core)} core overloads are translated and tested" in text
    untested = coverage.untested_ops(cases)
    assert "aten::abs" in untested and "aten::add.Scalar" in untested and "aten::relu" not in untested
    assert "`aten::add.Scalar`" in text.split("Registered operators that no passing test translated: ", 1)[1]
    for kind in coverage.unknown_to_torch():  # no graph can hold them: listed, not required
        assert kind not in untested
        assert f"`{kind}`" in text.split("Registered kinds that are no operator of torch", 1)[1].split("\n")[0]


def test_the_page_command_reads_the_floors_beside_the_page(tmp_path: Path):
    cases = {"torch": "x", "cases": {"t::a": {"kinds": {"tract": ["aten::relu"]}, "overloads": []}}}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    floors = {"releases": ["0.22.1"], "cases": 1, "kinds": {"aten::relu": {"since": "0.22.1", "cases": 1}}}
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "tract_releases.json").write_text(json.dumps(floors))
    page = tmp_path / "docs" / "supported_ops.md"
    assert coverage.main([str(page), "--cases", str(tmp_path / "cases.json")]) == 0
    assert "| `aten::relu` | 0.22.1 | no | 1 |" in page.read_text() and "(releases 0.22.1; 1 cases)" in page.read_text()
    elsewhere = tmp_path / "floors.json"
    elsewhere.write_text(json.dumps({**floors, "kinds": {"aten::relu": {"since": "0.23.9", "cases": 1}}}))
    coverage.main([str(page), "--cases", str(tmp_path / "cases.json"), "--floors", str(elsewhere)])
    assert "| `aten::relu` | 0.23.9 | no | 1 |" in page.read_text()


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


WHOLE_SUITE = """
import torch

from harness import Fn, OpCase, export_and_check, op_params, r

CASES = [OpCase("erf", Fn(torch.erf), (r(2, 3),), ("aten::erf",), True)]


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path, target, case):
    export_and_check(tmp_path, target, case)
"""


def _suite(tmp_path: Path) -> Path:
    """A test tree of its own (this conftest and harness, one op table of one case), run whole."""
    tests = tmp_path / "tests"
    tests.mkdir()
    here = Path(__file__).resolve().parents[1]
    for name in ("conftest.py", "harness.py"):
        (tests / name).write_text((here / name).read_text())
    (tests / "test_table.py").write_text("import pytest\n" + WHOLE_SUITE)
    (tmp_path / "docs").mkdir()
    return tests


def _run(tests: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tests.parent), *args],
        cwd=tests.parent,
        env={**env, "PYTHONPATH": str(tests)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_whole_run_checks_the_page_against_its_own_record(tmp_path: Path):
    tests = _suite(tmp_path)
    page = tmp_path / "docs" / "supported_ops.md"
    env = {k: v for k, v in os.environ.items() if k != coverage.RECORD_ENV}
    stale = _run(tests, env, "tests")
    assert stale.returncode != 0 and "OP COVERAGE: docs/supported_ops.md differs" in stale.stdout, stale.stdout[-2000:]
    record = tmp_path / "cases.json"
    recorded = _run(tests, {**env, coverage.RECORD_ENV: str(record)}, "tests")
    assert recorded.returncode == 0, recorded.stdout[-2000:] + recorded.stderr[-2000:]
    cases = json.loads(record.read_text())["cases"]
    assert cases == {
        "tests/test_table.py::test_op_table[khronos-erf]": {
            "kinds": {"khronos": ["aten::erf"]},
            "overloads": ["aten::erf.default"],
        },
        "tests/test_table.py::test_op_table[tract-erf]": {
            "kinds": {"tract": ["aten::erf"]},
            "overloads": ["aten::erf.default"],
        },
    }
    assert "| `aten::erf` |" in page.read_text() and "| yes | 2 |" in page.read_text()
    current = _run(tests, env, "tests")
    assert current.returncode == 0 and "OP COVERAGE" not in current.stdout  # the page says what the run measures
    (tests / "test_table.py").write_text(
        "import pytest\n"
        + WHOLE_SUITE.replace('"erf", Fn(torch.erf)', '"exp", Fn(torch.exp)').replace("aten::erf", "aten::exp")
    )
    changed = _run(tests, env, "tests")  # the erf case deleted, an exp case added
    assert changed.returncode != 0 and "OP COVERAGE" in changed.stdout
    partial = _run(tests, env, "tests", "-k", "tract")
    assert partial.returncode == 0 and "OP COVERAGE" not in partial.stdout  # a partial run checks nothing
