"""Measures which tract releases run what the exporter writes.

Every case of the op tables (tests/test_export.py, tests/test_ops_nn.py, tests/test_ops_tensor.py,
the dynamic-axis cases) and a few models (Q4_0 linear, SDPA reified, RMS norm) are exported once
for TractNNEF into folders, with their inputs and PyTorch's outputs. Each tract release from PyPI
is then installed into its own folder and asked, in a separate process, to load and run every
archive; the outputs are compared with PyTorch's. The NNEF operators of each archive are listed,
so the oldest release that runs every archive using an operator is that operator's floor.

    python tools/probe_tract_releases.py WORKDIR 0.21.0 0.21.5 0.21.13 0.22.1 0.23.0 0.23.9

Prints, per tract-specific operator (and per case failing somewhere), the releases that fail; the
table in ``torch_to_nnef.tract_versions`` is written from this output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

RUNNER = r"""
import json, sys
from pathlib import Path
import numpy as np
import tract

def load(path):
    nnef = tract.nnef()
    for ext in ("with_tract_core", "with_tract_transformers", "with_pulse", "with_tract_extra"):
        if hasattr(nnef, ext):
            nnef = getattr(nnef, ext)()
    model = nnef.load(path) if hasattr(nnef, "load") else nnef.model_for_path(path)
    if hasattr(model, "into_optimized"):
        model = model.into_optimized()
    return model.into_runnable()

skip = set(sys.argv[2:])
for case in sorted(Path(sys.argv[1]).iterdir()):
    if not (case / "m.nnef").is_dir() or case.name in skip:
        continue
    print(json.dumps([case.name, "started"]), flush=True)
    try:
        ins = np.load(case / "inputs.npz")
        outs = np.load(case / "outputs.npz")
        model = load(str(case / "m.nnef"))
        got = model.run([ins[k] for k in sorted(ins.files, key=int)])
        bad = []
        for k in sorted(outs.files, key=int):
            g = got[int(k)].to_numpy()
            w = outs[k]
            close = np.allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-3, atol=1e-3, equal_nan=True)
            if g.shape != w.shape or not close:
                bad.append(f"output {k}: shape {g.shape} vs {w.shape}")
        result = "ok" if not bad else "mismatch: " + "; ".join(bad)
    except Exception as e:  # every failure is data here
        text = str(e).split("Stack backtrace")[0].strip().splitlines() or [type(e).__name__]
        result = "error: " + text[-1].strip()[:300]
    print(json.dumps([case.name, result]), flush=True)
"""

_OP = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_KEYWORDS = {"graph", "fragment", "version", "extension"}


def _ops(graph_nnef: str) -> set[str]:
    body = graph_nnef.split("\ngraph ", 1)[1].split("{", 1)[1]
    ops = {m.group(1) for m in _OP.finditer(body)} - _KEYWORDS
    ops |= {f"extension:{line.split()[1]}" for line in graph_nnef.splitlines() if line.startswith("extension ")}
    return ops


def _floats(out: Any) -> Any:
    if isinstance(out, (tuple, list)):
        return type(out)(_floats(o) for o in out)
    return out.float() if isinstance(out, torch.Tensor) and out.dtype != torch.float32 else out


class _FloatOut(torch.nn.Module):
    """Outputs as f32: tract's Python binding before 0.23 reads only f32 outputs."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *xs: torch.Tensor) -> Any:
        return _floats(self.inner(*xs))


class _First(torch.nn.Module):
    """The first output of a recurrent layer."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0]


class _FloatOut1(_FloatOut):
    def forward(self, x: torch.Tensor) -> Any:  # type: ignore[override]
        return _floats(self.inner(x))


TABLES = (
    "test_export",
    "test_ops_nn",
    "test_ops_tensor",
    "test_ops_extra",
    "test_ops_core",
    "test_signal",
    "test_attention_precision",
)
"""Test modules whose module-level case lists (``(id, module, inputs, ...)`` tuples) are probed."""


def _table_cases(module: Any) -> list[tuple[str, torch.nn.Module, tuple[torch.Tensor, ...]]]:
    found = []
    for attr, table in vars(module).items():
        if not (attr.isupper() and isinstance(table, list)):
            continue
        for item in table:
            if not (isinstance(item, tuple) and len(item) >= 3 and isinstance(item[0], str)):
                continue
            name, mod, inputs = item[:3]
            if isinstance(inputs, torch.Tensor):
                inputs = (inputs,)
            if isinstance(mod, torch.nn.Module) and isinstance(inputs, tuple):
                if all(isinstance(t, torch.Tensor) for t in inputs):
                    found.append((f"{attr.lower()}-{name}", mod, inputs))
    return found


def export_all(work: Path, oldest: str) -> dict[str, list[str]]:
    """Exports every case into ``work/cases/<id>`` for tract ``oldest``; returns the NNEF operators of
    each (and writes the ATen kinds of each to ``work/kinds.json``).
    """
    import importlib

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import test_ops_tensor
    from optable import Fn
    from torch_to_nnef import TractNNEF, export_model_to_nnef
    from torch_to_nnef.export import observe_exports
    from torch_to_nnef.qtensor import fp_to_tract_q4_0_with_min_max_calibration

    cases: list[tuple[str, torch.nn.Module, tuple[torch.Tensor, ...], dict]] = []
    for table in TABLES:
        mod = importlib.import_module(table)
        for name, module, inputs in _table_cases(mod):
            cases.append((f"{table[5:]}-{name}", _FloatOut(module), inputs, {}))
    for name, fn, shape in test_ops_tensor.DYNAMIC_CASES:
        dynamic = {"dynamic_axes": {"input_0": {1: "S"}}}
        cases.append((f"dynamic-{name}", _FloatOut1(test_ops_tensor.Fn1(fn)), (torch.randn(*shape),), dynamic))
    q4 = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
    q4[0].weight = fp_to_tract_q4_0_with_min_max_calibration(q4[0].weight.detach())
    cases.append(("model-q4_0-linear", q4, (torch.randn(3, 64),), {}))
    sdpa = Fn(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
    qkv = tuple(torch.randn(1, 2, 5, 8) for _ in range(3))
    cases.append(("model-sdpa-reified", sdpa, qkv, {"reify_sdpa_operator": True, "version": "0.22.0"}))
    cases.append(("model-rms-norm", torch.nn.RMSNorm(8), (torch.randn(2, 8),), {}))
    for name, rnn in (
        ("lstm", torch.nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)),
        ("gru", torch.nn.GRU(4, 8, batch_first=True)),
        ("rnn", torch.nn.RNN(4, 8, batch_first=True)),
    ):
        dynamic = {"dynamic_axes": {"input_0": {1: "T"}}}
        cases.append((f"model-{name}", _FloatOut1(_First(rnn)), (torch.randn(2, 5, 4),), dynamic))

    kinds: dict[str, list[str]] = {}
    seen: list[set[str]] = []
    remove = observe_exports(lambda graph, *_: seen.append({n.kind for n in graph.nodes}))
    ops: dict[str, list[str]] = {}
    root = work / "cases"
    root.mkdir(parents=True, exist_ok=True)
    for cid, module, inputs, opts in cases:
        folder = root / cid
        folder.mkdir(exist_ok=True)
        module = module.eval()
        names = [f"input_{i}" for i in range(len(inputs))]
        try:
            target = TractNNEF(**{"version": oldest, **opts})
            path = export_model_to_nnef(module, inputs, folder / "m.nnef", target, input_names=names, overwrite=True)
        except Exception as e:
            print(f"{cid}: not exported: {e}", file=sys.stderr)
            continue
        kinds[cid] = sorted(seen.pop()) if seen else []
        with torch.no_grad():
            out = module(*inputs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        arrays = [t.detach().resolve_conj().resolve_neg().numpy() for t in (*inputs, *outs)]
        np.savez(folder / "inputs.npz", **{str(i): a for i, a in enumerate(arrays[: len(inputs)])})
        np.savez(folder / "outputs.npz", **{str(i): a for i, a in enumerate(arrays[len(inputs) :])})
        ops[cid] = sorted(_ops((path / "graph.nnef").read_text()))
    remove()
    (work / "kinds.json").write_text(json.dumps(kinds, indent=1))
    (work / "ops.json").write_text(json.dumps(ops, indent=1))
    return ops


def run_release(work: Path, version: str) -> dict[str, str]:
    """Installs tract ``version`` into ``work/tract-<version>`` and runs every case with it."""
    target = work / f"tract-{version}"
    if not (target / "tract").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), f"tract=={version}"],
            check=True,
        )
    results: dict[str, str] = {}
    while True:  # a release that crashes on a case is rerun past it
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(work / "cases"), *results],
            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        )
        started = None
        for line in proc.stdout.splitlines():
            name, result = json.loads(line)
            if result == "started":
                started = name
            else:
                results[name], started = result, None
        if proc.returncode == 0:
            return results
        if started is None:
            raise RuntimeError(f"tract {version} runner failed: {proc.stderr[-2000:]}")
        results[started] = f"crash: exit status {proc.returncode}"


def _floors(used_by_case: dict[str, list[str]], results: dict[str, dict[str, str]], versions: list[str]) -> dict:
    """For each kind (or operator): the oldest probed release from which every case using it runs
    in that release and all later ones. Cases failing in the newest release are left out (what fails
    there fails for another reason than the release).
    """
    newest = versions[-1]
    floors = {}
    for item in sorted({k for used in used_by_case.values() for k in used}):
        users = [c for c, used in used_by_case.items() if item in used and results[newest].get(c) == "ok"]
        if not users:
            continue
        floor = newest
        for v in reversed(versions):
            if all(results[v].get(c) == "ok" for c in users):
                floor = v
            else:
                break
        floors[item] = {"since": floor, "cases": len(users)}
    return floors


def main(argv: list[str]) -> int:
    """``WORKDIR VERSION...``: exports (once) into WORKDIR, runs every VERSION, prints the table."""
    work, versions = Path(argv[0]), argv[1:]
    ops = json.loads((work / "ops.json").read_text()) if (work / "ops.json").exists() else export_all(work, versions[0])
    results = {v: run_release(work, v) for v in versions}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    every_op = sorted({op for used in ops.values() for op in used})
    print("operator: releases failing some case that uses it (cases)")
    for op in every_op:
        users = [c for c, used in ops.items() if op in used]
        failing = {v: [c for c in users if results[v].get(c, "missing") != "ok"] for v in versions}
        worst = [f"{v} ({len(cs)}/{len(users)})" for v, cs in failing.items() if cs]
        if op.startswith(("tract_", "extension:")) or worst:
            print(f"  {op}: {', '.join(worst) or 'none'}")
    kinds = json.loads((work / "kinds.json").read_text())
    floors = {
        "releases": versions,
        "cases": len(ops),
        "kinds": _floors(kinds, results, versions),
        "operators": _floors(ops, results, versions),
    }
    (work / "floors.json").write_text(json.dumps(floors, indent=1, sort_keys=True) + "\n")
    print("failing cases:")
    for cid in sorted(ops):
        bad = {v: results[v].get(cid, "missing") for v in versions if results[v].get(cid, "missing") != "ok"}
        for v, why in bad.items():
            print(f"  {cid} @ {v}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
