"""Elementwise operators (``op/elementwise.py``): arithmetic and its scalar and integer forms, comparisons and logic,
bitwise and shifts, rounding, exponentials and logarithms, trigonometry, clamps, tests of values, casts, each
checked numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cases_common import Named, OlderForm, check_older_form, retarget
from torch import nn

from harness import Fn, Fn1, OpCase, export_and_check, export_checked, ints, op_params, r
from torch_to_nnef import KhronosNNEF, TractNNEF, export_model_to_nnef
from torch_to_nnef.errors import TranslationError
from torch_to_nnef.op import supported_kinds

aten = torch.ops.aten


def within(low: float, high: float, *shape: int) -> torch.Tensor:
    return torch.rand(*shape) * (high - low) + low


# Values across magnitudes: tiny ones show whether expm1/log1p keep their precision near zero.
SPREAD = torch.tensor([[0.0, 1e-7, -3e-6, 2e-4, -0.004, 0.3], [-0.5, 0.75, 2.0, -5.0, 9.0, -0.09]])
SIGNED_ZEROS = torch.tensor([[0.0, -0.0, 1.5, -2.0], [-0.25, 3.0, -0.0, 0.0]])


def nonzero_ints(*shape: int) -> torch.Tensor:
    x = ints(*shape, low=1, high=5)
    return torch.where(torch.rand(*shape) > 0.5, x, -x)


# Divisors kept away from zero, with both signs.
DIVISOR = torch.tensor([[1.5, -2.0, 0.7, -0.9], [3.0, -1.25, 2.5, -4.0]])
DIVIDEND = torch.tensor([[7.3, -7.3, 5.0, -5.5], [-0.4, 2.6, -9.1, 8.8]])

CASES: list[OpCase] = [
    OpCase("relu", Fn(torch.relu), (r(2, 5),), covers=("aten::relu",), khronos=True),
    OpCase("sigmoid", Fn(torch.sigmoid), (r(2, 5),), covers=("aten::sigmoid",), khronos=True),
    OpCase("tanh", Fn(torch.tanh), (r(2, 5),), covers=("aten::tanh",), khronos=True),
    OpCase("exp", Fn(torch.exp), (r(2, 5),), covers=("aten::exp",), khronos=True),
    OpCase(
        "log",
        Fn(lambda x: torch.log(x.abs() + 0.1)),
        (r(2, 5),),
        covers=("aten::abs", "aten::add", "aten::log"),
        khronos=True,
    ),
    OpCase("sqrt", Fn(lambda x: torch.sqrt(x.abs())), (r(2, 5),), covers=("aten::abs", "aten::sqrt"), khronos=True),
    OpCase(
        "rsqrt",
        Fn(lambda x: torch.rsqrt(x.abs() + 0.5)),
        (r(2, 5),),
        covers=("aten::abs", "aten::add", "aten::rsqrt"),
        khronos=True,
    ),
    OpCase("abs-neg", Fn(lambda x: -torch.abs(x)), (r(2, 5),), covers=("aten::abs", "aten::neg"), khronos=True),
    OpCase(
        "sin-cos",
        Fn(lambda x: torch.sin(x) + torch.cos(x)),
        (r(2, 5),),
        covers=("aten::add", "aten::cos", "aten::sin"),
        khronos=True,
    ),
    OpCase(
        "floor-ceil",
        Fn(lambda x: torch.floor(x * 3) + torch.ceil(x * 3)),
        (r(2, 5),),
        covers=("aten::add", "aten::ceil", "aten::floor", "aten::mul"),
        khronos=True,
    ),
    OpCase("sign", Fn(torch.sign), (r(2, 5),), covers=("aten::sign",), khronos=True),
    OpCase(
        "reciprocal",
        Fn(lambda x: torch.reciprocal(x.abs() + 1)),
        (r(2, 5),),
        covers=("aten::abs", "aten::add", "aten::reciprocal"),
        khronos=True,
    ),
    OpCase("add-broadcast", Fn(lambda a, b: a + b), (r(2, 3, 4), r(4)), covers=("aten::add",), khronos=True),
    OpCase(
        "sub-alpha", Fn(lambda a, b: torch.sub(a, b, alpha=2)), (r(2, 3), r(2, 3)), covers=("aten::sub",), khronos=True
    ),
    OpCase("mul-scalar", Fn(lambda a: a * 3), (r(2, 3),), covers=("aten::mul",), khronos=True),
    OpCase(
        "div",
        Fn(lambda a, b: a / (b.abs() + 1)),
        (r(2, 3), r(3)),
        covers=("aten::abs", "aten::add", "aten::div"),
        khronos=True,
    ),
    OpCase("rsub-scalar", Fn(lambda a: 1 - a), (r(2, 3),), covers=("aten::rsub",), khronos=True),
    OpCase("hardtanh", nn.Hardtanh(-0.5, 0.5), (r(2, 8),), covers=("aten::hardtanh",), khronos=True),
    OpCase(
        "clamp-min-keyword", Fn(lambda x: torch.clamp(x, min=0.1)), (r(2, 8),), covers=("aten::clamp",), khronos=True
    ),
    OpCase("relu6", nn.ReLU6(), (r(2, 8) * 8,), covers=("aten::hardtanh",), khronos=True),
    OpCase("dropout-eval", nn.Dropout(0.5), (r(2, 3),), covers=("aten::dropout",), khronos=True),
    OpCase(
        "tan-asin-acos-atan",
        Fn(lambda x: torch.tan(x) + torch.asin(x) + torch.acos(x) + torch.atan(x)),
        (r(2, 5) / 3,),
        covers=("aten::acos", "aten::add", "aten::asin", "aten::atan", "aten::tan"),
        khronos=True,
    ),
    OpCase(
        "sinh-cosh",
        Fn(lambda x: torch.sinh(x) * torch.cosh(x)),
        (r(2, 5),),
        covers=("aten::cosh", "aten::mul", "aten::sinh"),
        khronos=True,
    ),
    OpCase(
        "compare-where",
        Fn(lambda a, b: torch.where(a > b, a, b * 2)),
        (r(2, 5), r(5)),
        covers=("aten::gt", "aten::mul", "aten::where"),
        khronos=True,
    ),
    OpCase(
        "eq-ne-or",
        Fn(lambda a: torch.where((a.floor() == 0) | (a.ceil() != 1), a, -a)),
        (r(3, 4),),
        covers=("aten::__or__", "aten::ceil", "aten::eq", "aten::floor", "aten::ne", "aten::neg", "aten::where"),
        khronos=True,
    ),
    OpCase(
        "round-half-even",
        Fn(lambda a: torch.round(a * 2)),
        (torch.tensor([[0.25, 0.75, -0.25, 1.25, 3.3]]),),
        covers=("aten::mul", "aten::round"),
        khronos=True,
    ),
    OpCase(
        "round-halves-and-large",
        Fn(torch.round),
        (
            torch.tensor(
                [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49999997, -0.49999997, 8388609.0, -1e9, 2.0**23 - 0.5]
            ),
        ),
        covers=("aten::round",),
        khronos=True,
    ),
    OpCase(
        "round-decimals",
        Fn(lambda a: torch.round(a, decimals=2) + torch.round(a * 100, decimals=-1)),
        (r(4, 6) * 10,),
        covers=("aten::round",),
        khronos=True,
    ),
    OpCase(
        "le-lt-ge scalars",
        Fn(lambda a: ((a <= 0.5) & (a > -0.5)).float() + (a < 0).float()),
        (r(3, 4),),
        covers=("aten::__and__", "aten::_to_copy", "aten::add", "aten::gt", "aten::le", "aten::lt"),
        khronos=True,
    ),
    OpCase(
        "logical-not",
        Fn(lambda a: torch.where(~(a > 0), a, 0.0)),
        (r(3, 4),),
        covers=("aten::bitwise_not", "aten::gt", "aten::where"),
        khronos=True,
    ),
    OpCase(
        "minimum-maximum",
        Fn(lambda a, b: torch.minimum(a, b) + torch.maximum(a, b) * 2),
        (r(2, 4), r(4)),
        covers=("aten::add", "aten::maximum", "aten::minimum", "aten::mul"),
        khronos=True,
    ),
    OpCase(
        "pow-scalar",
        Fn(lambda a: torch.pow(a.abs() + 0.1, 1.7)),
        (r(2, 4),),
        covers=("aten::abs", "aten::add", "aten::pow"),
        khronos=True,
    ),
    OpCase("pow-square", Fn(lambda a: a**2), (r(2, 4),), covers=("aten::pow",), khronos=True),
    OpCase(
        "pow-scalar-base",
        Fn(lambda a: 2.0**a + torch.pow(0.5, a)),
        (r(2, 4),),
        covers=("aten::add", "aten::pow"),
        khronos=True,
    ),
    OpCase("promote-f32-i64", Fn(lambda a, b: a + b), (r(2, 3), torch.arange(3)), covers=("aten::add",), khronos=True),
    OpCase(
        "promote-i32-i64-alpha",
        Fn(lambda a, b: torch.sub(a, b, alpha=3)),
        (torch.arange(6).int(), torch.arange(6)),
        covers=("aten::sub",),
        khronos=False,
    ),
    OpCase(
        "promote-compare-int-float",
        Fn(lambda a: (a > 1.5).float()),
        (torch.arange(6),),
        covers=("aten::_to_copy", "aten::gt"),
        khronos=True,
    ),
    OpCase(
        "type-as",
        Fn(lambda a, b: a.type_as(b) * b),
        (torch.arange(6).reshape(2, 3), r(2, 3)),
        covers=("aten::mul", "aten::type_as"),
        khronos=True,
    ),
    OpCase(
        "type-as-half",
        Fn(lambda a, b: (a.half() * 2).type_as(b) + b),
        (r(2, 3), r(2, 3)),
        covers=("aten::_to_copy", "aten::add", "aten::mul", "aten::type_as"),
        khronos=False,
    ),
    OpCase(
        "f16-scalar-ops",
        Fn(lambda a: (a * 3 + 1).masked_fill(a > 0, 2.0)),
        (r(2, 5).half(),),
        covers=("aten::add", "aten::gt", "aten::mul"),
        khronos=False,  # Khronos reads scalars as f32: f16 cannot be checked,
    ),
    OpCase("softsign", nn.Softsign(), (r(2, 8) * 4,), covers=("aten::abs", "aten::add", "aten::div"), khronos=True),
    # composite aliases torch >= 2.6 keeps whole: lowered with torch's own decompositions
    OpCase(
        "alias-multiply-divide-subtract",
        Fn(lambda a, b: torch.multiply(a, b) + torch.divide(a, b.abs() + 1) - torch.subtract(a, b, alpha=2)),
        (r(3, 4), r(4)),
        covers=("aten::abs", "aten::add", "aten::div", "aten::mul", "aten::sub"),
        khronos=True,
    ),
    OpCase(
        "alias-greater-less-not-equal",
        Fn(lambda a, b: (torch.greater(a, b) | torch.less_equal(a, 0.2)).float() + torch.not_equal(a, b).float()),
        (r(3, 4), r(3, 4)),
        covers=("aten::__or__", "aten::_to_copy", "aten::add", "aten::gt", "aten::le", "aten::ne"),
        khronos=True,
    ),
    OpCase(
        "alias-absolute-negative-arctan2",
        Fn(lambda a, b: torch.absolute(a) + torch.negative(b) + torch.arctan2(a, b)),
        (r(3, 4), r(3, 4)),
        covers=("aten::abs", "aten::add", "aten::atan2", "aten::neg"),
        khronos=True,
    ),
    # inverse hyperbolics, erf
    OpCase("asinh", Fn(torch.asinh), (r(3, 4) * 3,), covers=("aten::asinh",), khronos=True),
    OpCase("acosh", Fn(torch.acosh), (within(1.0, 6.0, 3, 4),), covers=("aten::acosh",), khronos=True),
    OpCase("atanh", Fn(torch.atanh), (within(-0.95, 0.95, 3, 4),), covers=("aten::atanh",), khronos=True),
    OpCase("erf", Fn(torch.erf), (r(3, 5) * 2,), covers=("aten::erf",), khronos=True),
    OpCase("erfc", Fn(torch.erfc), (r(3, 5) * 2,), covers=("aten::erfc",), khronos=True),
    OpCase("erf-int", Fn(torch.erf), (ints(2, 3, low=-2, high=3),), covers=("aten::erf",), khronos=True),
    # both parts of the approximation (|x| above ~0.9966 is the tails), the poles and outside [-1, 1]
    OpCase("erfinv", Fn(torch.erfinv), (within(-0.9999, 0.9999, 4, 6),), covers=("aten::erfinv",), khronos=True),
    OpCase(
        "erfinv-edges",
        Fn(torch.erfinv),
        (torch.tensor([-1.0, -0.99999, -0.997, -0.5, 0.0, 1e-6, 0.3, 0.9966, 0.99999, 1.0, 1.5, -2.0]),),
        covers=("aten::erfinv",),
        khronos=True,
    ),
    # exponentials and logarithms
    OpCase("expm1", Fn(torch.expm1), (SPREAD,), covers=("aten::expm1",), khronos=True),
    OpCase("log1p", Fn(torch.log1p), (SPREAD.clamp(min=-0.9),), covers=("aten::log1p",), khronos=True),
    OpCase("log2", Fn(torch.log2), (within(0.01, 50.0, 3, 4),), covers=("aten::log2",), khronos=True),
    OpCase("log10", Fn(torch.log10), (within(0.01, 50.0, 3, 4),), covers=("aten::log10",), khronos=True),
    OpCase("exp2", Fn(torch.exp2), (r(3, 4) * 3,), covers=("aten::exp2",), khronos=True),
    OpCase("logit", Fn(torch.logit), (within(0.02, 0.98, 3, 4),), covers=("aten::logit",), khronos=True),
    OpCase(
        "logit-eps",
        Fn(lambda x: torch.logit(x, eps=0.1)),
        (within(0.0, 1.0, 3, 4),),
        covers=("aten::logit",),
        khronos=True,
    ),
    OpCase(
        "xlogy",
        Fn(torch.xlogy),
        (torch.tensor([[0.0, 1.5, -2.0], [0.0, 3.0, 0.5]]), within(0.1, 4.0, 2, 3)),
        covers=("aten::xlogy",),
        khronos=True,
    ),
    OpCase(
        "xlogy-scalar",
        Fn(lambda y: torch.xlogy(2.0, y)),
        (within(0.1, 4.0, 2, 3),),
        covers=("aten::xlogy",),
        khronos=True,
    ),
    OpCase("logaddexp", Fn(torch.logaddexp), (r(3, 4) * 40, r(3, 4) * 40), covers=("aten::logaddexp",), khronos=True),
    OpCase("logaddexp2", Fn(torch.logaddexp2), (r(3, 4) * 40, r(1, 4)), covers=("aten::logaddexp2",), khronos=True),
    # rounding, signs, units
    OpCase("trunc", Fn(torch.trunc), (r(3, 5) * 4,), covers=("aten::trunc",), khronos=True),
    OpCase("fix", Fn(torch.fix), (r(3, 5) * 4,), covers=("aten::fix",), khronos=True),
    OpCase(
        "trunc-int", Fn(lambda x: torch.trunc(x) + 1), (ints(3, 4),), covers=("aten::add", "aten::trunc"), khronos=False
    ),
    OpCase("sgn", Fn(torch.sgn), (SIGNED_ZEROS,), covers=("aten::sgn",), khronos=True),
    OpCase("signbit", Fn(torch.signbit), (SIGNED_ZEROS,), covers=("aten::signbit",), khronos=True),
    OpCase("signbit-int", Fn(torch.signbit), (ints(3, 4),), covers=("aten::signbit",), khronos=False),
    OpCase("copysign", Fn(torch.copysign), (r(2, 4), SIGNED_ZEROS), covers=("aten::copysign",), khronos=True),
    OpCase(
        "copysign-scalar", Fn(lambda x: torch.copysign(x, -1.0)), (r(2, 4),), covers=("aten::copysign",), khronos=True
    ),
    OpCase(
        "heaviside",
        Fn(lambda x: torch.heaviside(x, torch.tensor([0.5]))),
        (SIGNED_ZEROS,),
        covers=("aten::clone", "aten::heaviside"),
        khronos=True,
    ),
    OpCase("rad2deg", Fn(torch.rad2deg), (r(3, 4),), covers=("aten::rad2deg",), khronos=True),
    OpCase("deg2rad", Fn(torch.deg2rad), (r(3, 4) * 180,), covers=("aten::deg2rad",), khronos=True),
    OpCase(
        "sinc",
        Fn(torch.sinc),
        (torch.tensor([[0.0, 0.5, -1.5], [2.25, -0.0, 1e-3]]),),
        covers=("aten::sinc",),
        khronos=True,
    ),
    OpCase("square", Fn(torch.square), (r(3, 4),), covers=("aten::square",), khronos=True),
    OpCase(
        "true-divide",
        Fn(torch.true_divide),
        (r(3, 4), within(0.5, 2.0, 3, 4)),
        covers=("aten::true_divide",),
        khronos=True,
    ),
    OpCase(
        "true-divide-int",
        Fn(lambda a: torch.true_divide(a, 4)),
        (ints(3, 4),),
        covers=("aten::true_divide",),
        khronos=True,
    ),
    # fmin, fmax
    OpCase("fmin", Fn(torch.fmin), (r(3, 4), r(3, 4)), covers=("aten::fmin",), khronos=True),
    OpCase("fmax", Fn(torch.fmax), (r(3, 4), r(1, 4)), covers=("aten::fmax",), khronos=True),
    # one-sided clamps
    OpCase("clamp-min", Fn(lambda x: torch.clamp_min(x, 0.1)), (r(3, 4),), covers=("aten::clamp_min",), khronos=True),
    OpCase("clamp-max", Fn(lambda x: torch.clamp_max(x, -0.2)), (r(3, 4),), covers=("aten::clamp_max",), khronos=True),
    OpCase(
        "clamp-min-tensor",
        Fn(lambda x, lo: torch.clamp_min(x, lo)),
        (r(3, 4), r(4)),
        covers=("aten::clamp_min",),
        khronos=True,
    ),
    OpCase("clip", Fn(lambda x: torch.clip(x, -0.5, 0.25)), (r(3, 4),), covers=("aten::clip",), khronos=True),
    OpCase(
        "clamp-min-int", Fn(lambda x: torch.clamp_min(x, 2)), (ints(3, 4),), covers=("aten::clamp_min",), khronos=False
    ),
    OpCase(
        "normalize",
        Fn(lambda x: F.normalize(x, dim=-1)),
        (r(3, 4),),
        covers=("aten::clamp_min", "aten::div"),
        khronos=True,
    ),
    # shifts
    OpCase("lshift-scalar", Fn(lambda x: x << 2), (ints(3, 4),), covers=("aten::__lshift__",), khronos=False),
    OpCase(
        "rshift-scalar-negative",
        Fn(lambda x: x >> 1),
        (ints(3, 4, low=-40, high=40),),
        covers=("aten::__rshift__",),
        khronos=False,
    ),
    OpCase(
        "shift-tensor",
        Fn(torch.bitwise_left_shift),
        (ints(3, 4), ints(3, 4, low=0, high=5)),
        covers=("aten::bitwise_left_shift",),
        khronos=False,
    ),
    OpCase(
        "rshift-tensor-i32",
        Fn(torch.bitwise_right_shift),
        (ints(3, 4).int() * 16, ints(1, 4, low=0, high=4).int()),
        covers=("aten::bitwise_right_shift",),
        khronos=False,
    ),
    # tests of values
    OpCase(
        "isfinite-of-division",
        Fn(lambda x: torch.isfinite(x / torch.relu(x))),
        (r(3, 4),),
        covers=("aten::div", "aten::isfinite", "aten::relu"),
        khronos=True,
    ),
    OpCase(
        "isposinf-isneginf-signed-zeros",
        Fn(lambda x: torch.isposinf(1 / x) | torch.isneginf(1 / x)),
        (SIGNED_ZEROS,),
        covers=("aten::__or__", "aten::isneginf", "aten::isposinf", "aten::mul", "aten::reciprocal"),
        khronos=True,
    ),
    OpCase("isfinite-int", Fn(lambda x: torch.isfinite(x)), (ints(3, 4),), covers=("aten::isfinite",), khronos=True),
    # other kinds and overloads of the core ATen set
    OpCase("alias", Fn(lambda x: aten.alias(x) + 1), (r(2, 3),), covers=("aten::add", "aten::alias"), khronos=True),
    OpCase("detach", Fn(lambda x: x.detach() * 2), (r(2, 3),), covers=("aten::detach", "aten::mul"), khronos=True),
    OpCase("ge", Fn(torch.ge), (r(2, 3), r(2, 3)), covers=("aten::ge",), khronos=True),
    OpCase(
        "logical",
        Fn(lambda a, b: torch.logical_not(torch.logical_or(torch.logical_and(a > 0, b > 0), a > 1))),
        (r(2, 3), r(2, 3)),
        covers=("aten::gt", "aten::logical_and", "aten::logical_not", "aten::logical_or"),
        khronos=True,
    ),
    OpCase(
        "add-scalar", Fn(lambda x: aten.add.Scalar(x, 1.5, alpha=2)), (r(2, 3),), covers=("aten::add",), khronos=True
    ),
    OpCase(
        "sub-mul-div-scalar",
        Fn(lambda x: aten.div.Scalar(aten.mul.Scalar(aten.sub.Scalar(x, 0.5), 3), 4)),
        (r(2, 3),),
        covers=("aten::div", "aten::mul", "aten::sub"),
        khronos=True,
    ),
    OpCase(
        "div-scalar-mode",
        Fn(lambda x: aten.div.Scalar_mode(x, 0.75, rounding_mode="floor")),
        (r(2, 3) * 3,),
        covers=("aten::div",),
        khronos=True,
    ),
    OpCase(
        "compare-tensors",
        Fn(lambda a, b: aten.eq.Tensor(a, b) | aten.ne.Tensor(a, a) | aten.lt.Tensor(a, b) & aten.le.Tensor(b, a)),
        (ints(3, 4, low=0, high=3).float(), ints(3, 4, low=0, high=3).float()),
        covers=("aten::__and__", "aten::__or__", "aten::eq", "aten::le", "aten::lt", "aten::ne"),
        khronos=True,
    ),
    OpCase("ge-scalar", Fn(lambda x: aten.ge.Scalar(x, 0.25)), (r(2, 3),), covers=("aten::ge",), khronos=True),
    OpCase(
        "pow-tensors",
        Fn(lambda a, b: aten.pow.Tensor_Tensor(a, b)),
        (within(0.5, 2.0, 2, 3), r(2, 3)),
        covers=("aten::pow",),
        khronos=True,
    ),
    # mixed float and integer operands: torch computes the power in the promoted (float) dtype
    OpCase(
        "pow-float-base-int-exponents",
        Fn(lambda e: torch.pow(torch.full((), 0.25), e)),  # ALiBi's slopes, as BLOOM computes them
        (torch.arange(1, 5, dtype=torch.int32),),
        covers=("aten::pow",),
        khronos=True,
    ),
    OpCase(
        "pow-float-int-tensors",
        Fn(lambda a, b: aten.pow.Tensor_Tensor(a, b) + aten.pow.Tensor_Tensor(b, a)),
        (within(0.5, 2.0, 2, 3), ints(2, 3, low=0, high=4)),
        covers=("aten::add", "aten::pow"),
        khronos=True,
    ),
    OpCase(
        "pow-int-base-float-exponents",
        Fn(lambda a: torch.pow(a, 0.5) + a**2.0 + 2.0**a),
        (ints(3, 4, low=0, high=6),),
        covers=("aten::add", "aten::pow"),
        khronos=True,
    ),
    OpCase(
        "pow-half-base-float-tensor-exponent",
        Fn(lambda a, b: torch.pow(a, b) + a**1.5),
        (within(0.5, 2.0, 2, 3).half(), torch.tensor(1.25)),
        covers=("aten::add", "aten::pow"),
        khronos=False,
    ),
    # a product of one integer wire by itself: tract's square operator has no integer kernels
    OpCase(
        "square-int",
        Fn(lambda a, b: (a * a, b.pow(2), b * b + b)),
        (ints(3, 4), ints(3, 4).int()),
        covers=("aten::add", "aten::mul", "aten::pow"),
        khronos=False,
    ),
    OpCase(
        "bitwise-overloads",
        Fn(lambda a, b: aten.bitwise_xor.Scalar(aten.bitwise_or.Tensor(aten.bitwise_and.Tensor(a, b), b), 5)),
        (ints(3, 4, high=64), ints(3, 4, high=64)),
        covers=("aten::bitwise_and", "aten::bitwise_or", "aten::bitwise_xor"),
        khronos=False,
    ),
    OpCase(
        "clamp-tensors",
        Fn(lambda x, lo, hi: aten.clamp.Tensor(x, lo, hi)),
        (r(3, 4), r(4) - 1, r(3, 1) + 1),
        covers=("aten::clamp",),
        khronos=True,
    ),
    # functions of two and three operands, tests of values, frac
    OpCase("atan2", Fn(torch.atan2), (r(4, 5), r(4, 5)), covers=("aten::atan2",), khronos=True),
    OpCase(
        "atan2-axes",
        Fn(torch.atan2),
        (torch.tensor([0.0, 1.0, -1.0, 0.0, 2.0, -2.0]), torch.tensor([1.0, 0.0, 0.0, -1.0, -3.0, -3.0])),
        covers=("aten::atan2",),
        khronos=True,
    ),
    OpCase("hypot", Fn(torch.hypot), (r(3, 4), r(4)), covers=("aten::hypot",), khronos=True),
    OpCase(
        "lerp-scalar", Fn(lambda a, b: torch.lerp(a, b, 0.3)), (r(3, 4), r(3, 4)), covers=("aten::lerp",), khronos=True
    ),
    OpCase(
        "lerp-scalar-high",
        Fn(lambda a, b: torch.lerp(a, b, 0.8)),
        (r(3, 4), r(3, 4)),
        covers=("aten::lerp",),
        khronos=True,
    ),
    OpCase("lerp-tensor", Fn(torch.lerp), (r(3, 4), r(3, 4), torch.rand(3, 4)), covers=("aten::lerp",), khronos=True),
    OpCase(
        "addcmul",
        Fn(lambda a, b, c: torch.addcmul(a, b, c, value=0.5)),
        (r(3, 4), r(3, 4), r(4)),
        covers=("aten::addcmul",),
        khronos=True,
    ),
    OpCase(
        "addcdiv",
        Fn(lambda a, b, c: torch.addcdiv(a, b, c, value=-2)),
        (r(3, 4), r(3, 4), r(3, 4).abs() + 0.5),
        covers=("aten::addcdiv",),
        khronos=True,
    ),
    OpCase(
        "addcmul-int",
        Fn(lambda a, b, c: torch.addcmul(a, b, c, value=3)),
        tuple(torch.randint(-4, 5, (3, 4)) for _ in range(3)),
        covers=("aten::addcmul",),
        khronos=False,
    ),
    OpCase(
        "isnan-isinf",
        Fn(lambda x: torch.isnan(x) | torch.isinf(x)),
        (torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -2.0]),),
        covers=("aten::__or__", "aten::isinf", "aten::isnan"),
        khronos=True,
    ),
    OpCase(
        "isposinf-isneginf",
        Fn(lambda x: torch.isposinf(x) & ~torch.isneginf(x)),
        (torch.tensor([1.0, float("inf"), -float("inf"), 3.4e38]),),
        covers=("aten::__and__", "aten::bitwise_not", "aten::isneginf", "aten::isposinf"),
        khronos=True,
    ),
    OpCase(
        "isfinite",
        Fn(torch.isfinite),
        (torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -3.4e38]),),
        covers=("aten::isfinite",),
        khronos=True,
    ),
    OpCase(
        "nan-to-num",
        Fn(torch.nan_to_num),
        (torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -2.0]),),
        covers=("aten::nan_to_num",),
        khronos=True,
    ),
    OpCase(
        "nan-to-num-values",
        Fn(lambda x: torch.nan_to_num(x, nan=-1.0, posinf=9.0, neginf=-9.0)),
        (torch.tensor([[1.0, float("nan")], [float("inf"), -float("inf")]]),),
        covers=("aten::nan_to_num",),
        khronos=True,
    ),
    OpCase("frac", Fn(torch.frac), (r(3, 4) * 4,), covers=("aten::frac",), khronos=True),
    # torch.where with scalars
    OpCase(
        "where-scalars",
        Fn(lambda x: torch.where(x > 0, 1.0, -1.0)),
        (r(3, 4),),
        covers=("aten::gt", "aten::where"),
        khronos=True,
    ),
    OpCase(
        "where-scalar-other",
        Fn(lambda x: torch.where(x > 0, x, 0.5)),
        (r(3, 4),),
        covers=("aten::gt", "aten::where"),
        khronos=True,
    ),
    OpCase(
        "where-scalar-self",
        Fn(lambda x: torch.where(x > 0, 2.0, x)),
        (r(3, 4),),
        covers=("aten::gt", "aten::where"),
        khronos=True,
    ),
    # remainder, fmod, rounding division
    OpCase("remainder-tensor", Fn(torch.remainder), (DIVIDEND, DIVISOR), covers=("aten::remainder",), khronos=True),
    OpCase(
        "remainder-scalar-negative",
        Fn(lambda a: torch.remainder(a, -1.5)),
        (DIVIDEND,),
        covers=("aten::remainder",),
        khronos=True,
    ),
    OpCase(
        "remainder-scalar-self",
        Fn(lambda b: torch.remainder(3.0, b)),
        (DIVISOR,),
        covers=("aten::remainder",),
        khronos=True,
    ),
    OpCase("fmod-tensor", Fn(torch.fmod), (DIVIDEND, DIVISOR), covers=("aten::fmod",), khronos=True),
    OpCase("fmod-scalar-negative", Fn(lambda a: torch.fmod(a, -2)), (DIVIDEND,), covers=("aten::fmod",), khronos=True),
    OpCase(
        "remainder-int",
        Fn(lambda a, b: a % b),
        (ints(3, 5), nonzero_ints(3, 5)),
        covers=("aten::remainder",),
        khronos=False,
    ),
    OpCase("fmod-int-scalar", Fn(lambda a: torch.fmod(a, -4)), (ints(3, 5),), covers=("aten::fmod",), khronos=False),
    OpCase(
        "div-trunc",
        Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")),
        (DIVIDEND, DIVISOR),
        covers=("aten::div",),
        khronos=True,
    ),
    OpCase(
        "div-floor",
        Fn(lambda a, b: torch.div(a, b, rounding_mode="floor")),
        (DIVIDEND, DIVISOR),
        covers=("aten::div",),
        khronos=True,
    ),
    OpCase(
        "floordiv-scalar-negative", Fn(lambda a: a // -2.5), (DIVIDEND,), covers=("aten::floor_divide",), khronos=True
    ),
    OpCase(
        "div-floor-int",
        Fn(lambda a, b: torch.div(a, b, rounding_mode="floor")),
        (ints(3, 5), nonzero_ints(3, 5)),
        covers=("aten::div",),
        khronos=False,
    ),
    OpCase(
        "div-trunc-int",
        Fn(lambda a, b: torch.div(a, b, rounding_mode="trunc")),
        (ints(3, 5), nonzero_ints(3, 5)),
        covers=("aten::div",),
        khronos=False,
    ),
    OpCase(
        "floordiv-int-scalar",
        Fn(lambda a: a // -3 + a // 4),
        (ints(3, 5),),
        covers=("aten::add", "aten::floor_divide"),
        khronos=False,
    ),
    OpCase(
        "int-arith-scalars",
        Fn(lambda a: (a * 3 - 2) + torch.sub(a, a, alpha=2)),
        (ints(3, 5),),
        covers=("aten::add", "aten::mul", "aten::sub"),
        khronos=False,
    ),
    # bitwise and logical
    OpCase(
        "bitwise-int",
        Fn(lambda a, b: (a & b) | (a ^ b) | ~a),
        (ints(3, 4, high=64), ints(3, 4, high=64)),
        covers=("aten::__and__", "aten::__or__", "aten::__xor__", "aten::bitwise_not"),
        khronos=False,
    ),
    OpCase(
        "bitwise-int-scalar",
        Fn(lambda a: torch.bitwise_and(a, 6) + torch.bitwise_or(a, 3) + (a ^ 5)),
        (ints(3, 4),),
        covers=("aten::__xor__", "aten::add", "aten::bitwise_and", "aten::bitwise_or"),
        khronos=False,
    ),
    OpCase(
        "bitwise-int32",
        Fn(lambda a, b: torch.bitwise_xor(a, b) & ~b),
        (ints(2, 4).int(), ints(2, 4).int()),
        covers=("aten::__and__", "aten::bitwise_not", "aten::bitwise_xor"),
        khronos=False,
    ),
    OpCase(
        "xor-bool",
        Fn(lambda a, b: (a > 0) ^ (b > 0)),
        (r(3, 4), r(3, 4)),
        covers=("aten::__xor__", "aten::gt"),
        khronos=True,
    ),
    OpCase(
        "logical-xor-float",
        Fn(torch.logical_xor),
        (r(3, 4).relu(), r(3, 4).relu()),
        covers=("aten::logical_xor",),
        khronos=True,
    ),
    OpCase(
        "logical-xor-int",
        Fn(torch.logical_xor),
        (ints(3, 4, low=0, high=2), ints(3, 4, low=0, high=2)),
        covers=("aten::logical_xor",),
        khronos=False,
    ),
    # alpha on integers
    OpCase(
        "sub-alpha-int",
        Fn(lambda a, b: torch.sub(a, b, alpha=3) + torch.add(a, 2, alpha=-2)),
        (ints(2, 3), ints(2, 3)),
        covers=("aten::add", "aten::sub"),
        khronos=False,
    ),
]


class WithBuffer(nn.Module):
    """A constant of ``dtype`` (a buffer) added to the input in i64."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer("table", (torch.arange(6) * 9000).reshape(2, 3).to(dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table.to(torch.int64) + x


WIDE_UNSIGNED = {"u16": torch.uint16, "u32": torch.uint32, "u64": torch.uint64}
"""torch's unsigned integers wider than a byte (torch only casts, multiplies, compares and moves them)."""

# tract computes them: casts from and to them, and model inputs, outputs and weights of them (drawn
# aside: the other tables' inputs stay those of the global seed)
with torch.random.fork_rng(devices=[]):
    CASES += [
        case
        for name, dtype in WIDE_UNSIGNED.items()
        for case in (
            OpCase(
                f"cast-f32-{name}-i64-f32",
                Fn(
                    lambda x, dtype=dtype: (x * 1000).abs().to(dtype).to(torch.int64) + (x * 50).abs().to(dtype).float()
                ),
                (r(2, 5),),
                covers=("aten::_to_copy",),
                khronos=False,
            ),
            OpCase(
                f"output-{name}",
                Fn(lambda x, dtype=dtype: (x * 1000).abs().to(dtype)),
                (r(2, 5),),
                covers=("aten::_to_copy",),
                khronos=False,
            ),
            OpCase(
                f"input-{name}",
                Fn(lambda x: x.float() * 0.5),
                (ints(2, 5, low=0, high=60000).to(dtype),),
                covers=("aten::_to_copy", "aten::mul"),
                khronos=False,
            ),
            # tract's square, which x * x becomes, has no kernels for them
            OpCase(
                f"square-{name}",
                Fn(lambda x: x * x),
                (ints(2, 5, low=0, high=60000).to(dtype),),
                covers=("aten::mul",),
                khronos=False,
            ),
            OpCase(f"weight-{name}", WithBuffer(dtype), (ints(2, 3),), covers=("aten::_to_copy",), khronos=False),
        )
    ]
    CASES.append(
        # tract's square saturates u8 where PyTorch wraps around
        OpCase(
            "square-u8-wraps",
            Fn(lambda x: x * x),
            (ints(2, 5, low=0, high=256).to(torch.uint8),),
            covers=("aten::mul",),
            khronos=False,
        )
    )


@pytest.mark.parametrize(("target", "case"), op_params(CASES))
def test_op_table(tmp_path: Path, target: str, case: OpCase) -> None:
    """Each case exported and checked in tract (Khronos cases also by the Khronos parser and interpreter),
    translating the operators it covers."""
    export_and_check(tmp_path, target, case)


# Kinds that other torch releases leave in the graph and the pinned one turns into others (views,
# copies): the captured graph is rewritten back to them (same values), then exported and checked.
OLDER_FORMS: list[OlderForm] = [
    OlderForm(
        "contiguous",
        Fn(lambda x: x.t().contiguous() * 2),
        (r(2, 3),),
        covers=("aten::contiguous", "aten::mul"),
        khronos=True,
        rewrite=retarget(aten.clone.default, aten.contiguous.default, lambda n: n.args[:1]),
        form="aten::contiguous",
    ),
    OlderForm(
        "dropout",
        Fn(lambda x: F.dropout(x, 0.5, training=False) * 2),
        (r(2, 3),),
        covers=("aten::dropout", "aten::mul"),
        khronos=True,
        rewrite=retarget(aten.clone.default, aten.dropout.default, lambda n: (n.args[0], 0.5, False)),
        form="aten::dropout",
    ),
    OlderForm(
        "to",
        Fn(lambda x: (x * 3).to(torch.int32)),
        (r(2, 3),),
        covers=("aten::mul", "aten::to"),
        khronos=False,
        rewrite=retarget(aten._to_copy.default, aten.to.dtype, lambda n: (n.args[0], torch.int32)),
        form="aten::to",
    ),
]


@pytest.mark.parametrize(("target", "case"), op_params(OLDER_FORMS))
def test_older_torch_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, case: OlderForm) -> None:
    check_older_form(tmp_path, monkeypatch, target, case)


@pytest.mark.parametrize(
    "fn",
    [lambda a, b: a + b * 2, lambda a, b: torch.minimum(a, b), lambda a, b: (a < b).float()],
    ids=["add-mul", "minimum", "lt"],
)
def test_khronos_refuses_integer_arithmetic(tmp_path, fn):
    """The specification's arithmetic and comparisons take float tensors: its parser rejects an
    integer ``add``, so the export says so instead of writing it; tract takes it."""
    from torch_to_nnef.errors import TranslationError

    args = (torch.randint(-5, 5, (2, 3)), torch.randint(-5, 5, (2, 3)))
    with pytest.raises(TranslationError, match="i64 tensors: the NNEF specification's arithmetic"):
        export_model_to_nnef(Fn(fn), args, tmp_path / "k.nnef", KhronosNNEF())
    assert not (tmp_path / "k.nnef").exists()
    export_model_to_nnef(Fn(fn), args, tmp_path / "t.nnef", TractNNEF(check_io=True))


def test_integer_square_is_refused(tmp_path: Path):
    with pytest.raises(TranslationError, match="square of i64"):
        export_model_to_nnef(Fn(torch.square), (ints(2, 3),), tmp_path / "m.nnef", TractNNEF())


@pytest.mark.parametrize("target", ["tract", "khronos"])
@pytest.mark.parametrize("p,dim", [(2.0, -1), (1.0, 0)], ids=["p2-last", "p1-first"])
def test_normalize(tmp_path: Path, target: str, p: float, dim: int) -> None:
    """F.normalize runs as linalg_vector_norm, clamp_min and div; clamp_min belongs to the core ATen table."""
    if "aten::clamp_min" not in supported_kinds():
        pytest.skip("aten::clamp_min is not registered in this build")
    export_checked(tmp_path, target, Fn(lambda x: F.normalize(x, p=p, dim=dim)), (r(3, 4),))


def test_where_integer_scalars(tmp_path: Path) -> None:
    export_checked(tmp_path, "tract", Fn(lambda x: torch.where(x > 0, 3, -2)), (r(3, 4),))


def test_where_scalar_in_a_half_model(tmp_path: Path) -> None:
    """The scalar becomes an f16 constant (a bare literal is f32 to tract, which refuses the mix)."""
    module = Fn(lambda x: torch.where(x > 0, x, -65504.0) + torch.where(x < 1, 0.5, x))
    export_checked(tmp_path, "tract", module, (r(3, 4).half(),))


@pytest.mark.parametrize(
    ("name", "module", "inputs", "match"),
    [
        ("shift", Fn(lambda x: x << 1), (ints(2, 3),), "bit shifts"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_khronos_refuses_tract_only_core_ops(
    tmp_path: Path, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], match: str
):
    with pytest.raises(TranslationError, match=match):
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF())


@pytest.mark.parametrize(
    ("name", "module", "inputs"),
    [
        ("bitwise", Fn(lambda a, b: a & b), (ints(3, 4), ints(3, 4))),
        ("remainder-int", Fn(lambda a: a % 3), (ints(3, 4),)),
    ],
)
def test_khronos_refuses_tract_only_ops(tmp_path: Path, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...]):
    """What the NNEF specification cannot express is refused by name, pointing at TractNNEF."""
    with pytest.raises(TranslationError, match="TractNNEF") as err:
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF())
    assert "aten::" in str(err.value)
    assert not (tmp_path / "m.nnef").exists()


@pytest.mark.parametrize("dtype", WIDE_UNSIGNED.values(), ids=WIDE_UNSIGNED.keys())
def test_wide_unsigned_jit(tmp_path: Path, dtype: torch.dtype) -> None:
    """The jit front-end carries them too: a weight, a cast to them in the model and an output of them."""

    class Model(WithBuffer):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
            return (x * 1000).abs().to(dtype), self.table.to(torch.float32) * x

    export_model_to_nnef(Model(dtype), (r(2, 3),), tmp_path / "m.nnef", TractNNEF(check_io=True), frontend="jit")


def test_wide_unsigned_dynamic_input(tmp_path: Path) -> None:
    """A u16 input with a dynamic axis: the check draws the second size's input in the first one's range."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}})
    inputs = (ints(2, 3, low=0, high=60000).to(torch.uint16),)
    path = export_model_to_nnef(Fn1(lambda x: x.float() * 0.5), inputs, tmp_path / "m.nnef", target, input_names=["x"])
    assert "datum_type = 'u16'" in (path / "graph.nnef").read_text()


@pytest.mark.parametrize("frontend", ["export", "jit"])
@pytest.mark.parametrize(
    ("name", "module", "inputs", "where"),
    [
        (
            "cast",
            Fn(lambda x: (x * 100).abs().to(torch.uint16).to(torch.int64)),
            (torch.ones(2, 3),),
            "aten::_to_copy at",
        ),
        ("input", Fn(lambda x: x.float()), (torch.arange(3).to(torch.uint32),), "input input_0"),
        ("weight", WithBuffer(torch.uint64), (torch.arange(6).reshape(2, 3),), "weight table"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_khronos_refuses_wide_unsigned(
    tmp_path: Path, frontend: str, name: str, module: nn.Module, inputs: tuple[torch.Tensor, ...], where: str
) -> None:
    """The specification's tools read no u16, u32 or u64: the error names the tensor, its dtype and TractNNEF."""
    dtype = {"cast": "u16", "input": "u32", "weight": "u64"}[name]
    with pytest.raises(TranslationError, match=f"{where}.*: {dtype} tensors cannot be exported for KhronosNNEF") as err:
        export_model_to_nnef(module, inputs, tmp_path / "m.nnef", KhronosNNEF(), frontend=frontend)
    assert "TractNNEF writes them" in str(err.value)
    assert not (tmp_path / "m.nnef").exists()


DYNAMIC: list[tuple[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = [
    ("isinf-lerp", lambda x, y: torch.lerp(x, y, 0.25) * torch.isinf(x), (r(3, 4), r(3, 4))),
]


@pytest.mark.parametrize("fn,inputs", [pytest.param(f, i, id=n) for n, f, i in DYNAMIC])
def test_dynamic_batch(
    tmp_path: Path, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], inputs: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """The first axis of both inputs dynamic: the graph is written with the symbol and checked by tract."""
    target = TractNNEF(check_io=True, dynamic_axes={"x": {0: "B"}, "y": {0: "B"}})
    path = export_model_to_nnef(Named(fn), inputs, tmp_path / "m.nnef", target, input_names=["x", "y"])
    assert "tract_symbol B" in (path / "graph.nnef").read_text()
