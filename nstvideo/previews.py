"""`preview`: before a long render, a few of its frames painted exactly as the render would
paint them, side by side with their sources on one PNG sheet, one row per setting tried
(`vary`), and the time the whole render would take on this device by each method (what the
`nstvideo preview` command does). A clip's frames: nstvideo.video.preview; the sheet:
nstvideo.sheet."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nstvideo.api import clip_input
from nstvideo.errors import InputError, OutputError
from nstvideo.masks import mask_folders, mask_paths, photo_masks
from nstvideo.media.reader import existing
from nstvideo.media.writer import encode_image, write_file
from nstvideo.outputs import check_image_output, default_output, input_paths
from nstvideo.photos import (ImageLike, build_stylizer, folder_photos, header_size,
                             init_image, load, load_styles, make_settings, run_one,
                             styles_list)
from nstvideo.settings import METHODS, StyleSettings, VideoSettings
from nstvideo.sheet import draw_sheet
from nstvideo.style.tensors import fit_longest, resize
from nstvideo.video.preview import (DEFAULT_FRAMES, choose, open_clip, paint_row, project,
                                    read_frames, row_job)
from nstvideo.video.status import span_text

# what --vary may name, as the stylize option is spelled: (StyleSettings field or None,
# VideoSettings field or None, type)
VARIABLE = {
    "style-weight": ("style_weight", None, float),
    "style-scale": ("style_scale", None, float),
    "content-weight": ("content_weight", None, float),
    "tv-weight": ("tv_weight", None, float),
    "size": ("size", None, int),
    "iterations": ("iterations", "iterations", int),
    "method": (None, "method", str),
}


@dataclass
class PreviewFrame:
    label: str  # where it is: its time in the clip, or the photo's name
    source: np.ndarray  # at the processing size
    result: np.ndarray
    seconds: float  # what painting it took
    time: float | None = None  # a clip's frame: its time in the source, seconds
    shot_start: bool = True  # a clip's frame: the first of a shot (else painted as one)


@dataclass
class PreviewRow:
    label: str  # the setting tried ("style-weight=1e-4"), "" without --vary
    frames: list[PreviewFrame]
    projection: dict[str, float]  # seconds the whole render would take: by method for a
    # clip ('optimize', 'fast', 'keyframes'), else 'photo' or 'photos'
    notes: list[str] = field(default_factory=list)
    measured: dict[str, float | None] = field(default_factory=dict)  # what the projection
    # rests on, in seconds (a clip: nstvideo.video.preview.Timings)

    def line(self) -> str:
        times = ", ".join(f"{k} {span_text(v)}" for k, v in self.projection.items())
        return (f"{self.label}: " if self.label else "") + "the whole render: " + times


@dataclass
class PreviewReport:
    sheet: Path | None  # the PNG written (None: not asked to write)
    image: np.ndarray  # the sheet
    rows: list[PreviewRow]
    total: int  # frames the render would paint, or photos of the folder
    kind: str  # 'clip', 'photos' or 'photo'


def parse_vary(vary: str | None) -> tuple[str, list[str]]:
    """'style-weight=1e-4,3e-4' -> ('style-weight', ['1e-4', '3e-4']); None -> ('', [''])."""
    if not vary:
        return "", [""]
    name, sep, values = vary.partition("=")
    name = name.strip().lstrip("-")
    if name not in VARIABLE or not sep:
        raise InputError(f"--vary {vary}: give NAME=V1,V2,... with NAME one of "
                         f"{', '.join(VARIABLE)}")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not items:
        raise InputError(f"--vary {vary}: give the values after '=', e.g. {name}=1,2")
    return name, items


def varied(settings: StyleSettings, video: VideoSettings, name: str,
           text: str) -> tuple[StyleSettings, VideoSettings]:
    """The settings with `name` (a VARIABLE) set to `text` (checked as the option would be)."""
    if not name:
        return settings, video
    style_field, video_field, kind = VARIABLE[name]
    try:
        value = kind(text)
    except ValueError as e:
        raise InputError(f"--vary {name}={text}: '{text}' is not a "
                         f"{'whole ' if kind is int else ''}number") from e
    if name == "method" and value not in METHODS:
        raise InputError(f"--vary method={text}: give methods among {', '.join(METHODS)}")
    if style_field:
        settings = settings.replace(**{style_field: value})
    if video_field:
        video = video.replace(**{video_field: value})
    return settings, video


def preview_output(src: Path, styles: Sequence) -> Path:
    """Beside the input: clip.mp4 -> clip_monet_preview.png, holiday/ -> holiday_monet_preview.png."""
    out = default_output(src, styles)
    return out.with_name(out.name.removesuffix(out.suffix) + "_preview.png")


def preview(input_path: str | os.PathLike, styles: ImageLike | Sequence[ImageLike],
            output: str | os.PathLike | None = None, *, settings: StyleSettings | None = None,
            video: VideoSettings | None = None, frames: int | None = None,
            at: Sequence[str] | None = None, vary: str | None = None, mask=None,
            overwrite: bool = False, progress: bool = False, write: bool = True,
            **overrides) -> PreviewReport:
    """Paint a few frames of a render as the render would paint them, to choose its settings.

    A clip (a video, or a folder as one sequence of frames): `frames` frames (by default one
    per shot, up to 4, spread over the clip), or the frames at the times `at` ('12.5',
    '0:01:10', '300f'), each painted as the render paints a shot's first frame (same job,
    settings, method, threads and seed: the optimize method's frames equal the render's at the
    shots' starts). A folder of photos: `frames` of its photos, spread over it (4 by default);
    a photo: the photo. `vary` ('style-weight=1e-4,3e-4'): one row per value, the rest as
    given (NAME: style-weight, style-scale, content-weight, tv-weight, size, iterations,
    method). Returns the rows (each frame's source, result and seconds, and each row's
    projected time of the whole render on this device by method: optimize, fast and
    keyframes for a clip) and the sheet, written as a PNG to `output` (by default beside the
    input, INPUT_STYLE_preview.png) unless `write` is False.
    """
    settings, video = make_settings(settings, overrides), video or VideoSettings()
    styles = styles_list(styles)
    src = existing(input_path)
    name, values = parse_vary(vary)
    variants = [(f"{name}={v}" if name else "", *varied(settings, video, name, v))
                for v in values]
    out = Path(output) if output is not None else preview_output(src, styles)
    clip, files = clip_input(src, None, video)
    if write:
        if out.suffix.lower() != ".png":
            raise OutputError(f"-o {out.name}: a preview sheet is a PNG: give a name ending "
                              "in .png")
        check_image_output(out, input_paths([src], styles, settings) + mask_paths(mask),
                           overwrite)
    if clip:
        rows, total = _clip_rows(src, files, styles, settings, video, variants, frames, at,
                                 mask, progress)
    else:
        if at:
            raise InputError("--at picks times in a clip: for photos, give --frames N")
        if name == "method":
            raise InputError("--vary method: the methods are for clips; photos are optimized")
        rows, total = _photo_rows(src, styles, variants, frames, mask, progress)
    image = draw_sheet([(r.line(), [(f.source, f.result, f.label) for f in r.frames])
                        for r in rows])
    if write:
        write_file(out, encode_image(image, ".png"))
    kind = "clip" if clip else "photos" if src.is_dir() else "photo"
    return PreviewReport(out if write else None, image, rows, total, kind)


def _clip_rows(src: Path, files, styles, settings: StyleSettings, video: VideoSettings,
               variants, count: int | None, at, mask, progress: bool):
    clip = open_clip(src, settings, video, files, progress, mask, len(styles))
    positions = choose(clip, count, list(at) if at else None)
    rows = []
    for label, s, v in variants:
        job = row_job(clip, s, v.replace(every=clip.spec.every), load_styles(styles, s),
                      clip.masks)
        content, masks = read_frames(job, positions)
        painted, timings = paint_row(job, clip.plan, positions, content, clip.scan_seconds,
                                     masks)
        frames = [PreviewFrame(_clock(p.time) + ("" if p.shot_start else " (in a shot)")
                               + f", {p.seconds:.1f} s", p.source, p.result, p.seconds,
                               p.time, p.shot_start)
                  for p in painted]
        measured = {k: t for k, t in dataclasses.asdict(timings).items() if k != "notes"}
        rows.append(PreviewRow(label, frames, project(clip.plan, timings, job.video, job.hw),
                               timings.notes, measured))
    return rows, clip.plan.total


def _clock(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:04.1f}"


def _photo_rows(src: Path, styles, variants, count: int | None, mask, progress: bool):
    if src.is_dir():
        photos = folder_photos(src, default_output(src, styles))
        want = min(count or DEFAULT_FRAMES, len(photos))
        picks = sorted({i * len(photos) // want for i in range(want)})
        chosen = [photos[i] for i in picks]
        masks = photo_masks(chosen, src, mask_folders(mask))
    else:
        photos = chosen = [src]
        masks = {src: mask}
    rows = []
    for label, s, _ in variants:
        t0 = time.perf_counter()
        stylizer, init = build_stylizer(styles, s), init_image(s)
        built = time.perf_counter() - t0
        frames, pixels = [], 0
        for photo in chosen:
            image = load(photo, "photo", s.max_pixels, s.size)
            t0 = time.perf_counter()
            result, _ = run_one(stylizer, image, progress=progress, desc=photo.name,
                                init=init, mask=masks.get(photo))
            seconds = time.perf_counter() - t0
            frames.append(PreviewFrame(f"{photo.name}, {seconds:.1f} s",
                                       resize(image, result.shape[:2]), result, seconds))
            pixels += result.shape[0] * result.shape[1]
        rate = sum(f.seconds for f in frames) / pixels
        sizes = [header_size(p) for p in photos]
        everything = sum(np.prod(fit_longest(h, w, s.size)) for w, h in sizes if w and h)
        key = "photos" if src.is_dir() else "photo"
        rows.append(PreviewRow(label, frames, {key: built + rate * everything}))
    return rows, len(photos)
