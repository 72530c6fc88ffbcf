"""Generates ``docs/supported_ops.md`` from the op registry.

python -m torch_to_nnef.op.coverage docs/supported_ops.md
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch_to_nnef.op import lookup, supported_kinds


def render() -> str:
    """The markdown table of every registered ATen kind."""
    rows = []
    for kind in supported_kinds():
        fn = lookup(kind)
        assert fn is not None
        schema = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        escaped = schema.replace("|", "\\|")
        rows.append(f"| `{kind}` | `{fn.__name__}` | {escaped} |")
    return "\n".join(
        [
            "# Supported ATen operators",
            "",
            "Generated from the op registry by `python -m torch_to_nnef.op.coverage docs/supported_ops.md`;",
            "a test fails when this file is stale.",
            "",
            f"{len(rows)} kinds.",
            "",
            "| ATen kind | translation | schema / notes |",
            "|---|---|---|",
            *rows,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Writes the table to the given path (default: stdout)."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if args:
        Path(args[0]).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
