"""FFTs, STFT and its inverse, and a log-mel front end: each exported and checked numerically.

TractNNEF runs the transforms with tract's FFT operators, KhronosNNEF with DFT matrices (matmul, conv);
both pass the default ``approximate`` tolerance of check_io (atol 1e-4, rtol 5e-4).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from harness import Fn, OpCase, export_and_check, export_checked, op_params, r
from torch_to_nnef import TractNNEF, export_model_to_nnef
from torch_to_nnef.capture.torch_export import CaptureError
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.export import UnsupportedOpsError

TORCH_2_6 = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 6)


class Fn1(nn.Module):
    """One named input (dynamic axes need a fixed signature)."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def mel_filterbank(bins: int, mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular filters evenly spaced on the HTK mel scale, ``[bins, mels]``."""

    def to_mel(hz: float) -> float:
        return 2595.0 * math.log10(1.0 + hz / 700.0)

    edges_mel = torch.linspace(to_mel(0.0), to_mel(sample_rate / 2), mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = torch.linspace(0, sample_rate / 2, bins, dtype=torch.float64)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None] - low) / (centre - low)
    falling = (high - freqs[None]) / (high - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).T.float()


class LogMel(nn.Module):
    """A log-mel front end without torchaudio: power spectrum, mel filterbank, log."""

    window: torch.Tensor
    filterbank: torch.Tensor

    def __init__(self, n_fft: int = 64, hop: int = 16, mels: int = 12, sample_rate: int = 16000) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft))
        self.register_buffer("filterbank", mel_filterbank(n_fft // 2 + 1, mels, sample_rate))

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(samples, self.n_fft, hop_length=self.hop, window=self.window, return_complex=True)
        power = spec.abs() ** 2
        mel = torch.matmul(power.transpose(-1, -2), self.filterbank)
        return torch.log(mel + 1e-6)


def hann(n: int) -> torch.Tensor:
    return torch.hann_window(n)


def stft(x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return torch.stft(x, 16, hop_length=4, return_complex=True, **kwargs)


def roundtrip(x: torch.Tensor, hop: int = 4, **kwargs: Any) -> torch.Tensor:
    spec = torch.stft(x, 16, hop_length=hop, window=hann(16), return_complex=True)
    return torch.istft(spec, 16, hop_length=hop, window=hann(16), **kwargs)


real = torch.view_as_real

CASES: list[OpCase] = [
    # fft / ifft: real and complex inputs, any axis, n cropping or zero-padding, every norm
    OpCase(
        "fft-axis1",
        Fn(lambda x: real(torch.fft.fft(x, dim=1))),
        (r(4, 8),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-axis0-n6-ortho",
        Fn(lambda x: real(torch.fft.fft(x, n=6, dim=0, norm="ortho"))),
        (r(4, 8),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-last-n11-forward",
        Fn(lambda x: real(torch.fft.fft(x, n=11, norm="forward"))),
        (r(4, 8),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-rank1",
        Fn(lambda x: real(torch.fft.fft(x))),
        (r(12),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-rank3-axis1",
        Fn(lambda x: real(torch.fft.fft(x, dim=1))),
        (r(2, 6, 3),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-of-complex",
        Fn(lambda x: real(torch.fft.fft(torch.fft.fft(x, dim=0), dim=1))),
        (r(4, 8),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "ifft-axis0-abs",
        Fn(lambda x: torch.fft.ifft(x, dim=0).abs()),
        (r(4, 8),),
        covers=("complex::abs", "complex::clone", "complex::fft_ifft"),
        khronos=True,
    ),
    OpCase(
        "ifft-real",
        Fn(lambda x: torch.fft.ifft(x).real),
        (r(4, 8),),
        covers=("complex::_conj", "complex::fft_ifft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "ifft-imag",
        Fn(lambda x: torch.fft.ifft(x, norm="forward").imag * 1.0),
        (r(4, 8),),
        covers=("aten::_neg_view", "complex::_conj", "complex::fft_ifft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "ifft-imag-returned",
        Fn(lambda x: torch.fft.ifft(x).imag),
        (r(4, 8),),
        covers=("aten::_neg_view", "complex::_conj", "complex::fft_ifft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "ifft-of-complex-n5-ortho",
        Fn(lambda x: real(torch.fft.ifft(torch.fft.fft(x), n=5, norm="ortho"))),
        (r(4, 8),),
        covers=("complex::fft_fft", "complex::fft_ifft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-ifft-roundtrip",
        Fn(lambda x: torch.fft.ifft(torch.fft.fft(x, dim=-1), dim=-1).real),
        (r(3, 10),),
        covers=("complex::fft_fft", "complex::fft_ifft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-two-ranks-one-length",
        Fn(lambda x: real(torch.fft.fft(x)) + real(torch.fft.fft(x[0]))),
        (r(2, 3, 8),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-f64",
        Fn(lambda x: real(torch.fft.fft(x, dim=0))),
        (r(6, 3).double(),),
        covers=("complex::fft_fft", "complex::view_as_real"),
        khronos=False,
    ),
    # complex views and products
    OpCase(
        "stft-slice-power",
        Fn(lambda x: stft(x, window=hann(16))[..., :-1].abs() ** 2),
        (r(2, 64),),
        covers=("aten::hann_window", "complex::abs", "complex::slice", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "fft-transpose-select",
        Fn(lambda x: real(torch.fft.fft(x).transpose(0, 1)[1])),
        (r(4, 6),),
        covers=("complex::fft_fft", "complex::select", "complex::transpose", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fft-permute-unsqueeze-cat-squeeze",
        Fn(lambda x: real(torch.cat([torch.fft.fft(x).permute(1, 0).unsqueeze(0)] * 2, 0).squeeze(1))),
        (r(1, 6),),
        covers=(
            "complex::cat",
            "complex::fft_fft",
            "complex::permute",
            "complex::squeeze",
            "complex::unsqueeze",
            "complex::view_as_real",
        ),
        khronos=True,
    ),
    OpCase(
        "fft-times-scalar",
        Fn(lambda x: real(torch.fft.fft(x) * 0.5)),
        (r(3, 8),),
        covers=("complex::fft_fft", "complex::mul", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "rfft-product-circular-convolution",
        Fn(lambda x, y: torch.fft.irfft(torch.fft.rfft(x) * torch.fft.rfft(y[0]), n=8)),
        (r(3, 8), r(1, 8)),
        covers=("complex::fft_irfft", "complex::fft_rfft", "complex::mul"),
        khronos=True,
    ),
    OpCase(
        "rfft-times-real-filter",
        Fn(lambda x, h: torch.fft.irfft(torch.fft.rfft(x) * h, n=8)),
        (r(3, 8), r(5)),
        covers=("complex::fft_irfft", "complex::fft_rfft", "complex::mul"),
        khronos=True,
    ),
    # rfft / irfft
    OpCase(
        "rfft-last-forward-abs",
        Fn(lambda x: torch.fft.rfft(x, dim=-1, norm="forward").abs()),
        (r(4, 8),),
        covers=("complex::abs", "complex::fft_rfft"),
        khronos=True,
    ),
    OpCase(
        "rfft-axis0-n7",
        Fn(lambda x: real(torch.fft.rfft(x, n=7, dim=0))),
        (r(4, 8),),
        covers=("complex::fft_rfft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "rfft-axis1-n5-ortho",
        Fn(lambda x: real(torch.fft.rfft(x, n=5, dim=1, norm="ortho"))),
        (r(3, 8),),
        covers=("complex::fft_rfft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "irfft-default-n",
        Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x))),
        (r(4, 8),),
        covers=("complex::fft_irfft", "complex::fft_rfft"),
        khronos=True,
    ),
    OpCase(
        "irfft-n8",
        Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x), n=8)),
        (r(4, 9),),
        covers=("complex::fft_irfft", "complex::fft_rfft"),
        khronos=True,
    ),
    OpCase(
        "irfft-axis0-n5-ortho",
        Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x, dim=0), n=5, dim=0, norm="ortho")),
        (r(4, 8),),
        covers=("complex::fft_irfft", "complex::fft_rfft"),
        khronos=True,
    ),
    OpCase(
        "irfft-forward-n12",
        Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x), n=12, norm="forward")),
        (r(2, 8),),
        covers=("complex::fft_irfft", "complex::fft_rfft"),
        khronos=True,
    ),
    OpCase(
        "irfft-of-real",
        Fn(lambda x: torch.fft.irfft(x, n=7, dim=0)),
        (r(4, 3),),
        covers=("aten::fft_irfft",),
        khronos=True,
    ),
    OpCase(
        "irfft-view-as-complex",
        Fn(lambda x: torch.fft.irfft(torch.view_as_complex(x), n=6)),
        (r(3, 4, 2),),
        covers=("complex::fft_irfft", "complex::view_as_complex"),
        khronos=True,
    ),
    # stft: windows, center and its pad modes, onesided, normalized
    OpCase(
        "stft-hann-reflect",
        Fn(lambda x: real(stft(x, window=hann(16)))),
        (r(2, 64),),
        covers=("aten::hann_window", "complex::stft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "stft-no-window",
        Fn(lambda x: real(stft(x))),
        (r(2, 64),),
        covers=("complex::stft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "stft-constant-pad-power",
        Fn(lambda x: stft(x, pad_mode="constant").abs() ** 2),
        (r(64),),
        covers=("complex::abs", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "stft-replicate-pad",
        Fn(lambda x: stft(x, window=hann(16), pad_mode="replicate").abs()),
        (r(2, 60),),
        covers=("aten::hann_window", "complex::abs", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "stft-circular-pad",
        Fn(lambda x: stft(x, window=hann(16), pad_mode="circular").abs()),
        (r(1, 48),),
        covers=("aten::hann_window", "complex::abs", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "stft-no-center",
        Fn(lambda x: real(stft(x, window=hann(16), center=False))),
        (r(2, 64),),
        covers=("aten::hann_window", "complex::stft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "stft-twosided-normalized-win12",
        Fn(lambda x: stft(x, win_length=12, center=False, onesided=False, normalized=True).abs()),
        (r(2, 64),),
        covers=("complex::abs", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "stft-hamming-win10",
        Fn(lambda x: real(stft(x, win_length=10, window=torch.hamming_window(10)))),
        (r(2, 50),),
        covers=("aten::hamming_window", "complex::stft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "stft-bartlett",
        Fn(lambda x: stft(x, window=torch.bartlett_window(16)).abs()),
        (r(2, 48),),
        covers=("aten::bartlett_window", "complex::abs", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "stft-blackman-hop3",
        Fn(lambda x: real(torch.stft(x, 12, 3, window=torch.blackman_window(12), return_complex=True))),
        (r(40),),
        covers=("aten::blackman_window", "complex::stft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "stft-real-imag",
        Fn(lambda x: stft(x, window=hann(16)).real - 2 * stft(x, window=hann(16)).imag),
        (r(2, 64),),
        covers=("aten::hann_window", "complex::stft", "complex::view_as_real"),
        khronos=True,
    ),
    # istft
    OpCase(
        "istft-roundtrip",
        Fn(lambda x: roundtrip(x)),
        (r(2, 64),),
        covers=("aten::hann_window", "complex::istft", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "istft-length-hop5",
        Fn(lambda x: roundtrip(x, hop=5, length=60)),
        (r(64),),
        covers=("aten::hann_window", "complex::istft", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "istft-twosided",
        Fn(
            lambda x: torch.istft(
                torch.stft(x, 16, 4, window=hann(16), return_complex=True, onesided=False),
                16,
                4,
                window=hann(16),
                onesided=False,
            )
        ),
        (r(2, 48),),
        covers=("aten::hann_window", "complex::istft", "complex::stft"),
        khronos=True,
    ),
    # the log-mel front end, static
    OpCase("log-mel", LogMel(), (r(2, 400),), covers=("complex::abs", "complex::stft"), khronos=True),
    # the forms torch 2.5 lowers istft, irfft of a real input and fft with n to (any torch emits them called directly)
    OpCase(
        "unfold-backward",
        Fn(lambda x: torch.ops.aten.unfold_backward(x, [2, 30], 1, 8, 3)),
        (r(2, 8, 8),),
        covers=("aten::unfold_backward",),
        khronos=True,
    ),
    OpCase(
        "unfold-backward-broadcast-past-frames",
        Fn(lambda x: torch.ops.aten.unfold_backward(x, [3, 23], 1, 6, 4)),
        (r(1, 4, 6),),
        covers=("aten::unfold_backward",),
        khronos=True,
    ),
    OpCase(
        "complex-zero-pad",
        Fn(lambda x: real(torch.ops.aten.constant_pad_nd(torch.fft.fft(x), [1, 2]))),
        (r(3, 8),),
        covers=("complex::constant_pad_nd", "complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "real-to-complex-cast",
        Fn(lambda x: real(torch.fft.fft(x.to(torch.complex64), dim=0))),
        (r(3, 8),),
        covers=("complex::_to_copy", "complex::fft_fft", "complex::view_as_real"),
        khronos=True,
    ),
]


C = torch.view_as_complex


def nonzero(*shape: int) -> torch.Tensor:
    """Complex pairs kept away from 0 (for divisions, angles and roots)."""
    x = torch.randn(*shape)
    return x + torch.where(x >= 0, 0.5, -0.5)


class ComplexFilter(nn.Module):
    """Complex weights: a parameter and a buffer, stored as real pairs."""

    offset: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.randn(5, dtype=torch.complex64))
        self.register_buffer("offset", torch.randn(2, 1, dtype=torch.complex64).conj())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return real(C(x) * self.gain + self.offset)


# Complex arithmetic and shapes: complex values come in as real pairs (trailing axis of 2, read with
# view_as_complex) and go out as real pairs (view_as_real) or real tensors.
COMPLEX_CASES: list[OpCase] = [
    # static only: torch.export fixes the number of frames when consecutive frames of a spectrum are
    # combined (spec[..., 1:] with spec[..., :-1]), so the exporter refuses that over a dynamic axis
    OpCase(
        "complex-frame-difference-mean",
        Fn1(lambda x: real((stft(x)[..., 1:] / (stft(x)[..., :-1] + 1.0)).mean(-1))),
        (r(2, 64),),
        covers=(
            "complex::add",
            "complex::div",
            "complex::mean",
            "complex::slice",
            "complex::stft",
            "complex::view_as_real",
        ),
        khronos=True,
    ),
    OpCase(
        "add",
        Fn(lambda x, y: real(C(x) + C(y))),
        (r(3, 4, 2), r(3, 4, 2)),
        covers=("complex::add", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "add-broadcast-alpha",
        Fn(lambda x, y: real(torch.add(C(x), C(y), alpha=-2.5))),
        (r(3, 4, 2), r(4, 2)),
        covers=("complex::add", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "add-real-tensor",
        Fn(lambda x, y: real(C(x) + y)),
        (r(3, 4, 2), r(4)),
        covers=("complex::add", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "add-real-scalar",
        Fn(lambda x: real(C(x) + 1.5)),
        (r(3, 4, 2),),
        covers=("complex::add", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "real-tensor-minus-complex",
        Fn(lambda x, y: real(y - C(x))),
        (r(3, 4, 2), r(3, 1)),
        covers=("complex::sub", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "sub-alpha",
        Fn(lambda x, y: real(torch.sub(C(x), C(y), alpha=3))),
        (r(3, 4, 2), r(3, 4, 2)),
        covers=("complex::sub", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "scalar-minus-complex",
        Fn(lambda x: real(2.0 - C(x))),
        (r(3, 4, 2),),
        covers=("complex::rsub", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "neg",
        Fn(lambda x: real(-C(x))),
        (r(3, 4, 2),),
        covers=("complex::neg", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "mul-imaginary-unit",
        Fn(lambda x: real(C(x) * 1j)),
        (r(3, 4, 2),),
        covers=("complex::mul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "mul-complex-scalar-broadcast",
        Fn(lambda x, y: real((0.5 - 2j) * C(x) * C(y))),
        (r(3, 4, 2), r(4, 2)),
        covers=("complex::mul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "mul-real-mask",
        Fn(lambda x, m: real(C(x) * torch.sigmoid(m))),
        (r(3, 4, 2), r(3, 4)),
        covers=("complex::mul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "mul-boolean-mask",
        Fn(lambda x, m: real(C(x) * (m > 0))),
        (r(3, 4, 2), r(4)),
        covers=("complex::mul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "add-boolean-tensor",
        Fn(lambda x, m: real(C(x) + (m > 0))),
        (r(3, 4, 2), r(3, 4)),
        covers=("complex::add", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "div",
        Fn(lambda x, y: real(C(x) / C(y))),
        (r(3, 4, 2), nonzero(3, 4, 2)),
        covers=("complex::div", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "div-real-tensor",
        Fn(lambda x, y: real(C(x) / y)),
        (r(3, 4, 2), nonzero(4)),
        covers=("complex::div", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "div-real-scalar",
        Fn(lambda x: real(C(x) / 4.0)),
        (r(3, 4, 2),),
        covers=("complex::div", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "real-tensor-over-complex",
        Fn(lambda x, y: real(y / C(x))),
        (nonzero(3, 4, 2), r(3, 4)),
        covers=("complex::div", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "scalar-over-complex",
        Fn(lambda x: real(2.0 / C(x))),
        (nonzero(3, 4, 2),),
        covers=("complex::mul", "complex::reciprocal", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "reciprocal",
        Fn(lambda x: real(C(x).reciprocal())),
        (nonzero(3, 4, 2),),
        covers=("complex::reciprocal", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "exp",
        Fn(lambda x: real(C(x).exp())),
        (r(3, 4, 2),),
        covers=("complex::exp", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "exp-of-imaginary-phase",
        Fn(lambda x: real(torch.exp(1j * x))),
        (r(3, 4),),
        covers=("complex::exp", "complex::mul", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "log",
        Fn(lambda x: real(C(x).log())),
        (nonzero(3, 4, 2),),
        covers=("complex::log", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "sqrt",
        Fn(lambda x: real(C(x).sqrt())),
        (nonzero(3, 4, 2),),
        covers=("complex::sqrt", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "sgn",
        Fn(lambda x: real(C(x).sgn())),
        (r(3, 4, 2),),
        covers=("complex::sgn", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "square",
        Fn(lambda x: real(C(x).square())),
        (r(3, 4, 2),),
        covers=("complex::square", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "pow-2",
        Fn(lambda x: real(C(x) ** 2)),
        (r(3, 4, 2),),
        covers=("complex::pow", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "pow-5",
        Fn(lambda x: real(C(x) ** 5)),
        (r(3, 4, 2),),
        covers=("complex::pow", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "pow-minus-2",
        Fn(lambda x: real(C(x) ** -2)),
        (nonzero(3, 4, 2),),
        covers=("complex::pow", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "pow-0",
        Fn(lambda x: real(C(x) ** 0)),
        (r(3, 4, 2),),
        covers=("complex::pow", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "pow-one-third",
        Fn(lambda x: real(C(x) ** (1 / 3))),
        (nonzero(3, 4, 2),),
        covers=("complex::pow", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "angle",
        Fn(lambda x: C(x).angle()),
        (nonzero(3, 4, 2),),
        covers=("complex::angle", "complex::view_as_complex"),
        khronos=True,
    ),
    OpCase(
        "angle-axes",
        Fn(lambda x: C(x).angle()),
        (torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]),),
        covers=("complex::angle", "complex::view_as_complex"),
        khronos=True,
    ),
    OpCase(
        "abs-angle-polar",
        Fn(lambda x: real(torch.polar(C(x).abs() * 0.5, C(x).angle()))),
        (nonzero(3, 4, 2),),
        covers=(
            "complex::abs",
            "complex::angle",
            "complex::polar",
            "complex::view_as_complex",
            "complex::view_as_real",
        ),
        khronos=True,
    ),
    OpCase(
        "polar-broadcast",
        Fn(lambda m, p: real(torch.polar(m, p))),
        (r(3, 4).abs(), r(4)),
        covers=("complex::polar", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "complex-from-parts",
        Fn(lambda a, b: real(torch.complex(a, b))),
        (r(3, 4), r(3, 4)),
        covers=("complex::complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "complex-broadcast",
        Fn(lambda a, b: real(torch.complex(a, b))),
        (r(3, 4), r(3, 1)),
        covers=("complex::complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "real-imag-of-product",
        Fn(lambda x, y: (C(x) * C(y).conj()).real - (C(x) * C(y)).imag),
        (r(3, 4, 2), r(3, 4, 2)),
        covers=(
            "complex::_conj",
            "complex::clone",
            "complex::mul",
            "complex::view_as_complex",
            "complex::view_as_real",
        ),
        khronos=True,
    ),
    OpCase(
        "where",
        Fn(lambda x, y: real(torch.where(y > 0, C(x), 0.5 * C(x)))),
        (r(3, 4, 2), r(3, 4)),
        covers=("complex::mul", "complex::view_as_complex", "complex::view_as_real", "complex::where"),
        khronos=True,
    ),
    OpCase(
        "matmul",
        Fn(lambda x, y: real(C(x) @ C(y).transpose(0, 1))),
        (r(3, 4, 2), r(5, 4, 2)),
        covers=("complex::matmul", "complex::transpose", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "matmul-batched-cast-right",
        Fn(lambda x, w: real(C(x) @ w.to(torch.complex64))),
        (r(2, 3, 4, 2), r(4, 5)),
        covers=("complex::_to_copy", "complex::matmul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "matmul-left-vector",
        Fn(lambda v, y: real(C(v) @ C(y))),
        (r(3, 2), r(3, 4, 2)),
        covers=("complex::matmul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "matmul-vector-right",
        Fn(lambda x, y: real(torch.matmul(C(x), C(y)))),
        (r(3, 4, 2), r(4, 2)),
        covers=("complex::matmul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "einsum",
        Fn(lambda x, y: real(torch.einsum("ij,kj->ik", C(x), C(y)))),
        (r(3, 4, 2), r(5, 4, 2)),
        covers=("complex::einsum", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "einsum-three-ellipsis",
        Fn(lambda x, y, z: real(torch.einsum("...ft,ft,f->...t", C(x), C(y), C(z)))),
        (r(2, 3, 4, 2), r(3, 4, 2), r(3, 2)),
        covers=("complex::einsum", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "einsum-implicit-full",
        Fn(lambda x, y: real(torch.einsum("ij,ij", C(x), C(y)))),
        (r(3, 4, 2), r(3, 4, 2)),
        covers=("complex::einsum", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "select-scatter",
        Fn(lambda x: real(select_written(C(x)))),
        (r(3, 4, 2),),
        covers=(
            "complex::clone",
            "complex::copy",
            "complex::mul",
            "complex::select",
            "complex::select_scatter",
            "complex::view_as_complex",
            "complex::view_as_real",
        ),
        khronos=True,
    ),
    OpCase(
        "slice-scatter-of-real",
        Fn(lambda x, y: real(slice_written(C(x), y))),
        (r(3, 4, 2), r(3, 1)),
        covers=(
            "complex::clone",
            "complex::copy",
            "complex::slice",
            "complex::slice_scatter",
            "complex::view_as_complex",
            "complex::view_as_real",
        ),
        khronos=True,
    ),
    OpCase(
        "zeroed-bins",
        Fn(lambda x: real(bins_zeroed(C(x)))),
        (r(3, 4, 2),),
        covers=(
            "complex::clone",
            "complex::fill",
            "complex::slice",
            "complex::slice_scatter",
            "complex::view_as_complex",
            "complex::view_as_real",
        ),
        khronos=True,
    ),
    OpCase(
        "complex-weight-and-buffer",
        ComplexFilter(),
        (r(2, 5, 2),),
        covers=("complex::add", "complex::clone", "complex::mul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "zeros-like",
        Fn(lambda x: real(torch.zeros_like(C(x)) + C(x) * 2)),
        (r(3, 4, 2),),
        covers=(
            "complex::add",
            "complex::mul",
            "complex::view_as_complex",
            "complex::view_as_real",
            "complex::zeros_like",
        ),
        khronos=True,
    ),
    OpCase(
        "full-like-complex",
        Fn(lambda x: real(torch.full_like(C(x), 1 - 2j) * C(x))),
        (r(3, 4, 2),),
        covers=("complex::full_like", "complex::mul", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "masked-fill",
        Fn(lambda x, y: real(C(x).masked_fill(y > 0, 0.5j))),
        (r(3, 4, 2), r(3, 4)),
        covers=("complex::masked_fill", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "zero-pad",
        Fn(lambda x: real(nn.functional.pad(C(x), (1, 2, 0, 1)))),
        (r(3, 4, 2),),
        covers=("complex::pad", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "reflect-pad",
        Fn(lambda x: real(nn.functional.pad(C(x), (2, 1), mode="reflect"))),
        (r(3, 4, 2),),
        covers=("complex::pad", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "replicate-pad",
        Fn(lambda x: real(nn.functional.pad(C(x), (1, 2), mode="replicate"))),
        (r(3, 4, 2),),
        covers=("complex::pad", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "circular-pad",
        Fn(lambda x: real(nn.functional.pad(C(x), (1, 2), mode="circular"))),
        (r(1, 3, 4, 2),),
        covers=("complex::pad", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "conj-physical-detach",
        Fn(lambda x: real(C(x).conj_physical().detach())),
        (r(3, 4, 2),),
        covers=("complex::_conj_physical", "complex::detach", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "fftshift",
        Fn(lambda x: real(torch.fft.fftshift(torch.fft.fft(x)))),
        (r(4, 5),),
        covers=("complex::fft_fft", "complex::fft_fftshift", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "ifftshift-axis",
        Fn(lambda x: real(torch.fft.ifftshift(C(x), dim=1))),
        (r(3, 5, 2),),
        covers=("complex::fft_ifftshift", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "ifftshift-real",
        Fn(lambda x: torch.fft.ifftshift(x)),
        (r(3, 5),),
        covers=("aten::fft_ifftshift",),
        khronos=True,
    ),
    OpCase(
        "fftshift-real",
        Fn(lambda x: torch.fft.fftshift(x, dim=(0, 1))),
        (r(3, 5),),
        covers=("aten::fft_fftshift",),
        khronos=True,
    ),
    OpCase(
        "angle-of-real",
        Fn(lambda x: torch.angle(x)),
        (torch.tensor([-2.0, 0.0, 3.0, float("nan"), -0.5]),),
        covers=("aten::angle",),
        khronos=True,
    ),
    # shapes and reductions over the logical axes
    OpCase(
        "reshape",
        Fn(lambda x: real(C(x).reshape(-1))),
        (r(3, 4, 2),),
        covers=("complex::view", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "view-flatten",
        Fn(lambda x: real(C(x).view(2, 6).flatten()) + 0),
        (r(3, 4, 2),),
        covers=("complex::view", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "expand",
        Fn(lambda x: real(C(x)[None].expand(2, 3, 4))),
        (r(3, 4, 2),),
        covers=("complex::expand", "complex::unsqueeze", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "expand-size-1",
        Fn(lambda x: real(C(x).expand(3, 4))),
        (r(1, 4, 2),),
        covers=("complex::expand", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "repeat",
        Fn(lambda x: real(C(x).repeat(2, 1, 3))),
        (r(3, 4, 2),),
        covers=("complex::repeat", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "flip",
        Fn(lambda x: real(C(x).flip(1))),
        (r(3, 4, 2),),
        covers=("complex::flip", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "roll",
        Fn(lambda x: real(C(x).roll((1, -2), (0, 1)))),
        (r(3, 4, 2),),
        covers=("complex::roll", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "roll-flat",
        Fn(lambda x: real(C(x).roll(5))),
        (r(3, 4, 2),),
        covers=("complex::roll", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "unbind",
        Fn(lambda x: real(C(x).unbind(1)[2])),
        (r(3, 4, 2),),
        covers=("complex::unbind", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "chunk",
        Fn(lambda x: real(C(x).chunk(2, 1)[1])),
        (r(3, 4, 2),),
        covers=("complex::split", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "split-sizes",
        Fn(lambda x: real(torch.split(C(x), [1, 3], 1)[1])),
        (r(3, 4, 2),),
        covers=("complex::split_with_sizes", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "narrow",
        Fn(lambda x: real(C(x).narrow(1, 1, 2))),
        (r(3, 4, 2),),
        covers=("complex::slice", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "index-last-axis",
        Fn(lambda x: real(C(x)[..., torch.tensor([0, 2, 2])])),
        (r(3, 4, 2),),
        covers=("complex::index", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "index-two-axes",
        Fn(lambda x: real(C(x)[torch.tensor([2, 0]), torch.tensor([1, 3])])),
        (r(3, 4, 2),),
        covers=("complex::index", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "cumsum",
        Fn(lambda x: real(C(x).cumsum(1))),
        (r(3, 4, 2),),
        covers=("complex::cumsum", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "cumsum-first-axis",
        Fn(lambda x: real(C(x).cumsum(0))),
        (r(3, 4, 2),),
        covers=("complex::cumsum", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "index-select",
        Fn(lambda x: real(C(x).index_select(1, torch.tensor([3, 0, 3])))),
        (r(3, 4, 2),),
        covers=("complex::index_select", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "stack",
        Fn(lambda x, y: real(torch.stack([C(x), C(y)], 1))),
        (r(3, 4, 2), r(3, 4, 2)),
        covers=("complex::stack", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "sum",
        Fn(lambda x: real(C(x).sum(1))),
        (r(3, 4, 2),),
        covers=("complex::sum", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "sum-all",
        Fn(lambda x: real(C(x).sum())),
        (r(3, 4, 2),),
        covers=("complex::sum", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    OpCase(
        "mean-keepdim",
        Fn(lambda x: real(C(x).mean((0, -1), keepdim=True))),
        (r(3, 4, 2),),
        covers=("complex::mean", "complex::view_as_complex", "complex::view_as_real"),
        khronos=True,
    ),
    # spectra
    OpCase(
        "stft-times-real-mask",
        Fn(lambda x, m: roundtrip_masked(x, m)),
        (r(2, 64), r(9, 17)),
        covers=("aten::hann_window", "complex::istft", "complex::mul", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "stft-magnitude-phase-polar",
        Fn(lambda x: polar_roundtrip(x)),
        (r(2, 64),),
        covers=(
            "aten::hann_window",
            "complex::abs",
            "complex::angle",
            "complex::istft",
            "complex::polar",
            "complex::stft",
        ),
        khronos=True,
    ),
    OpCase(
        "view-as-complex-istft",
        Fn(lambda s: torch.istft(C(s), 16, 4, window=hann(16))),
        (r(2, 9, 17, 2),),
        covers=("aten::hann_window", "complex::istft", "complex::view_as_complex"),
        khronos=True,
    ),
]


def bins_zeroed(z: torch.Tensor) -> torch.Tensor:
    z = z.clone()
    z[:, :2] = 0  # torch keeps the complex zero as a constant of the module
    return z


def select_written(z: torch.Tensor) -> torch.Tensor:
    z = z.clone()
    z[1] = z[0] * 2
    return z


def slice_written(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = z.clone()
    z[:, 1:3] = y  # real values: zero imaginary parts, broadcast over the slice
    return z


def roundtrip_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x, 16, hop_length=4, window=hann(16), return_complex=True)
    return torch.istft(spec * torch.sigmoid(mask), 16, hop_length=4, window=hann(16))


def polar_roundtrip(x: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x, 16, hop_length=4, window=hann(16), return_complex=True)
    spec = torch.polar(spec.abs() * 0.8, spec.angle())
    return torch.istft(spec, 16, hop_length=4, window=hann(16))


class MaskEnhancer(nn.Module):
    """A small speech enhancement model: a network reads the log-magnitude spectrum and gives either a real
    mask applied to the magnitude (recombined with the noisy phase by ``torch.polar``) or a complex ratio mask
    multiplying the spectrum; the result is resynthesised by ``istft``.
    """

    window: torch.Tensor

    def __init__(self, complex_mask: bool, n_fft: int = 32, hop: int = 8, hidden: int = 12) -> None:
        super().__init__()
        self.n_fft, self.hop, self.complex_mask = n_fft, hop, complex_mask
        bins = n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft))
        self.net = nn.Sequential(
            nn.Conv1d(bins, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv1d(hidden, 2 * bins if complex_mask else bins, 1),
        )

    def forward(self, samples: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(samples, self.n_fft, hop_length=self.hop, window=self.window, return_complex=True)
        magnitude = spec.abs()
        features = self.net(torch.log(magnitude + 1e-3))
        if self.complex_mask:  # [B, 2 * bins, frames] -> a complex [B, bins, frames]
            parts = torch.stack(torch.tanh(features).chunk(2, 1), -1)
            enhanced = spec * torch.view_as_complex(parts)
        else:
            enhanced = torch.polar(magnitude * torch.sigmoid(features), spec.angle())
        return torch.istft(enhanced, self.n_fft, hop_length=self.hop, window=self.window)


@pytest.mark.parametrize("target, complex_mask", [(t, m) for m in (False, True) for t in ("tract", "khronos")])
def test_mask_speech_enhancement(tmp_path: Path, target: str, complex_mask: bool) -> None:
    torch.manual_seed(0)
    export_checked(tmp_path, target, MaskEnhancer(complex_mask), (r(2, 160),))


@pytest.mark.skipif(not TORCH_2_6, reason="torch 2.5's torch.export has no FFT over a dynamic axis")
@pytest.mark.parametrize("complex_mask", [False, True])
def test_mask_speech_enhancement_dynamic_samples(tmp_path: Path, complex_mask: bool) -> None:
    torch.manual_seed(0)
    target = TractNNEF(check_io=True, dynamic_axes={"samples": {1: "T"}})
    model = MaskEnhancer(complex_mask).eval()
    path = export_model_to_nnef(model, (r(2, 160),), tmp_path / "m.nnef", target, input_names=["samples"])
    assert "tract_symbol T" in (path / "graph.nnef").read_text()


@pytest.mark.parametrize(("target", "case"), op_params(COMPLEX_CASES))
def test_complex_op(tmp_path: Path, target: str, case: OpCase) -> None:
    export_and_check(tmp_path, target, case)


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_signal_op(tmp_path: Path, target: str, case: OpCase) -> None:
    export_and_check(tmp_path, target, case)


def phase_advanced(x: torch.Tensor) -> torch.Tensor:
    """The magnitude kept, the phase doubled: a phase-vocoder-like resynthesis."""
    spec = stft(x, window=hann(16))
    return torch.istft(torch.polar(spec.abs(), spec.angle() * 2), 16, 4, window=hann(16))


# Tract only: the samples axis (and so the number of frames) dynamic, checked at a second length.
DYNAMIC: list[tuple[str, nn.Module, torch.Tensor]] = [
    ("stft-hann", Fn1(lambda x: real(stft(x, window=hann(16)))), r(2, 64)),
    ("stft-no-center", Fn1(lambda x: stft(x, center=False).abs()), r(2, 64)),
    ("rfft", Fn1(lambda x: torch.fft.rfft(x, dim=1).abs()), r(2, 64)),
    ("fft", Fn1(lambda x: real(torch.fft.fft(x))), r(2, 30)),
    ("ifft-forward", Fn1(lambda x: torch.fft.ifft(x, norm="forward").real), r(2, 30)),
    ("istft-roundtrip", Fn1(lambda x: roundtrip(x)), r(2, 64)),
    ("log-mel", LogMel(), r(2, 400)),
    ("complex-flatten", Fn1(lambda x: real(stft(x, window=hann(16)).flatten(1) * 2j)), r(2, 64)),
    (
        "complex-phase-advance",
        Fn1(lambda x: phase_advanced(x)),
        r(2, 64),
    ),
    ("log-mel-rank1", LogMel(n_fft=32, hop=8, mels=8), r(256)),
]


@pytest.mark.skipif(not TORCH_2_6, reason="torch 2.5's torch.export has no FFT over a dynamic axis")
@pytest.mark.parametrize("module, x", [pytest.param(m, x, id=name) for name, m, x in DYNAMIC])
def test_signal_dynamic_samples(tmp_path: Path, module: nn.Module, x: torch.Tensor) -> None:
    target = TractNNEF(check_io=True, dynamic_axes={"samples": {x.dim() - 1: "T"}})
    path = export_model_to_nnef(module, (x,), tmp_path / "m.nnef", target, input_names=["samples"])
    assert "tract_symbol T" in (path / "graph.nnef").read_text()


def no_center_normalized(x: torch.Tensor) -> torch.Tensor:
    spec = torch.stft(x, 16, 4, center=False, normalized=True, return_complex=True)
    return torch.istft(spec, 16, 4, center=False, normalized=True)


# torch warns about these (no window given, a length past the signal padded with zeros, real pairs out of stft):
# what is checked here.
WARNED: list[OpCase] = [
    OpCase(
        "istft-no-window-no-center-normalized",
        Fn(no_center_normalized),
        (r(2, 64),),
        covers=("complex::istft", "complex::stft"),
        khronos=True,
    ),
    OpCase(
        "stft-return-complex-false",
        Fn(lambda x: torch.stft(x, 16, 4, window=hann(16), return_complex=False)),
        (r(2, 40),),
        covers=("aten::hann_window", "aten::stft"),
        khronos=True,
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(WARNED))
def test_signal_warned_by_torch(tmp_path: Path, target: str, case: OpCase) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        export_and_check(tmp_path, target, case)


@pytest.mark.skipif(
    not TORCH_2_6, reason="torch 2.5's torch.export fails inside istft when length runs past the signal"
)
@pytest.mark.parametrize(
    ("target", "case"),
    op_params(
        [
            OpCase(
                "istft-length-past-signal",
                Fn(lambda x: roundtrip(x, hop=5, length=70)),
                (r(64),),
                covers=("aten::hann_window", "complex::istft", "complex::stft"),
                khronos=True,
            )
        ]
    ),
)
def test_istft_length_past_signal(tmp_path: Path, target: str, case: OpCase) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that it pads with zeros
        export_and_check(tmp_path, target, case)


@pytest.mark.skipif(TORCH_2_6, reason="the error of torch 2.5, whose torch.export has no FFT over a dynamic axis")
def test_dynamic_fft_needs_torch_2_6(tmp_path: Path) -> None:
    target = TractNNEF(dynamic_axes={"samples": {1: "T"}})
    with pytest.raises(CaptureError, match=r"torch >= 2\.6 has"):
        export_model_to_nnef(
            Fn1(lambda x: torch.fft.rfft(x).abs()), (r(2, 16),), tmp_path / "m.nnef", target, input_names=["samples"]
        )


def test_tract_uses_its_fft_operators(tmp_path: Path) -> None:
    path = export_checked(tmp_path, "tract", LogMel(), (r(1, 200),))
    text = (path / "graph.nnef").read_text()
    assert "tract_core_stft(" in text
    (tmp_path / "fft").mkdir()
    path = export_checked(tmp_path / "fft", "tract", Fn(lambda x: real(torch.fft.fft(x))), (r(2, 8),))
    assert "tract_core_fft(" in (path / "graph.nnef").read_text()


def test_khronos_uses_specification_ops(tmp_path: Path) -> None:
    path = export_checked(tmp_path, "khronos", LogMel(), (r(1, 200),))
    assert "tract_" not in (path / "graph.nnef").read_text()


@pytest.mark.parametrize(
    "module, x, error, words",
    [
        pytest.param(Fn1(lambda x: torch.fft.fft(x)), r(2, 8), CaptureError, "view_as_real", id="complex-output"),
        pytest.param(
            Fn1(lambda x: real(torch.fft.fft(x).tanh())),
            r(2, 8),
            UnsupportedOpsError,
            "complex::tanh",
            id="complex-arithmetic",
        ),
        pytest.param(
            Fn1(lambda x: real(torch.fft.fft(x) ** (1 + 1j))),
            r(2, 8),
            TranslationError,
            "complex tensor raised to a real number only",
            id="complex-exponent",
        ),
        pytest.param(
            Fn1(lambda x: real(nn.functional.pad(torch.fft.fft(x), (1, 1), value=2.0))),
            r(2, 8),
            TranslationError,
            "supported with zeros and static, non-negative amounts only",
            id="complex-pad-value",
        ),
        pytest.param(
            Fn1(lambda x: real(torch.add(torch.fft.fft(x), x, alpha=1j))),
            r(2, 8),
            TranslationError,
            "alpha=1j is not supported: use a real number",
            id="complex-alpha",
        ),
        pytest.param(
            Fn1(lambda x: real(stft(x, window=hann(16) * 2.0))),
            r(2, 64),
            TranslationError,
            "must be a constant",
            id="computed-window",
        ),
    ],
)
def test_signal_errors(tmp_path: Path, module: nn.Module, x: torch.Tensor, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        export_model_to_nnef(module, (x,), tmp_path / "m.nnef", TractNNEF(check_io=True))


def test_complex_input_refused(tmp_path: Path) -> None:
    x = torch.randn(2, 8, dtype=torch.complex64)
    with pytest.raises(CaptureError, match="view_as_complex inside the model"):
        export_model_to_nnef(Fn1(lambda z: real(z * 1)), (x,), tmp_path / "m.nnef", TractNNEF())


@pytest.mark.skipif(not TORCH_2_6, reason="torch 2.5's torch.export has no FFT over a dynamic axis")
def test_dynamic_fft_with_length_dependent_norm(tmp_path: Path) -> None:
    # torch specialises the length to compute 1 / sqrt(n): reported, not exported at the traced size.
    target = TractNNEF(dynamic_axes={"samples": {1: "T"}})
    with pytest.raises(CaptureError, match="specialised to 16"):
        export_model_to_nnef(
            Fn1(lambda x: real(torch.fft.fft(x, norm="ortho"))),
            (r(2, 16),),
            tmp_path / "m.nnef",
            target,
            input_names=["samples"],
        )
