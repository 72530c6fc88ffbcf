"""A tour of the core, runnable as ``python -m torch_to_nnef.demo``.

It writes tensors, packs a Q4_0 weight, writes a small hand-made NNEF model using that weight
with a symbolic sequence length ``S``, and verifies the model in the tract engine linked into
this package at two lengths, printing each check.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from torch_to_nnef import (
    TRACT_VERSION,
    TractModel,
    _rust,
    check_outputs,
    list_archive,
    quantize_q4_0,
    read_dat,
    write_dats,
    write_nnef_archive,
)
from torch_to_nnef.q4_0 import tract_reference_q4_0

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


def q40_linear_graph(n: int, k: int) -> str:
    """``relu(input @ weight.T + bias)`` with a Q4_0 ``[n, k]`` weight and input ``[S, k]``."""
    return GRAPH.format(n=n, k=k)


def run(workdir: Path, *, seed: int = 0) -> None:
    """Runs every step of the demo in ``workdir``; raises on any failed check."""
    rng = np.random.default_rng(seed)
    say = print

    say(f"torch_to_nnef demo: tract {TRACT_VERSION} linked in-process, working in {workdir}")
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
        kind = f"{tensors[label].dtype}{list(tensors[label].shape)}"
        say(f"  [ok] {label}.dat {kind}: read back identical by us and by tract")

    n, k = 64, 128
    weight = (rng.standard_normal((n, k)) * 0.2).astype(np.float32)
    bias = rng.standard_normal((1, n)).astype(np.float32)
    q = quantize_q4_0(weight, name="layer/weight")
    assert q.to_bytes() == tract_reference_q4_0(weight), "Q4_0 bytes differ from tract's quantizer"
    err = float(np.abs(q.dequantize() - weight).max())
    say(f"  [ok] Q4_0 of a {n}x{k} weight: {q.nbytes} bytes, identical to tract's quantizer, max |error| {err:.4f}")

    archive = write_nnef_archive(
        workdir / "q40_linear.nnef.tgz", q40_linear_graph(n, k), {"layer/weight": q, "layer/bias": bias}
    )
    say(f"  [ok] wrote {archive.name}: {', '.join(list_archive(archive))}")

    model = TractModel(archive)
    say(f"  [ok] tract loaded it: inputs {model.inputs}, outputs {model.outputs}")
    dequantized = q.dequantize()
    for length in (7, 33):
        x = rng.standard_normal((length, k)).astype(np.float32)
        expected = np.maximum(x @ dequantized.T + bias, 0)
        (got,) = model.run([x])
        (report,) = check_outputs([expected], [got], tolerance="approximate", names=["output"])
        say(f"  [ok] S={length}: {report.describe()}")
    say("demo passed")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m torch_to_nnef.demo",
        description="Write tensors, pack a Q4_0 weight, write a small NNEF model and verify it "
        "in the tract engine linked into torch_to_nnef.",
    )
    parser.add_argument("--output", type=Path, help="folder to keep the files in (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.output:
        args.output.mkdir(parents=True, exist_ok=True)
        run(args.output, seed=args.seed)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(Path(tmp), seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
