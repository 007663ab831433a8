"""The video entry: `stylize_video` turns options into a job and calls each step of the render
in turn: check the inputs, open the render folder (nstvideo.video.checkpoint), plan
(nstvideo.video.plan), for the keyframe method paint keyframes and train
(nstvideo.video.keyframes), run the units on an engine (nstvideo.video.engines, .cluster),
assemble the output (nstvideo.video.assemble); and it writes the report. Knows nothing of how
a frame is painted or where a unit runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nstvideo.errors import InputError, RenderError
from nstvideo.media.reader import existing
from nstvideo.media.probe import Colour
from nstvideo.media.video import FrameFolder, Source, open_source
from nstvideo.media.writer import encode_image, is_constant_rate, segment_ext, write_file
from nstvideo.net import load_net
from nstvideo.outputs import check_net_output, check_video_output, default_output, input_paths
from nstvideo.masks import mask_paths
from nstvideo.photos import ImageLike, init_image, load_styles, styles_list
from nstvideo.record import fingerprint, style_state
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.device import resolve_device, use_bf16
from nstvideo.style.memory import GIB, budget, default_budget, plan as memory_plan, release
from nstvideo.style.vgg import min_side
from nstvideo.video.assemble import finish
from nstvideo.video.checkpoint import Checkpoint, checkpoint_dir
from nstvideo.video.clipmasks import clip_masks
from nstvideo.video.engines import Engine, Event, InProcess, LocalPool
from nstvideo.video.job import Job, SourceSpec, even_size, parse_position
from nstvideo.video.keyframes import PaintRunner, RefineRunner, keyframe_net
from nstvideo.video.plan import Plan, scan, unit_threads
from nstvideo.video.store import UnitStore
from nstvideo.video.unit import OptimizeRunner


RUNNERS = {"optimize": OptimizeRunner, "keyframes": PaintRunner, "fast": RefineRunner}


@dataclass
class VideoReport:
    output: Path
    frames: int = 0  # frames in the result
    resumed: int = 0  # of which were already done by an earlier run
    audio: bool = False  # the result carries the source's audio
    scene_cuts: list[int] = field(default_factory=list)  # output positions where it restarted
    seconds_per_frame: float = 0.0  # of the frames rendered by this run (wall clock)
    fps: float = 0.0  # the result's frame rate (a variable one's average over the range)
    variable_rate: bool = False  # the frames keep the source's uneven times
    units: int = 0  # shots and pieces of shots the render was planned in
    where: dict[str, int] = field(default_factory=dict)  # units rendered by this run, by worker
    keyframes: list[int] = field(default_factory=list)  # keyframe method: output positions
    training: dict = field(default_factory=dict)  # ... and its network's training (steps, loss)
    net: str | None = None  # keyframe method: the network file it painted with (--net)
    threads: int | None = None  # torch threads each unit rendered with (the plan's)
    memory: str = ""  # how a frame fits its memory budget and its estimated peak (the plan)


def stylize_video(input_path, styles: ImageLike | list[ImageLike], output=None, *,
                  settings: StyleSettings | None = None, video: VideoSettings | None = None,
                  overwrite: bool = False, restart: bool = False, keep_frames: bool = False,
                  progress: bool = False, files: list[Path] | None = None, workers: int = 1,
                  ray: str | None = None, on_event=None,
                  strip_metadata: bool = False, mask=None) -> VideoReport:
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
    A video output keeps the source's metadata (when and where it was filmed, its title),
    unless `strip_metadata`. `mask`: where to paint, one or one per style
    (nstvideo.video.clipmasks): each a still image for the whole clip, or a video or a
    folder of mask frames, one per frame; the rest stays the content.
    """
    settings, video = settings or StyleSettings(), video or VideoSettings()
    if int(workers) != workers or workers < 1:
        raise InputError(f"--workers {workers}: give a whole number, 1 or more")
    styles = styles_list(styles)
    spec, source, output, is_video, given_net, video = _check(input_path, styles, output,
                                                              settings, video, files, overwrite,
                                                              mask)
    masks = clip_masks(mask, spec, source, len(styles))
    hw = frame_size(source, settings)
    settings = _shared_memory(settings, workers, ray)
    fits = frame_memory(settings, hw, len(masks.masks) if masks else 0)  # refused here,
    # before the pass over the clip
    style_images = load_styles(styles, settings)
    ckpt = Checkpoint(checkpoint_dir(output), _state(
        settings, video, spec, (spec.first, spec.stop, video.every, *hw), styles, masks))
    with _engine(workers, ray) as engine, ckpt.opened(restart):  # a missing Ray: at once
        ckpt.note_command(f"Ray ({ray})" if ray is not None else
                          "this process" if workers == 1 else f"{workers} local workers")
        plan = _plan(ckpt, spec, source, settings, video, hw, engine, progress,
                     keyframes=video.trains_net and given_net is None)
        damaged = source.damaged  # found by the plan's pass over the clip (none on a resume)
        job = make_job(settings, video, style_images, hw, spec, source, plan,
                   segment_ext(output) if is_video else None, keep_frames)
        job.masks = masks
        report = VideoReport(output=output, fps=job.rate, variable_rate=job.vfr,
                             units=len(plan.units),
                             scene_cuts=list(plan.cuts[1:]), threads=plan.threads, memory=fits)
        if video.trains_net:
            job.net = given_net or _keyframes(report, ckpt, plan, job, progress)
            report.net = video.net
        stores = _render(report, ckpt, plan, job, engine, progress, on_event)
        report.frames = plan.total
        if damaged:
            warnings.warn(f"{spec.path.name} has {damaged} damaged frame(s) that could not be "
                          "decoded: skipped, the frame before held in their place",
                          stacklevel=2)
        expected = spec.expected(source)
        if expected is not None and 0 < plan.total + damaged < expected * 0.9:
            warnings.warn(f"{spec.path.name} ended after {plan.total} of the {expected} frames "
                          "its header announces (truncated?); the result has those frames",
                          stacklevel=2)
        report.audio = finish(ckpt, plan, job, source, output, is_video, stores,
                              strip_metadata)
    return report


def _check(input_path, styles: list, output, settings: StyleSettings, video: VideoSettings,
           files: list[Path] | None, overwrite: bool, mask=None):
    """Everything that can be refused before any work, in order: the input, the output, the
    keyframe method's files, the range. Returns (source spec, opened source, output path,
    whether the output is a video, the bytes of a --net given, the video settings with an
    --every past the range's end brought to its length)."""
    src = existing(input_path)
    source = open_source(src, files, video.fps, settings.max_pixels)
    if getattr(source, "note", None):
        warnings.warn(source.note, stacklevel=3)
    output = Path(output) if output is not None else default_output(src, styles, video=True)
    content = source.files if isinstance(source, FrameFolder) else [src]
    inputs = input_paths(content, styles, settings) + ([Path(video.net)] if video.net else []) + \
        mask_paths(mask)
    is_video = check_video_output(output, inputs, overwrite)
    given_net = _check_method(video, inputs, overwrite)
    spec, video = clip_range(src, source, video, settings, files)
    return spec, source, output, is_video, given_net, video


def clip_range(src: Path, source: Source, video: VideoSettings, settings: StyleSettings,
               files: list[Path] | None) -> tuple[SourceSpec, VideoSettings]:
    """The range of `source` (opened from `src`) to render, from --start, --duration and
    --every (refused in one line where it holds nothing), as a spec any process can open;
    with the video settings, an --every past the range's end brought to its length."""
    first = parse_position(video.start, source.fps, "--start") or 0
    length = parse_position(video.duration, source.fps, "--duration")
    if length == 0:
        raise InputError("--duration is 0: nothing to render")
    if source.frame_count is not None and first >= source.frame_count:
        raise InputError(f"--start is past the end of {src.name} ({source.frame_count} frames)")
    span = length if length is not None else (
        None if source.frame_count is None else source.frame_count - first)
    if span is not None and video.every > span:  # one frame, shown for the whole range
        warnings.warn(f"--every {video.every} is more than the {span} frames rendered: one "
                      "frame is painted, shown for the range's whole duration", stacklevel=3)
        video = video.replace(every=span)
    spec = SourceSpec(src, files if isinstance(source, FrameFolder) else None, video.fps,
                      settings.max_pixels, first, None if length is None else first + length,
                      video.every, source.fingerprint())
    return spec, video


def _check_method(video: VideoSettings, inputs: list[Path], overwrite: bool) -> bytes | None:
    """Before any work: the keyframe method's --net file (returned) and --save-net target."""
    if not video.trains_net:
        if video.net or video.save_net:
            raise InputError("--net and --save-net are for --method keyframes or fast: add "
                             "one, or leave them out")
        return None
    if video.save_net:
        check_net_output(Path(video.save_net), inputs, overwrite)
    if video.net:
        load_net(Path(video.net))  # refused here, in one line, if it is not one
        return Path(video.net).read_bytes()
    return None


def _state(settings: StyleSettings, video: VideoSettings, spec: SourceSpec, rng,
           styles, masks=None) -> dict:
    state = style_state(settings, styles)
    vid = dataclasses.asdict(video)
    vid.pop("segment_frames")  # how the result is stored on the way, not what it is
    vid.pop("save_net")  # a copy of the network, not the result
    vid.pop("threads")  # the plan records the threads the render uses
    if vid["method"] == "optimize":  # as before the keyframe method: earlier renders resume
        for name in ("method", "keyframes", "train_steps", "train_seconds", "train_perceptual",
                     "net"):
            vid.pop(name)
    if vid.get("method") != "fast":  # as before the fast method
        vid.pop("refine_iterations")
    vid["warp"] = video.interpolation  # auto as what it means (as before auto)
    vid["temporal_weight"] = video.tau  # the same
    if video.net and Path(video.net).is_file():
        state["files"]["net"] = fingerprint(video.net)
    if masks is not None:  # (a render without masks keeps the state it had before them)
        state["masks"] = masks.fingerprints()
    return {**state, "video": vid, "input": spec.fingerprint, "range": list(rng)}


def _shared_memory(settings: StyleSettings, workers: int, ray: str | None) -> StyleSettings:
    """Local CPU workers share this machine's RAM: each plans within its share of the
    default budget (a GPU worker has its own GPU's memory; a Ray task its node's)."""
    if settings.max_memory is not None or workers == 1 or ray is not None:
        return settings
    device = resolve_device(settings.device)
    if device.type != "cpu":
        return settings
    return settings.replace(max_memory=default_budget(device) / workers / GIB)


def frame_size(source: Source, settings: StyleSettings) -> tuple[int, int]:
    """The frames' processing size: the longest side --size, even sides, the short side at
    least what the VGG layers used need."""
    layers = (settings.content_layer, *(n for n, _ in settings.style_layers))
    return even_size(source.height, source.width, settings.size, min_side(layers))


def frame_memory(settings: StyleSettings, hw, regions: int = 0) -> str:
    """How one frame of size hw (painted in `regions` masked regions) fits its budget (in one
    line for the report); refuses in one line, before any work, a frame size that cannot fit
    even in tiles."""
    layers = (settings.content_layer, *(n for n, _ in settings.style_layers))
    device = resolve_device(settings.device)
    return memory_plan(hw, layers, device, budget(settings.max_memory, device),
                       tile=settings.tile, temporal=True, regions=regions,
                       bf16=use_bf16(settings.precision, device)).describe()


def _engine(workers: int, ray: str | None) -> Engine:
    if ray is not None:
        from nstvideo.video.cluster import RayEngine

        return RayEngine(ray)
    return InProcess() if workers == 1 else LocalPool(workers)


def _plan(ckpt: Checkpoint, spec: SourceSpec, source: Source, settings: StyleSettings,
          video: VideoSettings, hw, engine: Engine, progress: bool,
          keyframes: bool = False) -> Plan:
    """The plan this render was started with, or a new one (saved at once), made for this
    engine's slots and threads."""
    saved = ckpt.plan()
    if saved is not None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            return Plan.from_json(saved)
    ckpt.drop_units()  # rendered to a plan that is lost: their units may not be these
    plan = new_plan(spec, source, settings, video, hw, engine, progress, keyframes)
    ckpt.save_plan(plan.to_json())
    return plan


def new_plan(spec: SourceSpec, source: Source, settings: StyleSettings, video: VideoSettings,
             hw, engine: Engine, progress: bool, keyframes: bool = False) -> Plan:
    """A plan made by one pass over the clip, for this engine's slots and threads; a range
    without frames refused in one line."""
    on_cpu = resolve_device(settings.device).type == "cpu"
    threads = unit_threads(video, settings.seed is not None, on_cpu, engine.threads)
    plan = scan(spec, source, video, hw, engine.slots, threads, keyframes, progress)
    if plan.total == 0:
        raise InputError(f"{spec.path} yielded no frames in the range asked for: check --start "
                         "and --duration")
    return plan


def make_job(settings: StyleSettings, video: VideoSettings, styles: list[np.ndarray], hw,
         spec: SourceSpec, source: Source, plan: Plan, ext: str | None,
         keep_frames: bool) -> Job:
    fps = source.fps / video.every
    return Job(settings, video, styles, init_image(settings), hw, spec, plan.times, fps,
               not is_constant_rate(plan.times, 1 / float(fps)),
               source.info.colour if source.info else Colour(), ext, video.segment_frames,
               keep_frames, RUNNERS[video.method], plan.threads, end=plan.end)


def _keyframes(report: VideoReport, ckpt: Checkpoint, plan: Plan, job: Job,
               progress: bool) -> bytes:
    """The keyframe method's network: keyframes painted and the network trained (resumable),
    saved where --save-net asks. The fast method's units also get the keyframes that begin a
    shot, as painted (a chain starts from them)."""
    keys = ckpt.keys()
    net, report.training = keyframe_net(job, plan, keys, ckpt.net_path, progress)
    # the stage's VGG, network and optimizer are gone: their cached GPU memory goes back
    # before workers start on the same GPU (or this process's own units need it)
    release(resolve_device(job.settings.device))
    report.keyframes = list(plan.keys)
    if job.video.method == "fast":  # (with a mask clip every keyframe: a chain's backdrop)
        every = job.masks is not None and job.masks.moving
        job.painted = {k: encode_image(keys.load(i), ".png") for i, k in enumerate(plan.keys)
                       if every or k in plan.cuts}
    if job.video.save_net:
        write_file(Path(job.video.save_net), net)
    return net


def _render(report: VideoReport, ckpt: Checkpoint, plan: Plan, job: Job, engine: Engine,
            progress: bool, on_event) -> list[UnitStore]:
    """Render the units not yet finished, with one progress bar over all of them; return
    every unit's store, checked complete."""
    stores = [ckpt.unit(u.index, job.keep_frames) for u in plan.units]
    done = [s.open() for s in stores]
    report.resumed = sum(min(d, u.frames) for d, u in zip(done, plan.units))
    todo = [u for u, s in zip(plan.units, stores) if not s.complete]
    bar = tqdm(total=sum(u.frames for u in plan.units), initial=report.resumed, unit="frame",
               desc=report.output.name, disable=not progress, dynamic_ncols=True)
    rendered, t0 = 0, time.perf_counter()

    def event(e: Event) -> None:
        nonlocal rendered
        if e.kind == "frame":
            rendered += 1
            bar.update(1)
        elif e.kind == "unit":
            report.where[e.where] = report.where.get(e.where, 0) + 1
            report.scene_cuts.extend(e.detail.get("cuts", []))
        if on_event is not None:
            on_event(*e)

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
