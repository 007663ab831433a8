"""What a result depends on (settings, style images, files by content), and a folder of
photos' record of what it painted with them, so that the same command run again picks up
where an interrupted (or since grown) folder stopped."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from nstvideo.media.video import file_fingerprint
from nstvideo.settings import StyleSettings

FOLDER_RECORD = ".nstvideo-photos"  # in a folder of photos' output folder (hidden)


def fingerprint(image) -> str:
    """A style, init or weights file by its contents; an array by its pixels."""
    if isinstance(image, np.ndarray):
        return "array:" + hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:32]
    return f"{Path(image).name}:{file_fingerprint(Path(image))}"


def style_state(settings: StyleSettings, styles: list) -> dict:
    """What a painting depends on besides its content: the style settings (not where it runs,
    how many at once, or the input size limit), the style images and the --init and --weights
    files, by content (a style replaced under the same name is another painting)."""
    style = dataclasses.asdict(settings)
    style.pop("device")  # another device paints the same
    style.pop("batch")  # photos in a batch take their own steps
    style.pop("max_megapixels")  # a limit on inputs, not a setting of the result
    style.pop("max_memory")  # tiles give the same result, up to float rounding
    style.pop("tile")
    files = {"init": settings.init, "weights": settings.weights}
    return {"style": style, "styles": [fingerprint(s) for s in styles],
            "files": {k: fingerprint(v) for k, v in files.items() if Path(v).is_file()}}


class FolderRecord:
    """The record in a folder of photos' output: its first line what the photos are painted
    with, then a line per photo written ([its output's path under the folder, its source's
    size and modification time], JSON). With the same first line, a photo whose output is
    recorded for the same source is done and skipped, and a recorded output is ours to
    replace; with another (other settings, or no record), nothing there is ours."""

    def __init__(self, output_dir: Path, state: dict, fresh: bool):
        self.folder, self.path = output_dir, output_dir / FOLDER_RECORD
        self.head = json.dumps(state, sort_keys=True)
        self.done: dict[str, str] = {} if fresh else self._read()
        self.started = False

    def _read(self) -> dict[str, str]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return {}
        if not lines or lines[0] != self.head:
            return {}
        done = {}
        for line in lines[1:]:  # a last line cut by an interruption does not parse: skipped
            try:
                rel, source = json.loads(line)
            except (ValueError, TypeError):
                continue
            done[str(rel)] = str(source)
        return done

    def _key(self, target: Path) -> str:
        return target.relative_to(self.folder).as_posix()

    @staticmethod
    def _source(src: Path) -> str:
        st = src.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"

    def ours(self, target: Path) -> bool:
        """Written by an earlier run with these settings: may be replaced."""
        return self._key(target) in self.done

    def finished(self, src: Path, target: Path) -> bool:
        """Painted before from this very source (same size and time) and still there."""
        return target.exists() and self.done.get(self._key(target)) == self._source(src)

    def add(self, src: Path, target: Path) -> None:
        """One photo written (the record begun anew on the first, where nothing was ours). A
        record that cannot be written costs only the skipping next time, not the photo."""
        try:
            if not self.started and (not self.done or not self.path.exists()):
                self.path.write_text(self.head + "\n", encoding="utf-8")
            self.started = True
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps([self._key(target), self._source(src)]) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            pass
