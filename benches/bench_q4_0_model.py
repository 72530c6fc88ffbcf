"""Q4_0 export of a model with large Linear weights (4 x Linear(14336, 4096), 0.94 GB of f32):
compressing it to Q4_0 QTensors (``min_max_q4_0``) and exporting it to a ``.nnef.tar``, ours vs
the published torch-to-nnef 0.24.12 (its own ``min_max_q4_0`` and exporter, in its own venv).

Each implementation runs in a fresh subprocess that builds the same model, after a warm-up export
of a small model (one-time costs of the first export in a process are left out); it reports the
best wall time of 3 runs and the peak RSS growth of the first, for each phase. Throughputs are
GB/s of f32 weights. Goals: ours >= 10x the published end to end, and an RSS growth while
exporting below the packed output size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import GB, MiB, PeakRss

LAYERS, IN, OUT = 4, 14336, 4096
F32_BYTES = LAYERS * IN * OUT * 4
PACKED_BYTES = LAYERS * IN * OUT // 32 * 18
REPEAT = 3
HERE = Path(__file__).resolve().parent


def build_model() -> object:
    import torch
    from torch import nn

    class Parallel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(IN, OUT, bias=False) for _ in range(LAYERS))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.layers[0](x)
            for layer in self.layers[1:]:
                out = out + layer(x)
            return out

    torch.manual_seed(0)
    with torch.no_grad():
        return Parallel().eval()


def measure(impl: str) -> dict[str, float]:
    """Runs in a subprocess: compress then export, timing each phase and its peak RSS growth."""
    import torch
    from torch import nn

    model = build_model()
    x = torch.randn(1, IN)
    small = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32)).eval()
    if impl == "ours":
        from torch_to_nnef import TractNNEF, compress_model, export_model_to_nnef

        def compress(m: nn.Module) -> object:
            return compress_model(m, "min_max_q4_0")

        target = TractNNEF(version="0.23.9", check_io=False)
    else:
        from torch_to_nnef import TractNNEF, export_model_to_nnef  # the published package
        from torch_to_nnef.io.compress import quantize_weights_min_max_Q4_0

        def compress(m: nn.Module) -> object:
            return quantize_weights_min_max_Q4_0(m)

        stand_in = Path(os.environ["T2N_PUBLISHED_TRACT"])
        target = TractNNEF(version="0.23.8", check_io=False, specific_tract_binary_path=stand_in)
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: one-time costs of the first export in a process
        compress(small)
        export_model_to_nnef(
            model=small,
            args=(torch.randn(1, 64),),
            file_path_export=Path(tmp, "small.nnef.tar"),
            inference_target=target,
            log_level=40,
        )
    for attempt in range(REPEAT):  # best time of REPEAT fresh models; RSS growth of the first run
        if attempt:
            del model
            model = build_model()
        with PeakRss() as rss:
            t0 = time.perf_counter()
            compress(model)
            elapsed = time.perf_counter() - t0
        result["compress_s"] = min(result.get("compress_s", elapsed), elapsed)
        result.setdefault("compress_rss", rss.growth)
    with tempfile.TemporaryDirectory() as tmp:
        for attempt in range(REPEAT):
            path = Path(tmp, f"model{attempt}.nnef.tar")
            with PeakRss() as rss:
                t0 = time.perf_counter()
                export_model_to_nnef(
                    model=model, args=(x,), file_path_export=path, inference_target=target, log_level=40
                )
                elapsed = time.perf_counter() - t0
            result["export_s"] = min(result.get("export_s", elapsed), elapsed)
            result.setdefault("export_rss", rss.growth)
            result["archive_bytes"] = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
            for f in Path(tmp).iterdir():
                shutil.rmtree(f) if f.is_dir() else f.unlink()
    return result


def run(python: str, impl: str, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [python, str(Path(__file__).resolve()), "--measure", impl],
        cwd=HERE,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def published_python() -> tuple[str, str] | None:
    script = HERE.parent.parent / "shared" / "tools" / "published-exporter.sh"
    if not script.exists():
        return None
    try:
        text = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as exc:
        print(f"published exporter unavailable: {exc.stderr.strip()[-300:]}")
        return None
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    python = lines.get("python")
    stand_in = next((v for k, v in lines.items() if k.startswith("stand-in tract")), "")
    return (python, stand_in) if python else None


def report(name: str, r: dict[str, float]) -> None:
    total = r["compress_s"] + r["export_s"]
    print(
        f"{name:>10}: compress {F32_BYTES / r['compress_s'] / GB:6.2f} GB/s ({r['compress_s']:6.2f} s, "
        f"+{r['compress_rss'] / MiB:7.1f} MiB RSS) | export {F32_BYTES / r['export_s'] / GB:6.2f} GB/s "
        f"({r['export_s']:6.2f} s, +{r['export_rss'] / MiB:7.1f} MiB RSS) | "
        f"end to end {F32_BYTES / total / GB:6.2f} GB/s"
    )


def main() -> None:
    print(
        f"model: {LAYERS} x Linear({IN}, {OUT}), {F32_BYTES / GB:.2f} GB of f32 weights, "
        f"{PACKED_BYTES / MiB:.1f} MiB of Q4_0 blocks"
    )
    ours = run(sys.executable, "ours")
    report("ours", ours)
    print(
        f"ours: export RSS growth {ours['export_rss'] / MiB:.1f} MiB vs packed output {PACKED_BYTES / MiB:.1f} MiB "
        f"(goal: below); archive {ours['archive_bytes'] / MiB:.1f} MiB"
    )
    published = published_python()
    if published is None:
        print("published torch-to-nnef 0.24.12 not available here: no comparison")
        return
    try:
        theirs = run(published[0], "published", {"T2N_PUBLISHED_TRACT": published[1]})
    except subprocess.CalledProcessError as exc:
        print(f"published torch-to-nnef 0.24.12 failed: {exc.stderr.strip()[-500:]}")
        return
    report("published", theirs)
    for phase in ("compress", "export"):
        print(f"{phase}: ours {theirs[f'{phase}_s'] / ours[f'{phase}_s']:.1f}x faster than published")
    end_to_end = (theirs["compress_s"] + theirs["export_s"]) / (ours["compress_s"] + ours["export_s"])
    print(f"end to end: ours {end_to_end:.1f}x faster than published (goal >= 10x)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2])))
    else:
        main()
