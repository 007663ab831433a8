"""The project's error types: every failure a user can cause or meet is one of these.

The CLI catches `NstVideoError`, prints its message as one line and exits non-zero.
"""


class NstVideoError(Exception):
    """Base class: a problem the user can act on; the message says what and what to do."""

    exit_code = 1


class InputError(NstVideoError):
    """An input (content, style, init image, video, option value) is missing or unusable."""

    exit_code = 2


class ModelError(NstVideoError):
    """VGG-19 weights or the compute device cannot be had."""

    exit_code = 3


class OutputError(NstVideoError):
    """An output cannot be written (exists, not writable, encoder failure)."""

    exit_code = 4


class RenderError(NstVideoError):
    """A render failed on the way (a loss that became NaN, the device ran out of memory, a
    library failed on a frame); the message says what to change."""

    exit_code = 5
