"""`stylize`: one entry point for any input path, as the CLI uses it. It decides what the input
is (image, folder of photos, ...), where the result goes, and refuses to overwrite anything."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nstvideo.errors import InputError, OutputError
from nstvideo.images import (FolderReport, ImageLike, _init_image, build_stylizer, load,
                             make_settings, run_one, style_tag, stylize_folder)
from nstvideo.media.reader import IMAGE_EXTS, list_images
from nstvideo.media.video import VIDEO_EXTS, image_size, numbered_frames
from nstvideo.media.writer import VIDEO_OUT_EXTS, write_image
from nstvideo.pipeline import VideoReport, stylize_video
from nstvideo.settings import StyleSettings, VideoSettings


@dataclass
class RunReport:
    """The outcome of `stylize`: outputs written, inputs that failed, and the loss parts at the
    start and end of the last optimized image (for single images)."""

    output: Path
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    losses: tuple[dict, dict] | None = None
    video: VideoReport | None = None  # for a video or frame-sequence input

    @property
    def ok(self) -> bool:
        return not self.failed


def default_output(input_path: Path, styles: Sequence[ImageLike]) -> Path:
    """photo.jpg + monet.jpg -> photo_monet.png beside it; holiday/ -> holiday_monet/."""
    tag = style_tag(styles)
    if input_path.is_dir():
        return input_path.parent / f"{input_path.resolve().name}_{tag}"
    return input_path.with_name(f"{input_path.stem}_{tag}.png")


def check_output_file(output: Path, inputs: Sequence[Path], overwrite: bool) -> None:
    """Refuse an output that is one of the inputs, exists (without overwrite), is a folder, or
    sits in a folder that does not exist or cannot be written."""
    for p in inputs:
        if p.exists() and output.exists() and output.resolve() == p.resolve():
            raise OutputError(f"output {output} is one of the inputs: choose another name with -o")
    if output.is_dir():
        raise OutputError(f"output {output} is a folder: give a file name with -o")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} already exists: pass --overwrite to replace it or -o to "
                          "choose another name")
    parent = output.parent
    if not parent.is_dir():
        raise OutputError(f"output folder {parent} does not exist: create it or choose another "
                          "with -o")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable: choose another with -o")
    if output.suffix.lower() not in IMAGE_EXTS:
        raise OutputError(f"output {output.name}: unsupported image extension "
                          f"'{output.suffix}': use .png or .jpg")


def frame_sequence(folder: Path, output: Path | None, video: VideoSettings | None):
    """The frames of `folder` if it is to be rendered as one sequence, else None (photos).

    A sequence when a video output or --fps is asked for, or when the images are numbered
    alike (frame_0001.png ...) and all of one size."""
    wants_video = (output is not None and output.suffix.lower() in VIDEO_OUT_EXTS) or (
        video is not None and video.fps is not None)
    files = numbered_frames(folder)
    if wants_video:
        return files or list_images(folder) or None
    if files and len({image_size(p) for p in files}) == 1:
        return files
    return None


def stylize(input_path: str | os.PathLike, styles: ImageLike | Sequence[ImageLike],
            output: str | os.PathLike | None = None, *, settings: StyleSettings | None = None,
            video: VideoSettings | None = None, overwrite: bool = False, restart: bool = False,
            keep_frames: bool = False, progress: bool = False, **overrides) -> RunReport:
    """Stylize an image, a folder of photos, a folder of numbered frames or a video file, and
    write the result (what the `nstvideo stylize` command does).

    Output: `output` if given, else photo.jpg -> photo_STYLE.png beside the input,
    folder/ -> folder_STYLE/ (same names), clip.mp4 -> clip_STYLE.mp4.
    Videos and frame sequences use `video` (VideoSettings) and are resumable (`restart`
    discards an earlier unfinished render; `keep_frames` keeps the PNG frames).
    """
    settings = make_settings(settings, overrides)
    if isinstance(styles, (str, os.PathLike)) or hasattr(styles, "shape"):
        styles = [styles]
    src = Path(input_path)
    if not src.exists():
        raise InputError(f"input not found: {src}: check the path")
    out = Path(output) if output is not None else None
    frames = frame_sequence(src, out, video) if src.is_dir() else None
    if frames is not None or (src.is_file() and src.suffix.lower() in VIDEO_EXTS):
        rep = stylize_video(src, list(styles), out, settings=settings, video=video,
                            overwrite=overwrite, restart=restart, keep_frames=keep_frames,
                            progress=progress, files=frames)
        return RunReport(output=rep.output, written=[rep.output], video=rep)
    out = out or default_output(src, styles)
    if src.is_dir():
        rep: FolderReport = stylize_folder(src, styles, out, settings=settings,
                                           overwrite=overwrite, progress=progress)
        return RunReport(output=out, written=rep.written, failed=rep.failed)
    style_paths = [Path(s) for s in styles if not hasattr(s, "shape")]
    check_output_file(out, [src, *style_paths], overwrite)
    image = load(src, "content image")
    init = _init_image(settings)
    stylizer = build_stylizer(styles, settings)
    result, opt = run_one(stylizer, image, progress=progress, desc=src.name, init=init)
    write_image(out, result)
    return RunReport(output=out, written=[out], losses=(opt.first, opt.last))
