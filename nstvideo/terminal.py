"""What the command line does around a run and a library does not: options whose value may be
left out, SIGTERM handled like Ctrl-C, the C libraries' own chatter on stderr (libpng's
warnings, FFmpeg's and OpenCV's log lines) kept off the terminal unless --verbose, and the
one-line summary of a run."""

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


OPTIONAL_VALUES = {"--preserve-colors": ("luminance", ("luminance", "histogram"))}


def optional_values(args: list[str]) -> list[str]:
    """An option whose value may be left out (`--preserve-colors` alone means luminance,
    `--preserve-colors histogram` says which): given its value explicitly, as
    `--preserve-colors=luminance`, before the parser sees it (click takes no optional
    values)."""
    out, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            return out + args[i:]
        if a in OPTIONAL_VALUES:
            default, values = OPTIONAL_VALUES[a]
            given = i + 1 < len(args) and args[i + 1] in values
            out.append(f"{a}={args[i + 1] if given else default}")
            i += 2 if given else 1
            continue
        out.append(a)
        i += 1
    return out


def summary(report) -> str:
    """The line printed after a run (an api.RunReport): what was written, and how."""
    v = report.video
    if v is not None:
        rate = (f"{v.fps:.1f} fps on average (variable rate)" if v.variable_rate
                else f"{v.fps:g} fps")
        extra = [f"{v.frames} frames at {rate}", "with audio" if v.audio else "no audio"]
        if v.resumed:
            extra.append(f"{v.resumed} resumed from an earlier run")
        if v.scene_cuts:
            extra.append(f"{len(v.scene_cuts)} scene cut(s)")
        if v.keyframes:
            extra.append(f"{len(v.keyframes)} keyframe(s), network trained "
                         f"{v.training.get('steps', 0)} steps")
        elif v.net:
            extra.append(f"painted by the network {v.net}")
        if v.memory:
            extra.append(f"each frame {v.memory}")
        if v.where and (len(v.where) > 1 or v.units > 1):
            extra.append(f"{v.units} units: " + ", ".join(
                f"{n} on {w}" for w, n in sorted(v.where.items())))
        return f"wrote {v.output} ({', '.join(extra)})"
    if report.skipped and not report.written and not report.failed:
        return (f"nothing to do: the {len(report.skipped)} photos were painted into "
                f"{report.output} before, with these settings (--overwrite paints them again)")
    if report.output.is_dir():
        skipped = f"; {len(report.skipped)} painted before, skipped" if report.skipped else ""
        return f"wrote {report.output} ({len(report.written)} images{skipped})"
    return f"wrote {report.output}" + (f" (painted {report.memory})" if report.memory else "")
