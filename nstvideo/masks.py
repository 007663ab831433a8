"""Masks as a user gives them (image files, arrays, folders of them named as the photos) made
into the style engine's Regions (nstvideo.style.regions), refused in one line where wrong."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nstvideo.errors import InputError
from nstvideo.media.reader import IMAGE_EXTS, MAX_PIXELS, as_rgb, read_image
from nstvideo.style.regions import EMPTY, Regions

MaskLike = str | os.PathLike | np.ndarray  # white: painted, black: kept as the photo


def as_list(masks) -> list:
    """What was given as --mask (None, one path or array, or several) as a list."""
    if masks is None:
        return []
    return [masks] if isinstance(masks, (str, os.PathLike, np.ndarray)) else list(masks)


def mask_paths(masks) -> list[Path]:
    """The files among the masks given (inputs an output must never overwrite)."""
    return [Path(m) for m in as_list(masks) if isinstance(m, (str, os.PathLike))]


def load_regions(masks: Sequence[MaskLike] | MaskLike | None, styles: int,
                 shape: tuple[int, int], device, max_pixels: int = MAX_PIXELS,
                 quiet: bool = False) -> Regions | None:
    """The masks of a photo of `shape` (h, w) as Regions: white painted, black kept, grey in
    between (a transparent pixel is black). One mask: where the styles' blend paints; one
    per style (two or more): each style on its own mask. Refused in one line: another number
    of masks, a mask of another shape (its size may differ), an unreadable one. A mask that
    paints nothing is said in a warning (unless `quiet`: a clip's frame, where a mask
    may well be black for a while)."""
    masks = as_list(masks)
    if not masks:
        return None
    if len(masks) != 1 and len(masks) != styles:
        raise InputError(f"--mask is given {len(masks)} times for {styles} style image(s): give "
                         "one (where the styles paint) or one per style, in the styles' order")
    planes = []
    for m in masks:
        name = "mask" if isinstance(m, np.ndarray) else f"mask {m}"
        if isinstance(m, np.ndarray):  # uint8, uint16, float 0-1 or bool (True: painted)
            img = as_rgb(m.astype(np.uint8) * 255 if m.dtype == bool else m, what="mask")
        else:
            img = read_image(m, what="mask", max_pixels=max_pixels)
        grey = img[..., :3].astype(np.float32).mean(axis=2) / 255.0
        if img.shape[2] == 4:  # transparent: not painted
            grey *= img[..., 3].astype(np.float32) / 255.0
        (mh, mw), (h, w) = grey.shape, shape
        if abs(mh * w - mw * h) > max(mh, mw, h, w):  # another shape, not another size
            raise InputError(f"{name} is {mw}x{mh}, another shape than the photo ({w}x{h}): "
                             "make the mask from the photo (any size of the same shape)")
        if grey.mean() < EMPTY and not quiet:
            warnings.warn(f"{name} is black everywhere: it paints nothing", stacklevel=3)
        planes.append(torch.from_numpy(np.ascontiguousarray(grey))[None, None])
    size = planes[0].shape[2:]
    blends = ((None,) if len(planes) == 1 else
              tuple(tuple(float(i == r) for i in range(styles)) for r in range(styles)))
    kept = [r for r, t in enumerate(planes) if float(t.mean()) >= EMPTY] or list(
        range(len(planes)))  # a region that paints nothing is left out (all: the photo back)
    stack = torch.cat([torch.nn.functional.interpolate(planes[r], size=size, mode="bilinear",
                                                       align_corners=False) for r in kept])
    return Regions(stack.to(device), tuple(blends[r] for r in kept))


def mask_folders(mask) -> list[Path]:
    """The folders of masks given for a folder of photos (refused in one line if not
    folders)."""
    masks = as_list(mask)
    for m in masks:
        if not isinstance(m, (str, os.PathLike)) or not Path(m).is_dir():
            raise InputError(f"--mask {m}: with a folder of photos, give a folder of masks "
                             "named as the photos (or one such folder per style)")
    return [Path(m) for m in masks]


def masks_of(photo: Path, folder: Path, mask_dirs: list[Path]) -> list[Path] | None:
    """The masks of `photo` (one per mask folder: the image of its name and subfolder, any
    type), or None where a folder has none."""
    rel = photo.relative_to(folder)
    found = []
    for d in mask_dirs:
        there = [p for p in (d / rel.parent).glob(rel.stem + ".*")
                 if p.suffix.lower() in IMAGE_EXTS]
        if not there:
            return None
        found.append(sorted(there)[0])
    return found


def photo_masks(images: list[Path], folder: Path, mask_dirs: list[Path]) -> dict:
    """{photo: its masks, or None} for the photos of `folder` (empty without mask folders);
    the photos without a mask named in a warning (they are painted whole)."""
    if not mask_dirs:
        return {}
    masks = {p: masks_of(p, folder, mask_dirs) for p in images}
    bare = [p.name for p, m in masks.items() if m is None]
    if bare:
        more = f" and {len(bare) - 3} more" if len(bare) > 3 else ""
        warnings.warn(f"{len(bare)} photo(s) have no mask in {', '.join(map(str, mask_dirs))} "
                      f"({', '.join(bare[:3])}{more}): painted whole", stacklevel=4)
    return masks
