"""A render's folder beside its output (OUTPUT.frames/): the state file (the settings and the
inputs' fingerprints), the plan, the lock, and the unit stores (nstvideo.video.store) it
hands out. Re-running the same command continues: finished units are kept, a unit in
progress continues after its last finished frame; a changed setting or input is refused.

  * a lock file holds the PID of the render in progress: a second render of the same output
    refuses at once; a lock left by a dead process is taken over;
  * a folder that holds anything but our own files (nstvideo.video.names) is never written
    into or deleted (not with --restart either);
  * a run that fails before finishing a frame leaves no folder behind.

Knows nothing of style transfer or of what is inside a unit's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

from nstvideo.errors import InputError, OutputError
from nstvideo.media.scratch import take_lock
from nstvideo.media.writer import remove_partials, write_file
from nstvideo.video.names import (COMMAND, FRAME, IN_FOLDER, IN_UNIT, KEPT_FRAME, KEYS, LOCK,
                                  NET, PLAN, RECORDS, RENDERED, STATE, UNIT_FOLDERS)
from nstvideo.video.store import UnitStore, unit_store

FORMAT = 3  # bump when the checkpoint layout changes (2: records, lock; 3: units, segments)


def checkpoint_dir(output: Path) -> Path:
    """clip_monet.mp4 -> clip_monet.mp4.frames/ beside it."""
    return output.with_name(output.name + ".frames")


def changes(saved: dict, now: dict) -> str:
    """What differs between a render's saved state and this run's, for the user: a group's
    settings by name with their values then and now (video.temporal_weight 1000.0 -> 300.0),
    the input, styles and files by name only."""
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict) and k in ("style", "video"):
            out += [f"{k}.{n} {_short(a.get(n))} -> {_short(b.get(n))}"
                    for n in sorted(set(a) | set(b)) if a.get(n) != b.get(n)]
        else:
            out.append(k)
    return ", ".join(out)


def _short(value) -> str:
    text = "unset" if value is None else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Checkpoint:
    """A render's folder of finished units, valid for one (settings, inputs) state. Use as a
    context manager around the render: it takes the lock, and releases it on the way out."""

    def __init__(self, folder: Path, state: dict):
        self.folder = Path(folder)
        # through JSON once, so that it compares equal to what is read back (tuples -> lists)
        self.state = json.loads(json.dumps({"format": FORMAT, **state}, default=str))
        self._locked = self._created = False

    # -- opening ---------------------------------------------------------------------------
    def open(self, restart: bool) -> None:
        """Create or reuse the folder and take its lock.

        Raises if the folder is not ours, another render holds it, or it holds a render made
        with other settings or inputs (unless `restart`, which discards that)."""
        self._refuse_foreign()
        self._created = not self.folder.exists()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write checkpoints in {self.folder.parent} "
                              f"({e.strerror}): choose another output location with -o") from e
        self._lock()
        try:
            self._load(restart)
        except BaseException:
            self.close()
            raise

    def _refuse_foreign(self) -> None:
        if not self.folder.exists():
            return
        if not self.folder.is_dir():
            raise OutputError(f"{self.folder} exists and is not a folder: move it away or "
                              "choose another output with -o")
        names = []
        for p in self.folder.iterdir():
            names.append(p.name)
            if p.is_dir() and IN_FOLDER.match(p.name):
                names += [f"{p.name}/{q.name}" for q in p.iterdir()
                          if not IN_UNIT.match(q.name) or q.is_dir()]
            elif p.is_dir():
                names.append(p.name + "/")
        foreign = [n for n in names if "/" in n or not IN_FOLDER.match(n)]
        if not (self.folder / STATE).exists():  # frames without our state: not provably ours
            foreign += [n for n in names if RENDERED.match(n)]
        if foreign:
            raise OutputError(f"{self.folder} is not an nstvideo checkpoint folder (e.g. "
                              f"{foreign[0].rstrip('/')}): "
                              "nothing in it is touched; move it away or choose another "
                              "output with -o")

    def _lock(self) -> None:
        take_lock(self.folder / LOCK, self.folder.name[:-len(".frames")])
        self._locked = True

    def _load(self, restart: bool) -> None:
        remove_partials(self.folder)  # left by a run killed mid-write
        saved = self._saved_state()
        if restart or (saved is None and any(p.name != LOCK for p in self.folder.iterdir())):
            self._clear()
            saved = None
        if saved is not None and saved != self.state:
            raise InputError(f"{self.folder} holds a render of another input or other "
                             f"settings (changed: {changes(saved, self.state)}): run the same "
                             "command as before to resume it, or pass --restart to discard it")
        if saved is None:
            write_file(self.folder / STATE,
                       json.dumps(self.state, indent=1, sort_keys=True).encode(), durable=True)

    def _saved_state(self) -> dict | None:
        path = self.folder / STATE
        if not path.exists():
            return None
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{path} is damaged: pass --restart to start the render over") from e
        return saved if isinstance(saved, dict) else None

    def _clear(self) -> None:
        """Discard an earlier render (only our own files are in the folder: checked)."""
        for p in self.folder.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            elif p.name != LOCK:
                p.unlink()

    def note_command(self, engine: str) -> None:
        """What `nstvideo status` tells of the render: the command that resumes it (this
        process's, where it is the nstvideo command) and what renders it."""
        argv = ["nstvideo", *sys.argv[1:]] if Path(sys.argv[0]).name in ("nstvideo",
                                                                         "__main__.py") else None
        write_file(self.folder / COMMAND, json.dumps({"argv": argv, "engine": engine}).encode())

    # -- the plan and the units ------------------------------------------------------------
    def plan(self) -> dict | None:
        """The plan saved by an earlier run of this render, if any."""
        try:
            return json.loads((self.folder / PLAN).read_text())
        except (OSError, ValueError):
            return None

    def save_plan(self, plan: dict) -> None:
        write_file(self.folder / PLAN, json.dumps(plan).encode(), durable=True)

    def drop_units(self) -> None:
        """Forget everything rendered to a plan (units, keyframes, the network trained on them)."""
        for p in [q for pattern in UNIT_FOLDERS for q in self.folder.glob(pattern)]:
            if p.is_dir():
                shutil.rmtree(p)
        (self.folder / NET).unlink(missing_ok=True)

    def keys(self) -> UnitStore:
        """The keyframe method's painted keyframes, frame k the k-th keyframe."""
        return UnitStore(self.folder / KEYS, keep_frames=True)

    @property
    def net_path(self) -> Path:
        return self.folder / NET

    def unit(self, index: int, keep_frames: bool = True) -> UnitStore:
        return unit_store(self.folder, index, keep_frames)

    def frame_path(self, k: int) -> Path:
        """Where the finished output frame k goes when frames are kept (--keep-frames)."""
        return self.folder / FRAME.format(k)

    def has_frames(self) -> bool:
        """Whether anything was finished: a frame, a keyframe, a network's training."""
        return (self.net_path.exists() or
                any(p.stat().st_size > 0 for pattern in UNIT_FOLDERS
                    for p in self.folder.glob(f"{pattern}/{RECORDS}")))

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the lock; a folder this run created and finished no frame in is removed
        (an early failure leaves nothing behind)."""
        if not self._locked:
            return
        self._locked = False
        if self._created and not self.has_frames():
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        with contextlib.suppress(OSError):
            (self.folder / LOCK).unlink()

    def remove(self) -> None:
        """The render is complete: the folder goes (the lock with it)."""
        self._locked = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def keep_only_frames(self) -> None:
        """The render is complete and its frames are kept (--keep-frames): everything else
        goes, the lock last."""
        for p in self.folder.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            elif not KEPT_FRAME.match(p.name) and p.name != LOCK:
                p.unlink()
        self._locked = False
        (self.folder / LOCK).unlink(missing_ok=True)

    @contextlib.contextmanager
    def opened(self, restart: bool):
        """`open`, then the lock is held until the block is left."""
        self.open(restart)
        with self:
            yield self

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
