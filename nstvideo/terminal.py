"""What the command line does around a run and a library does not: SIGTERM handled like
Ctrl-C, and the C libraries' own chatter on stderr (libpng's warnings, FFmpeg's and OpenCV's
log lines) kept off the terminal unless --verbose."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import sys
import threading

# Lines that libraries below us print straight to file descriptor 2.
NOISE = re.compile(r"^(libpng (warning|error)|\[[\w ,-]+ @ 0x[0-9a-f]+\]|\[ ?(WARN|INFO|DEBUG)"
                   r"[:\]]|\[ERROR:\d+@|Token authentication is enabled for this Ray cluster|"
                   # libjpeg's own warnings (a damaged or padded JPEG; ours says what to do)
                   r"Corrupt JPEG data|Premature end of JPEG file|Invalid SOS parameters|"
                   r"Warning: unknown JFIF revision|\s*$)")


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, schedulers, container runtimes): stops a run the way Ctrl-C does, so
    the frames finished and queued for writing are kept and the render resumes."""


def on_sigterm(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def sigterm_as_interrupt():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def quiet_libraries(verbose: bool):
    """Filter what C libraries write to fd 2 (NOISE lines are dropped unless `verbose`);
    Python's own stderr (our messages, progress bars) goes straight to the terminal. Does
    nothing where stderr is not a real file descriptor (e.g. under a test runner)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = -1
    if verbose or fd != 2:
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    saved = sys.stderr
    sys.stderr = open(os.dup(real), "w", buffering=1, encoding=saved.encoding or "utf-8",
                      errors="replace")

    def pump():
        with open(read_end, "r", errors="replace") as lines, open(os.dup(real), "w") as out:
            for line in lines:
                if not NOISE.match(line):
                    out.write(line)
                    out.flush()

    thread = threading.Thread(target=pump, name="nstvideo-stderr", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the pump reads to its end
        thread.join(timeout=5)
        sys.stderr.close()
        sys.stderr = saved
        os.close(real)
