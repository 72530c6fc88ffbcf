"""Language-model export end to end, a dense and a mixture-of-experts model of about the same weight size:
our ``export_llm_to_tract`` vs the published ``t2n_export_llm_to_tract`` (torch-to-nnef-llm 0.24.12), side by
side on each saved model.

Two cases, random weights, vocabulary 32000, 22 layers each (``--case`` picks one):

- dense: Llama-shaped with TinyLlama-1.1B's sizes (hidden 2048, MLP 5632, 32 heads, 4 key-value heads):
  1.10B parameters, 2.20 GB of f16;
- moe: Mixtral-shaped (hidden 1024, 8 experts of MLP 1792, top-2 routing, 16 heads, 4 key-value heads):
  1.09B parameters, 2.18 GB of f16, 89% of them in the experts.

Each model is built in f16 on the meta device then filled in place (in a process of its own, not
measured), saved with ``save_pretrained`` (safetensors, with a small word-level tokenizer; Mixtral's
experts as the checkpoints have them, one ``w1``/``w2``/``w3`` per expert) in a temporary folder,
exported, and deleted with its exports before the next case.

Each CLI run is a fresh process, timed from its start (imports included) to its end; its peak RSS
is its own ``ru_maxrss``. Measured: ``-f16 -nv``, ``-f16 -c min_max_q4_0 -nv`` (as chosen by default:
streamed or loaded), ``-f16 -nv --stream``, both unchecked exports again with ``--no-stream`` (the
model loaded), and ``-f16`` with the checks in tract, for ours; for the mixture of experts, whose
layers are written as tract's ``tract_moe_ffn`` by default (tract 0.23.9), the two unchecked exports
again with
``--tract-specific-version 0.23.8``, where they keep the dense form (every expert computed, weighted
by the routing); the same two unchecked exports for the published CLI, run in its own virtual
environment (set up by ../shared/tools/published-exporter.sh) against a stand-in tract binary that
only answers ``--version`` with 0.23.9 (the published exporter writes mixtures of experts as
``tract_moe_ffn`` too and refuses them for an older tract; its ``-c min_max_q4_0`` leaves the
experts' weights in f16, hence the export's size on each line); it needs transformers there, a
release it supports: 5.14.1 works, 5.24.0 does not (its DynamicLayer.update patch gets an
unexpected ``kwargs`` argument):
``$PY -m pip install transformers==5.14.1 tokenizers safetensors accelerate protobuf sentencepiece``.

Reported per run: seconds, seconds per GB of f16 weights, peak RSS over the f16 size and the size of
the export; then the
ratios mixture of experts / dense of those two, and published / ours per case. Goals: peak RSS
below 1.5x the f16 model, ours >= 5x faster than the published.

    python benches/bench_llm.py [--case dense|moe|both] [--layers N] [--no-verify-run] [--no-moe-dense-form]

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
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from _common import GB, MiB, best_of

HERE = Path(__file__).resolve().parent
GiB = 1 << 30
LAYERS = 22
TOKENIZER_WORDS = 1000
COMMON_SIZES: dict[str, int] = dict(vocab_size=32000, max_position_embeddings=2048, bos_token_id=1, eos_token_id=2)


@dataclass(frozen=True)
class Case:
    """A model shape of the bench: its transformers classes and sizes."""

    name: str
    title: str
    config_class: str
    model_class: str
    sizes: dict[str, int] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "dense": Case(
        "dense",
        "Llama (TinyLlama-1.1B's sizes)",
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(hidden_size=2048, intermediate_size=5632, num_attention_heads=32, num_key_value_heads=4, **COMMON_SIZES),
    ),
    "moe": Case(
        "moe",
        "Mixtral-shaped, 8 experts, top-2",
        "MixtralConfig",
        "MixtralForCausalLM",
        dict(
            hidden_size=1024,
            intermediate_size=1792,
            num_attention_heads=16,
            num_key_value_heads=4,
            num_local_experts=8,
            num_experts_per_tok=2,
            **COMMON_SIZES,
        ),
    ),
}
# The release the published exporter's stand-in tract answers: the first with tract_moe_ffn, which it needs for
# mixtures of experts, and ours' default.
PUBLISHED_TRACT = "0.23.9"
# The mixture of experts exported for tract 0.23.8, which has no tract_moe_ffn: the dense form.
DENSE_FORM = ["--tract-specific-version", "0.23.8"]
# Runs compared between the cases and with the published exporter: (ours, published).
PAIRS = (
    ("ours -f16 -nv", "published -dt f16 -nv"),
    ("ours -f16 -c min_max_q4_0 -nv", "published -dt f16 -c min_max_q4_0 -nv"),
)

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


def build(case: Case, folder: Path, layers: int) -> None:
    """Subprocess: a random ``case`` model of ``layers`` layers saved in f16 to ``folder``, with a tokenizer."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    config = getattr(transformers, case.config_class)(**case.sizes, num_hidden_layers=layers, dtype="float16")
    torch.set_default_dtype(torch.float16)
    with torch.device("meta"):
        model = getattr(transformers, case.model_class)(config)
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
    experts = sum(p.numel() for name, p in model.named_parameters() if ".experts." in name)
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "experts": experts}))


def published() -> Path | str:
    """The Python of the published exporter's environment, or why it cannot be used."""
    if os.environ.get("T2N_SKIP_PUBLISHED"):
        return "T2N_SKIP_PUBLISHED is set"
    if "T2N_PUBLISHED_PYTHON" in os.environ:
        return Path(os.environ["T2N_PUBLISHED_PYTHON"])
    script = HERE.parent.parent / "shared" / "tools" / "published-exporter.sh"
    if not script.exists():
        return f"{script} not found"
    try:
        text = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as exc:
        return f"set-up script failed: {exc.stderr.strip()[-300:]}"
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    python = lines.get("python")
    if not python:
        return f"set-up script gave no python:\n{text}"
    probe = subprocess.run([python, "-c", "import transformers, torch_to_nnef_llm.cli"], capture_output=True, text=True)
    if probe.returncode != 0:
        return (
            f"its venv cannot import its CLI ({probe.stderr.strip().splitlines()[-1]}); install "
            f"transformers there: {python} -m pip install transformers==5.14.1 tokenizers safetensors accelerate "
            "protobuf sentencepiece"
        )
    return Path(python)


def stand_in(folder: Path) -> Path:
    """A stand-in tract binary in ``folder`` that only answers ``--version`` with PUBLISHED_TRACT."""
    path = folder / "tract"
    path.write_text(f'#!/bin/sh\necho "tract {PUBLISHED_TRACT}"\n')
    path.chmod(0o755)
    return path


def tree_size(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _anonymous(pid: int) -> int:
    """Bytes of anonymous memory of process ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run(python: str, kind: str, argv: list[str], env: dict[str, str]) -> dict[str, float] | str:
    """One CLI run in a fresh process: its result line (with ``peak_anon``, its peak anonymous
    memory sampled every 50 ms), or why it failed."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [python, "-c", CHILD, kind, *argv], stdout=out, stderr=err, text=True, env=env, cwd=tempfile.gettempdir()
        )
        peak_anon = 0
        while proc.poll() is None:
            peak_anon = max(peak_anon, _anonymous(proc.pid))
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    last = stdout.strip().splitlines()[-1:] if stdout.strip() else []
    try:
        result: dict[str, float] = json.loads(last[0])
    except (IndexError, json.JSONDecodeError):
        result = {"rc": proc.returncode}
    if proc.returncode != 0 or result["rc"] != 0:
        tail = (stderr.strip() or stdout.strip())[-1500:]
        return f"exit status {proc.returncode}/{result['rc']}:\n{tail}"
    result["peak_anon"] = peak_anon
    return result


def report(name: str, r: dict[str, float] | str, size: int) -> None:
    """Prints one run's line: time, time per GB of f16 weights and peak RSS against the f16 size."""
    if isinstance(r, str):
        print(f"  {name:52s} FAILED: {r}", flush=True)
        return
    print(
        f"  {name:52s} {r['seconds']:7.1f} s ({r['import_s']:4.1f} s of imports)  "
        f"{r['seconds'] / (size / GB):6.1f} s/GB  peak RSS {r['peak'] / GiB:5.2f} GiB = "
        f"{r['peak'] / size:4.2f}x f16 model (goal < 1.5x), {r.get('peak_anon', 0) / GiB:5.2f} GiB anonymous  "
        f"export {r['export'] / 1e6:5.0f} MB",
        flush=True,
    )


Results = dict[str, Union[dict[str, float], str]]


def measure(case: Case, layers: int, verify: bool, dense_form: bool, theirs: Path | str) -> tuple[int, Results]:
    """Builds, exports and deletes one case: its f16 size in bytes and its runs' results."""
    ours_env = {**os.environ}
    theirs_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    results: Results = {}
    with tempfile.TemporaryDirectory(prefix=f"t2n-bench-llm-{case.name}-") as tmp:
        saved = Path(tmp, case.name)
        built = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--build", case.name, str(saved), str(layers)],
            capture_output=True,
            text=True,
            check=True,
        )
        counts = json.loads(built.stdout.strip().splitlines()[-1])
        size = counts["params"] * 2
        weights = sum(f.stat().st_size for f in saved.glob("*.safetensors"))
        experts = f", {counts['experts'] / counts['params']:.0%} in experts" if counts["experts"] else ""
        print(
            f"{case.name}: {case.title}, {layers} layers, hidden {case.sizes['hidden_size']}, "
            f"{counts['params'] / 1e9:.2f}B parameters{experts}: {size / 1e6:.0f} MB of f16 "
            f"({weights / MiB:.0f} MiB of safetensors)",
            flush=True,
        )
        runs: list[tuple[str, str, str, list[str]]] = [
            ("ours -f16 -nv", sys.executable, "ours", ["-f16", "-nv"]),
            ("ours -f16 -c min_max_q4_0 -nv", sys.executable, "ours", ["-f16", "-c", "min_max_q4_0", "-nv"]),
            # a float export streamed too (by default a model this small loads)
            ("ours -f16 -nv --stream", sys.executable, "ours", ["-f16", "-nv", "--stream"]),
            # the model loaded in memory, as unchecked exports were before they streamed
            ("ours -f16 -nv --no-stream", sys.executable, "ours", ["-f16", "-nv", "--no-stream"]),
            (
                "ours -f16 -c min_max_q4_0 -nv --no-stream",
                sys.executable,
                "ours",
                ["-f16", "-c", "min_max_q4_0", "-nv", "--no-stream"],
            ),
        ]
        if dense_form and counts["experts"]:
            runs += [
                ("ours -f16 -nv, 0.23.8 (dense form)", sys.executable, "ours", ["-f16", "-nv", *DENSE_FORM]),
                (
                    "ours -f16 -c min_max_q4_0 -nv, 0.23.8 (dense form)",
                    sys.executable,
                    "ours",
                    ["-f16", "-c", "min_max_q4_0", "-nv", *DENSE_FORM],
                ),
            ]
        if verify:
            runs.append(("ours -f16 (checked in tract)", sys.executable, "ours", ["-f16"]))
        if isinstance(theirs, Path):
            common = ["--tract-specific-path", str(stand_in(Path(tmp))), "-nv", "-dt", "f16"]
            runs += [
                ("published -dt f16 -nv", str(theirs), "published", common),
                (
                    "published -dt f16 -c min_max_q4_0 -nv",
                    str(theirs),
                    "published",
                    [*common, "-c", "min_max_q4_0"],
                ),
            ]
        for i, (name, python, kind, flags) in enumerate(runs):
            out = Path(tmp, f"export{i}")
            argv = ["-d", str(saved), "-e", str(out), *flags]
            result = run(python, kind, argv, ours_env if kind == "ours" else theirs_env)
            if isinstance(result, dict):
                result["export"] = tree_size(out)
            results[name] = result
            report(name, result, size)
            shutil.rmtree(out, ignore_errors=True)
    return size, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--case",
        choices=[*CASES, "both", *LARGE],
        default="both",
        help="model(s) measured (default: both); 8b and 14b: checkpoints larger than memory or nearly, streamed",
    )
    parser.add_argument(
        "--loaded-too", action="store_true", help="8b/14b: also export with the model loaded (--no-stream)"
    )
    parser.add_argument(
        "--layers", type=int, default=LAYERS, help="decoder layers of each model (default: %(default)s)"
    )
    parser.add_argument("--no-verify-run", action="store_true", help="skip our export with the checks on")
    parser.add_argument(
        "--no-moe-dense-form",
        action="store_true",
        help="skip the mixture of experts' exports for tract 0.23.8 (dense form)",
    )
    args = parser.parse_args()
    theirs = published()
    if not isinstance(theirs, Path):
        print(f"published torch-to-nnef-llm 0.24.12 not measured: {theirs}", flush=True)
    if args.case in LARGE:
        measure_large(args.case, theirs, args.loaded_too)
        return
    names = list(CASES) if args.case == "both" else [args.case]
    measured = {
        name: measure(CASES[name], args.layers, not args.no_verify_run, not args.no_moe_dense_form, theirs)
        for name in names
    }
    for name, (_, results) in measured.items():
        if not isinstance(theirs, Path):
            break
        for ours_name, theirs_name in PAIRS:
            a, b = results[ours_name], results[theirs_name]
            if isinstance(a, dict) and isinstance(b, dict):
                print(
                    f"{name}, {ours_name}: {b['seconds'] / a['seconds']:.1f}x faster than the published "
                    f"(goal >= 5x), peak RSS published / ours {b['peak'] / a['peak']:.2f}"
                )
            else:
                print(f"{name}, {ours_name}: no ratio against the published, a run failed")
    if "dense" not in measured or "moe" not in measured:
        return
    (dense_size, dense), (moe_size, moe) = measured["dense"], measured["moe"]
    compared = [(n, n) for pair in PAIRS for n in pair]
    compared += [(f"{n}, 0.23.8 (dense form)", n) for n, _ in PAIRS]
    for moe_name, dense_name in compared:
        m, d = moe.get(moe_name), dense.get(dense_name)
        if not isinstance(m, dict) or not isinstance(d, dict):
            continue
        per_gb = (m["seconds"] / moe_size) / (d["seconds"] / dense_size)
        rss = (m["peak"] / moe_size) / (d["peak"] / dense_size)
        print(f"moe / dense, {moe_name}: {per_gb:.2f}x the s/GB, {rss:.2f}x the peak RSS per GB")


# --- models larger than memory -------------------------------------------------------------------------

LARGE: dict[str, dict[str, int]] = {
    # Llama-3-8B: 8.03B parameters, 16.1 GB of f16
    "8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_attention_heads=32,
        num_key_value_heads=8,
        num_hidden_layers=32,
        vocab_size=128256,
        max_position_embeddings=8192,
        shards=4,
    ),
    # Qwen2.5-14B's sizes as a Llama: 14.8B parameters, 29.5 GB of f16 (more than this machine's memory)
    "14b": dict(
        hidden_size=5120,
        intermediate_size=13824,
        num_attention_heads=40,
        num_key_value_heads=8,
        num_hidden_layers=48,
        vocab_size=152064,
        max_position_embeddings=8192,
        shards=8,
    ),
}
"""Big Llama-shaped checkpoints, written one tensor at a time (never held in memory)."""

POOL_VALUES = 1 << 24
"""Random f16 values every tensor of a big checkpoint is cut from, at its own offset."""


def write_checkpoint(folder: Path, sizes: dict[str, int]) -> tuple[int, int]:
    """A random f16 Llama checkpoint of ``sizes`` in ``folder``: ``config.json``, safetensors shards
    written tensor by tensor from a pool of random values (the working set is the pool), and their
    index. Returns its parameters and the values of its linear layers (those Q4_0 quantizes)."""
    import numpy as np
    import torch
    import transformers

    sizes = dict(sizes)
    shards = sizes.pop("shards")
    config = transformers.LlamaConfig(**sizes, tie_word_embeddings=False, dtype="float16")
    config.save_pretrained(folder)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    entries = [(n, tuple(t.shape)) for n, t in model.state_dict().items()]
    total = sum(int(np.prod(shape)) for _, shape in entries)
    pool = (np.random.default_rng(0).standard_normal(POOL_VALUES) * 0.02).astype(np.float16)
    ones = np.ones(1 << 16, np.float16)
    groups: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    filled = 0
    for name, shape in entries:
        if filled >= total * len(groups) / shards and len(groups) < shards:
            groups.append([])
        groups[-1].append((name, shape))
        filled += int(np.prod(shape))
    weight_map = {}
    for i, group in enumerate(groups):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        header, offset = {}, 0
        for name, shape in group:
            size = int(np.prod(shape)) * 2
            header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
            weight_map[name] = shard
        text = json.dumps(header).encode()
        text += b" " * (-len(text) % 8)
        with open(folder / shard, "wb") as f:
            f.write(len(text).to_bytes(8, "little") + text)
            for j, (name, shape) in enumerate(group):
                left = int(np.prod(shape))
                source = ones if name.endswith("norm.weight") else pool
                at = (j * 7919) % len(source)
                while left:
                    n = min(left, len(source) - at)
                    f.write(source[at : at + n].tobytes())
                    left -= n
                    at = 0
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total * 2}, "weight_map": weight_map})
    )
    linear = sum(int(np.prod(s)) for n, s in entries if len(s) == 2 and "embed_tokens" not in n)
    return total, linear


def floor_read(files: list[Path]) -> float:
    """Seconds to read ``files`` with plain 16 MiB reads."""
    buffer = bytearray(16 * MiB)
    view = memoryview(buffer)
    started = time.perf_counter()
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    return time.perf_counter() - started


def floor_write(path: Path, size: int) -> float:
    """Seconds to write a file of ``size`` bytes with plain 16 MiB writes (then delete it)."""
    block = os.urandom(16 * MiB)
    started = time.perf_counter()
    with open(path, "wb", buffering=0) as f:
        left = size
        while left > 0:
            left -= f.write(block[: min(left, len(block))])
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def q4_0_seconds_per_value() -> float:
    """Seconds per f16 value of our Q4_0 kernel on weights in memory (best of 3 over 256 Mi values
    in 32 MiB pieces, the export's piece size)."""
    import numpy as np

    from torch_to_nnef import Q40Tensor

    values = (np.random.default_rng(1).standard_normal(1 << 28) * 0.02).astype(np.float16).reshape(-1, 4096)
    rows = (32 * MiB) // (4096 * 2)

    def quantize() -> None:
        for start in range(0, values.shape[0], rows):
            Q40Tensor.quantize(values[start : start + rows])

    return best_of(quantize) / values.size


def measure_large(name: str, published_python: Path | str, loaded_too: bool) -> None:
    """Writes the ``name`` checkpoint, measures the floors and the exports, then deletes them."""
    sizes = LARGE[name]
    with tempfile.TemporaryDirectory(prefix=f"t2n-bench-llm-{name}-") as tmp:
        folder = Path(tmp, "model")
        folder.mkdir()
        started = time.perf_counter()
        params, linear = write_checkpoint(folder, sizes)
        files = sorted(folder.glob("*.safetensors"))
        size = sum(f.stat().st_size for f in files)
        print(
            f"{name}: Llama-shaped, {sizes['num_hidden_layers']} layers, hidden {sizes['hidden_size']}, vocabulary "
            f"{sizes['vocab_size']}: {params / 1e9:.2f}B parameters, {size / GB:.1f} GB of f16 in {len(files)} "
            f"safetensors shards (written in {time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        read_s = floor_read(files)
        q4_s = q4_0_seconds_per_value() * linear
        runs = [
            ("ours -f16 -c min_max_q4_0 -nv (streamed)", ["-f16", "-c", "min_max_q4_0", "-nv"]),
            (
                "ours -f16 -c min_max_q4_0 --check-layers 2",
                ["-f16", "-c", "min_max_q4_0", "--check-layers", "2"],
            ),
        ]
        if loaded_too:
            runs.append(
                ("ours -f16 -c min_max_q4_0 -nv --no-stream", ["-f16", "-c", "min_max_q4_0", "-nv", "--no-stream"])
            )
        archive_size = 0
        for label, flags in runs:
            out = Path(tmp, "export")
            r = run(sys.executable, "ours", ["-d", str(folder), "-e", str(out), *flags], {**os.environ})
            if isinstance(r, str):
                print(f"  {label:48s} FAILED: {r}", flush=True)
                continue
            archive_size = archive_size or tree_size(out)
            goal = "2 GiB" if "-nv" in flags else "3 GiB + the archive in tract"
            print(
                f"  {label:48s} {r['seconds']:6.1f} s ({r['import_s']:.1f} s of imports)  peak anonymous "
                f"{r['peak_anon'] / GiB:5.2f} GiB (goal <= {goal})  peak RSS {r['peak'] / GiB:5.2f} GiB  "
                f"archive {tree_size(out) / GB:.2f} GB",
                flush=True,
            )
            if "streamed" in label:
                streamed = r
            shutil.rmtree(out, ignore_errors=True)
        write_s = floor_write(Path(tmp, "floor.bin"), archive_size) if archive_size else float("nan")
        floor = read_s + write_s + q4_s
        print(
            f"  floor: read the shards {read_s:.1f} s ({size / GB / read_s:.2f} GB/s) + write "
            f"{archive_size / GB:.2f} GB {write_s:.1f} s + our Q4_0 kernel over {linear / 1e9:.2f}B values in memory "
            f"{q4_s:.1f} s = {floor:.1f} s",
            flush=True,
        )
        if archive_size and "streamed" in locals():
            print(
                f"  {name} streamed: {streamed['seconds'] / floor:.2f}x the floor (goal <= 1.5x), "
                f"peak anonymous {streamed['peak_anon'] / GiB:.2f} GiB (goal <= 2 GiB)",
                flush=True,
            )
    if isinstance(published_python, Path):
        print("  published exporter: not run on this case (it loads the model whole: 969 s and 21.0 GiB on 8B here)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--build":
        build(CASES[sys.argv[2]], Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
