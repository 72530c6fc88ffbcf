"""Recurrent layers: ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells, exported whole.

``torch.export`` unrolls these modules over time, which turns a dynamic sequence length into a
constant, so they are captured as opaque calls through built-in custom extractors (see
:mod:`torch_to_nnef.op.custom_extractors`) and translated here:

- the input projection ``x W_ih^T + b_ih`` of every time step is one matmul before the loop;
- TractNNEF: the recurrence is a ``tract_core_scan`` over the time axis (backwards for the reverse
  direction) whose body is an NNEF fragment, so the length may be dynamic;
- KhronosNNEF: the recurrence is unrolled over the (static) length with specification ops.

Parameters keep their PyTorch names (``rnn.weight_ih_l0``, ``rnn.bias_hh_l1_reverse``) and are
written once, however many loops read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union, cast

import numpy as np
from torch import nn

from torch_to_nnef.errors import TranslationError
from torch_to_nnef.ir import Graph, Node, Value
from torch_to_nnef.ir.dtypes import FLOATS, NUMPY
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref, dim_literal
from torch_to_nnef.op.custom_extractors import ModuleInfoExtractor


@dataclass(frozen=True)
class _Hidden:
    """The weights a time step reads besides its input's projection (refs in the builder using them)."""

    w_hh: Ref
    """``[G, R]``: hidden-to-gates weight (``R`` the hidden size, or ``proj_size``)."""
    b_hh: Ref | None
    """``[1, G]``, inside the step only for GRU (``r * (W_hn h + b_hn)``); else folded into the projection."""
    w_hr: Ref | None
    """``[R, H]``: LSTM output projection (``proj_size``)."""


def _mode(module: nn.Module) -> str:
    """``LSTM``, ``GRU``, ``RNN_TANH`` or ``RNN_RELU``."""
    if isinstance(module, (nn.LSTM, nn.LSTMCell)):
        return "LSTM"
    if isinstance(module, (nn.GRU, nn.GRUCell)):
        return "GRU"
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    return "RNN_RELU" if nonlinearity == "relu" else "RNN_TANH"


def _step(g: NNEFBuilder, mode: str, xg: Ref, h: Ref, c: Ref | None, w: _Hidden, hidden: int) -> tuple[Ref, Ref | None]:
    """One time step on ``[B, ...]`` tensors: ``xg`` the projected input ``[B, G]``, ``h`` ``[B, R]``,
    ``c`` ``[B, H]`` (LSTM). Returns the next ``h`` and ``c``.
    """
    gh = g.op("matmul", h, w.w_hh, transposeA=False, transposeB=True, out="gates_h")
    if w.b_hh is not None:
        gh = g.op("add", gh, w.b_hh, out="gates_h_biased")

    def gate(x: Ref, k: int, name: str) -> Ref:
        return g.op("slice", x, axes=[1], begin=[k * hidden], end=[(k + 1) * hidden], out=name)

    if mode == "GRU":
        r = g.op("sigmoid", g.op("add", gate(xg, 0, "x_r"), gate(gh, 0, "h_r")), out="r")
        z = g.op("sigmoid", g.op("add", gate(xg, 1, "x_z"), gate(gh, 1, "h_z")), out="z")
        n = g.op("tanh", g.op("add", gate(xg, 2, "x_n"), g.op("mul", r, gate(gh, 2, "h_n"))), out="n")
        # (1 - z) * n + z * h, without a constant
        return g.op("add", n, g.op("mul", z, g.op("sub", h, n)), out="h_next"), None
    gates = g.op("add", xg, gh, out="gates")
    if mode != "LSTM":
        return g.op("relu" if mode == "RNN_RELU" else "tanh", gates, out="h_next"), None
    assert c is not None
    i = g.op("sigmoid", gate(gates, 0, "i_gate"), out="i")
    f = g.op("sigmoid", gate(gates, 1, "f_gate"), out="f")
    cand = g.op("tanh", gate(gates, 2, "g_gate"), out="g")
    o = g.op("sigmoid", gate(gates, 3, "o_gate"), out="o")
    c_next = g.op("add", g.op("mul", f, c), g.op("mul", i, cand), out="c_next")
    h_next = g.op("mul", o, g.op("tanh", c_next), out="h_next" if w.w_hr is None else "h_full")
    if w.w_hr is not None:
        h_next = g.op("matmul", h_next, w.w_hr, transposeA=False, transposeB=True, out="h_next")
    return h_next, c_next


class _Recurrent(ModuleInfoExtractor):
    """What the layers and the cells share: weights, input projections, initial states."""

    def mode(self) -> str:
        """The module's recurrence."""
        return _mode(self.module)

    def _dtype(self, x: Value) -> str:
        if x.dtype not in FLOATS:
            raise TranslationError(
                f"{self._where()}: input of dtype {x.dtype}; recurrent layers take float inputs (f16, f32, f64)"
            )
        return x.dtype

    def _where(self) -> str:
        return f"{self.path or '<top>'} ({type(self.module).__name__})"

    def _hidden_size(self) -> int:
        module = cast(Union[nn.RNNBase, nn.RNNCellBase], self.module)
        return module.hidden_size

    def _state_size(self) -> int:
        return int(getattr(self.module, "proj_size", 0) or self._hidden_size())

    def _project(self, g: NNEFBuilder, x: Ref, rank: int, suffix: str, out: str) -> Ref:
        """``x W_ih^T + b_ih`` (``+ b_hh`` except for GRU) for an input of ``rank``, on its last axis."""
        w = self.variable(g, f"weight_ih{suffix}")
        if rank > 2:
            w = g.op("unsqueeze", w, axes=list(range(rank - 2)), out=f"weight_ih{suffix}_aligned")
        y = g.op("matmul", x, w, transposeA=False, transposeB=True, out=out)
        if self._has_bias():
            names = ["bias_ih"] if self.mode() == "GRU" else ["bias_ih", "bias_hh"]
            for name in names:
                b = g.op("unsqueeze", self.variable(g, f"{name}{suffix}"), axes=list(range(rank - 1)))
                y = g.op("add", y, b, out=out)
        return y

    def _has_bias(self) -> bool:
        return bool(getattr(self.module, "bias", True))

    def _hidden(self, g: NNEFBuilder, suffix: str) -> _Hidden:
        """The step's weights as refs of ``g`` (the main graph)."""
        b_hh = None
        if self.mode() == "GRU" and self._has_bias():
            b_hh = g.op("unsqueeze", self.variable(g, f"bias_hh{suffix}"), axes=[0], out=f"bias_hh{suffix}_aligned")
        w_hr = self.variable(g, f"weight_hr{suffix}") if getattr(self.module, "proj_size", 0) else None
        return _Hidden(self.variable(g, f"weight_hh{suffix}"), b_hh, w_hr)

    def _zeros(self, g: NNEFBuilder, dtype: str, batch: Any, size: int, out: str) -> Ref:
        """A ``[batch, size]`` zero state (``batch`` may be symbolic): a tiled one-element constant."""
        one = g.variable(np.zeros((1, 1), dtype=NUMPY[dtype]), f"constant_{dtype}_0_r2")
        repeats = [batch if isinstance(batch, int) else Ref(dim_literal(batch)), size]
        return g.op("tile", one, repeats=repeats, out=out)


class _RecurrentLayer(_Recurrent):
    """``nn.LSTM``/``nn.GRU``/``nn.RNN``: ``forward(input, hx=None) -> (output, h_n)`` (``(h_n, c_n)`` for LSTM)."""

    def convert_to_nnef(
        self,
        g: NNEFBuilder,
        node: Node,
        name_to_tensor: dict[str, Ref],
        null_ref: Ref,
        torch_graph: Graph,
        **kwargs: Any,
    ) -> list[Ref]:
        """Emits the layers and directions in PyTorch's order (``h_n[layer * D + direction]``)."""
        module = cast(nn.RNNBase, self.module)  # the extractors' MODULE_CLASS
        lstm = self.mode() == "LSTM"
        target = kwargs.get("inference_target")
        tract = bool(getattr(target, "is_tract", g.tract))
        inputs: list[Value] = list(node.args[0])
        x = inputs[0]
        dtype = self._dtype(x)
        if x.rank not in (2, 3):
            raise TranslationError(f"{self._where()}: input of rank {x.rank}; expected (L, N, H_in) or (L, H_in)")
        if any(v.rank != x.rank or v.dtype != x.dtype for v in inputs[1:]):
            raise TranslationError(
                f"{self._where()}: inputs {[f'{v.dtype}{list(v.shape)}' for v in inputs]} are not a sequence and its "
                "initial states (a PackedSequence?): pass padded sequences (nn.utils.rnn.pad_packed_sequence)"
            )
        batched = x.rank == 3
        time_axis = 1 if (batched and module.batch_first) else 0
        batch_axis = 1 - time_axis
        length = x.shape[time_axis]
        if not tract and not isinstance(length, int):
            raise TranslationError(
                f"{self._where()}: the sequence length {length} is dynamic, and KhronosNNEF has no loops "
                "(the recurrence is unrolled over a static length): export with a static length, or to TractNNEF "
                "(tract_core_scan)"
            )
        seq = name_to_tensor[x.name]
        if not batched:  # one sequence: a batch of one
            seq = g.op("unsqueeze", seq, axes=[1], out=f"{x.name}_batched")
        batch = x.shape[batch_axis] if batched else 1
        states = [name_to_tensor[v.name] for v in inputs[1:]]
        if not batched:
            states = [g.op("unsqueeze", s, axes=[1], out="state_batched") for s in states]
        if len(states) not in (0, 2 if lstm else 1):
            raise TranslationError(f"{self._where()}: got {len(states)} initial state tensors")
        layers, directions = module.num_layers, 2 if module.bidirectional else 1
        width, hidden = self._state_size(), self._hidden_size()

        def initial(k: int, which: int, size: int, name: str) -> Ref:
            if not states:
                return self._zeros(g, dtype, batch, size, name)
            one = g.op("slice", states[which], axes=[0], begin=[k], end=[k + 1], out=f"{name}_slice")
            return g.op("squeeze", one, axes=[0], out=name)

        last_h: list[Ref] = []
        last_c: list[Ref] = []
        for layer in range(layers):
            outs = []
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                k = layer * directions + direction
                xg = self._project(g, seq, 3, suffix, out=f"gates_x{suffix}")
                w = self._hidden(g, suffix)
                h0 = initial(k, 0, width, f"h0{suffix}")
                c0 = initial(k, 1, hidden, f"c0{suffix}") if lstm else None
                loop = self._scan if tract else self._unroll
                y, h, c = loop(g, xg, h0, c0, w, time_axis, bool(direction), length, suffix)
                outs.append(y)
                last_h.append(h)
                if c is not None:
                    last_c.append(c)
            seq = outs[0] if directions == 1 else g.op("concat", outs, axis=2, out=f"output_l{layer}")
        names = [o.name for o in node.outputs]
        results = [seq if batched else g.op("squeeze", seq, axes=[1], out=names[0])]
        for lasts, name in zip([last_h, last_c] if lstm else [last_h], names[1:]):
            states_out = [g.op("unsqueeze", s, axes=[0], out=f"{name}_part") for s in lasts]
            stacked = states_out[0] if len(states_out) == 1 else g.op("concat", states_out, axis=0, out=name)
            results.append(stacked if batched else g.op("squeeze", stacked, axes=[1], out=name))
        return results

    def _scan(
        self,
        g: NNEFBuilder,
        xg: Ref,
        h0: Ref,
        c0: Ref | None,
        w: _Hidden,
        time_axis: int,
        reverse: bool,
        length: Any,
        suffix: str,
    ) -> tuple[Ref, Ref, Ref | None]:
        """One direction of one layer as a ``tract_core_scan`` (its body a fragment of one step)."""
        body = NNEFBuilder(tract=True, naming_scheme=g.naming_scheme)
        px, ph = body.fresh("x", keep=True), body.fresh("h", keep=True)
        pc = body.fresh("c", keep=True) if c0 is not None else None
        full = {"w_hh": w.w_hh, "b_hh": w.b_hh, "w_hr": w.w_hr}
        params = {name: body.fresh(name, keep=True) for name, ref in full.items() if ref is not None}
        inner = _Hidden(params["w_hh"], params.get("b_hh"), params.get("w_hr"))
        x_t = body.op("squeeze", px, axes=[time_axis], out="x_t")
        h_next, c_next = _step(body, self.mode(), x_t, ph, pc, inner, self._hidden_size())
        y = body.op("unsqueeze", h_next, axes=[time_axis], out="y")
        results = [y, h_next] + ([c_next] if c_next is not None else [])
        parameters = [px, ph] + ([pc] if pc is not None else []) + list(params.values())
        name = g.fragment(f"{self.mode().lower()}_step", parameters, results, body)
        step = -1 if reverse else 1
        state = [(str(ph), h0, str(h_next))]
        output = [(str(y), "full", time_axis, step), (str(h_next), "last", 0, 1)]
        if pc is not None and c_next is not None and c0 is not None:
            state.append((str(pc), c0, str(c_next)))
            output.append((str(c_next), "last", 0, 1))
        outs = g.ops(
            "tract_core_scan",
            body=name,
            scan=[(str(px), xg, time_axis, step)],
            full=[(str(params[k]), ref) for k, ref in full.items() if ref is not None],
            state=state,
            output=output,
            outs=[f"output{suffix}", f"h_n{suffix}", f"c_n{suffix}"][: len(output)],
        )
        g.need("tract_registry tract_core")
        return outs[0], outs[1], outs[2] if len(outs) > 2 else None

    def _unroll(
        self,
        g: NNEFBuilder,
        xg: Ref,
        h0: Ref,
        c0: Ref | None,
        w: _Hidden,
        time_axis: int,
        reverse: bool,
        length: Any,
        suffix: str,
    ) -> tuple[Ref, Ref, Ref | None]:
        """One direction of one layer unrolled over its static length (specification ops only)."""
        h, c = h0, c0
        ys: list[Ref] = []
        for t in reversed(range(length)) if reverse else range(length):
            x_t = g.op("slice", xg, axes=[time_axis], begin=[t], end=[t + 1], out=f"gates_x{suffix}_t{t}")
            x_t = g.op("squeeze", x_t, axes=[time_axis], out=f"gates_x{suffix}_t{t}")
            h, c = _step(g, self.mode(), x_t, h, c, w, self._hidden_size())
            ys.append(g.op("unsqueeze", h, axes=[time_axis], out=f"output{suffix}_t{t}"))
        if reverse:
            ys.reverse()
        y = ys[0] if len(ys) == 1 else g.op("concat", ys, axis=time_axis, out=f"output{suffix}")
        return y, h, c


class _RecurrentCell(_Recurrent):
    """``nn.LSTMCell``/``nn.GRUCell``/``nn.RNNCell``: one step, ``forward(input, hx=None)``."""

    def convert_to_nnef(
        self,
        g: NNEFBuilder,
        node: Node,
        name_to_tensor: dict[str, Ref],
        null_ref: Ref,
        torch_graph: Graph,
        **kwargs: Any,
    ) -> list[Ref]:
        """Emits one step; an unbatched ``(H_in)`` input is a batch of one."""
        lstm = self.mode() == "LSTM"
        inputs: list[Value] = list(node.args[0])
        x = inputs[0]
        dtype = self._dtype(x)
        if x.rank not in (1, 2):
            raise TranslationError(f"{self._where()}: input of rank {x.rank}; expected (N, H_in) or (H_in)")
        if any(v.rank != x.rank or v.dtype != x.dtype for v in inputs[1:]):
            raise TranslationError(
                f"{self._where()}: the states {[f'{v.dtype}{list(v.shape)}' for v in inputs[1:]]} do not match the "
                f"input {x.dtype}{list(x.shape)} in rank and dtype"
            )
        batched = x.rank == 2
        xr = name_to_tensor[x.name]
        states = [name_to_tensor[v.name] for v in inputs[1:]]
        if not batched:
            xr = g.op("unsqueeze", xr, axes=[0], out=f"{x.name}_batched")
            states = [g.op("unsqueeze", s, axes=[0], out="state_batched") for s in states]
        if len(states) not in (0, 2 if lstm else 1):
            raise TranslationError(f"{self._where()}: got {len(states)} initial state tensors")
        batch = x.shape[0] if batched else 1
        hidden = self._hidden_size()
        h0 = states[0] if states else self._zeros(g, dtype, batch, hidden, "h0")
        c0 = (states[1] if states else self._zeros(g, dtype, batch, hidden, "c0")) if lstm else None
        xg = self._project(g, xr, 2, "", out="gates_x")
        h, c = _step(g, self.mode(), xg, h0, c0, self._hidden(g, ""), hidden)
        results = [h] + ([c] if c is not None else [])
        if batched:
            return results
        return [g.op("squeeze", r, axes=[0], out=o.name) for r, o in zip(results, node.outputs)]


class LSTMExtractor(_RecurrentLayer):
    """``nn.LSTM``: layers, directions, ``batch_first``, ``proj_size``, with or without biases and ``(h_0, c_0)``."""

    MODULE_CLASS = nn.LSTM


class GRUExtractor(_RecurrentLayer):
    """``nn.GRU``: layers, directions, ``batch_first``, with or without biases and ``h_0``."""

    MODULE_CLASS = nn.GRU


class RNNExtractor(_RecurrentLayer):
    """``nn.RNN`` (``tanh`` or ``relu``): layers, directions, ``batch_first``, with or without biases and ``h_0``."""

    MODULE_CLASS = nn.RNN


class LSTMCellExtractor(_RecurrentCell):
    """``nn.LSTMCell``: one step, returning ``(h_1, c_1)``."""

    MODULE_CLASS = nn.LSTMCell


class GRUCellExtractor(_RecurrentCell):
    """``nn.GRUCell``: one step, returning ``h_1``."""

    MODULE_CLASS = nn.GRUCell


class RNNCellExtractor(_RecurrentCell):
    """``nn.RNNCell`` (``tanh`` or ``relu``): one step, returning ``h_1``."""

    MODULE_CLASS = nn.RNNCell
