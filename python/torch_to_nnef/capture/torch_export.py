"""Capturing a PyTorch module into the IR with ``torch.export``.

The module is exported once (its ATen graph carries dtypes, shapes and symbolic dims on every
node); nothing is re-run per node. Dynamic axes become ``torch.export.Dim`` objects named after
the user's letters, and torch's own symbols are renamed back to those letters.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from torch_to_nnef.capture.errors import CaptureError
from torch_to_nnef.ir import COMPLEX_DTYPES, Graph, Node, Parameter, SizeStep, SymInt, Value, values_in
from torch_to_nnef.ir.dtypes import CAPTURED, DTYPES
from torch_to_nnef.op import resolve

LOGGER = logging.getLogger(__name__)

TORCH_DTYPES = {getattr(torch, DTYPES[name].torch): name for name in CAPTURED}
"""The torch dtypes NNEF can hold, and the IR's name of each."""


_TORCH = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
"""The installed torch's (major, minor) release."""


_BF16_LOSS = {
    "f16": "f16 overflows above 65504 where bfloat16 reaches 3.4e38 (larger activations become inf; "
    "export with bf16_as='f32' if the model has any)",
    "f32": "the weights take twice the space of bfloat16 and tract computes more precisely than PyTorch does "
    "in bfloat16 (outputs differ by bfloat16's rounding; export with bf16_as='f16' for half the size)",
}
"""What each choice of ``bf16_as`` loses."""


def _dtype(t: torch.dtype, where: str, bf16_as: str | None = None) -> str:
    if t == torch.bfloat16 and bf16_as is not None:
        return bf16_as
    try:
        return TORCH_DTYPES[t]
    except KeyError:
        hint = " or export it with bf16_as='f16' / 'f32'" if t == torch.bfloat16 else ""
        raise CaptureError(f"{where}: dtype {t} cannot be exported to NNEF; cast it{hint}") from None


class _Symbols:
    """Renames torch's symbols (``s53``) to the user's letters (``S``), and writes those of the axes
    that take sizes in steps over their own symbol (``8*H_8``, see :func:`_size_steps`).
    """

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.forms: dict[Any, Any] = {}
        """torch's symbol -> its sympy expression over a stepped symbol (``8*H_8``)."""

    def expr(self, value: Any) -> int | str:
        if isinstance(value, int):
            return value
        node_expr = value.node.expr
        if self.forms:  # torch's own simplification of floor divisions applies (8*H_8 // 4 -> 2*H_8)
            node_expr = node_expr.xreplace(self.forms)
        node_expr = _whole_scalings(node_expr)
        if node_expr.is_number:
            return int(node_expr)
        text = _without_remainders(node_expr)
        return re.sub(r"\b[su]\d+\b", lambda m: self.names.get(m.group(0), m.group(0)), text)


def _whole_scalings(expr: Any) -> Any:
    """``expr`` with each size scaled by a float and rounded down (``TruncToInt(1.5*ToFloat(S))``, the
    length ``interpolate(scale_factor=1.5)`` gives) as a floor division, ``(3*S)//2``, when the factor
    is a binary fraction (exact in floats); other such sizes are left as they are.
    """
    import fractions

    import sympy  # type: ignore[import-untyped]
    from torch.utils._sympy.functions import FloorDiv

    def scaled(e: Any) -> Any:
        if type(e).__name__ not in ("TruncToInt", "FloorToInt") or not e.args[0].is_Mul:
            return e
        factors = e.args[0].args
        numbers = [f for f in factors if f.is_Number]
        sizes = [f for f in factors if type(f).__name__ == "ToFloat"]
        if len(numbers) != 1 or len(sizes) != 1 or len(factors) != 2 or numbers[0] < 0:
            return e
        ratio = fractions.Fraction(float(numbers[0]))
        if ratio.denominator & (ratio.denominator - 1) or ratio.denominator > 1 << 20:  # not a binary fraction
            return e
        return FloorDiv(ratio.numerator * sizes[0].args[0], sympy.Integer(ratio.denominator))

    if not any(type(f).__name__ in ("TruncToInt", "FloorToInt") for f in expr.atoms(sympy.Function)):
        return expr
    return expr.replace(lambda e: type(e).__name__ in ("TruncToInt", "FloorToInt"), scaled)


def _without_remainders(expr: Any) -> str:
    """``expr`` as text, its remainders by constants (``Mod(4 - Mod(S, 4), 4)``, which tract cannot
    read: the padding of ``S`` to a multiple of 4) in sympy's canonical form (``Mod(3*S, 4)``) written
    with a floor division of a non-negative number, ``3*S - 4*(3*S//4)`` (tract divides towards zero,
    and proves nothing of a division of terms of both signs).
    """
    import sympy  # type: ignore[import-untyped]

    def remainder(e: Any) -> bool:
        return type(e).__name__ in ("Mod", "PythonMod") and e.args[1].is_Integer and e.args[1] > 0

    if not any(remainder(f) for f in expr.atoms(sympy.Function)):
        return str(expr)
    from torch.utils._sympy.value_ranges import ValueRanges, bound_sympy

    canonical = expr.replace(remainder, lambda e: sympy.Mod(*e.args))  # Python's remainder: sympy's
    ranges = {s: ValueRanges(0, sympy.oo) for s in canonical.free_symbols}  # sizes
    texts: dict[str, str] = {}

    def placeholder(e: Any) -> Any:
        a, n = e.args
        if not bound_sympy(a, ranges).lower >= 0:
            return e
        holder = sympy.Symbol(f"t2n_remainder_{len(texts)}", integer=True, nonnegative=True)
        texts[holder.name] = f"(({a})-{n}*(({a})//{n}))"
        return holder

    text = str(canonical.replace(lambda e: isinstance(e, sympy.Mod), placeholder))
    while "t2n_remainder_" in text:  # nested remainders: the outer one's text names the inner ones
        text = re.sub(r"t2n_remainder_\d+", lambda m: texts[m.group(0)], text)
    return text


def _source_line(node: torch.fx.Node) -> str:
    trace = node.meta.get("stack_trace") or ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', trace)
    user = [f for f in frames if "/torch/" not in f[0]]
    if not user:
        return ""
    file, line, func, code = user[-1]
    return f"{file}:{line} in {func}: {code.strip()}"


def _module_path(node: torch.fx.Node) -> tuple[str, str]:
    """The dotted path and class name of the innermost module that ran ``node``."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, kind = list(stack.values())[-1]
    name = getattr(kind, "__name__", str(kind).rsplit(".", 1)[-1].strip("'>"))
    return _clean_path(path), name


def _clean_path(path: str) -> str:
    """``L['self'].encoder.layers[0]`` or ``encoder.layers.0`` -> ``encoder.layers.0``."""
    path = re.sub(r"^L\['self'\]\.?", "", path)
    path = re.sub(r"\[(\d+)\]", r".\1", path)
    path = re.sub(r"\[['\"]([^'\"]+)['\"]\]", r".\1", path)
    return path.strip(".")


def _dynamic_dim(letter: str) -> Any:
    """How torch.export is told an axis is dynamic: ``Dim.DYNAMIC`` (torch >= 2.6), or the
    automatic hint of older releases; each axis gets its own symbol, renamed to the user's letter
    afterwards (an axis the code specialises is reported by :func:`capture`).
    """
    dynamic = getattr(torch.export.Dim, "DYNAMIC", None)
    if dynamic is not None:
        return dynamic
    from torch.export.dynamic_shapes import _DimHint  # torch 2.5

    return _DimHint.AUTO


def capture(
    model: torch.nn.Module,
    args: Sequence[torch.Tensor],
    input_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    bf16_as: str | None = None,
) -> tuple[Graph, Any]:
    """Exports ``model`` on ``args`` and converts the ATen graph to the IR.

    ``bf16_as`` (``"f16"`` or ``"f32"``) is the dtype bfloat16 values take in the IR, with a warning
    naming what is lost; ``None`` refuses them.

    Returns:
        The graph and the flattened output structure's spec (for naming).
    """
    dims: dict[str, Any] = {}
    dynamic_shapes: list[dict[int, Any] | None] = []
    for name, arg in zip(input_names, args):
        axes = (dynamic_axes or {}).get(name)
        if not axes:
            dynamic_shapes.append(None)
            continue
        spec = {}
        for axis, letter in axes.items():
            if not -arg.dim() <= axis < arg.dim():
                raise CaptureError(f"dynamic axis {axis} of input {name!r} is out of range for shape {list(arg.shape)}")
            if letter not in dims:
                dims[letter] = _dynamic_dim(letter)
            spec[axis % arg.dim()] = dims[letter]
        dynamic_shapes.append(spec)
    try:
        with _rnn_cache_kept(model), _max_pool1d_with_indices(bool(dims)):
            exported = torch.export.export(
                model, tuple(args), dynamic_shapes=_as_signature(model, dynamic_shapes) if dims else None, strict=False
            )
        exported = _decomposed(exported)
    except Exception as exc:  # torch raises many types here; all mean "cannot capture"
        raise CaptureError(_explain(exc, model, input_names, dynamic_axes or {})) from exc
    return _to_ir(exported, input_names, dynamic_axes or {}, bf16_as), exported


def _as_signature(model: torch.nn.Module, shapes: list[dict[int, Any] | None]) -> tuple[Any, ...]:
    """The inputs' dynamic shapes in the structure of ``model.forward``'s parameters, as torch.export
    wants them: those given to a ``*args`` parameter as one tuple.
    """
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a forward without a signature: as given
        return tuple(shapes)
    for i, p in enumerate(params):
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            return (*shapes[:i], tuple(shapes[i:]))
    return tuple(shapes)


@contextlib.contextmanager
def _max_pool1d_with_indices(dynamic: bool) -> Iterator[None]:
    """With dynamic axes, ``torch.max_pool1d`` (what ``F.max_pool1d`` and ``nn.MaxPool1d`` call) as the values
    of ``max_pool1d_with_indices``: torch.export specialises the length the former pools (its kernel reads
    the sizes as integers), not the latter's.
    """
    if not dynamic:
        yield
        return
    plain = torch.max_pool1d

    def values(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.max_pool1d_with_indices(x, *args, **kwargs)[0]

    torch.max_pool1d = values  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.max_pool1d = plain


class _WeightCache(list):  # type: ignore[type-arg]
    """An RNN's ``_flat_weights`` list that torch.export's pytree sees as one leaf."""


@contextlib.contextmanager
def _rnn_cache_kept(model: torch.nn.Module) -> Iterator[None]:
    """On torch 2.5, lets torch.export capture a model that is itself an RNN module.

    torch.export swaps the parameters for its own tensors and back, which the module mirrors in its
    ``_flat_weights`` list; torch 2.5 refuses a top-level module whose tensor attributes changed
    (torch >= 2.6 warns). The list is updated in place, so as one leaf it is unchanged.
    """
    cache = model.__dict__.get("_flat_weights")
    if _TORCH >= (2, 6) or type(cache) is not list:
        yield
        return
    model.__dict__["_flat_weights"] = _WeightCache(cache)
    try:
        yield
    finally:
        model.__dict__["_flat_weights"] = list(model.__dict__["_flat_weights"])


def _decomposed(exported: Any) -> Any:
    """``exported`` in ATen ops, its functional composite ops kept whole (as torch >= 2.6 keeps them);
    on torch 2.5, attention is lowered when it cannot be kept (a view of its result that relies on
    strides its meta kernel gets wrong), then everything when the kept ops still cannot be traced.
    """
    if _translatable_as_is(exported):
        return exported
    preserved = _preserved_ops(exported)
    kept = preserved.get("_preserve_ops", ())
    tries = [kept, tuple(op for op in kept if op._schema.name not in _KEPT_IF_POSSIBLE)]
    for ops in dict.fromkeys(tries):  # the distinct non-empty sets, in order
        if not ops:
            continue
        try:
            return exported.run_decompositions({}, _preserve_ops=ops)
        except Exception as exc:  # any failure: keep fewer ops whole, as torch 2.5 would lower them
            LOGGER.debug("torch 2.5 could not keep %s whole (%s): lowering them", ops, exc)
    if kept:
        return exported.run_decompositions({})
    # torch >= 2.6 keeps composite ops whole: those the registry lacks are lowered
    exported = exported.run_decompositions(_composites_to_lower(exported))
    for _ in range(_COMPOSITE_DEPTH - 1):
        table = _composites_to_lower(exported)
        if not table:
            break
        exported = exported.run_decompositions(table)
    return exported


_COMPOSITE_DEPTH = 4
"""How many times the composite ops the registry lacks are lowered (a composite kernel may call
another composite op)."""


def _composites_to_lower(exported: Any) -> dict[Any, Callable[..., Any]]:
    """The composite ops of the graph that the registry does not translate, each with torch's default
    decomposition: ``multiply`` becomes ``mul``, ``swapaxes`` ``transpose``, ``special_expit``
    ``sigmoid``, ``hstack`` ``cat``. torch >= 2.6 keeps composite ops whole, so these would otherwise
    be reported as unsupported. FFTs and STFTs stay (their lowered forms are translated as kept), and
    size queries. torch's table is built only when the graph has such an op.
    """
    candidates = {
        op
        for node in exported.graph.nodes
        if node.op == "call_function"
        and isinstance(op := node.target, torch._ops.OpOverload)
        and not _translated(op)
        and (kind := _kind(op))
        and "fft" not in kind
        and "stft" not in kind
        and not op._schema.is_mutable
        and all(str(r.type) == "Tensor" for r in op._schema.returns)  # not a size query (sym_size)
    }
    default_decompositions = getattr(torch.export, "default_decompositions", None)  # torch >= 2.6
    if not candidates or default_decompositions is None:
        return {}
    from torch._decomp import decomposition_table

    defaults = default_decompositions()
    return {
        op: defaults[op]
        for op in candidates
        if op in defaults and (op in decomposition_table or _has_composite_kernel(op))
    }


def _translated(op: Any) -> bool:
    """Whether the registry translates the ATen overload ``op``, directly or as the kind
    :data:`_COMPOSITE_AS` gives it.
    """
    kind = _kind(op)
    return resolve(kind, _overload(op)) is not None or kind in _COMPOSITE_AS


def _has_composite_kernel(op: Any) -> bool:
    """Whether the ATen overload ``op`` has a composite (decomposing) kernel in C++."""
    schema = op._schema
    overload = f"{schema.name}.{schema.overload_name}" if schema.overload_name else schema.name  # "aten::mul.Tensor"
    return bool(torch._C._dispatch_has_kernel_for_dispatch_key(overload, "CompositeImplicitAutograd"))


def _translatable_as_is(exported: Any) -> bool:
    """True when the graph torch.export gave needs no decomposition pass (which traces the model
    again: about a third of an export's time): functional ATen ops only (none writes to its
    arguments, no higher-order op), each of a kind the registry translates, none in training mode
    (dropout, batch norm) and no FFT (the pass renames their lowered forms).
    """
    import operator

    for node in exported.graph.nodes:
        if node.op != "call_function":
            continue
        target = node.target
        if not isinstance(target, torch._ops.OpOverload):
            if getattr(operator, getattr(target, "__name__", ""), None) is target:  # getitem, size arithmetic
                continue
            return False
        schema = target._schema
        if (
            schema.is_mutable
            or any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
            or "fft" in schema.name
            or not _translated(target)
        ):
            return False
        for i, arg in enumerate(schema.arguments):
            if arg.name in ("train", "training"):
                value = node.args[i] if i < len(node.args) else node.kwargs.get(arg.name, arg.default_value)
                if value is not False:
                    return False
    return True


_COMPOSITE_AS: dict[str, Callable[[tuple[Any, ...]], tuple[str, tuple[Any, ...]]]] = {
    # batch_norm(input, weight, bias, running_mean, running_var, training=False, momentum, eps, cudnn)
    "aten::batch_norm": lambda a: ("aten::_native_batch_norm_legit_no_training", (*a[:5], a[6], a[7])),
}
"""Composite kinds of a graph translated without decomposition, as the kind they decompose to
(with its arguments): the registry translates that one."""


_KEPT_IF_POSSIBLE = frozenset({"aten::scaled_dot_product_attention"})
"""Composite ops torch 2.5 keeps whole unless that fails (its meta kernel gives attention's result
strides of its own, which a ``view`` of it may not accept)."""


_NOT_PRESERVED = frozenset(
    {
        "aten::istft",  # its meta kernel fails
        "aten::nll_loss_nd",  # endless recursion
        "aten::cross_entropy_loss",
        "aten::matmul",  # specialises dynamic axes
        "aten::sym_size",  # a size query
    }
)
"""Composite ops torch 2.5 cannot trace kept whole."""

_LOWERED_AS_KEPT = {"aten::nll_loss_forward": "aten::nll_loss", "aten::nll_loss2d_forward": "aten::nll_loss2d"}
"""Kinds torch 2.5 lowers to, by the kind torch >= 2.6 keeps with the same arguments (their extra
outputs unused)."""


def _preserved_ops(exported: Any) -> dict[str, Any]:
    """The extra argument that makes torch 2.5's ``run_decompositions({})`` keep the graph's functional
    composite ops (``linear``, ``instance_norm``, ...) as torch >= 2.6 does, instead of lowering
    them (``linear`` to ``t`` + ``addmm``); empty on torch >= 2.6.

    FFT ops and those of ``_NOT_PRESERVED`` stay out. Lowered FFTs are renamed back by
    :func:`_fft_as_kept`; istft's overlap-add lowers to ``unfold_backward``.
    """
    if "_preserve_ops" not in inspect.signature(exported.run_decompositions).parameters:
        return {}
    from torch._subclasses.functional_tensor import FunctionalTensor

    unsafe = set(getattr(FunctionalTensor, "maybe_aliasing_or_mutating_ops", ())) | set(FunctionalTensor.metadata_fns)
    kept = set()
    for node in exported.graph.nodes:
        op = node.target
        if node.op != "call_function" or not isinstance(op, torch._ops.OpOverload) or op in unsafe:
            continue
        schema = op._schema
        name = schema.name  # "aten::linear"
        if (
            "fft" in name
            or name in _NOT_PRESERVED
            or schema.is_mutable
            or any(a.alias_info is not None for a in schema.arguments)
            or not (
                _has_composite_kernel(op)
                or torch._C.DispatchKey.CompositeImplicitAutograd in op.py_kernels  # decomposed in Python
            )
        ):
            continue
        kept.add(op)
    return {"_preserve_ops": tuple(sorted(kept, key=str))}


def _user_frame(exc: BaseException) -> str:
    """``file:line in function: code`` of the deepest frame of the user's code in the traceback."""
    import traceback

    text = str(exc)
    m = re.search(
        r'The following call raised this error:\n\s*File "([^"]+)", line (\d+), in (\S+)\n(?:[ \t]+(\S.*))?', text
    )
    if m:
        file, line, func, code = m.groups()
        return f"{file}:{line} in {func}" + (f": {code.strip()}" if code else "")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/torch/" not in f.filename]
    frames = [f for f in frames if "torch_to_nnef" not in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}"


def _explain(
    exc: BaseException,
    model: torch.nn.Module,
    input_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> str:
    """What went wrong in terms of the user's model: which line, which input and axis, what to do."""
    name = type(model).__name__
    text = str(exc)
    where = _user_frame(exc)
    at = f" at {where}" if where else ""
    if "data-dependent" in text or type(exc).__name__ in (
        "GuardOnDataDependentSymNode",
        "DataDependentOutputException",
    ):
        return (
            f"torch.export could not capture {name}: its code{at} depends on the values inside a tensor "
            "(an `if` on a tensor, .item(), .tolist(), nonzero() or a size computed from data). Rewrite it "
            "with torch.where / torch.cond, or compute that part outside the exported module."
        )
    if type(exc).__name__ == "UnsupportedOperatorException" and "fft" in text and _TORCH < (2, 6):
        return (
            f"torch {torch.__version__} cannot export {name}{at}: its torch.export has no FFT (torch.fft, stft) "
            "over a dynamic axis; torch >= 2.6 has. Upgrade torch, or export with that axis static."
        )
    divisible = re.fullmatch(r"\"?L\['args'\]\[0\]\[(\d+)\]\.size\(\)\[(\d+)\]\"?", text)
    if isinstance(exc, KeyError) and divisible and _TORCH < (2, 6):
        position, axis = int(divisible.group(1)), int(divisible.group(2))
        input_name = input_names[position] if position < len(input_names) else f"#{position}"
        letter = dynamic_axes.get(input_name, {}).get(axis, "?")
        return (
            f"torch {torch.__version__} cannot export {name} with axis {axis} ('{letter}') of input {input_name!r} "
            "dynamic: the model needs that size divisible (strided layers, then upsampling or a reshape) and "
            "torch 2.5's torch.export fails on such a constraint; torch >= 2.6 exports it. Upgrade torch, or "
            "export with that axis static."
        )
    specialised = re.findall(r"L\['(\w+)'\](?:\[(\d+)\])*\.size\(\)\[(\d+)\]", text)
    if "specialized" in text and specialised:
        try:
            params = list(inspect.signature(model.forward).parameters)
        except (TypeError, ValueError):
            params = []
        value = re.search(r"to be a constant \((\d+)\)", text)
        parts = []
        for param, index, axis in specialised:
            position = int(index) if param == "args" and index else (params.index(param) if param in params else -1)
            input_name = input_names[position] if 0 <= position < len(input_names) else param
            letter = dynamic_axes.get(input_name, {}).get(int(axis), "?")
            part = f"axis {axis} ('{letter}') of input {input_name!r}"
            if part not in parts:
                parts.append(part)
        return (
            f"torch.export could not keep {', '.join(parts)} dynamic in {name}: the model's code specialised it "
            f"to {value.group(1) if value else 'a constant'}{at}. Common causes: a Python loop or int() over that "
            "size, an assert on the shape, or a custom module that loops over time (nn.LSTM, nn.GRU and nn.RNN "
            "are exported whole already). Register a ModuleInfoExtractor for that submodule, or export without "
            "this dynamic axis; TORCH_LOGS=+dynamic shows the line that specialised it."
        )
    head = "\n".join(text.strip().splitlines()[:12])
    return f"torch.export could not capture {name}{at}: {type(exc).__name__}: {head}"


_PERIODIC = frozenset({"FloorDiv", "CleanDiv", "Mod", "PythonMod", "ModularIndexing"})
"""sympy functions of torch's shape expressions that repeat with a period (floor divisions, remainders)."""

_LONGEST_PERIOD = 1024
"""Longer periods of a size's equalities are not looked into (the search would be slow)."""


def _shape_env(exported: Any) -> Any:
    """The ShapeEnv of torch's export (its symbols' hints and guards); None when there is none."""
    for node in exported.graph.nodes:
        shape_env = getattr(getattr(node.meta.get("val"), "fake_mode", None), "shape_env", None)
        if shape_env is not None:
            return shape_env
    return None


def _equalities(shape_env: Any) -> list[Any]:
    """The equalities among torch's guards and runtime assertions (``Eq(2*(s0//8), s0//4)``)."""
    import sympy  # type: ignore[import-untyped]

    pending = [g.expr for g in getattr(shape_env, "guards", ())]
    for asserts in getattr(shape_env, "deferred_runtime_asserts", {}).values():
        pending.extend(a.expr for a in asserts)
    found = []
    while pending:
        expr = pending.pop()
        if isinstance(expr, sympy.And):
            pending.extend(expr.args)
        elif isinstance(expr, sympy.Eq):
            found.append(expr)
    return found


def _periods(expr: Any) -> list[int]:
    """Periods in the size of the floor divisions and remainders in a sympy expression: a function's
    divisor or modulus times the periods of those nested in its argument (``Mod(s0//2 - 2, 2)``
    repeats every 4 sizes, not 2).
    """
    import sympy  # type: ignore[import-untyped]

    def period(f: Any) -> int:
        numbers = f.args[1:3] if type(f).__name__ == "ModularIndexing" else f.args[1:2]
        if not numbers or not all(n.is_Integer and n > 0 for n in numbers):
            return 1
        inner = [period(g) for g in f.args[0].atoms(sympy.Function) if type(g).__name__ in _PERIODIC]
        return math.prod(int(n) for n in numbers) * math.lcm(1, *inner)

    return [period(f) for f in expr.atoms(sympy.Function) if type(f).__name__ in _PERIODIC]


def _size_step(sym: Any, hint: int, equalities: Sequence[Any]) -> tuple[int, int] | None:
    """``(step, offset)`` when torch's equalities over the size ``sym`` hold only for the sizes
    ``step * k + offset`` around its example size ``hint`` (``Eq(2*(s0//8), s0//4)``, and the others
    of a U-Net's skip connections: multiples of 8); None when they hold for every size.

    The equalities are periodic in the size (floor divisions and remainders by constants): the sizes
    of each residue modulo their common period are tried at a few values above the example.
    """
    import sympy  # type: ignore[import-untyped]

    own = [e for e in equalities if e.free_symbols == {sym}]
    periods = [p for e in own for p in _periods(e) if p > 1]
    if not periods:
        return None
    period = math.lcm(*periods)
    if period > _LONGEST_PERIOD:
        LOGGER.debug("the sizes of %s repeat every %d: not looked into", sym, period)
        return None
    start = hint // period + 1
    allowed: dict[int, bool] = {}

    def holds(residue: int) -> bool:
        if residue not in allowed:
            sizes = [sympy.Integer(k * period + residue) for k in (start, start + 1, start + 2)]
            allowed[residue] = all(e.xreplace({sym: size}) == sympy.true for e in own for size in sizes)
        return allowed[residue]

    for step in (d for d in range(1, period + 1) if period % d == 0):
        offset = hint % step
        if all(holds(r) for r in range(offset, period, step)):
            return (step, offset) if step > 1 else None
    # Not even the example's own residue holds above it: an equality pins the size near the example.
    above = [sympy.Integer(k * period + hint % period) for k in (start, start + 1, start + 2)]
    raise _PinnedSize(next((e for e in own for s in above if e.xreplace({sym: s}) != sympy.true), own[0]))


class _PinnedSize(Exception):
    """An equality of torch's guards that holds at the example size but at none far above it
    (``Eq(s0//8, 1)``: a U-Net traced with a bottleneck of one row).
    """

    def __init__(self, equality: Any) -> None:
        super().__init__(str(equality))
        self.equality = equality


def _size_steps(
    exported: Any, input_names: Sequence[str], dynamic_axes: Mapping[str, Mapping[int, str]]
) -> dict[Any, tuple[str, SizeStep]]:
    """The dynamic axes that torch found the model needs in steps, by torch's symbol: the user's
    letter and the step. A U-Net's height is a multiple of 8 (pooled three times, then upsampled and
    joined with its skip connections): torch proves ``2*(H//8) == H//4`` from its guards, but tract
    cannot, unless the height is written ``8*H_8``.
    """
    shape_env = _shape_env(exported)
    if shape_env is None or not dynamic_axes:
        return {}
    equalities = _equalities(shape_env)
    if not equalities:
        return {}
    hints = getattr(shape_env, "backed_var_to_val", None)  # torch >= 2.13 (var_to_val before)
    if hints is None:
        hints = getattr(shape_env, "var_to_val", {})
    placeholders = [n for n in exported.graph.nodes if n.op == "placeholder"]
    user = [n for n, spec in zip(placeholders, exported.graph_signature.input_specs) if spec.kind.name == "USER_INPUT"]
    steps: dict[Any, tuple[str, SizeStep]] = {}
    by_letter: dict[str, SizeStep] = {}
    of_letter: dict[str, list[Any]] = {}  # torch's symbols of each letter (one per input axis unless unified)
    for node, name in zip(user, input_names):
        shape = getattr(node.meta.get("val"), "shape", ())
        for axis, letter in dynamic_axes.get(name, {}).items():
            d = shape[axis] if -len(shape) <= axis < len(shape) else None
            sym = getattr(getattr(d, "node", None), "expr", None)
            if sym is None or not sym.is_Symbol or sym in steps or sym not in hints:
                continue
            of_letter.setdefault(letter, []).append(sym)
            try:
                found = _size_step(sym, int(hints[sym]), equalities)
            except _PinnedSize as pinned:
                guard = re.sub(rf"\b{sym}\b", letter, str(pinned.equality))
                raise CaptureError(
                    f"dynamic axis {axis} ('{letter}') of input {name!r} only works near its example size "
                    f"{hints[sym]}: torch.export's guard {guard} holds there and not for larger sizes (e.g. the model "
                    "divides that size down to 1, a case torch treats apart). Export with a larger example size, or "
                    "without this dynamic axis"
                ) from None
            if found is None:
                continue
            step = SizeStep(f"{letter}_{found[0]}", *found)
            if by_letter.setdefault(letter, step) != step:
                LOGGER.debug("axis %s of input %r needs other steps than the other '%s' axes", axis, name, letter)
                continue
            steps[sym] = (letter, step)
            LOGGER.info(
                "axis %s ('%s') of input %r takes the sizes %s only (torch.export found the model needs them): "
                "written as %s",
                axis,
                letter,
                name,
                step.describe(),
                step.form,
            )
    for letter, step in by_letter.items():  # the letter's other axes: the same size, by the user's word
        for sym in of_letter.get(letter, ()):
            if (int(hints[sym]) - step.offset) % step.step == 0:
                steps.setdefault(sym, (letter, step))
    return steps


def _to_ir(
    exported: Any,
    input_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    bf16_as: str | None = None,
) -> Graph:
    """The IR graph of an ``ExportedProgram``: its user inputs under ``input_names``, its weights as
    parameters, one node per ATen call, and the dynamic axes as the user's letters.
    """
    return _IRBuilder(exported, input_names, dynamic_axes, bf16_as).build()


class _IRBuilder:
    """Walks an ``ExportedProgram``'s graph once, turning each FX node into IR values and nodes."""

    def __init__(
        self,
        exported: Any,
        input_names: Sequence[str],
        dynamic_axes: Mapping[str, Mapping[int, str]],
        bf16_as: str | None,
    ) -> None:
        self.exported = exported
        self.input_names = input_names
        self.dynamic_axes = dynamic_axes
        self.bf16_as = bf16_as
        self.bf16_seen = False
        self.symbols = _Symbols()
        self.stepped = _size_steps(exported, input_names, dynamic_axes)
        if self.stepped:
            import sympy  # type: ignore[import-untyped]

            for sym, (_, step) in self.stepped.items():
                base = sympy.Symbol(step.symbol, integer=True, nonnegative=True)
                self.symbols.forms[sym] = step.step * base + step.offset
        signature = exported.graph_signature
        self.output_specs = signature.output_specs
        self.param_targets = {spec.arg.name: spec for spec in signature.input_specs if spec.kind.name != "USER_INPUT"}
        self.state = {**exported.state_dict, **exported.constants}
        self.values: dict[str, Any] = {}
        self.inputs: list[Value] = []
        self.outputs: list[Any] = []
        self.parameters: dict[str, Parameter] = {}
        self.nodes: list[Node] = []

    def build(self) -> Graph:
        """The whole graph."""
        for node in self.exported.graph.nodes:
            if node.op == "placeholder":
                self.placeholder(node)
            elif node.op == "call_function":
                self.call(node)
            elif node.op == "output":
                self.output(node)
        return Graph(
            inputs=self.inputs,
            outputs=[o for o in self.outputs if isinstance(o, Value)],
            nodes=self.nodes,
            parameters=self.parameters,
            symbols=self.symbol_ranges(),
            steps={letter: step for letter, step in self.stepped.values()},
        )

    def dtype_of(self, t: torch.dtype, where: str) -> str:
        """The IR dtype of a torch dtype; bfloat16, which tract lacks, as ``bf16_as`` (warned once)."""
        if t == torch.bfloat16 and not self.bf16_seen and self.bf16_as is not None:
            self.bf16_seen = True
            LOGGER.warning(
                "the model computes in bfloat16 (first at %s), which tract does not have: exported as %s; %s",
                where,
                self.bf16_as,
                _BF16_LOSS.get(self.bf16_as, ""),
            )
        return _dtype(t, where, self.bf16_as)

    def value_of(self, node: Any, meta: Any, suffix: str = "") -> Value:
        """The IR value of a tensor result (``suffix`` tells apart the results of one node)."""
        return Value(
            name=node.name + suffix,
            dtype=self.dtype_of(meta.dtype, node.name),
            shape=tuple(self.symbols.expr(d) for d in meta.shape),
        )

    def convert_arg(self, a: Any) -> Any:
        """An FX argument in IR terms: values for nodes, IR dtypes for torch dtypes, the rest as is."""
        if isinstance(a, torch.fx.Node):
            return self.values[a.name]
        if isinstance(a, (list, tuple)):
            return type(a)(self.convert_arg(x) for x in a)
        if isinstance(a, torch.dtype):
            return self.dtype_of(a, "argument")
        return a

    def placeholder(self, node: Any) -> None:
        """A weight (a parameter, buffer or lifted constant) or the next user input."""
        meta = node.meta["val"]
        if node.name in self.param_targets:
            spec = self.param_targets[node.name]
            tensor = self.state[spec.target]
            v = self.value_of(node, meta)
            if v.dtype in COMPLEX_DTYPES:  # stored in the complex layout: its parts on a trailing axis
                tensor = torch.view_as_real(tensor.detach().resolve_conj()).contiguous()
            self.values[node.name] = v
            self.parameters[node.name] = Parameter(spec.target, tensor)
            return
        name = self.input_names[len(self.inputs)]
        for axis, letter in self.dynamic_axes.get(name, {}).items():
            d = meta.shape[axis]
            if isinstance(d, int) or d.node.expr.is_number:  # specialised, maybe only by the decompositions
                raise CaptureError(
                    f"dynamic axis {axis} ({letter}) of input {name!r} was specialised to {d} by the model's "
                    "code: it only works at that size"
                )
            self.symbols.names.setdefault(str(d.node.expr), letter)
        v = self.value_of(node, meta)
        if v.dtype in COMPLEX_DTYPES:
            raise CaptureError(complex_io_advice("input", name, v.dtype))
        v = Value(name=name, dtype=v.dtype, shape=v.shape)
        self.values[node.name] = v
        self.inputs.append(v)

    def call(self, node: Any) -> None:
        """An ATen call: its results become IR values, and the call an IR node (kept under the kind
        a lowered or composite op stands for, and in the ``complex::`` namespace on complex values).
        """
        if node.target.__name__ == "getitem":
            source, index = node.args
            self.values[node.name] = self.values[source.name][index]
            return
        meta = node.meta.get("val")
        kind = _kind(node.target)
        if isinstance(meta, (list, tuple)):
            outs = tuple(
                self.value_of(node, m, f"_{i}") if isinstance(m, torch.Tensor) else None for i, m in enumerate(meta)
            )
            self.values[node.name] = outs
        elif isinstance(meta, torch.Tensor):
            outs = (self.value_of(node, meta),)
            self.values[node.name] = outs[0]
        elif meta is None:  # no result: runtime assertions are dropped, anything else is kept
            if kind.startswith("aten::_assert") or kind == "aten::sym_constrain_range_for_size":
                return
            outs = ()
        else:  # a symbolic integer (x.size(2) under a dynamic axis)
            if kind in _READS_A_NUMBER and not isinstance(meta, (int, float, bool)) and _used_beyond_checks(node):
                raise CaptureError(
                    f"torch.export's graph reads a number from a tensor at {_source_line(node) or node.name} (.item(), "
                    "or a tensor given where torch expects a number, as torch.arange's bounds), a number it ties to no "
                    "input: compute it outside the exported module (the torch.jit.trace front-end, which "
                    "frontend='auto' tries next, keeps torch.arange's and torch.full's tensor numbers as tensors)"
                )
            self.values[node.name] = SymInt(str(self.symbols.expr(meta)))
            return
        args = tuple(self.convert_arg(a) for a in node.args)
        overload = _overload(node.target)
        traced_kind = kind
        kind, args = _fft_as_kept(_LOWERED_AS_KEPT.get(kind, kind), args)
        if kind in _COMPOSITE_AS:
            kind, args = _COMPOSITE_AS[kind](args)
        if kind != traced_kind:  # given as the default overload of the kind it stands for
            overload = ""
        kwargs = {k: self.convert_arg(v) for k, v in node.kwargs.items()}
        if kwargs:
            args = (*args, kwargs)
        if touches_complex((*args, *outs)):  # keyed apart: real translations must not see complex operands
            kind = "complex::" + kind.split("::", 1)[1]
        module_path, module_class = _module_path(node)
        self.nodes.append(
            Node(
                kind=kind,
                args=args,
                outputs=tuple(o for o in outs if o is not None),
                module_path=module_path,
                module_class=module_class,
                source=_source_line(node),
                overload=overload,
            )
        )

    def output(self, node: Any) -> None:
        """The user outputs (buffers written back, as torch 2.5 marks instance_norm's running stats, are none)."""
        flat = [a for a, spec in zip(node.args[0], self.output_specs) if spec.kind.name == "USER_OUTPUT"]
        self.outputs = [self.values[a.name] if isinstance(a, torch.fx.Node) else a for a in flat]
        for o in self.outputs:
            if isinstance(o, Value) and o.dtype in COMPLEX_DTYPES:
                raise CaptureError(complex_io_advice("output", o.name, o.dtype))

    def symbol_ranges(self) -> dict[str, tuple[int, int | None]]:
        """Each user letter's range of values (for an axis in steps, the range of its step count)."""
        ranges: dict[str, tuple[int, int | None]] = {}
        for s, r in self.exported.range_constraints.items():
            letter = self.symbols.names.get(str(s))
            if letter is None:
                continue
            low, high = int(r.lower), None if str(r.upper) in ("int_oo", "oo") else int(r.upper)
            if s in self.stepped:  # the range of k in step * k + offset
                step = self.stepped[s][1]
                letter = step.symbol
                low = max(0, -(-(low - step.offset) // step.step))
                high = None if high is None else (high - step.offset) // step.step
            ranges.setdefault(letter, (low, high))
        return ranges


_FFT_NORMS = ("backward", "ortho", "forward")
"""``norm`` of a forward transform by torch's normalization code (0: none, 1: 1/sqrt(n), 2: 1/n);
an inverse transform reads the tuple backwards."""


_READS_A_NUMBER = ("aten::item", "aten::_local_scalar_dense")
"""Ops that read a number from a tensor: torch.export gives it a symbol of its own (``u0``), tied to no input."""

_CHECKS = (
    "aten::_assert_scalar",
    "aten::_assert_async",
    "aten::sym_constrain_range",
    "aten::sym_constrain_range_for_size",
)
"""Ops that only check a number (dropped from the IR)."""


def _used_beyond_checks(node: torch.fx.Node) -> bool:
    """Whether an ATen op other than a check uses the number ``node`` gives (through Python arithmetic on it)."""
    import operator

    for user in node.users:
        target = user.target
        if isinstance(target, torch._ops.OpOverload):
            if _kind(target) not in _CHECKS:
                return True
        elif getattr(operator, getattr(target, "__name__", ""), None) is target:
            if _used_beyond_checks(user):
                return True
        else:
            return True
    return False


def _fft_as_kept(kind: str, args: tuple[Any, ...]) -> tuple[str, tuple[Any, ...]]:
    """A one-axis ``_fft_r2c``/``_fft_c2r``/``_fft_c2c`` (what torch 2.5 lowers ``torch.fft.rfft``,
    ``irfft``, ``fft`` and ``ifft`` to, after cropping or padding the input to ``n``) as the op
    torch >= 2.6 keeps, with its ``(x, n, dim, norm)`` arguments; any other node unchanged.
    """
    if kind not in ("aten::_fft_r2c", "aten::_fft_c2r", "aten::_fft_c2c") or len(args) != 4 or len(args[1]) != 1:
        return kind, args
    x, (dim,), normalization, last = args
    if kind == "aten::_fft_r2c":
        return "aten::fft_rfft" if last else "aten::fft_fft", (x, None, dim, _FFT_NORMS[normalization])
    if kind == "aten::_fft_c2r":
        return "aten::fft_irfft", (x, last, dim, _FFT_NORMS[2 - normalization])
    if last:
        return "aten::fft_fft", (x, None, dim, _FFT_NORMS[normalization])
    return "aten::fft_ifft", (x, None, dim, _FFT_NORMS[2 - normalization])


def complex_io_advice(which: str, name: str, dtype: str) -> str:
    """Why a complex model ``input`` or ``output`` (``which``) is refused, and what to pass or return instead."""
    fix = (
        "pass torch.view_as_real of it and call torch.view_as_complex inside the model"
        if which == "input"
        else "return torch.view_as_real(...) of it, or its .abs(), .real or .imag"
    )
    return f"{which} {name!r} is complex ({dtype}): NNEF has no complex tensors; {fix}"


def touches_complex(items: Sequence[Any]) -> bool:
    """Whether a complex :class:`Value` is among ``items`` (nested in lists, tuples and dicts)."""
    return any(v.dtype in COMPLEX_DTYPES for v in values_in(items))


def _overload(target: Any) -> str:
    """The overload name of an ATen op (``"Tensor"``), "" for the default one or a Python function."""
    name = getattr(target, "_overloadname", "default")
    return "" if name == "default" else str(name)


def _kind(target: Any) -> str:
    name = getattr(target, "__name__", str(target))  # e.g. "conv1d.default"
    base = name.split(".")[0]
    namespace = getattr(getattr(target, "namespace", None), "__str__", lambda: "aten")()
    return f"{namespace}::{base}"
