"""Mixture-of-experts layers of transformers, rewritten into a form that traces into a static graph.

transformers computes a layer of routed experts (``MixtralExperts``, ``Qwen3MoeExperts``,
``GptOssExperts``... every class decorated by ``use_experts_implementation``) by looping over the
experts the routing picked: the loop's length, the tokens of each expert and the scatter back
(``one_hot``, ``nonzero``, ``where``, ``index_add_``) all depend on the values, which a graph of
fixed operations cannot hold. :func:`rewrite_experts` turns each such module, in place, into its
exact static form:

- every expert gets linear layers of its own (``gate_up_linears[e]`` / ``down_linears[e]``,
  views of the stacked ``[E, out, in]`` weights, or their transposes when the class stores them
  ``[E, in, out]``), so that compressors such as ``min_max_q4_0`` pack expert weights like any
  linear weight;
- every expert is computed for every token, and its output weighted by the token's routing weight
  for that expert (zero for the experts not picked): the routing mask
  ``sum_k top_k_weights[t, k] * (top_k_index[t, k] == e)``. The sum runs over the experts in the
  order transformers adds them, in the same float types.

The module's own gate (``_apply_gate``: SwiGLU, gpt-oss' clamped SwiGLU on interleaved
projections...), activation, biases and post-expert norm are used as they are. The router (top-k,
softmax, normalisation, shared experts) is left to the model's own code, which traces as it is.
This costs every expert's compute per token (``E / k`` times the routed compute): the numbers are
transformers' own.

tract 0.23.9 and later compute a whole routed block (router, top-k, experts) as one operator,
``tract_moe_ffn``, which runs only the experts each token picked. With ``fused=True``,
:func:`rewrite_experts` gives each layer that operator when what the layer computes is one it
computes; what it checks, on a run of each block alone on random values (:func:`fuse_routing`):

- the router: the experts' indices and weights are, for every token, the top-k of a linear layer
  of the block (``[E, D]`` weight, optional bias) over the experts' own inputs, weighted by the
  softmax of the k logits (Mixtral, Qwen-MoE normalised, GraniteMoE, gpt-oss), the softmax of
  all of them (OLMoE, Qwen-MoE unnormalised), their sigmoid or the raw logits;
- the experts: their gate is SiLU-gated (gate and up halves, or interleaved rows) or gpt-oss'
  clamped SwiGLU, or a SiLU/ReLU activation without gate; no post-expert norm.

Other layers (DeepSeek's grouped sigmoid routing, PhiMoE's sparse mixer...) keep the exact dense
form; the log says which form each layer got. Shared experts and anything else of the block stay
the model's own code.

Two families write their experts' loop in their own class, without the decorator: DBRX (its
experts' weights concatenated ``[E * F, D]``) and LongCat-Flash (routed experts and "zero"
experts that return their input). :data:`OWN_LOOPS` gives each its dense form, the same sum in
the same order; their weights stay as they are (not packed by ``min_max_q4_0``).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import MethodType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torch_to_nnef._rust import Q40Tensor
from torch_to_nnef.io.qtensor import QTensorTractScaleOnly, fp_to_tract_q4_0_with_min_max_calibration
from torch_to_nnef.ir import Node
from torch_to_nnef.ir.quantized import PendingQ4_0
from torch_to_nnef.llm.streaming import NotStreamable
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref
from torch_to_nnef.op.custom_extractors import INSTANCE_EXTRACTOR, ModuleInfoExtractor

__all__ = ["FusedRouting", "fuse_routing", "is_routed_experts", "rewrite_experts"]

LOGGER = logging.getLogger(__name__)


def is_routed_experts(module: nn.Module) -> bool:
    """Whether ``module`` is a transformers experts layer of stacked ``[E, ., .]`` weights.

    Those are the classes decorated by ``use_experts_implementation``, whose instances carry its
    flags (``has_gate``, ``is_transposed``...).
    """
    down = getattr(module, "down_proj", None)
    up = getattr(module, "gate_up_proj" if getattr(module, "has_gate", True) else "up_proj", None)
    return (
        hasattr(module, "has_gate")
        and hasattr(module, "is_transposed")
        and isinstance(down, torch.Tensor)
        and isinstance(up, torch.Tensor)
        and down.dim() == 3
        and up.dim() == 3
        and down.shape[0] == up.shape[0]
    )


def _routing_weight(top_k_index: torch.Tensor, top_k_weights: torch.Tensor, expert: int) -> torch.Tensor:
    """Each token's routing weight for ``expert``: ``[T, 1]``, zero where the token did not pick it."""
    return (top_k_weights * (top_k_index == expert).to(top_k_weights.dtype)).sum(dim=-1, keepdim=True)


def _dbrx_dense(
    self: Any, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """``DbrxExperts.forward``: every expert for every token, weighted by its routing weight."""
    batch = hidden_states.shape[0]
    x = hidden_states.reshape(-1, self.hidden_size)
    shape = (-1, self.ffn_hidden_size, self.hidden_size)
    out = torch.zeros_like(x)
    for e in range(self.num_experts):
        mlp = self.mlp
        y = mlp(x, mlp.w1.view(shape)[e], mlp.v1.view(shape)[e], mlp.w2.view(shape)[e])
        out = out + y.view(-1, self.hidden_size) * _routing_weight(top_k_index, top_k_weights, e)
    return out.view(batch, -1, self.hidden_size)


def _longcat_dense(
    self: Any, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """``LongcatFlashExperts.forward``: every expert for every token (the zero experts return their
    input), weighted by its routing weight.
    """
    out = torch.zeros_like(hidden_states)
    for e in range(self.total_experts):
        if e >= self.num_routed_experts or self.gate_up_proj is None:
            y = hidden_states
        else:
            gate, up = F.linear(hidden_states, self.gate_up_proj[e]).chunk(2, dim=-1)
            y = F.linear(self.act_fn(gate) * up, self.down_proj[e])
        out = out + (y * _routing_weight(top_k_index, top_k_weights, e)).to(hidden_states.dtype)
    return out


OWN_LOOPS = {"DbrxExperts": _dbrx_dense, "LongcatFlashExperts": _longcat_dense}
"""The experts classes that loop over their picked experts in their own code, and their dense forms."""


def rewrite_experts(model: nn.Module, fused: bool = False) -> int:
    """Rewrites every routed experts layer of ``model`` (see the module's docstring), in place.

    Args:
        model: a transformers model.
        fused: give the layers that tract's ``tract_moe_ffn`` computes that operator (the target
            is tract >= 0.23.9); the others keep the dense form.

    Returns:
        How many layers were rewritten.
    """
    own = [module for module in model.modules() if type(module).__name__ in OWN_LOOPS]
    for module in own:
        module.forward = MethodType(OWN_LOOPS[type(module).__name__], module)  # type: ignore[method-assign]
    if own:
        LOGGER.info(
            "mixture of experts: %d layers (%s) computed densely, weighted by their routing",
            len(own),
            type(own[0]).__name__,
        )
    found = [(name, module) for name, module in model.named_modules() if is_routed_experts(module)]
    for _, module in found:
        _rewrite(module)
    if not found:
        return len(own)
    first = found[0][1]
    fusable = fuse_routing(model, [m for _, m in found]) if fused else {}
    dense = [name for name, module in found if module not in fusable]
    if fusable:
        LOGGER.info(
            "mixture of experts: %d layers of %d experts (%s) written as tract_moe_ffn (%s routing, top %d)",
            len(fusable),
            len(first.down_linears),
            type(first).__name__,
            next(iter(fusable.values())).gate,
            next(iter(fusable.values())).k,
        )
    if dense:
        LOGGER.info(
            "mixture of experts: %d layers of %d experts (%s) computed densely, weighted by their routing%s",
            len(dense),
            len(first.down_linears),
            type(first).__name__,
            "" if not fused else ": tract_moe_ffn cannot compute their routing or gate as the model does",
        )
    for module, routing in fusable.items():
        module.__dict__[_FUSED] = routing
        module.__dict__[INSTANCE_EXTRACTOR] = MoeFfnExtractor
    return len(found) + len(own)


def _linears(weight: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> nn.ModuleList:
    """One ``nn.Linear`` per expert of the stacked ``weight`` (``[E, out, in]``, or ``[E, in, out]``
    when ``transposed``), sharing its storage when it is not transposed.
    """
    linears = nn.ModuleList()
    for e in range(weight.shape[0]):
        w = weight[e].detach()
        w = w.t().contiguous() if transposed else w
        linear = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None, device="meta", dtype=w.dtype)
        linear.weight = nn.Parameter(w, requires_grad=False)
        if bias is not None:
            linear.bias = nn.Parameter(bias[e].detach(), requires_grad=False)
        linears.append(linear)
    return linears


def _rewrite(module: Any) -> None:
    """Gives ``module`` one linear layer per expert and the dense forward, in place."""
    up_name = "gate_up_proj" if module.has_gate else "up_proj"
    has_bias = bool(getattr(module, "has_bias", False))
    transposed = bool(module.is_transposed)
    up, down = getattr(module, up_name), module.down_proj
    if transposed and up.device.type == "meta":
        raise NotStreamable(
            f"{type(module).__name__} stores its experts' weights [E, in, out]: each expert's linear weight is "
            "their transpose, made from their values"
        )
    module.__dict__[_STACKED] = (up.detach(), down.detach())
    up_bias = getattr(module, f"{up_name}_bias", None) if has_bias else None
    down_bias = getattr(module, "down_proj_bias", None) if has_bias else None
    parameters = list(inspect.signature(module.forward).parameters)
    module.gate_up_linears = _linears(up, up_bias, transposed)
    module.down_linears = _linears(down, down_bias, transposed)
    for name in (up_name, "down_proj", f"{up_name}_bias", "down_proj_bias"):
        if name in module._parameters:
            del module._parameters[name]
    module._routed_inputs = parameters[:3]  # hidden states, expert indices, expert weights
    module.forward = MethodType(_dense_forward, module)


def _dense_forward(self: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Every expert on every token, weighted by the routing (zero for the experts not picked)."""
    names = self._routed_inputs
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    hidden_states, top_k_index, top_k_weights = (bound[n] for n in names)
    shape = hidden_states.shape
    x = hidden_states.reshape(-1, shape[-1])
    index = top_k_index.reshape(x.shape[0], -1)
    weights = top_k_weights.reshape(x.shape[0], -1)
    experts = len(self.down_linears)
    picked = index.unsqueeze(-1) == torch.arange(experts, device=index.device)
    routing = (picked.to(weights.dtype) * weights.unsqueeze(-1)).sum(dim=1)  # [tokens, experts]
    out = torch.zeros_like(x)
    for e in range(experts):
        projected = self.gate_up_linears[e](x)
        projected = self._apply_gate(projected) if self.has_gate else self.act_fn(projected)
        projected = self.down_linears[e](projected)
        if getattr(self, "has_post_expert_norm", False):
            projected = self.post_expert_norm(projected)
        out = out + (projected * routing[:, e, None]).to(out.dtype)
    return out.reshape(shape)


_STACKED = "_t2n_stacked_experts"
"""Attribute of a rewritten layer: its stacked ``(up, down)`` weights, which its linear layers view."""
_FUSED = "_t2n_fused_routing"
"""Attribute of a layer written as ``tract_moe_ffn``: its :class:`FusedRouting`."""

_GATES = ("softmax_topk", "softmax_all", "sigmoid", "raw")
"""``tract_moe_ffn``'s gate modes."""


@dataclass(frozen=True)
class FusedRouting:
    """What ``tract_moe_ffn`` needs of a layer beyond its experts' weights."""

    router_weight: torch.Tensor
    """``[E, D]``."""
    router_bias: torch.Tensor | None
    k: int
    gate: str
    """One of tract's gate modes (``softmax_topk``, ``softmax_all``, ``sigmoid``, ``raw``)."""
    interleaved: bool
    """Gate and up projections alternate by rows (gpt-oss) rather than being two halves."""
    activation: str
    """``silu`` (with an up projection: SwiGLU) or ``relu``."""
    clamp: tuple[float, float] | None
    """gpt-oss' clamped SwiGLU: ``(alpha, limit)``."""


def fuse_routing(model: nn.Module, layers: Sequence[nn.Module]) -> dict[nn.Module, FusedRouting]:
    """The rewritten experts ``layers`` of ``model`` that ``tract_moe_ffn`` computes as the model does.

    Each layer's block (the module that holds it and its router) runs alone on 24 random tokens,
    every tensor of the block outside the experts given random values for that run (the model's
    own are neither read nor changed, so the weights may be on the meta device): no routing looks
    like another by chance, as a freshly initialised router giving every expert the same score
    would. The run stops where the experts start. Their inputs (hidden states, indices and weights
    of the picked experts) are compared with what each gate mode of tract computes from each
    ``[E, D]`` weight of the block, and the experts' gate function with tract's activations.
    Blocks of one class with tensors of the same shapes compute alike: the first one is probed,
    and the others take its routing with their own router's weights.
    """
    parents = {id(child): parent for parent in model.modules() for child in parent.children()}
    found: dict[nn.Module, FusedRouting] = {}
    probed: dict[tuple[Any, ...], FusedRouting | None] = {}
    for layer in layers:
        parent = parents.get(id(layer))
        if parent is None or getattr(layer, "has_post_expert_norm", False):
            continue
        outside = _outside(layer, parent)
        signature = (type(parent), type(layer), tuple((n, tuple(t.shape), t.dtype) for n, t in outside.items()))
        if signature not in probed:
            probed[signature] = _probe(layer, parent, outside)
        routing = probed[signature]
        if routing is None:
            continue
        router = _router(layer, parent)
        if router is not None:
            weight, bias = router
            found[layer] = dataclasses.replace(
                routing,
                router_weight=parent.get_parameter(weight).detach(),
                router_bias=None if bias is None else parent.get_parameter(bias).detach(),
            )
    return found


class _ExpertsReached(Exception):
    """Ends a block's probe run where its experts start."""


def _outside(layer: nn.Module, parent: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``parent`` outside the experts ``layer``, by name."""
    own = {id(t) for t in [*layer.parameters(), *layer.buffers()]}
    return {name: t for name, t in [*parent.named_parameters(), *parent.named_buffers()] if id(t) not in own}


def _router(layer: Any, parent: nn.Module) -> tuple[str, str | None] | None:
    """The names in ``parent`` of the router of ``layer``: the one ``[E, D]`` weight outside the
    experts, and the ``[E]`` bias of its module if it has one.
    """
    experts = len(layer.down_linears)
    hidden = layer.down_linears[0].weight.shape[0]
    own = {id(p) for p in layer.parameters()}
    candidates = [
        name for name, p in parent.named_parameters() if id(p) not in own and tuple(p.shape) == (experts, hidden)
    ]
    if len(candidates) != 1:
        return None
    owner, _, _ = candidates[0].rpartition(".")
    bias = f"{owner}.bias" if owner else "bias"
    found = dict(parent.named_parameters()).get(bias)
    return candidates[0], (bias if found is not None and tuple(found.shape) == (experts,) else None)


def _probe(layer: Any, parent: nn.Module, outside: dict[str, torch.Tensor]) -> FusedRouting | None:
    """The routing of ``layer`` learnt from a run of its block alone on random values, if tract
    computes it (its router tensors in the result are the random ones of the run).
    """
    experts = len(layer.down_linears)
    hidden = layer.down_linears[0].weight.shape[0]
    dtype = layer.down_linears[0].weight.dtype
    generator = torch.Generator().manual_seed(11)
    values = {}
    for name, t in outside.items():
        if not t.is_floating_point():
            values[name] = t if t.device.type != "meta" else torch.zeros(t.shape, dtype=t.dtype)
        elif tuple(t.shape) == (experts, hidden):
            values[name] = (torch.randn(t.shape, generator=generator) * 2.0 / hidden**0.5).to(t.dtype)
        elif t.dim() <= 1:  # norms' scales, biases, the routers' selection biases
            values[name] = (1.0 + torch.randn(t.shape, generator=generator) * 0.5).to(t.dtype)
        else:
            values[name] = (torch.randn(t.shape, generator=generator) / t.shape[-1] ** 0.5).to(t.dtype)
    seen: list[tuple[torch.Tensor, ...]] = []

    def stop(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        names = module._routed_inputs
        bound = dict(zip(names, args))
        bound.update({k: v for k, v in kwargs.items() if k in names})
        seen.append(tuple(bound[n].detach() for n in names))
        raise _ExpertsReached

    hook = layer.register_forward_pre_hook(stop, with_kwargs=True)
    x = torch.randn(1, 24, hidden, generator=generator).to(dtype)
    try:
        with torch.no_grad():
            torch.func.functional_call(parent, values, (x,), strict=False)
    except _ExpertsReached:
        pass
    except Exception as exc:  # a block that does not run alone on one tensor keeps the dense form
        LOGGER.debug(
            "mixture of experts: %s did not run alone (%s: %s)", type(parent).__name__, type(exc).__name__, exc
        )
    finally:
        hook.remove()
    router = _router(layer, parent)
    if not seen or router is None:
        return None
    weight, bias = router
    return _routing(layer, dtype, values[weight], None if bias is None else values[bias], *seen[0])


def _routing(
    layer: Any,
    dtype: torch.dtype,
    router_weight: torch.Tensor,
    router_bias: torch.Tensor | None,
    x: torch.Tensor,
    index: torch.Tensor,
    weights: torch.Tensor,
) -> FusedRouting | None:
    """The :class:`FusedRouting` of ``layer`` (its experts' inputs ``x``, ``index`` and ``weights``
    computed from the router ``router_weight``, ``router_bias``), if tract computes its routing
    and gate, else None.
    """
    hidden = router_weight.shape[1]
    x2 = x.reshape(-1, hidden).float()
    index = index.reshape(x2.shape[0], -1)
    weights = weights.reshape(x2.shape[0], -1).float()
    k = index.shape[-1]
    logits = F.linear(x2, router_weight.float(), None if router_bias is None else router_bias.float())
    top = logits.topk(k, dim=-1)
    if not torch.equal(top.indices.sort(-1).values, index.sort(-1).values):
        return None
    picked = logits.gather(-1, index)
    tolerance = 1e-2 if dtype in (torch.float16, torch.bfloat16) else 1e-4
    gate = next(
        (
            mode
            for mode in _GATES
            if torch.allclose(_gate_weights(mode, logits, picked, index), weights, atol=tolerance, rtol=tolerance)
        ),
        None,
    )
    activation = _activation(layer, dtype)
    if gate is None or activation is None:
        return None
    interleaved, act, clamp = activation
    return FusedRouting(router_weight, router_bias, k, gate, interleaved, act, clamp)


def _gate_weights(mode: str, logits: torch.Tensor, picked: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The weights tract's gate ``mode`` gives the picked experts (``index``, their ``picked`` logits)."""
    if mode == "softmax_all":
        return torch.softmax(logits, dim=-1).gather(-1, index)
    if mode == "softmax_topk":
        return torch.softmax(picked, dim=-1)
    return torch.sigmoid(picked) if mode == "sigmoid" else picked


def _activation(layer: Any, dtype: torch.dtype) -> tuple[bool, str, tuple[float, float] | None] | None:
    """How tract computes ``layer``'s gate (interleaved rows, activation, clamp), if it can."""
    intermediate = layer.down_linears[0].weight.shape[1]
    generator = torch.Generator().manual_seed(12)
    tolerance = 1e-2 if dtype == torch.float16 else 1e-5
    with torch.no_grad():
        if not layer.has_gate:
            v = (torch.randn(8, intermediate, generator=generator) * 4).to(dtype)
            got = layer.act_fn(v).float()
            for act, fn in (("silu", F.silu), ("relu", F.relu)):
                if torch.allclose(got, fn(v.float()), atol=tolerance, rtol=tolerance):
                    return False, act, None
            return None
        v = (torch.randn(8, 2 * intermediate, generator=generator) * 4).to(dtype)
        got = layer._apply_gate(v).float()
        alpha, limit = getattr(layer, "alpha", None), getattr(layer, "limit", None)
        for interleaved in (False, True):
            gate, up = (v[:, 0::2], v[:, 1::2]) if interleaved else v.chunk(2, dim=-1)
            gate, up = gate.float(), up.float()
            if torch.allclose(got, F.silu(gate) * up, atol=tolerance, rtol=tolerance):
                return interleaved, "silu", None
            if isinstance(alpha, (int, float)) and isinstance(limit, (int, float)):
                g = gate.clamp(max=limit)
                clamped = (up.clamp(-limit, limit) + 1) * g * torch.sigmoid(g * alpha)
                if torch.allclose(got, clamped, atol=tolerance, rtol=tolerance):
                    return interleaved, "silu", (float(alpha), float(limit))
    return None


class MoeFfnExtractor(ModuleInfoExtractor):
    """Writes a rewritten experts layer, with its block's router, as one ``tract_moe_ffn``.

    The router ops the model computes before the layer are left unused: tract drops them.
    """

    OUTPUT_LIKE_INPUT = 0  # the hidden states' shape and type

    def convert_to_nnef(
        self,
        g: NNEFBuilder,
        node: Node,
        name_to_tensor: dict[str, Ref],
        null_ref: Ref,
        torch_graph: Any,
        **kwargs: Any,
    ) -> Ref:
        module: Any = self.module
        routing: FusedRouting = module.__dict__[_FUSED]
        x = name_to_tensor[node.args[0][0].name]
        g.need("tract_registry tract_transformers")
        w1, w3, w2, layout = self._weights(module, routing)
        refs = {name: self.variable(g, name, tensor) for name, tensor in (("w1", w1), ("w2", w2), ("w3", w3))}
        attrs: dict[str, Any] = {}
        if module.has_gate:
            attrs["w3"] = refs["w3"]
        if routing.router_bias is not None:
            attrs["wg_bias"] = self.variable(g, "router_bias", routing.router_bias.detach())
        if module.gate_up_linears[0].bias is not None:
            up_bias = torch.stack([lin.bias.detach() for lin in module.gate_up_linears])
            gate_bias, up_part = _split(up_bias, routing.interleaved, module.has_gate, axis=1)
            attrs["w1_bias"] = self.variable(g, "w1_bias", gate_bias)
            if module.has_gate:
                attrs["w3_bias"] = self.variable(g, "w3_bias", up_part)
            attrs["w2_bias"] = self.variable(
                g, "w2_bias", torch.stack([lin.bias.detach() for lin in module.down_linears])
            )
        if routing.clamp is not None:
            attrs["act_alpha"], attrs["act_limit"] = routing.clamp
        wg = self.variable(g, "router_weight", routing.router_weight)
        return g.op(
            "tract_moe_ffn",
            x,
            wg,
            refs["w1"],
            refs["w2"],
            k=routing.k,
            activation=routing.activation,
            gate=routing.gate,
            expert_layout=layout,
            **attrs,
            out=node.outputs[0].name,
        )

    @staticmethod
    def _weights(module: Any, routing: FusedRouting) -> tuple[Any, Any, Any, str]:
        """``(w1, w3, w2, layout)``: Q4_0 ``[E, out, in]`` blocks where the linear layers were packed,
        else views of the stacked weights in their own layout (``linear``: ``[E, out, in]``;
        ``canonical``: ``[E, in, out]``, the transposed classes').
        """
        ups = [lin.weight for lin in module.gate_up_linears]
        downs = [lin.weight for lin in module.down_linears]
        if all(isinstance(w, QTensorTractScaleOnly) and w.pending for w in [*ups, *downs]):
            return _pending_weights(module, routing, ups, downs)
        if all(isinstance(w, QTensorTractScaleOnly) for w in [*ups, *downs]):
            blocks = _stack_q4_0([w.to_q4_0() for w in ups])
            gate_blocks, up_blocks = _split_q4_0_rows(blocks, routing.interleaved, module.has_gate)
            return gate_blocks, up_blocks, _stack_q4_0([w.to_q4_0() for w in downs]), "linear"
        stacked_up, stacked_down = module.__dict__[_STACKED]
        if any(isinstance(w, QTensorTractScaleOnly) for w in [*ups, *downs]) or stacked_up.dtype != ups[0].dtype:
            stacked_up = torch.stack([w.detach() for w in ups])
            stacked_down = torch.stack([w.detach() for w in downs])
            transposed = False
        else:
            transposed = bool(module.is_transposed)
        gate, up_part = _split(stacked_up, routing.interleaved, module.has_gate, axis=2 if transposed else 1)
        return gate, up_part, stacked_down, "canonical" if transposed else "linear"


def _pending_weights(module: Any, routing: FusedRouting, ups: list[Any], downs: list[Any]) -> tuple[Any, Any, Any, str]:
    """``(w1, w3, w2, "linear")`` as the :class:`PendingQ4_0` blocks of the stacked ``[E, out, in]``
    weights' parts, for experts whose Q4_0 weights are pending (on the meta device): their blocks
    are made as the rows of the stacked weights are read. Experts stored ``[E, in, out]`` never
    get here: :func:`rewrite_experts` refuses them on the meta device.

    Raises:
        NotStreamable: the experts were quantized unlike one another.
    """
    percentiles = {w.percentile for w in [*ups, *downs]}
    if len(percentiles) != 1:
        raise NotStreamable(
            f"{type(module).__name__}: experts quantized unlike one another need their weights' values to be "
            "packed together"
        )
    percentile = percentiles.pop()
    stacked_up, stacked_down = module.__dict__[_STACKED]
    gate, up_part = _split(stacked_up, routing.interleaved, module.has_gate, axis=1)

    def pending(values: torch.Tensor) -> PendingQ4_0:
        return PendingQ4_0(tuple(values.shape), fp_to_tract_q4_0_with_min_max_calibration(values, percentile))

    return pending(gate), pending(up_part), pending(stacked_down), "linear"


def _split(tensor: torch.Tensor, interleaved: bool, has_gate: bool, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The gate and up parts of the stacked gate-up ``tensor`` along ``axis`` (without gate: it twice)."""
    if not has_gate:
        return tensor, tensor
    size = tensor.shape[axis]
    if interleaved:
        index = [slice(None)] * tensor.dim()
        gate, up = list(index), list(index)
        gate[axis], up[axis] = slice(0, size, 2), slice(1, size, 2)
        return tensor[tuple(gate)], tensor[tuple(up)]
    return tensor.narrow(axis, 0, size // 2), tensor.narrow(axis, size // 2, size // 2)


def _stack_q4_0(blocks: Sequence[Q40Tensor]) -> Q40Tensor:
    """The Q4_0 tensor ``[E, *shape]`` of ``E`` Q4_0 tensors of one shape (blocks run along rows)."""
    return Q40Tensor.from_blocks(b"".join(b.to_bytes() for b in blocks), [len(blocks), *blocks[0].shape])


def _split_q4_0_rows(up: Q40Tensor, interleaved: bool, has_gate: bool) -> tuple[Q40Tensor, Q40Tensor]:
    """The gate and up rows of the stacked Q4_0 gate-up weights ``[E, 2I, D]`` (whole blocks per row)."""
    if not has_gate:
        return up, up
    experts, rows, cols = up.shape
    data = np.frombuffer(up.to_bytes(), dtype=np.uint8).reshape(experts, rows, cols // 32 * 18)
    gate, up_part = (data[:, 0::2], data[:, 1::2]) if interleaved else (data[:, : rows // 2], data[:, rows // 2 :])
    shape = [experts, rows // 2, cols]
    return Q40Tensor.from_blocks(gate.tobytes(), shape), Q40Tensor.from_blocks(up_part.tobytes(), shape)
