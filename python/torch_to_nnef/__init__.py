"""torch_to_nnef: export PyTorch models and tensors to NNEF, for tract and the Khronos specification."""

from torch_to_nnef._rust import Q40Tensor
from torch_to_nnef.archive import list_archive, write_nnef_archive
from torch_to_nnef.errors import T2NError
from torch_to_nnef.q4_0 import quantize_q4_0
from torch_to_nnef.tensors import read_dat, write_dat, write_dats
from torch_to_nnef.tract import TRACT_VERSION, TractModel, check_outputs, compare_outputs

__version__ = "0.1.0"

__all__ = [
    "TRACT_VERSION",
    "Q40Tensor",
    "T2NError",
    "TractModel",
    "check_outputs",
    "compare_outputs",
    "list_archive",
    "quantize_q4_0",
    "read_dat",
    "write_dat",
    "write_dats",
    "write_nnef_archive",
]
