"""Exports every causal language model type of the installed transformers and writes the page of what works.

For each ``model_type`` that ``AutoModelForCausalLM`` knows, a tiny random model (hidden size 64,
two to four layers, a vocabulary of 256) is built from the type's default config, saved with
``save_pretrained`` and exported with ``export_llm_to_tract``, which checks the export in tract
against PyTorch: in f32, then, for the types that pass in f32, in f16 and in f32 with Q4_0 weights.
Types that are not decoder-only text models (encoder-decoder, encoders, multimodal, speech, no
key-value cache) are listed as out of scope with the reason. Each type runs in a subprocess of its
own, killed after ``--timeout`` seconds. How the models are made small, and the scope of each type:
``tests/llm/llm_sweep.py``.

Writes ``docs/supported_llms.json`` (one entry per type: its scope and each export's status, sorted
and without timings, so that a regeneration changes only what changed) and renders
``docs/supported_llms.md`` from it. The whole sweep (``make llm-sweep``) takes 30 to 60 minutes;
``--types`` runs some types again and updates only their entries.

    python tools/llm_sweep.py                          # every type (make llm-sweep)
    python tools/llm_sweep.py --types llama,mixtral    # these types again, the others kept
    python tools/llm_sweep.py --render-only            # the page again from the record
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

# tests/llm/llm_sweep.py, not this file (same module name)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "llm"))
import llm_sweep

LOGGER = logging.getLogger("llm_sweep")


def summary(model_type: str, entry: dict[str, Any]) -> str:
    """One line for the log: the type's scope, or each mode's status and time."""
    if entry["scope"] != llm_sweep.IN_SCOPE:
        return f"{model_type}: {entry['scope']} ({entry['reason']})"
    parts = []
    for mode in llm_sweep.MODES:
        if mode in entry["seconds"]:
            status = entry[mode] if entry[mode] == llm_sweep.CHECKED else f"failed: {entry[mode]}"
            parts.append(f"{mode} {status} ({entry['seconds'][mode]:.1f} s)")
        elif entry[mode]:  # stopped by a crash or the timeout
            parts.append(f"{mode} failed: {entry[mode]}")
    return f"{model_type}: " + ("; ".join(parts) or "not exported")


def timed_sweep(model_type: str, timeout: float, threads: int) -> tuple[dict[str, Any], float]:
    """:func:`llm_sweep.sweep_type`, and the seconds it took."""
    started = time.monotonic()
    entry = llm_sweep.sweep_type(model_type, timeout=timeout, threads=threads)
    return entry, time.monotonic() - started


def write(record: dict[str, Any], record_path: Path, page_path: Path) -> None:
    """Writes the record and the page rendered from it."""
    record_path.write_text(llm_sweep.dump_record(record))
    page_path.write_text(llm_sweep.render(record))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="tools/llm_sweep.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--types",
        help="comma-separated model types to run (e.g. llama,mixtral); default: every type, and the record's "
        "entries of types transformers no longer has are dropped",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="types run at once, each in its own subprocess (default: 1)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=llm_sweep.TIMEOUT_S,
        help=f"seconds a type may take, all its exports together (default: {llm_sweep.TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--record", type=Path, default=llm_sweep.RECORD, help="the JSON record (default: docs/supported_llms.json)"
    )
    parser.add_argument(
        "--page", type=Path, default=llm_sweep.PAGE, help="the page rendered (default: docs/supported_llms.md)"
    )
    parser.add_argument("--render-only", action="store_true", help="render the page from the record; run nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="also log the traceback of each failure")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the sweep; returns the exit status (1 when a type given to --types is unknown)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import transformers

    record = llm_sweep.load_record(args.record)
    if args.render_only:
        args.page.write_text(llm_sweep.render(record))
        LOGGER.info("wrote %s", args.page)
        return 0
    known = llm_sweep.causal_lm_types()
    if args.types:
        types = [t.strip() for t in args.types.split(",") if t.strip()]
        unknown = [t for t in types if t not in known]
        if unknown:
            LOGGER.error("unknown model types: %s (transformers %s)", ", ".join(unknown), transformers.__version__)
            return 1
    else:
        types = list(known)
        record["types"] = {t: e for t, e in record["types"].items() if t in known}
    if record["transformers"] and record["transformers"] != transformers.__version__:
        LOGGER.warning(
            "the record was made with transformers %s, this is %s", record["transformers"], transformers.__version__
        )
    record["transformers"] = transformers.__version__
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    started = time.monotonic()
    failed = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(timed_sweep, t, args.timeout, threads): t for t in types}
        for done, future in enumerate(as_completed(futures), start=1):
            model_type = futures[future]
            entry, seconds = future.result()
            LOGGER.info("[%d/%d] %s; %.1f s in all", done, len(types), summary(model_type, entry), seconds)
            if args.verbose:
                for step, trace in entry["traces"].items():
                    LOGGER.info("%s, %s:\n%s", model_type, step, trace)
            failed += entry["scope"] == llm_sweep.IN_SCOPE and entry["f32"] != llm_sweep.CHECKED
            record["types"][model_type] = llm_sweep.record_entry(entry)
            write(record, args.record, args.page)  # an interrupted sweep keeps what it did
    write(record, args.record, args.page)
    LOGGER.info(
        "%d types in %.0f s (%d in-scope types failing in f32); wrote %s and %s",
        len(types),
        time.monotonic() - started,
        failed,
        args.record,
        args.page,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
