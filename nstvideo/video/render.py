"""A video render: the plan (shots, units), the unit runner every engine calls (warm start
along the optical flow, temporal cost, checkpoints, segments), and the join into the output."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from nstvideo.video.background import BackgroundWriter, prefetch
from nstvideo.video.checkpoint import FRAME, Checkpoint, UnitStore, checkpoint_dir
from nstvideo.style.device import configure, resolve_device
from nstvideo.errors import InputError, NstVideoError, RenderError
from nstvideo.video.flow import (SCENE_CUT_DIFF, WARPS, FlowEstimator, FramePair, analyse,
                           frame_difference, static_pixels, warp)
from nstvideo.photos import ImageLike, _init_image, build_stylizer, load, reason, styles_list
from nstvideo.media.reader import MAX_PIXELS
from nstvideo.media.video import Colour, FrameFolder, Source, VideoFile, file_fingerprint
from nstvideo.media.writer import (encode_video, is_constant_rate, join_segments, segment_ext,
                                   write_image)
from nstvideo.keyframes import KeyframeChooser, NetTraining
from nstvideo.net import Training, batch_size, load_net, net_bytes, net_from_bytes, paint, save_net
from nstvideo.outputs import check_net_output, check_video_output, default_output, input_paths
from nstvideo.style.optimize import EarlyStop
from nstvideo.video.plan import (Cursor, Plan, Unit, fade, find_cuts, make_units, scan_size,
                           shrink)
from nstvideo.settings import TEMPORAL_MODES, StyleSettings, VideoSettings, parse_keyframes
from nstvideo.style.stylizer import Stylizer, Temporal
from nstvideo.style.tensors import fit_checked, resize, to_image, to_tensor
from nstvideo.style.vgg import min_side


@dataclass
class VideoReport:
    output: Path
    frames: int = 0  # frames in the result
    resumed: int = 0  # of which were already done by an earlier run
    audio: bool = False  # the result carries the source's audio
    scene_cuts: list[int] = field(default_factory=list)  # output positions where it restarted
    seconds_per_frame: float = 0.0  # of the frames rendered by this run (wall clock)
    fps: float = 0.0  # the result's frame rate
    units: int = 0  # shots and pieces of shots the render was planned in
    where: dict[str, int] = field(default_factory=dict)  # units rendered by this run, by worker
    keyframes: list[int] = field(default_factory=list)  # keyframe method: output positions
    training: dict = field(default_factory=dict)  # ... and its network's training (steps, loss)
    net: str | None = None  # keyframe method: the network file it painted with (--net)


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


def open_source(path: Path, video: VideoSettings, files: list[Path] | None = None,
                max_pixels: int = MAX_PIXELS) -> Source:
    if path.is_dir():
        return FrameFolder(path, video.fps, files, max_pixels)
    return VideoFile(path, max_pixels)


FLOW_MIN_SIDE = 16  # px: OpenCV's DIS flow crashes the process (SIGSEGV) on smaller frames


def even_size(h: int, w: int, longest: int, min_side: int = FLOW_MIN_SIDE) -> tuple[int, int]:
    """Processing size of a video frame: longest side `longest`, both sides even (H.264 with
    yuv420p needs even dimensions), the short side at least `min_side` (refused otherwise)."""
    h, w = fit_checked(h, w, longest, max(min_side, FLOW_MIN_SIDE), "frame")
    return h - h % 2, w - w % 2


def _state(settings: StyleSettings, video: VideoSettings, source: Source, rng, styles) -> dict:
    style = dataclasses.asdict(settings)
    style.pop("device")  # resuming on another device is fine
    style.pop("batch")  # photos only
    style.pop("max_megapixels")  # a limit on inputs, not a setting of the result
    vid = dataclasses.asdict(video)
    vid.pop("segment_frames")  # how the result is stored on the way, not what it is
    vid.pop("save_net")  # a copy of the network, not the result
    if vid["method"] == "optimize":  # as before the keyframe method: earlier renders resume
        for name in ("method", "keyframes", "train_steps", "train_seconds", "train_perceptual",
                     "net"):
            vid.pop(name)
    files = {"init": settings.init, "weights": settings.weights, "net": video.net or ""}
    return {"style": style, "video": vid, "input": source.fingerprint(), "range": list(rng),
            # by content: a style image replaced under the same name is another render
            "styles": [_fingerprint(s) for s in styles],
            "files": {k: _fingerprint(v) for k, v in files.items() if Path(v).is_file()}}


def _fingerprint(image) -> str:
    """A style, init or weights file by its contents; an array by its pixels."""
    if isinstance(image, np.ndarray):
        return "array:" + hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:32]
    return f"{Path(image).name}:{file_fingerprint(Path(image))}"


class FrameRenderer:
    """Stylizes the frames of one sequence in order, carrying the previous result along."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings):
        self.stylizer, self.video = stylizer, video
        self.flow = FlowEstimator(video.flow_preset) if video.temporal == "flow" else None
        self.prev_content: np.ndarray | None = None
        self.prev_result: np.ndarray | None = None
        self.reference: np.ndarray | None = None  # per pixel: content when last painted
        self.first_iterations = video.iterations_first or 3 * video.iterations
        self.early_stop = EarlyStop(video.early_stop_tol, video.early_stop_window)

    def restore(self, content: np.ndarray, result: np.ndarray) -> None:
        """Continue after a frame finished by an earlier run."""
        self.prev_content, self.prev_result = content, result
        self.reference = content.astype(np.float32)

    def compare(self, prev: np.ndarray, cur: np.ndarray) -> FramePair | float | None:
        """What the temporal step needs from two consecutive content frames alone: the flow
        analysis (flow mode), their difference (previous mode) or nothing. Depends on the
        source only, so `stylize_video` computes it ahead, beside the optimization."""
        if self.video.temporal == "flow":
            return analyse(prev, cur, self.flow)
        if self.video.temporal == "previous":
            return frame_difference(prev, cur)
        return None

    def render(self, content: np.ndarray, init: np.ndarray | None = None, on_step=None,
               compared: FramePair | float | None = None, guess=None):
        """Stylize one content frame (RGB uint8 at the processing size); `compared` is
        `compare(previous content, content)` where already computed. `guess`: where the chain
        restarts, a callable giving an image to start from instead of the content (the
        keyframe method's network: what it learned so far), with the later frames' budget.

        Returns (result RGB uint8, report, whether the chain restarted here)."""
        s, v, dev = self.stylizer, self.video, self.stylizer.device
        had_previous = self.prev_result is not None
        content_t = to_tensor(content, dev)
        temporal, start, restart = None, None, self.prev_result is None or v.temporal == "none"
        static = None
        if not restart and compared is None:
            compared = self.compare(self.prev_content, content)
        if not restart and v.temporal == "flow":
            pair: FramePair = compared
            restart = v.scene_cuts and pair.scene_cut
            if not restart:
                warped = warp(self.prev_result, pair.backward, v.warp)
                if v.hold_static:
                    static = static_pixels(pair.backward, pair.mask, content, self.reference)
                    warped[static] = self.prev_result[static]  # held as painted, not resampled
                start = to_tensor(warped, dev)
                mask = torch.from_numpy(pair.mask)[None, None].to(dev)
                frozen = None if static is None or not static.any() else \
                    torch.from_numpy(static)[None, None].to(dev)
                temporal = Temporal(start, mask, v.temporal_weight, frozen)
        elif not restart:  # previous: warm start from the unwarped result
            restart = v.scene_cuts and compared > SCENE_CUT_DIFF
            start = None if restart else to_tensor(self.prev_result, dev)
        guessed = start is None and guess is not None
        if start is None:
            start = to_tensor(guess(), dev) if guessed else s.initial(content_t, init)
        # a chain's first frame starts from the content and gets the larger budget; with
        # temporal none every frame is independent and gets `iterations`, as asked
        iterations = (self.first_iterations if restart and v.temporal != "none" and not guessed
                      else v.iterations)
        x, report = s.run(content_t, start, iterations=iterations, temporal=temporal,
                          early_stop=self.early_stop, on_step=on_step)
        result = to_image(x)
        self.prev_content, self.prev_result = content, result
        if static is None:
            self.reference = content.astype(np.float32)
        else:
            self.reference[~static] = content[~static]
        return result, report, restart and had_previous and v.temporal != "none"


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
        if self.path.is_dir():
            return FrameFolder(self.path, self.fps, self.files, self.max_pixels)
        return VideoFile(self.path, self.max_pixels)

    def frames(self, source: Source | None = None, hw=None, decode_from=0):
        """(output position, RGB frame at `hw` or as decoded, time) from position 0; frames
        before `decode_from` (a number, or a callable asked at each frame) come as None."""
        source = source or self.open()
        for k, (_, frame, t) in enumerate(source.frames(self.first, self.stop, self.every,
                                                        decode_from)):
            yield k, (frame if hw is None or frame is None else resize(frame, hw)), t


@dataclass
class Job:
    """Everything a worker needs to render the units of one render (picklable)."""

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
    net: bytes | None = None  # keyframe method: the trained network (nstvideo.net file bytes)

    @property
    def step(self) -> float:
        return 1 / float(self.fps)

    def span(self, a: int, b: int) -> float:
        """Seconds the output frames a..b-1 show for."""
        return self.end_of(b - 1) - self.times[a]

    def end_of(self, k: int) -> float:
        """When output frame k stops showing (the next one's time; the last: one step on)."""
        return self.times[k + 1] if k + 1 < len(self.times) else self.times[k] + self.step


class UnitRunner:
    """Renders units of one job in this process: one stylizer (VGG loaded once), the source
    read forward once across units taken in order. Every engine calls this."""

    def __init__(self, job: Job):
        self.job = job
        self.device = resolve_device(job.settings.device)
        self._stylizer: Stylizer | None = None
        self._net = None
        self._cursor = Cursor(lambda want: job.source.frames(hw=job.hw, decode_from=want),
                              job.video.overlap + 1)

    @property
    def stylizer(self) -> Stylizer:  # loaded at first use: the keyframe method's units need none
        if self._stylizer is None:
            self._stylizer = build_stylizer(self.job.styles, self.job.settings)
        return self._stylizer

    @property
    def net(self):
        if self._net is None:
            configure(self.device, self.job.settings.seed)
            self._net = net_from_bytes(self.job.net, self.device)[0]
        return self._net

    def run(self, unit: Unit, store: UnitStore, on_frame=None, frames=None) -> dict:
        """Render what `store` lacks of `unit`: its frames, saved as they finish, encoded into
        segments every `segment_frames` (but the frames it shares with a neighbour, which the
        join cross-fades). `frames`: the unit's content frames at the processing size where
        they were shipped (else read from the source). Returns {rendered, seconds, cuts
        (output positions)}."""
        job = self.job
        done = store.open()
        report = {"rendered": 0, "seconds": 0.0, "cuts": []}
        if store.complete:
            return report
        if done == unit.frames:  # every frame is there: only the last segments and the record
            self._segments(unit, store, done)
            store.finish()
            return report
        t0 = time.perf_counter()
        begin = unit.begin + max(0, done - (job.net is None))  # a chain restarts from the last
        content = (self._cursor.take(begin, unit.stop) if frames is None else
                   ((unit.begin + i, frames[i]) for i in range(begin - unit.begin, len(frames))))
        with BackgroundWriter() as writer:
            def finished(k: int, result: np.ndarray) -> None:
                writer.submit(store.save, k, result, job.times[unit.begin + k])
                writer.submit(self._segments, unit, store, k + 1)
                report["rendered"] += 1
                if on_frame is not None:
                    on_frame(k)

            if job.net is None:
                self._optimize(unit, store, done, content, finished, report)
            else:
                self._paint(unit, content, finished)
        if store.done() < unit.frames:
            raise RenderError(f"{job.source.path.name} ended at frame {unit.begin + store.done()}"
                              f" of the {len(job.times)} its first pass found (changed or "
                              "unreadable since?): check the file, then pass --restart")
        self._segments(unit, store, unit.frames)
        store.finish()
        report["seconds"] = time.perf_counter() - t0
        return report

    def _optimize(self, unit: Unit, store: UnitStore, done: int, content, finished, report):
        """Optimize the frames one after the other, each from the previous result."""
        renderer = FrameRenderer(self.stylizer, self.job.video)

        def ahead():  # runs in a thread: decode, resize and compare with the previous frame
            prev = None
            for pos, frame in content:
                k = pos - unit.begin
                yield k, frame, (None if prev is None or k < done
                                 else renderer.compare(prev, frame))
                prev = frame

        for k, frame, compared in prefetch(ahead()):
            if k < done:
                renderer.restore(frame, store.load(k))
                continue
            try:
                result, _, cut = renderer.render(frame, self.job.init, compared=compared)
            except cv2.error as e:
                raise RenderError(f"OpenCV failed on frame {unit.begin + k} ({reason(e)}): "
                                  "check the input plays, or report it") from e
            if cut:
                report["cuts"].append(unit.begin + k)
            finished(k, result)

    def _paint(self, unit: Unit, content, finished) -> None:
        """Paint the frames with the keyframe method's network, a batch at a time."""
        frames, n = prefetch(content), batch_size(self.job.hw, self.device)
        while batch := list(itertools.islice(frames, n)):
            for (pos, _), result in zip(batch, paint(self.net, [f for _, f in batch])):
                finished(pos - unit.begin, result)

    def _segments(self, unit: Unit, store: UnitStore, done: int) -> None:
        """Encode the finished frames not yet in a segment, every `segment_frames` of them
        (and the last ones once the unit's own frames are all done)."""
        job = self.job
        if job.segment_ext is None:
            return
        a, b = unit.own[0] - unit.begin, unit.own[1] - unit.begin
        while True:
            k0 = store.segments[-1]["k1"] if store.segments else a
            k1 = min(k0 + job.segment_frames, b)
            if k0 >= b or done < k1:
                return
            path = store.segment_path(len(store.segments), job.segment_ext)
            encode_video(store.folder, [store.frame_path(k).name for k in range(k0, k1)], path,
                         job.fps, times=job.times[unit.begin + k0:unit.begin + k1], vfr=job.vfr,
                         frame_duration=job.step, end=job.end_of(unit.begin + k1 - 1),
                         colour=job.colour)
            store.add_segment(path, k0, k1)


def stylize_video(input_path, styles: ImageLike | list[ImageLike], output=None, *,
                  settings: StyleSettings | None = None, video: VideoSettings | None = None,
                  overwrite: bool = False, restart: bool = False, keep_frames: bool = False,
                  progress: bool = False, files: list[Path] | None = None, workers: int = 1,
                  ray: str | None = None, on_event=None) -> VideoReport:
    """Stylize a video file or a folder of numbered frames into a video file (by extension:
    .mp4 .mov .mkv .webm .gif) or a folder of PNG frames, with temporal coherence.

    The clip is planned first (one quick pass finds its shots); the shots (long ones split in
    pieces when several workers share them) are rendered in this process, by `workers`
    local processes (one per GPU, or sharing the CPU cores), or as Ray tasks (`ray`: a
    cluster address, 'auto', or 'local' for a private instance). Finished frames go into
    video segments as the render goes (disk stays near the output's size); the segments are
    joined without re-encoding at the end. Resumable: running the same call again keeps the
    finished units and continues each unfinished one after its last finished frame.
    `on_event(kind, unit, where, detail)` hears of every frame ('frame') and unit ('unit').
    """
    settings, video = settings or StyleSettings(), video or VideoSettings()
    if video.temporal not in TEMPORAL_MODES:
        raise InputError(f"unknown temporal mode '{video.temporal}': use flow, previous or none")
    if video.warp not in WARPS:
        raise InputError(f"unknown warp interpolation '{video.warp}': use bilinear or bicubic")
    if int(workers) != workers or workers < 1:
        raise InputError(f"--workers {workers}: give a whole number, 1 or more")
    styles = styles_list(styles)
    src = Path(input_path)
    if not src.exists():
        raise InputError(f"input not found: {src}: check the path")
    source = open_source(src, video, files, settings.max_pixels)
    output = Path(output) if output is not None else default_output(src, styles, video=True)
    content = source.files if isinstance(source, FrameFolder) else [src]
    inputs = input_paths(content, styles, settings) + ([Path(video.net)] if video.net else [])
    is_video = check_video_output(output, inputs, overwrite)
    given_net = _check_method(video, inputs, overwrite)
    first = parse_position(video.start, source.fps, "--start") or 0
    length = parse_position(video.duration, source.fps, "--duration")
    if length == 0:
        raise InputError("--duration is 0: nothing to render")
    stop = None if length is None else first + length
    if source.frame_count is not None and first >= source.frame_count:
        raise InputError(f"--start is past the end of {src.name} ({source.frame_count} frames)")
    hw = even_size(source.height, source.width, settings.size,
                   min_side([settings.content_layer, *(n for n, _ in settings.style_layers)]))
    style_images = [load(s, "style image", settings.max_pixels) for s in styles]
    spec = SourceSpec(src, files if isinstance(source, FrameFolder) else None, video.fps,
                      settings.max_pixels, first, stop, video.every, source.fingerprint())
    ckpt = Checkpoint(checkpoint_dir(output), _state(
        settings, video, source, (first, stop, video.every, *hw), styles))
    with _engine(workers, ray) as engine, ckpt.opened(restart):  # a missing Ray: at once
        plan = _plan(ckpt, spec, source, video, hw, engine.slots, progress, given_net is None)
        if plan.total == 0:
            raise InputError(f"{src} yielded no frames in the range asked for: check --start "
                             "and --duration")
        fps = source.fps / video.every
        job = Job(settings, video, style_images, _init_image(settings), hw, spec, plan.times,
                  fps, not is_constant_rate(plan.times, 1 / float(fps)),
                  source.info.colour if source.info else Colour(),
                  segment_ext(output) if is_video else None, video.segment_frames, keep_frames)
        report = VideoReport(output=output, fps=float(fps), units=len(plan.units),
                             scene_cuts=list(plan.cuts[1:]))
        if video.method == "keyframes":
            job.net = given_net or _keyframe_net(report, ckpt, plan, job, progress)
            report.net = video.net
        stores = _render(report, ckpt, plan, job, engine, progress, on_event)
        report.frames = plan.total
        expected = None if source.frame_count is None else _expected(source, first, stop, video)
        if expected is not None and 0 < plan.total < expected * 0.9:
            warnings.warn(f"{src.name} ended after {plan.total} of the {expected} frames its "
                          "header announces (truncated?); the result has those frames",
                          stacklevel=2)
        _finish(report, ckpt, plan, job, source, is_video, stores)
    return report


def _check_method(video: VideoSettings, inputs: list[Path], overwrite: bool) -> bytes | None:
    """Before any work: the keyframe method's --net file (returned) and --save-net target."""
    if video.method != "keyframes":
        if video.net or video.save_net:
            raise InputError("--net and --save-net are for --method keyframes: add it, or "
                             "leave them out")
        return None
    if video.save_net:
        check_net_output(Path(video.save_net), inputs, overwrite)
    if video.net:
        load_net(Path(video.net))  # refused here, in one line, if it is not one
        return Path(video.net).read_bytes()
    return None


def _keyframe_net(report: VideoReport, ckpt: Checkpoint, plan: Plan, job: Job,
                  progress: bool) -> bytes:
    """The keyframe method's first two stages, both resumable: paint the plan's keyframes
    with the optimizer and train the network on them. Each shot's keyframes are one chain
    (each from the last one warped along the flow, where the flow can carry it); where it
    cannot (the first of a shot, or one too far from the last), a keyframe starts from the
    network's guess, trained on the keyframes before it for its share of the steps, so that
    it needs the later frames' budget, not the first frame's, and paints in the strokes
    the earlier ones set. Returns the network (file bytes)."""
    keys, store = plan.keys, ckpt.keys()
    done = store.open()
    contents: list[np.ndarray] = []
    next_key = lambda: keys[len(contents)]  # noqa: E731 - frames before it are only grabbed
    for k, frame, _ in job.source.frames(hw=job.hw, decode_from=next_key):
        if k == keys[len(contents)]:
            contents.append(frame)
            if len(contents) == len(keys):
                break
    if len(contents) < len(keys):
        raise RenderError(f"{job.source.path.name} ended before keyframe {len(contents)} "
                          "(changed since the render began?): check the file, then pass "
                          "--restart")
    video, n = job.video, len(keys)
    device = resolve_device(job.settings.device)
    configure(device, job.settings.seed)
    info = {"keyframes": n, "size": list(job.hw), "styles": len(job.styles)}
    training = NetTraining(Training(steps=video.train_steps,
                                    perceptual=video.train_perceptual),
                           job.settings.seed, device, ckpt.net_path, info, job.settings.weights)

    def train(share: float, on_step=None) -> None:  # to this share of the steps (and time)
        secs = video.train_seconds
        training.train_to(round(video.train_steps * share), on_step,
                          None if secs is None else max(0.0, secs * share - training.seconds))

    with tqdm(total=n, initial=done, unit="keyframe", desc="painting keyframes",
              disable=not progress, dynamic_ncols=True, leave=False) as bar:
        stylizer = build_stylizer(job.styles, job.settings) if done < n else None
        renderer, shot = None, None
        for i, (k, content) in enumerate(zip(keys, contents)):
            if plan.shot_of(k) != shot:  # a new shot: a new chain
                renderer, shot = FrameRenderer(stylizer, video), plan.shot_of(k)
            if i < done:
                painted = store.load(i)
                renderer.restore(content, painted)
            else:
                # where the flow cannot carry the last keyframe here (a new shot, or too far),
                # the keyframe starts from the network's guess, trained on the ones before
                if i > 0:
                    train(i / n)
                guess = None if i == 0 else lambda c=content: training.guess(c)
                result, _, _ = renderer.render(content, job.init, guess=guess)
                store.save(i, result, plan.times[k])
                bar.update(1)
                painted = result
            training.add(content, painted)
    if not store.complete:
        store.finish()
    with tqdm(total=video.train_steps, initial=training.trainer.step, unit="step",
              desc="training", disable=not progress, dynamic_ncols=True, leave=False) as bar:
        train(1.0, on_step=lambda i: bar.update(1))
    net, trained = training.net, training.report()
    report.keyframes, report.training = list(keys), trained
    if video.save_net:
        save_net(Path(video.save_net), net, info)
    return net_bytes(net, info)


def _expected(source: Source, first: int, stop: int | None, video: VideoSettings) -> int:
    end = source.frame_count if stop is None else min(stop, source.frame_count)
    return max(0, -(-(end - first) // video.every))


def _engine(workers: int, ray: str | None):
    from nstvideo.video import engines as schedule

    if ray is not None:
        return schedule.RayEngine(ray)
    return schedule.InProcess() if workers == 1 else schedule.LocalPool(workers)


def _plan(ckpt: Checkpoint, spec: SourceSpec, source: Source, video: VideoSettings, hw,
          slots: int, progress: bool, keyframes: bool = False) -> Plan:
    """The plan this render was started with, or a new one: one pass over the frames for
    their times and the shots (cuts by the renderer's own test, on small copies), and where
    `keyframes` (the keyframe method, training a network) the keyframes."""
    saved = ckpt.plan()
    if saved is not None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return Plan.from_json(saved)
    ckpt.drop_units()  # rendered to a plan that is lost: their units may not be these
    times: list[float] = []
    small = scan_size(hw)
    bar = tqdm(total=source.frame_count and _expected(source, spec.first, spec.stop, video),
               unit="frame", desc="finding shots", disable=not progress, dynamic_ncols=True,
               leave=False)
    # the keyframe method's frames are independent: no chain, no overlap; but its keyframes
    # start each shot (found with the flow test)
    chained = video.temporal != "none" and video.method == "optimize"
    find = video.scene_cuts and (chained or video.method == "keyframes")
    chooser = (KeyframeChooser(parse_keyframes(video.keyframes), float(source.fps) / video.every)
               if keyframes else None)

    def seen(k: int, frame: np.ndarray, cut: bool) -> None:
        bar.update(1)
        if chooser is not None:
            chooser.see(k, frame, cut)

    def frames():
        for _, frame, t in spec.frames(source):
            times.append(float(t))
            yield shrink(frame, small)

    with bar:
        test = video.temporal if video.method == "optimize" else "flow"
        cuts = (find_cuts(prefetch(frames()), test, video.flow_preset, on_frame=seen)
                if find else [0])
        if not find:
            for k, frame in enumerate(frames()):
                seen(k, frame, k == 0)
    plan = Plan(times, cuts if times else [], make_units(len(times), cuts, slots, chained,
                                                         video.overlap),
                chooser.keys if chooser is not None and times else [])
    ckpt.save_plan(plan.to_json())
    return plan


def _render(report: VideoReport, ckpt: Checkpoint, plan: Plan, job: Job, engine, progress,
            on_event) -> list[UnitStore]:
    """Render the units not yet finished, with one progress bar over all of them; return
    every unit's store, checked complete."""
    stores = [ckpt.unit(u.index, job.keep_frames) for u in plan.units]
    done = [s.open() for s in stores]
    report.resumed = sum(min(d, u.frames) for d, u in zip(done, plan.units))
    todo = [u for u, s in zip(plan.units, stores) if not s.complete]
    bar = tqdm(total=sum(u.frames for u in plan.units), initial=report.resumed, unit="frame",
               desc=report.output.name, disable=not progress, dynamic_ncols=True)
    rendered, t0 = 0, time.perf_counter()

    def event(kind: str, unit: int, where: str, detail) -> None:
        nonlocal rendered
        if kind == "frame":
            rendered += 1
            bar.update(1)
        elif kind == "unit":
            report.where[where] = report.where.get(where, 0) + 1
            report.scene_cuts.extend(detail.get("cuts", []))
        if on_event is not None:
            on_event(kind, unit, where, detail)

    with bar:
        if todo:
            engine.run(job, todo, ckpt.folder, event)
    report.scene_cuts.sort()
    report.seconds_per_frame = (time.perf_counter() - t0) / max(1, rendered)
    for u in todo:  # written by this run, maybe by other processes: read back and checked
        s = stores[u.index]
        s.open()
        if not s.complete:
            raise RenderError(f"unit {s.folder.name} did not finish (a worker failed?): run the "
                              "same command again to resume")
    return stores


def _finish(report: VideoReport, ckpt: Checkpoint, plan: Plan, job: Job, source: Source,
            is_video: bool, stores: list[UnitStore]) -> None:
    """Join the segments (video), or gather the frames (GIF, folder, --keep-frames)."""
    output, info, times = report.output, source.info, plan.times
    # the audio that plays with the first rendered frame: its time on the file's timeline
    audio = dict(audio_from=source.path if source.has_audio else None,
                 audio_start=max(0.0, (info.video_start - info.start if info else 0.0) + times[0]),
                 audio_duration=job.end_of(plan.total - 1) - times[0])
    if is_video and job.segment_ext is not None:
        segments = []
        with tempfile.TemporaryDirectory(prefix="nstvideo-fade-") as tmp:
            for u, s in zip(plan.units, stores):
                if u.head:
                    segments.append((_fade_segment(Path(tmp), plan, job, u, stores),
                                     job.span(u.begin, u.begin + u.head)))
                segments += [(s.segment_path(r), job.span(u.begin + r["k0"], u.begin + r["k1"]))
                             for r in s.segments]
            report.audio = join_segments(segments, output, frames=plan.total, **audio)
    if job.keep_frames or not is_video or job.segment_ext is None:
        target = output if not is_video else ckpt.folder
        names = ([p.stem + ".png" for p in source.files[job.source.first::job.source.every]]
                 if isinstance(source, FrameFolder) and not is_video else None)
        if target == output:
            output.mkdir(exist_ok=True)
        for k, frame_path in enumerate(_gather(plan, stores, ckpt.folder)):
            dest = target / (names[k] if names else ckpt.frame_path(k).name)
            if frame_path != dest:
                if job.keep_frames or frame_path.parent == ckpt.folder:
                    dest.write_bytes(frame_path.read_bytes())
                else:
                    frame_path.replace(dest)
        if is_video and job.segment_ext is None:  # GIF: encoded from the gathered frames
            report.audio = encode_video(ckpt.folder, [ckpt.frame_path(k).name
                                                      for k in range(plan.total)], output,
                                        job.fps, times=times, vfr=job.vfr,
                                        frame_duration=job.step, colour=job.colour, **audio)
    if source.has_audio and is_video and not report.audio and output.suffix.lower() != ".gif":
        warnings.warn(f"the audio of {source.path.name} could not be carried over",
                      stacklevel=2)
    if job.keep_frames and is_video:
        ckpt.keep_only_frames()
    else:
        ckpt.remove()


def _fade_segment(tmp: Path, plan: Plan, job: Job, unit: Unit, stores) -> Path:
    """The cross-fade between `unit` and the piece before it, encoded as a segment."""
    prev, a, b = plan.units[unit.index - 1], stores[unit.index - 1], stores[unit.index]
    folder = tmp / f"u{unit.index}"
    folder.mkdir()
    for i in range(unit.head):
        write_image(folder / FRAME.format(i),
                    fade(a.load(prev.frames - unit.head + i), b.load(i), i, unit.head))
    path = b.folder / f"fade{job.segment_ext}"
    encode_video(folder, [FRAME.format(i) for i in range(unit.head)], path, job.fps,
                 times=job.times[unit.begin:unit.begin + unit.head], vfr=job.vfr,
                 frame_duration=job.step, end=job.end_of(unit.begin + unit.head - 1),
                 colour=job.colour)
    return path


def _gather(plan: Plan, stores, folder: Path):
    """The path of every output frame's PNG, in order; cross-faded frames are written into
    `folder` first."""
    for u, s in zip(plan.units, stores):
        if u.head:
            prev, a = plan.units[u.index - 1], stores[u.index - 1]
            for i in range(u.head):
                path = folder / f".fade_{u.begin + i:06d}.partial.png"
                write_image(path, fade(a.load(prev.frames - u.head + i), s.load(i), i, u.head))
                yield path
        for k in range(*u.own):
            path = s.frame_path(k - u.begin)
            if not path.exists():  # rendered without --keep-frames: from its segment
                path = folder / f".frame_{k:06d}.partial.png"
                write_image(path, s.decoded(k - u.begin))
            yield path
