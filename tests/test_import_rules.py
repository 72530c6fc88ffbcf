"""The package's import rules (docs/architecture.md), checked by walking every module's AST."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "torch_to_nnef"
ROOT = "torch_to_nnef"


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    """The module imported (``torch_to_nnef.ir``), or the module a name is taken from."""
    names: tuple[str, ...]
    line: int
    in_function: bool
    type_checking: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[Import]:
    module = _module_name(path)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            fn = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            tc = type_checking or (
                isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING"
            )
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(module, alias.name, (), child.lineno, in_function, type_checking))
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative: resolved against this module's package
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - child.level + 1]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                names = tuple(a.name for a in child.names)
                found.append(Import(module, target, names, child.lineno, in_function, type_checking))
            visit(child, fn, tc)

    visit(tree, False, False)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))
ALL_IMPORTS = [i for path in MODULES for i in _imports(path)]
OWN = [i for i in ALL_IMPORTS if i.imported == ROOT or i.imported.startswith(ROOT + ".")]


def _targets(i: Import) -> list[str]:
    """The package modules an import reaches: ``from torch_to_nnef.op import core`` reaches
    ``torch_to_nnef.op.core`` (a submodule) or ``torch_to_nnef.op`` (a name of the package).
    """
    if not i.names:
        return [i.imported]
    out = []
    for name in i.names:
        sub = f"{i.imported}.{name}"
        as_module = PACKAGE.parent / Path(*sub.split("."))
        out.append(sub if as_module.with_suffix(".py").exists() or as_module.is_dir() else i.imported)
    return out


def _in(module: str, *prefixes: str) -> bool:
    return any(module == f"{ROOT}.{p}" or module.startswith(f"{ROOT}.{p}.") for p in prefixes)


# (who imports, what it may not import, why)
FORBIDDEN: list[tuple[tuple[str, ...], tuple[str, ...], str]] = [
    (("ir",), ("capture", "op", "nnef", "io", "check", "export", "llm", "peft"), "the IR is the bottom layer"),
    (
        ("nnef.builder",),
        ("capture", "op", "nnef.translate", "io", "check.tract", "check.targets", "export", "llm", "peft"),
        "the NNEF builder writes text; it knows no translation, capture or check",
    ),
    (("op",), ("capture", "nnef.translate", "export", "llm", "peft"), "translations never reach back up the pipeline"),
    (("capture",), ("nnef", "io.archive", "check", "export", "llm", "peft"), "capture knows nothing downstream"),
    (("io",), ("capture", "op", "nnef", "check", "export", "llm", "peft"), "writing bytes knows no model"),
    (("check",), ("capture", "op", "nnef", "export", "llm", "peft"), "the check runs archives, whoever made them"),
    (("nnef.translate",), ("capture", "export", "llm", "peft"), "the translation driver takes a captured graph"),
]

CLIS = ("llm.cli", "demo", "debug_bundle", "op.coverage")
"""Command-line modules: run, never imported (``llm/__init__`` re-exports ``main``, ``llm/__main__`` runs it)."""


def _describe(i: Import) -> str:
    return f"{i.importer} line {i.line} imports {i.imported}" + (f" ({', '.join(i.names)})" if i.names else "")


def test_the_package_has_the_pipeline_folders():
    for folder in ("capture", "ir", "op", "nnef", "io", "check", "llm"):
        assert (PACKAGE / folder / "__init__.py").is_file(), folder


@pytest.mark.parametrize("rule", FORBIDDEN, ids=lambda r: ",".join(r[0]))
def test_layers(rule):
    importers, forbidden, why = rule
    broken = [
        _describe(i)
        for i in OWN
        if _in(i.importer, *importers) and any(_in(t, *forbidden) for t in _targets(i)) and not i.type_checking
    ]
    assert not broken, f"{why}:\n" + "\n".join(broken)


def test_the_nnef_builder_imports_no_torch():
    builder = [i for i in ALL_IMPORTS if i.importer == f"{ROOT}.nnef.builder"]
    assert builder, "the builder module was found"
    assert not [_describe(i) for i in builder if i.imported.split(".")[0] == "torch"]


def test_nothing_imports_the_command_line_modules():
    allowed = {f"{ROOT}.llm", f"{ROOT}.llm.__main__"}
    broken = [
        _describe(i)
        for i in OWN
        if any(_in(t, *CLIS) for t in _targets(i)) and i.importer not in allowed and not _in(i.importer, *CLIS)
    ]
    assert not broken, "\n".join(broken)


def test_no_function_level_imports_of_the_package():
    """Imports inside functions hide cycles; the lazy public names of ``torch_to_nnef/__init__`` are
    the one exception (``import torch_to_nnef`` stays free of torch).
    """
    broken = [_describe(i) for i in OWN if i.in_function and i.importer != ROOT]
    assert not broken, "\n".join(broken)


def test_no_private_names_cross_modules():
    broken = [
        _describe(i)
        for i in OWN
        if any(n.startswith("_") and not n.startswith("__") and n != "_rust" for n in i.names) and not i.type_checking
    ]
    assert not broken, "what modules share is public (no leading underscore):\n" + "\n".join(broken)


def test_the_module_walk_sees_the_whole_package():
    names = {_module_name(p) for p in MODULES}
    assert {f"{ROOT}.export", f"{ROOT}.op.registry", f"{ROOT}.capture.torch_export", f"{ROOT}.nnef.builder"} <= names
    assert len(OWN) > 100
