"""Loading a HuggingFace causal language model, its config and its tokenizer for the export.

Also the float types an export can be made in, and the checks that refuse a model that is not a
causal language model before any of its weights is read.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from torch_to_nnef.capture.meta import weights_on_meta
from torch_to_nnef.errors import InvalidArgumentError
from torch_to_nnef.llm.errors import LLMExportError
from torch_to_nnef.llm.peft_merge import import_peft, merge_peft_adapter
from torch_to_nnef.llm.progress import format_size

__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "DTYPES",
    "TORCH_DTYPES",
    "DType",
    "build_skeleton",
    "describe_architecture",
    "first_layers",
    "import_transformers",
    "load_model",
    "pick_dtype",
]

LOGGER = logging.getLogger(__name__)

DType = Literal["f32", "f16", "bf16"]
DTYPES: tuple[DType, ...] = ("f32", "f16", "bf16")
"""Float types an export can be asked for."""

TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16}
"""The torch dtype of each float type an export is made in (bf16 is made in f16)."""


ATTN_IMPLEMENTATIONS = ("auto", "sdpa", "eager")
"""transformers' attention implementations a model can be loaded with; ``auto`` leaves transformers
the choice (sdpa where the model has it, else eager)."""


def pick_dtype(dtype: DType) -> str:
    """The float type an export asked in ``dtype`` is made in: ``dtype``, or f16 for bf16 (with a warning).

    Raises:
        InvalidArgumentError: ``dtype`` is not one of f32, f16, bf16.
    """
    if dtype == "bf16":
        LOGGER.warning("bf16 is exported as f16: tract runs no bf16 graphs; the check compares with PyTorch in f16")
        return "f16"
    if dtype not in TORCH_DTYPES:
        raise InvalidArgumentError(f"dtype must be one of f32, f16, bf16, got {dtype!r}")
    return dtype


def import_transformers() -> Any:
    """The ``transformers`` module, imported on first use.

    Raises:
        LLMExportError: transformers is not installed.
    """
    try:
        import transformers
    except ImportError as exc:
        raise LLMExportError(
            "exporting a language model needs transformers: pip install 'torch_to_nnef[llm_tract]'"
        ) from exc
    return transformers


def describe_architecture(config: Any) -> str:
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
        f"unsupported architecture {describe_architecture(config)}: transformers has no causal language model "
        "class for it (AutoModelForCausalLM); export_llm_to_tract exports decoder language models with a "
        "key-value cache, such as Llama, Qwen, Mistral, Phi-3, Gemma and GPT-2"
    )


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")
"""Files of which a saved model folder has at least one when it has a tokenizer (transformers
otherwise makes up an empty one for some architectures)."""


def _read_config(
    transformers: Any, model_slug: str | None, local_dir: str | os.PathLike[str] | None, trust_remote_code: bool
) -> tuple[Any, str, dict[str, Any]]:
    """The model's config, the source it was read from, and the options every later read takes.

    Raises:
        LLMExportError: not exactly one source given, the source cannot be read, or it is not a
            causal language model.
    """
    if (model_slug is None) == (local_dir is None):
        raise LLMExportError("pass the model with one of -s/--model-slug or -d/--local-dir")
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code}
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
    return config, source, common


def first_layers(config: Any, layers: int) -> None:
    """Cuts ``config`` (its text config, for a model that has one) to its first ``layers`` decoder
    layers: ``num_hidden_layers`` and every per-layer list (``layer_types``, ...), so that the same
    code builds the model's first layers and its head.

    Raises:
        InvalidArgumentError: ``layers`` is not below the model's layers.
    """
    text = getattr(config, "get_text_config", lambda: config)()
    total = getattr(text, "num_hidden_layers", None)
    if not isinstance(total, int):
        raise InvalidArgumentError(f"{type(config).__name__} gives no num_hidden_layers: its layers cannot be cut")
    if not 1 <= layers < total:
        raise InvalidArgumentError(f"cannot keep {layers} of the model's {total} layers: keep 1 to {total - 1}")
    for name, value in list(vars(text).items()):
        if isinstance(value, (list, tuple)) and len(value) == total and name != "architectures":
            setattr(text, name, type(value)(value[:layers]))
    text.num_hidden_layers = layers


def _tokenizer(transformers: Any, source: str, local_dir: str | os.PathLike[str] | None, common: dict[str, Any]) -> Any:
    """The model's tokenizer, or None when its folder has none (or none loads)."""
    if local_dir is not None and not any((Path(local_dir) / f).is_file() for f in _TOKENIZER_FILES):
        LOGGER.info("no tokenizer exported: %s has no tokenizer files (%s)", source, ", ".join(_TOKENIZER_FILES))
        return None
    try:
        return transformers.AutoTokenizer.from_pretrained(source, **common)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        LOGGER.info("no tokenizer exported: %s has none that loads (%s)", source, type(exc).__name__)
        return None


def load_model(
    model_slug: str | None,
    local_dir: str | os.PathLike[str] | None,
    *,
    trust_remote_code: bool,
    attn_implementation: str,
    dtype: torch.dtype = torch.float32,
    with_tokenizer: bool = True,
    merge_peft: str | os.PathLike[str] | None = None,
    layers: int | None = None,
) -> tuple[nn.Module, Any, Any]:
    """Loads a causal language model from the Hugging Face Hub (``model_slug``) or a folder (``local_dir``).

    With ``layers``, only its first ``layers`` decoder layers and its head are built and read (see
    :func:`first_layers`).

    Returns:
        The model (its weights cast to ``dtype`` as they load: one copy in memory; with
        ``merge_peft``, that adapter merged in), its config, and its tokenizer (None when not asked
        for or when the source has none).

    Raises:
        LLMExportError: not exactly one source given, the source cannot be read, or it is not a
            causal language model; or the adapter cannot be merged.
    """
    transformers = import_transformers()
    if merge_peft is not None:
        import_peft()  # before any weight is read
    started = time.monotonic()
    config, source, common = _read_config(transformers, model_slug, local_dir, trust_remote_code)
    if layers is not None:
        first_layers(config, layers)
    LOGGER.info("loading %s%s", source, "" if layers is None else f" (its first {layers} layers)")
    try:
        chosen = {} if attn_implementation == "auto" else {"attn_implementation": attn_implementation}
        model = transformers.AutoModelForCausalLM.from_pretrained(
            source, config=config, dtype=dtype, **chosen, **common
        )
    except (OSError, ValueError) as exc:
        raise LLMExportError(
            f"cannot load {source} ({describe_architecture(config)}) as a causal language model: "
            f"{' '.join(str(exc).split())[:400]}"
        ) from exc
    parameters = list(model.parameters())
    LOGGER.info(
        "loaded %s: %d weights, %.1fM parameters (%s) in %.1f s",
        type(model).__name__,
        len(parameters),
        sum(p.numel() for p in parameters) / 1e6,
        format_size(sum(p.numel() * p.element_size() for p in parameters)),
        time.monotonic() - started,
    )
    if merge_peft is not None:
        model = merge_peft_adapter(model, merge_peft)
    tokenizer = _tokenizer(transformers, source, local_dir, common) if with_tokenizer else None
    return model, config, tokenizer


def build_skeleton(
    local_dir: str | os.PathLike[str],
    *,
    trust_remote_code: bool,
    attn_implementation: str,
    dtype: torch.dtype = torch.float32,
    with_tokenizer: bool = True,
) -> tuple[nn.Module, Any, Any]:
    """Builds the causal language model saved in ``local_dir`` without its weights.

    Every parameter is on the meta device (see :func:`torch_to_nnef.capture.meta.weights_on_meta`),
    in the type loading it in ``dtype`` gives it (``dtype``, but for the modules the model keeps in
    f32); buffers are computed by the model's code, as loading computes them. Building costs the
    same for any size of model.

    Returns:
        The model, its config, and its tokenizer (None when not asked for or when the folder has
        none).

    Raises:
        LLMExportError: the folder cannot be read, or it is not a causal language model.
    """
    transformers = import_transformers()
    config, source, common = _read_config(transformers, None, local_dir, trust_remote_code)
    chosen = {} if attn_implementation == "auto" else {"attn_implementation": attn_implementation}
    try:
        with weights_on_meta():
            model = transformers.AutoModelForCausalLM.from_config(
                config, dtype=dtype, trust_remote_code=trust_remote_code, **chosen
            )
    except (OSError, ValueError, TypeError) as exc:
        raise LLMExportError(
            f"cannot build {source} ({describe_architecture(config)}) as a causal language model: "
            f"{' '.join(str(exc).split())[:400]}"
        ) from exc
    _keep_in_f32(model)
    tokenizer = _tokenizer(transformers, source, local_dir, common) if with_tokenizer else None
    return model.eval(), config, tokenizer


def _keep_in_f32(model: nn.Module) -> None:
    """Puts back in f32 the weights of the modules ``model`` keeps in f32 (``_keep_in_fp32_modules``),
    as loading it in a narrower float type does.
    """
    kept: set[str] = set()
    for attribute in ("_keep_in_fp32_modules", "_keep_in_fp32_modules_strict"):
        kept.update(getattr(model, attribute, None) or ())
    if not kept:
        return
    for name, module in model.named_modules():
        if not kept.intersection(name.split(".")):
            continue
        for leaf, param in module.named_parameters(recurse=False):
            if param.is_floating_point() and param.dtype != torch.float32:
                setattr(module, leaf, nn.Parameter(param.to(torch.float32), requires_grad=False))
