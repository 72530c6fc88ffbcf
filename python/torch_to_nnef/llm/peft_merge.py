"""Merging a PEFT adapter (LoRA, ...) into the weights of the model it was trained on."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from torch import nn

from torch_to_nnef.llm.errors import LLMExportError

__all__ = ["import_peft", "merge_peft_adapter"]

LOGGER = logging.getLogger(__name__)


def import_peft() -> Any:
    """The ``peft`` module, imported on first use.

    Raises:
        LLMExportError: peft is not installed.
    """
    try:
        import peft
    except ImportError as exc:
        raise LLMExportError("-mp/--merge-peft needs peft: pip install peft") from exc
    return peft


def merge_peft_adapter(model: nn.Module, adapter_dir: str | os.PathLike[str]) -> nn.Module:
    """``model`` with the PEFT adapter saved in ``adapter_dir`` merged into its weights.

    The adapter is merged with ``merge_and_unload``: the export has the base model's graph and
    the adapted weights.

    Raises:
        LLMExportError: ``adapter_dir`` holds no adapter, or one that does not match ``model``.
    """
    peft = import_peft()
    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise LLMExportError(
            f"{adapter_dir} is not a PEFT adapter folder (no adapter_config.json): give the folder written by "
            "the PeftModel's save_pretrained"
        )
    arch = type(model).__name__
    started = time.monotonic()
    try:
        adapted = peft.PeftModel.from_pretrained(model, os.fspath(folder), is_trainable=False)
        merged = adapted.merge_and_unload()
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        raise LLMExportError(
            f"the PEFT adapter in {adapter_dir} does not match the model ({arch}): "
            f"{' '.join(str(exc).split())[:400]}; give the adapter trained on this base model"
        ) from exc
    if not isinstance(merged, nn.Module) or isinstance(merged, peft.PeftModel):
        raise LLMExportError(f"merging the PEFT adapter in {adapter_dir} did not give back a plain {arch}")
    LOGGER.info("merged the PEFT adapter of %s into %s in %.1f s", adapter_dir, arch, time.monotonic() - started)
    return merged
