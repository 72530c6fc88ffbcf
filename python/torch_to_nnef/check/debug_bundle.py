"""Debug bundles: everything needed to replay a failed check, in one ``.tgz``.

A bundle holds the exported archive, the inputs and expected outputs (``.npz``), the report
(``report.json``), version information and ``replay.sh``, whose one command re-runs the check::

    python -m torch_to_nnef.debug_bundle debug.tgz
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from torch_to_nnef.check.tract import TRACT_VERSION, Tolerance, TractModel, check_outputs
from torch_to_nnef.errors import IOMismatchError, T2NError


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def write_debug_bundle(
    bundle_path: str | os.PathLike[str],
    archive: Path,
    inputs: Sequence[np.ndarray],
    expected: Sequence[np.ndarray],
    input_names: Sequence[str],
    output_names: Sequence[str],
    *,
    tolerance: Tolerance,
    registries: Sequence[str],
    error: str,
    versions: dict[str, str],
) -> Path:
    """Writes the bundle atomically (temporary name, then rename)."""
    bundle = Path(bundle_path)
    report = {
        "error": error,
        "tolerance": tolerance,
        "registries": list(registries),
        "input_names": list(input_names),
        "output_names": list(output_names),
        "model": f"model/{archive.name}",
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{bundle.name}.", suffix=".partial", dir=bundle.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(archive, arcname=f"model/{archive.name}")
            members = {
                "inputs.npz": _npz(dict(zip(input_names, inputs))),
                "expected.npz": _npz(dict(zip(output_names, expected))),
                "report.json": json.dumps(report, indent=2).encode(),
                "versions.json": json.dumps({**versions, "tract": TRACT_VERSION}, indent=2).encode(),
                "replay.sh": f"python -m torch_to_nnef.debug_bundle {bundle.name}\n".encode(),
            }
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(tmp, bundle)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return bundle


def replay(bundle_path: str | os.PathLike[str]) -> list[str]:
    """Re-runs the check stored in a bundle; returns the per-output lines, raises on mismatch."""
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(bundle_path) as tar:
        tar.extractall(tmp, filter="data")
        root = Path(tmp)
        report: dict[str, Any] = json.loads((root / "report.json").read_text())
        model = TractModel(root / report["model"], registries=report["registries"])
        with np.load(root / "inputs.npz") as inputs, np.load(root / "expected.npz") as expected:
            got = model.run([inputs[n] for n in report["input_names"]])
            reports = check_outputs(
                [expected[n] for n in report["output_names"]],
                got,
                tolerance=report["tolerance"],
                names=report["output_names"],
            )
    return [r.describe() for r in reports]


def main(argv: list[str] | None = None) -> int:
    """``python -m torch_to_nnef.debug_bundle BUNDLE``: replay a failed check."""
    parser = argparse.ArgumentParser(
        prog="python -m torch_to_nnef.debug_bundle",
        description="Re-run the tract check stored in a torch_to_nnef debug bundle and print each output's errors.",
    )
    parser.add_argument("bundle", type=Path, help="the debug bundle (.tgz) written by export_model_to_nnef")
    args = parser.parse_args(argv)
    try:
        for line in replay(args.bundle):
            print(line)
    except (IOMismatchError, T2NError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print("all outputs match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
