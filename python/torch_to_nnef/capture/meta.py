"""Models without their weights: built with every parameter on the ``meta`` device, captured there.

A model whose weights are larger than memory is never loaded: it is built under
:func:`weights_on_meta` (each parameter lands on the meta device as it is registered, so nothing is
allocated for it, while buffers computed by the model's own code, such as rotary frequencies, are
real), captured on the meta device (:func:`buffers_on_meta`: torch.export only needs shapes), and
its weights are then read from its checkpoint, one at a time, as the archive is written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["buffers_on_meta", "weights_on_meta"]


@contextlib.contextmanager
def weights_on_meta() -> Iterator[None]:
    """Every parameter registered in the block (``nn.Parameter`` assigned to a module) is moved to
    the meta device: a model built inside holds no weight memory, and its initialisation code runs
    on empty tensors. Buffers stay where the model's code makes them.
    """
    register = nn.Module.register_parameter

    def on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if type(param) is nn.Parameter and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]


@contextlib.contextmanager
def buffers_on_meta(module: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Swaps ``module``'s real buffers for meta twins in the block, so that a module whose
    parameters are on the meta device runs (and is captured) on the meta device whole.

    Yields:
        The real buffers by their name in ``module`` (``rotary_emb.inv_freq``), for what the
        capture records of them; they are back in place when the block ends.
    """
    real: dict[str, torch.Tensor] = {}
    swapped: list[tuple[nn.Module, str, torch.Tensor]] = []
    for path, owner in module.named_modules(remove_duplicate=False):
        for leaf, buffer in owner._buffers.items():
            if buffer is None or buffer.device.type == "meta":
                continue
            real[f"{path}.{leaf}" if path else leaf] = buffer
            swapped.append((owner, leaf, buffer))
    twins: dict[int, torch.Tensor] = {}
    for owner, leaf, buffer in swapped:
        owner._buffers[leaf] = twins.setdefault(id(buffer), buffer.to("meta"))
    try:
        yield real
    finally:
        for owner, leaf, buffer in swapped:
            owner._buffers[leaf] = buffer
