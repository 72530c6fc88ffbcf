"""Measures which tract releases run what the exporter writes.

Every case of the op tables is exported once for TractNNEF into folders, with its inputs and
PyTorch's outputs: the op tables of tests/op/ and tests/op/nn/ (their ``CASES``), the dynamic-axis
cases (their ``DYNAMIC_CASES``), a few models (Q4_0 linear, SDPA reified, RMS norm, recurrent
layers), the lowered kinds (tests/op/test_lowered.py, captured with torch's core decompositions as
its fixture does), the older torch forms (the ``OLDER_FORMS`` tables, the graph rewritten as their
test does), the int8 models of tests/op/test_quantized.py and every op-table case through the jit
front-end (tests/capture/test_jit.py), and the recurrent layers and cells. Each case is exported for
the oldest release, or, when the exporter refuses it, for the oldest probed release it accepts
(older ones count against the kinds and operators the refusal names). Each tract release from PyPI
is then installed into its own folder and asked, in a separate process, to load and run every
archive folder (with its ``graph.quant``); the outputs are compared with PyTorch's (quantized models
within their allowed steps). The NNEF operators and the registered ATen kinds of each archive are
listed (the kinds as ``make coverage`` records them, through
:func:`torch_to_nnef.export.observe_exports`), so the oldest release that runs every archive using a
kind or operator is its floor.

    python tools/probe_tract_releases.py WORKDIR 0.21.5 0.21.13 0.22.1 0.23.0 ... 0.23.9

``--groups`` and ``--match`` pick cases; ``--merge docs/tract_releases.json`` probes only the cases
that translate a kind the file has no floor for and merges their floors into the file's. WORKDIR
keeps the exports (``ops.json``: remove it to export again) and each release's results (only the
cases a release has no result for are run).

Prints, per tract-specific operator (and per case failing somewhere), the releases that fail; the
table in ``torch_to_nnef.check.versions`` is written from this output, and ``WORKDIR/floors.json``
(``make tract-releases`` copies it to docs/tract_releases.json) is the floor of every kind.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

LOGGER = logging.getLogger("probe_tract_releases")

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

def release(text):
    return tuple(int(part) for part in text.split("."))

version, skip = release(sys.argv[2]), set(sys.argv[3:])
for case in sorted(Path(sys.argv[1]).iterdir()):
    if not (case / "m.nnef").is_dir() or case.name in skip:
        continue
    meta = json.loads((case / "case.json").read_text()) if (case / "case.json").exists() else {}
    if version < release(meta.get("target", "0.0.0")):
        print(json.dumps([case.name, "refused: exported for tract >= " + meta["target"]]), flush=True)
        continue
    print(json.dumps([case.name, "started"]), flush=True)
    ins = np.load(case / "inputs.npz")
    scalar_input = any(ins[k].ndim == 0 for k in ins.files)
    try:
        outs = np.load(case / "outputs.npz")
        atol = meta.get("atol", 1e-3)
        model = load(str(case / "m.nnef"))
        got = model.run([ins[k] for k in sorted(ins.files, key=int)])
        bad = []
        for k in sorted(outs.files, key=int):
            g = got[int(k)].to_numpy()
            w = outs[k]
            close = np.allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-3, atol=atol, equal_nan=True)
            if g.shape != w.shape or not close:
                bad.append(f"output {k}: shape {g.shape} vs {w.shape}")
        result = "ok" if not bad else "mismatch: " + "; ".join(bad)
    except Exception as e:  # every failure is data here
        text = str(e).split("Stack backtrace")[0].strip().splitlines() or [type(e).__name__]
        result = "error: " + text[-1].strip()[:300]
        if scalar_input and "has incorrect dtype or shape (got 1," in result:
            # the Python binding before 0.23.8 builds a 0-d array as shape [1]: the archive is not tried
            result = "binding: a 0-d input given as shape [1] (" + result + ")"
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
    "test_elementwise",
    "test_reductions",
    "test_shape",
    "test_indexing",
    "test_creation",
    "test_linalg",
    "test_signal",
    "test_activation",
    "test_conv",
    "test_norm",
    "test_pool",
    "test_resize",
    "test_attention",
    "test_loss",
)
"""Test modules whose module-level case lists (``OpCase`` s, or ``(id, module, inputs, ...)`` tuples) are probed."""

DYNAMIC_TABLES = ("test_creation", "test_shape", "test_reductions", "test_indexing", "test_linalg")
"""Test modules with ``DYNAMIC_CASES``: ``(id, function of one tensor, shape)``, the axis 1 dynamic."""

OLDER_FORM_TABLES = ("test_elementwise", "test_shape")
"""Test modules with ``OLDER_FORMS``: cases whose captured graph is rewritten to another release's form."""

SPECIAL_TABLES = {(t, "OLDER_FORMS") for t in OLDER_FORM_TABLES}
"""Case lists that need their own capture (gathered by :func:`gather_cases`, not as plain cases)."""

GROUPS = ("tables", "dynamic", "models", "lowered", "older-forms", "quantized", "recurrent", "jit")
"""The case groups, in the order they are gathered (``--groups`` picks some)."""


@dataclass
class Case:
    """One archive to export and run in every release."""

    cid: str
    """Folder name under ``WORKDIR/cases``."""
    module: torch.nn.Module
    inputs: tuple[torch.Tensor, ...]
    options: dict[str, Any] = field(default_factory=dict)
    """``TractNNEF`` keyword arguments (besides the version)."""
    frontend: str = "auto"
    capture: Callable[[], AbstractContextManager[Any]] = nullcontext
    """Entered around the export: patches what the capture does (the op tables' fixtures)."""
    atol: float = 1e-3
    """Absolute tolerance of the comparison with PyTorch (quantized cases: their allowed steps)."""


def _table_cases(module: Any) -> list[tuple[str, torch.nn.Module, tuple[torch.Tensor, ...]]]:
    found = []
    for attr, table in vars(module).items():
        if not (attr.isupper() and isinstance(table, list)) or (module.__name__, attr) in SPECIAL_TABLES:
            continue
        for item in table:
            if all(hasattr(item, a) for a in ("id", "module", "inputs")):  # an OpCase
                name, mod, inputs = item.id, item.module, item.inputs
            elif isinstance(item, tuple) and len(item) >= 3 and isinstance(item[0], str):
                name, mod, inputs = item[:3]
            else:
                continue
            if isinstance(inputs, torch.Tensor):
                inputs = (inputs,)
            if isinstance(mod, torch.nn.Module) and isinstance(inputs, tuple):
                if all(isinstance(t, torch.Tensor) for t in inputs):
                    found.append((f"{attr.lower()}-{name}", mod, inputs))
    return found


@contextmanager
def _decompositions(run: Callable[..., Any]) -> Iterator[None]:
    """``ExportedProgram.run_decompositions`` replaced by ``run(original, program, table)`` while inside."""
    program = torch.export.ExportedProgram
    original = program.run_decompositions

    def patched(self: Any, decomp_table: Any = None, *args: Any, **kwargs: Any) -> Any:
        return run(original, self, decomp_table)

    program.run_decompositions = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        program.run_decompositions = original  # type: ignore[method-assign]


def _lowered(keep: list[Any]) -> Callable[[], AbstractContextManager[None]]:
    """The capture of ``tests/op/test_lowered.py``: torch's core decompositions, less ``keep``."""
    import test_lowered

    return lambda: _decompositions(lambda original, program, _: original(program, test_lowered.core_table(keep)))


def _older_form(rewrite: Callable[[Any], None]) -> Callable[[], AbstractContextManager[None]]:
    """The capture of ``test_older_torch_forms``: the decomposed graph rewritten to an older kind."""

    def run(original: Callable[..., Any], program: Any, table: Any) -> Any:
        exported = original(program) if table is None else original(program, table)
        rewrite(exported.graph)
        return exported

    return lambda: _decompositions(run)


def _quantized_cases() -> list[Case]:
    """The int8 models of ``tests/op/test_quantized.py`` (eager and FX), through the jit front-end; each
    compared within its allowed quantization steps.
    """
    import test_quantized as tq_tests
    from torch import nn
    from torch.ao.quantization import QConfigMapping, quantize_fx

    models: list[tuple[str, nn.Module, tuple[torch.Tensor, ...], float]] = []
    for name, body, inputs, fuse, steps in tq_tests.CASES:
        model = tq_tests.quantize(body, inputs, fuse=fuse)
        models.append((name, model, inputs, steps * tq_tests.output_scale(model, inputs)))
    x = torch.randn(2, 3, 16, 16)
    for name, qconfig in (("small-cnn", tq_tests.PER_TENSOR), ("small-cnn-per-channel", tq_tests.PER_CHANNEL)):
        model = tq_tests.quantize(tq_tests.SmallCNN(), (x,), qconfig, tq_tests.CNN_FUSE)
        models.append((name, model, (x,), 2 * tq_tests.output_scale(model, (x,))))
    conv = tq_tests.quantize(nn.Conv2d(3, 6, 3, padding=1), (tq_tests.X4,), tq_tests.PER_CHANNEL)
    models.append(("per-channel-conv", conv, (tq_tests.X4,), 0.0))
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8), nn.Hardswish(), nn.Linear(8, 4)).eval()
    x = torch.randn(4, 16)
    prepared = quantize_fx.prepare_fx(mlp, QConfigMapping().set_global(tq_tests.PER_TENSOR), (x,))
    with torch.no_grad():
        for _ in range(4):
            prepared(torch.randn(4, 16) * 2)
    fx = quantize_fx.convert_fx(prepared)
    models.append(("fx-mlp", fx, (x,), float(fx.get_submodule("4").scale)))
    return [Case(f"quantized-{n}", m, i, frontend="jit", atol=max(1e-3, steps + 1e-4)) for n, m, i, steps in models]


def _recurrent_cases() -> list[Case]:
    """Every recurrent layer and cell of ``tests/test_recurrent.py`` (every output of each)."""
    import test_recurrent as rt

    torch.manual_seed(0)
    cases = []
    for name, make, batch_first, unbatched, with_state in rt.LAYERS:
        rnn = make()
        inputs = rt._layer_inputs(rnn, batch_first, unbatched, with_state)
        cases.append(Case(f"recurrent-{name}", _FloatOut(rt.Layer(rnn, with_state)), inputs))
    for name, make, unbatched, with_state in rt.CELLS:
        cell = make()
        inputs = rt._cell_inputs(cell, unbatched, with_state)
        cases.append(Case(f"recurrent-{name}", _FloatOut(rt.Cell(cell, with_state)), inputs))
    return cases


def gather_cases(groups: Sequence[str]) -> list[Case]:
    """The cases of ``groups`` (see :data:`GROUPS`)."""
    import importlib

    tests = Path(__file__).resolve().parents[1] / "tests"
    for folder in sorted({p.parent for p in tests.rglob("*.py")}):  # as tests/conftest.py does
        sys.path.insert(0, str(folder))
    from harness import Fn, Fn1
    from torch_to_nnef.io.qtensor import fp_to_tract_q4_0_with_min_max_calibration

    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise SystemExit(f"unknown case groups {unknown}: pick among {', '.join(GROUPS)}")
    cases: list[Case] = []
    if "tables" in groups:
        for table in TABLES:
            mod = importlib.import_module(table)
            for name, module, inputs in _table_cases(mod):
                cases.append(Case(f"{table[5:]}-{name}", _FloatOut(module), inputs))
    if "dynamic" in groups:
        for table in DYNAMIC_TABLES:
            for name, fn, shape in importlib.import_module(table).DYNAMIC_CASES:
                dynamic = {"dynamic_axes": {"input_0": {1: "S"}}}
                cases.append(Case(f"dynamic-{name}", _FloatOut1(Fn1(fn)), (torch.randn(*shape),), dynamic))
    if "models" in groups:
        q4 = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU())
        q4[0].weight = fp_to_tract_q4_0_with_min_max_calibration(q4[0].weight.detach())
        cases.append(Case("model-q4_0-linear", q4, (torch.randn(3, 64),)))
        sdpa = Fn(lambda q, k, v: torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
        qkv = tuple(torch.randn(1, 2, 5, 8) for _ in range(3))
        cases.append(Case("model-sdpa-reified", sdpa, qkv, {"reify_sdpa_operator": True, "version": "0.22.0"}))
        cases.append(Case("model-rms-norm", torch.nn.RMSNorm(8), (torch.randn(2, 8),)))
        for name, rnn in (
            ("lstm", torch.nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)),
            ("gru", torch.nn.GRU(4, 8, batch_first=True)),
            ("rnn", torch.nn.RNN(4, 8, batch_first=True)),
        ):
            dynamic = {"dynamic_axes": {"input_0": {1: "T"}}}
            cases.append(Case(f"model-{name}", _FloatOut1(_First(rnn)), (torch.randn(2, 5, 4),), dynamic))
    if "lowered" in groups:
        import test_lowered

        for lowered in test_lowered.CASES:
            capture = _lowered(lowered.keep)
            cases.append(Case(f"lowered-{lowered.id}", _FloatOut(lowered.module), lowered.inputs, capture=capture))
    if "older-forms" in groups:
        for table in OLDER_FORM_TABLES:
            for form in importlib.import_module(table).OLDER_FORMS:
                capture = _older_form(form.rewrite)
                cases.append(Case(f"older-form-{form.id}", _FloatOut(form.module), form.inputs, capture=capture))
    if "quantized" in groups:
        cases.extend(_quantized_cases())
    if "recurrent" in groups:
        cases.extend(_recurrent_cases())
    if "jit" in groups:
        import test_jit

        for name, module, inputs in [*test_jit.CASES, *test_jit.EXTRA]:
            cid = "jit-" + name.replace("/", "-")
            cases.append(Case(cid, _FloatOut(module), inputs, frontend="jit"))
    return cases


_REFUSAL = re.compile(r"^  (\S+) at .*: (\S+) needs tract >= [0-9.]+$", re.MULTILINE)
"""A line of the exporter's refusal: the kind, then the NNEF operator, that the release cannot run."""
_NEEDED = re.compile(r"needs (tract_\w+)")
"""A translation's refusal: the tract operator it needs."""
_TARGET = re.compile(r"(?:TractNNEF\(version='|TractNNEF\(version >= |tract >= )([0-9]+\.[0-9]+\.[0-9]+)")
"""A release the exporter's message asks for."""


@contextmanager
def _refusing_kinds(named: list[str]) -> Iterator[None]:
    """Appends to ``named`` the kind of each translation that raises while inside (a translation's
    refusal names its node's place in the model, not its kind).
    """
    from torch_to_nnef.nnef import translate
    from torch_to_nnef.op.registry import Registration

    original = translate.resolve

    def resolve(kind: str, overload: str = "") -> Any:
        found = original(kind, overload)
        if found is None:
            return None

        def refusing(ctx: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return found.fn(ctx, *args, **kwargs)
            except Exception:
                named.append(kind)
                raise

        return Registration(found.name, refusing)

    translate.resolve = resolve  # type: ignore[assignment]
    try:
        yield
    finally:
        translate.resolve = original


def _newer_target(error: str, version: str, versions: Sequence[str]) -> str | None:
    """The oldest of ``versions`` an export refused for ``version`` asks for (its message names the
    release it needs), else None.
    """
    needed = max((_version(found.group(1)) for found in _TARGET.finditer(error)), default=None)
    if needed is None or needed <= _version(version):
        return None
    return next((v for v in versions if _version(v) >= needed), None)


def export_all(
    work: Path, versions: Sequence[str], cases: Sequence[Case], known: Collection[str] = ()
) -> dict[str, list[str]]:
    """Exports every case into ``work/cases/<id>`` for the oldest of ``versions`` or the release its
    options name (or, when the exporter refuses that release, the oldest it accepts: older ones are
    not run, and the kinds and operators the refusal named go to ``work/refused.json``), with its
    inputs, PyTorch's outputs, that target and its tolerance; returns the NNEF operators of each and
    writes the registered kinds each translated (recorded by :func:`torch_to_nnef.export.observe_exports`,
    as ``make coverage`` does) to ``work/kinds.json``. With ``known`` kinds, a case translating none
    but those is left out.
    """
    import numpy as np

    from torch_to_nnef import TractNNEF, export_model_to_nnef
    from torch_to_nnef.export import observe_exports

    kinds: dict[str, list[str]] = {}
    refused: dict[str, list[str]] = {}
    seen: list[set[str]] = []
    remove = observe_exports(lambda graph, *_: seen.append({n.kind for n in graph.nodes}))
    ops: dict[str, list[str]] = {}
    root = work / "cases"
    root.mkdir(parents=True, exist_ok=True)
    for case in cases:
        folder = root / case.cid
        folder.mkdir(exist_ok=True)
        module = case.module.eval()
        names = [f"input_{i}" for i in range(len(case.inputs))]
        seen.clear()
        version = case.options.get("version", versions[0])
        why: set[str] = set()
        while True:
            raised: list[str] = []
            try:
                with case.capture(), _refusing_kinds(raised):
                    path = export_model_to_nnef(
                        module,
                        case.inputs,
                        folder / "m.nnef",
                        TractNNEF(**{**case.options, "version": version}),
                        input_names=names,
                        overwrite=True,
                        frontend=case.frontend,
                    )
                break
            except Exception as e:
                newer = _newer_target(str(e), version, versions)
                if newer is None:
                    LOGGER.warning("%s: not exported: %s", case.cid, e)
                    break
                LOGGER.info("%s: refused for tract %s, exported for %s", case.cid, version, newer)
                why |= {item for found in _REFUSAL.finditer(str(e)) for item in found.groups()}
                why |= {*_NEEDED.findall(str(e)), *raised}
                version = newer
        if not seen:
            shutil.rmtree(folder)
            continue
        used = sorted(seen.pop()) if seen else []
        if known and set(used) <= set(known):
            shutil.rmtree(folder)
            continue
        kinds[case.cid] = used
        with torch.no_grad():
            out = module(*case.inputs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        arrays = [t.detach().resolve_conj().resolve_neg().numpy() for t in (*case.inputs, *outs)]
        np.savez(folder / "inputs.npz", **{str(i): a for i, a in enumerate(arrays[: len(case.inputs)])})
        np.savez(folder / "outputs.npz", **{str(i): a for i, a in enumerate(arrays[len(case.inputs) :])})
        meta: dict[str, Any] = {"atol": case.atol}
        if version != case.options.get("version", versions[0]):  # refused for older releases: not run there
            meta["target"] = version
        (folder / "case.json").write_text(json.dumps(meta))
        if why:
            refused[case.cid] = sorted(why)
        ops[case.cid] = sorted(_ops((path / "graph.nnef").read_text()))
    remove()
    (work / "kinds.json").write_text(json.dumps(kinds, indent=1))
    (work / "refused.json").write_text(json.dumps(refused, indent=1))
    (work / "ops.json").write_text(json.dumps(ops, indent=1))
    return ops


def run_release(work: Path, version: str, done: Mapping[str, str] | None = None) -> dict[str, str]:
    """Installs tract ``version`` into ``work/tract-<version>`` (from PyPI, when not there) and runs
    every case with it, but those of ``done`` (results kept from an earlier run).
    """
    target = work / f"tract-{version}"
    if not (target / "tract").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), f"tract=={version}"],
            check=True,
        )
    results: dict[str, str] = dict(done or {})
    while True:  # a release that crashes on a case is rerun past it
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(work / "cases"), version, *results],
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


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _passes(result: str, item: str, refused: Collection[str]) -> bool:
    """Whether a case's ``result`` in a release does not count against ``item`` (a kind or operator
    of the case): it ran there, the exporter refused that release for something else than ``item``,
    or the release's Python binding could not give the inputs (nothing was tried).
    """
    return result == "ok" or result.startswith("binding") or (result.startswith("refused") and item not in refused)


def _floors(
    used_by_case: dict[str, list[str]],
    results: dict[str, dict[str, str]],
    versions: list[str],
    refused: Mapping[str, Collection[str]],
) -> dict:
    """For each kind (or operator): the oldest probed release from which every case using it runs
    in that release and all later ones. Cases failing in the newest release are left out (what fails
    there fails for another reason than the release). A case the exporter refused for a release
    counts against the kinds and operators its refusal named (``refused``), and says nothing of
    the others.
    """
    newest = versions[-1]
    floors = {}
    for item in sorted({k for used in used_by_case.values() for k in used}):
        users = [c for c, used in used_by_case.items() if item in used and results[newest].get(c) == "ok"]
        if not users:
            continue
        floor = newest
        for v in reversed(versions):
            if all(_passes(results[v].get(c, "missing"), item, refused.get(c, ())) for c in users):
                floor = v
            else:
                break
        floors[item] = {"since": floor, "cases": len(users)}
    return floors


def merge_floors(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The floors of two probes of different cases together: an item measured by both gets the later
    floor (every case of both runs from it) and the sum of their cases.
    """
    merged: dict[str, Any] = {
        "releases": sorted({*old["releases"], *new["releases"]}, key=_version),
        "cases": old["cases"] + new["cases"],
    }
    for table in ("kinds", "operators"):
        items = {k: dict(v) for k, v in old.get(table, {}).items()}
        for item, entry in new[table].items():
            if item in items:
                since = max(items[item]["since"], entry["since"], key=_version)
                items[item] = {"since": since, "cases": items[item]["cases"] + entry["cases"]}
            else:
                items[item] = dict(entry)
        merged[table] = items
    return merged


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path, help="cases, results and the installed releases")
    parser.add_argument("versions", nargs="+", help="tract releases, oldest first (the cases target the first)")
    parser.add_argument(
        "--groups",
        default=",".join(GROUPS),
        help=f"comma-separated case groups among {', '.join(GROUPS)} (default: all)",
    )
    parser.add_argument("--match", metavar="REGEX", help="only the cases whose id matches REGEX")
    parser.add_argument(
        "--merge",
        type=Path,
        metavar="FLOORS",
        help="probe only the cases translating a kind FLOORS (a floors file) has no floor for, and merge "
        "their floors into those of FLOORS",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Exports (once) into WORKDIR, runs every release (reusing the results WORKDIR keeps), prints the
    operators and cases failing somewhere and writes ``WORKDIR/floors.json``.
    """
    args = _arguments(argv)
    work, versions = args.workdir, args.versions
    old = json.loads(args.merge.read_text()) if args.merge else None
    if (work / "ops.json").exists():
        ops = json.loads((work / "ops.json").read_text())
    else:
        cases = gather_cases([g for g in args.groups.split(",") if g])
        if args.match:
            cases = [c for c in cases if re.search(args.match, c.cid)]
        ops = export_all(work, versions, cases, known=old["kinds"] if old else ())
    kept = json.loads((work / "results.json").read_text()) if (work / "results.json").exists() else {}
    results = {}
    for v in versions:
        started = time.monotonic()
        results[v] = run_release(work, v, {c: r for c, r in kept.get(v, {}).items() if c in ops})
        LOGGER.info("tract %s: %d cases in %.0f s", v, len(results[v]), time.monotonic() - started)
        (work / "results.json").write_text(json.dumps({**kept, **results}, indent=1))
    refused = json.loads((work / "refused.json").read_text())
    every_op = sorted({op for used in ops.values() for op in used})
    print("operator: releases failing some case that uses it (cases)")
    for op in every_op:
        users = [c for c, used in ops.items() if op in used]
        failing = {
            v: [c for c in users if not _passes(results[v].get(c, "missing"), op, refused.get(c, ()))] for v in versions
        }
        worst = [f"{v} ({len(cs)}/{len(users)})" for v, cs in failing.items() if cs]
        if op.startswith(("tract_", "extension:")) or worst:
            print(f"  {op}: {', '.join(worst) or 'none'}")
    kinds = json.loads((work / "kinds.json").read_text())
    floors: dict[str, Any] = {
        "releases": versions,
        "cases": len(ops),
        "kinds": _floors(kinds, results, versions, refused),
        "operators": _floors(ops, results, versions, refused),
    }
    if old is not None:
        floors = merge_floors(old, floors)
    (work / "floors.json").write_text(json.dumps(floors, indent=1, sort_keys=True) + "\n")
    print("failing cases:")
    for cid in sorted(ops):
        bad = {v: results[v].get(cid, "missing") for v in versions if results[v].get(cid, "missing") != "ok"}
        for v, why in bad.items():
            print(f"  {cid} @ {v}: {why}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
