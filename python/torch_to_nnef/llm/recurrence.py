"""Linear-attention and state-space recurrences as one loop over the tokens, whatever their number.

transformers computes Gated DeltaNet (Qwen3-Next, Qwen3.5, OLMo-hybrid, ...) and Kimi delta
attention (Kimi-Linear, Bailing-hybrid) on a prompt by chunks of 64 tokens, with Python loops over
the chunks and over the positions in a chunk, and Mamba's selective scan (Mamba, Falcon-Mamba,
Jamba, Zamba) with a Python loop over the tokens: torch.export unrolls these loops at the traced
length. Mamba-2's scan (Mamba-2, Bamba, Falcon-H1, Granite-hybrid, Nemotron-H, Zamba2) is computed
by chunks without a loop, but torch.export fixes the number of chunks in its masks. Either way the
graph would hold for prompts of one length, or of at most one chunk. :func:`rewrite_recurrences`
has each such layer compute its recurrence token by token instead (transformers' own recurrent
form, exact for any length) through :class:`DeltaRuleScan` or :class:`StateScan`, which the export
writes as a ``tract_core_scan`` over the tokens: the state is the loop's state.

Mamba's selective scan starts from the layer's cached state: transformers' own sequence form starts
from zeros (only its one-token form reads the state), so a prompt given in several steps gives the
results of one prompt given at once.

The layer's other computations (projections, its causal convolution on the cached inputs, the
gated norm) are traced as they are.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Graph, Node
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref
from torch_to_nnef.op.custom_extractors import INSTANCE_EXTRACTOR, ModuleInfoExtractor

__all__ = ["DeltaRuleScan", "StateScan", "rewrite_recurrences"]

RULE_ATTRIBUTE = "t2n_recurrence"
"""The name of the scan submodule given to each rewritten layer."""


class DeltaRuleScan(nn.Module):
    """The gated delta rule, token after token, on tensors prepared for it (f32).

    For each token ``t`` and head, with ``S`` the ``[Dk, Dv]`` state::

        S = S * decay_t                      (decay per head, or per head and key channel)
        S = S + k_t (x) ((v_t - k_t S) * beta_t)
        o_t = q_t S

    ``forward(query, key, value, decay, beta, state)`` takes ``query`` and ``key`` ``[B, T, H, Dk]``
    (normalized and scaled as the layer wants), ``value`` ``[B, T, H, Dv]``, ``decay`` ``[B, T, H, 1]``
    or ``[B, T, H, Dk]`` (already exponentiated), ``beta`` ``[B, T, H]`` and the initial ``state``
    ``[B, H, Dk, Dv]``; it returns the outputs ``[B, T, H, Dv]`` and the last state.
    """

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        decay: torch.Tensor,
        beta: torch.Tensor,
        state: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The outputs of every token and the state after the last."""
        outputs = []
        for t in range(query.shape[1]):
            state = state * decay[:, t, :, :, None]
            k_t = key[:, t, :, :, None]
            remembered = (state * k_t).sum(dim=-2)
            delta = (value[:, t] - remembered) * beta[:, t, :, None]
            state = state + k_t * delta[:, :, None, :]
            outputs.append((state * query[:, t, :, :, None]).sum(dim=-2))
        if not outputs:
            return value.new_zeros(value.shape), state
        return torch.stack(outputs, dim=1), state


class _TokenScanExtractor(ModuleInfoExtractor):
    """Writes a scan module as a ``tract_core_scan`` over the tokens (axis 1 of every input but the
    last, the initial state): the body, a fragment, is one token's :meth:`step`; the loop returns
    every token's output and the last state.
    """

    INPUTS: tuple[str, ...] = ()
    """The body's parameters, one per scanned input, in ``forward``'s order (the state follows)."""
    STEP = ""
    """The fragment's name."""

    @abc.abstractmethod
    def step(self, body: NNEFBuilder, node: Node, inputs: list[Ref], state: Ref) -> tuple[Ref, Ref]:
        """One token: ``inputs`` (each ``[B, 1, ...]``) and the state give ``(y [B, 1, ...], new state)``."""

    def convert_to_nnef(
        self,
        g: NNEFBuilder,
        node: Node,
        name_to_tensor: dict[str, Ref],
        null_ref: Ref,
        torch_graph: Graph,
        **kwargs: Any,
    ) -> list[Ref]:
        """Emits the loop: the inputs scanned token by token, the state carried."""
        target = kwargs.get("inference_target")
        if not getattr(target, "is_tract", g.tract):
            raise TranslationError(
                f"{self.path}: a recurrence over the tokens is a loop, which only TractNNEF (tract_core_scan) can "
                "write: export to TractNNEF"
            )
        *scanned, state = (name_to_tensor[v.name] for v in node.args[0])
        body = NNEFBuilder(tract=True, naming_scheme=g.naming_scheme)
        params = [body.fresh(n, keep=True) for n in self.INPUTS]
        ps = body.fresh("state", keep=True)
        y, new_state = self.step(body, node, params, ps)
        name = g.fragment(self.STEP, [*params, ps], [y, new_state], body)
        g.need("tract_registry tract_core")
        return g.ops(
            "tract_core_scan",
            body=name,
            scan=[(str(p), ref, 1, 1) for p, ref in zip(params, scanned)],
            full=[],
            state=[(str(ps), state, str(new_state))],
            output=[(str(y), "full", 1, 1), (str(new_state), "last", 0, 1)],
            outs=[o.name for o in node.outputs],
        )


class DeltaRuleExtractor(_TokenScanExtractor):
    """Writes a :class:`DeltaRuleScan` as a ``tract_core_scan`` over the tokens."""

    INPUTS = ("q", "k", "v", "decay", "beta")
    STEP = "delta_rule_step"

    def step(self, body: NNEFBuilder, node: Node, inputs: list[Ref], state: Ref) -> tuple[Ref, Ref]:
        """One delta-rule update, on the state ``[B, H, Dk, Dv]``."""
        pq, pk, pv, pd, pb = inputs

        def column(x: Ref, name: str) -> Ref:  # [B, 1, H, D] -> [B, H, D, 1]
            return body.op("unsqueeze", body.op("squeeze", x, axes=[1]), axes=[3], out=name)

        q_t, k_t, d_t = column(pq, "q_t"), column(pk, "k_t"), column(pd, "decay_t")
        v_t = body.op("unsqueeze", body.op("squeeze", pv, axes=[1]), axes=[2], out="v_t")  # [B, H, 1, Dv]
        b_t = body.op("unsqueeze", body.op("squeeze", pb, axes=[1]), axes=[2, 3], out="beta_t")  # [B, H, 1, 1]
        decayed = body.op("mul", state, d_t, out="decayed")
        remembered = body.op("sum_reduce", body.op("mul", decayed, k_t), axes=[2], out="remembered")
        delta = body.op("mul", body.op("sub", v_t, remembered), b_t, out="delta")
        new_state = body.op("add", decayed, body.op("mul", k_t, delta), out="new_state")
        o_t = body.op("sum_reduce", body.op("mul", new_state, q_t), axes=[2], out="o_t")  # [B, H, 1, Dv]
        y = body.op("unsqueeze", body.op("squeeze", o_t, axes=[2]), axes=[1], out="y")  # [B, 1, H, Dv]
        return y, new_state


class StateScan(nn.Module):
    """A linear recurrence, token after token: ``state = a_t * state + u_t * v_t``, ``y_t = sum(state * c_t)``
    (the sum over the state's last axis).

    ``forward(a, u, v, c, state)`` takes ``a``, ``u``, ``v`` and ``c`` with the tokens on axis 1
    (``[B, T, ...]``, broadcasting against the state) and the initial ``state`` ``[B, ...]``; it
    returns the outputs ``[B, T, ...]`` (the state's axes but the last) and the last state. The
    input ``u_t * v_t`` is an outer product, computed in the loop (its ``[B, T, ...]`` whole would
    hold a state per token). Mamba's selective scan is one: ``a = exp(dt A)``, ``u = dt x``,
    ``v = B``, ``c = C``.
    """

    def forward(
        self, a: torch.Tensor, u: torch.Tensor, v: torch.Tensor, c: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The outputs of every token and the state after the last."""
        outputs = []
        for t in range(a.shape[1]):
            state = a[:, t] * state + u[:, t] * v[:, t]
            outputs.append((state * c[:, t]).sum(dim=-1))
        if not outputs:
            return state.new_zeros((state.shape[0], 0, *state.shape[1:-1])), state
        return torch.stack(outputs, dim=1), state


class StateScanExtractor(_TokenScanExtractor):
    """Writes a :class:`StateScan` as a ``tract_core_scan`` over the tokens."""

    INPUTS = ("a", "u", "v", "c")
    STEP = "state_scan_step"

    def step(self, body: NNEFBuilder, node: Node, inputs: list[Ref], state: Ref) -> tuple[Ref, Ref]:
        """``state = a * state + u * v``, ``y = sum(state * c)`` over the state's last axis."""
        last = node.args[0][4].rank - 1
        a_t, u_t, v_t, c_t = (body.op("squeeze", p, axes=[1], out=f"{p}_t") for p in inputs)
        given = body.op("mul", u_t, v_t, out="given")
        new_state = body.op("add", body.op("mul", a_t, state), given, out="new_state")
        y_t = body.op("sum_reduce", body.op("mul", new_state, c_t), axes=[last], out="y_t")
        y = body.op("unsqueeze", body.op("squeeze", y_t, axes=[last]), axes=[1], out="y")
        return y, new_state


def _selective_scan(
    scan: nn.Module,
    initial_state: torch.Tensor | None,
    hidden_states: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    **kwargs: Any,
) -> Any:
    """Transformers' ``mamba_selective_scan`` (its recurrent form) through ``scan``, from ``initial_state``
    (zeros when None): the same arguments and results.
    """
    input_dtype = hidden_states.dtype
    if delta_bias is not None:
        dt = dt + delta_bias.to(dt.dtype)[..., None]
    if delta_softplus:
        dt = torch.nn.functional.softplus(dt)
    B, C = B.transpose(1, 2), C.transpose(1, 2)
    discrete_a = torch.exp(A[None, :, None, :] * dt[:, :, :, None]).transpose(1, 2)  # [batch, tokens, channels, N]
    dt_x = (dt * hidden_states.float()).transpose(1, 2)[..., None]  # [batch, tokens, channels, 1]
    if initial_state is None:
        state = dt_x.new_zeros(hidden_states.shape[0], hidden_states.shape[1], A.shape[-1])
    else:
        state = initial_state.to(dt_x.dtype)
    out, state = scan(discrete_a, dt_x, B[:, :, None, :].float(), C[:, :, None, :].float(), state)
    scan_output = out.transpose(1, 2).to(input_dtype)
    if D is not None:
        scan_output = scan_output + hidden_states * D[None, :, None]
    if z is not None:
        scan_output = scan_output * torch.nn.functional.silu(z)
    return (scan_output, state) if return_last_state else scan_output


def _chunk_scan(
    scan: nn.Module,
    hidden_states: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int = 0,
    D: torch.Tensor | None = None,
    dt_bias: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    dt_softplus: bool = False,
    dt_limit: tuple[float, float] = (0.0, float("inf")),
    return_final_states: bool = False,
    **kwargs: Any,
) -> Any:
    """Transformers' ``mamba2_chunk_scan`` (Mamba-2's state-space duality by chunks) token by token
    through ``scan``: the same arguments and results.
    """
    batch, _, heads, _ = hidden_states.shape
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    if dt_softplus:
        dt = torch.nn.functional.softplus(dt)
    dt = torch.clamp(dt, min=dt_limit[0], max=dt_limit[1]).float()  # [batch, tokens, heads]
    x = hidden_states.float()  # [batch, tokens, heads, head size]
    groups = B.shape[2]
    B = B.float().repeat_interleave(heads // groups, dim=2, output_size=heads)
    C = C.float().repeat_interleave(heads // groups, dim=2, output_size=heads)
    decay = torch.exp(A.float() * dt)[..., None, None]  # [batch, tokens, heads, 1, 1]
    dt_x = (x * dt[..., None])[..., None]  # [batch, tokens, heads, head size, 1]
    if initial_states is None:
        state = x.new_zeros(batch, heads, x.shape[3], B.shape[3])
    else:
        state = initial_states.to(torch.float32)
    out, state = scan(decay, dt_x, B[:, :, :, None, :], C[:, :, :, None, :], state)
    if D is not None:
        out = out + D[..., None] * x
    return (out, state) if return_final_states else out


def _l2norm(x: torch.Tensor) -> torch.Tensor:
    """``x`` divided by its norm over the last axis, as transformers' ``l2norm`` (``eps = 1e-6`` inside the root)."""
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + 1e-6)


def _gated_delta_rule(
    scan: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    *args: Any,
    initial_state: torch.Tensor | None = None,
    output_final_state: bool = False,
    use_qk_l2norm_in_kernel: bool = False,
    per_channel: bool = False,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Transformers' gated delta rule (``torch_recurrent_gated_delta_rule``, or Kimi delta attention
    when ``per_channel``: a decay per key channel) through ``scan``: the same arguments and results.
    """
    initial_dtype = query.dtype
    heads, k_dim = key.shape[2], key.shape[3]
    v_heads, v_dim = value.shape[2], value.shape[3]
    if heads != v_heads:  # each query and key head serves consecutive value heads
        query = query.repeat_interleave(v_heads // heads, dim=2)
        key = key.repeat_interleave(v_heads // heads, dim=2)
    query, key, value, g, beta = (x.to(torch.float32) for x in (query, key, value, g, beta))
    if use_qk_l2norm_in_kernel:
        query, key = _l2norm(query), _l2norm(key)
    query = query * (1 / k_dim**0.5) if per_channel else query / (k_dim**0.5)
    decay = g.exp() if per_channel else g.exp()[..., None]
    if initial_state is None:
        state = value.new_zeros(value.shape[0], v_heads, k_dim, v_dim)
    else:
        state = initial_state.to(torch.float32)
    out, state = scan(query, key, value, decay, beta, state)
    return out.to(initial_dtype), state if output_final_state else None


RULES: dict[str, bool] = {
    "torch_chunk_gated_delta_rule": False,
    "torch_recurrent_gated_delta_rule": False,
    "chunk_kimi_delta_attention": True,
    "recurrent_kimi_delta_attention": True,
}
"""The functions of transformers' modeling modules that compute a delta rule, and whether their decay
is per key channel (Kimi delta attention) rather than per head (Gated DeltaNet)."""

SELECTIVE_SCAN = "mamba_selective_scan"
"""The function of transformers' modeling modules that computes Mamba's selective scan."""

CHUNK_SCAN = "mamba2_chunk_scan"
"""The function of transformers' modeling modules that computes Mamba-2's scan by chunks (Mamba-2,
Bamba, Falcon-H1, Granite-hybrid, Nemotron-H, Zamba2)."""

SELECTIVE_SCAN_LAYERS = frozenset({"MambaMixer", "FalconMambaMixer", "JambaMambaMixer", "ZambaMambaMixer"})
"""The layers whose selective scan is rewritten: one scan over the whole layer's state, or one per
head (:data:`PER_HEAD_SCANS`)."""

PER_HEAD_SCANS = frozenset({"ZambaMambaMixer"})
"""The layers that scan each of their heads apart, the state of head ``k`` at ``state[:, k]``."""


class _HeadByHead:
    """The selective scan of a layer that scans its heads one call after the other: call ``k`` starts
    from ``state[:, k]``.
    """

    def __init__(self, scan: nn.Module, state: torch.Tensor | None) -> None:
        self.scan, self.state, self.calls = scan, state, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = None if self.state is None else self.state[:, self.calls]
        self.calls += 1
        return _selective_scan(self.scan, state, *args, **kwargs)


def _called(module: nn.Module, names: Any) -> list[str]:
    """The functions of ``names`` that ``module``'s ``forward`` calls by name from its module's globals."""
    forward = inspect.unwrap(type(module).forward)
    code = getattr(forward, "__code__", None)
    called = set(code.co_names) if code is not None else set()
    module_globals = getattr(forward, "__globals__", {})
    return [name for name in names if name in called and name in module_globals]


@contextmanager
def _swapped(namespace: dict[str, Any], replacements: dict[str, Any]) -> Iterator[None]:
    """``namespace`` (a module's globals) with ``replacements`` while the block runs."""
    saved = {name: namespace[name] for name in replacements}
    namespace.update(replacements)
    try:
        yield
    finally:
        namespace.update(saved)


def _cached_state(module: nn.Module, forward: Callable[..., Any], args: Any, kwargs: Any) -> torch.Tensor | None:
    """The recurrent state the cache given to ``module``'s ``forward`` holds for its layer (None: none yet)."""
    bound = inspect.signature(forward).bind_partial(*args, **kwargs).arguments
    cache = next((bound[n] for n in ("cache", "cache_params", "past_key_values") if bound.get(n) is not None), None)
    if cache is None or not hasattr(cache, "get_recurrent_state"):
        return None
    state = cache.get_recurrent_state(module.layer_idx)
    return state if isinstance(state, torch.Tensor) else None


def rewrite_recurrences(model: nn.Module) -> int:
    """Has every layer of ``model`` that computes a delta rule or a selective scan compute it token by
    token with a :class:`DeltaRuleScan` or :class:`StateScan`.

    Each such layer gets the scan as a submodule (``t2n_recurrence``) and a ``forward`` that calls it
    instead of transformers' chunked or recurrent functions: eager runs give the recurrent form's
    results, and the export writes the loop.

    Returns:
        How many layers were rewritten.
    """
    count = 0
    for module in list(model.modules()):
        if RULE_ATTRIBUTE in module._modules:
            continue
        rules = _called(module, RULES)
        mamba = type(module).__name__ in SELECTIVE_SCAN_LAYERS and _called(module, [SELECTIVE_SCAN])
        mamba2 = _called(module, [CHUNK_SCAN])
        if not rules and not mamba and not mamba2:
            continue
        scan: nn.Module = DeltaRuleScan() if rules else StateScan()
        scan.__dict__[INSTANCE_EXTRACTOR] = DeltaRuleExtractor if rules else StateScanExtractor
        module.add_module(RULE_ATTRIBUTE, scan)
        namespace = inspect.unwrap(type(module).forward).__globals__
        original = module.forward

        def forward(
            *args: Any,
            _module: nn.Module = module,
            _scan: nn.Module = scan,
            _original: Callable[..., Any] = original,
            _namespace: dict[str, Any] = namespace,
            _rules: list[str] = rules,
            _chunked: bool = bool(mamba2),
            **kwargs: Any,
        ) -> Any:
            replacements: dict[str, Callable[..., Any]] = {
                name: functools.partial(_gated_delta_rule, _scan, per_channel=RULES[name]) for name in _rules
            }
            if _chunked:
                replacements[CHUNK_SCAN] = functools.partial(_chunk_scan, _scan)
            elif not _rules:
                state = _cached_state(_module, _original, args, kwargs)
                if type(_module).__name__ in PER_HEAD_SCANS:
                    replacements[SELECTIVE_SCAN] = _HeadByHead(_scan, state)
                else:
                    replacements[SELECTIVE_SCAN] = functools.partial(_selective_scan, _scan, state)
            with _swapped(_namespace, replacements):
                return _original(*args, **kwargs)

        module.forward = forward  # type: ignore[method-assign]
        count += 1
    return count
