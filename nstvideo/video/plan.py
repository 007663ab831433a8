"""A render as a plan of units: the shots of a clip (scene cuts found in one quick pass over
it) and the pieces long shots are split into, so that units can render in any order, in any
process, and join into the same video.

A unit renders the output positions [begin, stop). A piece that continues a shot starts
`head` frames before the previous piece ends; those frames are rendered by both and
cross-faded at the join (two optimization chains never paint the same strokes, a fade over
`head` frames spreads the difference thin enough not to show: benchmarks/RESULTS.md,
"Seams"). Knows nothing of devices, engines or style transfer.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from nstvideo.video.flow import SCENE_CUT_DIFF, FlowEstimator, analyse, frame_difference
from nstvideo.settings import VideoSettings

SCAN_SIDE = 192  # px: the longest side frames are compared at in the cut pass
MAX_PIECE = 900  # frames: a piece no worker should hold longer (a lost worker loses at most this)


@dataclass(frozen=True)
class Unit:
    index: int
    shot: int
    begin: int  # first output position rendered
    stop: int  # one past the last
    head: int = 0  # first frames shared with the previous unit (cross-faded)
    tail: int = 0  # last frames shared with the next unit

    @property
    def frames(self) -> int:
        return self.stop - self.begin

    @property
    def own(self) -> tuple[int, int]:
        """The output positions only this unit gives (outside the cross-fades)."""
        return self.begin + self.head, self.stop - self.tail


@dataclass
class Plan:
    times: list[float]  # each output frame's time in the source, seconds
    cuts: list[int]  # output positions where a shot begins (the first is 0)
    units: list[Unit]
    keys: list[int] = field(default_factory=list)  # keyframe method: the keyframes' positions

    @property
    def total(self) -> int:
        return len(self.times)

    def to_json(self) -> dict:
        return {"times": self.times, "cuts": self.cuts, "units": [asdict(u) for u in self.units],
                "keys": self.keys}

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        return cls([float(t) for t in data["times"]], [int(c) for c in data["cuts"]],
                   [Unit(**u) for u in data["units"]], [int(k) for k in data.get("keys", [])])

    def shot_of(self, k: int) -> int:
        """The shot output position k belongs to."""
        return bisect.bisect_right(self.cuts, k) - 1


def scan_size(hw: tuple[int, int]) -> tuple[int, int]:
    h, w = hw
    f = min(1.0, SCAN_SIDE / max(h, w))
    return max(16, round(h * f)), max(16, round(w * f))


def find_cuts(frames: Iterator[np.ndarray], temporal: str, flow_preset: str = "medium",
              on_frame=None) -> list[int]:
    """Positions where a new shot begins, by the renderer's own test (flow coverage and warped
    difference for `flow`, plain difference otherwise) on small copies of the frames.
    `on_frame(k, frame, cut)` hears of each frame once it is judged."""
    cuts, prev = [0], None
    flow = FlowEstimator(flow_preset) if temporal == "flow" else None
    for k, frame in enumerate(frames):
        if prev is not None:
            cut = (analyse(prev, frame, flow).scene_cut if flow is not None
                   else frame_difference(prev, frame) > SCENE_CUT_DIFF)
            if cut:
                cuts.append(k)
        prev = frame
        if on_frame is not None:
            on_frame(k, frame, cuts[-1] == k)
    return cuts


def shrink(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(frame, (hw[1], hw[0]), interpolation=cv2.INTER_AREA)


def make_units(total: int, cuts: list[int], workers: int = 1, chained: bool = True,
               overlap: int = VideoSettings.overlap, max_piece: int = MAX_PIECE) -> list[Unit]:
    """Shots, with long ones split into pieces: into pieces of at most `max_piece` frames
    when several workers share the work, and further where there are more workers than
    shots (about two units a worker, pieces no shorter than 4 x `overlap`). One worker
    renders whole shots: splitting would only add seams. `chained`: frames depend on the
    previous one (temporal flow/previous); independent frames need no overlap."""
    bounds = [*cuts, total]
    shots = [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]
    units: list[Unit] = []
    ov = overlap if chained else 0
    target = None
    if workers > 1:
        target = max(4 * ov or 8, min(max_piece, math.ceil(total / (2 * workers))))
    for s, (a, b) in enumerate(shots):
        n = 1 if target is None or b - a <= target * 1.5 else math.ceil((b - a) / target)
        edges = [a + round(i * (b - a) / n) for i in range(n + 1)]
        for i in range(n):
            head = ov if i > 0 else 0
            tail = ov if i < n - 1 else 0
            units.append(Unit(len(units), s, edges[i] - head, edges[i + 1], head, tail))
    return units


def fade(a: np.ndarray, b: np.ndarray, i: int, n: int) -> np.ndarray:
    """Frame i of n of a cross-fade from a (the earlier piece) to b (the later one)."""
    w = (i + 1) / (n + 1)
    return np.clip(np.rint((1 - w) * a.astype(np.float32) + w * b.astype(np.float32)),
                   0, 255).astype(np.uint8)


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
