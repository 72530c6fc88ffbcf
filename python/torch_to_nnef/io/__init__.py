"""Stage 5 of the pipeline: bytes on disk.

- :mod:`~torch_to_nnef.io.dat`: NNEF tensor files (``.dat``), written by the Rust core.
- :mod:`~torch_to_nnef.io.archive`: model archives (folder, ``.tar``, ``.tgz``).
- :mod:`~torch_to_nnef.io.q4_0`: Q4_0 block quantization.
- :mod:`~torch_to_nnef.io.qtensor`, :mod:`~torch_to_nnef.io.compress`: quantized weights that torch
  still computes with, and the registry of compressors that makes them.
- :mod:`~torch_to_nnef.io.tensor_export`: tensors alone, from memory or from checkpoint files.
"""
