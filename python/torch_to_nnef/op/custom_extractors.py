"""Custom extractors: a user-written NNEF translation that takes over a whole submodule.

Subclass :class:`ModuleInfoExtractor`, set ``MODULE_CLASS`` and write ``convert_to_nnef``; defining
the subclass registers it. During export, every outermost submodule of that class is captured as
one opaque node (a ``torch.library`` op whose fake implementation only derives output shapes), so
the exporter neither traces inside it nor lets it specialise dynamic dimensions::

    class ScaledTanhExtractor(ModuleInfoExtractor):
        MODULE_CLASS = ScaledTanh

        def convert_to_nnef(self, g, node, name_to_tensor, null_ref, torch_graph, **kwargs):
            (x,) = node.args[0]
            scale = self.variable(g, "scale")
            return g.op("mul", g.op("tanh", name_to_tensor[x.name]), scale, out=node.outputs[0].name)
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import itertools
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch.utils import _pytree as pytree

from torch_to_nnef.errors import T2NError
from torch_to_nnef.ir import Graph, Node
from torch_to_nnef.nnef.builder import NNEFBuilder, Ref

LOGGER = logging.getLogger(__name__)

NAMESPACE = "t2n_extract"
_LIBRARY: torch.library.Library | None = None
_COUNTER = itertools.count()


class ExtractorError(T2NError, ValueError):
    """A custom extractor that cannot be used as written (the message says why)."""


class ModuleInfoExtractor(abc.ABC):
    """Takes over the export of every module of class ``MODULE_CLASS``.

    Attributes:
        module: the submodule being exported.
        path: its dotted path in the exported model (``encoder.rnn``); parameter labels start with it.
    """

    MODULE_CLASS: ClassVar[type[torch.nn.Module] | None] = None
    OUTPUT_LIKE_INPUT: ClassVar[int | None] = None
    """When set: the module returns one tensor of the shape and dtype of its tensor argument at this
    position (flattened), so that tracing needs not run it to learn its output's shape."""
    _registry: ClassVar[dict[type[torch.nn.Module], type[ModuleInfoExtractor]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        target = cls.__dict__.get("MODULE_CLASS")
        if target is None:
            return
        if not (isinstance(target, type) and issubclass(target, torch.nn.Module)):
            raise ExtractorError(f"{cls.__name__}.MODULE_CLASS must be an nn.Module subclass, got {target!r}")
        previous = ModuleInfoExtractor._registry.get(target)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            LOGGER.warning("%s replaces %s as the extractor of %s", cls.__name__, previous.__name__, target.__name__)
        ModuleInfoExtractor._registry[target] = cls

    def __init__(self, module: torch.nn.Module, path: str) -> None:
        self.module = module
        self.path = path

    @abc.abstractmethod
    def convert_to_nnef(
        self,
        g: NNEFBuilder,
        node: Node,
        name_to_tensor: dict[str, Ref],
        null_ref: Ref,
        torch_graph: Graph,
        **kwargs: Any,
    ) -> Ref | Sequence[Ref]:
        """Emits the NNEF of one call of the module.

        Args:
            g: the graph builder (``g.op(...)``, :meth:`variable` for weights).
            node: the opaque call: ``node.args[0]`` lists the tensor inputs of ``forward`` (flattened
                in argument order, ``None`` arguments left out), ``node.outputs`` its tensor outputs
                (flattened in the order ``forward`` returns them).
            name_to_tensor: the NNEF identifier of every tensor already emitted, by value name.
            null_ref: ``0.0``, for an absent optional tensor (e.g. a conv without bias).
            torch_graph: the whole captured graph.
            **kwargs: ``inference_target`` and ``ctx`` (the op registry's context).

        Returns:
            One identifier per output, in order.
        """

    def variable(self, g: NNEFBuilder, name: str, tensor: torch.Tensor | None = None) -> Ref:
        """Declares the module's parameter or buffer ``name`` (or ``tensor``) as an NNEF variable
        labelled ``<path>.<name>``.
        """
        if tensor is None:
            tensor = self.module.get_parameter(name) if "." in name else getattr(self.module, name)
        label = f"{self.path}.{name}" if self.path else name
        return g.variable(tensor, label)


INSTANCE_EXTRACTOR = "_t2n_extractor"
"""Attribute of a module instance naming the extractor class of that instance alone (it takes
precedence over the one registered for the module's class)."""


def extractor_for(module: torch.nn.Module) -> type[ModuleInfoExtractor] | None:
    """The extractor class of ``module``: its own (:data:`INSTANCE_EXTRACTOR`), else the one
    registered for its exact class, if any.
    """
    own = module.__dict__.get(INSTANCE_EXTRACTOR)
    if own is not None:
        return own  # type: ignore[no-any-return]
    return ModuleInfoExtractor._registry.get(type(module))


def _library() -> torch.library.Library:
    global _LIBRARY
    if _LIBRARY is None:
        _LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")  # type: ignore[no-untyped-call]
    return _LIBRARY


class _OpaqueCall:
    """One module made opaque, for one structure of its arguments: a custom op whose real kernel runs
    the module and whose fake kernel derives symbolic output shapes by probing the module at a few
    concrete sizes.
    """

    def __init__(self, module: torch.nn.Module, path: str, forward: Any, in_spec: Any, absent: Sequence[int]) -> None:
        self.module = module
        self.path = path
        self.forward = forward
        self.name = f"m{next(_COUNTER)}"
        self.kind = f"{NAMESPACE}::{self.name}"
        self.in_spec = in_spec
        self.absent = list(absent)
        """Positions of the ``None`` arguments among the flattened ones (not passed to the op)."""
        self.out_spec: Any = None
        lib = _library()
        lib.define(f"{self.name}(Tensor[] xs) -> Tensor[]")  # type: ignore[no-untyped-call]
        lib.impl(self.name, self._real, "CompositeExplicitAutograd")  # type: ignore[no-untyped-call]
        torch.library.register_fake(self.kind, self._fake, lib=lib)
        self.op = getattr(getattr(torch.ops, NAMESPACE), self.name)

    def _call(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        flat: list[Any] = list(xs)
        for position in self.absent:
            flat.insert(position, None)
        args = pytree.tree_unflatten(flat, self.in_spec)
        with torch.no_grad():
            out = self.forward(*args)
        flat, spec = pytree.tree_flatten(out)
        if not all(isinstance(f, torch.Tensor) for f in flat):
            kinds = sorted({type(f).__name__ for f in flat if not isinstance(f, torch.Tensor)})
            raise ExtractorError(f"{self.path}: forward of a module with a custom extractor returned {kinds}")
        self.out_spec = spec
        return flat

    def _real(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        inputs = {id(x) for x in xs}
        return [f.clone() if id(f) in inputs else f for f in self._call(xs)]

    def _fake(self, xs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        from torch._guards import detect_fake_mode

        like = getattr(extractor_for(self.module), "OUTPUT_LIKE_INPUT", None)
        if like is not None:
            self.out_spec = pytree.tree_flatten(xs[like])[1]
            return [torch.empty_like(xs[like])]

        mode = detect_fake_mode(list(xs))
        env = getattr(mode, "shape_env", None)
        symbols: dict[str, Any] = {}
        for x in xs:
            for d in x.shape:
                if isinstance(d, torch.SymInt) and d.node.expr.is_symbol:
                    symbols.setdefault(str(d.node.expr), d)
        hints = {k: _hint(s) for k, s in symbols.items()}

        def probe(bump: dict[str, int]) -> list[tuple[list[int], torch.dtype]]:
            concrete = []
            for x in xs:
                shape = [
                    hints[str(d.node.expr)] + bump.get(str(d.node.expr), 0)
                    if isinstance(d, torch.SymInt) and str(d.node.expr) in hints
                    else int(d)
                    for d in x.shape
                ]
                concrete.append(torch.empty(shape, dtype=x.dtype, device=x.device))
            ctx = env.suppress_guards() if env is not None else contextlib.nullcontext()
            with ctx:
                return [([int(s) for s in o.shape], o.dtype) for o in self._call(concrete)]

        def isolated_probe(bump: dict[str, int]) -> list[tuple[list[int], torch.dtype]]:
            shapes = [
                [
                    hints[str(d.node.expr)] + bump.get(str(d.node.expr), 0)
                    if isinstance(d, torch.SymInt) and str(d.node.expr) in hints
                    else int(d)
                    for d in x.shape
                ]
                for x in xs
            ]
            return self._isolated_shapes(shapes, [(x.dtype, x.device) for x in xs])

        try:  # fast: outside the tracing modes (under them, torch decomposes an LSTM into its steps)
            base = isolated_probe({})
            probe = isolated_probe
        except Exception:  # e.g. tensors the module holds that only the tracing modes know
            LOGGER.debug("%s: output shapes probed under the tracing modes", self.path, exc_info=True)
            base = probe({})
        groups = self._groups(symbols, hints, probe)
        slopes: dict[str, list[list[int]]] = {}
        for key, group in groups.items():
            one, two = probe(dict.fromkeys(group, 1)), probe(dict.fromkeys(group, 2))
            slope = []
            for (b, _), (o, _), (t, _) in zip(base, one, two):
                if len(b) != len(o) or len(b) != len(t) or any(t[i] - o[i] != o[i] - b[i] for i in range(len(b))):
                    raise ExtractorError(
                        f"{self.path} ({type(self.module).__name__}): its output shapes do not follow its dynamic "
                        "input dims linearly; export it without dynamic axes or reshape inside the module"
                    )
                slope.append([o[i] - b[i] for i in range(len(b))])
            slopes[key] = slope
        outs = []
        for k, (shape, dtype) in enumerate(base):
            sym_shape: list[Any] = []
            for i, size in enumerate(shape):
                dim: Any = size
                for key in groups:
                    a = slopes[key][k][i]
                    if a:
                        dim = dim + a * (symbols[key] - hints[key])
                sym_shape.append(dim)
            outs.append(torch.empty(sym_shape, dtype=dtype, device=xs[0].device if xs else "cpu"))
        return outs

    def _isolated_shapes(
        self, shapes: list[list[int]], kinds: list[tuple[torch.dtype, torch.device]]
    ) -> list[tuple[list[int], torch.dtype]]:
        """Output shapes of the module on inputs of ``shapes``, run in a fake tensor mode of its own
        (no data, no computation) with fake copies of its parameters and buffers.
        """
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.nn.utils.stateless import _reparametrize_module
        from torch.utils._python_dispatch import _disable_current_modes

        named = [*self.module.named_parameters(), *self.module.named_buffers()]
        with _disable_current_modes(), FakeTensorMode():
            state = {k: torch.empty(tuple(v.shape), dtype=v.dtype, device=v.device) for k, v in named}
            xs = [torch.empty(shape, dtype=dtype, device=device) for shape, (dtype, device) in zip(shapes, kinds)]
            with _reparametrize_module(self.module, state):
                return [([int(s) for s in o.shape], o.dtype) for o in self._call(xs)]

    def _groups(
        self, symbols: dict[str, Any], hints: dict[str, int], probe: Callable[[dict[str, int]], Any]
    ) -> dict[str, list[str]]:
        """The input symbols that vary together, by representative: one symbol alone, or the symbols
        of the same example size that the module needs equal (an RNN cell's batch in its input and in
        its state), which are then recorded as equal.
        """
        groups: dict[str, list[str]] = {}
        seen: set[str] = set()
        for key in symbols:
            if key in seen:
                continue
            group = [key]
            try:
                probe({key: 1})
            except Exception as exc:  # the module's own check of its sizes, whatever its type
                group = [k for k in symbols if k not in seen and hints[k] == hints[key]]
                try:
                    if len(group) == 1:
                        raise
                    probe(dict.fromkeys(group, 1))
                except Exception:
                    raise ExtractorError(
                        f"{self.path} ({type(self.module).__name__}) fails when its dynamic dimension {key} grows "
                        f"({type(exc).__name__}: {exc}); give the inputs it needs equal the same dynamic axis letter"
                    ) from exc
                for other in group[1:]:
                    torch._check(symbols[key] == symbols[other])  # type: ignore[no-untyped-call]
            seen.update(group)
            groups[key] = group
        return groups


class _OpaqueModule:
    """A module made opaque: one custom op per structure of the arguments it is called with (with or
    without an initial state, ...), all translated by its extractor.
    """

    def __init__(
        self, module: torch.nn.Module, path: str, extractor: ModuleInfoExtractor, kinds: dict[str, ModuleInfoExtractor]
    ) -> None:
        self.module = module
        self.path = path
        self.extractor = extractor
        self.forward = module.forward
        self.kinds = kinds
        self.calls: dict[str, _OpaqueCall] = {}

    def wrapped_forward(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs:  # keyword arguments (``lstm(x, hx=state)``) in the order of ``forward``'s signature
            args = inspect.signature(self.forward).bind(*args, **kwargs).args
        flat, in_spec = pytree.tree_flatten(args)
        absent = [i for i, f in enumerate(flat) if f is None]
        flat = [f for f in flat if f is not None]
        if not all(isinstance(f, torch.Tensor) for f in flat):
            kinds = sorted({type(f).__name__ for f in flat if not isinstance(f, torch.Tensor)})
            raise ExtractorError(
                f"{self.path} ({type(self.module).__name__}): a module with a custom extractor takes tensor "
                f"arguments only (or None); got {kinds}"
            )
        key = f"{in_spec} {absent}"
        call = self.calls.get(key)
        if call is None:
            call = self.calls[key] = _OpaqueCall(self.module, self.path, self.forward, in_spec, absent)
            self.kinds[call.kind] = self.extractor
        outs = call.op(flat)
        return pytree.tree_unflatten(list(outs), call.out_spec)

    def patched_forward(self) -> Any:
        """:meth:`wrapped_forward` showing the module's own ``forward`` signature (torch.export binds
        the exported model's inputs and their dynamic shapes to it when this module is the model).
        """

        def forward(*args: Any, **kwargs: Any) -> Any:
            return self.wrapped_forward(*args, **kwargs)

        with contextlib.suppress(TypeError, ValueError):
            forward.__signature__ = inspect.signature(self.forward)  # type: ignore[attr-defined]
        return forward


def _hint(size: torch.SymInt) -> int:
    """The example value behind a symbolic size, read without recording a guard."""
    hint = getattr(size.node, "hint", None)
    if hint is None:
        raise ExtractorError(f"cannot read the example value of the symbolic size {size}")
    return int(hint)


@contextlib.contextmanager
def opaque(model: torch.nn.Module) -> Iterator[dict[str, ModuleInfoExtractor]]:
    """Makes every outermost submodule with a registered extractor opaque while the block runs.

    Yields:
        The extractor of each opaque op kind (``"t2n_extract::m3"``), for the translation step (filled
        while the model runs: one kind per module and structure of its arguments).
    """
    calls: list[_OpaqueModule] = []
    kinds: dict[str, ModuleInfoExtractor] = {}
    skip: list[str] = []
    for path, module in model.named_modules():
        if any(s == "" or path.startswith(s + ".") for s in skip):
            continue
        cls = extractor_for(module)
        if cls is None:
            continue
        skip.append(path)
        calls.append(_OpaqueModule(module, path, cls(module, path), kinds))
    own = [call.module.__dict__.get("forward") for call in calls]
    try:
        for call in calls:
            # the wrapper shows forward's own signature: torch.export binds the top-level module's
            # inputs (and their dynamic shapes) to it when the opaque module is the exported model
            call.module.forward = call.patched_forward()  # type: ignore[method-assign]
        with warnings.catch_warnings():
            # torch.export swaps parameters for fake tensors and back, which RNN modules mirror in their
            # ``_flat_weights`` cache (put back by torch.export afterwards): its warning about that
            # cache concerns bookkeeping of parameters, not the exported graph
            warnings.filterwarnings(
                "ignore", message=r"The tensor attributes? (self\.[\w.]*_flat_weights\[\d+\](, )?)+ (was|were) assigned"
            )
            yield kinds  # filled as the modules are called
    finally:
        for call, previous in zip(calls, own):
            if previous is None:
                call.module.__dict__.pop("forward", None)
            else:
                call.module.forward = previous  # type: ignore[method-assign]
