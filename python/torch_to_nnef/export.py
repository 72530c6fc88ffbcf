"""``export_model_to_nnef``, the public entry point: capture -> IR -> op registry -> NNEF document ->
archive -> check, each stage in its own package (see docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from torch_to_nnef import __version__
from torch_to_nnef.capture.errors import CaptureError
from torch_to_nnef.capture.jit import capture_jit, reason_for_jit
from torch_to_nnef.capture.meta import buffers_on_meta
from torch_to_nnef.capture.torch_export import capture
from torch_to_nnef.check.export_check import LOGGER as CHECK_LOGGER
from torch_to_nnef.check.export_check import check_export
from torch_to_nnef.check.targets import InferenceTarget, KhronosNNEF, TractNNEF
from torch_to_nnef.errors import InvalidArgumentError, MissingFolderError, NameClashError, UnsupportedOpsError
from torch_to_nnef.io.archive import write_nnef_archive
from torch_to_nnef.io.dat import Target
from torch_to_nnef.io.qtensor import Q4_0_GGML_TRACT
from torch_to_nnef.io.streamed import (
    CheckpointRows,
    open_checkpoint,
    weight_sources,
    with_values,
    write_streamed_archive,
)
from torch_to_nnef.ir import Graph
from torch_to_nnef.nnef.builder import LITERAL_PREFIXES, NAMING_SCHEMES
from torch_to_nnef.nnef.translate import translate
from torch_to_nnef.op import custom_extractors as extractors

__all__ = ["UnsupportedOpsError", "export_metadata", "export_model_to_nnef", "observe_exports"]

LOGGER = logging.getLogger(__name__)


def _flatten_args(args: Any) -> list[torch.Tensor]:
    if isinstance(args, torch.Tensor):
        return [args]
    if isinstance(args, (list, tuple)):
        flat: list[torch.Tensor] = []
        for a in args:
            flat.extend(_flatten_args(a))
        return flat
    raise InvalidArgumentError(f"args must be a tensor or a (nested) tuple/list of tensors, got {type(args).__name__}")


def _flatten_outputs(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        flat: list[torch.Tensor] = []
        for o in out:
            flat.extend(_flatten_outputs(o))
        return flat
    LOGGER.warning("the model returns a %s among its outputs: it is not a tensor and is dropped", type(out).__name__)
    return []


def _describe_returned(out: Any) -> str:
    """What a forward returned, for messages (``None``, ``3 (an int)``, ``a tuple of an int and None``)."""
    if out is None:
        return "None"
    if isinstance(out, (list, tuple, dict)):
        items = list(out.values()) if isinstance(out, dict) else list(out)
        inner = ", ".join(_describe_returned(o) for o in items) or "nothing"
        return f"a {type(out).__name__} of {inner}"
    kind = type(out).__name__
    return f"{repr(out)[:40]} ({'an' if kind[:1] in 'aeiou' else 'a'} {kind})"


ExportObserver = Callable[[Graph, Any, InferenceTarget], None]
"""``observer(graph, exported_program, inference_target)``: see :func:`observe_exports`."""
_OBSERVERS: list[ExportObserver] = []


def observe_exports(observer: ExportObserver) -> Callable[[], None]:
    """Calls ``observer`` after each :func:`export_model_to_nnef` that succeeds (written, and checked
    when ``check_io``) with the captured IR graph, torch's ``ExportedProgram`` and the target.

    The op coverage recorder (``make coverage``) uses it to learn which ATen kinds each test case
    translated.

    Returns:
        The function that removes ``observer``.
    """
    _OBSERVERS.append(observer)
    return lambda: _OBSERVERS.remove(observer)


def export_metadata(model: torch.nn.Module, target: InferenceTarget) -> dict[str, str]:
    """What an archive records about its making (no host, user or command line)."""
    kind = "TractNNEF" if target.is_tract else "KhronosNNEF"
    cls = type(model)
    props = {
        "torch_to_nnef_version": __version__,
        "torch_version": torch.__version__,
        "inference_target": f"{kind} {target.version}",
        "exported_class": f"{cls.__module__}.{cls.__qualname__}",
        "export_date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if isinstance(target, TractNNEF):
        if target.dump_identity_properties:
            import getpass
            import socket

            props["hostname"] = socket.gethostname()
            props["user"] = getpass.getuser()
            props["command_line"] = " ".join(sys.argv)
        clash = sorted(set(props) & set(target.specific_properties or {}))
        if clash:
            raise NameClashError(f"specific_properties may not redefine {clash}: the exporter writes these itself")
        props.update(target.specific_properties or {})
    return props


def export_model_to_nnef(
    model: torch.nn.Module,
    args: Any,
    file_path_export: str | os.PathLike[str],
    inference_target: InferenceTarget,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    debug_bundle_path: str | os.PathLike[str] | None = None,
    compression_level: int = 0,
    log_level: int = logging.INFO,
    nnef_variable_naming_scheme: str = "natural_verbose",
    check_io_names_qte_match: bool = True,
    custom_extensions: Sequence[str] | None = None,
    overwrite: bool = False,
    frontend: str = "auto",
    weights_checkpoint: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Exports ``model`` called on ``args`` to an NNEF archive for ``inference_target``.

    The archive kind follows the path (``.nnef.tgz`` gzip, ``.nnef.tar``, otherwise a folder).
    With ``inference_target.check_io``, the archive is run in the linked tract and its outputs
    compared with PyTorch's; with dynamic axes also at a second length. When the check fails and
    ``debug_bundle_path`` is set, a bundle to replay it is written there (see
    :mod:`torch_to_nnef.check.debug_bundle`).

    Args:
        model: the module to export (run in eval mode; its parameters, mode and outputs are left
            as they were).
        args: a tensor or a (nested) tuple/list of tensors, as ``model(*args)`` takes them.
        file_path_export: ``.nnef.tgz``, ``.nnef.tar`` or a folder path.
        inference_target: :class:`TractNNEF` or :class:`KhronosNNEF`.
        input_names: names of the graph inputs (default ``input_0``, ...).
        output_names: names of the graph outputs (default ``output_0``, ...).
        debug_bundle_path: where to write a replayable bundle if the check fails.
        compression_level: gzip level for ``.tgz``.
        log_level: logging level of this export.
        nnef_variable_naming_scheme: how intermediate identifiers are named: ``raw``,
            ``natural_verbose``, ``natural_verbose_camel`` or ``numeric`` (see
            :data:`torch_to_nnef.nnef.builder.NAMING_SCHEMES`).
        check_io_names_qte_match: with ``check_io``, also require the exported graph's inputs and
            outputs to carry exactly the given names, in order.
        custom_extensions: extra ``extension`` lines for ``graph.nnef`` (e.g. ``"tract_assert S <= 4096"``).
        overwrite: replace an existing output.
        frontend: how the model is captured: ``"export"`` (``torch.export``, symbolic dynamic axes),
            ``"jit"`` (``torch.jit.trace``: models quantized with ``torch.ao.quantization``, fixed shapes
            only) or ``"auto"`` (``torch.jit.trace`` for quantized models, otherwise ``torch.export``,
            falling back to ``torch.jit.trace`` when it refuses the model, unless the trace would only
            hold for this example's path through the code; the reason is logged).
        weights_checkpoint: for a model built without its weights (its parameters on the meta
            device, e.g. built under :func:`torch_to_nnef.weights_on_meta`, which keeps the
            buffers its code computes), the safetensors files they are read from: a folder (its
            ``model.safetensors.index.json`` shards, or its ``*.safetensors``), a file, or a list
            of files, holding each weight under its name in ``model.state_dict()``. The model is
            captured on the meta device and each weight is read, converted and written one at a
            time: memory holds a few tensors whatever the model's size. Needs ``torch.export``
            (``frontend`` ``"auto"`` or ``"export"``) and ``check_io=False`` (the check runs the model
            in PyTorch, which needs its weights in memory).

    Returns:
        The path written.

    Raises:
        CheckpointMismatchError: ``weights_checkpoint`` lacks weights of the model, or holds them in
            other shapes (the message names them).
    """
    LOGGER.setLevel(log_level)
    CHECK_LOGGER.setLevel(log_level)
    if not isinstance(model, torch.nn.Module):
        raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inference_target, (TractNNEF, KhronosNNEF)):
        raise InvalidArgumentError("inference_target must be TractNNEF(...) or KhronosNNEF(...)")
    if nnef_variable_naming_scheme not in NAMING_SCHEMES:
        raise InvalidArgumentError(
            f"nnef_variable_naming_scheme {nnef_variable_naming_scheme!r} is unknown: use one of {NAMING_SCHEMES}"
        )
    extensions = _check_extensions(custom_extensions, inference_target)
    if frontend not in ("auto", "export", "jit"):
        raise InvalidArgumentError(f"frontend {frontend!r} is unknown: use 'auto', 'export' or 'jit'")
    path = Path(file_path_export)
    if not path.parent.is_dir():
        raise MissingFolderError(f"cannot write {path}: its folder {path.parent} does not exist")
    checkpoint, sources, rows = None, {}, None
    if weights_checkpoint is not None:
        if inference_target.check_io:
            raise InvalidArgumentError(
                "check_io runs the model in PyTorch, which needs its weights in memory: pass check_io=False with "
                "weights_checkpoint (or load the weights into the model)"
            )
        if frontend == "jit":
            raise InvalidArgumentError("weights_checkpoint needs torch.export: use frontend='auto' or 'export'")
        checkpoint = open_checkpoint(weights_checkpoint)
        sources = weight_sources(model, checkpoint)  # before anything runs: the checkpoint is the model's
        rows = CheckpointRows.by_name(model, checkpoint)  # and views of its weights that the graph declares
        frontend = "export"
        args = _on_meta(args)
    flat_args = _flatten_args(args)
    input_names = list(input_names or [f"input_{i}" for i in range(len(flat_args))])
    if len(input_names) != len(flat_args):
        raise NameClashError(f"{len(input_names)} input names for {len(flat_args)} input tensors")
    was_training = model.training
    model.eval()
    try:
        with contextlib.ExitStack() as stack:
            # a model without its weights runs on the meta device whole; its real buffers are written
            real_buffers = stack.enter_context(buffers_on_meta(model)) if checkpoint is not None else {}
            with torch.no_grad():
                returned = model(*args) if isinstance(args, (list, tuple)) else model(args)
            expected = _flatten_outputs(returned)
            if not expected:
                raise InvalidArgumentError(
                    f"{type(model).__name__}.forward returned {_describe_returned(returned)}, no tensor: the export "
                    "would have no output. Return the tensors to export (a Python number, such as x.shape[0], "
                    "is not an output of the graph)"
                )
            output_names = list(output_names or [f"output_{i}" for i in range(len(expected))])
            if len(output_names) != len(expected):
                raise NameClashError(f"{len(output_names)} output names for {len(expected)} output tensors")
            names = input_names + output_names
            clashes = sorted({n for n in names if names.count(n) > 1})
            if clashes:
                raise NameClashError(f"names used more than once among inputs and outputs: {clashes}")
            for n in names:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n):
                    raise InvalidArgumentError(f"{n!r} is not a valid NNEF identifier (letters, digits, '_')")
                if inference_target.is_tract and n.startswith(LITERAL_PREFIXES):
                    raise InvalidArgumentError(
                        f"{n!r} starts with {next(p for p in LITERAL_PREFIXES if n.startswith(p))!r}, which tract's "
                        "parser reads as a logical literal: choose another name"
                    )
            with extractors.opaque(model) as opaque:
                graph, exported = _capture(
                    model, flat_args, input_names, inference_target.dynamic_axes, frontend, inference_target.bf16_as
                )
                doc, tensors, quant = translate(
                    graph,
                    inference_target,
                    input_names,
                    output_names,
                    export_metadata(model, inference_target),
                    naming_scheme=nnef_variable_naming_scheme,
                    custom_extensions=extensions,
                    opaque=opaque,
                )
            q4_0_legacy = isinstance(inference_target, TractNNEF) and inference_target.version_tuple < Q4_0_GGML_TRACT
            target: Target = "tract" if inference_target.is_tract else "khronos"
            if checkpoint is None:
                written = write_nnef_archive(
                    path,
                    doc,
                    tensors,
                    graph_quant=quant,
                    compression_level=compression_level,
                    target=target,
                    q4_0_legacy=q4_0_legacy,
                    overwrite=overwrite,
                    bf16=inference_target.bf16_as,
                )
            else:
                ready, sources = with_values(tensors, sources, real_buffers, rows)
                totals = write_streamed_archive(
                    path,
                    doc,
                    ready,
                    sources,
                    checkpoint,
                    graph_quant=quant,
                    compression_level=compression_level,
                    target=target,
                    q4_0_legacy=q4_0_legacy,
                    overwrite=overwrite,
                    bf16=inference_target.bf16_as or "error",
                )
                written = path
                LOGGER.info("read %d bytes of weights from the checkpoint", totals.read)
            LOGGER.info("exported %s to %s", type(model).__name__, written)
            if inference_target.check_io:
                check_export(
                    lambda inputs: _flatten_outputs(model(*inputs)),
                    export_metadata(model, inference_target),
                    flat_args,
                    expected,
                    written,
                    inference_target,
                    input_names,
                    output_names,
                    debug_bundle_path,
                    check_io_names_qte_match,
                    graph.steps,
                )
        for observer in list(_OBSERVERS):
            observer(graph, exported, inference_target)
    finally:
        model.train(was_training)
    return written


def _on_meta(args: Any) -> Any:
    """``args`` (nested tuples and lists of tensors) with each tensor on the meta device."""
    if isinstance(args, torch.Tensor):
        return args.to("meta")
    if isinstance(args, (list, tuple)):
        return type(args)(_on_meta(a) for a in args)
    return args


def _capture(
    model: torch.nn.Module,
    flat_args: list[torch.Tensor],
    input_names: list[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    frontend: str,
    bf16_as: str | None = None,
) -> tuple[Graph, Any]:
    """The model's graph from the chosen front-end and torch's ``ExportedProgram`` (None from the jit
    front-end); ``"auto"`` says why it leaves torch.export.
    """
    if frontend == "jit":
        return capture_jit(model, flat_args, input_names, dynamic_axes)[0], None
    if frontend == "auto":
        reason = reason_for_jit(model)
        if reason is not None:
            LOGGER.info("capturing with torch.jit.trace: %s, which torch.export cannot capture", reason)
            return capture_jit(model, flat_args, input_names, dynamic_axes)[0], None
        try:
            return capture(model, flat_args, input_names, dynamic_axes, bf16_as=bf16_as)
        except CaptureError as exc:
            if dynamic_axes:
                raise  # the jit front-end has no dynamic axes: torch.export's reason is the useful one
            LOGGER.warning("torch.export refused the model, capturing with torch.jit.trace instead: %s", exc)
            try:
                return capture_jit(model, flat_args, input_names, refuse_unsound=True)[0], None
            except CaptureError as jit_exc:
                raise CaptureError(f"{exc}\n(torch.jit.trace was tried too: {jit_exc})") from jit_exc
    reason = reason_for_jit(model)
    if reason is not None:
        raise CaptureError(
            f"torch.export cannot capture {type(model).__name__}: {reason}; use frontend='jit' or 'auto'"
        )
    return capture(model, flat_args, input_names, dynamic_axes, bf16_as=bf16_as)


def _check_extensions(extensions: Sequence[str] | None, target: InferenceTarget) -> list[str]:
    if extensions is None:
        return []
    if isinstance(extensions, str) or not all(isinstance(e, str) for e in extensions):
        raise InvalidArgumentError("custom_extensions must be a list of strings such as ['tract_assert S <= 4096']")
    cleaned = []
    for e in extensions:
        e = e.strip().removeprefix("extension").strip().rstrip(";").strip()
        if not re.fullmatch(r"[A-Za-z_][\w ,.<>=+\-*/()]*", e):
            raise InvalidArgumentError(f"custom extension {e!r} is not a valid NNEF extension line")
        if not target.is_tract and e.startswith("tract_"):
            raise InvalidArgumentError(f"custom extension {e!r} is tract's: use TractNNEF")
        cleaned.append(e)
    return cleaned
