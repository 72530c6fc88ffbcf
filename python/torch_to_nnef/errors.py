"""Exceptions raised by torch_to_nnef.

Every exception derives from :class:`T2NError` and from the builtin exception that matches the
problem, so ``except ValueError`` keeps working for callers that do not know this package.
"""

from __future__ import annotations


class T2NError(Exception):
    """Root of every error raised by torch_to_nnef."""


class DTypeError(T2NError, TypeError):
    """A tensor dtype that NNEF cannot hold (bf16, complex, ...) or an operation cannot take."""


class DeviceError(T2NError, ValueError):
    """A tensor on a device whose data cannot be read (the meta device)."""


class TensorTooLargeError(T2NError, ValueError):
    """A tensor that does not fit the .dat format (payload of 4 GiB or more, rank above 8)."""


class ShapeError(T2NError, ValueError):
    """A shape an operation cannot take (e.g. Q4_0 needs a trailing size multiple of 32)."""


class FormatError(T2NError, ValueError):
    """A malformed, truncated or inconsistent file."""


class UnsafePathError(T2NError, ValueError):
    """A tensor label or archive member whose path would escape its folder."""


class UnsafeFileError(T2NError, ValueError):
    """A file whose loading would run code it carries (a pickle of arbitrary objects): refused unread."""


class NameClashError(T2NError, ValueError):
    """Two tensors, inputs or outputs that would get the same name."""


class OutputExistsError(T2NError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class MissingFolderError(T2NError, FileNotFoundError):
    """The folder that should hold an output does not exist."""


class NNEFIOError(T2NError, OSError):
    """An operating-system error while reading or writing a file."""


class InvalidArgumentError(T2NError, ValueError):
    """An argument with a wrong value (unknown tolerance, gzip level out of range, ...)."""


class QTensorError(T2NError, ValueError):
    """A QTensor that cannot be used as asked (values changed in place, a tract without Q4_0, ...)."""


class TractError(T2NError, RuntimeError):
    """tract refused to load or run a model; the message carries tract's own explanation."""


class CheckpointMismatchError(T2NError, ValueError):
    """A checkpoint that does not hold a model's weights under its names and shapes (the message
    names them).
    """


class IOMismatchError(T2NError, AssertionError):
    """Outputs computed by tract differ from the expected ones beyond the tolerance."""


class UnsupportedOpsError(T2NError, NotImplementedError):
    """Ops the exporter cannot translate; the message lists every one of them at once."""


class TranslationError(T2NError, ValueError):
    """An op whose arguments this exporter cannot express (the message says which and why)."""
