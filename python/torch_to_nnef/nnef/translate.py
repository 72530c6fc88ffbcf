"""The translation driver: a captured IR graph walked node by node through the op registry into an
NNEF document, its tensors and its ``graph.quant``.

Every unsupported op is reported at once, before anything is written; a node whose kind a custom
extractor claims is handed to it; the ``TractNNEF.force_*_in_f32`` flags run their kinds in f32.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch_to_nnef.check.targets import InferenceTarget
from torch_to_nnef.check.versions import version_text
from torch_to_nnef.errors import TranslationError, UnsupportedOpsError
from torch_to_nnef.io.qtensor import q4_0_weights_for_export
from torch_to_nnef.ir import Graph, Node, SizeStep, Value, values_in
from torch_to_nnef.ir.dtypes import WIDE_UNSIGNED
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref, literal
from torch_to_nnef.op import custom_extractors as extractors
from torch_to_nnef.op.quantized import graph_quant
from torch_to_nnef.op.registry import Context, Registration, resolve, translate_node

LOGGER = logging.getLogger(__name__)


def unsupported_nodes(graph: Graph) -> list[Node]:
    """The nodes of ``graph`` that no translation is registered for."""
    return [n for n in graph.nodes if resolve(n.kind, n.overload) is None]


def _describe(node: Node) -> str:
    shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in node.args if isinstance(a, Value))
    return f"  - {node.kind}({shapes}) at {node.where()}"


def properties_fragment(properties: dict[str, str]) -> list[str]:
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
    missing = [n for n in unsupported_nodes(graph) if n.kind not in opaque]
    if missing:
        kinds = sorted({n.op_name for n in missing})
        lines = "\n".join(_describe(n) for n in missing)
        raise UnsupportedOpsError(
            f"{len(missing)} operation(s) of {len(kinds)} kind(s) cannot be exported yet ({', '.join(kinds)}):\n{lines}"
        )
    if not target.is_tract:
        _refuse_wide_unsigned(graph)
    tract_version = getattr(target, "version_tuple", None) if target.is_tract else None
    g = NNEFBuilder(
        tract=target.is_tract,
        naming_scheme=naming_scheme,
        tract_version=tract_version,
        spec_only=bool(getattr(target, "strict_spec", False)),
    )
    g.reserve([*input_names, *output_names])
    for letter, (_, high) in graph.symbols.items():
        g.need(f"tract_symbol {letter}")
        if high is not None and target.is_tract:
            # torch.export proved the model's code right up to this size only (a loop it unrolled, a
            # mask it sized): tract refuses larger inputs rather than computing something else
            LOGGER.warning(
                "the model's code holds for %s <= %d only (torch.export's range for it): tract will refuse more",
                letter,
                high,
            )
            g.need(f"tract_assert {letter}<={high}")
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

    ctx = Context(g=g, tract=target.is_tract, declare=declare, target=target)
    input_refs = []
    for v, name in zip(graph.inputs, input_names):
        ref = g.external(v, name)
        ctx.refs[v.name] = ref
        input_refs.append(ref)
    refused: list[str] = []
    for node in graph.nodes:
        g.scope = node.module_path.replace(".", "_")
        g.where = f"{node.kind} at {node.where()}"
        extractor = opaque.get(node.kind)
        try:
            if extractor is not None:
                g.scope = extractor.path.replace(".", "_")
                for v in node.args[0]:
                    ctx.ref(v)
                result = extractor.convert_to_nnef(
                    g, node, ctx.refs, Ref("0.0"), graph, inference_target=target, ctx=ctx
                )
            else:
                registration = resolve(node.kind, node.overload)
                assert registration is not None  # checked above
                if target.is_tract and any(ctx.flag(f) and node.kind in kinds for f, kinds in F32_FORCED.items()):
                    result = in_f32(ctx, node, registration)
                else:
                    result = translate_node(ctx, node, registration)
        except TranslationError as exc:
            # the rest is translated still, so that one error lists every operation the target refuses
            refused.append(str(exc))
            result = [Ref(f"refused_{out.name}") for out in node.outputs]
        except Exception as exc:
            if refused:  # a consequence of an earlier refusal, which is the error to report
                raise TranslationError(_refusal(refused, target)) from exc
            raise
        refs: list[Ref] = [result] if isinstance(result, Ref) else list(result)
        for out, ref in zip(node.outputs, refs):
            ctx.refs[out.name] = ref
        for out in node.outputs[len(refs) :]:
            unproduced[out.name] = node
    g.scope = ""
    if refused:
        raise TranslationError(_refusal(refused, target))
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
    header = properties_fragment(properties) if (properties and target.is_tract) else []
    doc = g.document("network", input_refs, output_refs, header=header)
    return doc, g.variables, graph_quant(g)


def _refusal(refused: Sequence[str], target: InferenceTarget) -> str:
    """One message for every operation the target refused, and the target that writes them."""
    distinct = list(dict.fromkeys(refused))  # one line for the operations of one source line alike
    if len(distinct) == 1:
        return distinct[0]
    lines = "\n".join(f"  - {r}" for r in distinct)
    return f"{len(distinct)} operations cannot be written for {type(target).__name__}:\n{lines}"


def _refuse_wide_unsigned(graph: Graph) -> None:
    """Refuses the model's first tensor of u16, u32 or u64 (an input, a weight or an operation's
    output): the NNEF specification's tools read no such integers, tract does.
    """
    found = [(f"input {v.name}", v.dtype) for v in graph.inputs if v.dtype in WIDE_UNSIGNED]
    for node in graph.nodes:
        found += [
            (f"weight {graph.parameters[v.name].torch_name}", v.dtype)
            for v in values_in(node.args)
            if v.dtype in WIDE_UNSIGNED and v.name in graph.parameters
        ]
        found += [(f"{node.kind} at {node.where()}", v.dtype) for v in node.outputs if v.dtype in WIDE_UNSIGNED]
    if found:
        where, dtype = found[0]
        raise TranslationError(
            f"{where}: {dtype} tensors cannot be exported for KhronosNNEF (the NNEF specification's tools "
            f"read no {dtype}): TractNNEF writes them, or cast to a signed integer in the model"
        )


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


def in_f32(ctx: Context, node: Node, registration: Registration) -> list[Ref]:
    """Runs ``registration`` on f32 copies of the node's f16 tensors and casts its outputs back."""
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
    result = translate_node(ctx, wide, registration)
    refs = [result] if isinstance(result, Ref) else list(result)
    return [
        g.op("tract_core_cast", r, to="f16", out=o.name) if o.dtype == "f16" else r for r, o in zip(refs, node.outputs)
    ]
