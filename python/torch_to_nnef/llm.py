"""HuggingFace causal language models exported to NNEF for tract, with their key-value cache as graph I/O.

Command line: ``export_llm_to_tract -d SAVED_MODEL_DIR -e EXPORT_DIR`` (or ``python -m
torch_to_nnef.llm``); from Python: :func:`export_llm_to_tract`. Needs ``pip install
'torch_to_nnef[llm_tract]'`` (transformers), and peft to merge an adapter (``-mp``).

The exported graph (``<export_dir>/model/model.nnef.tgz``, or ``<export_dir>/model.nnef.tgz``
with the ``flat`` layout) has this contract, for a model of ``L``
layers with ``H`` key-value heads of size ``D``:

- inputs: ``input_ids`` (i64 ``[1, S]``), then per layer ``in_cache_key_{i}`` and
  ``in_cache_value_{i}`` (``[1, H, P, D]``), layer after layer;
- outputs: ``logits`` (``[1, K, vocab]``, ``K`` = ``S`` when every position's logits are kept,
  else the number kept), then per layer ``out_cache_key_{i}`` and ``out_cache_value_{i}``
  (``[1, H, P + S, D]``) in the same order.

``S`` (new tokens) and ``P`` (tokens already in the cache) are tract symbols; the position of the
first new token is ``P``. A prompt is run with ``P = 0`` (empty caches), each following step with
the caches the previous one returned.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import logging
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from torch_to_nnef import layer_stack
from torch_to_nnef.archive import write_nnef_archive
from torch_to_nnef.capture import CaptureError, capture
from torch_to_nnef.compress import DEFAULT_COMPRESSION_REGISTRY, compress_model, load_compression_registry
from torch_to_nnef.errors import (
    InvalidArgumentError,
    IOMismatchError,
    MissingFolderError,
    OutputExistsError,
    T2NError,
    TractError,
)
from torch_to_nnef.export import UnsupportedOpsError, export_metadata, translate
from torch_to_nnef.inference_target import TractNNEF
from torch_to_nnef.ir import Graph
from torch_to_nnef.nnef_graph import NAMING_SCHEMES
from torch_to_nnef.op import custom_extractors as extractors
from torch_to_nnef.qtensor import Q4_0_GGML_TRACT, QTensor
from torch_to_nnef.tensors import writable
from torch_to_nnef.tract import Tolerance, TractModel, check_outputs

__all__ = [
    "CausalLMGraph",
    "LLMExportError",
    "LLMExportResult",
    "export_llm_to_tract",
    "io_names",
    "main",
    "wrap_causal_lm",
]

LOGGER = logging.getLogger(__name__)

DType = Literal["f32", "f16", "bf16"]
_TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16}
_TOLERANCES: tuple[Tolerance, ...] = ("exact", "close", "approximate", "very", "super", "ultra")
DEFAULT_TOLERANCE: dict[str, Tolerance] = {"f32": "approximate", "f16": "super"}
"""Check tolerance per exported float type when ``-tt`` is not given."""

TRACE_NEW_TOKENS = 3
TRACE_PAST_TOKENS = 2
"""Sizes the graph is traced at: torch.export cannot trace ``P = 0`` as a dynamic size, so the
prompt step (``P = 0``) is verified separately, by running the export."""

_DEFAULT_TRACT_VERSION: str = TractNNEF().version

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

PROGRESS_INTERVAL_S = 5.0
"""Least time between two progress lines of one step (loading, tracing, packing, writing)."""


class LLMExportError(T2NError, ValueError):
    """A model or an option that :func:`export_llm_to_tract` cannot work with (the message says why)."""


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise LLMExportError(
            "exporting a language model needs transformers: pip install 'torch_to_nnef[llm_tract]'"
        ) from exc
    return transformers


def io_names(num_layers: int) -> tuple[list[str], list[str]]:
    """The graph's input and output names for a model of ``num_layers`` layers."""
    caches = [f"{kind}_{i}" for i in range(num_layers) for kind in ("key", "value")]
    return ["input_ids", *(f"in_cache_{c}" for c in caches)], ["logits", *(f"out_cache_{c}" for c in caches)]


class CausalLMGraph(nn.Module):
    """A HuggingFace causal LM as ``(input_ids, *caches) -> (logits, *new_caches)``.

    The transformers cache object is rebuilt from the flat tensors at each call
    (``DynamicCache(ddp_cache_data=...)``), and positions start at the cache length. Build it
    with :func:`wrap_causal_lm`, which gives ``forward`` one named parameter per cache tensor
    (torch.export needs them to give each its own dynamic axis).

    Args:
        model: a ``transformers`` causal LM (``AutoModelForCausalLM``).
        num_layers: layers whose key and value caches are graph inputs and outputs.
        num_logits_to_keep: logits of the last positions kept (0 keeps every position's).
        cache_dtype: float type of the caches given and returned, cast from and to the model's
            (None: the model's).
    """

    def __init__(
        self, model: nn.Module, num_layers: int, num_logits_to_keep: int = 1, cache_dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        if num_logits_to_keep < 0:
            raise InvalidArgumentError(f"num_logits_to_keep must be >= 0, got {num_logits_to_keep}")
        self.model = model
        self.num_layers = num_layers
        self.num_logits_to_keep = num_logits_to_keep
        self.cache_dtype = cache_dtype
        """Float type of the caches in the graph's inputs and outputs (None: the model's)."""
        self._model_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        parameters = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in parameters else "past_key_values"

    def forward(self, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Runs ``input_ids`` after the ``P`` tokens held by ``caches``."""
        if len(caches) != 2 * self.num_layers:
            raise InvalidArgumentError(f"{2 * self.num_layers} cache tensors expected, got {len(caches)}")
        if self.cache_dtype is not None:
            caches = tuple(c.to(self._model_dtype) for c in caches)
        cache_cls = _transformers().DynamicCache
        cache = cache_cls(ddp_cache_data=[(caches[2 * i], caches[2 * i + 1]) for i in range(self.num_layers)])
        past = caches[0].shape[2]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0) + past
        out = self.model(
            input_ids=input_ids,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=self.num_logits_to_keep,
            **{self._cache_kwarg: cache},
        )
        new_caches = _flat_cache(_output_cache(out), self.num_layers)
        if self.cache_dtype is not None:
            new_caches = [c.to(self.cache_dtype) for c in new_caches]
        return (out.logits, *new_caches)


def _output_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    if cache is None:
        cache = getattr(out, "past_key_values", None)
    if cache is None:
        raise LLMExportError("the model returned no cache: it does not support use_cache=True")
    return cache


def _flat_cache(cache: Any, num_layers: int) -> list[torch.Tensor]:
    layers = getattr(cache, "layers", None)
    if layers is None or len(layers) != num_layers:
        found = "no layers" if layers is None else f"{len(layers)} layers"
        raise LLMExportError(f"the model's cache has {found}, {num_layers} expected")
    flat: list[torch.Tensor] = []
    for i, layer in enumerate(layers):
        keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
        if not (isinstance(keys, torch.Tensor) and isinstance(values, torch.Tensor)):
            raise LLMExportError(
                f"cache layer {i} ({type(layer).__name__}) holds no key and value tensors: only attention "
                "layers with a key-value cache can be exported"
            )
        flat.extend((keys, values))
    return flat


def wrap_causal_lm(
    model: nn.Module, num_logits_to_keep: int = 1, cache_dtype: torch.dtype | None = None
) -> tuple[CausalLMGraph, tuple[int, int, int]]:
    """Wraps ``model`` into a :class:`CausalLMGraph`.

    The model is run once on two tokens to learn its cache layout.

    Returns:
        The wrapper, and ``(num_layers, key-value heads, head size)``.
    """
    model.eval()
    first = next(iter(model.parameters()))
    with torch.no_grad():
        out = model(input_ids=torch.zeros(1, 2, dtype=torch.int64, device=first.device), use_cache=True)
    cache = _output_cache(out)
    layers = getattr(cache, "layers", None)
    if not layers:
        raise LLMExportError(f"the cache of {type(model).__name__} ({type(cache).__name__}) has no layers")
    flat = _flat_cache(cache, len(layers))
    shapes = {tuple(t.shape[:2]) + tuple(t.shape[3:]) for t in flat}
    if len(shapes) != 1 or len(flat[0].shape) != 4:
        raise LLMExportError(
            f"the caches of {type(model).__name__} are not all [1, heads, length, head size] of one size: "
            f"{sorted({tuple(t.shape) for t in flat})}"
        )
    num_layers = len(layers)
    _, heads, _, head_dim = flat[0].shape
    return _graph_module(model, num_layers, num_logits_to_keep, cache_dtype), (num_layers, int(heads), int(head_dim))


def _graph_module(
    model: nn.Module, num_layers: int, num_logits_to_keep: int, cache_dtype: torch.dtype | None = None
) -> CausalLMGraph:
    """A :class:`CausalLMGraph` whose ``forward`` has one named parameter per input."""
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in io_names(num_layers)[0]]
    signature = inspect.Signature([inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])

    def forward(self: CausalLMGraph, input_ids: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return CausalLMGraph.forward(self, input_ids, *caches)

    forward.__signature__ = signature  # type: ignore[attr-defined]
    forward.__doc__ = CausalLMGraph.forward.__doc__
    cls = type(CausalLMGraph.__name__, (CausalLMGraph,), {"forward": forward, "__module__": __name__})
    wrapper: CausalLMGraph = cls(model, num_layers, num_logits_to_keep, cache_dtype).eval()
    return wrapper


# ----------------------------------------------------------------------------------------------
# loading


def _length_bounds(config: Any) -> list[str]:
    """Assertions for tract on the symbols: ``S >= 1``, ``P >= 0`` and, when the config gives the
    model's context, ``S + P <= max positions``.
    """
    bounds = ["tract_assert S>=1", "tract_assert P>=0"]
    text = getattr(config, "get_text_config", lambda: config)()
    limit = getattr(text, "max_position_embeddings", None) or getattr(text, "n_positions", None)
    if isinstance(limit, int) and limit > 0:
        bounds.append(f"tract_assert S+P<={limit}")
    return bounds


def _size(nbytes: float) -> str:
    """``nbytes`` for a log line: ``"1.2 GB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


class _Progress:
    """Logs ``"<verb> i/n <what> (size)"`` as steps are done: at most one line every
    :data:`PROGRESS_INTERVAL_S` seconds, and always the last.
    """

    def __init__(self, verb: str, total: int, what: str) -> None:
        self.verb, self.total, self.what = verb, total, what
        self.done = 0
        self.nbytes = 0
        self.started = time.monotonic()
        self._last = self.started

    def step(self, nbytes: int) -> None:
        """Counts one more step of ``nbytes`` bytes."""
        self.done += 1
        self.nbytes += nbytes
        now = time.monotonic()
        if self.done == self.total or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            LOGGER.info(
                "%s %d/%d %s (%s) in %.1f s",
                self.verb,
                self.done,
                self.total,
                self.what,
                _size(self.nbytes),
                now - self.started,
            )


def _architecture(config: Any) -> str:
    """The model's class name as its config records it, with its ``model_type``."""
    architectures = getattr(config, "architectures", None) or [type(config).__name__]
    return f"{architectures[0]} (model_type {getattr(config, 'model_type', '?')!r})"


def _check_causal_lm(transformers: Any, config: Any, trust_remote_code: bool) -> None:
    """Refuses a config that ``AutoModelForCausalLM`` has no class for, before any weight is read."""
    modeling_auto = getattr(getattr(transformers, "models", None), "auto", None)
    names = getattr(getattr(modeling_auto, "modeling_auto", None), "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES", None)
    remote = trust_remote_code and "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if names is None or remote or getattr(config, "model_type", None) in names:
        return
    raise LLMExportError(
        f"unsupported architecture {_architecture(config)}: transformers has no causal language model class "
        "for it (AutoModelForCausalLM); export_llm_to_tract exports decoder language models with a key-value "
        "cache, such as Llama, Qwen, Mistral, Phi-3, Gemma and GPT-2"
    )


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
"""Files of which a saved model folder has at least one when it has a tokenizer (transformers
otherwise makes up an empty one for some architectures)."""


def _load_model(
    model_slug: str | None,
    local_dir: str | os.PathLike[str] | None,
    *,
    trust_remote_code: bool,
    attn_implementation: str,
    dtype: torch.dtype = torch.float32,
    with_tokenizer: bool = True,
    merge_peft: str | os.PathLike[str] | None = None,
) -> tuple[nn.Module, Any, Any]:
    """The model (its weights cast to ``dtype`` as they load: one copy in memory; with
    ``merge_peft``, that adapter merged in), its config, and its tokenizer (None when not asked for
    or when the source has none).
    """
    transformers = _transformers()
    if (model_slug is None) == (local_dir is None):
        raise LLMExportError("pass the model with one of -s/--model-slug or -d/--local-dir")
    common = {"trust_remote_code": trust_remote_code}
    if local_dir is not None:
        folder = Path(local_dir)
        if not (folder / "config.json").is_file():
            raise LLMExportError(
                f"{local_dir} is not a saved model folder (no config.json): give a folder written by save_pretrained"
            )
        source: str = os.fspath(folder)
        common["local_files_only"] = True
    else:
        assert model_slug is not None
        source = model_slug
    if merge_peft is not None:
        _peft()  # before any weight is read
    started = time.monotonic()
    LOGGER.info("loading %s", source)
    try:
        config = transformers.AutoConfig.from_pretrained(source, **common)
    except OSError as exc:
        if local_dir is not None:
            raise LLMExportError(f"cannot read the model config of {local_dir}: {exc}") from exc
        raise LLMExportError(
            f"cannot get {model_slug!r} from the Hugging Face Hub (offline, unknown or private model?): "
            f"{' '.join(str(exc).split())[:300]}; save the model with save_pretrained and pass its folder with "
            "-d/--local-dir"
        ) from exc
    except ValueError as exc:  # unknown architecture, or code that trust_remote_code would run
        raise LLMExportError(f"cannot load the config of {source}: {' '.join(str(exc).split())[:400]}") from exc
    _check_causal_lm(transformers, config, trust_remote_code)
    try:
        chosen = {} if attn_implementation == "auto" else {"attn_implementation": attn_implementation}
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, config=config, dtype=dtype, **chosen, **common
        )
    except (OSError, ValueError) as exc:
        raise LLMExportError(
            f"cannot load {source} ({_architecture(config)}) as a causal language model: "
            f"{' '.join(str(exc).split())[:400]}"
        ) from exc
    parameters = list(model.parameters())
    LOGGER.info(
        "loaded %s: %d weights, %.1fM parameters (%s) in %.1f s",
        type(model).__name__,
        len(parameters),
        sum(p.numel() for p in parameters) / 1e6,
        _size(sum(p.numel() * p.element_size() for p in parameters)),
        time.monotonic() - started,
    )
    if merge_peft is not None:
        model = _merge_peft(model, merge_peft)
    tokenizer = None
    if with_tokenizer and local_dir is not None and not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        LOGGER.info("no tokenizer exported: %s has no tokenizer files (%s)", source, ", ".join(_TOKENIZER_FILES))
    elif with_tokenizer:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source, **common)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            LOGGER.info("no tokenizer exported: %s has none that loads (%s)", source, type(exc).__name__)
    return model, config, tokenizer


def _peft() -> Any:
    try:
        import peft
    except ImportError as exc:
        raise LLMExportError("-mp/--merge-peft needs peft: pip install peft") from exc
    return peft


def _merge_peft(model: nn.Module, adapter_dir: str | os.PathLike[str]) -> nn.Module:
    """``model`` with the PEFT adapter saved in ``adapter_dir`` merged into its weights
    (``merge_and_unload``): the export has the base model's graph and the adapted weights.
    """
    peft = _peft()
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


# ----------------------------------------------------------------------------------------------
# export


@dataclass(frozen=True)
class LLMExportResult:
    """What :func:`export_llm_to_tract` wrote and checked."""

    export_dir: Path
    archive: Path
    num_layers: int
    kv_heads: int
    head_dim: int
    dtype: str
    compression: str | None
    tolerance: Tolerance | None
    """The tolerance the export was verified at (None: not verified)."""
    generated_tokens: list[int]
    """The tokens of the greedy generation the verification ran (empty: not verified)."""


def _pick_dtype(dtype: DType) -> str:
    if dtype == "bf16":
        LOGGER.warning("bf16 is exported as f16: tract runs no bf16 graphs; the check compares with PyTorch in f16")
        return "f16"
    if dtype not in _TORCH_DTYPES:
        raise InvalidArgumentError(f"dtype must be one of f32, f16, bf16, got {dtype!r}")
    return dtype


def _check_export_dir(export_dir: Path, ignore_already_exist_dir: bool) -> None:
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


def _staging_dir(export_dir: Path) -> Path:
    """Makes the temporary sibling folder the export is written into (renamed into place by
    :func:`_move_into_place` once complete).
    """
    staging = export_dir.parent / f".{export_dir.name}.partial-{secrets.token_hex(6)}"
    staging.mkdir()
    return staging


def _move_into_place(staging: Path, export_dir: Path) -> None:
    """Renames the complete ``staging`` folder to ``export_dir``; into an existing non-empty
    ``export_dir`` (``ignore_already_exist_dir``), each exported file replaces its namesake and the
    other files stay.
    """
    if export_dir.is_dir() and not any(export_dir.iterdir()):
        export_dir.rmdir()
    if not export_dir.exists():
        os.rename(staging, export_dir)
        return
    _merge_folder(staging, export_dir)
    shutil.rmtree(staging)


def _merge_folder(source: Path, destination: Path) -> None:
    for entry in sorted(source.iterdir()):
        target = destination / entry.name
        if entry.is_dir() and target.is_dir():
            _merge_folder(entry, target)
            continue
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)


@dataclass(frozen=True)
class _Layout:
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


def _caches(num_layers: int, heads: int, past: int, head_dim: int, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(1, heads, past, head_dim, generator=generator).to(dtype) for _ in range(2 * num_layers)]


def _token_ids(vocab: int, length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (1, length), generator=generator, dtype=torch.int64)


def _run_torch(wrapper: CausalLMGraph, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    wrapper.eval()
    with torch.no_grad():
        return list(wrapper(*inputs))


def _npz(path: Path, names: Sequence[str], tensors: Sequence[torch.Tensor]) -> None:
    arrays: dict[str, Any] = {n: t.detach().cpu().numpy() for n, t in zip(names, tensors)}
    np.savez(path, **arrays)


def _write_graph(
    wrapper: CausalLMGraph,
    trace_inputs: Sequence[torch.Tensor],
    archive: Path,
    target: TractNNEF,
    input_names: list[str],
    output_names: list[str],
    naming_scheme: str,
    extensions: list[str],
    repeat_layers: bool = True,
) -> None:
    """Traces ``wrapper``, translates it to NNEF and writes the archive, logging the progress of
    each step (tracing, packing the tensors, writing the archive).

    With ``repeat_layers``, a model whose decoder layers are all alike is traced with two of them,
    the second repeated for the others (see :mod:`torch_to_nnef.layer_stack`).
    """
    started = time.monotonic()
    sizes = f"S = {trace_inputs[0].shape[1]}, P = {trace_inputs[1].shape[2]}"
    with torch.no_grad(), extractors.opaque(wrapper) as opaque:
        graph = _capture_stacked(wrapper, trace_inputs, target, sizes, opaque) if repeat_layers else None
        if graph is None:
            LOGGER.info("tracing %s with torch.export (%s)", type(wrapper.model).__name__, sizes)
            graph, _ = capture(wrapper, list(trace_inputs), input_names, target.dynamic_axes)
        LOGGER.info("traced %d operations in %.1f s", len(graph.nodes), time.monotonic() - started)
        doc, tensors, quant = translate(
            graph,
            target,
            input_names,
            output_names,
            export_metadata(wrapper, target),
            naming_scheme=naming_scheme,
            custom_extensions=extensions,
            opaque=opaque,
        )
    del graph
    progress = _Progress("packed", len(tensors), "tensors")
    packed: dict[str, Any] = {}
    for label in list(tensors):
        packed[label] = writable(tensors.pop(label), label, "error")
        progress.step(int(packed[label].nbytes))
    LOGGER.info("writing %s (%s of tensors)", archive.name, _size(progress.nbytes))
    started = time.monotonic()
    stop = threading.Event()
    watcher = threading.Thread(target=_report_writing, args=(archive, progress.nbytes, stop), daemon=True)
    watcher.start()
    try:
        write_nnef_archive(
            archive,
            doc,
            packed,
            graph_quant=quant,
            compression_level=0,
            q4_0_legacy=target.version_tuple < Q4_0_GGML_TRACT,
        )
    finally:
        stop.set()
        watcher.join()
    LOGGER.info("wrote %s (%s) in %.1f s", archive.name, _size(archive.stat().st_size), time.monotonic() - started)


def _capture_stacked(
    wrapper: CausalLMGraph,
    trace_inputs: Sequence[torch.Tensor],
    target: TractNNEF,
    sizes: str,
    opaque: Mapping[str, Any],
) -> Graph | None:
    """The graph of ``wrapper`` traced with two decoder layers and the second repeated, or None
    when the layers are not all alike.
    """
    num_layers = wrapper.num_layers
    stack = layer_stack.find_stack(wrapper, num_layers)
    if stack is None:
        return None
    LOGGER.info(
        "tracing %s with torch.export (%s) with 2 of its %d alike layers (%s)",
        type(wrapper.model).__name__,
        sizes,
        num_layers,
        stack,
    )
    short_inputs, _ = io_names(2)
    dynamic_axes = {n: a for n, a in (target.dynamic_axes or {}).items() if n in short_inputs}
    with layer_stack.truncated(wrapper, stack):
        short = _graph_module(wrapper.model, 2, wrapper.num_logits_to_keep, wrapper.cache_dtype)
        graph, _ = capture(short, list(trace_inputs[: len(short_inputs)]), short_inputs, dynamic_axes)
    tensors = dict(wrapper.named_buffers(remove_duplicate=False))
    tensors.update(wrapper.state_dict(keep_vars=True))
    try:
        return layer_stack.repeat_layers(
            graph,
            stack,
            num_layers,
            tensors.__getitem__,
            {f"in_cache_{kind}_1": _cache_name(kind) for kind in ("key", "value")},
            opaque_kinds=opaque,
        )
    except layer_stack.StackMismatch as exc:
        LOGGER.info("the layers of %s differ (%s): tracing all of them", type(wrapper.model).__name__, exc)
        return None


def _cache_name(kind: str) -> Callable[[int], str]:
    """The name of layer ``j``'s input cache of ``kind`` (``key`` or ``value``)."""
    return lambda j: f"in_cache_{kind}_{j}"


def _report_writing(archive: Path, total: int, stop: threading.Event) -> None:
    """Logs the size of the archive being written (its temporary file) until ``stop`` is set."""
    started = time.monotonic()
    while not stop.wait(max(PROGRESS_INTERVAL_S, 0.01)):
        written = 0
        for partial in archive.parent.glob(f".{archive.name}.*partial"):
            try:
                written += partial.stat().st_size
            except OSError:  # renamed into place meanwhile
                pass
        LOGGER.info(
            "writing %s: %s of about %s in %.1f s",
            archive.name,
            _size(written),
            _size(total),
            time.monotonic() - started,
        )


@dataclass
class _Step:
    """One comparison of the verification: PyTorch's outputs for the graph's inputs, given whole
    (``inputs``), or as new tokens run on the caches tract returned at the step before (``ids``).
    """

    label: str
    expected: list[torch.Tensor]
    inputs: Sequence[torch.Tensor] = ()
    ids: torch.Tensor | None = None


def _torch_generation(
    wrapper: CausalLMGraph, prompt: torch.Tensor, empty: list[torch.Tensor], new_tokens: int
) -> tuple[list[_Step], list[int]]:
    """PyTorch's prompt step (``P = 0``) and greedy generation of ``new_tokens`` tokens, each step
    run on the caches of the one before.

    Returns:
        The steps (for the test bundles, and for the verification, which runs them on tract's own
        caches), and the generated tokens: PyTorch's greedy choices drive both runs, so that a near
        tie between two logits cannot send them down different paths.
    """
    steps: list[_Step] = []
    ids, caches = prompt, list(empty)
    generated: list[int] = []
    for step in range(new_tokens + 1):
        expected = _run_torch(wrapper, [ids, *caches])
        if step == 0:
            steps.append(_Step("prompt", expected, inputs=[prompt, *empty]))
        else:
            steps.append(_Step(f"generation step {step}", expected, ids=ids))
        token = int(expected[0][0, -1].float().argmax())
        generated.append(token)
        ids = torch.tensor([[token]], dtype=torch.int64)
        caches = expected[1:]
    return steps, generated


def _write_bundles(
    tests: Path, steps: Sequence[_Step], generated: list[int], input_names: list[str], output_names: list[str]
) -> None:
    """The test bundles: the prompt step's and the first generation step's inputs and outputs, and
    the whole greedy generation (``generation.npz``: the prompt, the generated tokens, and each
    step's last logits).
    """
    prompt, first = steps[0], steps[1]
    _npz(tests / "prompt_inputs.npz", input_names, prompt.inputs)
    _npz(tests / "prompt_outputs.npz", output_names, prompt.expected)
    assert first.ids is not None
    _npz(tests / "prompt_with_past_inputs.npz", input_names, [first.ids, *prompt.expected[1:]])
    _npz(tests / "prompt_with_past_outputs.npz", output_names, first.expected)
    np.savez(
        tests / "generation.npz",
        prompt_ids=prompt.inputs[0].numpy(),
        generated_ids=np.array([generated], dtype=np.int64),
        logits=torch.cat([s.expected[0][:, -1].float() for s in steps]).numpy(),
    )


def _verify(
    archive: Path,
    model_name: str,
    steps: Sequence[_Step],
    input_names: list[str],
    output_names: list[str],
    tolerance: Tolerance,
) -> None:
    """Loads the archive in tract once and runs ``steps``, comparing with PyTorch's outputs; a
    generation step runs its token on the caches tract returned at the step before.
    """
    started = time.monotonic()
    LOGGER.info("loading the export in tract")
    try:
        tract = TractModel(archive)
    except TractError as exc:
        raise TractError(f"tract cannot load the export of {model_name}: {exc}") from exc
    LOGGER.info("loaded the export in tract in %.1f s", time.monotonic() - started)
    if tract.input_names != input_names or tract.output_names != output_names:
        raise IOMismatchError(
            f"the exported graph's inputs {tract.input_names} and outputs {tract.output_names} differ from "
            f"{input_names} -> {output_names}"
        )
    tract_caches: list[Any] = []
    for step in steps:
        inputs: list[Any] = list(step.inputs) if step.ids is None else [step.ids, *tract_caches]
        arrays = [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t for t in inputs]
        try:
            got = tract.run(arrays)
        except TractError as exc:
            raise TractError(f"tract cannot run the export of {model_name} ({step.label}): {exc}") from exc
        try:
            check_outputs(step.expected, got, tolerance=tolerance, names=[f"{n} ({step.label})" for n in output_names])
        except IOMismatchError as exc:
            raise IOMismatchError(f"tract and PyTorch differ at the {step.label}: {exc}") from exc
        tract_caches = got[1:]


def export_llm_to_tract(
    export_dirpath: str | os.PathLike[str],
    *,
    model_slug: str | None = None,
    local_dir: str | os.PathLike[str] | None = None,
    dtype: DType = "f32",
    inputs_dtype: DType | None = None,
    compression_method: str | None = None,
    compression_registry: str = DEFAULT_COMPRESSION_REGISTRY,
    tract_version: str | None = None,
    tolerance: Tolerance | None = None,
    naming_scheme: str = "natural_verbose_camel",
    force_f32_attention: bool = False,
    force_f32_linear_accumulator: bool = False,
    force_f32_normalization: bool = False,
    reify_sdpa_operator: bool = False,
    attn_implementation: str = "auto",
    num_logits_to_keep: int = 1,
    trust_remote_code: bool = False,
    ignore_already_exist_dir: bool = False,
    dump_with_tokenizer_and_conf: bool = False,
    export_dir_struct: ExportDirStruct = "deep",
    merge_peft: str | os.PathLike[str] | None = None,
    verify: bool = True,
    trace_all_layers: bool = False,
    prompt_length: int = 5,
    generated_tokens: int = 3,
) -> LLMExportResult:
    """Exports a HuggingFace causal LM to NNEF for tract, in the folder ``export_dirpath``.

    With ``export_dir_struct="deep"`` the folder gets ``model/model.nnef.tgz``,
    ``model/io_spec.json`` (the graph's inputs and outputs) and ``tests/*.npz`` (inputs and
    PyTorch outputs of a prompt step and of a step with a past, and a greedy generation of
    ``max(generated_tokens, 1)`` tokens); with
    ``dump_with_tokenizer_and_conf`` also ``model/config.json`` and ``tokenizer/`` (when the
    model has a tokenizer). With ``"flat"`` the same files are all in the folder itself. The
    export is written into a temporary sibling folder, renamed into place once complete and
    verified: a failed export leaves no folder behind. See the module documentation for the
    graph's inputs and outputs.

    Args:
        export_dirpath: the folder to write (its parent must exist; an existing one must be empty
            unless ``ignore_already_exist_dir``).
        model_slug: a Hugging Face Hub model id (needs the network or the Hub cache).
        local_dir: a folder written by ``save_pretrained`` (exclusive with ``model_slug``).
        dtype: float type of the export; ``bf16`` is exported as ``f16`` (with a warning).
        inputs_dtype: float type of the caches in the graph's inputs and outputs, cast to and from
            ``dtype`` inside the graph (default: ``dtype``); e.g. ``f16`` caches for an ``f32``
            model halve the memory a long context takes.
        compression_method: name of a compressor of ``compression_registry`` (e.g.
            ``"min_max_q4_0"``), applied after the cast to ``dtype``.
        compression_registry: dotted path of the registry (see
            :func:`torch_to_nnef.compress.load_compression_registry`).
        tract_version: tract release to target (default: :class:`TractNNEF`'s).
        tolerance: tolerance of the checks (default ``approximate`` in f32, ``super`` in f16).
        naming_scheme: how the graph's intermediate identifiers are named.
        force_f32_attention: in f16, compute attention in f32.
        force_f32_linear_accumulator: in f16, compute linear layers and matmuls in f32.
        force_f32_normalization: in f16, compute normalisations in f32.
        reify_sdpa_operator: write attention as tract's fused SDPA operator (traces the model with
            ``attn_implementation="sdpa"``).
        attn_implementation: transformers' attention implementation: ``sdpa``, ``eager``, or
            ``auto`` (transformers' choice: sdpa where the model has it; sdpa with
            ``reify_sdpa_operator``).
        num_logits_to_keep: logits of the last positions output (0: every position's).
        trust_remote_code: let transformers run the model repository's own code.
        ignore_already_exist_dir: write into a non-empty ``export_dirpath`` (each exported file
            replaces its namesake; the other files stay).
        dump_with_tokenizer_and_conf: also write the model's ``config.json`` and its tokenizer.
        export_dir_struct: ``"deep"`` (``model/``, ``tokenizer/``, ``tests/``) or ``"flat"``
            (every file in ``export_dirpath``).
        merge_peft: a PEFT adapter folder (written by a ``PeftModel``'s ``save_pretrained``)
            merged into the model's weights (``merge_and_unload``) before the export; needs peft.
        verify: check the export in tract against PyTorch (at the traced sizes and at larger
            ones, then the prompt step with empty caches and a greedy generation through the
            caches), loading the archive in tract once.
        trace_all_layers: trace every decoder layer. By default, when the model's decoder layers
            are all alike (same code and weight shapes, one layer type), two are traced and the
            second is repeated for the others, which makes tracing cost the same for any depth.
        prompt_length: prompt size of the verification and of the test bundles.
        generated_tokens: tokens generated by the verification.

    Raises:
        LLMExportError: the model cannot be loaded, is not a causal LM with a key-value cache, or
            the PEFT adapter cannot be merged.
        CompressionRegistryError: the registry cannot be loaded or has no ``compression_method``.
        OutputExistsError: ``export_dirpath`` is not empty.
        UnsupportedOpsError: the model uses operations the exporter cannot translate (the message
            names the architecture and the operations).
        TractError, IOMismatchError: tract cannot run the export, or differs from PyTorch.
    """
    started = time.monotonic()
    export_dir = Path(os.path.abspath(export_dirpath))  # "." has a name and a parent folder too
    float_type = _pick_dtype(dtype)
    cache_type = float_type if inputs_dtype is None else _pick_dtype(inputs_dtype)
    if tolerance is not None and tolerance not in _TOLERANCES:
        raise InvalidArgumentError(f"tolerance must be one of {', '.join(_TOLERANCES)}, got {tolerance!r}")
    if naming_scheme not in NAMING_SCHEMES:
        raise InvalidArgumentError(
            f"naming scheme {naming_scheme!r} is unknown: use one of {', '.join(NAMING_SCHEMES)}"
        )
    if attn_implementation not in ("auto", "sdpa", "eager"):
        raise InvalidArgumentError(f"attn_implementation must be auto, sdpa or eager, got {attn_implementation!r}")
    if export_dir_struct not in EXPORT_DIR_STRUCTS:
        raise InvalidArgumentError(
            f"export_dir_struct must be one of {', '.join(EXPORT_DIR_STRUCTS)}, got {export_dir_struct!r}"
        )
    if reify_sdpa_operator:
        if attn_implementation == "eager":
            raise InvalidArgumentError("reify_sdpa_operator needs the sdpa attention implementation, not eager")
        attn_implementation = "sdpa"
    if prompt_length < 1 or generated_tokens < 0:
        raise InvalidArgumentError("prompt_length must be >= 1 and generated_tokens >= 0")
    if compression_method is not None:
        registry = load_compression_registry(compression_registry)
        if compression_method not in registry:
            raise InvalidArgumentError(
                f"no compression method {compression_method!r} in {compression_registry}; available: "
                f"{', '.join(sorted(registry)) or 'none'}"
            )
    check_tolerance = tolerance or DEFAULT_TOLERANCE["f16" if "f16" in (float_type, cache_type) else "f32"]
    target = TractNNEF(
        version=tract_version or _DEFAULT_TRACT_VERSION,
        check_io_tolerance=check_tolerance,
        force_attention_inner_in_f32=force_f32_attention,
        force_linear_accumulation_in_f32=force_f32_linear_accumulator,
        force_norm_in_f32=force_f32_normalization,
        reify_sdpa_operator=reify_sdpa_operator,
    )
    _check_export_dir(export_dir, ignore_already_exist_dir)
    torch_dtype = _TORCH_DTYPES[float_type]
    cache_torch_dtype = _TORCH_DTYPES[cache_type]
    model, config, tokenizer = _load_model(
        model_slug,
        local_dir,
        trust_remote_code=trust_remote_code,
        attn_implementation=attn_implementation,
        dtype=torch_dtype,
        with_tokenizer=dump_with_tokenizer_and_conf,
        merge_peft=merge_peft,
    )
    model = model.to(torch_dtype)  # a no-op unless the checkpoint holds other dtypes
    architecture = _architecture(config)
    model_name = type(model).__name__
    try:
        wrapper, (num_layers, heads, head_dim) = wrap_causal_lm(
            model, num_logits_to_keep, None if cache_type == float_type else cache_torch_dtype
        )
    except LLMExportError as exc:
        raise LLMExportError(f"unsupported architecture {architecture}: {exc}") from exc
    if compression_method is not None:
        compressed = compress_model(wrapper, compression_method, compression_registry)
        if not isinstance(compressed, CausalLMGraph):
            raise InvalidArgumentError(
                f"compressor {compression_method!r} returned a {type(compressed).__name__}: it must return the "
                "model it was given"
            )
        wrapper = compressed
        del compressed
        quantized = sum(isinstance(p, QTensor) for p in wrapper.parameters())
        if quantized == 0:
            LOGGER.warning("compression %r quantized no weight of %s", compression_method, type(model).__name__)
        else:
            LOGGER.info("compression %r quantized %d weights", compression_method, quantized)
    vocab = _vocab_size(model)

    input_names, output_names = io_names(num_layers)
    dynamic_axes: dict[str, dict[int, str]] = {"input_ids": {1: "S"}}
    dynamic_axes.update({n: {2: "P"} for n in input_names[1:]})
    target.dynamic_axes = dynamic_axes
    source = model_slug if model_slug is not None else Path(os.fspath(local_dir or "")).name
    target.specific_properties = {
        "llm_source": str(source),
        "llm_model_class": type(model).__name__,
        "llm_dtype": float_type,
        "llm_cache_dtype": cache_type,
        "llm_compression": compression_method or "none",
        "llm_num_layers": str(num_layers),
        "llm_num_logits_to_keep": str(num_logits_to_keep),
        "llm_peft_merged": "yes" if merge_peft is not None else "no",
    }
    trace_inputs = [
        _token_ids(vocab, TRACE_NEW_TOKENS, seed=1),
        *_caches(num_layers, heads, TRACE_PAST_TOKENS, head_dim, cache_torch_dtype, seed=2),
    ]
    layout = _Layout(export_dir_struct)
    staging = _staging_dir(export_dir)
    try:
        for folder in (layout.model, layout.tests):
            (staging / folder).mkdir(parents=True, exist_ok=True)
        archive = staging / layout.model / ARCHIVE_NAME
        try:
            _write_graph(
                wrapper,
                trace_inputs,
                archive,
                target,
                input_names,
                output_names,
                naming_scheme,
                _length_bounds(config),
                repeat_layers=not trace_all_layers,
            )
        except (UnsupportedOpsError, CaptureError) as exc:
            raise type(exc)(f"cannot export {architecture}: {exc}") from exc

        prompt = _token_ids(vocab, prompt_length, seed=3)
        empty = _caches(num_layers, heads, 0, head_dim, cache_torch_dtype, seed=0)
        steps, generated = _torch_generation(wrapper, prompt, empty, max(generated_tokens, 1))
        _write_bundles(staging / layout.tests, steps, generated, input_names, output_names)
        steps, generated = steps[: generated_tokens + 1], generated[: generated_tokens + 1]
        _write_io_spec(
            staging / layout.model / IO_SPEC_NAME,
            layout,
            input_names,
            output_names,
            float_type,
            cache_type,
            heads,
            head_dim,
            vocab,
            num_logits_to_keep,
            target,
        )
        if dump_with_tokenizer_and_conf:
            config.save_pretrained(staging / layout.model)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging / layout.tokenizer)
            else:
                LOGGER.warning("%s has no tokenizer: only its config is written", source)
        LOGGER.info("wrote the test bundles%s", " and the config" if dump_with_tokenizer_and_conf else "")

        if verify:
            grown = [
                _token_ids(vocab, TRACE_NEW_TOKENS + 7, seed=4),
                *_caches(num_layers, heads, TRACE_PAST_TOKENS + 7, head_dim, cache_torch_dtype, seed=5),
            ]
            checks = [
                _Step(label, _run_torch(wrapper, inputs), inputs=inputs)
                for label, inputs in (
                    (f"traced sizes (S = {TRACE_NEW_TOKENS}, P = {TRACE_PAST_TOKENS})", trace_inputs),
                    (f"sizes S = {TRACE_NEW_TOKENS + 7}, P = {TRACE_PAST_TOKENS + 7}", grown),
                )
            ]
            # tract holds its own copy of the weights: PyTorch's are freed first
            del wrapper, model, grown, trace_inputs
            gc.collect()
            _verify(archive, model_name, [*checks, *steps], input_names, output_names, check_tolerance)
            LOGGER.info(
                "tract matches PyTorch at tolerance %r at %s, over the prompt and %d generated tokens",
                check_tolerance,
                ", ".join(step.label for step in checks),
                generated_tokens,
            )
        else:
            generated = []
        _move_into_place(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    archive = export_dir / layout.model / ARCHIVE_NAME
    LOGGER.info("exported %s to %s in %.1f s", model_name, archive, time.monotonic() - started)
    return LLMExportResult(
        export_dir=export_dir,
        archive=archive,
        num_layers=num_layers,
        kv_heads=heads,
        head_dim=head_dim,
        dtype=float_type,
        compression=compression_method,
        tolerance=check_tolerance if verify else None,
        generated_tokens=generated,
    )


def _vocab_size(model: nn.Module) -> int:
    getter = getattr(model, "get_output_embeddings", None)
    weight = getattr(getter() if callable(getter) else None, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise LLMExportError(f"{type(model).__name__} has no output embeddings (language-model head)")
    return int(weight.shape[0])


def _write_io_spec(
    path: Path,
    layout: _Layout,
    input_names: list[str],
    output_names: list[str],
    float_type: str,
    cache_type: str,
    heads: int,
    head_dim: int,
    vocab: int,
    num_logits_to_keep: int,
    target: TractNNEF,
) -> None:
    kept: int | str = num_logits_to_keep if num_logits_to_keep else "S"
    cache_in = [1, heads, "P", head_dim]
    cache_out = [1, heads, "P+S", head_dim]
    tests = {
        step: [(layout.tests / f"{step}_{kind}.npz").as_posix() for kind in ("inputs", "outputs")]
        for step in ("prompt", "prompt_with_past")
    }
    document = {
        "layout": layout.struct,
        "paths": "relative to the export folder",
        "archive": (layout.model / ARCHIVE_NAME).as_posix(),
        "tract_version": target.version,
        "symbols": {"S": "tokens given at this step", "P": "tokens already in the caches (0 for a prompt)"},
        "inputs": [{"name": "input_ids", "dtype": "i64", "shape": [1, "S"]}]
        + [{"name": n, "dtype": cache_type, "shape": cache_in} for n in input_names[1:]],
        "outputs": [{"name": "logits", "dtype": float_type, "shape": [1, kept, vocab]}]
        + [{"name": n, "dtype": cache_type, "shape": cache_out} for n in output_names[1:]],
        "tests": tests,
        "generation": (layout.tests / "generation.npz").as_posix(),
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# command line

_DESCRIPTION = """\
Export a HuggingFace causal language model (Llama, Qwen, Mistral, Phi-3, Gemma 1-3, GPT-2, ...)
to NNEF for tract, with its key-value cache as graph inputs and outputs, then check the export
in tract against PyTorch.

Writes into EXPORT_DIR, laid out by --export-dir-struct:
  deep (default)  model/model.nnef.tgz, model/io_spec.json (the graph's inputs and outputs),
                  tests/*.npz (inputs and PyTorch outputs of a prompt step and of a step with a
                  past, and a greedy generation of a few tokens); with -dwtac also
                  model/config.json and tokenizer/ (when the model has one)
  flat            the same files, all in EXPORT_DIR itself (model.nnef.tgz, io_spec.json, *.npz,
                  config.json and the tokenizer files), as in a Hugging Face repository
The export is written into a temporary folder beside EXPORT_DIR and renamed to EXPORT_DIR once
complete and checked: a failed export leaves nothing behind.

Graph: inputs input_ids (i64 [1, S]) then, per layer, in_cache_key_{i} and in_cache_value_{i}
([1, heads, P, head size]); outputs logits then out_cache_key_{i} and out_cache_value_{i}
([1, heads, P + S, head size]). Run a prompt with P = 0 and each next token with the caches
the previous step returned."""

_EPILOG = """\
examples:
  # a model saved with save_pretrained, in f16 with Q4_0 linear weights
  export_llm_to_tract -d ./my-llama -e ./llama_f16_q4_0 -f16 -c min_max_q4_0

  # from the Hugging Face Hub (needs the network, or the model in the Hub cache)
  export_llm_to_tract -s apple/OpenELM-1_1B-Instruct -e ./openelm_f16_q4_0 -f16 -c min_max_q4_0

  # a LoRA adapter merged into its base model, with the tokenizer and config, all files in one folder
  export_llm_to_tract -d ./my-llama -mp ./my-lora-adapter -e ./llama_lora -dwtac --export-dir-struct flat

  # a compressor of your own: MY_REGISTRY maps names to function(model, **options) -> model
  export_llm_to_tract -d ./my-llama -e ./out --compression-registry my_pkg.compressors.MY_REGISTRY -c gptq_q4_0

exit status: 0 on success, 1 on any error (a one-line message; --verbose shows the traceback),
2 on a bad command line."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export_llm_to_tract",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_argument_group("model to export (one of)")
    source.add_argument(
        "-s",
        "--model-slug",
        metavar="SLUG",
        help="Hugging Face Hub model id, e.g. -s meta-llama/Llama-3.2-1B (needs the network or the Hub cache)",
    )
    source.add_argument(
        "-d",
        "--local-dir",
        metavar="DIR",
        help="a folder written by save_pretrained (config.json and weights), e.g. -d ./my-llama",
    )
    parser.add_argument(
        "-e",
        "--export-dirpath",
        required=True,
        metavar="EXPORT_DIR",
        help="folder to write (created; its parent must exist; an existing one must be empty)",
    )
    parser.add_argument(
        "--ignore-already-exist-dir",
        "-iaed",
        action="store_true",
        help="write into EXPORT_DIR even if it is not empty (the export's own files are replaced)",
    )
    parser.add_argument(
        "-dwtac",
        "--dump-with-tokenizer-and-conf",
        action="store_true",
        help="also write the model's config.json (deep: model/config.json) and its tokenizer files (deep: "
        "tokenizer/), when it has a tokenizer",
    )
    parser.add_argument(
        "--export-dir-struct",
        choices=list(EXPORT_DIR_STRUCTS),
        default="deep",
        help="layout of EXPORT_DIR: deep = model/, tokenizer/ and tests/ folders; flat = every file in "
        "EXPORT_DIR itself (default: %(default)s)",
    )
    parser.add_argument(
        "-mp",
        "--merge-peft",
        metavar="ADAPTER_DIR",
        help="a PEFT adapter folder (written by save_pretrained of a PeftModel, e.g. LoRA) merged into the "
        "model's weights before the export (needs peft)",
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("-f16", "--as-float16", action="store_true", help="export in float16 (same as -dt f16)")
    precision.add_argument(
        "-dt",
        "--dtype",
        choices=["f32", "f16", "bf16"],
        help="float type of the export (default: f32); bf16 is exported as f16, with a warning",
    )
    parser.add_argument(
        "-idt",
        "--inputs-dtype",
        choices=["f32", "f16", "bf16"],
        help="float type of the key-value caches given to and returned by the graph, cast to and from the "
        "model's inside it (default: the model's), e.g. -idt f16 for an f32 model with half-size caches",
    )
    parser.add_argument(
        "-c",
        "--compression-method",
        metavar="NAME",
        help="compressor of the registry applied after the float cast, e.g. -c min_max_q4_0 (Q4_0 linear "
        "weights); built in: min_max_q4_0, min_max_q4_0_with_embeddings, min_max_q4_0_all",
    )
    parser.add_argument(
        "--compression-registry",
        default=DEFAULT_COMPRESSION_REGISTRY,
        metavar="PKG.MODULE.REGISTRY",
        help="dotted path of the mapping of compressors -c picks from (default: %(default)s)",
    )
    parser.add_argument(
        "--tract-specific-version",
        metavar="X.Y.Z",
        help=f"tract release to target (default: this package's default, {_DEFAULT_TRACT_VERSION})",
    )
    parser.add_argument(
        "-tt",
        "--tract-check-io-tolerance",
        choices=list(_TOLERANCES),
        help="tolerance of the checks against PyTorch (default: approximate in f32, super in f16)",
    )
    parser.add_argument(
        "-n",
        "--naming-scheme",
        choices=list(NAMING_SCHEMES),
        default="natural_verbose_camel",
        help="how the graph's intermediate identifiers are named (default: %(default)s)",
    )
    parser.add_argument(
        "-f32-attn", "--force-f32-attention", action="store_true", help="in f16, compute attention in f32"
    )
    parser.add_argument(
        "-f32-lin-acc",
        "--force-f32-linear-accumulator",
        action="store_true",
        help="in f16, compute linear layers and matmuls in f32",
    )
    parser.add_argument(
        "-f32-norm", "--force-f32-normalization", action="store_true", help="in f16, compute normalisations in f32"
    )
    parser.add_argument(
        "--reify-sdpa-operator",
        action="store_true",
        help="write attention as tract's fused SDPA operator (tract >= 0.22.0)",
    )
    parser.add_argument(
        "--attn-implementation",
        choices=["auto", "sdpa", "eager"],
        default="auto",
        help="transformers' attention implementation traced; auto: sdpa where the model has it, else eager "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--num-logits-to-keep",
        type=int,
        default=1,
        metavar="K",
        help="logits output for the last K positions; 0 outputs every position's (default: %(default)s)",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run the code of the model's repository (off by default)",
    )
    parser.add_argument(
        "-nv",
        "--no-verify",
        action="store_true",
        help="skip the checks in tract (the test .npz files are still written)",
    )
    parser.add_argument(
        "--trace-all-layers",
        action="store_true",
        help="trace every decoder layer (by default, two alike layers are traced and the second repeated)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    LOGGER.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    prog = "export_llm_to_tract"
    if (args.model_slug is None) == (args.local_dir is None):
        which = "both" if args.model_slug is not None else "neither"
        print(f"{prog}: error: pass one of -s/--model-slug or -d/--local-dir ({which} given)", file=sys.stderr)
        return 2
    dtype: DType = "f16" if args.as_float16 else (args.dtype or "f32")
    try:
        result = export_llm_to_tract(
            args.export_dirpath,
            model_slug=args.model_slug,
            local_dir=args.local_dir,
            dtype=dtype,
            inputs_dtype=args.inputs_dtype,
            compression_method=args.compression_method,
            compression_registry=args.compression_registry,
            tract_version=args.tract_specific_version,
            tolerance=args.tract_check_io_tolerance,
            naming_scheme=args.naming_scheme,
            force_f32_attention=args.force_f32_attention,
            force_f32_linear_accumulator=args.force_f32_linear_accumulator,
            force_f32_normalization=args.force_f32_normalization,
            reify_sdpa_operator=args.reify_sdpa_operator,
            attn_implementation=args.attn_implementation,
            num_logits_to_keep=args.num_logits_to_keep,
            trust_remote_code=args.trust_remote_code,
            ignore_already_exist_dir=args.ignore_already_exist_dir,
            dump_with_tokenizer_and_conf=args.dump_with_tokenizer_and_conf,
            export_dir_struct=args.export_dir_struct,
            merge_peft=args.merge_peft,
            verify=not args.no_verify,
            trace_all_layers=args.trace_all_layers,
        )
    except Exception as exc:
        if args.verbose:
            raise
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    checked = f"checked in tract at tolerance {result.tolerance!r}" if result.tolerance else "not checked"
    print(f"exported {result.num_layers} layers ({result.dtype}) to {result.archive}, {checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
