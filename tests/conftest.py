from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torch_to_nnef.export import observe_exports
from torch_to_nnef.op import coverage
from torch_to_nnef.op.coverage import RECORD_ENV, overload_name

# Test tables draw their inputs at import time: make them the same on every run.
torch.manual_seed(0)

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
DOC = ROOT / "docs" / "supported_ops.md"
FLOORS = ROOT / "docs" / "tract_releases.json"

# Test modules import each other's tables and helpers by module name: every folder of the tree is on
# the import path (module names are unique across the folders).
for _folder in sorted({path.parent for path in TESTS.rglob("*.py")} - {TESTS}):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# Every passing test records the operators (with their overloads) its successful exports translated,
# per target. A run of the whole suite then renders docs/supported_ops.md from its own record (which
# operators each passing test translated, which registered ones none did) and fails when the
# committed page says otherwise, writing what it measured beside the temporary files; with
# T2N_RECORD_OP_CASES=<path> (``make coverage``) it writes the record to <path> and the page instead.
_RECORDS: dict[str, dict[str, Any]] = {}
_CURRENT: dict[str, Any] = {}
_DESELECTED: list[str] = []


def _observe(graph: Any, exported: Any, target: Any) -> None:
    kinds = _CURRENT.setdefault("kinds", {}).setdefault("tract" if target.is_tract else "khronos", set())
    kinds.update(node.op_name for node in graph.nodes)
    if exported is None:  # captured by the jit front-end: no ATen overloads to record
        return
    _CURRENT.setdefault("overloads", set()).update(
        overload_name(node.target)
        for node in exported.graph.nodes
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
    )


@pytest.fixture(autouse=True)
def _record_op_cases() -> Iterator[None]:
    _CURRENT.clear()
    remove = observe_exports(_observe)
    try:
        yield
    finally:
        remove()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.passed and _CURRENT.get("kinds"):
        # carried by the report, which pytest-xdist's workers send to the process that runs the session
        record = {
            "kinds": {target: sorted(kinds) for target, kinds in sorted(_CURRENT["kinds"].items())},
            "overloads": sorted(_CURRENT.get("overloads", ())),
        }
        report.user_properties.append((_OP_CASES, record))
    return report


_OP_CASES = "op_cases"
"""The user property of a test report holding the operators its exports translated."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed:
        for key, value in report.user_properties:
            if key == _OP_CASES:
                _RECORDS[report.nodeid] = value


def pytest_deselected(items: list[pytest.Item]) -> None:
    _DESELECTED.extend(item.nodeid for item in items)


_COLLECTED: set[Path] = set()
"""The test modules pytest-xdist's workers collected (the session's own items are theirs)."""


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    _COLLECTED.update((ROOT / nodeid.split("::")[0]).resolve() for nodeid in ids)


def _whole_suite(session: pytest.Session) -> bool:
    """Whether this run collected every test module of the suite and deselected nothing (with pytest-xdist:
    its workers collected every module, and no -k or -m expression deselects)."""
    collected = {Path(str(item.path)).resolve() for item in session.items} | _COLLECTED
    every = {p.resolve() for p in TESTS.rglob("test_*.py")}
    options = session.config.option
    filtered = bool(getattr(options, "keyword", "") or getattr(options, "markexpr", ""))
    return not _DESELECTED and not (_COLLECTED and filtered) and every <= collected


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: one core each
        torch.set_num_threads(1)


def _record() -> dict[str, Any]:
    return {"torch": torch.__version__.split("+")[0], "cases": dict(sorted(_RECORDS.items()))}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):  # the process running the session checks the page
        return
    if exitstatus != 0 or session.config.option.collectonly or not _whole_suite(session):
        return
    record = _record()
    page = coverage.render(record, coverage.load_floors(FLOORS))
    path = os.environ.get(RECORD_ENV)
    if path:
        lines = [f"  {json.dumps(nodeid)}: {json.dumps(r)}" for nodeid, r in record["cases"].items()]
        torch_version = json.dumps(record["torch"])
        Path(path).write_text(f'{{\n "torch": {torch_version},\n "cases": {{\n' + ",\n".join(lines) + "\n }\n}\n")
        DOC.write_text(page)
        return
    if (DOC.read_text() if DOC.exists() else "") != page:
        measured = Path(tempfile.gettempdir()) / "supported_ops.measured.md"
        measured.write_text(page)
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"OP COVERAGE: docs/supported_ops.md differs from what this run measured ({measured}): a case "
                "added, deleted or translating other operators, an operator registered or removed; run `make coverage`",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
