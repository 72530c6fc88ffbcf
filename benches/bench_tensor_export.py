"""Tensors from disk: a 4 GiB f16 .safetensors file exported to .dat files.

(a) export_tensors_from_disk_to_nnef vs a plain loop of safetensors load + numpy `tofile`, same
    run, as a throughput ratio (goal >= 1.5x);
(c) peak RSS growth of the export above the interpreter's baseline, torch imported (goal < 1 GiB),
    so that a file larger than the RAM can be exported.

Each timed run is a child process (peak RSS from getrusage, its peak reset once everything is
imported, minus the RSS then); the two ways alternate, best of 3 each, with dirty pages flushed
(untimed) before each run. The source file is made here, tensor by tensor, and deleted after.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import GB, MiB

SIZE = 4 << 30
SHAPE = (4096, 8192)  # 64 MiB of f16 per tensor, 64 tensors
REPEAT = 3


def make_safetensors(path: Path) -> int:
    """Writes a safetensors file of SIZE bytes of random f16, one tensor in memory at a time."""
    per = SHAPE[0] * SHAPE[1] * 2
    count = SIZE // per
    header: dict[str, object] = {}
    for i in range(count):
        header[f"layers.{i:02d}.weight"] = {
            "dtype": "F16",
            "shape": list(SHAPE),
            "data_offsets": [i * per, (i + 1) * per],
        }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _ in range(count):
            rng.standard_normal(SHAPE, dtype=np.float32).astype(np.float16).tofile(f)
    return count * per


def child(way: str, src: str, out: str) -> None:
    """One timed run, in a process of its own; prints a JSON line with seconds and RSS growth."""
    import torch  # noqa: F401  (imported by the export when it starts: part of the baseline, not of the run)
    from safetensors import safe_open

    from _common import rss_bytes
    from torch_to_nnef import export_tensors_from_disk_to_nnef

    try:  # reset the peak resident set (VmHWM) to the current one: imports are not the run's
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = rss_bytes()
    t0 = time.perf_counter()
    if way == "ours":
        export_tensors_from_disk_to_nnef(src, out)
    else:
        os.mkdir(out)
        with safe_open(src, framework="numpy") as f:
            for key in f.keys():
                f.get_tensor(key).tofile(os.path.join(out, f"{key}.dat"))
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # VmHWM, since the reset
    print(json.dumps({"seconds": elapsed, "rss_growth": max(0, peak - base)}))


def run(way: str, src: Path, out: Path) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", way, str(src), str(out)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="t2n-bench-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    try:
        src = root / "model.safetensors"
        size = make_safetensors(src)
        out = root / "out"
        runs: dict[str, list[dict[str, float]]] = {"plain": [], "ours": []}
        for _ in range(REPEAT):
            for way in runs:
                runs[way].append(run(way, src, out))
        t_plain = min(r["seconds"] for r in runs["plain"])
        t_ours = min(r["seconds"] for r in runs["ours"])
        rss_ours = max(r["rss_growth"] for r in runs["ours"])
        rss_plain = max(r["rss_growth"] for r in runs["plain"])
        print(
            f"4 GiB f16 .safetensors -> .dat: safetensors+tofile loop {size / t_plain / GB:.2f} GB/s, "
            f"export_tensors_from_disk_to_nnef {size / t_ours / GB:.2f} GB/s, ratio {t_plain / t_ours:.2f}x "
            f"(goal >= 1.5x)"
        )
        print(
            f"peak RSS growth: export_tensors_from_disk_to_nnef {rss_ours / MiB:.0f} MiB (goal < 1024), "
            f"plain loop {rss_plain / MiB:.0f} MiB"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
    else:
        main()
