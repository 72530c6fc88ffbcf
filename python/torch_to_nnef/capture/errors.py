"""The errors of the capture stage."""

from torch_to_nnef.errors import T2NError


class CaptureError(T2NError, ValueError):
    """torch.export could not capture the model; the message says where and what to change."""


class JitCaptureError(CaptureError):
    """torch.jit.trace could not capture the model, or traced something this front-end cannot convert."""
