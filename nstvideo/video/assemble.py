"""Finishing a render: the units' segments joined into the output without re-encoding, with
the cross-fades between the pieces of a long shot encoded as segments of their own and the
source's audio muxed once (atomic: the output appears complete); or, for GIF, folder and
--keep-frames outputs, every frame gathered in order. Knows nothing of style transfer or of
how the units were rendered.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from nstvideo.media.video import FrameFolder, Source
from nstvideo.media.scratch import scratch_folder
from nstvideo.media.subtitles import TEXT_SUBTITLES
from nstvideo.media.writer import PICTURE_OUTS, join_segments, scratch_path, write_image
from nstvideo.video.checkpoint import Checkpoint
from nstvideo.video.job import Job
from nstvideo.video.names import FADE, FRAME
from nstvideo.video.plan import Plan, Unit
from nstvideo.video.store import UnitStore


def fade(a: np.ndarray, b: np.ndarray, i: int, n: int) -> np.ndarray:
    """Frame i of n of a cross-fade from a (the earlier piece) to b (the later one)."""
    w = (i + 1) / (n + 1)
    return np.clip(np.rint((1 - w) * a.astype(np.float32) + w * b.astype(np.float32)),
                   0, 255).astype(np.uint8)


def _faded(plan: Plan, stores: list[UnitStore], unit: Unit, i: int) -> np.ndarray:
    """Frame i of the cross-fade from the piece before `unit` into it."""
    prev = plan.units[unit.index - 1]
    return fade(stores[unit.index - 1].load(prev.frames - unit.head + i),
                stores[unit.index].load(i), i, unit.head)


def finish(ckpt: Checkpoint, plan: Plan, job: Job, source: Source, output: Path,
           is_video: bool, stores: list[UnitStore], strip_metadata: bool = False) -> bool:
    """Join the segments (video), or gather the frames (GIF, folder, --keep-frames); then the
    render folder goes (or only its frames stay, with --keep-frames). A video keeps the
    source's metadata tags unless `strip_metadata`. Returns whether the output carries the
    source's audio."""
    info, times = source.info, plan.times
    subtitles = info.subtitles if info else ()
    pictures = sorted({codec for codec, _ in subtitles if codec not in TEXT_SUBTITLES})
    if pictures and is_video and output.suffix.lower() not in PICTURE_OUTS:
        warnings.warn(f"the subtitles of {source.path.name} that are pictures, not text "
                      f"({', '.join(pictures)}), are left out", stacklevel=3)
    # the audio that plays with the first rendered frame: its time on the file's timeline
    audio = dict(audio_from=source.path if source.has_audio or subtitles else None,
                 audio_start=max(0.0, (info.video_start - info.start if info else 0.0) + times[0]),
                 audio_duration=job.end_of(plan.total - 1) - times[0],
                 tags=info.tags if info and not strip_metadata else (),
                 subtitles=subtitles)
    has_audio = False
    if is_video and job.segment_ext is not None:
        has_audio = _join(plan, job, output, stores, audio)
    if job.keep_frames or not is_video or job.segment_ext is None:
        _gather(ckpt, plan, job, source, output, is_video, stores)
        if is_video and job.segment_ext is None:  # GIF, WebP, APNG: from the gathered frames
            has_audio = job.encode(ckpt.folder, [ckpt.frame_path(k).name
                                                 for k in range(plan.total)], output,
                                   0, plan.total, **audio)
    has_audio = has_audio and source.has_audio  # (the source's file is passed for subtitles too)
    picture = output.suffix.lower() in PICTURE_OUTS  # (an animated picture: no sound to carry)
    if source.has_audio and is_video and not has_audio and not picture:
        warnings.warn(f"the audio of {source.path.name} could not be carried over",
                      stacklevel=3)
    if job.keep_frames and is_video:
        ckpt.keep_only_frames()
    else:
        ckpt.remove()
    return has_audio


def _join(plan: Plan, job: Job, output: Path, stores: list[UnitStore], audio: dict) -> bool:
    segments = []
    with scratch_folder("fade") as tmp:
        for u, s in zip(plan.units, stores):
            if u.head:
                segments.append((_fade_segment(tmp, plan, job, u, stores),
                                 job.span(u.begin, u.begin + u.head)))
            segments += [(s.segment_path(r), job.span(u.begin + r["k0"], u.begin + r["k1"]))
                         for r in s.segments]
        return join_segments(segments, output, frames=plan.total, **audio)


def _fade_segment(tmp: Path, plan: Plan, job: Job, unit: Unit, stores) -> Path:
    """The cross-fade between `unit` and the piece before it, encoded as a segment."""
    folder = tmp / f"u{unit.index}"
    folder.mkdir()
    names = [FRAME.format(i) for i in range(unit.head)]
    for i, name in enumerate(names):
        write_image(folder / name, _faded(plan, stores, unit, i))
    path = stores[unit.index].folder / FADE.format(job.segment_ext)
    job.encode(folder, names, path, unit.begin, unit.begin + unit.head)
    return path


def _gather(ckpt: Checkpoint, plan: Plan, job: Job, source: Source, output: Path,
            is_video: bool, stores: list[UnitStore]) -> None:
    """Every output frame's PNG, in order, into the output folder (frames in, frames out:
    their own names) or the render folder (GIF, --keep-frames)."""
    target = output if not is_video else ckpt.folder
    names = ([p.stem + ".png" for p in source.files[job.source.first::job.source.every]]
             if isinstance(source, FrameFolder) and not is_video else None)
    if target == output:
        output.mkdir(exist_ok=True)
    for k, frame_path in enumerate(_frame_paths(plan, stores, ckpt.folder)):
        dest = target / (names[k] if names else ckpt.frame_path(k).name)
        if frame_path != dest:
            if job.keep_frames or frame_path.parent == ckpt.folder:
                dest.write_bytes(frame_path.read_bytes())
            else:
                frame_path.replace(dest)


def _frame_paths(plan: Plan, stores: list[UnitStore], folder: Path):
    """The path of every output frame's PNG, in order; cross-faded frames, and frames whose
    PNG went into a segment, are written into `folder` first."""
    for u, s in zip(plan.units, stores):
        for i in range(u.head):
            path = scratch_path(folder, f"fade_{u.begin + i:06d}.png")
            write_image(path, _faded(plan, stores, u, i))
            yield path
        for k in range(*u.own):
            path = s.frame_path(k - u.begin)
            if not path.exists():  # rendered without --keep-frames: from its segment
                path = scratch_path(folder, f"frame_{k:06d}.png")
                write_image(path, s.decoded(k - u.begin))
            yield path
