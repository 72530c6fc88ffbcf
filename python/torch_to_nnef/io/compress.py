"""Weight compression for export: a registry of functions that turn a model's float weights into
:class:`~torch_to_nnef.io.qtensor.QTensor` values, and a loader for registries of your own.

Every registry entry is ``function(model, **options) -> model``. The built-in ones work **in
place**: they replace the weights of the chosen module classes by Q4_0 QTensors and return the
same model (``copy.deepcopy(model)`` first to keep the float one). They never touch anything else:

- a weight shared with a module of another class (a language-model head tied to an embedding
  table under ``min_max_q4_0``) stays float, with the reason logged;
- a weight Q4_0 cannot hold (rank 1, rows whose size is not a multiple of 32, non-finite
  values) stays float, with the reason logged;
- a weight that is a QTensor already is left as it is.

A registry of your own is a mapping from names to such functions in any importable module, given
by its dotted path (``"my_pkg.registry.MY_REGISTRY"``, see :func:`load_compression_registry`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import torch
from torch import nn

from torch_to_nnef.errors import DTypeError, InvalidArgumentError, ShapeError, T2NError
from torch_to_nnef.io.qtensor import QTensor, QTensorError, fp_to_tract_q4_0_with_min_max_calibration

LOGGER = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COMPRESSION",
    "DEFAULT_COMPRESSION_REGISTRY",
    "CompressionRegistryError",
    "Compressor",
    "compress_model",
    "load_compression_registry",
    "quantize_weights_min_max_q4_0",
]

Compressor = Callable[..., nn.Module]
"""``function(model, **options) -> model``."""

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


class CompressionRegistryError(T2NError, ValueError):
    """A compression registry that cannot be loaded or used (the message says which and why)."""


def quantize_weights_min_max_q4_0(
    model: nn.Module,
    *,
    module_classes: tuple[type[nn.Module], ...] = (nn.Linear,),
    percentile: float = 1.0,
    threads: int | None = None,
    **unknown: Any,
) -> nn.Module:
    """Replaces, in place, the ``weight`` of every module of ``module_classes`` by its Q4_0
    QTensor (min-max calibration, see
    :func:`~torch_to_nnef.io.qtensor.fp_to_tract_q4_0_with_min_max_calibration`).

    Args:
        model: the model to compress; it is modified and returned.
        module_classes: the module classes whose weight is quantized.
        percentile: see :func:`~torch_to_nnef.io.qtensor.fp_to_tract_q4_0_with_min_max_calibration`.
        threads: quantization threads (default: all cores).
        unknown: other options (a caller may pass options meant for other compressors): ignored,
            with a warning.

    Returns:
        ``model``.
    """
    if not (isinstance(module_classes, tuple) and all(issubclass(c, nn.Module) for c in module_classes)):
        raise InvalidArgumentError(f"module_classes must be a tuple of nn.Module classes, got {module_classes!r}")
    if unknown:
        LOGGER.warning("min-max Q4_0 ignores the option(s) %s", ", ".join(sorted(unknown)))
    holders: dict[int, list[tuple[str, nn.Module]]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        weight = module._parameters.get("weight")
        if weight is not None:
            holders.setdefault(id(weight), []).append((name, module))
    done: set[int] = set()
    with torch.no_grad():
        for name, module in model.named_modules():
            weight = module._parameters.get("weight")
            if not isinstance(module, module_classes) or weight is None or id(weight) in done:
                continue
            done.add(id(weight))
            label = f"{name}.weight" if name else "weight"
            if isinstance(weight, QTensor):
                LOGGER.info("%s is quantized already", label)
                continue
            shared = holders[id(weight)]
            others = [f"{n or '<top>'} ({type(m).__name__})" for n, m in shared if not isinstance(m, module_classes)]
            if others:
                LOGGER.warning("%s stays float: it is shared with %s, not asked for", label, ", ".join(others))
                continue
            try:
                quantized = fp_to_tract_q4_0_with_min_max_calibration(weight, percentile, threads=threads, inplace=True)
            except (ShapeError, DTypeError, QTensorError) as exc:
                LOGGER.warning("%s stays float: %s", label, exc)
                continue
            for _, holder in shared:
                holder.weight = quantized
            LOGGER.info("%s quantized to Q4_0", label)
    return model


DEFAULT_COMPRESSION_REGISTRY = "torch_to_nnef.io.compress.DEFAULT_COMPRESSION"
"""Dotted path of :data:`DEFAULT_COMPRESSION`."""

DEFAULT_COMPRESSION: dict[str, Compressor] = {
    "min_max_q4_0": quantize_weights_min_max_q4_0,
    "min_max_q4_0_with_embeddings": partial(quantize_weights_min_max_q4_0, module_classes=(nn.Linear, nn.Embedding)),
    "min_max_q4_0_all": partial(quantize_weights_min_max_q4_0, module_classes=(nn.Linear, nn.Embedding, *_CONVS)),
}
"""The built-in compressors: Q4_0 of Linear weights; of Linear and Embedding weights; of Linear,
Embedding and convolution (1-3 D) weights."""


def load_compression_registry(path: str) -> Mapping[str, Compressor]:
    """Imports a compression registry by its dotted path: ``"my_pkg.registry.MY_REGISTRY"`` is
    the mapping ``MY_REGISTRY`` of the module ``my_pkg.registry``.

    Raises:
        CompressionRegistryError: a path without a module, a module that cannot be found or
            imported, a missing attribute, or an attribute that is not a mapping from names to
            callables.
    """
    if not isinstance(path, str) or "." not in path.strip("."):
        raise CompressionRegistryError(
            f"compression registry {path!r} is not a dotted path such as 'my_pkg.registry.MY_REGISTRY'"
        )
    module_name, attribute = path.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CompressionRegistryError(
                f"compression registry {path!r}: no module named {missing!r} (is it installed, or on PYTHONPATH?)"
            ) from exc
        raise CompressionRegistryError(f"compression registry {path!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # the user's module raised while being imported
        raise CompressionRegistryError(
            f"compression registry {path!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not hasattr(module, attribute):
        public = sorted(n for n, v in vars(module).items() if isinstance(v, Mapping) and not n.startswith("_"))
        hint = f" (its mappings: {', '.join(public)})" if public else ""
        raise CompressionRegistryError(f"compression registry {path!r}: {module_name} has no {attribute!r}{hint}")
    registry = getattr(module, attribute)
    if not isinstance(registry, Mapping):
        raise CompressionRegistryError(
            f"compression registry {path!r} is a {type(registry).__name__}, not a mapping from names to functions"
        )
    bad = [repr(k) for k, v in registry.items() if not (isinstance(k, str) and callable(v))]
    if bad:
        raise CompressionRegistryError(
            f"compression registry {path!r}: entries {', '.join(bad)} are not name -> function(model, **options)"
        )
    return registry


def compress_model(
    model: nn.Module,
    name: str,
    registry: str | Mapping[str, Compressor] = DEFAULT_COMPRESSION,
    **options: Any,
) -> nn.Module:
    """Runs the compressor ``name`` of ``registry`` (a mapping, or a dotted path for
    :func:`load_compression_registry`) on ``model`` and returns its result.

    Raises:
        CompressionRegistryError: the registry cannot be loaded, has no ``name``, or its function
            does not return a module.
    """
    entries = load_compression_registry(registry) if isinstance(registry, str) else registry
    if name not in entries:
        raise CompressionRegistryError(
            f"no compressor named {name!r}; the registry has: {', '.join(sorted(entries)) or 'nothing'}"
        )
    result = entries[name](model, **options)
    if not isinstance(result, nn.Module):
        raise CompressionRegistryError(f"compressor {name!r} returned a {type(result).__name__}, not the model")
    return result
