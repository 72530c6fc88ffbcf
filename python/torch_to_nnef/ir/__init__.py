"""Stage 2 of the pipeline: the exporter's own graph, independent of how the model was captured.

The capture front-ends (:mod:`torch_to_nnef.capture`) produce a :class:`Graph`; the translations
(:mod:`torch_to_nnef.op`) read it and write NNEF through :mod:`torch_to_nnef.nnef`.
"""

from torch_to_nnef.ir.graph import (
    COMPLEX_DTYPES,
    Dim,
    Graph,
    Node,
    Parameter,
    QuantizedValue,
    SizeStep,
    SymInt,
    Value,
    values_in,
)

__all__ = [
    "COMPLEX_DTYPES",
    "Dim",
    "Graph",
    "Node",
    "Parameter",
    "QuantizedValue",
    "SizeStep",
    "SymInt",
    "Value",
    "values_in",
]
