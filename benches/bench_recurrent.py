"""Recurrent export: time to export a 4-layer bidirectional LSTM (input 80, hidden 512, 100 steps,
~22M parameters) with ours vs the published torch-to-nnef 0.24.12, side by side.

Each export runs in its own process (best of ``--repeat`` exports in it, after one warm-up export
that loads torch and the exporter). The published exporter runs in its own virtual environment
(same import name), set up by ../shared/tools/published-exporter.sh, with its check_io off (it needs
a tract binary); ours is measured with the check off, and with the time axis dynamic. Set
T2N_PUBLISHED_PYTHON to skip the set-up script, or T2N_SKIP_PUBLISHED=1 to measure ours alone.

    python benches/bench_recurrent.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benches"))

from bench_export import published_python, stand_in_tract  # noqa: E402

MODEL = "nn.LSTM(80, 512, num_layers=4, bidirectional=True, batch_first=True)"
INPUTS = "torch.randn(1, 100, 80)"

CHILD = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = {model}.eval()
    x = {inputs}
    from torch_to_nnef import TractNNEF, export_model_to_nnef
    times = []
    for i in range({repeat} + 1):  # the first export warms up (imports, caches) and is not counted
        out = Path(sys.argv[1]) / f"m{{i}}.nnef.tgz"
        t0 = time.perf_counter()
        export_model_to_nnef(
            model, (x,), out, TractNNEF({target}), input_names=["x"], output_names=["y", "h_n", "c_n"]
        )
        times.append(time.perf_counter() - t0)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({{"seconds": min(times[1:]), "size": size}}))
    """
)


def run(python: str, target: str, out: Path, env: dict[str, str], repeat: int) -> dict[str, float]:
    code = CHILD.format(model=MODEL, inputs=INPUTS, target=target, repeat=repeat)
    out.mkdir()
    proc = subprocess.run(
        [python, "-c", code, str(out)], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{python} failed ({target}):\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed exports per exporter (best kept)")
    args = parser.parse_args()
    theirs = published_python()
    # this checkout's package, whatever the caller's working folder (the children run elsewhere)
    ours_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "python"), os.environ.get("PYTHONPATH", "")])}
    theirs_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix="t2n-bench-recurrent-") as tmp:
        rows = {
            "ours": run(sys.executable, "check_io=False", Path(tmp, "ours"), ours_env, args.repeat),
            "ours, dynamic time axis": run(
                sys.executable, "check_io=False, dynamic_axes={'x': {1: 'T'}}", Path(tmp, "dyn"), ours_env, args.repeat
            ),
        }
        if theirs:
            target = f'version="0.23.8", check_io=False, specific_tract_binary_path=Path("{stand_in_tract()}")'
            rows["published 0.24.12"] = run(theirs, target, Path(tmp, "published"), theirs_env, args.repeat)
    size = next(iter(rows.values()))["size"]
    print(f"{MODEL} on {INPUTS}: {size / 1e6:.0f} MB of parameters, best of {args.repeat}")
    for name, r in rows.items():
        print(f"  {name:26s} {r['seconds']:7.3f} s")
    if theirs:
        base = rows["published 0.24.12"]["seconds"]
        print(f"  published / ours: {base / rows['ours']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
