"""Renders ``docs/supported_ops.md`` from the op registry and a record of what the test suite translated.

A run of the whole test suite records, for every passing test, the operators (with their overloads)
its exports translated, per target (``tests/conftest.py``); from that record it checks that every
registered operator was translated by a passing test and that the page says what the run measured.
``make coverage`` runs the suite with ``T2N_RECORD_OP_CASES=<path>``: the page is regenerated and
the record written to ``<path>``, which ``python -m torch_to_nnef.op.coverage PAGE --cases <path>``
renders again. Nothing in the table is estimated: a case count and the KhronosNNEF column come
from the record, and the core ATen operator set is read from the torch in use (``torch.Tag.core``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_to_nnef.check.targets import OLDEST_TRACT
from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.op import Registration, registrations, supported_kinds

RECORD_ENV = "T2N_RECORD_OP_CASES"
"""Environment variable: where the test run records its cases (see ``tests/conftest.py``)."""

_TRAINING = "training only"
_RANDOM = "random"
_COMPLEX = "complex numbers"
_DATA = "data-dependent"
_SYMBOLIC = "symbolic size"
_MUTATION = "mutation"

NOT_APPLICABLE: dict[str, tuple[str, str]] = {
    "aten::_adaptive_avg_pool2d_backward": (_TRAINING, "a gradient"),
    "aten::avg_pool2d_backward": (_TRAINING, "a gradient"),
    "aten::convolution_backward": (_TRAINING, "a gradient"),
    "aten::embedding_dense_backward": (_TRAINING, "a gradient"),
    "aten::max_pool2d_with_indices_backward": (_TRAINING, "a gradient"),
    "aten::native_group_norm_backward": (_TRAINING, "a gradient"),
    "aten::native_layer_norm_backward": (_TRAINING, "a gradient"),
    "aten::native_dropout": (_TRAINING, "dropout is the identity in eval mode, where it is not captured"),
    "aten::rand": (_RANDOM, "NNEF graphs are deterministic"),
    "aten::randn": (_RANDOM, "NNEF graphs are deterministic"),
    "aten::randperm": (_RANDOM, "NNEF graphs are deterministic"),
    "aten::_fft_r2c": (_COMPLEX, "NNEF has no complex dtype"),
    "aten::_fft_c2r": (_COMPLEX, "NNEF has no complex dtype"),
    "aten::_local_scalar_dense": (_DATA, "``.item()``: a Python number read from a tensor; torch.export refuses it"),
    "aten::sym_size": (_SYMBOLIC, "captured as a dimension expression, never translated"),
    "aten::sym_numel": (_SYMBOLIC, "captured as a dimension expression, never translated"),
    "aten::sym_stride": (_SYMBOLIC, "strides do not exist in NNEF; captured as an integer"),
    "aten::sym_storage_offset": (_SYMBOLIC, "storage does not exist in NNEF; captured as an integer"),
    "aten::sym_is_contiguous": (_SYMBOLIC, "memory layouts do not exist in NNEF; captured as a boolean"),
    "aten::resize_": (_MUTATION, "resizes a tensor in place; functionalised graphs hold no in-place op"),
}
"""Core ATen kinds that no inference export meets, by kind: (category, reason)."""


REFUSED: dict[str, str] = {
    "aten::masked_select": "its output's size depends on the values (suggests torch.where)",
    "aten::nonzero": "its output's size depends on the values (suggests torch.where)",
}
"""Kinds registered only to refuse them with a message naming the user's line: no export passes."""


NOT_APPLICABLE_OVERLOADS: dict[str, tuple[str, str]] = {
    "aten::_native_batch_norm_legit.default": (
        _TRAINING,
        "batch statistics that update running ones (train mode); exported models, in eval mode, hold "
        "``_native_batch_norm_legit_no_training`` or the ``.no_stats`` overload",
    ),
}
"""Core overloads of registered kinds that no inference export meets: (category, reason)."""


def not_applicable(name: str) -> tuple[str, str] | None:
    """Why the core overload ``name`` (``"aten::atan2.out"``) never reaches an inference export, if so."""
    kind, _, overload = name.rpartition(".")
    if overload == "out" or overload.endswith("_out"):
        return _MUTATION, "an ``out=`` variant; functionalised graphs hold the functional overload"
    return NOT_APPLICABLE_OVERLOADS.get(name) or NOT_APPLICABLE.get(kind)


def load_floors(path: str | Path) -> dict[str, Any]:
    """Reads the release floors ``tools/probe_tract_releases.py`` measured (``docs/tract_releases.json``);
    an empty table when the file does not exist.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("kinds"), dict):
        raise InvalidArgumentError(f"{path} is not a release floors file: rerun tools/probe_tract_releases.py")
    return data


def min_tract_version(kind: str, floors: Mapping[str, Any] | None = None) -> str:
    """The oldest tract release that ran every probed case translating ``kind``, from ``floors``
    (see :func:`load_floors`); ``"<oldest supported> (not probed)"`` for a kind no probed case has.
    """
    entry = (floors or {}).get("kinds", {}).get(kind)
    if entry is None:
        return ".".join(str(part) for part in OLDEST_TRACT) + " (not probed)"
    return str(entry["since"])


def overload_name(op: Any) -> str:
    """``"aten::add.Tensor"`` / ``"aten::relu.default"`` for a torch ``OpOverload``."""
    return f"{op.namespace}::{op._schema.name.split('::')[-1]}.{op._overloadname}"


def core_aten_overloads() -> list[str]:
    """Every ATen op overload tagged ``torch.Tag.core`` in the torch in use, sorted."""
    import torch

    found = set()
    for schema in torch._C._jit_get_all_schemas():
        namespace, _, name = schema.name.partition("::")
        if namespace != "aten":
            continue
        try:
            op = getattr(getattr(torch.ops.aten, name), schema.overload_name or "default")
        except (AttributeError, RuntimeError):  # schemas without a Python binding
            continue
        if torch.Tag.core in op.tags:
            found.add(overload_name(op))
    return sorted(found)


@dataclass
class OpCases:
    """What the recorded cases say of one registered operator."""

    cases: int = 0
    """Passing tests whose exports translated it."""
    tract: bool = False
    """Translated in a passing TractNNEF export."""
    khronos: bool = False
    """Translated in a passing KhronosNNEF export."""


def load_cases(path: str | Path) -> dict[str, Any]:
    """Reads a cases file written by the recording test run."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InvalidArgumentError(f"no recorded op cases at {path}: run `make coverage` to record them") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
        raise InvalidArgumentError(f"{path} is not an op cases file (no 'cases' table): rerun `make coverage`")
    return data


def covers(registration: Registration, name: str) -> bool:
    """Whether translating the operator ``name`` (``aten::add.Tensor``) runs ``registration``."""
    return name == registration.name


def tally(cases: Mapping[str, Any]) -> tuple[dict[str, OpCases], set[str]]:
    """Per registered operator name: its case count and targets; and every torch overload that some
    case's captured graph held.
    """
    by_kind: dict[str, list[Registration]] = {}
    for reg in registrations():
        by_kind.setdefault(reg.kind, []).append(reg)
    ops: dict[str, OpCases] = {}
    overloads: set[str] = set()
    for record in cases["cases"].values():
        seen: set[str] = set()
        for target, names in record["kinds"].items():
            for name in names:
                for reg in by_kind.get(name.split(".", 1)[0], []):
                    if covers(reg, name):
                        entry = ops.setdefault(reg.name, OpCases())
                        entry.tract |= target == "tract"
                        entry.khronos |= target == "khronos"
                        seen.add(reg.name)
        for name in seen:
            ops[name].cases += 1
        overloads.update(record["overloads"])
    return ops, overloads


def unknown_to_torch() -> list[str]:
    """Registered kinds that name no operator of the torch in use (no graph of it can hold them)."""
    import torch

    unknown = []
    for kind in supported_kinds():
        namespace, _, name = kind.partition("::")
        if getattr(getattr(torch.ops, namespace), name, None) is None:
            unknown.append(kind)
    return unknown


def untested_ops(cases: Mapping[str, Any]) -> list[str]:
    """Registered operator names of the torch in use that no recorded case translated."""
    ops, _ = tally(cases)
    unknown = set(unknown_to_torch())
    return [r.name for r in registrations() if r.name not in ops and r.kind not in unknown and r.kind not in REFUSED]


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def render(cases: Mapping[str, Any], floors: Mapping[str, Any] | None = None) -> str:
    """The markdown page: registered kinds with their measured cases and release floors, and the core
    ATen set's coverage.
    """
    import torch

    ops, overloads = tally(cases)
    registered = supported_kinds()
    regs = registrations()
    version = torch.__version__.split("+")[0]
    rows = []
    for reg in regs:
        entry = ops.get(reg.name, OpCases())
        kind = reg.kind
        tract = min_tract_version(kind, floors) if entry.tract else "refused" if kind in REFUSED else "no case"
        rows.append(f"| `{reg.name}` | {tract} | {'yes' if entry.khronos else 'no'} | {entry.cases} |")

    core = core_aten_overloads()
    tested: list[str] = []
    untested: list[str] = []
    inapplicable: list[str] = []
    missing: list[str] = []
    for name in core:
        kind = name.rsplit(".", 1)[0]
        op_name = kind if name.endswith(".default") else name  # as the registry names it
        why = not_applicable(name)
        if any(covers(r, op_name) for r in regs) and name in overloads:
            tested.append(name)
        elif why is not None:
            inapplicable.append(f"| `{name}` | not applicable ({why[0]}): {why[1]} |")
        elif kind in REFUSED:
            inapplicable.append(f"| `{name}` | refused with the user's line: {REFUSED[kind]} |")
        elif any(covers(r, op_name) for r in regs):
            untested.append(name)
        else:
            missing.append(f"| `{name}` | not covered |")
    applicable = len(core) - len(inapplicable)
    summary = (
        f"{len(tested)} of the {len(core)} core overloads are translated and tested "
        f"({_percent(len(tested), len(core))}; {_percent(len(tested), applicable)} of the {applicable} "
        f"that inference can meet); {len(untested)} more are registered without a recorded case of that "
        f"overload; {len(inapplicable)} are not applicable; {len(missing)} are not covered."
    )
    uncovered = [*(f"| `{n}` | registered, no recorded case of this overload |" for n in untested), *missing]
    return "\n".join(
        [
            "# Supported ATen operators",
            "",
            "Generated from the op registry and what a run of the whole test suite translated: `make coverage`",
            "runs the suite and regenerates this page, and `make test` fails when the page differs from what its",
            "own run measured (a case deleted or translating other operators, an operator registered or removed).",
            "",
            "Columns: the oldest tract release the translation runs on (`no case`: no TractNNEF case passed),",
            "whether a KhronosNNEF case containing the operator passed, and how many passing tests translated it.",
            "Release floors are measured by `tools/probe_tract_releases.py`, which runs the op-table cases in the",
            "tract releases from PyPI and writes `docs/tract_releases.json`"
            + (
                f" (releases {', '.join((floors or {}).get('releases', []))}; {(floors or {}).get('cases', 0)} cases)."
                if floors
                else "."
            ),
            "",
            f"{len(regs)} operators registered, of {len(registered)} kinds. Each row is an operator as torch names it,",
            "with its overload (`aten::add.Tensor`; no overload: the default one).",
            "",
            "| operator | TractNNEF (from) | KhronosNNEF | tested cases |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Registered kinds that are no operator of torch {version} (kept for other releases): "
            + (", ".join(f"`{k}`" for k in unknown_to_torch()) or "none")
            + ".",
            "",
            "Registered operators that no passing test translated: "
            + (", ".join(f"`{n}`" for n in untested_ops(cases)) or "none")
            + ".",
            "",
            f"## Core ATen operator set (torch {version})",
            "",
            "The op overloads tagged `torch.Tag.core`, which `torch.export` graphs are made of.",
            "",
            summary,
            "",
            "### Not covered",
            "",
            "| core overload | status |",
            "|---|---|",
            *uncovered,
            "",
            "### Not applicable to inference",
            "",
            "| core overload | reason |",
            "|---|---|",
            *inapplicable,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Writes the page to the given path (default: stdout) from the record ``--cases`` (what
    ``make coverage`` recorded; by default ``op_cases.json`` beside the page) and the release floors
    ``--floors`` (by default ``tract_releases.json`` beside the page, or ``docs/tract_releases.json``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    options: dict[str, Path] = {}
    for flag, example in (("--cases", "op_cases.json"), ("--floors", "docs/tract_releases.json")):
        if flag in args:
            at = args.index(flag)
            if at + 1 >= len(args):
                raise InvalidArgumentError(f"{flag} needs a path: {flag} {example}")
            options[flag] = Path(args[at + 1])
            del args[at : at + 2]
    out = Path(args[0]) if args else None
    folder = out.parent if out else Path("docs")
    cases_path = options.get("--cases", folder / "op_cases.json")
    floors_path = options.get("--floors", folder / "tract_releases.json")
    text = render(load_cases(cases_path), load_floors(floors_path))
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
