"""ATen -> NNEF translations. Importing this package registers them all."""

from torch_to_nnef.op import core  # noqa: F401  (registration side effect)
from torch_to_nnef.op.registry import Context, lookup, register, supported_kinds

__all__ = ["Context", "lookup", "register", "supported_kinds"]
