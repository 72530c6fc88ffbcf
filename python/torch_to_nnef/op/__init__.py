"""The op registry and the translations registered in it."""

from torch_to_nnef.op import aten_core, core, nn_ops, tensor_ops  # noqa: F401  (registration side effect)
from torch_to_nnef.op.registry import Context, lookup, register, supported_kinds

__all__ = ["Context", "lookup", "register", "supported_kinds"]
