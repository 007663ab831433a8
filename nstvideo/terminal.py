"""What the command line does around a run and a library does not: options whose value may be
left out, SIGTERM handled like Ctrl-C, the C libraries' own chatter on stderr (libpng's
warnings, FFmpeg's and OpenCV's log lines) kept off the terminal unless --verbose, and the
one-line summary of a run; every failure of a run as one line and an exit code."""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import signal
import sys
import threading
import traceback

import typer

from nstvideo.errors import InputError, NstVideoError, reason

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


def run_reporting(verbose: bool, call):
    """Run the library call; every failure becomes one line and an exit code."""
    try:
        return call()
    except NstVideoError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt as e:
        fail(("terminated" if isinstance(e, Terminated) else "interrupted") + ": no file was "
             "left half-written; run the same command again to resume (a video from its last "
             "finished frame, a folder of photos from its next photo)",
             143 if isinstance(e, Terminated) else 130)
    except MemoryError:
        fail("out of memory: use a smaller --size", 5)
    except Exception as e:  # noqa: BLE001 - a bug or a library failure: one line, not a trace
        if verbose:
            traceback.print_exc()
        fail(f"unexpected failure: {reason(e)} (run again with --verbose for the details, and "
             "please report it)", 1)


def one_line_warning(message, category, filename, lineno, file=None, line=None):
    typer.echo(f"nstvideo: warning: {message}", err=True)


def fail(message: str, code: int):
    typer.echo(f"nstvideo: error: {message}", err=True)
    sys.exit(code)


def options_like(base, own, skip: set[str]):
    """A decorator giving a command the options of the command `base` (its signature, Typer's
    only source of them) but those named in `skip`, with the options of `own` (a function
    that only declares them) after the arguments."""
    params = [p for n, p in inspect.signature(base, eval_str=True).parameters.items()
              if n not in skip]
    args = [p for p in params if p.default is inspect.Parameter.empty]
    rest = [p for p in params if p.default is not inspect.Parameter.empty]
    sig = inspect.Signature(args + list(inspect.signature(own, eval_str=True)
                                        .parameters.values()) + rest)

    def wrap(command):
        command.__signature__ = sig
        command.__annotations__ = {p.name: p.annotation for p in sig.parameters.values()}
        return command
    return wrap


def parse_floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise InputError(f"{what} '{text}' is not a comma-separated list of numbers, e.g. "
                         "0.7,0.3") from e


def parse_style_layers(text: str) -> tuple[tuple[str, float], ...]:
    """'relu1_1,relu2_1:0.5' -> (('relu1_1', 1.0), ('relu2_1', 0.5)); weight defaults to 1.
    The layers and weights are checked by StyleSettings."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, weight = item.partition(":")
        try:
            out.append((name.strip(), float(weight) if weight else 1.0))
        except ValueError as e:
            raise InputError(f"--style-layers: weight '{weight}' of {name} is not a number") from e
    return tuple(out)
