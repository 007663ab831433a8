"""A unit's store: its finished frames (PNG) and the video segments they were encoded into,
each written durably and recorded (size, SHA-256, the frame's time in the source) in the
unit's records, so that a resumed render knows exactly what is done:

  * a frame counts as done only once its PNG is on disk (fsync'd, renamed into place) and its
    record is (fsync'd too); so does a segment. Opening a store checks every record against
    its file and keeps them up to the first that does not match (a power loss can truncate a
    file or lose its record): the rest is rendered again;
  * disk stays bounded: once a segment holds a run of frames their PNGs go, except the last
    (the next frame starts from it).

Knows nothing of style transfer, of the render folder around it, or of where it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from nstvideo.errors import InputError, OutputError
from nstvideo.media.reader import read_image
from nstvideo.media.writer import encode_image, fsync_dir, remove_partials, write_file
from nstvideo.video.names import FRAME, IN_UNIT, RECORDS, SEGMENT, STILL, UNIT


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
        remove_partials(self.folder)  # left by a run killed mid-write
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

    def save_still(self, k: int, reference: np.ndarray) -> None:
        """Write the chain's held-pixel reference after frame k (uint8 RGB: content values),
        before frame k itself, so a resume from frame k continues as an unbroken chain would;
        the one before k-1 goes (k-1's is what a crash before frame k is recorded needs)."""
        self._write(self.folder / STILL.format(k), encode_image(reference, ".png"), None)
        if k >= 2:
            (self.folder / STILL.format(k - 2)).unlink(missing_ok=True)

    def still(self, k: int) -> np.ndarray | None:
        """The reference saved after frame k, if any and readable (renders before it saved
        none; without it the chain goes on as if every pixel had just been painted)."""
        path = self.folder / STILL.format(k)
        try:
            return read_image(path, what="checkpoint reference") if path.is_file() else None
        except InputError:
            return None

    def _write(self, target: Path, data: bytes | None, rec: dict | None) -> None:
        try:
            self.folder.mkdir(exist_ok=True)
            if data is not None:
                write_file(target, data, durable=True)
            if rec is not None:
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
        for k in range(max(0, len(self.frames) - 2), len(self.frames)):  # no resume needs them
            (self.folder / STILL.format(k)).unlink(missing_ok=True)

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
                if IN_UNIT.match(p.name) and not p.name.startswith(".")}

    def adopt(self, files: dict[str, bytes]) -> int:
        """Take the files of this unit rendered elsewhere (records last); return frames done."""
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        for name, data in files.items():
            if name != RECORDS and IN_UNIT.match(name):
                write_file(self.folder / name, data, durable=True)
        write_file(self.folder / RECORDS, files.get(RECORDS, b""), durable=True)
        return self.open()


def unit_store(folder: Path, index: int, keep_frames: bool = True) -> UnitStore:
    """The store of unit `index` in the render folder `folder`."""
    return UnitStore(Path(folder) / UNIT.format(index), keep_frames)
