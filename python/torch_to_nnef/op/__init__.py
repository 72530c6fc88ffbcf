"""Stage 3 of the pipeline: the op registry and the translations registered in it, one ATen
operator (with its overload) to one function that writes NNEF through :mod:`torch_to_nnef.nnef.builder`.
"""

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
from torch_to_nnef.op.registry import (
    Context,
    Registration,
    lookup,
    register,
    registration_problems,
    registrations,
    resolve,
    supported_kinds,
    translate_node,
)

__all__ = [
    "Context",
    "Registration",
    "lookup",
    "register",
    "registration_problems",
    "registrations",
    "resolve",
    "supported_kinds",
    "translate_node",
]
