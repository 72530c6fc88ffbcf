"""The check of an export in tract against PyTorch, on the archive loaded in tract once.

The checks run the graph at the sizes it was traced at and at larger ones (:func:`size_checks`),
then the prompt step and the greedy generation of :func:`~torch_to_nnef.llm.bundles.torch_generation`,
each generation step on the caches tract itself returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from torch_to_nnef.check.tract import Tolerance, TractModel, check_outputs
from torch_to_nnef.errors import IOMismatchError, TractError
from torch_to_nnef.llm.bundles import Step, random_caches, random_token_ids, run_torch
from torch_to_nnef.llm.tracing import TRACE_NEW_TOKENS, TRACE_PAST_TOKENS
from torch_to_nnef.llm.wrapper import CausalLMGraph

__all__ = ["DEFAULT_TOLERANCE", "TOLERANCES", "size_checks", "verify_export"]

LOGGER = logging.getLogger(__name__)

TOLERANCES: tuple[Tolerance, ...] = ("exact", "close", "approximate", "very", "super", "ultra")
"""Tolerances the check can be run at, strictest first."""

DEFAULT_TOLERANCE: dict[str, Tolerance] = {"f32": "approximate", "f16": "super"}
"""Check tolerance per exported float type when ``-tt`` is not given."""


def size_checks(
    wrapper: CausalLMGraph,
    trace_inputs: Sequence[torch.Tensor],
    vocab: int,
    cache_dtype: torch.dtype,
) -> list[Step]:
    """PyTorch's outputs at the traced sizes (on ``trace_inputs``) and at larger ones.

    Tract must give the same at both: the graph holds no size the trace fixed.
    """
    grown = [
        random_token_ids(vocab, TRACE_NEW_TOKENS + 7, seed=4),
        *random_caches(wrapper.layout, TRACE_PAST_TOKENS + 7, cache_dtype, seed=5),
    ]
    return [
        Step(label, run_torch(wrapper, inputs), inputs=inputs)
        for label, inputs in (
            (f"traced sizes (S = {TRACE_NEW_TOKENS}, P = {TRACE_PAST_TOKENS})", trace_inputs),
            (f"sizes S = {TRACE_NEW_TOKENS + 7}, P = {TRACE_PAST_TOKENS + 7}", grown),
        )
    ]


def verify_export(
    archive: Path,
    model_name: str,
    steps: Sequence[Step],
    input_names: list[str],
    output_names: list[str],
    tolerance: Tolerance,
) -> None:
    """Loads the archive in tract once and runs ``steps``, comparing with PyTorch's outputs.

    A generation step runs its token on the caches tract returned at the step before.

    Raises:
        TractError: tract cannot load or run the archive.
        IOMismatchError: the graph's inputs or outputs are not the ones expected, or tract's
            outputs differ from PyTorch's beyond ``tolerance``.
    """
    started = time.monotonic()
    LOGGER.info("loading the export in tract")
    try:
        tract = TractModel(archive)
    except TractError as exc:
        raise TractError(f"tract cannot load the export of {model_name}: {exc}") from exc
    LOGGER.info("loaded the export in tract in %.1f s", time.monotonic() - started)
    if tract.input_names != input_names or tract.output_names != output_names:
        raise IOMismatchError(
            f"the exported graph's inputs {tract.input_names} and outputs {tract.output_names} differ from "
            f"{input_names} -> {output_names}"
        )
    tract_caches: list[Any] = []
    for step in steps:
        inputs: list[Any] = list(step.inputs) if step.ids is None else [step.ids, *tract_caches]
        arrays = [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else t for t in inputs]
        try:
            got = tract.run(arrays)
        except TractError as exc:
            raise TractError(f"tract cannot run the export of {model_name} ({step.label}): {exc}") from exc
        try:
            check_outputs(step.expected, got, tolerance=tolerance, names=[f"{n} ({step.label})" for n in output_names])
        except IOMismatchError as exc:
            raise IOMismatchError(f"tract and PyTorch differ at the {step.label}: {exc}") from exc
        tract_caches = got[1:]
