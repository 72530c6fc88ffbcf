"""A tour of torch_to_nnef, runnable as ``python -m torch_to_nnef.demo`` (``make demo``).

1. Exports the README's example, a ``Conv1d`` over a dynamic length ``S``, with ``check_io=True``.
2. Exports a small real model, a 2-layer ``nn.TransformerEncoder``, the same way.
3. Writes tensor files (``.dat``) and reads them back, here and in tract.
4. Packs a Q4_0 weight, writes a hand-made NNEF graph using it and runs it in tract.

For each export it prints what was checked: the archive, its inputs and their symbolic shapes, the
sizes at which ``export_model_to_nnef`` ran it in tract against PyTorch, and one more size run here
by loading the archive with :class:`~torch_to_nnef.TractModel`. Everything is written under a
temporary folder, removed at the end; the exit status is 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torch_to_nnef import (
    TRACT_VERSION,
    TractModel,
    TractNNEF,
    _rust,
    check_outputs,
    export_model_to_nnef,
    list_archive,
    quantize_q4_0,
    read_dat,
    write_dats,
    write_nnef_archive,
)
from torch_to_nnef.check.tract import Tolerance
from torch_to_nnef.export import observe_exports
from torch_to_nnef.io.q4_0 import tract_reference_q4_0

GRAPH = """version 1.0;

extension tract_registry tract_core;
extension tract_symbol S;

graph q40_linear( input ) -> ( output )
{{
  input = tract_core_external(shape = [S, {k}], datum_type = 'f32');
  weight = variable<scalar>(label = 'layer/weight', shape = [{n}, {k}]);
  bias = variable<scalar>(label = 'layer/bias', shape = [1, {n}]);
  hidden = linear(input, weight, bias);
  output = relu(hidden);
}}
"""

TOLERANCE: Tolerance = "approximate"
"""The tolerance of the Q4_0 graph's comparisons (``TractNNEF``'s default ``check_io_tolerance``)."""


def q40_linear_graph(n: int, k: int) -> str:
    """``relu(input @ weight.T + bias)`` with a Q4_0 ``[n, k]`` weight and input ``[S, k]``."""
    return GRAPH.format(n=n, k=k)


@dataclass
class _Tally:
    """Prints the demo's lines and counts its checks."""

    passed: list[str] = field(default_factory=list)

    def section(self, title: str) -> None:
        print(f"\n== {title} ==")

    def info(self, label: str, text: str) -> None:
        print(f"  {label:<9} {text}")

    def ok(self, text: str, indent: int = 2) -> None:
        self.passed.append(text)
        print(f"{' ' * indent}[ok] {text}")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _package_logs() -> Iterator[list[logging.LogRecord]]:
    """Collects what the package logs while exporting (instead of printing it): the check's reports."""
    package = logging.getLogger("torch_to_nnef")
    handler = _Collect()
    saved = package.level, package.propagate
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    package.propagate = False
    try:
        yield handler.records
    finally:
        package.removeHandler(handler)
        package.setLevel(saved[0])
        package.propagate = saved[1]


_REPORT = re.compile(r"(?P<name>.+?): (?P<verdict>ok|MISMATCH)(?: \(max abs err (?P<err>[^,]+),)?")
"""One output's line as the check logs it (:meth:`torch_to_nnef.check.tract.OutputReport.describe`)."""
_AT = re.compile(r"^(?P<output>.+?) \(at (?P<sizes>.+)\)$")
"""An output name at the check's second size: ``output (at input[1, 10, 107])``."""


def _shape(dims: str) -> str:
    """``1,10,S`` (as tract prints a shape) -> ``[1, 10, S]``."""
    return "[" + ", ".join(d.strip().replace("+-", "-") for d in dims.split(",") if d.strip()) + "]"


def _size(path: Path) -> str:
    nbytes = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{nbytes / 1024:.1f} KiB" if nbytes < 1024 * 1024 else f"{nbytes / 1024 / 1024:.2f} MiB"


def _sizes(names: Sequence[str], tensors: Sequence[Any]) -> str:
    return ", ".join(f"{n}{list(t.shape)}" for n, t in zip(names, tensors))


def export_and_check(
    say: _Tally,
    model: torch.nn.Module,
    example: Any,
    third: Any,
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    target: TractNNEF,
    debug_bundle_path: Path | None = None,
) -> None:
    """Exports ``model`` on ``example`` with ``check_io=True`` and prints what was checked, then runs
    the archive here at the size of ``third`` (a third size of the dynamic axis) against PyTorch.

    Raises:
        T2NError: the export or its check failed (e.g. ``IOMismatchError``).
        AssertionError: a check of this demo failed.
    """
    dynamic_axes = dict(target.dynamic_axes or {})
    assert target.check_io and dynamic_axes, "this demo shows exports checked with dynamic axes"
    symbol = ", ".join(sorted({letter for by_axis in dynamic_axes.values() for letter in by_axis.values()}))
    say.info("target", f"TractNNEF(version={target.version!r}, check_io=True, dynamic_axes={dynamic_axes})")
    captured: list[Any] = []
    remove = observe_exports(lambda graph, exported, inference_target: captured.append(graph))
    start = time.perf_counter()
    try:
        with _package_logs() as logs, warnings.catch_warnings():
            # torch.export (torch 2.13) warns about its own internals
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            written = export_model_to_nnef(
                model=model,
                args=example,
                file_path_export=path,
                inference_target=target,
                input_names=input_names,
                output_names=output_names,
                debug_bundle_path=debug_bundle_path,
            )
    finally:
        remove()
    elapsed = time.perf_counter() - start
    assert captured, "export_model_to_nnef returned without reporting a successful export"
    graph = captured[-1]

    say.info("archive", f"{written} ({_size(written)}), exported and checked in {elapsed:.1f} s")
    for record in logs:
        if record.levelno >= logging.WARNING:
            say.info("warning", record.getMessage())
    members = list_archive(written)
    tensors = [m for m in members if m.endswith(".dat")]
    shown = ", ".join(tensors[:2]) + (f", ... ({len(tensors)} in all)" if len(tensors) > 2 else "")
    say.info("contains", ", ".join([m for m in members if not m.endswith(".dat")] + [shown]))
    loaded = TractModel(written)
    for kind, ios in (("input", loaded.inputs), ("output", loaded.outputs)):
        for name, dtype, dims in ios:
            say.info(kind, f"{name}: {dtype.lower()} {_shape(dims)}")
    for letter, (low, high) in sorted(graph.symbols.items()):
        steps = graph.steps.get(letter)
        bounds = f"{low} <= {letter}" + (f" <= {high}" if high is not None else "")
        say.info("symbol", bounds + (f", {steps.describe()} (written {steps.form})" if steps else ""))

    # What export_model_to_nnef's check ran: one report per output, at the example's size, then at
    # a second size of the dynamic axis (the output names then say which: "output (at input[...])").
    reports = [
        m for m in (_REPORT.match(r.getMessage()) for r in logs if r.name.startswith("torch_to_nnef.check")) if m
    ]
    examples = [m for m in reports if not _AT.match(m["name"])]
    seconds = [m for m in reports if _AT.match(m["name"])]
    assert len(examples) >= len(output_names), f"the check reported {len(examples)} outputs at the example's size"
    assert len(seconds) >= len(output_names), (
        f"the check reported no run at a second size of {symbol}: the export's check reports were {reports}"
    )
    tolerance = target.check_io_tolerance
    say.info("check_io", f"export_model_to_nnef ran the archive in tract against PyTorch, tolerance {tolerance!r}:")
    example_sizes = _sizes(input_names, example if isinstance(example, (list, tuple)) else [example])
    for m in examples:
        say.ok(f"{example_sizes} (the example): {m['name']} max |diff| {m['err']}", indent=12)
    for m in seconds:
        at = _AT.match(m["name"])
        assert at is not None
        say.ok(f"{at['sizes']} (a second size of {symbol}): {at['output']} max |diff| {m['err']}", indent=12)

    # A third size, run here: the archive loaded with TractModel, compared with PyTorch (in eval
    # mode, as the export ran it; the export left the model's training flag as it was).
    thirds = list(third) if isinstance(third, (list, tuple)) else [third]
    model.eval()
    with torch.no_grad():
        expected = model(*thirds)
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    got = loaded.run(thirds)
    reps = check_outputs([e.numpy() for e in expected], got, tolerance=tolerance, names=output_names)
    for rep in reps:
        say.ok(
            f"{_sizes(input_names, thirds)} (a third size, TractModel run by the demo): {rep.name} "
            f"max |diff| {rep.max_abs_err:.3g}",
            indent=12,
        )


def export_readme_example(say: _Tally, workdir: Path) -> None:
    """The export example of README.md, written into ``workdir``."""
    say.section("1. The README example: nn.Sequential(nn.Conv1d(10, 20, 3)), input length S dynamic")
    test_input = torch.rand(1, 10, 100)
    model = nn.Sequential(nn.Conv1d(10, 20, 3))
    export_and_check(
        say,
        model,
        test_input,
        torch.rand(1, 10, 50),
        workdir / "mybeautifulmodel.nnef.tgz",
        input_names=["input"],
        output_names=["output"],
        target=TractNNEF(version="0.21.5", check_io=True, dynamic_axes={"input": {2: "S"}}),
        debug_bundle_path=workdir / "debug.tgz",
    )


def export_transformer(say: _Tally, workdir: Path) -> None:
    """A 2-layer ``nn.TransformerEncoder`` (d_model 32) over a dynamic sequence length ``S``."""
    d_model, heads, layers = 32, 4, 2
    say.section(
        f"2. A real model: nn.TransformerEncoder, {layers} layers, d_model {d_model}, {heads} heads, "
        "sequence length S dynamic"
    )
    layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=4 * d_model, batch_first=True)
    model = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False).eval()
    export_and_check(
        say,
        model,
        torch.randn(1, 12, d_model),
        torch.randn(1, 40, d_model),
        workdir / "transformer_encoder.nnef.tgz",
        input_names=["tokens"],
        output_names=["encoded"],
        target=TractNNEF(check_io=True, dynamic_axes={"tokens": {1: "S"}}),
    )


def tensor_tour(say: _Tally, workdir: Path, rng: np.random.Generator) -> None:
    """Tensor files written by this package and read back identical by it and by tract."""
    say.section("3. Tensor files (.dat), read back by this package and by tract")
    tensors: dict[str, np.ndarray] = {
        "f32/transposed": rng.standard_normal((64, 48)).astype(np.float32).T,
        "i64/positions": np.arange(100, dtype=np.int64).reshape(10, 10),
        "bool/mask": rng.integers(0, 2, (7, 9)).astype(bool),
    }
    written = write_dats(workdir / "tensors", tensors)
    for label, path in written.items():
        ours = read_dat(path)
        theirs = _rust.tract_read_dat(path)
        assert isinstance(ours, np.ndarray)
        np.testing.assert_array_equal(ours, tensors[label])
        np.testing.assert_array_equal(theirs, tensors[label])
        say.ok(f"{label}.dat {tensors[label].dtype}{list(tensors[label].shape)}: identical both ways")


def q4_0_tour(say: _Tally, workdir: Path, rng: np.random.Generator) -> None:
    """A Q4_0 weight packed like tract packs it, in a hand-made NNEF graph run by tract."""
    say.section("4. Q4_0 weights and a hand-written NNEF graph with a symbolic length S")
    n, k = 64, 128
    weight = (rng.standard_normal((n, k)) * 0.2).astype(np.float32)
    bias = rng.standard_normal((1, n)).astype(np.float32)
    q = quantize_q4_0(weight, name="layer/weight")
    assert q.to_bytes() == tract_reference_q4_0(weight), "Q4_0 bytes differ from tract's quantizer"
    err = float(np.abs(q.dequantize() - weight).max())
    say.ok(f"Q4_0 of a {n}x{k} weight: {q.nbytes} bytes, identical to tract's quantizer, max |error| {err:.4f}")

    archive = write_nnef_archive(
        workdir / "q40_linear.nnef.tgz", q40_linear_graph(n, k), {"layer/weight": q, "layer/bias": bias}
    )
    model = TractModel(archive)
    say.ok(f"{archive.name} ({', '.join(list_archive(archive))}) loaded by tract, input {_shape(model.inputs[0][2])}")
    dequantized = q.dequantize()
    for length in (7, 33):
        x = rng.standard_normal((length, k)).astype(np.float32)
        expected = np.maximum(x @ dequantized.T + bias, 0)
        (got,) = model.run([x])
        (report,) = check_outputs([expected], [got], tolerance=TOLERANCE, names=["output"])
        say.ok(f"S={length}: tract against numpy, max |diff| {report.max_abs_err:.3g}")


def run(workdir: Path, *, seed: int = 0) -> None:
    """Runs every step of the demo in ``workdir``; raises on any failed check."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    say = _Tally()
    print(f"torch_to_nnef demo: torch {torch.__version__}, tract {TRACT_VERSION} linked into the package")
    print(f"working folder: {workdir}")
    export_readme_example(say, workdir)
    export_transformer(say, workdir)
    tensor_tour(say, workdir, rng)
    q4_0_tour(say, workdir, rng)
    print(f"\ndemo passed: {len(say.passed)} checks, all ok, in {time.perf_counter() - start:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 when every check passed, 1 otherwise."""
    parser = argparse.ArgumentParser(
        prog="python -m torch_to_nnef.demo",
        description="Export two PyTorch models to NNEF and check them in the tract engine linked into "
        "torch_to_nnef, then write tensors and a Q4_0 model and check those too.",
    )
    parser.add_argument("--output", type=Path, help="folder to keep the files in (default: a temporary one, removed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.output and args.output.is_dir() and any(args.output.iterdir()):
        parser.error(f"--output {args.output} is not empty: give a new or empty folder")
    try:
        if args.output:
            args.output.mkdir(parents=True, exist_ok=True)
            run(args.output.resolve(), seed=args.seed)
        else:
            with tempfile.TemporaryDirectory(prefix="torch_to_nnef-demo-") as tmp:
                run(Path(tmp), seed=args.seed)
            print(f"removed {tmp}")
    except Exception:
        traceback.print_exc()
        keep = "" if args.output else " (add --output DIR to keep the files written, a debug bundle among them)"
        print(f"\ndemo FAILED: see the error above{keep}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
