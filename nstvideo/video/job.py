"""What a render is, as every process that renders a part of it needs to know it (picklable):
the job (settings, styles, sizes, frame times, the output's codec, the unit runner to build,
the threads a unit renders with), the source spec (how to open the input again, anywhere),
the processing size and positions given as times, and the cursor that reads a source forward
once for units taken in order. Knows nothing of how units are planned, run or stored.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from nstvideo.errors import InputError, NstVideoError
from nstvideo.media.probe import Colour
from nstvideo.media.video import Source, open_source
from nstvideo.media.writer import encode_video
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import fit_checked, resize

FLOW_MIN_SIDE = 16  # px: OpenCV's DIS flow crashes the process (SIGSEGV) on smaller frames


def parse_position(text: str | float | None, fps, what: str) -> int | None:
    """'70.5' or '00:01:10.5' (seconds) or '1750f' (frames) -> a frame count at `fps`."""
    if text is None:
        return None
    s = str(text).strip()
    try:
        if s.endswith("f"):
            n = int(s[:-1])
        else:
            secs = 0.0
            for part in s.split(":"):
                secs = secs * 60 + float(part)
            n = round(secs * float(fps))  # NaN: ValueError, infinity: OverflowError
    except ValueError as e:
        raise InputError(f"{what} '{text}' is not a time: use seconds (70.5), HH:MM:SS "
                         "(00:01:10) or a frame number (1750f)") from e
    except OverflowError as e:  # 1e400 seconds: infinite
        raise InputError(f"{what} '{text}' is not a finite time: use seconds (70.5), HH:MM:SS "
                         "(00:01:10) or a frame number (1750f)") from e
    if n < 0 or len(s.split(":")) > 3:
        raise InputError(f"{what} '{text}' must be a time or frame number >= 0")
    return n


def even_size(h: int, w: int, longest: int, min_side: int = FLOW_MIN_SIDE) -> tuple[int, int]:
    """Processing size of a video frame: longest side `longest`, both sides even (H.264 with
    yuv420p needs even dimensions), the short side at least `min_side` (refused otherwise)."""
    h, w = fit_checked(h, w, longest, max(min_side, FLOW_MIN_SIDE), "frame")
    return h - h % 2, w - w % 2


@dataclass(frozen=True)
class SourceSpec:
    """How to open the frames of a render again, in any process (picklable)."""

    path: Path
    files: list[Path] | None  # a folder's frames
    fps: float | None  # a folder's frame rate
    max_pixels: int
    first: int  # source index of output position 0
    stop: int | None  # source index to stop before
    every: int
    fingerprint: str = ""  # of the input, as the driver saw it

    def readable(self) -> bool:
        """Whether this process sees the same input as the driver (a shared filesystem; the
        environment variable NSTVIDEO_RAY_SHIP_FRAMES=1 says no, so frames are shipped)."""
        if os.environ.get("NSTVIDEO_RAY_SHIP_FRAMES") == "1":
            return False
        try:
            return self.open().fingerprint() == self.fingerprint
        except (OSError, NstVideoError):
            return False

    def open(self) -> Source:
        return open_source(self.path, self.files, self.fps, self.max_pixels)

    def frames(self, source: Source | None = None, hw=None, decode_from=0):
        """(output position, RGB frame at `hw` or as decoded, time) from position 0; frames
        before `decode_from` (a number, or a callable asked at each frame) come as None."""
        source = source or self.open()
        for k, (_, frame, t) in enumerate(source.frames(self.first, self.stop, self.every,
                                                        decode_from)):
            yield k, (frame if hw is None or frame is None else resize(frame, hw)), t

    def expected(self, source: Source) -> int | None:
        """How many output frames the source's header announces (a guess: progress bars and
        a warning only)."""
        if source.frame_count is None:
            return None
        end = source.frame_count if self.stop is None else min(self.stop, source.frame_count)
        return max(0, -(-(end - self.first) // self.every))


@dataclass
class Job:
    """Everything a process needs to render the units of one render (picklable). `runner` is
    the unit runner's class (one per method: nstvideo.video.unit, .keyframes), built once per
    process as `job.runner(job)`; engines run it and know nothing else of methods."""

    settings: StyleSettings
    video: VideoSettings
    styles: list[np.ndarray]
    init: np.ndarray | None
    hw: tuple[int, int]
    source: SourceSpec
    times: list[float]  # every output frame's time in the source
    fps: Fraction  # of the output
    vfr: bool  # frame times not evenly spaced: segments give each frame its duration
    colour: Colour
    segment_ext: str | None  # None: no segments (GIF and folder outputs keep PNGs)
    segment_frames: int
    keep_frames: bool
    runner: type | None = None  # the unit runner's class
    threads: int | None = None  # torch threads a unit renders with (the plan's; None: any)
    net: bytes | None = None  # keyframe method: the trained network (nstvideo.net file bytes)
    painted: dict[int, bytes] = field(default_factory=dict)  # fast: keyframes that begin a
    # shot, as the optimizer painted them (PNG bytes by output position)
    end: float | None = None  # when the last frame stops showing (the source's; None: one
    # step after it begins)
    masks: object = None  # where to paint (nstvideo.video.clipmasks.ClipMasks; None: all)

    @property
    def step(self) -> float:
        return 1 / float(self.fps)

    def span(self, a: int, b: int) -> float:
        """Seconds the output frames a..b-1 show for."""
        return self.end_of(b - 1) - self.times[a]

    def end_of(self, k: int) -> float:
        """When output frame k stops showing (the next one's time; the last: when the source's
        range ends, else one step on)."""
        if k + 1 < len(self.times):
            return self.times[k + 1]
        return self.end if self.end is not None else self.times[k] + self.step

    @property
    def rate(self) -> float:
        """The output's frame rate: exact where constant, else the range's average."""
        if not self.vfr:
            return float(self.fps)
        return len(self.times) / max(self.end_of(len(self.times) - 1) - self.times[0], 1e-6)

    def encode(self, folder: Path, names: list[str], output: Path, a: int, b: int,
               **audio) -> bool:
        """Encode the PNGs `names` in `folder`, the output frames a..b-1, into `output` (a
        segment, a cross-fade or a whole GIF) with their times, rate and colour tags, and
        `audio` as `encode_video` takes it. Returns whether audio was included."""
        return encode_video(folder, names, output, self.fps, times=self.times[a:b],
                            vfr=self.vfr, frame_duration=self.step, end=self.end_of(b - 1),
                            colour=self.colour, **audio)

    def on(self, device: str) -> "Job":
        """The same job for a process that renders on `device`."""
        return dataclasses.replace(self, settings=self.settings.replace(device=device))

    def cursor(self) -> "Cursor":
        """A reader of this job's frames (at the processing size) for units taken in order."""
        return Cursor(lambda want: self.source.frames(hw=self.hw, decode_from=want),
                      self.video.overlap + 1)


class Cursor:
    """Output frames of a source, read forward once for units taken in order: a unit that
    starts a little before the previous one ended (its head) is served from the frames just
    read; frames before a unit are skipped cheaply (grabbed, not converted or resized); going
    further back opens the source again."""

    def __init__(self, open_frames, keep: int):
        # open_frames(want) -> iterator of (position, frame or None, time) from position 0,
        # with None for positions before want() (asked at each frame)
        self._open = open_frames
        self._it: Iterator | None = None
        self._next = 0  # position the iterator yields next
        self._want = 0  # first position the current unit needs decoded
        self._recent: deque = deque(maxlen=keep)  # (position, frame) just read

    def take(self, begin: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
        """(position, frame) for begin <= position < stop (fewer where the source ends)."""
        recent = [(k, f) for k, f in self._recent if begin <= k < stop]
        if self._it is None or begin < self._next - len(self._recent) or (
                begin < self._next and not recent):
            self._it, self._next = self._open(lambda: self._want), 0
            self._recent.clear()
            recent = []
        self._want = max(begin, self._next - self._recent.maxlen)  # keep the overlap's worth
        yield from recent
        while self._next < stop:
            item = next(self._it, None)
            if item is None:
                return
            pos, frame = self._next, item[1]
            self._next += 1
            if frame is None:  # skipped: before this unit
                continue
            self._recent.append((pos, frame))
            if pos >= begin:
                yield pos, frame
