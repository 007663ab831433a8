"""Reading inputs. The only place where decoded pixels turn from BGR to RGB.

Every reader returns RGB (or RGBA) uint8 arrays (H, W, 3|4) and raises `InputError` with a
message that says what is wrong and what to do.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from nstvideo.errors import InputError

IMAGE_EXTS = frozenset(
    ".png .jpg .jpeg .jpe .bmp .tif .tiff .webp .ppm .pgm .pnm .jp2 .exr .hdr".split())
_EXIF_ORIENTATION = 0x0112


def natural_key(name: str) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, in natural order (hidden files skipped)."""
    files = [p for p in Path(folder).iterdir()
             if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith(".")]
    return sorted(files, key=lambda p: natural_key(p.name))


def _orientation(path: Path) -> int:
    """The EXIF orientation tag (1-8), 1 when absent or unreadable."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - no EXIF is the normal case
        return 1


def _apply_orientation(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image upright by its EXIF orientation (TIFF/EXIF spec values 1-8)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1),
           7: lambda a: np.rot90(a, 1)[::-1], 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](img)) if orientation in ops else img


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if img.dtype.kind == "f":  # EXR/HDR/float TIFF: 0-1 scene values, clipped
        return (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def read_image(path: str | Path, *, what: str = "image") -> np.ndarray:
    """Decode an image file to RGB or RGBA uint8, upright (EXIF orientation applied).

    Grayscale becomes RGB; 16-bit and float images are scaled to 8 bits; alpha is kept.
    `what` names the input in error messages ("style image", "content image", ...).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}: check the path")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder: give an image file")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise InputError(f"cannot read {what} {path} ({e.strerror}): check its permissions") from e
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None or img.size == 0:
        raise InputError(f"{what} {path} is not a readable image (empty, corrupt, or not an "
                         "image format OpenCV decodes): give a PNG, JPEG, TIFF, BMP or WebP file")
    if img.ndim == 3 and img.shape[2] >= 3:  # OpenCV decodes colour as BGR(A)
        img = img[..., [2, 1, 0, 3][: img.shape[2]]]
    return _apply_orientation(as_rgb(img, what=what), _orientation(path))


def as_rgb(img: np.ndarray, *, what: str = "image") -> np.ndarray:
    """Any RGB-ordered array a caller may hand over -> RGB or RGBA uint8 (H, W, 3|4).

    Accepts gray (H, W) or (H, W, 1), gray+alpha (H, W, 2), RGB, RGBA; uint8, uint16 (scaled),
    or float (0-1, clipped).
    """
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (2, 3, 4)) \
            or min(img.shape[:2]) < 1:
        raise InputError(f"{what} has shape {img.shape}: give an (H, W), (H, W, 3) or "
                         "(H, W, 4) image")
    img = _to_uint8(img)
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[..., None], 3, axis=2))
    if img.shape[2] == 2:  # gray + alpha
        return np.ascontiguousarray(np.dstack([img[..., 0]] * 3 + [img[..., 1]]))
    return np.ascontiguousarray(img)
