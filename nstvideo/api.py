"""`stylize`: one entry point for any input path, as the CLI uses it. It decides what the input
is (image, folder of photos, ...), where the result goes, and refuses to overwrite anything."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nstvideo.errors import InputError, OutputError
from nstvideo.images import (FolderReport, ImageLike, build_stylizer, load, make_settings,
                             run_one, stylize_folder, _init_image)
from nstvideo.media.reader import IMAGE_EXTS
from nstvideo.media.writer import write_image
from nstvideo.settings import StyleSettings


@dataclass
class RunReport:
    """The outcome of `stylize`: outputs written, inputs that failed, and the loss parts at the
    start and end of the last optimized image (for single images)."""

    output: Path
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    losses: tuple[dict, dict] | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def _style_tag(styles: Sequence[ImageLike]) -> str:
    names = [Path(s).stem if not hasattr(s, "shape") else "style" for s in styles]
    return "_".join(names)


def default_output(input_path: Path, styles: Sequence[ImageLike]) -> Path:
    """photo.jpg + monet.jpg -> photo_monet.png beside it; holiday/ -> holiday_monet/."""
    tag = _style_tag(styles)
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


def stylize(input_path: str | os.PathLike, styles: ImageLike | Sequence[ImageLike],
            output: str | os.PathLike | None = None, *, settings: StyleSettings | None = None,
            overwrite: bool = False, progress: bool = False, **overrides) -> RunReport:
    """Stylize an image file or a folder of photos and write the result.

    Output: `output` if given, else photo.jpg -> photo_STYLE.png beside the input, and
    folder/ -> folder_STYLE/ with the same file names.
    """
    settings = make_settings(settings, overrides)
    if isinstance(styles, (str, os.PathLike)) or hasattr(styles, "shape"):
        styles = [styles]
    src = Path(input_path)
    if not src.exists():
        raise InputError(f"input not found: {src}: check the path")
    out = Path(output) if output is not None else default_output(src, styles)
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
