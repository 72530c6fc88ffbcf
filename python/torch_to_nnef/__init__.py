"""torch_to_nnef: export PyTorch models and tensors to NNEF, for tract and the Khronos specification."""

from typing import TYPE_CHECKING, Any

from torch_to_nnef._rust import Q40Tensor
from torch_to_nnef.check.tract import TRACT_VERSION, TractModel, check_outputs, compare_outputs
from torch_to_nnef.errors import T2NError
from torch_to_nnef.io.archive import list_archive, write_nnef_archive
from torch_to_nnef.io.dat import read_dat, write_dat, write_dats
from torch_to_nnef.io.q4_0 import quantize_q4_0

if TYPE_CHECKING:
    from torch_to_nnef.check.targets import KhronosNNEF, TractNNEF
    from torch_to_nnef.export import export_model_to_nnef
    from torch_to_nnef.io.compress import compress_model, load_compression_registry
    from torch_to_nnef.io.qtensor import QTensor, QTensorTractScaleOnly, fp_to_tract_q4_0_with_min_max_calibration
    from torch_to_nnef.io.tensor_export import export_tensors_from_disk_to_nnef, export_tensors_to_nnef
    from torch_to_nnef.peft import export_peft_to_nnef

__version__ = "0.1.0"

# The model exporter needs torch; it is imported on first use so that `import torch_to_nnef`
# stays cheap and free of side effects.
_LAZY = {
    "export_model_to_nnef": "torch_to_nnef.export",
    "TractNNEF": "torch_to_nnef.check.targets",
    "KhronosNNEF": "torch_to_nnef.check.targets",
    "QTensor": "torch_to_nnef.io.qtensor",
    "QTensorTractScaleOnly": "torch_to_nnef.io.qtensor",
    "fp_to_tract_q4_0_with_min_max_calibration": "torch_to_nnef.io.qtensor",
    "compress_model": "torch_to_nnef.io.compress",
    "load_compression_registry": "torch_to_nnef.io.compress",
    "export_tensors_to_nnef": "torch_to_nnef.io.tensor_export",
    "export_tensors_from_disk_to_nnef": "torch_to_nnef.io.tensor_export",
    "export_peft_to_nnef": "torch_to_nnef.peft",
    "weights_on_meta": "torch_to_nnef.capture.meta",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torch_to_nnef' has no attribute {name!r}")


__all__ = [
    "TRACT_VERSION",
    "KhronosNNEF",
    "Q40Tensor",
    "QTensor",
    "QTensorTractScaleOnly",
    "T2NError",
    "TractModel",
    "TractNNEF",
    "check_outputs",
    "compare_outputs",
    "compress_model",
    "export_model_to_nnef",
    "export_peft_to_nnef",
    "export_tensors_from_disk_to_nnef",
    "export_tensors_to_nnef",
    "fp_to_tract_q4_0_with_min_max_calibration",
    "list_archive",
    "load_compression_registry",
    "quantize_q4_0",
    "read_dat",
    "weights_on_meta",
    "write_dat",
    "write_dats",
    "write_nnef_archive",
]
