"""Checkpoints of a video render: the finished frames as PNGs plus a state file with the
settings and fingerprints of the inputs, in a folder beside the output. Re-running the same
command continues after the last finished frame; a changed setting or input is refused.

Made to survive what overnight renders meet:
  * a frame counts as done only once its PNG is on disk (fsync'd, renamed into place) and its
    size and SHA-256 are recorded in `frames.jsonl` (fsync'd too); resume checks every
    recorded frame against its record and renders again from the first one that does not
    match (a power loss can truncate a file or lose its record);
  * a lock file holds the PID of the render in progress: a second render of the same output
    refuses at once; a lock left by a dead process is taken over;
  * a folder that holds anything but our own files is never written into or deleted
    (not with --restart either);
  * a run that fails before finishing a frame leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np

from nstvideo.errors import InputError, OutputError
from nstvideo.media.reader import read_image
from nstvideo.media.writer import encode_image, fsync_dir, write_file

STATE = "state.json"
RECORDS = "frames.jsonl"
LOCK = "lock"
FRAME = "frame_{:06d}.png"
FORMAT = 2  # bump when the checkpoint layout changes (2: records, lock)
# Our own files: anything else in the folder is the user's, and the folder is not touched.
OURS = re.compile(r"^(state\.json|frames\.jsonl|frames\.ffconcat|lock|frame_\d{6}\.png|\..*\.partial.*)$")


def checkpoint_dir(output: Path) -> Path:
    """clip_monet.mp4 -> clip_monet.mp4.frames/ beside it."""
    return output.with_name(output.name + ".frames")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class Checkpoint:
    """A render's folder of finished frames, valid for one (settings, inputs) state. Use as a
    context manager around the render: it takes the lock, and releases it on the way out."""

    def __init__(self, folder: Path, state: dict):
        self.folder = Path(folder)
        # through JSON once, so that it compares equal to what is read back (tuples -> lists)
        self.state = json.loads(json.dumps({"format": FORMAT, **state}, default=str))
        self.records: list[dict] = []  # one per finished frame, in order
        self._locked = self._created = False

    # -- opening ---------------------------------------------------------------------------
    def open(self, restart: bool) -> int:
        """Create or reuse the folder and take its lock; return how many frames are done.

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
            return self._load(restart)
        except BaseException:
            self.close()
            raise

    def _refuse_foreign(self) -> None:
        if not self.folder.exists():
            return
        if not self.folder.is_dir():
            raise OutputError(f"{self.folder} exists and is not a folder: move it away or "
                              "choose another output with -o")
        names = [p.name for p in self.folder.iterdir()]
        foreign = [n for n in names if not OURS.match(n)]
        if not (self.folder / STATE).exists():  # frames without our state: not provably ours
            foreign += [n for n in names if n.startswith("frame_") or n == RECORDS]
        if foreign:
            raise OutputError(f"{self.folder} is not an nstvideo checkpoint folder (e.g. "
                              f"{foreign[0]}): "
                              "nothing in it is touched; move it away or choose another "
                              "output with -o")

    def _lock(self) -> None:
        path = self.folder / LOCK
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    owner = json.loads(path.read_text())
                    pid, host = int(owner["pid"]), owner.get("host")
                except (OSError, ValueError, KeyError, TypeError):
                    pid, host = None, None  # half-written by a process that died
                if pid is not None and (host != me["host"] or _alive(pid)):
                    where = "" if host == me["host"] else f" on {host}"
                    raise OutputError(f"another nstvideo (PID {pid}{where}) is rendering "
                                      f"{self.folder.name[:-len('.frames')]} now: wait for it "
                                      "to finish, or choose another output with -o") from None
                path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            self._locked = True
            return
        raise OutputError(f"cannot take the lock {path}: choose another output with -o")

    def _load(self, restart: bool) -> int:
        for p in self.folder.glob(".*.partial*"):  # left by a run killed mid-write
            p.unlink(missing_ok=True)
        saved = self._saved_state()
        if restart or (saved is None and any(p.name != LOCK for p in self.folder.iterdir())):
            self._clear()
            saved = None
        if saved is not None and saved != self.state:
            changed = sorted(k for k in set(saved) | set(self.state)
                             if saved.get(k) != self.state.get(k))
            raise InputError(f"{self.folder} holds a render of another input or other "
                             f"settings (changed: {', '.join(changed)}): run the same command "
                             "as before to resume it, or pass --restart to discard it")
        if saved is None:
            write_file(self.folder / STATE,
                       json.dumps(self.state, indent=1, sort_keys=True).encode(), durable=True)
        self.records = self._verified_records()
        return len(self.records)

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
            if p.name != LOCK:
                p.unlink()

    def _verified_records(self) -> list[dict]:
        """The recorded frames from the first, up to the first whose file is missing or does
        not match its record (that one and all after it are rendered again)."""
        path = self.folder / RECORDS
        good: list[dict] = []
        if not path.exists():
            return good
        lines = path.read_text(errors="replace").splitlines()
        for line in lines:
            try:
                rec = json.loads(line)
                ok = rec["k"] == len(good) and self._matches(rec)
            except (ValueError, KeyError, TypeError):
                ok = False  # a record cut short by a crash
            if not ok:
                break
            good.append(rec)
        if len(good) < len(lines):  # drop the records that failed, so appends follow `good`
            write_file(path, "".join(json.dumps(r) + "\n" for r in good).encode(), durable=True)
        return good

    def _matches(self, rec: dict) -> bool:
        frame = self.frame_path(rec["k"])
        try:
            data = frame.read_bytes()
        except OSError:
            return False
        return len(data) == rec["bytes"] and hashlib.sha256(data).hexdigest() == rec["sha256"]

    # -- during the render -----------------------------------------------------------------
    def done(self) -> int:
        """Number of consecutive finished frames from the first."""
        return len(self.records)

    def frame_path(self, k: int) -> Path:
        return self.folder / FRAME.format(k)

    def save(self, k: int, frame: np.ndarray, time: float | None = None) -> None:
        """Write frame k durably, then record it (size, hash and its time in the source)."""
        if k != len(self.records):
            raise RuntimeError(f"checkpoint frames out of order: {k} after {len(self.records)}")
        data = encode_image(frame, ".png")
        target = self.frame_path(k)
        try:
            write_file(target, data, durable=True)
            rec = {"k": k, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            if time is not None:
                rec["t"] = round(float(time), 6)
            with open(self.folder / RECORDS, "a") as f:
                f.write(json.dumps(rec) + "\n")
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self.folder)
        except OSError as e:
            raise OutputError(f"cannot write checkpoint frame {target} ({e.strerror}): free "
                              "space and run the same command again to resume") from e
        self.records.append(rec)

    def times(self) -> list[float] | None:
        """Each finished frame's time in the source (seconds), where recorded."""
        times = [r.get("t") for r in self.records]
        return None if any(t is None for t in times) else times

    def load(self, k: int) -> np.ndarray:
        return read_image(self.frame_path(k), what="checkpoint frame")

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Release the lock; a folder this run created and finished no frame in is removed
        (an early failure leaves nothing behind)."""
        if not self._locked:
            return
        self._locked = False
        if self._created and not self.records:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        with contextlib.suppress(OSError):
            (self.folder / LOCK).unlink()

    def remove(self) -> None:
        """The render is complete: the folder goes (the lock with it)."""
        self._locked = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
