"""A render as a plan: one quick pass over the clip finds its frame times, its shots (scene
cuts, by the renderer's own test on small copies of the frames) and, for the keyframe method,
its keyframes; the shots become units (long ones split into pieces when several workers share
them), so that units can render in any order, in any process, and join into the same video.
The plan also fixes the thread count every unit renders with where results must repeat.

A unit renders the output positions [begin, stop). A piece that continues a shot starts
`head` frames before the previous piece ends; those frames are rendered by both and
cross-faded at the join (two optimization chains never paint the same strokes, a fade over
`head` frames spreads the difference thin enough not to show: benchmarks/RESULTS.md,
"Seams"). Knows nothing of devices, engines, checkpoints or style transfer.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from tqdm.auto import tqdm

from nstvideo.media.video import Source
from nstvideo.settings import VideoSettings, parse_keyframes
from nstvideo.video.background import prefetch
from nstvideo.video.flow import SCENE_CUT_DIFF, FlowEstimator, analyse, frame_difference
from nstvideo.video.job import SourceSpec

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
    threads: int | None = None  # torch threads every unit renders with (see unit_threads)
    end: float | None = None  # when the last frame stops showing, in the source (None: unknown)

    @property
    def total(self) -> int:
        return len(self.times)

    def to_json(self) -> dict:
        return {"times": self.times, "cuts": self.cuts, "units": [asdict(u) for u in self.units],
                "keys": self.keys, "threads": self.threads, "end": self.end}

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        end = data.get("end")
        return cls([float(t) for t in data["times"]], [int(c) for c in data["cuts"]],
                   [Unit(**u) for u in data["units"]], [int(k) for k in data.get("keys", [])],
                   data.get("threads"), None if end is None else float(end))

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


def unit_threads(video: VideoSettings, seeded: bool, on_cpu: bool, share: int) -> int | None:
    """The torch threads every unit of a render uses, fixed in its plan: on some CPUs (AVX-512
    kernels) the thread count changes the floats a frame comes out with, and along a chain of
    frames the optimizer turns that into other strokes (57 dB on a first frame, 25 dB 36
    frames on: benchmarks/threads.py).
    `--threads` if given; else, for a seeded render on the CPU, the engine's own `share` (the
    cores of one of its slots: what it would use anyway), so that a resumed render, or one
    whose units run elsewhere, paints what the first run would have. None: each process
    uses its own share."""
    if video.threads is not None:
        return video.threads
    return share if seeded and on_cpu else None


def scan(spec: SourceSpec, source: Source, video: VideoSettings, hw: tuple[int, int],
         slots: int, threads: int | None = None, keyframes: bool = False,
         progress: bool = False) -> Plan:
    """The plan of a render, made in one pass over its frames: their times, the shots (cuts
    by the renderer's own test, on small copies), the units for `slots` engines' slots and,
    where `keyframes` (the keyframe method, training a network), the keyframes. `source`:
    the spec's source, opened."""
    times: list[float] = []
    small = scan_size(hw)
    # the keyframe method's frames are independent: no chain, no overlap; but its keyframes
    # start each shot (found with the flow test)
    chained = video.chained
    find = video.scene_cuts and (chained or video.trains_net)
    chooser = (KeyframeChooser(parse_keyframes(video.keyframes), float(source.fps) / video.every)
               if keyframes else None)
    bar = tqdm(total=spec.expected(source), unit="frame", desc="finding shots",
               disable=not progress, dynamic_ncols=True, leave=False)

    def seen(k: int, frame: np.ndarray, cut: bool) -> None:
        bar.update(1)
        if chooser is not None:
            chooser.see(k, frame, cut)

    def frames():
        for _, frame, t in spec.frames(source):
            times.append(float(t))
            yield shrink(frame, small)

    with bar:
        test = video.temporal if video.chained else "flow"
        cuts = (find_cuts(prefetch(frames()), test, video.flow_preset, on_frame=seen)
                if find else [0])
        if not find:
            for k, frame in enumerate(frames()):
                seen(k, frame, k == 0)
    units = make_units(len(times), cuts, slots, chained, video.overlap)
    end = source.end if times and source.end is not None and source.end > times[-1] else None
    return Plan(times, cuts if times else [], units,
                chooser.keys if chooser is not None and times else [], threads, end)


# auto: a new keyframe once more than this share of a frame's pixels have colours the shot's
# keyframes do not show (the network learns local appearance: what it has not seen painted,
# it guesses), ...
KEY_NOVEL = 0.10
COLOUR_LEVELS = 16  # per channel: 4096 colour bins (after a 3x3 blur: noise is not new)
KNOWN_SHARE = 1e-4  # a colour is known once it covers this share of the keyframes' pixels
KEY_MIN_SECONDS = 1.0  # ... but not sooner than this after the last (fast motion)
KEY_MAX_SECONDS = 8.0  # and at least this often (slow drifts of shape the colours miss)


class KeyframeChooser:
    """Sees the (small) frames of a clip in order with the shot cuts, and keeps the output
    positions of its keyframes: each shot's first frame, then every `every` frames (when
    given), else (auto) where more than KEY_NOVEL of the frame is colours the shot's
    keyframes so far do not show, KEY_MIN_SECONDS to KEY_MAX_SECONDS apart."""

    def __init__(self, every: int | None, fps: float):
        self.every, self.keys = every, []
        self.min_gap = max(1, round(KEY_MIN_SECONDS * fps))
        self.max_gap = max(self.min_gap, round(KEY_MAX_SECONDS * fps))
        self._seen = np.zeros(COLOUR_LEVELS ** 3, np.int64)  # colour counts of the keyframes

    def see(self, k: int, frame: np.ndarray, cut: bool) -> None:
        if cut or not self.keys:
            self._seen[:] = 0
            return self._take(k, frame)
        gap = k - self.keys[-1]
        if self.every is not None:
            if gap >= self.every:
                self._take(k, frame)
            return
        if gap < self.min_gap:
            return
        if gap >= self.max_gap or self.novelty(frame) > KEY_NOVEL:
            self._take(k, frame)

    def novelty(self, frame: np.ndarray) -> float:
        """The share of `frame`'s pixels whose colour the shot's keyframes do not show."""
        known = self._seen >= max(1.0, self._seen.sum() * KNOWN_SHARE)
        return float((~known[_colours(frame)]).mean())

    def _take(self, k: int, frame: np.ndarray) -> None:
        self.keys.append(k)
        self._seen += np.bincount(_colours(frame).ravel(), minlength=self._seen.size)


def _colours(frame: np.ndarray) -> np.ndarray:
    """(H, W) colour bin of each pixel of an RGB uint8 frame."""
    q = cv2.blur(frame[..., :3], (3, 3)).astype(np.int32) // (256 // COLOUR_LEVELS)
    return (q[..., 0] * COLOUR_LEVELS + q[..., 1]) * COLOUR_LEVELS + q[..., 2]
