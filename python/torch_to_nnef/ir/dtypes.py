"""The IR's dtypes: one table of every dtype a value may have, and the sets the stages ask about.

A dtype is named as NNEF tensor files and tract name it (``"f32"``, ``"i64"``, ``"bool"``); each entry
says how numpy and torch spell it, and what kind of number it holds. Complex dtypes exist only in the
IR: NNEF holds a complex tensor as its real and imaginary parts on a trailing axis.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    """One dtype of the IR."""

    name: str
    """As NNEF and tract name it: ``f32``, ``i64``, ``bool``."""
    numpy: str
    """numpy's name (``float32``); for a complex dtype, numpy's complex type."""
    torch: str
    """The attribute of ``torch`` (``float32``: ``torch.float32``)."""
    kind: str
    """``float``, ``signed``, ``unsigned``, ``bool`` or ``complex``."""
    bits: int


DTYPES: dict[str, DType] = {
    d.name: d
    for d in (
        DType("f16", "float16", "float16", "float", 16),
        DType("f32", "float32", "float32", "float", 32),
        DType("f64", "float64", "float64", "float", 64),
        DType("i8", "int8", "int8", "signed", 8),
        DType("i16", "int16", "int16", "signed", 16),
        DType("i32", "int32", "int32", "signed", 32),
        DType("i64", "int64", "int64", "signed", 64),
        DType("u8", "uint8", "uint8", "unsigned", 8),
        DType("u16", "uint16", "uint16", "unsigned", 16),
        DType("u32", "uint32", "uint32", "unsigned", 32),
        DType("u64", "uint64", "uint64", "unsigned", 64),
        DType("bool", "bool", "bool", "bool", 8),
        DType("c64", "complex64", "complex64", "complex", 64),
        DType("c128", "complex128", "complex128", "complex", 128),
    )
}
"""Every dtype, by name."""

FLOATS = tuple(n for n, d in DTYPES.items() if d.kind == "float")
"""``f16``, ``f32``, ``f64``."""
SIGNED_INTS = tuple(n for n, d in DTYPES.items() if d.kind == "signed")
"""``i8`` to ``i64``."""
UNSIGNED_INTS = tuple(n for n, d in DTYPES.items() if d.kind == "unsigned")
"""``u8`` to ``u64``."""
INTEGERS = ("bool", "u8", *SIGNED_INTS)
"""The integer dtypes torch computes with (and ``bool``), as translations meet them."""
COMPLEX_PARTS = {"c64": "f32", "c128": "f64"}
"""Complex dtypes and the real dtype of their parts."""
WIDE_UNSIGNED = UNSIGNED_INTS[1:]
"""``u16``, ``u32``, ``u64``: tract reads and computes them; KhronosNNEF refuses them."""
CAPTURED = (*FLOATS, *SIGNED_INTS, "u8", *WIDE_UNSIGNED, "bool", "c64", "c128")
"""The dtypes a captured model's tensors may have."""
NUMPY = {n: d.numpy for n, d in DTYPES.items() if d.kind != "complex"}
"""numpy's name of each real dtype."""
TRACT = frozenset(n for n, d in DTYPES.items() if d.kind != "complex")
"""The dtypes tract's NNEF reader declares tensors of."""


def is_float(name: str) -> bool:
    """Whether ``name`` is a floating-point dtype."""
    return name in FLOATS


def float_numpy(name: str) -> str:
    """Numpy's name of a float dtype; ``float32`` for any other (constants of an integer op's float math)."""
    return NUMPY[name] if name in FLOATS else "float32"
