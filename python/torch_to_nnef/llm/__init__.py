"""HuggingFace causal language models exported for tract, with their key-value cache as graph I/O.

Command line: ``export_llm_to_tract`` or ``python -m torch_to_nnef.llm`` (``--help`` lists every option).
From Python: :func:`export_llm_to_tract`. The graph's inputs and outputs are described in
:mod:`torch_to_nnef.llm.wrapper`, the shapes of its caches in :mod:`torch_to_nnef.llm.cache_layout`.
"""

from torch_to_nnef.llm.cache_layout import CacheLayout, CacheTensor
from torch_to_nnef.llm.cli import main
from torch_to_nnef.llm.errors import LLMExportError
from torch_to_nnef.llm.export import LLMExportResult, export_llm_to_tract
from torch_to_nnef.llm.wrapper import CausalLMGraph, io_names, wrap_causal_lm

__all__ = [
    "CacheLayout",
    "CacheTensor",
    "CausalLMGraph",
    "LLMExportError",
    "LLMExportResult",
    "export_llm_to_tract",
    "io_names",
    "main",
    "wrap_causal_lm",
]
