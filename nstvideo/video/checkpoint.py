"""Checkpoints of a video render, in a folder beside the output: a state file with the
settings and fingerprints of the inputs, the plan (shots and units), and one folder per unit
with its finished frames (PNG) and the video segments they were encoded into. Re-running the
same command continues: finished units are kept, a unit in progress continues after its last
finished frame; a changed setting or input is refused.

Made to survive what overnight renders meet:
  * a frame counts as done only once its PNG is on disk (fsync'd, renamed into place) and its
    size and SHA-256 are recorded in the unit's `frames.jsonl` (fsync'd too); so does a
    segment. Resume checks every record against its file and renders again from the first
    one that does not match (a power loss can truncate a file or lose its record);
  * disk stays bounded: once a segment holds a run of frames their PNGs go, except the last
    (the next frame starts from it);
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
PLAN = "plan.json"
RECORDS = "frames.jsonl"
LOCK = "lock"
FRAME = "frame_{:06d}.png"
SEGMENT = "seg_{:04d}{}"
UNIT = "u{:05d}"
FORMAT = 3  # bump when the checkpoint layout changes (2: records, lock; 3: units, segments)
# Our own files: anything else in the folder is the user's, and the folder is not touched.
_PARTIAL = r"\..*\.partial.*"
KEYS = "keys"  # the keyframe method's painted keyframes (a unit store of their own)
NET = "net.pt"  # ... and the network it trains on them, with its training state
OURS = re.compile(rf"^(state\.json|plan\.json|lock|frames\.ffconcat|segments\.ffconcat|"
                  rf"frame_\d{{6}}\.png|u\d{{5}}|{KEYS}|net\.pt|{_PARTIAL})$")
OURS_IN_UNIT = re.compile(rf"^(frames\.jsonl|frames\.ffconcat|frame_\d{{6}}\.png|"
                          rf"seg_\d{{4}}\.(mp4|webm)|fade\.(mp4|webm)|{_PARTIAL})$")


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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _append(path: Path, rec: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


class UnitStore:
    """One unit's finished frames and segments. Frames are numbered from 0 within the unit."""

    def __init__(self, folder: Path, keep_frames: bool = True):
        self.folder = Path(folder)
        self.keep_frames = keep_frames  # False: a segment's PNGs go once it is recorded
        self.frames: list[dict] = []  # one record per finished frame, in order
        self.segments: list[dict] = []  # {seg, k0, k1, bytes, sha256}, in order
        self.complete = False

    def open(self) -> int:
        """Check the unit's records (its folder is made with its first frame); return how
        many frames are done."""
        for p in self.folder.glob(".*.partial*"):  # left by a run killed mid-write
            p.unlink(missing_ok=True)
        self._verify()
        return len(self.frames)

    def _verify(self) -> None:
        """Keep the records from the first up to the first whose file is missing or does not
        match (that one and all after it are done again). A frame whose PNG was dropped counts
        when a verified segment holds it."""
        path = self.folder / RECORDS
        self.frames, self.segments, self.complete = [], [], False
        if not path.exists():
            return
        lines = path.read_text(errors="replace").splitlines()
        recs = []
        for line in lines:
            try:
                recs.append(json.loads(line))
            except ValueError:
                break  # a record cut short by a crash
        held = set()
        for r in recs:
            if isinstance(r, dict) and "seg" in r and self._matches(self.segment_path(r), r):
                held.update(range(r["k0"], r["k1"]))
        kept = 0
        for r in recs:
            try:
                if "k" in r:
                    ok = r["k"] == len(self.frames) and (
                        r["k"] in held or self._matches(self.frame_path(r["k"]), r))
                    if ok:
                        self.frames.append(r)
                elif "seg" in r:
                    end = self.segments[-1]["k1"] if self.segments else r["k0"]
                    ok = (r["seg"] == len(self.segments) and r["k0"] == end and
                          r["k1"] <= len(self.frames) and set(range(r["k0"], r["k1"])) <= held)
                    if ok:
                        self.segments.append(r)
                else:
                    ok = r.get("done") == len(self.frames)
                    self.complete = ok
            except (KeyError, TypeError):
                ok = False
            if not ok:
                break
            kept += 1
        if kept < len(lines):  # drop the records that failed, so appends follow the good ones
            write_file(path, "".join(json.dumps(r) + "\n" for r in recs[:kept]).encode(),
                       durable=True)

    @staticmethod
    def _matches(path: Path, rec: dict) -> bool:
        try:
            data = path.read_bytes()
        except OSError:
            return False
        return len(data) == rec["bytes"] and _sha(data) == rec["sha256"]

    def done(self) -> int:
        return len(self.frames)

    def frame_path(self, k: int) -> Path:
        return self.folder / FRAME.format(k)

    def segment_path(self, rec_or_index, ext: str | None = None) -> Path:
        if isinstance(rec_or_index, dict):
            return self.folder / rec_or_index["name"]
        return self.folder / SEGMENT.format(rec_or_index, ext)

    def save(self, k: int, frame: np.ndarray, time: float | None = None) -> None:
        """Write frame k durably, then record it (size, hash and its time in the source)."""
        if k != len(self.frames):
            raise RuntimeError(f"checkpoint frames out of order: {k} after {len(self.frames)}")
        data = encode_image(frame, ".png")
        target = self.frame_path(k)
        rec = {"k": k, "bytes": len(data), "sha256": _sha(data)}
        if time is not None:
            rec["t"] = round(float(time), 6)
        self._write(target, data, rec)
        self.frames.append(rec)

    def _write(self, target: Path, data: bytes | None, rec: dict) -> None:
        try:
            self.folder.mkdir(exist_ok=True)
            if data is not None:
                write_file(target, data, durable=True)
            _append(self.folder / RECORDS, rec)
        except OSError as e:
            raise OutputError(f"cannot write checkpoint {target} ({e.strerror}): free "
                              "space and run the same command again to resume") from e

    def add_segment(self, path: Path, k0: int, k1: int) -> None:
        """Record the segment file `path` (already in place) as holding frames k0..k1-1; then
        their PNGs go, but for the last one (the next frame starts from it)."""
        data = path.read_bytes()
        rec = {"seg": len(self.segments), "name": path.name, "k0": k0, "k1": k1,
               "bytes": len(data), "sha256": _sha(data)}
        self._write(path, None, rec)
        self.segments.append(rec)
        if not self.keep_frames:
            for k in range(max(0, k0 - 1), k1 - 1):
                if k != k0 - 1 or any(s["k1"] == k0 for s in self.segments[:-1]):
                    self.frame_path(k).unlink(missing_ok=True)

    def finish(self) -> None:
        self._write(self.folder / RECORDS, None, {"done": len(self.frames)})
        self.complete = True

    def times(self) -> list[float] | None:
        """Each finished frame's time in the source (seconds), where recorded."""
        times = [r.get("t") for r in self.frames]
        return None if any(t is None for t in times) else times

    def load(self, k: int) -> np.ndarray:
        return read_image(self.frame_path(k), what="checkpoint frame")

    def decoded(self, k: int) -> np.ndarray:
        """Frame k as its segment holds it (for a PNG that went once it was encoded)."""
        import cv2

        rec = next(r for r in self.segments if r["k0"] <= k < r["k1"])
        cap = cv2.VideoCapture(str(self.segment_path(rec)))
        try:
            for _ in range(k - rec["k0"] + 1):
                ok, frame = cap.read()
                if not ok:
                    raise OutputError(f"{self.segment_path(rec)} is damaged: pass --restart")
        finally:
            cap.release()
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def files(self) -> dict[str, bytes]:
        """Every file of the unit, by name (to carry a unit rendered elsewhere)."""
        return {p.name: p.read_bytes() for p in sorted(self.folder.iterdir())
                if OURS_IN_UNIT.match(p.name) and not p.name.startswith(".")}

    def adopt(self, files: dict[str, bytes]) -> int:
        """Take the files of this unit rendered elsewhere (records last); return frames done."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        for name, data in files.items():
            if name != RECORDS and OURS_IN_UNIT.match(name):
                write_file(self.folder / name, data, durable=True)
        write_file(self.folder / RECORDS, files.get(RECORDS, b""), durable=True)
        return self.open()


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
            if p.is_dir() and OURS.match(p.name):
                names += [f"{p.name}/{q.name}" for q in p.iterdir()
                          if not OURS_IN_UNIT.match(q.name) or q.is_dir()]
            elif p.is_dir():
                names.append(p.name + "/")
        foreign = [n for n in names if "/" in n or not OURS.match(n)]
        if not (self.folder / STATE).exists():  # frames without our state: not provably ours
            foreign += [n for n in names if n.startswith(("frame_", "u"))]
        if foreign:
            raise OutputError(f"{self.folder} is not an nstvideo checkpoint folder (e.g. "
                              f"{foreign[0].rstrip('/')}): "
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

    def _load(self, restart: bool) -> None:
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
        for p in [*self.folder.glob("u" + "[0-9]" * 5), self.folder / KEYS]:
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
        return UnitStore(self.folder / UNIT.format(index), keep_frames)

    def frame_path(self, k: int) -> Path:
        """Where the finished output frame k goes when frames are kept (--keep-frames)."""
        return self.folder / FRAME.format(k)

    def has_frames(self) -> bool:
        """Whether anything was finished: a frame, a keyframe, a network's training."""
        return (self.net_path.exists() or
                any(p.stat().st_size > 0 for p in [*self.folder.glob("u*/" + RECORDS),
                                                   *self.folder.glob(f"{KEYS}/{RECORDS}")]))

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
            elif not p.name.startswith("frame_") and p.name != LOCK:
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
