"""What a photo carries besides its pixels: HEIF/HEIC support (pillow-heif), its metadata
(EXIF, XMP) and its colour profile. Pixels are stylized in sRGB: a photo tagged with another
profile (Display P3, Adobe RGB) is converted to sRGB when read and written back tagged sRGB
(the style image's colours are sRGB numbers; painted into P3 numbers and tagged P3 they would
come out oversaturated). EXIF is written back with its orientation reset to 1, since the
pixels are made upright when read.
"""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

HEIF_EXTS = frozenset({".heic", ".heif", ".hif"})
_ORIENTATION = 0x0112
_HEIF_QUALITY = 90  # as the phones write them; a JPEG fallback uses the writer's quality


@cache
def heif_support() -> str | None:
    """Whether HEIF/HEIC photos can be read: None if so (the opener is registered with
    Pillow), else the one line saying what to install."""
    try:
        import pillow_heif
    except ImportError:
        return "HEIC/HEIF photos need pillow-heif: pip install pillow-heif"
    pillow_heif.register_heif_opener()
    return None


@cache
def avif_writable() -> bool:
    """Whether AVIF can be written here (Pillow built with libavif, as its wheels are)."""
    from PIL import features

    return bool(features.check("avif"))


@cache
def heif_writable() -> bool:
    """Whether HEIC can be written here (pillow-heif with an HEVC encoder)."""
    if heif_support() is not None:
        return False
    import pillow_heif

    return bool(pillow_heif.libheif_info().get("HEIF"))


@dataclass(frozen=True)
class PhotoMeta:
    """A photo's metadata as it is written back (None: none)."""

    exif: bytes | None = None  # orientation reset to 1, the TIFF layout's own tags left out
    xmp: bytes | None = None
    icc: bytes | None = None  # the profile of the pixels as stylized (sRGB if converted)
    dpi: tuple[float, float] | None = None  # the print resolution (x, y) in dots per inch

    def save_args(self) -> dict:
        """Pillow's save() keywords that write this metadata."""
        args = {"exif": self.exif, "xmp": self.xmp, "icc_profile": self.icc, "dpi": self.dpi}
        return {k: v for k, v in args.items() if v}

    def with_dpi(self, dpi: float | None) -> "PhotoMeta":
        """This metadata printing at `dpi` (None: as it is): the resolution tag and, where the
        EXIF has them, its resolution tags, which a print dialog may read instead."""
        if dpi is None:
            return self
        return PhotoMeta(_exif_dpi(self.exif, dpi), self.xmp, self.icc, (dpi, dpi))


def read_meta(path: Path) -> PhotoMeta:
    """The metadata of the photo at `path`, to write back with its stylized copy. A damaged
    EXIF block is dropped with a warning (the photo is still stylized); a converted profile
    becomes sRGB."""
    from PIL import Image

    heif_support()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            im = Image.open(path)
        except Exception:  # noqa: BLE001 - not Pillow's format: the pixels' reader decides
            return PhotoMeta()
    with im:
        exif = _exif(im, Path(path).name)
        xmp = im.info.get("xmp")
        xmp = xmp.encode() if isinstance(xmp, str) else xmp
        icc = im.info.get("icc_profile")
        dpi = _dpi(im.info.get("dpi"))
    return PhotoMeta(exif, still_xmp(xmp) if xmp else None, kept_profile(icc), dpi)


def _dpi(value) -> tuple[float, float] | None:
    """A resolution tag as Pillow reads it, where it is a usable one (JPEG's aspect-only
    density and zero or absurd values are none)."""
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    ok = all(1 <= v <= 100000 for v in (x, y))
    return (round(x, 3), round(y, 3)) if ok else None


# Tags of IFD0 that describe the layout of the file that held them (a TIFF's strips and
# tiles, its size and sample format, a DNG's sub-images): copied into another file of
# another size they describe pixels that are not there, and a TIFF written with them is
# unreadable (issue #32: every resized TIFF came out corrupt)
_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279,
                          280, 281, 284, 292, 293, 317, 320, 322, 323, 324, 325, 330, 338,
                          339, 340, 341, 347, 532, 700})
_X_RES, _Y_RES, _RES_UNIT = 0x011A, 0x011B, 0x0128


def _exif_dpi(exif: bytes | None, dpi: float) -> bytes | None:
    """EXIF bytes with their resolution tags (where present) set to `dpi` per inch."""
    if not exif:
        return exif
    from PIL import Image

    e = Image.Exif()
    e.load(exif)
    if _X_RES not in e and _Y_RES not in e:
        return exif
    e[_X_RES] = e[_Y_RES] = dpi
    e[_RES_UNIT] = 2  # inches
    return e.tobytes()


# What a stylized copy, a still photo written whole, must not claim: that it is a motion
# photo (Google's and Samsung's: a clip appended after the picture, found by these tags),
# that other images follow it (the container's directory: that clip, an Ultra HDR photo's
# gain map) or that it has a gain map at all, or that extended XMP (a portrait's depth map)
# follows in blocks that are not written.
_NOT_KEPT = {"http://ns.google.com/photos/1.0/camera/": r"(?:MotionPhoto|MicroVideo)\w*",
             "http://ns.google.com/photos/1.0/container/": r"Directory",
             "http://ns.adobe.com/hdr-gain-map/1.0/": r"\w+",
             "http://ns.adobe.com/xmp/note/": r"HasExtendedXMP"}


def still_xmp(xmp: bytes) -> bytes:
    """A photo's XMP as its stylized copy keeps it: the rest as it was, without the motion
    photo's tags (the clip after the picture is not carried: a gallery would read the
    copy's last bytes as a video), the gain map's and the pointer to extended XMP
    (_NOT_KEPT), in either form, attribute or element. XMP that is not UTF-8 is kept as it
    is."""
    try:
        text = xmp.decode("utf-8")
    except UnicodeDecodeError:
        return xmp
    for uri, names in _NOT_KEPT.items():
        for prefix in set(re.findall(r"xmlns:([\w.-]+)\s*=\s*[\"']" + re.escape(uri), text)):
            tag = rf"{re.escape(prefix)}:{names}"
            text = re.sub(rf"\s+{tag}\s*=\s*(?:\"[^\"]*\"|'[^']*')", "", text)
            text = re.sub(rf"<({tag})\b[^>]*?/>|<({tag})\b[^>]*>.*?</\2\s*>", "", text,
                          flags=re.S)
    return text.encode("utf-8")


def _exif(im, name: str) -> bytes | None:
    """The photo's EXIF block with the orientation reset to 1; None (and a warning) where it
    is damaged: Pillow then skips tags with warnings of its own, or finds none in a block."""
    raw = im.info.get("exif")
    try:
        with warnings.catch_warnings(record=True) as noted:
            warnings.simplefilter("always")
            e = im.getexif()
            data, found = None, len(e)
            if found:
                if _ORIENTATION in e:
                    e[_ORIENTATION] = 1
                for tag in _LAYOUT_TAGS & set(e):
                    del e[tag]
                data = e.tobytes() if len(e) else None
        damaged = bool(noted) or (bool(raw) and not found)
    except Exception:  # noqa: BLE001 - any damage: the metadata goes, the photo stays
        damaged = True
    if damaged:
        warnings.warn(f"{name}: its EXIF metadata is damaged and is left out of the result",
                      stacklevel=3)
        return None
    return data


def describe(icc: bytes | None) -> str | None:
    """A colour profile's description; None where there is none or LittleCMS cannot read it."""
    return _description(_profile(icc))


def _description(src) -> str | None:
    if src is None:
        return None
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(src)
    except Exception:  # noqa: BLE001 - a damaged profile
        return None


def is_srgb(description: str) -> bool:
    return "srgb" in description.lower().replace(" ", "")


def kept_profile(icc: bytes | None) -> bytes | None:
    """The profile a result is tagged with: the photo's own where it is sRGB, sRGB where the
    pixels were converted, none where it had none or a damaged one."""
    desc = describe(icc)
    return None if desc is None else icc if is_srgb(desc) else SRGB_ICC()


@cache
def SRGB_ICC() -> bytes:  # noqa: N802 - a constant, built once
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _profile(icc: bytes | None):
    """The LittleCMS profile of `icc`; None where there is none or it cannot be read."""
    if not icc:
        return None
    from PIL import ImageCms

    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except Exception:  # noqa: BLE001 - a damaged profile
        return None


def _converted(im, src):
    """A Pillow image in the space of profile `src` -> sRGB RGB pixels (perceptual intent);
    None where LittleCMS cannot use the profile for it."""
    from PIL import ImageCms

    try:
        return np.array(ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"),
                                                   outputMode="RGB"))
    except Exception:  # noqa: BLE001 - e.g. a profile without the tables this needs
        return None


def to_srgb(img: np.ndarray, icc: bytes | None) -> np.ndarray:
    """RGB(A) uint8 pixels in the space of `icc` -> sRGB (perceptual intent): an RGB profile
    (Display P3, Adobe RGB) on the colours, a gray one (a scan's dot gain or gamma) on a
    gray image's one channel. As they are where there is no profile, it is sRGB, it cannot
    be read or used, or it is not of these pixels' kind (a CMYK image is converted from its
    inks where it is decoded: `cmyk_to_srgb`)."""
    src = _profile(icc)
    desc = _description(src)
    if desc is None or is_srgb(desc):
        return img
    from PIL import Image

    space = src.profile.xcolor_space.strip()
    rgb = np.ascontiguousarray(img[..., :3])
    if space == "RGB":
        out = _converted(Image.fromarray(rgb), src)
    elif space == "GRAY" and (rgb == rgb[..., :1]).all():
        out = _converted(Image.fromarray(np.ascontiguousarray(rgb[..., 0])), src)
    else:
        out = None
    if out is None:
        return img
    return np.dstack([out, img[..., 3:]]) if img.shape[2] == 4 else out


def cmyk_to_srgb(im, icc: bytes | None) -> np.ndarray | None:
    """A CMYK Pillow image (a printer's scan of a painting, a prepress JPEG or TIFF) -> sRGB
    RGB uint8 through its own CMYK profile: the inks as that press prints them, not the
    naive 255 - ink that decoders use without one. None where it has no usable CMYK profile."""
    src = _profile(icc)
    if src is None or src.profile.xcolor_space.strip() != "CMYK":
        return None
    return _converted(im, src)


def encode_with_meta(img: np.ndarray, suffix: str, meta: PhotoMeta, quality: int,
                     name: str = "a photo") -> bytes:
    """RGB(A) uint8 -> file bytes of the format `suffix` names, with `meta`, through Pillow
    (HEIC through pillow-heif)."""
    from PIL import Image

    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG", ".webp": "WEBP",
           ".tif": "TIFF", ".tiff": "TIFF", ".heic": "HEIF", ".heif": "HEIF",
           ".hif": "HEIF", ".avif": "AVIF"}.get(suffix.lower())
    if fmt is None:  # a format that keeps no metadata (BMP): the caller encodes it
        raise ValueError(suffix)
    if fmt == "JPEG" and img.shape[2] == 4:
        img = img[..., :3]
    args = meta.save_args()
    if fmt not in ("JPEG", "PNG", "TIFF"):
        args.pop("dpi", None)  # a tag these formats do not have
    if fmt in ("JPEG", "WEBP"):
        args["quality"] = quality
    if fmt == "HEIF":
        heif_support()
    if fmt in ("HEIF", "AVIF"):
        args["quality"] = _HEIF_QUALITY
    image = Image.fromarray(np.ascontiguousarray(img))
    buf = io.BytesIO()
    try:
        image.save(buf, format=fmt, **args)
    except (ValueError, TypeError, struct.error) as e:  # e.g. EXIF or XMP over JPEG's 64 KB
        if not meta.save_args():
            raise
        warnings.warn(f"{name}: its metadata could not be written as {fmt} ({e}): the result "
                      "has none", stacklevel=3)
        return encode_with_meta(img, suffix, PhotoMeta(), quality, name)
    return buf.getvalue()
