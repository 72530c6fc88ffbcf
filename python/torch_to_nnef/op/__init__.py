"""Stage 3 of the pipeline: the op registry and the translations registered in it, one ATen
operator (with its overload) to one function that writes NNEF through :mod:`torch_to_nnef.nnef.builder`.

The translation modules follow what the ops do: :mod:`~torch_to_nnef.op.elementwise`,
:mod:`~torch_to_nnef.op.reductions`, :mod:`~torch_to_nnef.op.shape`, :mod:`~torch_to_nnef.op.indexing`,
:mod:`~torch_to_nnef.op.creation`, :mod:`~torch_to_nnef.op.linalg`, :mod:`~torch_to_nnef.op.signal`
(FFTs, STFT, windows and complex tensors), :mod:`~torch_to_nnef.op.quantized`,
:mod:`~torch_to_nnef.op.recurrent` and :mod:`torch_to_nnef.op.nn` (activations, convolutions,
normalisations, pooling, resizing, attention, losses). What they share is in
:mod:`~torch_to_nnef.op.common`.
"""

from torch_to_nnef.op import (  # noqa: F401  (registration side effect)
    creation,
    elementwise,
    indexing,
    linalg,
    quantized,
    recurrent,
    reductions,
    shape,
    signal,
)
from torch_to_nnef.op.nn import (  # noqa: F401  (registration side effect)
    activation,
    attention,
    conv,
    loss,
    norm,
    pool,
    resize,
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
