"""The error raised when a language model or an export option cannot be worked with."""

from __future__ import annotations

from torch_to_nnef.errors import T2NError

__all__ = ["LLMExportError"]


class LLMExportError(T2NError, ValueError):
    """A model or an option that :func:`~torch_to_nnef.llm.export.export_llm_to_tract` cannot work with.

    The message says why.
    """
