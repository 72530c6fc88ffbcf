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

from optable import Case, Fn, export_and_check, op_params, r
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

# (id, module, inputs, also for Khronos)
CASES: list[Case] = [
    # fft / ifft: real and complex inputs, any axis, n cropping or zero-padding, every norm
    ("fft-axis1", Fn(lambda x: real(torch.fft.fft(x, dim=1))), (r(4, 8),), True),
    ("fft-axis0-n6-ortho", Fn(lambda x: real(torch.fft.fft(x, n=6, dim=0, norm="ortho"))), (r(4, 8),), True),
    ("fft-last-n11-forward", Fn(lambda x: real(torch.fft.fft(x, n=11, norm="forward"))), (r(4, 8),), True),
    ("fft-rank1", Fn(lambda x: real(torch.fft.fft(x))), (r(12),), True),
    ("fft-rank3-axis1", Fn(lambda x: real(torch.fft.fft(x, dim=1))), (r(2, 6, 3),), True),
    ("fft-of-complex", Fn(lambda x: real(torch.fft.fft(torch.fft.fft(x, dim=0), dim=1))), (r(4, 8),), True),
    ("ifft-axis0-abs", Fn(lambda x: torch.fft.ifft(x, dim=0).abs()), (r(4, 8),), True),
    ("ifft-real", Fn(lambda x: torch.fft.ifft(x).real), (r(4, 8),), True),
    ("ifft-imag", Fn(lambda x: torch.fft.ifft(x, norm="forward").imag * 1.0), (r(4, 8),), True),
    ("ifft-imag-returned", Fn(lambda x: torch.fft.ifft(x).imag), (r(4, 8),), True),
    (
        "ifft-of-complex-n5-ortho",
        Fn(lambda x: real(torch.fft.ifft(torch.fft.fft(x), n=5, norm="ortho"))),
        (r(4, 8),),
        True,
    ),
    ("fft-ifft-roundtrip", Fn(lambda x: torch.fft.ifft(torch.fft.fft(x, dim=-1), dim=-1).real), (r(3, 10),), True),
    ("fft-two-ranks-one-length", Fn(lambda x: real(torch.fft.fft(x)) + real(torch.fft.fft(x[0]))), (r(2, 3, 8),), True),
    ("fft-f64", Fn(lambda x: real(torch.fft.fft(x, dim=0))), (r(6, 3).double(),), False),
    # complex views and products
    ("stft-slice-power", Fn(lambda x: stft(x, window=hann(16))[..., :-1].abs() ** 2), (r(2, 64),), True),
    ("fft-transpose-select", Fn(lambda x: real(torch.fft.fft(x).transpose(0, 1)[1])), (r(4, 6),), True),
    (
        "fft-permute-unsqueeze-cat-squeeze",
        Fn(lambda x: real(torch.cat([torch.fft.fft(x).permute(1, 0).unsqueeze(0)] * 2, 0).squeeze(1))),
        (r(1, 6),),
        True,
    ),
    ("fft-times-scalar", Fn(lambda x: real(torch.fft.fft(x) * 0.5)), (r(3, 8),), True),
    (
        "rfft-product-circular-convolution",
        Fn(lambda x, y: torch.fft.irfft(torch.fft.rfft(x) * torch.fft.rfft(y[0]), n=8)),
        (r(3, 8), r(1, 8)),
        True,
    ),
    ("rfft-times-real-filter", Fn(lambda x, h: torch.fft.irfft(torch.fft.rfft(x) * h, n=8)), (r(3, 8), r(5)), True),
    # rfft / irfft
    ("rfft-last-forward-abs", Fn(lambda x: torch.fft.rfft(x, dim=-1, norm="forward").abs()), (r(4, 8),), True),
    ("rfft-axis0-n7", Fn(lambda x: real(torch.fft.rfft(x, n=7, dim=0))), (r(4, 8),), True),
    ("rfft-axis1-n5-ortho", Fn(lambda x: real(torch.fft.rfft(x, n=5, dim=1, norm="ortho"))), (r(3, 8),), True),
    ("irfft-default-n", Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x))), (r(4, 8),), True),
    ("irfft-n8", Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x), n=8)), (r(4, 9),), True),
    (
        "irfft-axis0-n5-ortho",
        Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x, dim=0), n=5, dim=0, norm="ortho")),
        (r(4, 8),),
        True,
    ),
    ("irfft-forward-n12", Fn(lambda x: torch.fft.irfft(torch.fft.rfft(x), n=12, norm="forward")), (r(2, 8),), True),
    ("irfft-of-real", Fn(lambda x: torch.fft.irfft(x, n=7, dim=0)), (r(4, 3),), True),
    ("irfft-view-as-complex", Fn(lambda x: torch.fft.irfft(torch.view_as_complex(x), n=6)), (r(3, 4, 2),), True),
    # stft: windows, center and its pad modes, onesided, normalized
    ("stft-hann-reflect", Fn(lambda x: real(stft(x, window=hann(16)))), (r(2, 64),), True),
    ("stft-no-window", Fn(lambda x: real(stft(x))), (r(2, 64),), True),
    ("stft-constant-pad-power", Fn(lambda x: stft(x, pad_mode="constant").abs() ** 2), (r(64),), True),
    ("stft-replicate-pad", Fn(lambda x: stft(x, window=hann(16), pad_mode="replicate").abs()), (r(2, 60),), True),
    ("stft-circular-pad", Fn(lambda x: stft(x, window=hann(16), pad_mode="circular").abs()), (r(1, 48),), True),
    ("stft-no-center", Fn(lambda x: real(stft(x, window=hann(16), center=False))), (r(2, 64),), True),
    (
        "stft-twosided-normalized-win12",
        Fn(lambda x: stft(x, win_length=12, center=False, onesided=False, normalized=True).abs()),
        (r(2, 64),),
        True,
    ),
    (
        "stft-hamming-win10",
        Fn(lambda x: real(stft(x, win_length=10, window=torch.hamming_window(10)))),
        (r(2, 50),),
        True,
    ),
    (
        "stft-bartlett",
        Fn(lambda x: stft(x, window=torch.bartlett_window(16)).abs()),
        (r(2, 48),),
        True,
    ),
    (
        "stft-blackman-hop3",
        Fn(lambda x: real(torch.stft(x, 12, 3, window=torch.blackman_window(12), return_complex=True))),
        (r(40),),
        True,
    ),
    (
        "stft-real-imag",
        Fn(lambda x: stft(x, window=hann(16)).real - 2 * stft(x, window=hann(16)).imag),
        (r(2, 64),),
        True,
    ),
    # istft
    ("istft-roundtrip", Fn(lambda x: roundtrip(x)), (r(2, 64),), True),
    ("istft-length-hop5", Fn(lambda x: roundtrip(x, hop=5, length=60)), (r(64),), True),
    (
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
        True,
    ),
    # the log-mel front end, static
    ("log-mel", LogMel(), (r(2, 400),), True),
    # the forms torch 2.5 lowers istft, irfft of a real input and fft with n to (any torch emits them called directly)
    ("unfold-backward", Fn(lambda x: torch.ops.aten.unfold_backward(x, [2, 30], 1, 8, 3)), (r(2, 8, 8),), True),
    (
        "unfold-backward-broadcast-past-frames",
        Fn(lambda x: torch.ops.aten.unfold_backward(x, [3, 23], 1, 6, 4)),
        (r(1, 4, 6),),
        True,
    ),
    (
        "complex-zero-pad",
        Fn(lambda x: real(torch.ops.aten.constant_pad_nd(torch.fft.fft(x), [1, 2]))),
        (r(3, 8),),
        True,
    ),
    ("real-to-complex-cast", Fn(lambda x: real(torch.fft.fft(x.to(torch.complex64), dim=0))), (r(3, 8),), True),
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
COMPLEX_CASES: list[Case] = [
    # static only: torch.export fixes the number of frames when consecutive frames of a spectrum are
    # combined (spec[..., 1:] with spec[..., :-1]), so the exporter refuses that over a dynamic axis
    (
        "complex-frame-difference-mean",
        Fn1(lambda x: real((stft(x)[..., 1:] / (stft(x)[..., :-1] + 1.0)).mean(-1))),
        (r(2, 64),),
        True,
    ),
    ("add", Fn(lambda x, y: real(C(x) + C(y))), (r(3, 4, 2), r(3, 4, 2)), True),
    ("add-broadcast-alpha", Fn(lambda x, y: real(torch.add(C(x), C(y), alpha=-2.5))), (r(3, 4, 2), r(4, 2)), True),
    ("add-real-tensor", Fn(lambda x, y: real(C(x) + y)), (r(3, 4, 2), r(4)), True),
    ("add-real-scalar", Fn(lambda x: real(C(x) + 1.5)), (r(3, 4, 2),), True),
    ("real-tensor-minus-complex", Fn(lambda x, y: real(y - C(x))), (r(3, 4, 2), r(3, 1)), True),
    ("sub-alpha", Fn(lambda x, y: real(torch.sub(C(x), C(y), alpha=3))), (r(3, 4, 2), r(3, 4, 2)), True),
    ("scalar-minus-complex", Fn(lambda x: real(2.0 - C(x))), (r(3, 4, 2),), True),
    ("neg", Fn(lambda x: real(-C(x))), (r(3, 4, 2),), True),
    ("mul-imaginary-unit", Fn(lambda x: real(C(x) * 1j)), (r(3, 4, 2),), True),
    ("mul-complex-scalar-broadcast", Fn(lambda x, y: real((0.5 - 2j) * C(x) * C(y))), (r(3, 4, 2), r(4, 2)), True),
    ("mul-real-mask", Fn(lambda x, m: real(C(x) * torch.sigmoid(m))), (r(3, 4, 2), r(3, 4)), True),
    ("mul-boolean-mask", Fn(lambda x, m: real(C(x) * (m > 0))), (r(3, 4, 2), r(4)), True),
    ("add-boolean-tensor", Fn(lambda x, m: real(C(x) + (m > 0))), (r(3, 4, 2), r(3, 4)), True),
    ("div", Fn(lambda x, y: real(C(x) / C(y))), (r(3, 4, 2), nonzero(3, 4, 2)), True),
    ("div-real-tensor", Fn(lambda x, y: real(C(x) / y)), (r(3, 4, 2), nonzero(4)), True),
    ("div-real-scalar", Fn(lambda x: real(C(x) / 4.0)), (r(3, 4, 2),), True),
    ("real-tensor-over-complex", Fn(lambda x, y: real(y / C(x))), (nonzero(3, 4, 2), r(3, 4)), True),
    ("scalar-over-complex", Fn(lambda x: real(2.0 / C(x))), (nonzero(3, 4, 2),), True),
    ("reciprocal", Fn(lambda x: real(C(x).reciprocal())), (nonzero(3, 4, 2),), True),
    ("exp", Fn(lambda x: real(C(x).exp())), (r(3, 4, 2),), True),
    ("exp-of-imaginary-phase", Fn(lambda x: real(torch.exp(1j * x))), (r(3, 4),), True),
    ("log", Fn(lambda x: real(C(x).log())), (nonzero(3, 4, 2),), True),
    ("sqrt", Fn(lambda x: real(C(x).sqrt())), (nonzero(3, 4, 2),), True),
    ("sgn", Fn(lambda x: real(C(x).sgn())), (r(3, 4, 2),), True),
    ("square", Fn(lambda x: real(C(x).square())), (r(3, 4, 2),), True),
    ("pow-2", Fn(lambda x: real(C(x) ** 2)), (r(3, 4, 2),), True),
    ("pow-5", Fn(lambda x: real(C(x) ** 5)), (r(3, 4, 2),), True),
    ("pow-minus-2", Fn(lambda x: real(C(x) ** -2)), (nonzero(3, 4, 2),), True),
    ("pow-0", Fn(lambda x: real(C(x) ** 0)), (r(3, 4, 2),), True),
    ("pow-one-third", Fn(lambda x: real(C(x) ** (1 / 3))), (nonzero(3, 4, 2),), True),
    ("angle", Fn(lambda x: C(x).angle()), (nonzero(3, 4, 2),), True),
    (
        "angle-axes",
        Fn(lambda x: C(x).angle()),
        (torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]]),),
        True,
    ),
    ("abs-angle-polar", Fn(lambda x: real(torch.polar(C(x).abs() * 0.5, C(x).angle()))), (nonzero(3, 4, 2),), True),
    ("polar-broadcast", Fn(lambda m, p: real(torch.polar(m, p))), (r(3, 4).abs(), r(4)), True),
    ("complex-from-parts", Fn(lambda a, b: real(torch.complex(a, b))), (r(3, 4), r(3, 4)), True),
    ("complex-broadcast", Fn(lambda a, b: real(torch.complex(a, b))), (r(3, 4), r(3, 1)), True),
    (
        "real-imag-of-product",
        Fn(lambda x, y: (C(x) * C(y).conj()).real - (C(x) * C(y)).imag),
        (r(3, 4, 2), r(3, 4, 2)),
        True,
    ),
    ("where", Fn(lambda x, y: real(torch.where(y > 0, C(x), 0.5 * C(x)))), (r(3, 4, 2), r(3, 4)), True),
    ("matmul", Fn(lambda x, y: real(C(x) @ C(y).transpose(0, 1))), (r(3, 4, 2), r(5, 4, 2)), True),
    ("matmul-batched-cast-right", Fn(lambda x, w: real(C(x) @ w.to(torch.complex64))), (r(2, 3, 4, 2), r(4, 5)), True),
    ("matmul-left-vector", Fn(lambda v, y: real(C(v) @ C(y))), (r(3, 2), r(3, 4, 2)), True),
    ("matmul-vector-right", Fn(lambda x, y: real(torch.matmul(C(x), C(y)))), (r(3, 4, 2), r(4, 2)), True),
    ("einsum", Fn(lambda x, y: real(torch.einsum("ij,kj->ik", C(x), C(y)))), (r(3, 4, 2), r(5, 4, 2)), True),
    (
        "einsum-three-ellipsis",
        Fn(lambda x, y, z: real(torch.einsum("...ft,ft,f->...t", C(x), C(y), C(z)))),
        (r(2, 3, 4, 2), r(3, 4, 2), r(3, 2)),
        True,
    ),
    ("einsum-implicit-full", Fn(lambda x, y: real(torch.einsum("ij,ij", C(x), C(y)))), (r(3, 4, 2), r(3, 4, 2)), True),
    ("select-scatter", Fn(lambda x: real(select_written(C(x)))), (r(3, 4, 2),), True),
    ("slice-scatter-of-real", Fn(lambda x, y: real(slice_written(C(x), y))), (r(3, 4, 2), r(3, 1)), True),
    ("zeroed-bins", Fn(lambda x: real(bins_zeroed(C(x)))), (r(3, 4, 2),), True),
    ("complex-weight-and-buffer", ComplexFilter(), (r(2, 5, 2),), True),
    ("zeros-like", Fn(lambda x: real(torch.zeros_like(C(x)) + C(x) * 2)), (r(3, 4, 2),), True),
    ("full-like-complex", Fn(lambda x: real(torch.full_like(C(x), 1 - 2j) * C(x))), (r(3, 4, 2),), True),
    ("masked-fill", Fn(lambda x, y: real(C(x).masked_fill(y > 0, 0.5j))), (r(3, 4, 2), r(3, 4)), True),
    ("zero-pad", Fn(lambda x: real(nn.functional.pad(C(x), (1, 2, 0, 1)))), (r(3, 4, 2),), True),
    ("reflect-pad", Fn(lambda x: real(nn.functional.pad(C(x), (2, 1), mode="reflect"))), (r(3, 4, 2),), True),
    ("replicate-pad", Fn(lambda x: real(nn.functional.pad(C(x), (1, 2), mode="replicate"))), (r(3, 4, 2),), True),
    ("circular-pad", Fn(lambda x: real(nn.functional.pad(C(x), (1, 2), mode="circular"))), (r(1, 3, 4, 2),), True),
    ("conj-physical-detach", Fn(lambda x: real(C(x).conj_physical().detach())), (r(3, 4, 2),), True),
    ("fftshift", Fn(lambda x: real(torch.fft.fftshift(torch.fft.fft(x)))), (r(4, 5),), True),
    ("ifftshift-axis", Fn(lambda x: real(torch.fft.ifftshift(C(x), dim=1))), (r(3, 5, 2),), True),
    ("ifftshift-real", Fn(lambda x: torch.fft.ifftshift(x)), (r(3, 5),), True),
    ("fftshift-real", Fn(lambda x: torch.fft.fftshift(x, dim=(0, 1))), (r(3, 5),), True),
    ("angle-of-real", Fn(lambda x: torch.angle(x)), (torch.tensor([-2.0, 0.0, 3.0, float("nan"), -0.5]),), True),
    # shapes and reductions over the logical axes
    ("reshape", Fn(lambda x: real(C(x).reshape(-1))), (r(3, 4, 2),), True),
    ("view-flatten", Fn(lambda x: real(C(x).view(2, 6).flatten()) + 0), (r(3, 4, 2),), True),
    ("expand", Fn(lambda x: real(C(x)[None].expand(2, 3, 4))), (r(3, 4, 2),), True),
    ("expand-size-1", Fn(lambda x: real(C(x).expand(3, 4))), (r(1, 4, 2),), True),
    ("repeat", Fn(lambda x: real(C(x).repeat(2, 1, 3))), (r(3, 4, 2),), True),
    ("flip", Fn(lambda x: real(C(x).flip(1))), (r(3, 4, 2),), True),
    ("roll", Fn(lambda x: real(C(x).roll((1, -2), (0, 1)))), (r(3, 4, 2),), True),
    ("roll-flat", Fn(lambda x: real(C(x).roll(5))), (r(3, 4, 2),), True),
    ("unbind", Fn(lambda x: real(C(x).unbind(1)[2])), (r(3, 4, 2),), True),
    ("chunk", Fn(lambda x: real(C(x).chunk(2, 1)[1])), (r(3, 4, 2),), True),
    ("split-sizes", Fn(lambda x: real(torch.split(C(x), [1, 3], 1)[1])), (r(3, 4, 2),), True),
    ("narrow", Fn(lambda x: real(C(x).narrow(1, 1, 2))), (r(3, 4, 2),), True),
    ("index-last-axis", Fn(lambda x: real(C(x)[..., torch.tensor([0, 2, 2])])), (r(3, 4, 2),), False),
    ("index-two-axes", Fn(lambda x: real(C(x)[torch.tensor([2, 0]), torch.tensor([1, 3])])), (r(3, 4, 2),), False),
    ("cumsum", Fn(lambda x: real(C(x).cumsum(1))), (r(3, 4, 2),), True),
    ("cumsum-first-axis", Fn(lambda x: real(C(x).cumsum(0))), (r(3, 4, 2),), True),
    ("index-select", Fn(lambda x: real(C(x).index_select(1, torch.tensor([3, 0, 3])))), (r(3, 4, 2),), False),
    ("stack", Fn(lambda x, y: real(torch.stack([C(x), C(y)], 1))), (r(3, 4, 2), r(3, 4, 2)), True),
    ("sum", Fn(lambda x: real(C(x).sum(1))), (r(3, 4, 2),), True),
    ("sum-all", Fn(lambda x: real(C(x).sum())), (r(3, 4, 2),), True),
    ("mean-keepdim", Fn(lambda x: real(C(x).mean((0, -1), keepdim=True))), (r(3, 4, 2),), True),
    # spectra
    ("stft-times-real-mask", Fn(lambda x, m: roundtrip_masked(x, m)), (r(2, 64), r(9, 17)), True),
    ("stft-magnitude-phase-polar", Fn(lambda x: polar_roundtrip(x)), (r(2, 64),), True),
    ("view-as-complex-istft", Fn(lambda s: torch.istft(C(s), 16, 4, window=hann(16))), (r(2, 9, 17, 2),), True),
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
    export_and_check(tmp_path, target, MaskEnhancer(complex_mask), (r(2, 160),))


@pytest.mark.skipif(not TORCH_2_6, reason="torch 2.5's torch.export has no FFT over a dynamic axis")
@pytest.mark.parametrize("complex_mask", [False, True])
def test_mask_speech_enhancement_dynamic_samples(tmp_path: Path, complex_mask: bool) -> None:
    torch.manual_seed(0)
    target = TractNNEF(check_io=True, dynamic_axes={"samples": {1: "T"}})
    model = MaskEnhancer(complex_mask).eval()
    path = export_model_to_nnef(model, (r(2, 160),), tmp_path / "m.nnef", target, input_names=["samples"])
    assert "tract_symbol T" in (path / "graph.nnef").read_text()


@pytest.mark.parametrize("target, module, inputs", op_params(COMPLEX_CASES))
def test_complex_op(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    export_and_check(tmp_path, target, module, inputs)


@pytest.mark.parametrize("target, module, inputs", op_params(CASES))
def test_signal_op(tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    export_and_check(tmp_path, target, module, inputs)


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
WARNED: list[Case] = [
    ("istft-no-window-no-center-normalized", Fn(no_center_normalized), (r(2, 64),), True),
    (
        "stft-return-complex-false",
        Fn(lambda x: torch.stft(x, 16, 4, window=hann(16), return_complex=False)),
        (r(2, 40),),
        True,
    ),
]


@pytest.mark.parametrize("target, module, inputs", op_params(WARNED))
def test_signal_warned_by_torch(
    tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        export_and_check(tmp_path, target, module, inputs)


@pytest.mark.skipif(
    not TORCH_2_6, reason="torch 2.5's torch.export fails inside istft when length runs past the signal"
)
@pytest.mark.parametrize(
    "target, module, inputs",
    op_params([("istft-length-past-signal", Fn(lambda x: roundtrip(x, hop=5, length=70)), (r(64),), True)]),
)
def test_istft_length_past_signal(
    tmp_path: Path, target: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns that it pads with zeros
        export_and_check(tmp_path, target, module, inputs)


@pytest.mark.skipif(TORCH_2_6, reason="the error of torch 2.5, whose torch.export has no FFT over a dynamic axis")
def test_dynamic_fft_needs_torch_2_6(tmp_path: Path) -> None:
    target = TractNNEF(dynamic_axes={"samples": {1: "T"}})
    with pytest.raises(CaptureError, match=r"torch >= 2\.6 has"):
        export_model_to_nnef(
            Fn1(lambda x: torch.fft.rfft(x).abs()), (r(2, 16),), tmp_path / "m.nnef", target, input_names=["samples"]
        )


def test_tract_uses_its_fft_operators(tmp_path: Path) -> None:
    path = export_and_check(tmp_path, "tract", LogMel(), (r(1, 200),))
    text = (path / "graph.nnef").read_text()
    assert "tract_core_stft(" in text
    (tmp_path / "fft").mkdir()
    path = export_and_check(tmp_path / "fft", "tract", Fn(lambda x: real(torch.fft.fft(x))), (r(2, 8),))
    assert "tract_core_fft(" in (path / "graph.nnef").read_text()


def test_khronos_uses_specification_ops(tmp_path: Path) -> None:
    path = export_and_check(tmp_path, "khronos", LogMel(), (r(1, 200),))
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
