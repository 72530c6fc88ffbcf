from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torch_to_nnef.export import observe_exports
from torch_to_nnef.op.coverage import RECORD_ENV, overload_name

# Test tables draw their inputs at import time: make them the same on every run.
torch.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# With T2N_RECORD_OP_CASES=<path> (``make coverage``), every passing test records the ATen kinds and
# overloads its successful exports translated, per target; the session writes them to <path> for
# ``python -m torch_to_nnef.op.coverage``.
_RECORDS: dict[str, dict[str, Any]] = {}
_CURRENT: dict[str, Any] = {}


def _observe(graph: Any, exported: Any, target: Any) -> None:
    kinds = _CURRENT.setdefault("kinds", {}).setdefault("tract" if target.is_tract else "khronos", set())
    kinds.update(node.kind for node in graph.nodes)
    if exported is None:  # captured by the jit front-end: no ATen overloads to record
        return
    _CURRENT.setdefault("overloads", set()).update(
        overload_name(node.target)
        for node in exported.graph.nodes
        if node.op == "call_function" and isinstance(node.target, torch._ops.OpOverload)
    )


@pytest.fixture(autouse=True)
def _record_op_cases() -> Iterator[None]:
    if not os.environ.get(RECORD_ENV):
        yield
        return
    _CURRENT.clear()
    remove = observe_exports(_observe)
    try:
        yield
    finally:
        remove()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if os.environ.get(RECORD_ENV) and report.when == "call" and report.passed and _CURRENT.get("kinds"):
        _RECORDS[item.nodeid] = {
            "kinds": {target: sorted(kinds) for target, kinds in sorted(_CURRENT["kinds"].items())},
            "overloads": sorted(_CURRENT.get("overloads", ())),
        }
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = os.environ.get(RECORD_ENV)
    if not path or exitstatus != 0:  # a failed run records nothing: the last complete record stays
        return
    lines = [f"  {json.dumps(nodeid)}: {json.dumps(record)}" for nodeid, record in sorted(_RECORDS.items())]
    torch_version = json.dumps(torch.__version__.split("+")[0])
    Path(path).write_text(f'{{\n "torch": {torch_version},\n "cases": {{\n' + ",\n".join(lines) + "\n }\n}\n")
