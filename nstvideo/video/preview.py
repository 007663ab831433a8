"""A clip's preview: a few frames painted exactly as the render paints a shot's first frame
(the render's own job, runners and threads), and the time the whole render would take on this
device by each method, projected from what was measured on the way: the plan's pass over the
clip, the first frames, one later frame of each method's chain, a few training steps and the
network's painting. Knows nothing of sheets, files or the command line.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from nstvideo.errors import InputError
from nstvideo.media.reader import existing
from nstvideo.media.video import open_source
from nstvideo.net import import_optimizer_early, net_bytes, paint
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.device import resolve_device, torch_threads
from nstvideo.video.clipmasks import clip_masks
from nstvideo.video.engines import InProcess
from nstvideo.video.frames import FrameRenderer, coverage, laid_over
from nstvideo.video.job import Job, parse_position
from nstvideo.video.keyframes import (RefineRunner, keyframe_stylizer, net_training, steps_for,
                                      train)
from nstvideo.video.plan import Plan
from nstvideo.video.render import clip_range, frame_memory, frame_size, make_job, new_plan
from nstvideo.video.unit import OptimizeRunner

DEFAULT_FRAMES = 4  # frames a preview paints unless told: one per shot, spread over the clip
MEASURED_STEPS = 5  # training steps run for the projection; the first WARM_STEPS are not
WARM_STEPS = 2  # timed (the allocator's and the kernels' first runs)
TIMED_ITERATIONS = 6  # iterations of a later optimize frame timed for the projection
METHOD_NAMES = ("optimize", "fast", "keyframes")


@dataclass
class Clip:
    """A clip opened and planned once for every row of a preview."""

    spec: object  # SourceSpec
    source: object  # Source
    plan: Plan
    scan_seconds: float  # the plan's pass over the clip (the render makes the same)
    masks: object = None  # where to paint (a ClipMasks; None: everywhere)


@dataclass
class Painted:
    """One frame of a preview row."""

    position: int  # output position in the render
    time: float  # seconds into the source
    source: np.ndarray  # the content at the processing size
    result: np.ndarray
    seconds: float  # what painting it took
    shot_start: bool  # the render paints this frame as here; else it is one of a chain


@dataclass
class Timings:
    """What the projection rests on, in seconds (None: not measurable on this clip)."""

    scan: float  # the plan's pass over the clip
    setup: float  # VGG-19 and the style's targets built
    first: float  # a shot's first frame (median of the preview's)
    later: float | None = None  # the optimize method's later frame (flow, temporal cost)
    refine: float | None = None  # the fast method's later frame (network + refining)
    step: float | None = None  # a training step of the network
    paint: float | None = None  # the network painting one frame
    notes: list[str] = field(default_factory=list)


def open_clip(input_path, settings: StyleSettings, video: VideoSettings, files,
              progress: bool, mask=None, styles: int = 1) -> Clip:
    """Open the clip and its masks (checked first: `clip_masks`, for `styles` style images)
    and plan it as the render would (shots, keyframes), timing the pass."""
    src = existing(input_path)
    source = open_source(src, files, video.fps, settings.max_pixels)
    spec, video = clip_range(src, source, video, settings, files)
    masks = clip_masks(mask, spec, source, styles)
    t0 = time.perf_counter()
    plan = new_plan(spec, source, settings, video, frame_size(source, settings), InProcess(),
                    progress, keyframes=True)
    return Clip(spec, source, plan, time.perf_counter() - t0, masks)


def choose(clip: Clip, count: int | None, at: list[str] | None) -> list[int]:
    """Output positions to paint: the frames at the times `at`; else one per shot, spread over
    the clip, `count` of them (DEFAULT_FRAMES at most by default); where `count` asks for more
    than there are shots, frames spread over the clip fill the rest."""
    plan, spec = clip.plan, clip.spec
    if at:
        fps = clip.source.fps
        out = []
        for text in at:
            k = (parse_position(text, fps, "--at") - spec.first) // spec.every
            if not 0 <= k < plan.total:
                raise InputError(f"--at {text}: not in the range rendered "
                                 f"({plan.times[0]:.2f} to {plan.times[-1]:.2f} s into "
                                 f"{spec.path.name}): give times within it")
            out.append(k)
        return sorted(set(out))
    if count is not None and count < 1:
        raise InputError(f"--frames {count}: give 1 or more")
    want = min(count or DEFAULT_FRAMES, plan.total)
    shots = plan.cuts
    if len(shots) >= want:
        return sorted({shots[round(i * (len(shots) - 1) / max(1, want - 1))]
                       for i in range(want)})
    chosen = set(shots)  # then frames evenly spread over the clip, then any
    for k in [i * plan.total // want for i in range(want)] + list(range(plan.total)):
        if len(chosen) >= want:
            break
        chosen.add(k)
    return sorted(chosen)


def row_job(clip: Clip, settings: StyleSettings, video: VideoSettings,
            styles: list[np.ndarray], masks=None) -> Job:
    """The render's job at these settings, with these `masks` (a ClipMasks or None); refused
    in one line where a frame cannot fit."""
    hw = frame_size(clip.source, settings)
    frame_memory(settings, hw, len(masks.masks) if masks else 0)
    job = make_job(settings, video, styles, hw, clip.spec, clip.source, clip.plan, None, False)
    job.masks = masks
    return job


def read_frames(job: Job, positions: list[int]) -> tuple[dict, dict]:
    """The content frames at `positions` (and the one after each, for a later frame's
    timing), at the processing size, read as the render reads them; and their masks where
    the job has a clip of masks ({position: masks})."""
    cursor, out, masks = job.cursor(), {}, {}
    moving = job.masks is not None and job.masks.moving
    mask_cursor = job.masks.cursor(job.hw, 1) if moving else None
    for p in sorted(set(positions) | {p + 1 for p in positions}):
        for pos, frame in cursor.take(p, min(p + 1, len(job.times))):
            out[pos] = frame
            if moving:
                masks[pos] = next(m for _, m in mask_cursor.take(pos, pos + 1))
    return out, masks


def paint_row(job: Job, plan: Plan, positions: list[int], frames: dict[int, np.ndarray],
              scan_seconds: float = 0.0,
              masks: dict | None = None) -> tuple[list[Painted], Timings]:
    """Paint the frames at `positions` (`read_frames`: their content and masks) as the render
    paints a shot's first frame with this job's method (the keyframe method: as its network,
    trained on them, paints them), then time what the projection needs."""
    cuts, masks = set(plan.cuts), masks or {}
    import_optimizer_early()  # (the training below: its import done beside the painting)
    with torch_threads(job.threads):
        method = job.video.method
        t0 = time.perf_counter()
        runner = _fed(OptimizeRunner(job), masks)
        stylizer = runner.stylizer if method == "optimize" else keyframe_stylizer(job)
        setup = time.perf_counter() - t0  # VGG and the style's targets: once per render
        if method == "optimize":
            painted = _paint(job, cuts, positions, frames, runner.renderer,
                             lambda r, f, p: runner.render(r, f, None, p)[0])
        else:
            painted = _paint(job, cuts, positions, frames,
                             lambda: FrameRenderer(stylizer, job.video),
                             lambda r, f, p: r.render(f, job.init,
                                                      regions=runner.regions(p))[0])
        timings = Timings(scan=scan_seconds, setup=setup,
                          first=statistics.median(p.seconds for p in painted))
        covers = [coverage(_fed(runner, masks).regions(p.position), job.hw) for p in painted]
        net = _train_net(job, painted, covers, timings, full=method == "keyframes")
        if method == "keyframes":
            t0 = time.perf_counter()
            results = paint(net, [p.source for p in painted])
            each = (time.perf_counter() - t0) / len(painted)
            for p, r in zip(painted, results):  # (regions: the masks, fed again)
                regions = _fed(runner, masks).regions(p.position)
                p.result, p.seconds = laid_over(p.source, r, regions), p.seconds + each
        _time_later(job, cuts, _fed(runner, masks), painted, frames, net, timings, masks)
    return painted, timings


def _paint(job: Job, cuts: set[int], positions: list[int], frames, renderer,
           render) -> list[Painted]:
    out = []
    for p in positions:
        t0 = time.perf_counter()
        result = render(renderer(), frames[p], p)
        out.append(Painted(p, job.times[p], frames[p], result, time.perf_counter() - t0,
                           p in cuts))
    return out


def _train_net(job: Job, painted: list[Painted], covers: list, timings: Timings, full: bool):
    """A network trained on the painted frames (each where its masks painted it: `covers`,
    None for all), for the keyframe method as its render trains one (its steps; its look is
    the network's), else a few steps, timed."""
    device = resolve_device(job.settings.device)
    steps = steps_for(job.video, len(job.times), job.hw) if full else MEASURED_STEPS
    training = net_training(job, steps, device)
    for p, cover in zip(painted, covers):
        training.add(p.source, p.result, cover)
    ticks: list[float] = []
    train(training, job.video if full else job.video.replace(train_seconds=None), 1.0,
          on_step=lambda i: ticks.append(time.perf_counter()))
    gaps = np.diff(ticks)[WARM_STEPS - 1:] if len(ticks) > WARM_STEPS else np.diff(ticks)
    timings.step = float(np.median(gaps)) if len(gaps) else None
    if full:
        timings.notes.append(f"the network trained on these {len(painted)} frames "
                             f"({training.trainer.step} steps, {training.seconds:.0f} s)")
    return training.net


def _time_later(job: Job, cuts: set[int], runner: OptimizeRunner, painted: list[Painted],
                frames, net, timings: Timings, masks: dict) -> None:
    """One later frame of each method's chain, after the first painted frame that has one in
    its shot: the optimize method's (flow, temporal cost, early stop; with `runner`), the fast
    method's (network, refining), and the network painting a frame."""
    base = next((p for p in painted if p.position + 1 in frames
                 and p.position + 1 not in cuts), None)
    t0 = time.perf_counter()
    paint(net, [painted[0].source])
    timings.paint = time.perf_counter() - t0
    if base is None:
        timings.notes.append("no frame after a painted one in its shot: later frames not timed")
        return
    nxt, k = frames[base.position + 1], base.position + 1
    timings.later = _later_frame(runner, base, nxt, k)
    fast = dataclasses.replace(job, video=job.video.replace(method="fast"), painted={},
                               net=net_bytes(net, {}))
    timings.refine = _chain_step(_fed(RefineRunner(fast), masks), base, nxt, k)


def _fed(runner, masks: dict):
    """The runner, given the masks read for the positions it will paint."""
    for p, m in masks.items():
        runner.add_masks(p, m)
    return runner


def _after(runner, base: Painted) -> FrameRenderer:
    """A chain of the runner's that has just painted `base` (the stylizer built first, outside
    the timing: a render builds it once)."""
    runner.stylizer  # noqa: B018
    renderer = runner.renderer()
    renderer.restore(base.source, base.result)
    return renderer


class _Timed(Exception):
    """Enough of a later frame's iterations timed."""


def _later_frame(runner: OptimizeRunner, base: Painted, nxt: np.ndarray, k: int) -> float:
    """Seconds the optimize chain takes for frame k after `base`: its own work (the flow,
    the carried start, the objective's setup and first gradient) and TIMED_ITERATIONS of
    its iterations measured, the rest of its budget at their median (as if early stop did
    not end it sooner: a bound; the whole frame cost a preview 4.5 s at 128 px and 25 s at
    384 px, a quarter of a first frame, for a projection 0.96x of the real render's)."""
    renderer = _after(runner, base)
    ticks: list[float] = []

    def tick(i, parts):
        ticks.append(time.perf_counter())
        if len(ticks) > TIMED_ITERATIONS:
            raise _Timed

    t0 = time.perf_counter()
    try:
        renderer.render(nxt, runner.job.init, on_step=tick, regions=runner.regions(k),
                        compared=renderer.compare(base.source, nxt))
    except _Timed:
        return (ticks[0] - t0 + (renderer.budget(restart=False) - 1)
                * float(np.median(np.diff(ticks))))
    return time.perf_counter() - t0  # (the whole frame: it ended within the timed ones)


def _chain_step(runner, base: Painted, nxt: np.ndarray, k: int) -> float:
    """Seconds the runner's chain takes for frame k after `base` (the stylizer built first:
    a render builds it once)."""
    renderer = _after(runner, base)
    t0 = time.perf_counter()
    runner.render(renderer, nxt, renderer.compare(base.source, nxt), k)
    return time.perf_counter() - t0


def project(plan: Plan, t: Timings, video: VideoSettings, hw) -> dict[str, float]:
    """Seconds the whole render would take in one process on this device, by method: the
    pass over the clip, each shot's first frame, the later frames; the keyframe methods'
    keyframes (the first from the content, the rest from a guess, with a later frame's
    budget), training and painting (frames encoded and joined are left out: a small share)."""
    n, shots, keys = plan.total, len(plan.cuts), max(1, len(plan.keys))
    later = t.later if t.later is not None else 0.0
    out = {"optimize": t.scan + t.setup + shots * t.first + (n - shots) * later}
    keyframes = t.first + (keys - 1) * later
    for method in ("fast", "keyframes"):
        steps = steps_for(video, n, hw, method)
        train_s = steps * (t.step or 0.0)
        if video.train_seconds is not None:
            train_s = min(train_s, video.train_seconds)
        frames = ((n - shots) * (t.refine or 0.0) if method == "fast"
                  else n * (t.paint or 0.0))
        out[method] = t.scan + t.setup + keyframes + train_s + frames
    return out
