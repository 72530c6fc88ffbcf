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
"""

from __future__ import annotations

import inspect
import logging
from types import MethodType
from typing import Any

import torch
from torch import nn

__all__ = ["is_routed_experts", "rewrite_experts"]

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


def rewrite_experts(model: nn.Module) -> int:
    """Rewrites every routed experts layer of ``model`` (see the module's docstring), in place.

    Returns:
        How many layers were rewritten.
    """
    found = [(name, module) for name, module in model.named_modules() if is_routed_experts(module)]
    for _, module in found:
        _rewrite(module)
    if found:
        first = found[0][1]
        LOGGER.info(
            "mixture of experts: %d layers of %d experts (%s) computed densely, weighted by their routing",
            len(found),
            len(first.down_linears),
            type(first).__name__,
        )
    return len(found)


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
