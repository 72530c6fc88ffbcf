"""PEFT adapters (LoRA, DoRA, ...) exported as NNEF ``.dat`` tensors, with a map to the weights they adapt.

Command line: ``export_peft_to_nnef --read-filepath FILE -o OUT`` (or ``python -m
torch_to_nnef.peft``); from Python: :func:`export_peft_to_nnef`. Tensors are picked from the file
by regular expressions, preset per method (``--method``) or given (``--patterns``); the named
group ``(?P<name>...)`` of a pattern is the adapted module's name, from which the name of the
base weight is made (``--map-name``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import secrets
import shutil
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch_to_nnef.errors import InvalidArgumentError, MissingFolderError, NNEFIOError, OutputExistsError
from torch_to_nnef.io.archive import archive_kind
from torch_to_nnef.io.dat import Bf16Policy, PathLike
from torch_to_nnef.io.tensor_export import export_tensors_from_disk_to_nnef

__all__ = ["MAPPING_FILENAME", "METHODS", "export_peft_to_nnef", "main", "method_patterns"]

LOGGER = logging.getLogger(__name__)

MAPPING_FILENAME = "peft_mapping.json"
"""The file, next to the ``.dat`` files, that maps each exported tensor to the base weight it adapts."""

_ADAPTER = "{adapter}"
METHODS: dict[str, tuple[str, ...]] = {
    "LoRA": (
        r"^(?P<name>.+)\.lora_A(?:\.{adapter})?\.weight$",
        r"^(?P<name>.+)\.lora_B(?:\.{adapter})?\.weight$",
    ),
    "DoRA": (
        r"^(?P<name>.+)\.lora_A(?:\.{adapter})?\.weight$",
        r"^(?P<name>.+)\.lora_B(?:\.{adapter})?\.weight$",
        r"^(?P<name>.+)\.lora_magnitude_vector(?:\.{adapter})?(?:\.weight)?$",
    ),
    "IA3": (r"^(?P<name>.+)\.ia3_l(?:\.{adapter})?$",),
    "LoHa": (r"^(?P<name>.+)\.hada_w[12]_[ab](?:\.{adapter})?$",),
    "LoKr": (r"^(?P<name>.+)\.lokr_w[12](?:_[ab])?(?:\.{adapter})?$",),
}
"""Pattern presets per PEFT method; ``{adapter}`` stands for the adapter name. Both the keys of a
whole PEFT model's state dict (``...lora_A.default.weight``) and those of a saved adapter file
(``...lora_A.weight``, where PEFT drops the adapter name) match."""


def method_patterns(method: str, adapter: str = "default") -> list[str]:
    """The patterns of a preset ``method`` (case-insensitive) for the adapter named ``adapter``."""
    by_lower = {m.lower(): m for m in METHODS}
    if method.lower() not in by_lower:
        raise InvalidArgumentError(f"unknown PEFT method {method!r}; known: {', '.join(METHODS)}")
    return [p.replace(_ADAPTER, re.escape(adapter)) for p in METHODS[by_lower[method.lower()]]]


def _compile(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as exc:
            raise InvalidArgumentError(f"invalid regular expression {p!r}: {exc}") from exc
    return compiled


def _check_template(option: str, template: str) -> None:
    try:
        template.format(name="module")
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidArgumentError(
            f"{option} {template!r} must be a name with a '{{name}}' placeholder (e.g. '{{name}}.weight'): {exc!r}"
        ) from None
    if "{name}" not in template:
        raise InvalidArgumentError(f"{option} {template!r} has no '{{name}}' placeholder (e.g. '{{name}}.weight')")


def export_peft_to_nnef(
    read_filepath: PathLike,
    output: PathLike,
    *,
    method: str = "LoRA",
    patterns: Sequence[str] | None = None,
    adapter: str = "default",
    map_name: str = "{name}.weight",
    check_map_name: str | None = None,
    bf16: Bf16Policy = "error",
    overwrite: bool = False,
    compression_level: int = 6,
) -> dict[str, str]:
    """Exports the adapter tensors of a checkpoint as ``.dat`` files plus :data:`MAPPING_FILENAME`.

    Args:
        read_filepath: a ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` file (a PEFT model's state
            dict, or an adapter saved with ``save_pretrained``).
        output: a folder, or an archive when it ends with ``.tgz``/``.tar.gz`` (gzip) or ``.tar``.
        method: the pattern preset, one of :data:`METHODS` (ignored when ``patterns`` is given).
        patterns: regular expressions searched in each tensor name; a named group
            ``(?P<name>...)`` gives the adapted module's name (without it, the part of the tensor
            name before the match).
        adapter: the adapter name in the presets (PEFT's ``"default"``).
        map_name: the base weight of a module, from its name: ``"{name}.weight"``.
        check_map_name: when given, the name of the module's base weight *in the file read*
            (e.g. ``"{name}.base_layer.weight"`` for a PEFT model's state dict); each must exist.
        bf16: ``"error"`` refuses bfloat16 tensors; ``"f16"`` / ``"f32"`` casts them.
        overwrite: replace an existing output.
        compression_level: gzip level for ``.tgz`` outputs.

    Returns:
        exported tensor name -> base weight name (what the mapping file holds).

    Raises:
        InvalidArgumentError: no tensor matches the patterns (the message lists them), a base
            weight asked by ``check_map_name`` is missing, or a bad pattern or template.
        OutputExistsError: ``output`` exists and ``overwrite`` is False.
        And those of :func:`torch_to_nnef.export_tensors_from_disk_to_nnef`.
    """
    tried = list(patterns) if patterns else method_patterns(method, adapter)
    compiled = _compile(tried)
    _check_template("map_name", map_name)
    if check_map_name is not None:
        _check_template("check_map_name", check_map_name)
    source = Path(read_filepath)
    out = Path(os.path.abspath(os.fspath(output)))
    kind = archive_kind(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{output} already exists; pass overwrite=True (--overwrite) to replace it")
    if not out.parent.is_dir():
        raise MissingFolderError(f"cannot write {output}: its folder {out.parent} does not exist (create it first)")

    all_keys: list[str] = []
    modules: dict[str, str] = {}

    def filter_key(key: str) -> bool:
        all_keys.append(key)
        for pattern in compiled:
            m = pattern.search(key)
            if m:
                modules[key] = m.group("name") if "name" in pattern.groupindex else key[: m.start()]
                return True
        return False

    def check_found(found: dict[str, Any]) -> bool:
        if not found:
            sample = ", ".join(all_keys[:3]) + (", ..." if len(all_keys) > 3 else "")
            raise InvalidArgumentError(
                f"no tensor of {source} matches the patterns tried: {' | '.join(tried)} "
                f"({len(all_keys)} tensors in the file{': ' + sample if all_keys else ''})"
            )
        empty = [k for k in found if not modules[k]]
        if empty:
            raise InvalidArgumentError(f"{empty[0]}: the pattern matched but gave an empty module name")
        if check_map_name is not None:
            present = set(all_keys)
            missing = [(k, check_map_name.format(name=modules[k])) for k in found]
            missing = [(k, base) for k, base in missing if base not in present]
            if missing:
                k, base = missing[0]
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise InvalidArgumentError(
                    f"{source}: base weight {base!r} of {k!r} is not in the file{more}; check --check-map-name"
                )
        return True

    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(6)}"
    try:
        found = export_tensors_from_disk_to_nnef(
            source, staging, filter_key=filter_key, fn_check_found_tensors=check_found, bf16=bf16
        )
        mapping = {k: map_name.format(name=modules[k]) for k in found}
        document = {
            "method": method if not patterns else "custom",
            "source": source.name,
            "patterns": tried,
            "mapping": mapping,
        }
        (staging / MAPPING_FILENAME).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        if kind == "folder":
            _replace_folder(staging, out)
        else:
            _write_tar(staging, out, gzip=kind == "tgz", compression_level=compression_level)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    LOGGER.info("%d tensors of %s written to %s (map: %s)", len(mapping), source, out, MAPPING_FILENAME)
    return mapping


def _replace_folder(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{secrets.token_hex(6)}"
        os.rename(out, old)
    try:
        os.rename(staging, out)
    except OSError as exc:
        if old is not None:
            os.rename(old, out)
        raise NNEFIOError(f"cannot move the export into {out}: {exc}") from exc
    if old is not None:
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()


def _write_tar(staging: Path, out: Path, *, gzip: bool, compression_level: int) -> None:
    if not 0 <= compression_level <= 9:
        raise InvalidArgumentError(f"compression_level must be 0..9, got {compression_level}")
    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(6)}"
    try:
        mode = "w:gz" if gzip else "w"
        kwargs: dict[str, Any] = {"compresslevel": compression_level} if gzip else {}
        with tarfile.open(tmp, mode, **kwargs) as tar:  # type: ignore[call-overload]
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                tar.add(path, arcname=path.relative_to(staging).as_posix(), recursive=False)
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


# ----------------------------------------------------------------------------------------------
# command line

_DESCRIPTION = """\
Export the tensors of a PEFT adapter (LoRA, DoRA, ...) from a checkpoint file to NNEF .dat
files, with peft_mapping.json mapping each exported tensor to the base weight it adapts.

The file can be a PEFT model's state dict saved with torch.save or safetensors (keys such as
base_model.model.fc1.lora_A.default.weight) or an adapter saved with save_pretrained
(adapter_model.safetensors, keys such as base_model.model.fc1.lora_A.weight)."""

_EPILOG = """\
examples:
  # LoRA tensors of a state dict, into the folder lora_nnef/
  export_peft_to_nnef --read-filepath peft_model.pt -o lora_nnef

  # DoRA (also exports lora_magnitude_vector), into one gzipped archive
  export_peft_to_nnef --read-filepath adapter_model.safetensors -o dora.tgz --method DoRA

  # check each adapted layer's base weight is in the file, map it to the name it has without PEFT
  export_peft_to_nnef --read-filepath peft_model.safetensors -o out \\
      --check-map-name '{name}.base_layer.weight' --map-name '{name}.weight'

  # your own patterns: (?P<name>...) is the adapted module's name
  export_peft_to_nnef --read-filepath model.bin -o out \\
      --patterns '^(?P<name>.+)\\.lora_A\\.mine\\.weight$' '^(?P<name>.+)\\.lora_B\\.mine\\.weight$'

exit status: 0 on success, 1 on any error (a one-line message; --verbose shows the traceback),
2 on a bad command line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export_peft_to_nnef",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--read-filepath",
        required=True,
        metavar="FILE",
        help="checkpoint to read: .safetensors, .pt, .pth or .bin (e.g. --read-filepath adapter_model.safetensors)",
    )
    parser.add_argument(
        "-o",
        "--output",
        "--output-dir",
        dest="output",
        required=True,
        metavar="OUT",
        help="where to write: a folder (created; its parent must exist), or an archive if OUT ends with "
        ".tgz / .tar.gz (or .tar); relative paths are from the current folder (e.g. -o lora_nnef or -o lora.tgz)",
    )
    parser.add_argument(
        "--method",
        default="LoRA",
        type=lambda s: next((m for m in METHODS if m.lower() == s.lower()), s),
        choices=list(METHODS),
        help="pattern preset of the PEFT method (default: LoRA, which selects lora_A and lora_B weights; "
        "DoRA adds lora_magnitude_vector); e.g. --method DoRA",
    )
    parser.add_argument(
        "--patterns",
        nargs="+",
        metavar="REGEX",
        help="regular expressions searched in tensor names, replacing the --method preset; a named group "
        "(?P<name>...) is the adapted module (e.g. --patterns '^(?P<name>.+)\\.lora_A\\.default\\.weight$')",
    )
    parser.add_argument(
        "--adapter",
        default="default",
        metavar="NAME",
        help="adapter name used in the --method presets (default: %(default)s, PEFT's own)",
    )
    parser.add_argument(
        "--map-name",
        default="{name}.weight",
        metavar="TEMPLATE",
        help="name written in peft_mapping.json for the base weight of module {name} (default: %(default)s)",
    )
    parser.add_argument(
        "--check-map-name",
        metavar="TEMPLATE",
        help="check that the base weight of each adapted module is in the read file under this name, "
        "e.g. '{name}.base_layer.weight' for a PEFT model's state dict (default: no check)",
    )
    parser.add_argument(
        "--bf16",
        choices=["error", "f16", "f32"],
        default="error",
        help="bfloat16 tensors, which NNEF cannot hold: refuse them (default) or cast them to f16 / f32",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        mapping = export_peft_to_nnef(
            args.read_filepath,
            args.output,
            method=args.method,
            patterns=args.patterns,
            adapter=args.adapter,
            map_name=args.map_name,
            check_map_name=args.check_map_name,
            bf16=args.bf16,
            overwrite=args.overwrite,
        )
    except Exception as exc:
        if args.verbose:
            raise
        print(f"export_peft_to_nnef: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(f"exported {len(mapping)} tensors to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
