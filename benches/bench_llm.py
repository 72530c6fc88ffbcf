"""Language-model export end to end: our ``export_llm_to_tract`` vs the published
``t2n_export_llm_to_tract`` (torch-to-nnef-llm 0.24.12), side by side on one saved model.

The model is Llama-shaped with TinyLlama-1.1B's sizes (hidden 2048, MLP 5632, 22 layers, 32 heads,
4 key-value heads, vocabulary 32000: 1.1B parameters, 2.2 GB of f16) and random weights. It is built
in f16 on the meta device then filled in place, saved with ``save_pretrained`` (safetensors, with a
small word-level tokenizer) in a temporary folder, deleted at the end.

Each CLI run is a fresh process, timed from its start (imports included) to its end; its peak RSS
is its own ``ru_maxrss``. Measured: ``-f16 -nv``, ``-f16 -c min_max_q4_0 -nv`` and ``-f16`` with the
checks in tract, for ours; the same two unchecked exports for the published CLI, run in its own
virtual environment (set up by ../shared/tools/published-exporter.sh) against its stand-in tract
binary; it needs transformers there, a release it supports: 5.14.1 works, 5.24.0 does not (its
DynamicLayer.update patch gets an unexpected ``kwargs`` argument):
``$PY -m pip install transformers==5.14.1 tokenizers safetensors accelerate protobuf sentencepiece``.
Throughputs are MB/s of f16 weights. Goals: peak RSS below 1.5x the f16 model, ours >= 5x faster
than the published.

    python benches/bench_llm.py [--layers N] [--no-verify-run]

Set T2N_SKIP_PUBLISHED=1 to measure ours alone, T2N_PUBLISHED_PYTHON to skip the set-up script.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import MiB

HERE = Path(__file__).resolve().parent
GiB = 1 << 30
SIZES = dict(
    hidden_size=2048,
    intermediate_size=5632,
    num_attention_heads=32,
    num_key_value_heads=4,
    vocab_size=32000,
    max_position_embeddings=2048,
    bos_token_id=1,
    eos_token_id=2,
)
LAYERS = 22
TOKENIZER_WORDS = 1000

# Runs a CLI's main in this fresh process and reports its wall time and peak RSS on the last line.
CHILD = """
import time
t0 = time.perf_counter()
import json, resource, sys
kind, argv = sys.argv[1], sys.argv[2:]
if kind == "ours":
    from torch_to_nnef.llm import main
    t1 = time.perf_counter()
    rc = main(argv)
else:
    from torch_to_nnef_llm.cli import main
    t1 = time.perf_counter()
    sys.argv = ["t2n_export_llm_to_tract", *argv]
    try:
        rc = main()
    except SystemExit as exc:
        rc = exc.code
rc = rc or 0
t2 = time.perf_counter()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"rc": rc, "seconds": t2 - t0, "import_s": t1 - t0, "peak": peak}))
"""


def build(folder: Path, layers: int) -> None:
    """Subprocess: a random Llama of ``layers`` layers saved in f16 to ``folder``, with a tokenizer."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    config = transformers.LlamaConfig(**SIZES, num_hidden_layers=layers, dtype="float16")
    torch.set_default_dtype(torch.float16)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=generator)
    model.save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(TOKENIZER_WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="w0", bos_token="w1", eos_token="w2"
    )
    fast.save_pretrained(folder)
    print(json.dumps({"params": sum(p.numel() for p in model.parameters())}))


def published() -> tuple[str, str] | str:
    """(python, stand-in tract) of the published exporter, or why it cannot be used."""
    if os.environ.get("T2N_SKIP_PUBLISHED"):
        return "T2N_SKIP_PUBLISHED is set"
    if "T2N_PUBLISHED_PYTHON" in os.environ:
        python = os.environ["T2N_PUBLISHED_PYTHON"]
        home = Path(os.environ.get("T2N_PUBLISHED_HOME", Path.home() / ".cache" / "t2n-published"))
        return python, str(home / "bin" / "tract")
    script = HERE.parent.parent / "shared" / "tools" / "published-exporter.sh"
    if not script.exists():
        return f"{script} not found"
    try:
        text = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as exc:
        return f"set-up script failed: {exc.stderr.strip()[-300:]}"
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    python = lines.get("python")
    stand_in = next((v for k, v in lines.items() if k.startswith("stand-in tract")), "")
    if not python or not stand_in:
        return f"set-up script gave no python or no stand-in tract:\n{text}"
    probe = subprocess.run([python, "-c", "import transformers, torch_to_nnef_llm.cli"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (
            f"its venv cannot import its CLI ({probe.stderr.strip().splitlines()[-1]}); install "
            f"transformers there: {python} -m pip install transformers==5.14.1 tokenizers safetensors accelerate "
            "protobuf sentencepiece"
        )
    return python, stand_in


def run(python: str, kind: str, argv: list[str], env: dict[str, str]) -> dict[str, float] | str:
    proc = subprocess.run(
        [python, "-c", CHILD, kind, *argv], capture_output=True, text=True, env=env, cwd=tempfile.gettempdir()
    )
    last = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    try:
        result: dict[str, float] = json.loads(last[0])
    except (IndexError, json.JSONDecodeError):
        result = {"rc": proc.returncode}
    if proc.returncode != 0 or result["rc"] != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
        return f"exit status {proc.returncode}/{result['rc']}:\n{tail}"
    return result


def report(name: str, r: dict[str, float] | str, size: int) -> None:
    if isinstance(r, str):
        print(f"  {name:36s} FAILED: {r}")
        return
    print(
        f"  {name:36s} {r['seconds']:7.1f} s ({r['import_s']:4.1f} s of imports)  "
        f"{size / r['seconds'] / 1e6:6.1f} MB/s  peak RSS {r['peak'] / GiB:5.2f} GiB = "
        f"{r['peak'] / size:4.2f}x f16 model (goal < 1.5x)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=LAYERS, help="decoder layers (default: %(default)s)")
    parser.add_argument("--no-verify-run", action="store_true", help="skip our export with the checks on")
    args = parser.parse_args()
    theirs = published()
    ours_env = {**os.environ}
    theirs_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    with tempfile.TemporaryDirectory(prefix="t2n-bench-llm-") as tmp:
        saved = Path(tmp, "llama")
        built = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--build", str(saved), str(args.layers)],
            capture_output=True,
            text=True,
            check=True,
        )
        params = json.loads(built.stdout.strip().splitlines()[-1])["params"]
        size = params * 2
        weights = sum(f.stat().st_size for f in saved.glob("*.safetensors"))
        print(
            f"Llama, {args.layers} layers, hidden {SIZES['hidden_size']}, {params / 1e9:.2f}B parameters: "
            f"{size / 1e6:.0f} MB of f16 ({weights / MiB:.0f} MiB of safetensors)",
            flush=True,
        )
        runs: list[tuple[str, str, str, list[str]]] = [
            ("ours -f16 -nv", sys.executable, "ours", ["-f16", "-nv"]),
            ("ours -f16 -c min_max_q4_0 -nv", sys.executable, "ours", ["-f16", "-c", "min_max_q4_0", "-nv"]),
        ]
        if not args.no_verify_run:
            runs.append(("ours -f16 (checked in tract)", sys.executable, "ours", ["-f16"]))
        if isinstance(theirs, tuple):
            python, stand_in = theirs
            common = ["--tract-specific-path", stand_in, "-nv", "-dt", "f16"]
            runs += [
                ("published -dt f16 -nv", python, "published", common),
                ("published -dt f16 -c min_max_q4_0 -nv", python, "published", [*common, "-c", "min_max_q4_0"]),
            ]
        results: dict[str, dict[str, float] | str] = {}
        for i, (name, python, kind, flags) in enumerate(runs):
            out = Path(tmp, f"export{i}")
            argv = ["-d", str(saved), "-e", str(out), *flags]
            results[name] = run(python, kind, argv, ours_env if kind == "ours" else theirs_env)
            report(name, results[name], size)
            shutil.rmtree(out, ignore_errors=True)
    if not isinstance(theirs, tuple):
        print(f"published torch-to-nnef-llm 0.24.12 not measured: {theirs}")
        return
    for ours_name, theirs_name in (
        ("ours -f16 -nv", "published -dt f16 -nv"),
        ("ours -f16 -c min_max_q4_0 -nv", "published -dt f16 -c min_max_q4_0 -nv"),
    ):
        a, b = results[ours_name], results[theirs_name]
        if isinstance(a, dict) and isinstance(b, dict):
            print(
                f"{ours_name}: {b['seconds'] / a['seconds']:.1f}x faster than the published (goal >= 5x), "
                f"peak RSS published / ours {b['peak'] / a['peak']:.2f}"
            )
        else:
            print(f"{ours_name}: no ratio, a run failed")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--build":
        build(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
