"""`stylize`: one entry point for any input path, as the CLI uses it. It decides what the input
is (image, folder of photos, ...), where the result goes, and refuses to overwrite anything."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nstvideo.photos import (FolderReport, ImageLike, init_image, build_stylizer, kept_meta,
                             load, make_settings, run_one, stylize_folder)
from nstvideo.masks import mask_paths
from nstvideo.media.photometa import read_meta
from nstvideo.media.scratch import output_lock
from nstvideo.media.reader import existing, list_images
from nstvideo.media.video import is_video_path
from nstvideo.media.writer import write_image
from nstvideo.outputs import VIDEO_OUT_EXTS, check_image_output, default_output, input_paths
from nstvideo.video.render import VideoReport, stylize_video
from nstvideo.settings import StyleSettings, VideoSettings


@dataclass
class RunReport:
    """The outcome of `stylize`: outputs written, inputs that failed, and the loss parts at the
    start and end of the last optimized image (for single images)."""

    output: Path
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # a folder's photos painted before
    losses: tuple[dict, dict] | None = None
    video: VideoReport | None = None  # for a video or frame-sequence input
    memory: str = ""  # a single image: how it fit its memory budget (whole or in tiles, ...)

    @property
    def ok(self) -> bool:
        return not self.failed


def frame_sequence(folder: Path, output: Path | None, video: VideoSettings | None):
    """The images of `folder` if it is to be rendered as one sequence of frames, else None.

    A folder is photos (each on its own, same names and formats) unless a sequence is asked
    for: a video output, a frame rate (--fps) or `video.sequence` (--sequence)."""
    wants = (output is not None and output.suffix.lower() in VIDEO_OUT_EXTS) or (
        video is not None and (video.fps is not None or video.sequence))
    return (list_images(folder) or None) if wants else None


def clip_input(src: Path, output: Path | None,
               video: VideoSettings | None) -> tuple[bool, list[Path] | None]:
    """Whether `src` is rendered as a clip (a video, or a folder as one sequence of frames:
    `frame_sequence`), and the folder's frames."""
    frames = frame_sequence(src, output, video) if src.is_dir() else None
    clip = frames is not None or (src.is_file() and is_video_path(src))
    return clip, frames


def _video_only(video: VideoSettings | None) -> list[str]:
    """The options given in `video` (as the CLI names them) that only a video or a frame
    sequence uses (not --iterations, which photos take too)."""
    if video is None:
        return []
    default = VideoSettings()
    return [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(video)
            if f.name != "iterations" and getattr(video, f.name) != getattr(default, f.name)]


def stylize(input_path: str | os.PathLike, styles: ImageLike | Sequence[ImageLike],
            output: str | os.PathLike | None = None, *, settings: StyleSettings | None = None,
            video: VideoSettings | None = None, overwrite: bool = False, restart: bool = False,
            keep_frames: bool = False, progress: bool = False, workers: int = 1,
            ray: str | None = None, strip_metadata: bool = False, dpi: float | None = None,
            mask=None, **overrides) -> RunReport:
    """Stylize an image, a folder of photos, a folder of numbered frames or a video file, and
    write the result (what the `nstvideo stylize` command does).

    Output: `output` if given, else photo.jpg -> photo_STYLE.jpg beside the input,
    folder/ -> folder_STYLE/ (same names), clip.mp4 -> clip_STYLE.mp4. A folder is photos
    unless `video.sequence`, `video.fps` or a video output asks for one sequence of frames.
    Videos and frame sequences use `video` (VideoSettings) and are resumable (`restart`
    discards an earlier unfinished render; `keep_frames` keeps the PNG frames), and can be
    spread over `workers` local processes (one per GPU) or a Ray cluster (`ray`: an address,
    'auto' or 'local'); see `stylize_video`. Photos keep their metadata (EXIF with the
    orientation reset, XMP) and colour profile (wide-gamut ones converted to sRGB), videos
    their metadata tags (creation time, place, title), unless `strip_metadata` (dates, camera
    and place gone; a photo's profile and print resolution kept). A photo keeps its print
    resolution (DPI) unless `dpi` sets it: a 10800 px result at `dpi=300` prints 36 inches
    wide. `mask`: where to paint, white painted and black kept as the content; one mask per
    style paints each style on its own region (`masks.load_regions`); for a clip, each an
    image for the whole clip or a video or folder of mask frames (`stylize_video`); for a
    folder of photos, a folder of masks named as them.
    """
    settings = make_settings(settings, overrides)
    if isinstance(styles, (str, os.PathLike)) or hasattr(styles, "shape"):
        styles = [styles]
    src = existing(input_path)
    out = Path(output) if output is not None else None
    clip, frames = clip_input(src, out, video)
    if clip:
        if dpi is not None:
            warnings.warn("--dpi: for photos (a print resolution), ignored for videos",
                          stacklevel=2)
        rep = stylize_video(src, list(styles), out, settings=settings, video=video,
                            overwrite=overwrite, restart=restart, keep_frames=keep_frames,
                            progress=progress, files=frames, workers=workers, ray=ray,
                            strip_metadata=strip_metadata, mask=mask)
        return RunReport(output=rep.output, written=[rep.output], video=rep)
    out = out or default_output(src, styles)
    if workers != 1 or ray is not None:
        warnings.warn("--workers and --ray spread the shots of a video; photos are rendered "
                      "in this process (on a GPU, --batch renders several at once)",
                      stacklevel=2)
    ignored = _video_only(video) + (["--keep-frames"] if keep_frames else []) + (
        ["--restart"] if restart else [])
    if ignored:
        warnings.warn(f"{', '.join(ignored)}: for videos and frame sequences, ignored for "
                      "photos (each is optimized on its own)", stacklevel=2)
    if src.is_dir():
        rep: FolderReport = stylize_folder(src, styles, out, settings=settings,
                                           overwrite=overwrite, progress=progress,
                                           strip_metadata=strip_metadata, dpi=dpi, mask=mask)
        return RunReport(output=out, written=rep.written, failed=rep.failed,
                         skipped=rep.skipped)
    inputs = input_paths([src], styles, settings) + mask_paths(mask)
    check_image_output(out, inputs, overwrite)
    with output_lock(out):  # a second run writing the same photo refuses
        check_image_output(out, inputs, overwrite)  # written while we waited to start?
        image = load(src, "content image", settings.max_pixels, settings.size)
        init = init_image(settings)
        stylizer = build_stylizer(styles, settings)
        result, opt = run_one(stylizer, image, progress=progress, desc=src.name, init=init,
                              mask=mask)
        write_image(out, result, kept_meta(read_meta(src), strip_metadata, dpi))
    return RunReport(output=out, written=[out], losses=(opt.first, opt.last),
                     memory=opt.memory.describe() if opt.memory else "")
