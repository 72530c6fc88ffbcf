"""Exporting a HuggingFace causal language model to NNEF for tract, from its loading to the checked export folder.

:func:`export_llm_to_tract` runs the steps of the other modules of :mod:`torch_to_nnef.llm` in
turn: it checks its options, loads and wraps the model (:mod:`~torch_to_nnef.llm.loading`,
:mod:`~torch_to_nnef.llm.wrapper`), writes the archive (:mod:`~torch_to_nnef.llm.tracing`) and the
test bundles (:mod:`~torch_to_nnef.llm.bundles`) into a staging folder
(:mod:`~torch_to_nnef.llm.staging`), checks the export in tract (:mod:`~torch_to_nnef.llm.verify`)
and moves the folder into place.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_to_nnef.capture.errors import CaptureError
from torch_to_nnef.capture.meta import buffers_on_meta
from torch_to_nnef.check.targets import TractNNEF
from torch_to_nnef.check.tract import Tolerance, TractModel
from torch_to_nnef.check.versions import MOE_FFN_TRACT
from torch_to_nnef.errors import InvalidArgumentError, TractError, UnsupportedOpsError
from torch_to_nnef.io.checkpoint import SafetensorsCheckpoint
from torch_to_nnef.io.compress import DEFAULT_COMPRESSION_REGISTRY, compress_model, load_compression_registry
from torch_to_nnef.io.qtensor import QTensor
from torch_to_nnef.llm.bundles import (
    Step,
    random_caches,
    random_token_ids,
    torch_generation,
    write_bundles,
    write_io_spec,
)
from torch_to_nnef.llm.cache_layout import CacheLayout
from torch_to_nnef.llm.errors import LLMExportError
from torch_to_nnef.llm.loading import (
    ATTN_IMPLEMENTATIONS,
    TORCH_DTYPES,
    DType,
    build_skeleton,
    describe_architecture,
    load_model,
    pick_dtype,
)
from torch_to_nnef.llm.mla import rewrite_latent_attention
from torch_to_nnef.llm.moe import rewrite_experts
from torch_to_nnef.llm.progress import MemoryWatch, available_memory, format_size
from torch_to_nnef.llm.recurrence import rewrite_recurrences
from torch_to_nnef.llm.staging import (
    ARCHIVE_NAME,
    EXPORT_DIR_STRUCTS,
    IO_SPEC_NAME,
    ExportDirStruct,
    Layout,
    check_export_dir,
    move_into_place,
    staging_dir,
)
from torch_to_nnef.llm.streaming import (
    NotStreamable,
    checkpoint_rows,
    needs_values,
    open_checkpoint,
    pending_quantized,
    weight_sources,
    write_archive_streamed,
)
from torch_to_nnef.llm.tracing import length_bounds, random_trace_inputs, translate_graph, write_graph
from torch_to_nnef.llm.verify import DEFAULT_TOLERANCE, TOLERANCES, size_checks, verify_export
from torch_to_nnef.llm.wrapper import CausalLMGraph, vocab_size, wrap_causal_lm
from torch_to_nnef.nnef.builder import NAMING_SCHEMES

__all__ = ["DEFAULT_TRACT_VERSION", "LLMExportResult", "export_llm_to_tract"]

LOGGER = logging.getLogger(__name__)

DEFAULT_TRACT_VERSION: str = TractNNEF().version
"""The tract release an export targets when none is given."""


@dataclass(frozen=True)
class LLMExportResult:
    """What :func:`export_llm_to_tract` wrote and checked."""

    export_dir: Path
    archive: Path
    num_layers: int
    kv_heads: int
    """The heads of the first layer's keys that has some (``cache_layout`` gives every cache tensor's
    shape); 0 for a model that caches states only."""
    head_dim: int
    """The head size of those keys (0 for a model that caches states only)."""
    dtype: str
    compression: str | None
    tolerance: Tolerance | None
    """The tolerance the export was verified at (None: not verified)."""
    generated_tokens: list[int]
    """The tokens of the greedy generation the verification ran (empty: not verified)."""
    cache_layout: CacheLayout
    """The cache tensors the graph takes and returns, with their layers and shapes."""
    architecture: str = ""
    """The model's class and ``model_type``."""
    streamed: bool = False
    """True when the weights went from the checkpoint to the archive one at a time (the model was
    never loaded); False when the model was loaded in memory."""
    bytes_read: int = 0
    """The bytes of weights read from the checkpoint (a streamed export)."""
    checked_layers: int | None = None
    """When the check ran on the model's first layers and its head only (a streamed export): their
    number; None when it ran on the whole model (or did not run)."""


@dataclass
class _Options:
    """The options of :func:`export_llm_to_tract` (but the export folder), checked as they are made.

    Making one checks every option before anything is loaded, and resolves the float types, the
    attention implementation and the tolerance the export is made with.

    Raises:
        InvalidArgumentError: an option with a wrong value.
        CompressionRegistryError: the registry cannot be loaded.
    """

    model_slug: str | None
    local_dir: str | os.PathLike[str] | None
    dtype: DType
    inputs_dtype: DType | None
    compression_method: str | None
    compression_registry: str
    tract_version: str | None
    tolerance: Tolerance | None
    naming_scheme: str
    force_f32_attention: bool
    force_f32_linear_accumulator: bool
    force_f32_normalization: bool
    reify_sdpa_operator: bool
    attn_implementation: str
    num_logits_to_keep: int
    trust_remote_code: bool
    ignore_already_exist_dir: bool
    dump_with_tokenizer_and_conf: bool
    export_dir_struct: ExportDirStruct
    merge_peft: str | os.PathLike[str] | None
    verify: bool
    trace_all_layers: bool
    prompt_length: int
    generated_tokens: int
    stream: bool | None
    check_layers: int | None = None
    layers: int | None = None
    """Load only the model's first layers (the truncated copy a streamed export is checked on)."""
    float_type: str = field(init=False)
    """The float type the export is made in (bf16 is made in f16)."""
    cache_type: str = field(init=False)
    """The float type of the caches in the graph's inputs and outputs."""
    check_tolerance: Tolerance = field(init=False)
    """The tolerance of the checks in tract."""

    def __post_init__(self) -> None:
        self.float_type = pick_dtype(self.dtype)
        self.cache_type = self.float_type if self.inputs_dtype is None else pick_dtype(self.inputs_dtype)
        if self.tolerance is not None and self.tolerance not in TOLERANCES:
            raise InvalidArgumentError(f"tolerance must be one of {', '.join(TOLERANCES)}, got {self.tolerance!r}")
        if self.naming_scheme not in NAMING_SCHEMES:
            raise InvalidArgumentError(
                f"naming scheme {self.naming_scheme!r} is unknown: use one of {', '.join(NAMING_SCHEMES)}"
            )
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise InvalidArgumentError(
                f"attn_implementation must be auto, sdpa or eager, got {self.attn_implementation!r}"
            )
        if self.export_dir_struct not in EXPORT_DIR_STRUCTS:
            raise InvalidArgumentError(
                f"export_dir_struct must be one of {', '.join(EXPORT_DIR_STRUCTS)}, got {self.export_dir_struct!r}"
            )
        if self.reify_sdpa_operator:
            if self.attn_implementation == "eager":
                raise InvalidArgumentError("reify_sdpa_operator needs the sdpa attention implementation, not eager")
            self.attn_implementation = "sdpa"
        if self.prompt_length < 1 or self.generated_tokens < 0:
            raise InvalidArgumentError("prompt_length must be >= 1 and generated_tokens >= 0")
        if self.check_layers is not None and (not self.verify or self.check_layers < 1):
            raise InvalidArgumentError(
                "check_layers is the number of layers the check runs on: >= 1, and with the check on (no -nv)"
            )
        if self.stream or self.check_layers is not None:
            refused = (
                "streaming reads a model folder: pass local_dir (-d)" if self.local_dir is None else None,
                "merging a PEFT adapter needs the model in memory" if self.merge_peft is not None else None,
            )
            reasons = [r for r in refused if r]
            if reasons:
                raise InvalidArgumentError(f"cannot stream the weights: {'; '.join(reasons)}")
        if self.compression_method is not None:
            registry = load_compression_registry(self.compression_registry)
            if self.compression_method not in registry:
                raise InvalidArgumentError(
                    f"no compression method {self.compression_method!r} in {self.compression_registry}; "
                    f"available: {', '.join(sorted(registry)) or 'none'}"
                )
        self.check_tolerance = (
            self.tolerance or DEFAULT_TOLERANCE["f16" if "f16" in (self.float_type, self.cache_type) else "f32"]
        )

    def plan(self) -> bool:
        """Whether the export streams the weights (see :mod:`torch_to_nnef.llm.streaming`); sets
        :attr:`check_layers` when the check then runs on the model's first layers.

        By default an unchecked export of a folder streams when it compresses the weights, when its
        checkpoint holds experts one by one (loading would stack them in a copy), or when they take
        more than :data:`STREAM_ABOVE` of the memory available (a small float model exports faster
        loaded: tracing it with its weights is quicker than on the meta device);
        a checked one streams when its weights do not fit in the memory available (the check then
        runs on :data:`DEFAULT_CHECK_LAYERS` layers); ``stream=True`` or ``check_layers`` stream.
        """
        if self.stream is False or self.local_dir is None or self.merge_peft is not None:
            return False
        if self.stream or self.check_layers is not None:
            if self.verify and self.check_layers is None:
                self.check_layers = DEFAULT_CHECK_LAYERS
            return True
        checkpoint = SafetensorsCheckpoint.of_folder(self.local_dir)
        available = available_memory()
        if checkpoint is None:
            return False
        need = _weights_bytes(checkpoint, self.torch_dtype)
        if not self.verify:
            if _experts_apart(checkpoint):
                LOGGER.info(
                    "the checkpoint holds its experts one by one, which loading would stack in a copy: "
                    "they are streamed from their rows instead"
                )
                return True
            if self.compression_method is None and available is not None and need <= STREAM_ABOVE * available:
                return False
            return True
        if available is None or need * FITS_MARGIN <= available:
            return False
        self.check_layers = DEFAULT_CHECK_LAYERS
        LOGGER.info(
            "the model's weights (%s in %s) do not fit in the memory available (%s): they are streamed, and "
            "the check runs on the first %d layers and the head (--check-layers)",
            format_size(need),
            self.float_type,
            format_size(available),
            self.check_layers,
        )
        return True

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype the model is exported in."""
        return TORCH_DTYPES[self.float_type]

    @property
    def cache_torch_dtype(self) -> torch.dtype:
        """The torch dtype of the caches in the graph's inputs and outputs."""
        return TORCH_DTYPES[self.cache_type]

    @property
    def layout(self) -> Layout:
        """Where each file goes in the export folder."""
        return Layout(self.export_dir_struct)

    @property
    def source_name(self) -> str:
        """The model's Hub id, or the name of its folder."""
        return self.model_slug if self.model_slug is not None else Path(os.fspath(self.local_dir or "")).name

    def tract_target(self) -> TractNNEF:
        """The tract release and precision options the graph is translated for."""
        return TractNNEF(
            version=self.tract_version or DEFAULT_TRACT_VERSION,
            check_io_tolerance=self.check_tolerance,
            force_attention_inner_in_f32=self.force_f32_attention,
            force_linear_accumulation_in_f32=self.force_f32_linear_accumulator,
            force_norm_in_f32=self.force_f32_normalization,
            reify_sdpa_operator=self.reify_sdpa_operator,
        )


DEFAULT_CHECK_LAYERS = 2
"""The layers a streamed export is checked on when not told (with the head)."""

STREAM_ABOVE = 0.25
"""An unchecked export without compression streams when its weights take more than this part of
the memory available."""

FITS_MARGIN = 1.25
"""How much more memory than its weights loading a model and checking it takes (the check's own
buffers, tract's copy of the weights once PyTorch's are freed): a model fits when its weights times
this margin are available."""


def _experts_apart(checkpoint: SafetensorsCheckpoint) -> bool:
    """Whether ``checkpoint`` holds a mixture of experts' weights expert by expert (``.experts.N.``),
    which transformers' models hold stacked.
    """
    return any(_ONE_EXPERT.search(name) for name in checkpoint.tensors)


_ONE_EXPERT = re.compile(r"\.experts\.\d+\.")
"""A checkpoint name of one expert's weight."""


def _weights_bytes(checkpoint: SafetensorsCheckpoint, dtype: torch.dtype) -> int:
    """The memory the checkpoint's tensors take once loaded in ``dtype`` (floats) or as they are."""
    return sum(
        math.prod(t.shape) * (dtype.itemsize if t.dtype.is_floating_point else t.dtype.itemsize)
        for t in checkpoint.tensors.values()
    )


@dataclass(frozen=True)
class _LoadedLM:
    """What the export needs to know of the loaded model.

    The wrapped model itself is kept apart, so that its weights can be freed before tract loads
    the export.
    """

    config: Any
    tokenizer: Any
    architecture: str
    """The model's class and ``model_type``, for error messages."""
    model_name: str
    """The model's class name."""
    caches: CacheLayout
    """The cache tensors the graph takes and returns."""
    vocab: int

    @property
    def num_layers(self) -> int:
        """The model's decoder layers."""
        return self.caches.num_layers

    @property
    def input_names(self) -> list[str]:
        """The graph's input names."""
        return self.caches.input_names

    @property
    def output_names(self) -> list[str]:
        """The graph's output names."""
        return self.caches.output_names


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
    stream: bool | None = None,
    check_layers: int | None = None,
) -> LLMExportResult:
    """Exports a HuggingFace causal LM to NNEF for tract, in the folder ``export_dirpath``.

    With ``export_dir_struct="deep"`` the folder gets ``model/model.nnef.tgz``,
    ``model/io_spec.json`` (the graph's inputs and outputs) and ``tests/*.npz`` (inputs and
    PyTorch outputs of a prompt step and of a step with a past, and a greedy generation of
    ``max(generated_tokens, 1)`` tokens); with
    ``dump_with_tokenizer_and_conf`` also ``model/config.json`` and ``tokenizer/`` (when the
    model has a tokenizer). With ``"flat"`` the same files are all in the folder itself. The
    export is written into a temporary sibling folder, renamed into place once complete and
    verified: a failed export leaves no folder behind. See :mod:`torch_to_nnef.llm.wrapper` for
    the graph's inputs and outputs.

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
            :func:`torch_to_nnef.io.compress.load_compression_registry`).
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
        stream: write the archive without loading the model: it is built on the meta device and
            each weight goes from the folder's safetensors files to the archive (cast, or
            quantized by the compressor, on the way), so that memory holds a few tensors whatever
            the model's size (see :mod:`torch_to_nnef.llm.streaming`). No test bundles are written
            then, and the check (``verify``) runs on a copy of the model's first
            ``check_layers`` layers and its head, loaded and exported with the same code; the whole
            archive is then loaded in tract and run on the prompt where it fits in memory.
            ``None`` (default): stream, when the model allows it (the log says which ran and why),
            an unchecked export of a folder that compresses its weights or whose weights take more
            than a quarter of the memory available, and a checked one whose weights do not fit in
            it; True: stream or fail saying why; False: load the model.
        check_layers: check a streamed export on its first ``check_layers`` layers and its head
            (default 2 when streamed); implies streaming.

    Raises:
        LLMExportError: the model cannot be loaded, is not a causal LM with a key-value cache, or
            the PEFT adapter cannot be merged.
        CompressionRegistryError: the registry cannot be loaded or has no ``compression_method``.
        OutputExistsError: ``export_dirpath`` is not empty.
        UnsupportedOpsError: the model uses operations the exporter cannot translate (the message
            names the architecture and the operations).
        TractError, IOMismatchError: tract cannot run the export, or differs from PyTorch.
        NotStreamable: ``stream=True`` and the model cannot be streamed (the message says why).
    """
    started = time.monotonic()
    export_dir = Path(os.path.abspath(export_dirpath))  # "." has a name and a parent folder too
    options = _Options(
        model_slug=model_slug,
        local_dir=local_dir,
        dtype=dtype,
        inputs_dtype=inputs_dtype,
        compression_method=compression_method,
        compression_registry=compression_registry,
        tract_version=tract_version,
        tolerance=tolerance,
        naming_scheme=naming_scheme,
        force_f32_attention=force_f32_attention,
        force_f32_linear_accumulator=force_f32_linear_accumulator,
        force_f32_normalization=force_f32_normalization,
        reify_sdpa_operator=reify_sdpa_operator,
        attn_implementation=attn_implementation,
        num_logits_to_keep=num_logits_to_keep,
        trust_remote_code=trust_remote_code,
        ignore_already_exist_dir=ignore_already_exist_dir,
        dump_with_tokenizer_and_conf=dump_with_tokenizer_and_conf,
        export_dir_struct=export_dir_struct,
        merge_peft=merge_peft,
        verify=verify,
        trace_all_layers=trace_all_layers,
        prompt_length=prompt_length,
        generated_tokens=generated_tokens,
        stream=stream,
        check_layers=check_layers,
    )
    check_export_dir(export_dir, options.ignore_already_exist_dir)
    with MemoryWatch() as memory:
        if options.plan():
            try:
                result = _export_streamed(export_dir, options)
            except NotStreamable as exc:
                if options.stream or (options.check_layers is not None and check_layers is not None):
                    raise
                options.check_layers = None
                LOGGER.info("loading the model in memory: %s", exc)
            else:
                _log_done(result, started, memory)
                return result
        result = _export_in_memory(export_dir, options)
    _log_done(result, started, memory)
    return result


def _log_done(result: LLMExportResult, started: float, memory: MemoryWatch) -> None:
    """The last line of an export: its time, the bytes read (streamed) and written, and the peak memory."""
    read = f"read {format_size(result.bytes_read)}, " if result.streamed else ""
    LOGGER.info(
        "exported %s to %s in %.1f s (%swrote %s), peak memory %s",
        result.architecture,
        result.archive,
        time.monotonic() - started,
        read,
        format_size(result.archive.stat().st_size),
        memory.describe(),
    )


def _export_in_memory(export_dir: Path, options: _Options) -> LLMExportResult:
    """The export of a model loaded in memory, checked in tract unless ``options.verify`` is off."""
    target = options.tract_target()
    wrapper, lm = _load_wrapped(options)
    target.dynamic_axes = lm.caches.dynamic_axes()
    target.specific_properties = _properties(options, lm)
    trace_inputs = random_trace_inputs(lm.vocab, lm.caches, options.cache_torch_dtype)
    layout = options.layout
    staging = staging_dir(export_dir)
    try:
        layout.make_folders(staging)
        archive = staging / layout.model / ARCHIVE_NAME
        write_graph(archive, *_translated(wrapper, trace_inputs, target, lm, options), target)
        steps, generated = _write_test_files(staging, wrapper, target, lm, options)
        if options.verify:
            checks = size_checks(wrapper, trace_inputs, lm.vocab, options.cache_torch_dtype)
            # tract holds its own copy of the weights: PyTorch's are freed first
            del wrapper, trace_inputs
            gc.collect()
            _check_in_tract(archive, lm, checks, steps, options)
        else:
            generated = []
        move_into_place(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    archive = export_dir / layout.model / ARCHIVE_NAME
    return LLMExportResult(
        export_dir=export_dir,
        archive=archive,
        num_layers=lm.num_layers,
        kv_heads=next((t.heads for t in lm.caches.tensors if t.kind == "key"), 0),
        head_dim=next((t.head_dim for t in lm.caches.tensors if t.kind == "key"), 0),
        dtype=options.float_type,
        compression=options.compression_method,
        tolerance=options.check_tolerance if options.verify else None,
        generated_tokens=generated,
        cache_layout=lm.caches,
        architecture=lm.architecture,
    )


def _export_streamed(export_dir: Path, options: _Options) -> LLMExportResult:
    """The export of a model never loaded: built on the meta device, its weights streamed from its
    safetensors files into the archive.

    Raises:
        NotStreamable: the model cannot be exported so (the message says why); nothing is written.
    """
    assert options.local_dir is not None
    checkpoint = open_checkpoint(options.local_dir)
    target = options.tract_target()
    LOGGER.info(
        "streaming the weights of %s (%d tensors, %s in %d file(s)): the model is built without them",
        options.source_name,
        len(checkpoint.tensors),
        format_size(checkpoint.nbytes),
        len(checkpoint.files),
    )
    model, config, tokenizer = build_skeleton(
        options.local_dir,
        trust_remote_code=options.trust_remote_code,
        attn_implementation=options.attn_implementation,
        dtype=options.torch_dtype,
        with_tokenizer=options.dump_with_tokenizer_and_conf,
    )
    rows = checkpoint_rows(model, checkpoint)  # before any rewrite: the model's weights as loading reads them
    weight_sources(model, checkpoint, rows, prefix="")
    with needs_values("rewriting the model for the export"):
        wrapper, lm = _wrapped(model, config, tokenizer, options, on_meta=True)
    sources = weight_sources(wrapper, checkpoint, rows)
    if options.check_layers is not None and options.check_layers >= lm.num_layers:
        raise InvalidArgumentError(
            f"check_layers {options.check_layers} is not below the model's {lm.num_layers} layers: check it whole "
            "(--no-stream), or on fewer layers"
        )
    target.dynamic_axes = lm.caches.dynamic_axes()
    target.specific_properties = _properties(options, lm)
    trace_inputs = [t.to("meta") for t in random_trace_inputs(lm.vocab, lm.caches, options.cache_torch_dtype)]
    layout = options.layout
    staging = staging_dir(export_dir)
    try:
        layout.make_folders(staging)
        archive = staging / layout.model / ARCHIVE_NAME
        with buffers_on_meta(wrapper) as real_buffers, needs_values("tracing the model"):
            doc, tensors, quant = _translated(wrapper, trace_inputs, target, lm, options)
        totals = write_archive_streamed(
            archive, doc, tensors, quant, sources, real_buffers, checkpoint, target.version_tuple, rows
        )
        LOGGER.info(
            "read %s of weights from the checkpoint, wrote %s of tensors; no test bundles (they need the model "
            "in memory)",
            format_size(totals.read),
            format_size(totals.written),
        )
        _write_descriptions(staging, target, lm, options)
        checked = _check_first_layers(staging, options) if options.check_layers is not None else None
        if checked is not None:
            _run_whole(archive, lm, options)
        move_into_place(staging, export_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return LLMExportResult(
        export_dir=export_dir,
        archive=export_dir / layout.model / ARCHIVE_NAME,
        num_layers=lm.num_layers,
        kv_heads=next((t.heads for t in lm.caches.tensors if t.kind == "key"), 0),
        head_dim=next((t.head_dim for t in lm.caches.tensors if t.kind == "key"), 0),
        dtype=options.float_type,
        compression=options.compression_method,
        tolerance=None if checked is None else checked.tolerance,
        generated_tokens=[] if checked is None else checked.generated_tokens,
        cache_layout=lm.caches,
        architecture=lm.architecture,
        streamed=True,
        bytes_read=totals.read,
        checked_layers=options.check_layers,
    )


CHECK_DIRNAME = ".check"
"""The folder of the staging folder where a streamed export's truncated copy is exported and checked."""


def _check_first_layers(staging: Path, options: _Options) -> LLMExportResult:
    """Exports and checks in tract a copy of the model cut to its first ``options.check_layers``
    layers and its head: loaded (those weights only) and exported with the same code as the
    whole model, into a folder of ``staging`` removed once checked.

    Raises:
        TractError, IOMismatchError: tract cannot run the copy, or differs from PyTorch.
    """
    assert options.check_layers is not None
    LOGGER.info("checking the export on its first %d layers and the head", options.check_layers)
    copy = dataclasses.replace(
        options,
        stream=False,
        check_layers=None,
        layers=options.check_layers,
        dump_with_tokenizer_and_conf=False,
        ignore_already_exist_dir=False,
    )
    folder = staging / CHECK_DIRNAME
    try:
        return _export_in_memory(folder, copy)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


WHOLE_MARGIN = 1.5
"""How much more memory than its size loading an archive in tract and running it takes."""


def _run_whole(archive: Path, lm: _LoadedLM, options: _Options) -> None:
    """Loads the whole archive in tract and runs the prompt step on it, where it fits in memory:
    it must load, and give finite logits of the expected shape.

    Raises:
        TractError: tract cannot load or run the archive, or its logits are not finite.
    """
    size, available = archive.stat().st_size, available_memory()
    if available is not None and size * WHOLE_MARGIN > available:
        LOGGER.info(
            "the whole archive (%s) is not run in tract: it does not fit in the memory available (%s)",
            format_size(size),
            format_size(available),
        )
        return
    started = time.monotonic()
    model = TractModel(archive)
    prompt = random_token_ids(lm.vocab, options.prompt_length, seed=3)
    logits = model.run([prompt, *random_caches(lm.caches, 0, options.cache_torch_dtype, seed=0)])[0]
    length = options.prompt_length
    kept = length if options.num_logits_to_keep == 0 else min(options.num_logits_to_keep, length)
    if logits.shape != (1, kept, lm.vocab):
        raise TractError(f"the whole archive gives logits of shape {list(logits.shape)}, not {[1, kept, lm.vocab]}")
    if not np.isfinite(logits).all():
        raise TractError("the whole archive gives logits that are not finite on the prompt")
    LOGGER.info(
        "the whole archive loads and runs the prompt in tract (finite logits) in %.1f s", time.monotonic() - started
    )


def _load_wrapped(options: _Options) -> tuple[CausalLMGraph, _LoadedLM]:
    """Loads the model in the export's float type, wraps it as the graph and compresses it.

    Raises:
        LLMExportError: the model cannot be loaded, or its cache cannot be graph I/O.
    """
    model, config, tokenizer = load_model(
        options.model_slug,
        options.local_dir,
        trust_remote_code=options.trust_remote_code,
        attn_implementation=options.attn_implementation,
        dtype=options.torch_dtype,
        with_tokenizer=options.dump_with_tokenizer_and_conf,
        merge_peft=options.merge_peft,
        layers=options.layers,
    )
    _to_float_type(model, options.torch_dtype)
    return _wrapped(model, config, tokenizer, options, on_meta=False)


def _wrapped(
    model: torch.nn.Module, config: Any, tokenizer: Any, options: _Options, *, on_meta: bool
) -> tuple[CausalLMGraph, _LoadedLM]:
    """``model`` rewritten for the export, wrapped as the graph and compressed.

    ``on_meta``: the model's weights are on the meta device (its buffers are moved there too for
    the run that learns its cache layout).

    Raises:
        LLMExportError: the model's cache cannot be graph I/O.
        NotStreamable: ``on_meta`` and the compressor needs the weights' values.
    """
    rewrite_experts(model, fused=options.tract_target().version_tuple >= MOE_FFN_TRACT)
    rewrite_latent_attention(model)
    rewrite_recurrences(model)
    architecture = describe_architecture(config)
    cache_dtype = None if options.cache_type == options.float_type else options.cache_torch_dtype
    try:
        if on_meta:
            with buffers_on_meta(model):
                wrapper, caches = wrap_causal_lm(model, options.num_logits_to_keep, cache_dtype)
        else:
            wrapper, caches = wrap_causal_lm(model, options.num_logits_to_keep, cache_dtype)
    except LLMExportError as exc:
        raise LLMExportError(f"unsupported architecture {architecture}: {exc}") from exc
    if options.compression_method is not None:
        wrapper = _compress(
            wrapper, options.compression_method, options.compression_registry, type(model).__name__, on_meta
        )
    lm = _LoadedLM(
        config=config,
        tokenizer=tokenizer,
        architecture=architecture,
        model_name=type(model).__name__,
        caches=caches,
        vocab=vocab_size(model),
    )
    return wrapper, lm


def _to_float_type(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Casts ``model``'s float weights to ``dtype`` when the checkpoint held them in another type.

    Weights in f32 stay so: loading in ``dtype`` casts every weight but those a model keeps in f32 on
    purpose (routers and gates computed in f32, as Inkling's).
    """
    for tensors in (model.parameters(), model.buffers()):
        for tensor in tensors:
            if tensor.is_floating_point() and tensor.dtype not in (dtype, torch.float32):
                tensor.data = tensor.data.to(dtype)


def _compress(wrapper: CausalLMGraph, method: str, registry: str, model_name: str, on_meta: bool) -> CausalLMGraph:
    """``wrapper`` compressed by the compressor ``method`` of ``registry``; logs how many weights it quantized.

    On a model whose weights are on the meta device, the compressor runs as on any other: one that
    quantizes with :func:`~torch_to_nnef.io.qtensor.fp_to_tract_q4_0_with_min_max_calibration`
    leaves each weight pending, quantized as it is read; one that reads the weights' values fails,
    and the model is loaded instead.

    Raises:
        InvalidArgumentError: the compressor returned another model than the one it was given.
        NotStreamable: ``on_meta`` and the compressor needs the weights' values.
    """
    if on_meta:
        try:
            compressed = compress_model(wrapper, method, registry)
        except Exception as exc:  # a user's compressor may raise anything on values it cannot read
            raise NotStreamable(
                f"compressor {method!r} needs the weights' values ({type(exc).__name__}: {exc})"
            ) from exc
    else:
        compressed = compress_model(wrapper, method, registry)
    if not isinstance(compressed, CausalLMGraph):
        raise InvalidArgumentError(
            f"compressor {method!r} returned a {type(compressed).__name__}: it must return the model it was given"
        )
    quantized = sum(isinstance(p, QTensor) for p in compressed.parameters())
    if quantized == 0:
        LOGGER.warning("compression %r quantized no weight of %s", method, model_name)
    elif on_meta:
        LOGGER.info(
            "compression %r runs streamed: %d weights are quantized as they are read",
            method,
            pending_quantized(compressed),
        )
    else:
        LOGGER.info("compression %r quantized %d weights", method, quantized)
    return compressed


def _properties(options: _Options, lm: _LoadedLM) -> dict[str, str]:
    """The ``llm_*`` properties the archive records (in ``tract_core_properties``)."""
    return {
        "llm_source": options.source_name,
        "llm_model_class": lm.model_name,
        "llm_dtype": options.float_type,
        "llm_cache_dtype": options.cache_type,
        "llm_compression": options.compression_method or "none",
        "llm_num_layers": str(lm.num_layers),
        "llm_num_logits_to_keep": str(options.num_logits_to_keep),
        "llm_peft_merged": "yes" if options.merge_peft is not None else "no",
    }


def _translated(
    wrapper: CausalLMGraph, trace_inputs: list[torch.Tensor], target: TractNNEF, lm: _LoadedLM, options: _Options
) -> tuple[str, dict[str, Any], str | None]:
    """Traces and translates the graph (see :func:`torch_to_nnef.llm.tracing.translate_graph`).

    Raises:
        UnsupportedOpsError, CaptureError: the model cannot be traced or translated (the message
            names its architecture).
    """
    try:
        return translate_graph(
            wrapper,
            trace_inputs,
            target,
            lm.input_names,
            lm.output_names,
            options.naming_scheme,
            length_bounds(lm.config, lm.caches.has_past),
            repeat_layers=not options.trace_all_layers,
        )
    except (UnsupportedOpsError, CaptureError) as exc:
        raise type(exc)(f"cannot export {lm.architecture}: {exc}") from exc


def _write_test_files(
    staging: Path, wrapper: CausalLMGraph, target: TractNNEF, lm: _LoadedLM, options: _Options
) -> tuple[list[Step], list[int]]:
    """Writes the test bundles, ``io_spec.json`` and, when asked for, the config and the tokenizer.

    Returns:
        PyTorch's prompt step and the steps of its greedy generation of ``generated_tokens``
        tokens, and those tokens: what the check in tract compares with.
    """
    layout = options.layout
    prompt = random_token_ids(lm.vocab, options.prompt_length, seed=3)
    empty = random_caches(lm.caches, 0, options.cache_torch_dtype, seed=0)
    steps, generated = torch_generation(wrapper, prompt, empty, max(options.generated_tokens, 1))
    write_bundles(staging / layout.tests, steps, generated, lm.input_names, lm.output_names)
    _write_descriptions(staging, target, lm, options)
    LOGGER.info("wrote the test bundles%s", " and the config" if options.dump_with_tokenizer_and_conf else "")
    kept = options.generated_tokens + 1
    return steps[:kept], generated[:kept]


def _write_descriptions(staging: Path, target: TractNNEF, lm: _LoadedLM, options: _Options) -> None:
    """Writes ``io_spec.json`` and, when asked for, the config and the tokenizer."""
    layout = options.layout
    write_io_spec(
        staging / layout.model / IO_SPEC_NAME,
        layout,
        lm.caches,
        options.float_type,
        options.cache_type,
        lm.vocab,
        options.num_logits_to_keep,
        target,
    )
    if options.dump_with_tokenizer_and_conf:
        lm.config.save_pretrained(staging / layout.model)
        if lm.tokenizer is not None:
            lm.tokenizer.save_pretrained(staging / layout.tokenizer)
        else:
            LOGGER.warning("%s has no tokenizer: only its config is written", options.source_name)


def _check_in_tract(archive: Path, lm: _LoadedLM, checks: list[Step], steps: list[Step], options: _Options) -> None:
    """Checks the archive in tract: at the ``checks``' sizes, then over the prompt and the generation ``steps``.

    Raises:
        TractError, IOMismatchError: tract cannot run the export, or differs from PyTorch.
    """
    verify_export(archive, lm.model_name, [*checks, *steps], lm.input_names, lm.output_names, options.check_tolerance)
    LOGGER.info(
        "tract matches PyTorch at tolerance %r at %s, over the prompt and %d generated tokens",
        options.check_tolerance,
        ", ".join(step.label for step in checks),
        options.generated_tokens,
    )
