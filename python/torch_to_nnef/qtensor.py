"""The documented import path of :mod:`torch_to_nnef.io.qtensor` (Q4_0 ``QTensor`` s)."""

from torch_to_nnef.io.qtensor import (
    Q4_0_CONV_TRACT,
    Q4_0_GGML_TRACT,
    Q4_0_TRACT,
    QTensor,
    QTensorError,
    QTensorTractScaleOnly,
    fp_to_tract_q4_0_with_min_max_calibration,
    q4_0_weights_for_export,
)

__all__ = [
    "Q4_0_CONV_TRACT",
    "Q4_0_GGML_TRACT",
    "Q4_0_TRACT",
    "QTensor",
    "QTensorError",
    "QTensorTractScaleOnly",
    "fp_to_tract_q4_0_with_min_max_calibration",
    "q4_0_weights_for_export",
]
