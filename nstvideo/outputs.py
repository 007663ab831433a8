"""Where results go, and what may never be written: the one owner of output naming and of the
refusal rules (an output is never one of the inputs; nothing existing is replaced without
`overwrite`; a folder that is not ours is never deleted or written into as a checkpoint).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from nstvideo.errors import OutputError
from nstvideo.media.photometa import HEIF_EXTS, avif_writable, heif_writable

# Image formats a result can be written in; a photo keeps its own format where it is one of
# these (JPEG in, JPEG out), a HEIC photo stays HEIC where pillow-heif can encode it (else it
# becomes a JPEG), an AVIF one AVIF where Pillow can encode it, anything else becomes a PNG.
WRITABLE_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".jpe", ".webp", ".tif", ".tiff", ".bmp")
VIDEO_OUT_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".gif", ".webp", ".png", ".apng")
# (.webp, .png, .apng: animated pictures, as an animated WebP or APNG input comes back)


NAME_BYTES = 200  # an output's name at most: filesystems take 255 bytes, and the temporary
                  # names beside it (.NAME.xxxxxxxx.partial.mp4) and a video's NAME.frames/ add
                  # up to 25


def style_tag(styles: Sequence) -> str:
    """The part of a default output name that names the style(s): monet_vangogh."""
    return "_".join(Path(s).stem if isinstance(s, (str, os.PathLike)) else "style"
                    for s in styles)


def _fitted(stem: str, tag: str, ext: str) -> str:
    """STEM_TAG.EXT, the tag (then the stem) cut short where the whole would pass NAME_BYTES
    (long painting titles, several styles), cut on a character, never mid-way through one."""
    def cut(text: str, room: int) -> str:
        return text.encode()[:max(room, 1)].decode(errors="ignore")

    room = NAME_BYTES - len(ext.encode()) - 1
    stem = cut(stem, room - min(len(tag.encode()), 24))
    return f"{stem}_{cut(tag, room - len(stem.encode()))}{ext}"


def writable_image_exts() -> tuple[str, ...]:
    return WRITABLE_IMAGE_EXTS + (tuple(sorted(HEIF_EXTS)) if heif_writable() else ()) + (
        (".avif",) if avif_writable() else ())


def photo_name(name: str) -> str:
    """A photo's output name: the same name where its format can be written, a HEIC that
    cannot be as .jpg, else .png."""
    p = Path(name)
    if p.suffix.lower() in writable_image_exts():
        return name
    return p.stem + (".jpg" if p.suffix.lower() in HEIF_EXTS else ".png")


def default_output(src: Path, styles: Sequence, *, video: bool = False) -> Path:
    """Beside the input: photo.jpg -> photo_monet.jpg, holiday/ -> holiday_monet/,
    clip.mp4 -> clip_monet.mp4 (a .gif stays .gif, an animated .webp or .png stays so, other
    containers become .mp4)."""
    tag = style_tag(styles)
    if src.is_dir():  # beside it, also for `.` (its parent, not inside it)
        parent = src.parent if src.name not in ("", ".", "..") else src.resolve().parent
        return parent / _fitted(src.resolve().name, tag, "")
    if video:
        ext = src.suffix.lower() if src.suffix.lower() in VIDEO_OUT_EXTS else ".mp4"
        return src.with_name(_fitted(src.stem, tag, ext))
    return src.with_name(photo_name(_fitted(src.stem, tag, src.suffix)))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs(outputs: Iterable[Path], inputs: Iterable[Path | None], flag: str = "-o") -> None:
    """Refuse any output that is one of the inputs (content, style, init, weights), whether
    or not `overwrite` is given: an input is never replaced."""
    inputs = [Path(p) for p in inputs if p is not None]
    for out in outputs:
        too_long = [p for p in Path(out).parts if len(p.encode()) > 255]
        if too_long:  # the system refuses even to look at such a path
            raise OutputError(f"output path has a name of {len(too_long[0].encode())} bytes "
                              f"({too_long[0][:40]}...), over the 255 file systems take: "
                              f"choose a shorter one with {flag}")
        for p in inputs:
            if _same_file(Path(out), p) or Path(out).resolve() == p.resolve():
                raise OutputError(f"output {out} is an input of this run ({p}): choose another "
                                  f"name with {flag}")


def _check_parent(output: Path, flag: str = "-o") -> None:
    if len(output.name.encode()) > NAME_BYTES:
        raise OutputError(f"output name {output.name[:40]}... is {len(output.name.encode())} "
                          f"bytes long, over the {NAME_BYTES} this program can use (filesystems "
                          f"take 255, with its temporary names beside it): choose a shorter one "
                          f"with {flag}")
    parent = output.parent
    if not parent.is_dir():
        what = "is a file, not a folder" if parent.exists() else "does not exist"
        raise OutputError(f"output folder {parent} {what}: create it or choose another "
                          f"with {flag}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder {parent} is not writable: choose another with {flag}")


def _refuse_existing(output: Path, overwrite: bool, flag: str = "-o") -> None:
    if output.exists() and not overwrite:
        raise OutputError(f"{output} already exists: pass --overwrite to replace it or {flag} "
                          "to choose another name")


def check_net_output(output: Path, inputs: Sequence[Path | None], overwrite: bool) -> None:
    """Where --save-net writes the trained network."""
    flag = "--save-net"
    refuse_inputs([output], inputs, flag)
    if output.is_dir():
        raise OutputError(f"{flag} {output} is a folder: give a file name, e.g. monet.pt")
    _refuse_existing(output, overwrite, flag)
    _check_parent(output, flag)


def check_image_output(output: Path, inputs: Sequence[Path | None], overwrite: bool) -> None:
    """A single image's output file."""
    refuse_inputs([output], inputs)
    if output.is_dir():
        raise OutputError(f"output {output} is a folder: give a file name with -o")
    if output.suffix.lower() not in writable_image_exts():
        raise OutputError(f"output {output.name}: unsupported image extension "
                          f"'{output.suffix}': use .png or .jpg")
    _refuse_existing(output, overwrite)
    _check_parent(output)


def check_video_output(output: Path, inputs: Sequence[Path | None], overwrite: bool) -> bool:
    """A video file or a folder of PNG frames; returns True for a video file."""
    refuse_inputs([output], inputs)
    is_video = output.suffix.lower() in VIDEO_OUT_EXTS
    if output.suffix and not is_video and not output.is_dir():
        raise OutputError(f"unsupported output extension '{output.suffix}': use "
                          f"{', '.join(VIDEO_OUT_EXTS)}, or a folder name for PNG frames")
    if is_video and output.is_dir():
        raise OutputError(f"output {output} is a folder: give a video file name with -o")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise OutputError(f"{output} already exists and is not empty: pass --overwrite to "
                          "write the frames into it or -o to choose another name")
    if is_video:
        _refuse_existing(output, overwrite)
    _check_parent(output)
    return is_video


def prepare_output_dir(output_dir: Path, source_dir: Path, targets: list[Path],
                       inputs: Sequence[Path | None], overwrite: bool,
                       ours: Callable[[Path], bool] = lambda target: False) -> None:
    """A folder of photos' outputs: never the source folder, never over an input, over
    existing files only with `overwrite` or where `ours` (an earlier run's, with the same
    settings); the folder is created."""
    if output_dir.exists() and _same_file(output_dir, source_dir):
        raise OutputError(f"output folder {output_dir} is the input folder: the originals would "
                          "be overwritten; choose another with -o")
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"output {output_dir} is a file: give a folder name with -o")
    refuse_inputs(targets, inputs)
    existing = [t for t in targets if t.exists() and not ours(t)]
    if existing and not overwrite:
        raise OutputError(f"{output_dir} already holds {len(existing)} of the outputs (e.g. "
                          f"{existing[0].name}), not painted there with these settings: pass "
                          "--overwrite to replace them or -o to choose another folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output folder {output_dir} ({e.strerror}): choose "
                          "another with -o") from e
    if not os.access(output_dir, os.W_OK):
        raise OutputError(f"output folder {output_dir} is not writable: choose another with -o")


def input_paths(content: Iterable, styles: Sequence, settings) -> list[Path]:
    """Every file a run reads: content, style images, the --init image, a --weights file."""
    paths = [Path(c) for c in content]
    paths += [Path(s) for s in styles if isinstance(s, (str, os.PathLike))]
    if settings.init not in ("content", "noise"):
        paths.append(Path(settings.init))
    if settings.weights not in ("caffe", "torchvision"):
        paths.append(Path(os.path.expanduser(settings.weights)))
    return paths
