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


def reason(e: BaseException) -> str:
    """One line for a failure: our own errors say what to do; others name their type."""
    if isinstance(e, NstVideoError):
        return str(e)
    text = " ".join(str(e).split())[:200] or "no message"
    return f"{type(e).__name__}: {text}"
