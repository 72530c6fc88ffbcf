"""The op registry and the translations registered in it."""

from torch_to_nnef.op import (  # noqa: F401  (registration side effect)
    aten_core,
    core,
    extra_ops,
    nn_ops,
    quantized,
    recurrent,
    signal,
    tensor_ops,
)
from torch_to_nnef.op.registry import Context, lookup, register, supported_kinds

__all__ = ["Context", "lookup", "register", "supported_kinds"]
