"""``export_model_to_nnef``: capture -> IR -> op registry -> NNEF document -> archive -> check."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_to_nnef import op as ops
from torch_to_nnef.archive import write_nnef_archive
from torch_to_nnef.capture import CaptureError, capture
from torch_to_nnef.capture_jit import capture_jit, reason_for_jit
from torch_to_nnef.debug_bundle import write_debug_bundle
from torch_to_nnef.errors import (
    InvalidArgumentError,
    IOMismatchError,
    MissingFolderError,
    NameClashError,
    T2NError,
    TractError,
)
from torch_to_nnef.inference_target import InferenceTarget, KhronosNNEF, TractNNEF, check_tolerance
from torch_to_nnef.ir import Graph, Node, SizeStep, Value
from torch_to_nnef.nnef_graph import LITERAL_PREFIXES, NAMING_SCHEMES, NNEFBuilder, Ref, literal
from torch_to_nnef.op import custom_extractors as extractors
from torch_to_nnef.op.quantized import graph_quant
from torch_to_nnef.qtensor import Q4_0_GGML_TRACT, q4_0_weights_for_export
from torch_to_nnef.tract import TractModel, check_outputs
from torch_to_nnef.tract_versions import version_text

LOGGER = logging.getLogger(__name__)


class UnsupportedOpsError(T2NError, NotImplementedError):
    """Ops the exporter cannot translate; the message lists every one of them at once."""


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


def _unsupported(graph: Graph) -> list[Node]:
    return [n for n in graph.nodes if ops.lookup(n.kind) is None]


def _describe(node: Node) -> str:
    shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in node.args if isinstance(a, Value))
    return f"  - {node.kind}({shapes}) at {node.where()}"


def _properties_fragment(properties: dict[str, str]) -> list[str]:
    """The ``tract_core_properties`` fragment: export metadata as strings."""
    items = ",\n".join(f"    ({literal(k)}, {literal(v)})" for k, v in properties.items())
    return [
        "",
        "fragment tract_core_properties(",
        ") -> (properties: (string, tensor<scalar>)[])",
        "{",
        f"  properties = [\n{items}\n  ];",
        "}",
    ]


def export_metadata(model: torch.nn.Module, target: InferenceTarget) -> dict[str, str]:
    """What an archive records about its making (no host, user or command line)."""
    from torch_to_nnef import __version__

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


def translate(
    graph: Graph,
    target: InferenceTarget,
    input_names: Sequence[str],
    output_names: Sequence[str],
    properties: dict[str, str] | None = None,
    naming_scheme: str = "natural_verbose",
    custom_extensions: Sequence[str] = (),
    opaque: Mapping[str, extractors.ModuleInfoExtractor] | None = None,
) -> tuple[str, dict[str, Any], str | None]:
    """Translates a captured graph to an NNEF document, its tensors and its ``graph.quant`` (or None)."""
    opaque = opaque or {}
    missing = [n for n in _unsupported(graph) if n.kind not in opaque]
    if missing:
        kinds = sorted({n.kind for n in missing})
        lines = "\n".join(_describe(n) for n in missing)
        raise UnsupportedOpsError(
            f"{len(missing)} operation(s) of {len(kinds)} kind(s) cannot be exported yet ({', '.join(kinds)}):\n{lines}"
        )
    tract_version = getattr(target, "version_tuple", None) if target.is_tract else None
    g = NNEFBuilder(tract=target.is_tract, naming_scheme=naming_scheme, tract_version=tract_version)
    g.reserve([*input_names, *output_names])
    for letter in graph.symbols:
        g.need(f"tract_symbol {letter}")
    for extension in custom_extensions:
        g.need(_over_steps(extension, graph.steps))
    labels: dict[int, Ref] = {}
    widened = frozenset(k for flag, kinds in F32_FORCED.items() if getattr(target, flag, False) for k in kinds)
    q4_0_blocks = q4_0_weights_for_export(graph, target, widened)

    unproduced: dict[str, Node] = {}

    def declare(v: Value) -> Ref:
        p = graph.parameters.get(v.name)
        if p is None:
            producer = unproduced.get(v.name)
            if producer is not None:
                raise UnsupportedOpsError(
                    f"{producer.kind} at {producer.where()}: its output {v.name} is used by the model, but this "
                    "exporter translates only its other outputs (e.g. the indices of a max pool)"
                )
            raise KeyError(v.name)
        key = id(p.tensor)
        if key not in labels:
            labels[key] = g.variable(q4_0_blocks.get(v.name, p.tensor), p.torch_name)
        return labels[key]

    ctx = ops.Context(g=g, tract=target.is_tract, declare=declare, target=target)
    input_refs = []
    for v, name in zip(graph.inputs, input_names):
        ref = g.external(v, name)
        ctx.refs[v.name] = ref
        input_refs.append(ref)
    for node in graph.nodes:
        g.scope = node.module_path.replace(".", "_")
        g.where = f"{node.kind} at {node.where()}"
        extractor = opaque.get(node.kind)
        if extractor is not None:
            g.scope = extractor.path.replace(".", "_")
            for v in node.args[0]:
                ctx.ref(v)
            result = extractor.convert_to_nnef(g, node, ctx.refs, Ref("0.0"), graph, inference_target=target, ctx=ctx)
        else:
            translation = ops.lookup(node.kind)
            assert translation is not None  # checked above
            if target.is_tract and any(ctx.flag(f) and node.kind in kinds for f, kinds in F32_FORCED.items()):
                result = _in_f32(ctx, node, translation)
            else:
                result = translation(ctx, node)
        refs: list[Ref] = [result] if isinstance(result, Ref) else list(result)
        for out, ref in zip(node.outputs, refs):
            ctx.refs[out.name] = ref
        for out in node.outputs[len(refs) :]:
            unproduced[out.name] = node
    g.scope = ""
    output_refs = [g.output(ctx.ref(v), name, v.dtype) for v, name in zip(graph.outputs, output_names)]
    if g.too_new:
        lines = "\n".join(f"  {where}: {op} needs tract >= {version_text(since)}" for op, since, where in g.too_new)
        newest = version_text(max(since for _, since, _ in g.too_new))
        raise UnsupportedOpsError(
            f"tract {version_text(tract_version or (0, 0, 0))} cannot run {len(g.too_new)} operation(s) of this "
            f"model:\n{lines}\ntarget TractNNEF(version='{newest}') or later"
        )
    if target.is_tract:
        g.need("tract_registry tract_core")
    header = _properties_fragment(properties) if (properties and target.is_tract) else []
    doc = g.document("network", input_refs, output_refs, header=header)
    return doc, g.variables, graph_quant(g)


def _over_steps(extension: str, steps: Mapping[str, SizeStep]) -> str:
    """A ``tract_assert`` over a letter written in steps (``H <= 512``) as over its symbol (``8*H_8 <= 512``)."""
    if not steps or not extension.startswith("tract_assert"):
        return extension
    return re.sub(r"\b[A-Za-z]\b", lambda m: f"({steps[m[0]].form})" if m[0] in steps else m[0], extension)


F32_FORCED = {
    "force_linear_accumulation_in_f32": frozenset(
        f"aten::{k}" for k in ("linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "einsum")
    ),
    "force_norm_in_f32": frozenset(
        f"aten::{k}"
        for k in (
            "layer_norm",
            "group_norm",
            "rms_norm",
            "instance_norm",
            "batch_norm",
            "_native_batch_norm_legit_no_training",
            # as older torch releases lower them
            "native_layer_norm",
            "native_group_norm",
            "_native_batch_norm_legit",
        )
    ),
    "force_attention_inner_in_f32": frozenset(
        {
            "aten::scaled_dot_product_attention",
            "aten::_scaled_dot_product_flash_attention_for_cpu",
            # the softmax of attention written out (nn.MultiheadAttention with need_weights, eager attention)
            "aten::softmax",
            "aten::_softmax",
        }
    ),
}
"""The ATen kinds each ``TractNNEF.force_*_in_f32`` flag computes in f32 when the model is f16."""


def _in_f32(ctx: ops.Context, node: Node, translation: ops.registry.Translation) -> list[Ref]:
    """Runs ``translation`` on f32 copies of the node's f16 tensors and casts its outputs back."""
    g = ctx.g

    def up(a: Any) -> Any:
        if isinstance(a, Value) and a.dtype == "f16":
            wide = Value(a.name + "_f32", "f32", a.shape)
            if wide.name not in ctx.refs:
                ctx.refs[wide.name] = g.op("tract_core_cast", ctx.ref(a), to="f32", out=wide.name)
            return wide
        if isinstance(a, (list, tuple)):
            return type(a)(up(x) for x in a)
        if isinstance(a, dict):
            return {k: up(v) for k, v in a.items()}
        return a

    wide_outputs = tuple(Value(o.name + "_f32", "f32", o.shape) if o.dtype == "f16" else o for o in node.outputs)
    wide = dataclasses.replace(node, args=tuple(up(a) for a in node.args), outputs=wide_outputs)
    result = translation(ctx, wide)
    refs = [result] if isinstance(result, Ref) else list(result)
    return [
        g.op("tract_core_cast", r, to="f16", out=o.name) if o.dtype == "f16" else r for r, o in zip(refs, node.outputs)
    ]


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
) -> Path:
    """Exports ``model`` called on ``args`` to an NNEF archive for ``inference_target``.

    The archive kind follows the path (``.nnef.tgz`` gzip, ``.nnef.tar``, otherwise a folder).
    With ``inference_target.check_io``, the archive is run in the linked tract and its outputs
    compared with PyTorch's; with dynamic axes also at a second length. When the check fails and
    ``debug_bundle_path`` is set, a bundle to replay it is written there (see
    :mod:`torch_to_nnef.debug_bundle`).

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
            :data:`torch_to_nnef.nnef_graph.NAMING_SCHEMES`).
        check_io_names_qte_match: with ``check_io``, also require the exported graph's inputs and
            outputs to carry exactly the given names, in order.
        custom_extensions: extra ``extension`` lines for ``graph.nnef`` (e.g. ``"tract_assert S <= 4096"``).
        overwrite: replace an existing output.
        frontend: how the model is captured: ``"export"`` (``torch.export``, symbolic dynamic axes),
            ``"jit"`` (``torch.jit.trace``: models quantized with ``torch.ao.quantization``, fixed shapes
            only) or ``"auto"`` (``torch.jit.trace`` for quantized models, otherwise ``torch.export``,
            falling back to ``torch.jit.trace`` when it refuses the model, unless the trace would only
            hold for this example's path through the code; the reason is logged).

    Returns:
        The path written.
    """
    LOGGER.setLevel(log_level)
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
    flat_args = _flatten_args(args)
    input_names = list(input_names or [f"input_{i}" for i in range(len(flat_args))])
    if len(input_names) != len(flat_args):
        raise NameClashError(f"{len(input_names)} input names for {len(flat_args)} input tensors")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = _flatten_outputs(model(*args) if isinstance(args, (list, tuple)) else model(args))
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
        written = write_nnef_archive(
            path,
            doc,
            tensors,
            graph_quant=quant,
            compression_level=compression_level,
            target="tract" if inference_target.is_tract else "khronos",
            q4_0_legacy=isinstance(inference_target, TractNNEF) and inference_target.version_tuple < Q4_0_GGML_TRACT,
            overwrite=overwrite,
            bf16=inference_target.bf16_as,
        )
        LOGGER.info("exported %s to %s", type(model).__name__, written)
        if inference_target.check_io:
            _check(
                model,
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


def _check(
    model: torch.nn.Module,
    flat_args: list[torch.Tensor],
    expected: list[torch.Tensor],
    path: Path,
    target: InferenceTarget,
    input_names: list[str],
    output_names: list[str],
    debug_bundle_path: str | os.PathLike[str] | None,
    names_must_match: bool = True,
    steps: Mapping[str, SizeStep] | None = None,
) -> None:
    registries: Sequence[Any] = ("tract_core", "tract_transformers", "tract_pulse") if target.is_tract else ()

    loaded: list[tuple[str, Callable[[list[np.ndarray]], list[np.ndarray]]]] = []
    # bfloat16 inputs are fed in the dtype they were exported as; references are compared in f32
    exported_bf16 = torch.float16 if target.bf16_as == "f16" else torch.float32
    tolerance = check_tolerance(target, any(e.dtype == torch.bfloat16 for e in expected))

    def run_and_compare(inputs: list[torch.Tensor], wanted: list[torch.Tensor], names: list[str]) -> None:
        arrays = [(a.to(exported_bf16) if a.dtype == torch.bfloat16 else a).detach().cpu().numpy() for a in inputs]
        references = [  # views with torch's lazy negation or conjugation bit resolved first
            (e.float() if e.dtype == torch.bfloat16 else e).detach().cpu().resolve_conj().resolve_neg().numpy()
            for e in wanted
        ]
        try:
            if not loaded:
                loaded.extend(_interpreters(path, target, registries, input_names, output_names, names_must_match))
            checked = 0
            for label, run in loaded:
                LOGGER.info("checking with %s", label)
                try:
                    got = run(arrays)
                except _InterpreterFailure as failure:
                    if len(loaded) == 1:
                        raise TractError(f"{label} could not run this export: {failure}") from failure
                    LOGGER.warning("%s could not run this export (%s); checked with the others", label, failure)
                    continue
                check_outputs(references, got, tolerance=tolerance, names=names)
                checked += 1
            assert checked, "at least one interpreter ran"
        except (IOMismatchError, TractError) as exc:
            if debug_bundle_path is None:
                raise
            bundle = write_debug_bundle(
                debug_bundle_path,
                path,
                arrays,
                references,
                input_names,
                output_names,
                tolerance=tolerance,
                registries=registries,
                error=str(exc),
                versions=export_metadata(model, target),
            )
            raise type(exc)(
                f"{exc}\ndebug bundle written to {bundle}: replay with python -m torch_to_nnef.debug_bundle {bundle}"
            ) from exc

    run_and_compare(flat_args, expected, output_names)
    LOGGER.info("check_io passed for %s", output_names)
    axes = target.dynamic_axes or {}
    if not axes:
        return
    # A second length: a model that only works at the traced size is an error. An axis the model
    # needs in steps (a U-Net's multiples of 8) takes the first such size from there.
    grown = []
    for name, a in zip(input_names, flat_args):
        shape = list(a.shape)
        for axis, letter in axes.get(name, {}).items():
            step = (steps or {}).get(letter)
            shape[axis] = step.next_size(shape[axis] + 7) if step else shape[axis] + 7
        if shape == list(a.shape):
            grown.append(a)
        elif a.dtype.is_floating_point:
            grown.append(torch.randn(shape, dtype=a.dtype, device=a.device))
        else:
            low, high = (int(a.min()), int(a.max()) + 1) if a.numel() else (0, 2)
            grown.append(torch.randint(low, high, shape, dtype=a.dtype, device=a.device))
    with torch.no_grad():
        expected2 = _flatten_outputs(model(*grown))
    sizes = ", ".join(
        f"{name}{list(a.shape)}" for name, a, b in zip(input_names, grown, flat_args) if a.shape != b.shape
    )
    run_and_compare(grown, expected2, [f"{n} (at {sizes})" for n in output_names])


def _interpreters(
    path: Path,
    target: InferenceTarget,
    registries: Sequence[Any],
    input_names: list[str],
    output_names: list[str],
    names_must_match: bool,
) -> list[tuple[str, Callable[[list[np.ndarray]], list[np.ndarray]]]]:
    """What runs the export for the check: tract with its registries for TractNNEF; for KhronosNNEF,
    tract restricted to the standard NNEF registry (when it has every op used) and the Khronos
    NNEF-Tools interpreter (when installed), each compared with PyTorch.
    """
    found: list[tuple[str, Callable[[list[np.ndarray]], list[np.ndarray]]]] = []
    tract_failure: TractError | None = None
    try:
        model = TractModel(path, registries=registries)
        if names_must_match:
            _check_names(model, input_names, output_names)
        found.append(("tract" if target.is_tract else "tract (standard NNEF registry)", model.run))
    except TractError as exc:
        if target.is_tract:
            raise
        tract_failure = exc
    if target.is_tract:
        return found
    try:
        from nnef_tools.interpreter.pytorch import Interpreter
    except ImportError:
        if tract_failure is not None:
            raise TractError(
                f"no interpreter of the NNEF specification could check this export: tract's standard registry "
                f"cannot read it ({tract_failure}), and the Khronos interpreter is not installed: "
                "pip install 'torch_to_nnef[khronos]'"
            ) from tract_failure
        LOGGER.info("the Khronos NNEF-Tools interpreter is not installed: checked with tract alone")
        return found
    found.append(("the Khronos NNEF-Tools interpreter", _khronos_interpreter(Interpreter, path)))
    return found


class _InterpreterFailure(T2NError, RuntimeError):
    """The Khronos interpreter failed inside (e.g. an operator rank it does not implement)."""


def _khronos_interpreter(interpreter: Any, path: Path) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    import tarfile
    import tempfile

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with tempfile.TemporaryDirectory(prefix="t2n-khronos-") as tmp:
            folder = path
            if path.is_file():
                with tarfile.open(path) as tar:  # our own archive, already written and scanned
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(tmp, filter="data")
                    else:  # Python < 3.11.4
                        tar.extractall(tmp)
                folder = Path(tmp)
            try:
                with warnings.catch_warnings():  # the interpreter's own use of torch warns
                    warnings.simplefilter("ignore")
                    outputs = interpreter(str(folder), device="cpu")(arrays)
            except Exception as exc:  # any failure inside the third-party interpreter
                raise _InterpreterFailure(f"{type(exc).__name__}: {exc}") from exc
            return [np.asarray(v) for v in outputs.values()]

    return run


def _check_names(model: TractModel, input_names: list[str], output_names: list[str]) -> None:
    got_in, got_out = [i[0] for i in model.inputs], [o[0] for o in model.outputs]
    if got_in != input_names or got_out != output_names:
        raise IOMismatchError(
            f"the exported graph's inputs {got_in} and outputs {got_out} differ from the names asked for "
            f"({input_names} -> {output_names})"
        )
