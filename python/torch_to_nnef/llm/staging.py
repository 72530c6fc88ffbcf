"""The export folder: its layouts, and its writing into a temporary folder renamed into place once complete.

A failed export leaves nothing behind: every file is written into a hidden sibling folder of the
export folder (:func:`staging_dir`), which :func:`move_into_place` renames to the export folder
once the export is complete and checked.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch_to_nnef.errors import MissingFolderError, OutputExistsError

__all__ = [
    "ARCHIVE_NAME",
    "CONFIG_NAME",
    "EXPORT_DIR_STRUCTS",
    "IO_SPEC_NAME",
    "MODEL_DIRNAME",
    "TESTS_DIRNAME",
    "TOKENIZER_DIRNAME",
    "ExportDirStruct",
    "Layout",
    "check_export_dir",
    "move_into_place",
    "staging_dir",
]

LOGGER = logging.getLogger(__name__)

MODEL_DIRNAME = "model"
ARCHIVE_NAME = "model.nnef.tgz"
IO_SPEC_NAME = "io_spec.json"
TESTS_DIRNAME = "tests"
TOKENIZER_DIRNAME = "tokenizer"
CONFIG_NAME = "config.json"

ExportDirStruct = Literal["deep", "flat"]
EXPORT_DIR_STRUCTS: tuple[ExportDirStruct, ...] = ("deep", "flat")
"""Layouts of the export folder: ``deep`` puts the graph in ``model/``, the tokenizer in
``tokenizer/`` and the test bundles in ``tests/``; ``flat`` puts every file in the folder itself
(as a Hugging Face repository does)."""


@dataclass(frozen=True)
class Layout:
    """Where each file of an export goes, relative to the export folder."""

    struct: ExportDirStruct

    def _at(self, folder: str) -> Path:
        return Path(folder) if self.struct == "deep" else Path()

    @property
    def model(self) -> Path:
        """The folder of the archive, ``io_spec.json`` and (``deep``) ``config.json``."""
        return self._at(MODEL_DIRNAME)

    @property
    def tokenizer(self) -> Path:
        """The folder of the tokenizer files."""
        return self._at(TOKENIZER_DIRNAME)

    @property
    def tests(self) -> Path:
        """The folder of the test bundles."""
        return self._at(TESTS_DIRNAME)

    def make_folders(self, root: Path) -> None:
        """Makes the folders of the archive and of the test bundles in the export folder ``root``."""
        for folder in (self.model, self.tests):
            (root / folder).mkdir(parents=True, exist_ok=True)


def check_export_dir(export_dir: Path, ignore_already_exist_dir: bool) -> None:
    """Refuses an ``export_dir`` that cannot be written, before anything is loaded.

    Raises:
        OutputExistsError: ``export_dir`` is a file, or a non-empty folder without
            ``ignore_already_exist_dir``.
        MissingFolderError: the parent folder of ``export_dir`` does not exist.
    """
    if export_dir.exists() and not export_dir.is_dir():
        raise OutputExistsError(f"{export_dir} exists and is not a folder")
    if export_dir.is_dir() and any(export_dir.iterdir()):
        if not ignore_already_exist_dir:
            raise OutputExistsError(
                f"{export_dir} exists and is not empty: pick another folder or pass --ignore-already-exist-dir"
            )
        LOGGER.warning("%s is not empty: its export files are replaced", export_dir)
    if not export_dir.parent.is_dir():
        raise MissingFolderError(f"cannot write {export_dir}: its folder {export_dir.parent} does not exist")


def staging_dir(export_dir: Path) -> Path:
    """Makes the temporary sibling folder the export is written into.

    :func:`move_into_place` renames it to ``export_dir`` once the export is complete.
    """
    staging = export_dir.parent / f".{export_dir.name}.partial-{secrets.token_hex(6)}"
    staging.mkdir()
    return staging


def move_into_place(staging: Path, export_dir: Path) -> None:
    """Renames the complete ``staging`` folder to ``export_dir``.

    Into an existing non-empty ``export_dir`` (``ignore_already_exist_dir``), each exported file
    replaces its namesake and the other files stay.
    """
    if export_dir.is_dir() and not any(export_dir.iterdir()):
        export_dir.rmdir()
    if not export_dir.exists():
        os.rename(staging, export_dir)
        return
    _merge_folder(staging, export_dir)
    shutil.rmtree(staging)


def _merge_folder(source: Path, destination: Path) -> None:
    """Moves every file of ``source`` into ``destination``, replacing its namesakes."""
    for entry in sorted(source.iterdir()):
        target = destination / entry.name
        if entry.is_dir() and target.is_dir():
            _merge_folder(entry, target)
            continue
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
