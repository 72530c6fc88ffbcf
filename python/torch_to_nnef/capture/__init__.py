"""Stage 1 of the pipeline: a PyTorch module captured into the IR (:mod:`torch_to_nnef.ir`).

- :mod:`~torch_to_nnef.capture.torch_export`: the main front-end, ``torch.export``.
- :mod:`~torch_to_nnef.capture.jit`: ``torch.jit.trace``, for what ``torch.export`` cannot capture
  (eager-mode quantized models, scripted modules).
- :mod:`~torch_to_nnef.capture.quantized`: how the jit front-end unpacks torch's quantized ops.
- :mod:`~torch_to_nnef.capture.layer_stack`: a stack of layers that repeat (after a few different ones,
  by periods) traced in part and repeated.
"""
