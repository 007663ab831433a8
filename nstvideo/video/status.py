"""The state of a render, read from its folder alone (OUTPUT.frames/): read-only, without
its lock, without verifying a file (a running render is never disturbed, and the answer
comes at once). How many frames and units of the plan are done, whether a process renders
it now (its lock: PID, host, engine), the rate and what is left, the last frame written,
the settings in a line and the command that resumes it. Knows nothing of style transfer.
"""

from __future__ import annotations

import json
import shlex
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from nstvideo.errors import InputError
from nstvideo.media.scratch import alive
from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.video.names import (COMMAND, LATEST, LOCK, PLAN, RECORDS, SEGMENT_EXTS, STATE,
                                  UNIT)


@dataclass
class RenderStatus:
    """What `render_status` finds. `state`: 'running', 'stopped' (a folder no live process
    holds: run the command again to resume), 'finished' (the output is there and no folder),
    or 'not started'."""

    output: str
    state: str
    frames_done: int = 0
    frames_total: int | None = None
    units_done: int = 0
    units_total: int | None = None
    elapsed_s: float | None = None  # from the render's start to its last finished frame
    rate_fps: float | None = None  # frames a second over that time
    eta_s: float | None = None  # what is left at that rate (while running)
    pid: int | None = None
    host: str | None = None
    engine: str | None = None  # what renders it: this process, N local workers, Ray
    last_frame: str | None = None  # the newest finished frame's PNG (or segment) on disk
    latest: str | None = None  # latest.png: the newest painted frame, to look at
    settings: str = ""
    resume: str = ""  # the command that resumes it

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def line(self) -> str:
        """The status as a person reads it (a few lines)."""
        if self.state == "finished":
            return f"{self.output}: finished (it is there, and no render folder beside it)"
        if self.state == "not started":
            return f"{self.output}: not started (neither it nor a render folder is there)"
        total = "?" if self.frames_total is None else str(self.frames_total)
        who = f", by PID {self.pid}" + (f" on {self.host}" if self.host else "") + (
            f" ({self.engine})" if self.engine else "") if self.state == "running" else ""
        out = [f"{self.output}: {self.state}{who}",
               f"  {self.frames_done} of {total} frames, {self.units_done} of "
               f"{self.units_total if self.units_total is not None else '?'} units"]
        if self.rate_fps:
            left = f", about {span_text(self.eta_s)} left" if self.eta_s is not None else ""
            out.append(f"  {self.rate_fps * 60:.1f} frames a minute over "
                       f"{span_text(self.elapsed_s)}{left}")
        if self.last_frame:
            out.append(f"  last written: {self.last_frame}")
        if self.latest:
            out.append(f"  to look at: {self.latest}")
        if self.settings:
            out.append(f"  settings: {self.settings}")
        if self.resume and self.state == "stopped":
            out.append(f"  resume: {self.resume}")
        return "\n".join(out)


def span_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _records(unit: Path) -> tuple[int, bool, float | None]:
    """A unit's frames recorded, whether it is complete, and its records' last change."""
    path = unit / RECORDS
    try:
        lines = path.read_text(errors="replace").splitlines()
        changed = path.stat().st_mtime
    except OSError:
        return 0, False, None
    frames, complete = 0, False
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            break
        if isinstance(rec, dict) and "k" in rec:
            frames += 1
        elif isinstance(rec, dict) and "done" in rec:
            complete = True
    return frames, complete, changed


def _newest(folders: list[Path]) -> Path | None:
    """The newest finished frame or segment file in the units' folders."""
    files = [p for f in folders for p in f.iterdir()
             if p.suffix == ".png" and p.name.startswith("frame_") or p.suffix in SEGMENT_EXTS]
    return max(files, key=lambda p: p.stat().st_mtime, default=None)


def _settings(state: dict) -> str:
    s, v = state.get("style", {}), state.get("video", {})
    parts = [f"--size {s.get('size')}", f"--iterations {s.get('iterations')}",
             f"--method {v.get('method', 'optimize')}", f"--temporal {v.get('temporal')}",
             f"{len(state.get('styles', []))} style(s)"]
    if s.get("style_weight") is not None:
        parts.append(f"--style-weight {s['style_weight']}")
    return ", ".join(parts)


def render_status(output) -> RenderStatus:
    """The state of the render of `output` (the video or folder it writes), from its render
    folder alone; a path that is neither a render's output nor its folder is refused in one
    line."""
    output = Path(output)
    if output.name.endswith(".frames") and (output / STATE).exists():
        output = output.with_name(output.name[:-len(".frames")])
    folder = checkpoint_dir(output)
    if not folder.is_dir():
        if output.exists():
            return RenderStatus(str(output), "finished")
        if not output.parent.is_dir():
            raise InputError(f"{output}: no such output, and no render folder beside it: give "
                             "the output path a render writes (its video, or frames folder)")
        return RenderStatus(str(output), "not started")
    state = _json(folder / STATE)
    if not isinstance(state, dict):
        raise InputError(f"{folder} is not an nstvideo render folder (no readable {STATE}): "
                         "give the output path a render writes")
    plan = _json(folder / PLAN) or {}
    units = sorted(folder.glob(UNIT.replace("{:05d}", "[0-9]" * 5)))
    counts = [_records(u) for u in units]
    done = sum(c[0] for c in counts)
    times = [c[2] for c in counts if c[2] is not None]
    started = (folder / STATE).stat().st_mtime
    elapsed = max(times) - started if times else None
    rate = done / elapsed if elapsed and done else None
    total = len(plan["times"]) if isinstance(plan.get("times"), list) else None
    lock, command = _json(folder / LOCK), _json(folder / COMMAND) or {}
    running = isinstance(lock, dict) and "pid" in lock and (
        lock.get("host") != socket.gethostname() or alive(int(lock["pid"])))
    last = _newest(units)
    resume = shlex.join(command["argv"]) if isinstance(command.get("argv"), list) else \
        "the same command (or API call) that started it"
    return RenderStatus(
        str(output), "running" if running else "stopped", done, total,
        sum(1 for c in counts if c[1]), len(plan["units"]) if isinstance(plan.get("units"),
                                                                         list) else None,
        elapsed, rate, (total - done) / rate if running and rate and total else None,
        lock.get("pid") if running else None, lock.get("host") if running else None,
        command.get("engine"), str(last) if last else None,
        str(folder / LATEST) if (folder / LATEST).exists() else None, _settings(state), resume)
