"""Checkpoints of a video render: the finished frames as PNGs plus a state file with the
settings and a fingerprint of the input, in a folder beside the output. Re-running the same
command continues after the last finished frame; a changed setting or input is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from nstvideo.errors import InputError, OutputError
from nstvideo.media.reader import read_image
from nstvideo.media.writer import atomic_path, write_image

STATE = "state.json"
FRAME = "frame_{:06d}.png"
FRAME_PATTERN = "frame_%06d.png"  # the same, in ffmpeg's syntax
FORMAT = 1  # bump when the checkpoint layout changes


def checkpoint_dir(output: Path) -> Path:
    """clip_monet.mp4 -> clip_monet.mp4.frames/ beside it."""
    return output.with_name(output.name + ".frames")


class Checkpoint:
    """A render's folder of finished frames, valid for one (settings, input) state."""

    def __init__(self, folder: Path, state: dict):
        self.folder = Path(folder)
        # through JSON once, so that it compares equal to what is read back (tuples -> lists)
        self.state = json.loads(json.dumps({"format": FORMAT, **state}, default=str))

    def open(self, restart: bool) -> int:
        """Create or reuse the folder; return how many frames are already done.

        Raises if the folder holds a render made with other settings or input (unless
        `restart`, which discards it)."""
        if restart and self.folder.exists():
            shutil.rmtree(self.folder)
        saved = self._saved_state()
        if saved is not None and saved != self.state:
            changed = sorted(k for k in set(saved) | set(self.state)
                             if saved.get(k) != self.state.get(k))
            raise InputError(f"{self.folder} holds a render of another input or other "
                             f"settings (changed: {', '.join(changed)}): run the same command "
                             "as before to resume it, or pass --restart to discard it")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if saved is None:
                with atomic_path(self.folder / STATE) as tmp:
                    tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        except OSError as e:
            raise OutputError(f"cannot write checkpoints in {self.folder.parent} "
                              f"({e.strerror}): choose another output location with -o") from e
        return self.done()

    def _saved_state(self) -> dict | None:
        path = self.folder / STATE
        if not path.exists():
            if self.folder.exists() and any(self.folder.iterdir()):
                raise InputError(f"{self.folder} exists and is not an nstvideo checkpoint "
                                 "folder: move it away or choose another output with -o")
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{path} is damaged: pass --restart to start the render over") from e

    def done(self) -> int:
        """Number of consecutive finished frames from the first."""
        n = 0
        while self.frame_path(n).exists():
            n += 1
        return n

    def frame_path(self, k: int) -> Path:
        return self.folder / FRAME.format(k)

    def save(self, k: int, frame: np.ndarray) -> None:
        write_image(self.frame_path(k), frame)

    def load(self, k: int) -> np.ndarray:
        return read_image(self.frame_path(k), what="checkpoint frame")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
