"""Error of f16 exports against an f32 reference of the same weights, with and without each
``TractNNEF.force_*_in_f32`` option, on inputs where f16 overflows or loses precision.

Each model is cast to f16; the reference is that f16 model cast back to f32 and run by PyTorch on the
same f16-rounded inputs, so only the arithmetic differs. The table gives the max abs error of tract
without the option, with it, and of PyTorch's own f16 run (CPU) for comparison; ``inf`` is an
overflow (or NaN).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torch_to_nnef import TractModel, TractNNEF, export_model_to_nnef


class Lambda(nn.Module):
    def __init__(self, fn, *modules: nn.Module) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn
        self.layers = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, *self.layers)  # type: ignore[no-any-return]


def max_error(got: np.ndarray, expected: np.ndarray) -> float:
    err = np.abs(got.astype(np.float64) - expected)
    err[np.isnan(err)] = np.inf
    return float(err.max())


def errors(model: nn.Module, x: torch.Tensor, option: str, folder: Path) -> tuple[float, float, float]:
    """(tract without the option, tract with it, PyTorch in f16) max abs errors against f32."""
    half = copy.deepcopy(model).half().eval()
    with torch.no_grad():
        expected = copy.deepcopy(half).float()(x.half().float()).double().numpy()
        torch_f16 = half(x.half()).double().numpy()
    found = []
    for flags in ({}, {option: True}):
        path = export_model_to_nnef(
            half, x.half(), folder / f"m{len(found)}.nnef", TractNNEF(**flags), log_level=logging.ERROR, overwrite=True
        )
        (got,) = TractModel(path).run([x.half().numpy()])
        found.append(max_error(got, expected))
    return found[0], found[1], max_error(torch_f16, expected)


def cases() -> list[tuple[str, nn.Module, torch.Tensor, str]]:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, batch_first=True)
    return [
        ("layer_norm, x ~ 1e4 + 100 N(0,1)", nn.LayerNorm(64), torch.randn(2, 8, 64) * 100 + 1e4, "force_norm_in_f32"),
        ("layer_norm, x ~ 3000 N(0,1)", nn.LayerNorm(64), torch.randn(2, 8, 64) * 3000, "force_norm_in_f32"),
        ("rms_norm, x ~ 300 N(0,1)", nn.RMSNorm(64), torch.randn(2, 8, 64) * 300, "force_norm_in_f32"),
        ("group_norm, x ~ 300 N(0,1)", nn.GroupNorm(4, 16), torch.randn(2, 16, 32) * 300, "force_norm_in_f32"),
        ("linear, K = 4096", nn.Linear(4096, 8), torch.randn(2, 4096) * 4 + 2, "force_linear_accumulation_in_f32"),
        (
            "matmul x @ x.T, K = 1024",
            Lambda(lambda x: x @ x.transpose(-1, -2) / 64),
            torch.randn(1, 4, 1024) * 4 + 1,
            "force_linear_accumulation_in_f32",
        ),
        (
            "sdpa, 2048 keys, x ~ 3 N(0,1)",
            Lambda(lambda x: F.scaled_dot_product_attention(x, x, x)),
            torch.randn(1, 2, 2048, 32) * 3,
            "force_attention_inner_in_f32",
        ),
        (
            "sdpa, 1024 keys, x ~ 20 N(0,1)",
            Lambda(lambda x: F.scaled_dot_product_attention(x[..., :16], x[..., 16:], x[..., 16:])),
            torch.randn(1, 2, 1024, 32) * 20,
            "force_attention_inner_in_f32",
        ),
        (
            "softmax row of 8192, x 1000",
            Lambda(lambda x: torch.softmax(x, -1) * 1000),
            torch.randn(2, 8192),
            "force_attention_inner_in_f32",
        ),
        (
            "MHA weights, 512 keys, x 100",
            Lambda(lambda x, m: m(x, x, x)[1] * 100, mha),
            torch.randn(1, 512, 16) * 10,
            "force_attention_inner_in_f32",
        ),
    ]


def main() -> None:
    header = f"{'case':34} {'option':34} {'without':>10} {'with':>10} {'torch f16':>10}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="t2n-f16-") as tmp:
        for name, model, x, option in cases():
            without, with_option, torch_f16 = errors(model, x, option, Path(tmp))
            print(f"{name:34} {option:34} {without:10.4g} {with_option:10.4g} {torch_f16:10.4g}", flush=True)


if __name__ == "__main__":
    main()
