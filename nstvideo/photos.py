"""Stylizing still images: one image (array or file) and folders of photos."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nstvideo.errors import InputError, NstVideoError, OutputError, reason
from nstvideo.media.photometa import PhotoMeta, read_meta
from nstvideo.media.scratch import output_lock
from nstvideo.media.reader import (IMAGE_EXTS, MAX_PIXELS, RAW_EXTS, as_rgb, list_images,
                                   natural_key, read_image)
from nstvideo.media.video import (ANIMATED_PICTURE_EXTS, VIDEO_EXTS, image_size,
                                  is_video_path)
from nstvideo.media.writer import write_image
from nstvideo.outputs import input_paths, photo_name, prepare_output_dir
from nstvideo.record import FolderRecord, style_state
from nstvideo.settings import StyleSettings
from nstvideo.style.optimize import OptimizeReport
from nstvideo.masks import MaskLike, load_regions, mask_folders, photo_masks
from nstvideo.style.regions import Regions
from nstvideo.style.stylizer import Stylizer, style_longest
from nstvideo.style.tensors import fit_longest, resize, to_image

ImageLike = str | os.PathLike | np.ndarray


def load(image: ImageLike, what: str, max_pixels: int = MAX_PIXELS,
         longest: int | None = None) -> np.ndarray:
    """A path or an array -> RGB(A) uint8; `longest`: the longer side it will be shrunk to,
    if known (a large JPEG is then decoded smaller: `read_image`)."""
    if isinstance(image, np.ndarray):
        return as_rgb(image, what=what)
    return read_image(image, what=what, max_pixels=max_pixels, longest=longest)


def make_settings(settings: StyleSettings | None, overrides: dict) -> StyleSettings:
    settings = settings or StyleSettings()
    return settings.replace(**overrides) if overrides else settings


def styles_list(styles: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """One style (a path or an array) or several -> a list."""
    if isinstance(styles, (str, os.PathLike, np.ndarray)):
        return [styles]
    return list(styles)


def load_styles(styles: ImageLike | Sequence[ImageLike],
                settings: StyleSettings) -> list[np.ndarray]:
    """The style image(s), each decoded no larger than the results at `settings.size` need."""
    longest = style_longest(settings.size, settings.style_scale)
    return [load(s, "style image", settings.max_pixels, longest) for s in styles_list(styles)]


def build_stylizer(styles: ImageLike | Sequence[ImageLike], settings: StyleSettings) -> Stylizer:
    """Load the style image(s) and VGG-19, compute the style targets: once per run."""
    return Stylizer(load_styles(styles, settings), settings)


def init_image(settings: StyleSettings) -> np.ndarray | None:
    if settings.init in ("content", "noise"):
        return None
    return read_image(settings.init, what="--init image", max_pixels=settings.max_pixels,
                      longest=settings.size)


def _step_bar(bar):
    def on_step(i, parts):
        bar.update(1)
        bar.set_postfix(loss=f"{parts['total']:.3g}", refresh=False)
    return on_step


def _regions(stylizer: Stylizer, image: np.ndarray, mask) -> Regions | None:
    """An image's masks (`load_regions`) as its stylizer takes them; None without."""
    return None if mask is None else load_regions(mask, len(stylizer.styles), image.shape[:2],
                                                  stylizer.device, stylizer.settings.max_pixels)


def run_one(stylizer: Stylizer, image: np.ndarray, *, progress: bool = False,
            desc: str = "stylizing", init: np.ndarray | None = None, mask=None):
    """Stylize one loaded image with a built stylizer; keeps an alpha channel if it has one.
    `mask`: where to paint (`load_regions`: one mask, or one per style).

    Returns (RGB(A) uint8 result at the run's size, optimizer report).
    """
    outs, report = run_batch(stylizer, [image], progress=progress, desc=desc, init=init,
                             regions=_regions(stylizer, image, mask))
    return outs[0], report


def run_batch(stylizer: Stylizer, images: Sequence[np.ndarray], *, progress: bool = False,
              desc: str = "stylizing", init: np.ndarray | None = None,
              regions: Regions | None = None):
    """Stylize loaded images of one processing size in one batch; each takes the optimizer
    steps it takes alone in `run_one` (float32 rounding aside: an equally good result, not
    the same bits). Returns (list of RGB(A) uint8 results, report with the loss parts summed
    over the batch). `regions`: one image's masks (nstvideo.style.regions); masks that
    paint nothing give the content back as it is."""
    content = torch.cat([stylizer.prepare(image) for image in images])
    start = stylizer.initial(content, init)
    if regions is not None and regions.empty:
        x, report = content, OptimizeReport()  # nothing to paint
    else:
        with tqdm(total=stylizer.planned_iterations(tuple(content.shape[2:])), desc=desc,
                  unit="it", leave=False, disable=not progress) as bar:
            x, report = stylizer.run(content, start, on_step=_step_bar(bar), regions=regions)
    outs = []
    for k, image in enumerate(images):
        out = to_image(x[k:k + 1])
        if image.shape[2] == 4:
            alpha = resize(image[..., 3:], out.shape[:2]).reshape(out.shape[:2])
            out = np.dstack([out, alpha])
        outs.append(out)
    return outs, report


def stylize_image(content: ImageLike, styles: ImageLike | Sequence[ImageLike], *,
                  settings: StyleSettings | None = None, progress: bool = False,
                  mask: Sequence[MaskLike] | MaskLike | None = None,
                  **overrides) -> np.ndarray:
    """Paint `content` (a path or an RGB/RGBA array) in the style of `styles`; only where
    `mask` is white (a path or a greyscale array; or one mask per style, each style on its
    own; the rest stays the content).

    Settings come from `settings` and/or keyword overrides of its fields, e.g.
    `stylize_image("photo.jpg", ["monet.jpg"], size=256, iterations=200)`.
    Returns the result as an RGB (or RGBA, if the content had alpha) uint8 array whose longest
    side is `settings.size`.
    """
    settings = make_settings(settings, overrides)
    image = load(content, "content image", settings.max_pixels, settings.size)
    init = init_image(settings)
    stylizer = build_stylizer(styles, settings)
    return run_one(stylizer, image, progress=progress, init=init, mask=mask)[0]


@dataclass
class FolderReport:
    """What a folder run did: outputs written, inputs that failed (with the reason), and
    inputs skipped (painted into the folder before, with the same settings)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # painted before, with these settings

    @property
    def ok(self) -> bool:
        return not self.failed


def stylize_folder(folder: str | os.PathLike, styles: ImageLike | Sequence[ImageLike],
                   output_dir: str | os.PathLike, *, settings: StyleSettings | None = None,
                   overwrite: bool = False, progress: bool = False,
                   strip_metadata: bool = False, dpi: float | None = None,
                   mask=None, **overrides) -> FolderReport:
    """Stylize every image in `folder` (and its subfolders) into `output_dir` under the same
    names (a HEIC as .jpg where HEIC cannot be written), each with its metadata (EXIF, XMP:
    dates, camera, place) and colour profile, unless `strip_metadata` (the profile is kept),
    and its print resolution, or `dpi` where given.

    Subfolders' photos are painted into the same subfolders of `output_dir`. An image that
    fails is recorded in the report and the rest still run; videos and camera RAW files in the
    folder are left out with a warning naming them. Raises before any work if the folder has
    no images or an output would be overwritten without `overwrite`. The output folder keeps a
    record (`record.FOLDER_RECORD`) of what it painted with which settings: run again the
    same way, photos already painted are skipped (`report.skipped`), so an interrupted folder,
    or one that has since grown, picks up where it stopped; `overwrite` paints them all anew.
    `mask`: a folder of masks named as the photos (same subfolders, any image type), or one
    such folder per style: each photo painted where its masks say (`load_regions`); a photo
    without a mask is painted whole, named in a warning.
    """
    settings = make_settings(settings, overrides)
    folder, output_dir = Path(folder), Path(output_dir)
    lock = output_lock(output_dir) if output_dir.parent.is_dir() else contextlib.nullcontext()
    with lock:  # a second run writing the same folder refuses while this one runs
        return _stylize_folder(folder, styles, output_dir, settings, overwrite, progress,
                               strip_metadata, dpi, mask_folders(mask))


def _stylize_folder(folder: Path, styles, output_dir: Path, settings: StyleSettings,
                    overwrite: bool, progress: bool, strip_metadata: bool,
                    dpi: float | None, mask_dirs: list[Path]) -> FolderReport:
    images = folder_photos(folder, output_dir)
    masks = photo_masks(images, folder, mask_dirs)
    # subfolders (a camera's DCIM/100APPLE, holiday/day1) mirrored under output_dir
    targets = [output_dir / p.relative_to(folder).parent / photo_name(p.name) for p in images]
    _refuse_clashes(images, targets)
    record = FolderRecord(output_dir, {**style_state(settings, styles_list(styles)),
                                       "strip_metadata": strip_metadata,
                                       **({"dpi": dpi} if dpi else {}),
                                       **({"masks": [str(d.resolve()) for d in mask_dirs]}
                                          if mask_dirs else {})}, fresh=overwrite)
    done = [record.finished(src, target) for src, target in zip(images, targets)]
    report = FolderReport(skipped=[src for src, d in zip(images, done) if d])
    work = [pair for pair, d in zip(zip(images, targets), done) if not d]
    if not work:
        return report  # all painted before, with these settings
    created = not output_dir.exists()
    mask_files = [m for ms in masks.values() for m in ms or ()]
    prepare_output_dir(output_dir, folder, [t for _, t in work],
                       input_paths(images, styles_list(styles), settings) + mask_files,
                       overwrite, ours=record.ours)
    init = init_image(settings)
    stylizer = build_stylizer(styles, settings)
    errors = Exception  # any failure on one photo (cv2.error, a NaN loss...) fails that one

    def run(group: list[tuple[Path, Path, np.ndarray, PhotoMeta]]) -> None:
        """Stylize and write a group of photos of one size; if a batch fails, its photos are
        run one by one, so that each failure is reported against its photo."""
        desc = group[0][0].name if len(group) == 1 else f"{len(group)} images"
        try:
            regions = _regions(stylizer, group[0][2], masks.get(group[0][0]))  # (alone)
            outs, _ = run_batch(stylizer, [im for _, _, im, _ in group], progress=progress,
                                desc=desc, init=init, regions=regions)
        except errors as e:
            if len(group) == 1:
                report.failed.append((group[0][0], reason(e)))
            else:
                for item in group:
                    run([item])
            return
        for (src, dst, _, meta), out in zip(group, outs):
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)  # a subfolder's, made when used
                kept = kept_meta(meta, strip_metadata, dpi)
                report.written.append(write_image(dst, out, kept))
            except errors as e:
                report.failed.append((src, reason(e)))
                continue
            record.add(src, dst)

    if stylizer.batch_limit((settings.size, settings.size)) > 1 and not masks:  # batches:
        work.sort(key=lambda pair: header_size(pair[0]))  # same sizes together, stable
    with tqdm(total=len(work), desc="images", unit="img", disable=not progress) as bar:
        for batch in _batches(work, stylizer, report, bar, alone=bool(masks)):
            run(batch)
            bar.update(len(batch))
    if created and not report.written:  # every photo failed: leave no empty folder behind
        with contextlib.suppress(OSError):
            output_dir.rmdir()
    return report


def folder_photos(folder: Path, output_dir: Path) -> list[Path]:
    """The photos of `folder` and its subfolders (not `output_dir`'s); refused in one line if
    there are none, and what is left out (videos, camera RAW files) named in a warning."""
    images, videos, raws = ((list_images(folder, exts, recursive=True, skip=output_dir)
                             if folder.is_dir() else []) for exts in (IMAGE_EXTS, VIDEO_EXTS,
                                                                      RAW_EXTS))
    moving = [p for p in images
              if p.suffix.lower() in ANIMATED_PICTURE_EXTS and is_video_path(p)]
    if moving:  # animated WebP/PNG: clips, each rendered on its own (a still would lose it)
        images = [p for p in images if p not in set(moving)]
        videos = sorted(videos + moving, key=lambda p: [natural_key(x) for x in p.parts])
    if not images:
        if videos:
            raise InputError(f"folder {folder} holds videos or animations but no photos "
                             f"({_names(videos)}): give each video on its own, e.g. "
                             f"nstvideo stylize {videos[0]} STYLE")
        if raws:
            raise InputError(f"folder {folder} holds camera RAW files only ({_names(raws)}): "
                             "develop them to JPEG or TIFF first (the camera's app, Lightroom, "
                             "darktable)")
        raise InputError(f"no images in folder {folder} or its subfolders: put PNG/JPEG/HEIC/"
                         "AVIF/TIFF/BMP/WebP files in it")
    # a phone's camera roll mixes in videos, a camera RAW files (beside their JPEGs): say so
    # rather than pass them over unseen
    if videos:
        warnings.warn(f"{folder} also holds {len(videos)} video(s) or animation(s) "
                      f"({_names(videos)}), left out of a folder of photos: give each on its "
                      "own", stacklevel=3)
    if raws:
        warnings.warn(f"{folder} also holds {len(raws)} camera RAW file(s) ({_names(raws)}), "
                      "left out: develop them to JPEG or TIFF to paint them", stacklevel=3)
    return images


def _refuse_clashes(images: list[Path], targets: list[Path]) -> None:
    """Two photos that would be written to one file (IMG_1.HEIC as .jpg beside IMG_1.JPG where
    HEIC cannot be written; names differing in case only, one file on macOS or Windows)."""
    seen: dict[str, Path] = {}
    for src, target in zip(images, targets):
        first = seen.setdefault(str(target).casefold(), src)
        if first is not src:
            raise OutputError(f"{first} and {src} would both be written as {target.name}: "
                              "rename one, or stylize them in two runs")


def _names(paths: list[Path], most: int = 3) -> str:
    more = f", and {len(paths) - most} more" if len(paths) > most else ""
    return ", ".join(p.name for p in paths[:most]) + more


def _batches(work: list[tuple[Path, Path]], stylizer: Stylizer, report: FolderReport, bar,
             alone: bool = False):
    """The photos of `work` (source, target) read, in groups of one size that fit a batch (of
    one each where `alone`: masked photos); one that cannot be read goes into the report
    (and the bar) instead."""
    settings = stylizer.settings
    batch: list[tuple[Path, Path, np.ndarray, PhotoMeta]] = []  # photos read, all of size hw
    hw = None
    for src, dst in work:
        try:
            image = read_image(src, what="photo", max_pixels=settings.max_pixels,
                               longest=settings.size)
        except NstVideoError as e:
            report.failed.append((src, str(e)))
            bar.update(1)
            continue
        size = fit_longest(*image.shape[:2], settings.size)
        if batch and (alone or size != hw or len(batch) >= stylizer.batch_limit(hw)):
            yield batch
            batch = []
        batch.append((src, dst, image, read_meta(src)))
        hw = size
    if batch:
        yield batch


def kept_meta(meta: PhotoMeta, strip: bool, dpi: float | None = None) -> PhotoMeta:
    """What of a photo's metadata its result keeps: all, or (strip) its colour profile and
    print resolution only; `dpi` sets the print resolution (None: the photo's own)."""
    kept = PhotoMeta(icc=meta.icc, dpi=meta.dpi) if strip else meta
    return kept.with_dpi(dpi)


def header_size(path: Path) -> tuple[int, int]:
    """A photo's (width, height) upright from its header; (0, 0) where it cannot be read."""
    try:
        return image_size(path)
    except NstVideoError:
        return (0, 0)  # unreadable: fails on its own when read
