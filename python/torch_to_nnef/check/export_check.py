"""The check of an export: the archive run in the linked tract (and, for KhronosNNEF, the Khronos
interpreter when installed) against PyTorch's outputs, at the example's size and at a second size
of every dynamic axis; a failed check leaves a debug bundle when asked to.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_to_nnef.check.debug_bundle import write_debug_bundle
from torch_to_nnef.check.targets import InferenceTarget, check_tolerance
from torch_to_nnef.check.tract import TractModel, check_outputs
from torch_to_nnef.errors import IOMismatchError, T2NError, TractError
from torch_to_nnef.ir import SizeStep

LOGGER = logging.getLogger(__name__)


def check_export(
    reference: Callable[[list[torch.Tensor]], list[torch.Tensor]],
    metadata: dict[str, str],
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
    """Runs the archive at ``path`` on ``flat_args`` and compares with ``expected``; with dynamic axes,
    again at a second size of each, against ``reference`` (the model, called on the grown inputs).

    Raises:
        IOMismatchError: outputs differ beyond the target's tolerance (or, with ``names_must_match``,
            the graph's input and output names differ from those asked for).
        TractError: the archive does not load or run.
    """
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
                loaded.extend(interpreters(path, target, registries, input_names, output_names, names_must_match))
            checked = 0
            for label, run in loaded:
                LOGGER.info("checking with %s", label)
                try:
                    got = run(arrays)
                except InterpreterFailure as failure:
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
                versions=metadata,
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
            values = a.detach().cpu().numpy()  # torch has no min and max of u16, u32 and u64
            low, high = (int(values.min()), int(values.max()) + 1) if a.numel() else (0, 2)
            grown.append(torch.randint(low, high, shape, dtype=a.dtype, device=a.device))
    with torch.no_grad():
        expected2 = reference(grown)
    sizes = ", ".join(
        f"{name}{list(a.shape)}" for name, a, b in zip(input_names, grown, flat_args) if a.shape != b.shape
    )
    run_and_compare(grown, expected2, [f"{n} (at {sizes})" for n in output_names])


def interpreters(
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
            check_names(model, input_names, output_names)
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
    found.append(("the Khronos NNEF-Tools interpreter", khronos_interpreter(Interpreter, path)))
    return found


class InterpreterFailure(T2NError, RuntimeError):
    """The Khronos interpreter failed inside (e.g. an operator rank it does not implement)."""


def khronos_interpreter(interpreter: Any, path: Path) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """A runner of the archive at ``path`` in the Khronos NNEF-Tools interpreter."""
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
                raise InterpreterFailure(f"{type(exc).__name__}: {exc}") from exc
            return [np.asarray(v) for v in outputs.values()]

    return run


def check_names(model: TractModel, input_names: list[str], output_names: list[str]) -> None:
    """Refuses a loaded export whose inputs or outputs do not carry the names asked for, in order."""
    got_in, got_out = [i[0] for i in model.inputs], [o[0] for o in model.outputs]
    if got_in != input_names or got_out != output_names:
        raise IOMismatchError(
            f"the exported graph's inputs {got_in} and outputs {got_out} differ from the names asked for "
            f"({input_names} -> {output_names})"
        )
