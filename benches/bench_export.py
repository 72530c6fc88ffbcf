"""Model export: time and peak memory of ours (check_io off and on) vs the published torch-to-nnef
0.24.12, side by side on the same models built with the same seed.

Each export runs in its own process so that its peak RSS is its own. The published exporter runs in
its own virtual environment (same import name), set up by ../shared/tools/published-exporter.sh; its
check_io needs a tract binary, so it is measured with the check off. Set T2N_PUBLISHED_PYTHON to skip
the set-up script, or T2N_SKIP_PUBLISHED=1 to measure ours alone. Each process then writes the same
parameters raw with numpy ``tofile`` to the same disk: the export's time is also given as a ratio to
that reference (1.0x: the export costs what writing its bytes costs).

    python benches/bench_export.py [transformer|mlp ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODELS = {
    # 12 layers, d = 768, seq 128: ~85M parameters
    "transformer": (
        "nn.TransformerEncoder(nn.TransformerEncoderLayer(768, 12, 3072, batch_first=True), 12, "
        "enable_nested_tensor=False)",
        "torch.randn(1, 128, 768)",
    ),
    # 30 x Linear(4096, 4096): ~503M parameters, 2 GB of f32
    "mlp": ("nn.Sequential(*[nn.Linear(4096, 4096) for _ in range(30)])", "torch.randn(4, 4096)"),
}
TINY = ("nn.Linear(4, 4)", "torch.randn(1, 4)")
"""Exported first, to measure what an export adds whatever the model's size: the code torch.export
and the exporter load (modules, sympy, tract), which the growth of a big model's export includes."""

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = {model}.eval()
    x = {inputs}
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from torch_to_nnef import TractNNEF, export_model_to_nnef
    target = TractNNEF({target})
    t0 = time.perf_counter()
    export_model_to_nnef(model, x, Path(sys.argv[1]), target, input_names=["x"], output_names=["y"])
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # the reference: the same parameters written raw by numpy to the same disk, in this process
    raw = Path(sys.argv[1] + ".raw")
    raw.mkdir()
    t0 = time.perf_counter()
    for i, p in enumerate(model.state_dict().values()):
        p.detach().numpy().tofile(raw / str(i))
    raw_seconds = time.perf_counter() - t0
    for f in raw.iterdir():
        f.unlink()
    raw.rmdir()
    print(json.dumps({{"seconds": elapsed, "raw": raw_seconds, "peak": peak, "before": rss_before, "size": size}}))
    """
)


def published_python() -> str | None:
    if os.environ.get("T2N_SKIP_PUBLISHED"):
        return None
    if "T2N_PUBLISHED_PYTHON" in os.environ:
        return os.environ["T2N_PUBLISHED_PYTHON"]
    script = ROOT.parent / "shared" / "tools" / "published-exporter.sh"
    if not script.exists():
        return None
    out = subprocess.run([str(script)], check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("python: "):
            return line.split(": ", 1)[1]
    return None


def stand_in_tract() -> Path:
    home = Path(os.environ.get("T2N_PUBLISHED_HOME", Path.home() / ".cache" / "t2n-published"))
    return home / "bin" / "tract"


def run(python: str, model: tuple[str, str], target: str, out: Path, env: dict[str, str]) -> dict[str, float]:
    """Exports ``model`` (its constructor and example input, as code) in a fresh process of ``python``."""
    code = CHILD.format(model=model[0], inputs=model[1], target=target)
    proc = subprocess.run(
        [python, "-c", code, str(out)], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{python} failed on {model} ({target}):\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    wanted = sys.argv[1:] or list(MODELS)
    theirs = published_python()
    ours_env = {**os.environ}
    theirs_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    gib = 1 << 30
    with tempfile.TemporaryDirectory(prefix="t2n-bench-export-") as tmp:
        fixed = {"ours": run(sys.executable, TINY, "check_io=False", Path(tmp, "tiny-a.nnef.tgz"), ours_env)}
        if theirs:
            target = f'version="0.23.8", check_io=False, specific_tract_binary_path=Path("{stand_in_tract()}")'
            fixed["published"] = run(theirs, TINY, target, Path(tmp, "tiny-c.nnef.tgz"), theirs_env)
        for who, r in fixed.items():
            print(
                f"{who}: exporting a 1-layer model adds {(r['peak'] - r['before']) / 1e6:.0f} MB of RSS (code loaded)"
            )
        for model in wanted:
            rows = {
                "ours check_io=False": run(
                    sys.executable, MODELS[model], "check_io=False", Path(tmp, f"{model}-a.nnef.tgz"), ours_env
                ),
                "ours check_io=True": run(
                    sys.executable, MODELS[model], "check_io=True", Path(tmp, f"{model}-b.nnef.tgz"), ours_env
                ),
            }
            if theirs:
                target = f'version="0.23.8", check_io=False, specific_tract_binary_path=Path("{stand_in_tract()}")'
                rows["published 0.24.12 check_io=False"] = run(
                    theirs, MODELS[model], target, Path(tmp, f"{model}-c.nnef.tgz"), theirs_env
                )
            size = next(iter(rows.values()))["size"]
            grown = {
                name: fixed["published" if name.startswith("published") else "ours"]["peak"]
                - fixed["published" if name.startswith("published") else "ours"]["before"]
                for name in rows
            }
            print(f"{model}: {size / 1e6:.0f} MB of parameters")
            for name, r in rows.items():
                print(
                    f"  {name:34s} {r['seconds']:7.2f} s  {size / r['seconds'] / 1e6:7.0f} MB/s  "
                    f"= {r['seconds'] / r['raw']:4.2f}x numpy tofile of the parameters  "
                    f"peak RSS {r['peak'] / gib:5.2f} GiB = {r['peak'] / size:4.2f}x model "
                    f"(export adds {(r['peak'] - r['before']) / size:4.2f}x, "
                    f"{(r['peak'] - r['before'] - grown[name]) / size:4.2f}x beyond the code it loads)"
                )
            if theirs:
                base = rows["published 0.24.12 check_io=False"]["seconds"]
                print(f"  speed-up, check off: {base / rows['ours check_io=False']['seconds']:.1f}x", end="")
                print(f"; with our check on: {base / rows['ours check_io=True']['seconds']:.1f}x")


if __name__ == "__main__":
    main()
