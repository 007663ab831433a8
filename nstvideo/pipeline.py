"""The frame loop of a video render: warm start along the optical flow, temporal cost, scene
cuts, checkpoints and resume, progress, and the final encode."""

from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from nstvideo.background import BackgroundWriter, prefetch
from nstvideo.checkpoint import Checkpoint, checkpoint_dir
from nstvideo.errors import InputError, RenderError
from nstvideo.flow import (SCENE_CUT_DIFF, WARPS, FlowEstimator, FramePair, analyse,
                           frame_difference, static_pixels, warp)
from nstvideo.images import ImageLike, _init_image, build_stylizer, load, reason, styles_list
from nstvideo.media.reader import MAX_PIXELS
from nstvideo.media.video import Colour, FrameFolder, Source, VideoFile, file_fingerprint
from nstvideo.media.writer import encode_video
from nstvideo.outputs import check_video_output, default_output, input_paths
from nstvideo.optimize import EarlyStop
from nstvideo.settings import TEMPORAL_MODES, StyleSettings, VideoSettings
from nstvideo.stylizer import Stylizer, Temporal
from nstvideo.tensors import fit_checked, resize, to_image, to_tensor
from nstvideo.vgg import min_side


@dataclass
class VideoReport:
    output: Path
    frames: int = 0  # frames in the result
    resumed: int = 0  # of which were already done by an earlier run
    audio: bool = False  # the result carries the source's audio
    scene_cuts: list[int] = field(default_factory=list)  # output positions where it restarted
    seconds_per_frame: float = 0.0  # of the frames rendered by this run
    fps: float = 0.0  # the result's frame rate


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
    files = {"init": settings.init, "weights": settings.weights}
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
               compared: FramePair | float | None = None):
        """Stylize one content frame (RGB uint8 at the processing size); `compared` is
        `compare(previous content, content)` where already computed.

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
        if start is None:
            start = s.initial(content_t, init)
        # a chain's first frame starts from the content and gets the larger budget; with
        # temporal none every frame is independent and gets `iterations`, as asked
        iterations = self.first_iterations if restart and v.temporal != "none" else v.iterations
        x, report = s.run(content_t, start, iterations=iterations, temporal=temporal,
                          early_stop=self.early_stop, on_step=on_step)
        result = to_image(x)
        self.prev_content, self.prev_result = content, result
        if static is None:
            self.reference = content.astype(np.float32)
        else:
            self.reference[~static] = content[~static]
        return result, report, restart and had_previous and v.temporal != "none"


def stylize_video(input_path, styles: ImageLike | list[ImageLike], output=None, *,
                  settings: StyleSettings | None = None, video: VideoSettings | None = None,
                  overwrite: bool = False, restart: bool = False, keep_frames: bool = False,
                  progress: bool = False, files: list[Path] | None = None) -> VideoReport:
    """Stylize a video file or a folder of numbered frames into a video file (by extension:
    .mp4 .mov .mkv .webm .gif) or a folder of PNG frames, with temporal coherence.

    Resumable: finished frames are kept in OUTPUT.frames/ beside the output until the video is
    encoded; running the same call again continues after the last finished frame.
    """
    settings, video = settings or StyleSettings(), video or VideoSettings()
    if video.temporal not in TEMPORAL_MODES:
        raise InputError(f"unknown temporal mode '{video.temporal}': use flow, previous or none")
    if video.warp not in WARPS:
        raise InputError(f"unknown warp interpolation '{video.warp}': use bilinear or bicubic")
    styles = styles_list(styles)
    src = Path(input_path)
    if not src.exists():
        raise InputError(f"input not found: {src}: check the path")
    source = open_source(src, video, files, settings.max_pixels)
    output = Path(output) if output is not None else default_output(src, styles, video=True)
    content = source.files if isinstance(source, FrameFolder) else [src]
    is_video = check_video_output(output, input_paths(content, styles, settings), overwrite)
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
    ckpt = Checkpoint(checkpoint_dir(output), _state(
        settings, video, source, (first, stop, video.every, *hw), styles))
    done = ckpt.open(restart)
    with ckpt:
        report = VideoReport(output=output, resumed=done, fps=float(source.fps / video.every))
        _render(report, ckpt, source, style_images, settings, video, hw, (first, stop),
                progress)
        if report.frames == 0:
            raise InputError(f"{src} yielded no frames in the range asked for: check --start "
                             "and --duration")
        _finish(report, ckpt, source, is_video, first, keep_frames, video)
    return report


def _render(report: VideoReport, ckpt: Checkpoint, source: Source, style_images, settings,
            video: VideoSettings, hw, span, progress: bool) -> None:
    """Render the frames not yet in the checkpoint, in order, writing each as it is done."""
    (first, stop), done = span, ckpt.done()
    stylizer = build_stylizer(style_images, settings)
    init = _init_image(settings)
    renderer = FrameRenderer(stylizer, video)
    total = None
    if source.frame_count is not None:
        end = source.frame_count if stop is None else min(stop, source.frame_count)
        total = max(0, -(-(end - first) // video.every))

    def frames():  # runs ahead in a thread: decode, resize and compare with the previous frame
        prev = None
        for k, (_, frame, t) in enumerate(source.frames(first, stop, video.every,
                                                        decode_from=max(0, done - 1))):
            if frame is None:  # before the last finished frame of a resumed render
                continue
            frame = resize(frame, hw)
            yield k, frame, t, (None if prev is None or k < done
                                else renderer.compare(prev, frame))
            prev = frame

    rendered, t0 = 0, time.perf_counter()
    bar = tqdm(total=total, initial=min(done, total or done), unit="frame",
               desc=report.output.name, disable=not progress, dynamic_ncols=True)
    with bar, BackgroundWriter() as writer:
        for k, frame, t, compared in prefetch(frames()):
            if k < done:
                if k == done - 1:
                    renderer.restore(frame, ckpt.load(k))
                continue
            try:
                result, rep, cut = renderer.render(frame, init, compared=compared)
            except cv2.error as e:
                raise RenderError(f"OpenCV failed on frame {k} ({reason(e)}): check the input "
                                  "plays, or report it") from e
            writer.submit(ckpt.save, k, result, t)
            if cut:
                report.scene_cuts.append(k)
            rendered += 1
            bar.update(1)
            bar.set_postfix(its=rep.iterations, loss=f"{rep.last['total']:.3g}", refresh=False)
    report.frames = ckpt.done()
    if total is not None and 0 < report.frames < total * 0.9:
        warnings.warn(f"{source.path.name} ended after {report.frames} of the {total} frames "
                      "its header announces (truncated?); the result has those frames",
                      stacklevel=3)
    report.seconds_per_frame = (time.perf_counter() - t0) / max(1, rendered)


def _finish(report: VideoReport, ckpt: Checkpoint, source: Source, is_video: bool, first: int,
            keep_frames: bool, video: VideoSettings) -> None:
    """Encode the checkpointed frames (video) or move them into place (folder of frames)."""
    output = report.output
    if is_video:
        info = source.info
        times = ckpt.times()
        if times is None:  # frames of a folder: evenly spaced at the given rate
            times = [k * video.every / float(source.fps) for k in range(report.frames)]
        step = video.every / float(source.fps)  # nominal spacing of the rendered frames
        # the audio that plays with the first rendered frame: its time on the file's timeline
        audio_start = (info.video_start - info.start if info else 0.0) + times[0]
        report.audio = encode_video(
            ckpt.folder, [ckpt.frame_path(k).name for k in range(report.frames)], output,
            source.fps / video.every, times=times, frame_duration=step,
            audio_from=source.path if source.has_audio else None,
            audio_start=max(0.0, audio_start), audio_duration=times[-1] - times[0] + step,
            colour=info.colour if info else Colour())
        if source.has_audio and not report.audio:
            warnings.warn(f"the audio of {source.path.name} could not be carried over",
                          stacklevel=2)
        if not keep_frames:
            ckpt.remove()
        return
    output.mkdir(exist_ok=True)
    names = ([p.stem + ".png" for p in source.files[first::video.every]]
             if isinstance(source, FrameFolder) else None)
    for k in range(report.frames):
        target = output / (names[k] if names else ckpt.frame_path(k).name)
        if keep_frames:
            target.write_bytes(ckpt.frame_path(k).read_bytes())
        else:
            ckpt.frame_path(k).replace(target)
    if not keep_frames:
        ckpt.remove()
