"""Reading inputs. The only place where decoded pixels turn from BGR to RGB.

Every reader returns RGB (or RGBA) uint8 arrays (H, W, 3|4) and raises `InputError` with a
message that says what is wrong and what to do.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import warnings
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from nstvideo.errors import InputError, reason
from nstvideo.media.photometa import HEIF_EXTS, cmyk_to_srgb, heif_support, to_srgb

IMAGE_EXTS = frozenset(
    ".png .jpg .jpeg .jpe .bmp .tif .tiff .webp .avif .ppm .pgm .pnm .jp2 .exr .hdr".split()) | HEIF_EXTS
_EXIF_ORIENTATION = 0x0112
# Camera RAW files: sensor data to be developed, not pictures (Pillow would read a DNG's small
# preview as if it were the photo)
RAW_EXTS = frozenset(
    ".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .x3f .3fr .iiq .rwl"
    .split())


def natural_key(name: str) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def list_images(folder: Path, exts: frozenset[str] = IMAGE_EXTS, *, recursive: bool = False,
                skip: Path | None = None) -> list[Path]:
    """Image files (or others, by `exts`) directly inside `folder`, in natural order (hidden
    files skipped); `recursive`: and in its subfolders (a camera's DCIM/100APPLE, holiday/day1),
    by their paths, hidden folders, links to folders and the folder `skip` (an output inside
    the input) left out."""
    folder = Path(folder)
    skip = skip.resolve() if skip is not None else None
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if recursive and not d.startswith(".")
                   and (skip is None or (Path(root) / d).resolve() != skip)]
        files += [Path(root) / n for n in names if Path(n).suffix.lower() in exts
                  and not n.startswith(".") and (Path(root) / n).is_file()]
    return sorted(files, key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])


MAX_PIXELS = 100_000_000  # default refusal limit: above 100 MP an image is a decompression
                         # bomb or a mistake (a 100 MP frame takes ~1.2 GB as float RGB)


@contextlib.contextmanager
def _pillow_unlimited():
    """Pillow refuses images above ~179 MP on its own; our limit (`max_pixels`) is checked
    instead, so its own is lifted while a header is read (reading a header decodes nothing)."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


class Head(NamedTuple):
    width: int
    height: int
    orientation: int  # EXIF 1-8
    icc: bytes | None  # the colour profile
    mode: str  # Pillow's: RGB, L, CMYK, ...
    format: str | None  # Pillow's: JPEG, PNG, ...
    frames: int  # more than 1: an animated WebP or PNG (APNG); 1 for other formats


def header(path: Path) -> Head | None:
    """Size, EXIF orientation and colour profile from the file's header, without decoding its
    pixels; None where Pillow cannot read the format (then the decoder's own checks apply)."""
    from PIL import Image, UnidentifiedImageError

    heif_support()
    try:
        with _pillow_unlimited(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's notes on odd EXIF or palettes
            with Image.open(path) as im:
                w, h = im.size
                try:
                    orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
                except Exception:  # noqa: BLE001 - damaged EXIF: the pixels may still be fine
                    orientation = 1
                if Path(path).suffix.lower() in HEIF_EXTS:
                    orientation = 1  # libheif turns the picture upright itself
                return Head(w, h, orientation if 1 <= orientation <= 8 else 1,
                            im.info.get("icc_profile") or None, im.mode, im.format,
                            # (counted where the header says: a GIF's are found by reading it)
                            int(getattr(im, "n_frames", 1) or 1)
                            if im.format in ("WEBP", "PNG") else 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def transparent(path: Path) -> bool:
    """Whether the (first) picture of `path` has transparent pixels (not only a format or
    palette that could hold some)."""
    from PIL import Image

    try:
        with _pillow_unlimited(), warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            if "A" not in im.mode and "transparency" not in im.info:
                return False
            return im.convert("RGBA").getextrema()[3][0] < 255
    except (OSError, ValueError, SyntaxError):
        return False


def check_pixels(w: int, h: int, max_pixels: int, what: str, path, scale: int = 1) -> None:
    """Refuse an image whose decoded pixels (at 1/`scale` of its sides) pass `max_pixels`."""
    if -(-w // scale) * -(-h // scale) > max_pixels:
        raise InputError(f"{what} {path} is {w}x{h} ({w * h / 1e6:.0f} MP), over the "
                         f"{max_pixels / 1e6:g} MP limit: shrink it first, or raise the limit "
                         "with --max-megapixels")


def upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a decoded image upright by its EXIF orientation (1-8), any dtype and channels:
    Pillow's `ImageOps.exif_transpose` moves an image of pixel indices, which then picks the
    pixels, so the geometry is Pillow's, not ours."""
    if orientation == 1:
        return img
    from PIL import Image, ImageOps

    h, w = img.shape[:2]
    index = Image.fromarray(np.arange(h * w, dtype=np.int32).reshape(h, w), mode="I")
    index.getexif()[_EXIF_ORIENTATION] = orientation
    moved = np.asarray(ImageOps.exif_transpose(index))
    return np.ascontiguousarray(img.reshape(h * w, *img.shape[2:])[moved])


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if img.dtype.kind == "f":  # EXR/HDR/float TIFF: 0-1 scene values, clipped
        return (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def existing(path: str | Path, what: str = "input") -> Path:
    """`path` as a Path, refused in one line if nothing is there, if it is neither a file nor
    a folder (a FIFO or a device would hang the reader or never end), or if the system
    cannot take its name (too long)."""
    path = Path(path)
    try:
        kind = path.stat().st_mode if path.exists() else None
    except OSError as e:
        raise InputError(f"{what} {str(path)[:80]}... cannot be opened ({reason(e)}): check "
                         "the path (a name over 255 bytes is too long for most file "
                         "systems)") from e
    if kind is None:
        raise InputError(f"{what} not found: {path}: check the path")
    if not (stat.S_ISREG(kind) or stat.S_ISDIR(kind)):
        raise InputError(f"{what} {path} is not a file or a folder (a pipe, socket or device): "
                         "give a file")
    return path


REDUCED_MIN_SIDE = 64  # a JPEG is decoded reduced only if its short side keeps this many pixels
REDUCED_MARGIN = 4  # ... and, unless it must be to pass the limit, to 4x the side it is shrunk
                    # to: the shrink after it then averages as one from the whole picture would
                    # (mean difference 0.5 grey level on a painting; 2 at 2x, 7 at 1.2x)


def reduction(head: Head | None, longest: int | None, max_pixels: int) -> int:
    """1, 2, 4 or 8: how much smaller a JPEG is decoded (libjpeg's scaled IDCT) when it is to
    be shrunk to `longest` pixels on its longer side: a 108 MP phone photo read for a 1024 px
    result need not be decoded whole, nor be refused for its size. 1 for other formats, CMYK,
    or where `longest` is None."""
    if head is None or longest is None or head.format != "JPEG" or head.mode not in ("RGB", "L"):
        return 1
    big, small = max(head.width, head.height), min(head.width, head.height)
    able = [k for k in (2, 4, 8) if big // k >= longest and small // k >= REDUCED_MIN_SIDE]
    fine = max((k for k in able if big // k >= REDUCED_MARGIN * longest), default=1)
    fits = [k for k in [fine, *able] if k >= fine and -(-big // k) * -(-small // k) <= max_pixels]
    return fits[0] if fits else max([1, *able])  # the finest that passes, else the smallest


def read_image(path: str | Path, *, what: str = "image", max_pixels: int = MAX_PIXELS,
               longest: int | None = None) -> np.ndarray:
    """Decode an image file to RGB or RGBA uint8, upright (EXIF orientation applied).

    Grayscale becomes RGB; 16-bit and float images are scaled to 8 bits; alpha is kept.
    An image over `max_pixels` is refused from its header, before anything is decoded.
    `what` names the input in error messages ("style image", "content image", ...).
    `longest`: the longer side the caller will shrink the image to, if it knows; a large JPEG
    is then decoded at 1/2, 1/4 or 1/8 of its size (never under `longest`), and `max_pixels`
    applies to what is decoded.
    """
    path = existing(path, what)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder: give an image file")
    if path.suffix.lower() in RAW_EXTS:
        raise InputError(f"{what} {path} is a camera RAW file: develop it to a JPEG or TIFF first "
                         "(the camera's app, Lightroom, darktable), or give the JPEG saved "
                         "beside it")
    heif = path.suffix.lower() in HEIF_EXTS
    if heif and heif_support() is not None:
        raise InputError(f"{what} {path}: {heif_support()}")
    head = header(path)
    scale = reduction(head, longest, max_pixels)
    if head is not None:
        check_pixels(head.width, head.height, max_pixels, what, path, scale)
    try:
        cmyk = (None if heif or head is None or head.mode != "CMYK" or not head.icc
                else _decode_cmyk(path, head.icc))  # sRGB already
        img = (cmyk if cmyk is not None else _decode_heif(path) if heif
               else _decode(np.fromfile(path, dtype=np.uint8), scale))
    except OSError as e:
        raise InputError(f"cannot read {what} {path} ({e.strerror}): check its permissions") from e
    if img is None or img.size == 0:
        raise InputError(f"{what} {path} is not a readable image (empty, corrupt, truncated, too "
                         "large, or not an image format this program decodes): give a PNG, JPEG, "
                         "HEIC, AVIF, TIFF, BMP or WebP file")
    if head is None:  # a format Pillow cannot read: checked once decoded
        check_pixels(img.shape[1], img.shape[0], max_pixels, what, path)
    img = upright(as_rgb(img, what=what), head.orientation if head else 1)
    return img if cmyk is not None else to_srgb(img, head.icc if head else None)


_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def _decode(data: np.ndarray, scale: int = 1) -> np.ndarray | None:
    """File bytes -> RGB(A) pixels (OpenCV), None if they do not decode; a JPEG at 1/`scale`
    of its sides (orientation left to `upright`, as for the others)."""
    flags = (cv2.IMREAD_UNCHANGED if scale == 1
             else _REDUCED[scale] | cv2.IMREAD_IGNORE_ORIENTATION)
    try:
        img = cv2.imdecode(data, flags) if data.size else None
    except cv2.error:  # e.g. over OpenCV's own size limit, for formats Pillow cannot read
        return None
    if img is not None and img.ndim == 3 and img.shape[2] >= 3:  # OpenCV decodes BGR(A)
        img = img[..., [2, 1, 0, 3][: img.shape[2]]]
    return img


def _decode_cmyk(path: Path, icc: bytes | None) -> np.ndarray | None:
    """A CMYK image with its own CMYK profile -> sRGB pixels through it (Pillow decodes the
    inks); None where it has no usable profile or does not decode here, for the plain decoder
    (its naive conversion, or its error)."""
    from PIL import Image

    try:
        with _pillow_unlimited(), warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            return cmyk_to_srgb(im, icc) if im.mode == "CMYK" else None
    except (PermissionError, FileNotFoundError):
        raise
    except (OSError, ValueError, SyntaxError, RuntimeError):
        return None


def _decode_heif(path: Path) -> np.ndarray | None:
    """A HEIF/HEIC file -> RGB(A) pixels, upright (libheif applies its transforms)."""
    from PIL import Image

    try:
        with _pillow_unlimited(), Image.open(path) as im:
            return np.array(im.convert("RGBA" if "A" in im.mode else "RGB"))
    except (PermissionError, FileNotFoundError):
        raise
    except OSError:
        return None  # truncated or damaged
    except (ValueError, SyntaxError, RuntimeError):
        return None


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
