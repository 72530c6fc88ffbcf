"""Export of an int8 quantized ResNet-18-style model (torch eager static quantization, conv-bn-relu
fused, per-tensor weights, 1x3x224x224): time and peak memory of ours (check_io off and on) vs the
published torch-to-nnef 0.24.12, side by side.

The model is built, fused, calibrated and converted in each child process with the same seed (the
quantization itself is not timed). The published exporter runs in its own virtual environment (same
import name), set up by ../shared/tools/published-exporter.sh, with its check off (it needs a tract
binary). Set T2N_PUBLISHED_PYTHON to skip the set-up script, or T2N_SKIP_PUBLISHED=1 to measure
ours alone.

    python benches/bench_quantized.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bench_export import published_python, stand_in_tract

CHILD = textwrap.dedent(
    """
    import json, logging, resource, sys, time, warnings
    from pathlib import Path
    import torch
    import torch.ao.quantization as tq
    from torch import nn
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            self.skip, self.relu2 = nn.quantized.FloatFunctional(), nn.ReLU()

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            # add then ReLU rather than add_relu: the published exporter has no quantized add_relu
            return self.relu2(self.skip.add(y, x if self.down is None else self.down(x)))

    class ResNet18(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
            self.conv1, self.bn1, self.relu = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU()
            self.pool = nn.MaxPool2d(3, 2, 1)
            blocks, cin = [], 64
            for cout, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
                blocks.append(Block(cin, cout, stride))
                cin = cout
            self.blocks = nn.Sequential(*blocks)
            self.avg = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(512, 1000)

        def forward(self, x):
            x = self.pool(self.relu(self.bn1(self.conv1(self.quant(x)))))
            x = self.avg(self.blocks(x))
            return self.dequant(self.fc(torch.flatten(x, 1)))

    torch.manual_seed(0)
    model = ResNet18().eval()
    fuse = [["conv1", "bn1", "relu"]]
    for i, b in enumerate(model.blocks):
        p = f"blocks.{{i}}"
        fuse += [[f"{{p}}.conv1", f"{{p}}.bn1", f"{{p}}.relu1"], [f"{{p}}.conv2", f"{{p}}.bn2"]]
        if b.down is not None:
            fuse.append([f"{{p}}.down.0", f"{{p}}.down.1"])
    tq.fuse_modules(model, fuse, inplace=True)
    model.qconfig = tq.QConfig(activation=tq.default_observer, weight=tq.default_weight_observer)
    tq.prepare(model, inplace=True)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(1, 3, 224, 224))
    tq.convert(model, inplace=True)
    x = torch.randn(1, 3, 224, 224)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    from torch_to_nnef import TractNNEF, export_model_to_nnef
    target = TractNNEF({target})
    t0 = time.perf_counter()
    export_model_to_nnef(model, x, Path(sys.argv[1]), target, input_names=["x"], output_names=["y"])
    elapsed = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = Path(sys.argv[1]).stat().st_size
    print(json.dumps({{"seconds": elapsed, "peak": peak, "before": rss_before, "bytes": size}}))
    """
)


def run(python: str, target: str, out: Path, env: dict[str, str]) -> dict[str, float]:
    proc = subprocess.run(
        [python, "-c", CHILD.format(target=target), str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{python} failed ({target}):\n{proc.stderr[-3000:]}")
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    import os

    theirs = published_python()
    ours_env = {**os.environ}
    theirs_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix="t2n-bench-quantized-") as tmp:
        rows = {
            "ours check_io=False": run(sys.executable, "check_io=False", Path(tmp, "a.nnef.tgz"), ours_env),
            "ours check_io=True": run(sys.executable, "check_io=True", Path(tmp, "b.nnef.tgz"), ours_env),
        }
        if theirs:
            target = f'version="0.23.8", check_io=False, specific_tract_binary_path=Path("{stand_in_tract()}")'
            rows["published 0.24.12 check_io=False"] = run(theirs, target, Path(tmp, "c.nnef.tgz"), theirs_env)
        print("quantized ResNet-18 (eager static int8, per-tensor weights), 1x3x224x224")
        for name, r in rows.items():
            print(
                f"  {name:34s} {r['seconds']:7.2f} s  peak RSS {r['peak'] / (1 << 20):6.0f} MiB "
                f"(export adds {(r['peak'] - r['before']) / (1 << 20):5.0f} MiB)  archive {r['bytes'] / 1e6:5.1f} MB"
            )
        if theirs:
            base = rows["published 0.24.12 check_io=False"]["seconds"]
            print(f"  speed-up, check off: {base / rows['ours check_io=False']['seconds']:.1f}x", end="")
            print(f"; with our check on: {base / rows['ours check_io=True']['seconds']:.1f}x")


if __name__ == "__main__":
    main()
