"""Writing outputs atomically: a temporary name beside the target, renamed when complete, so an
interrupted run never leaves a half-written file under the final name. The only place where
RGB turns into BGR for encoding.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from nstvideo.errors import OutputError

_JPEG_QUALITY = 95  # visually lossless for painted textures; the default 75 smears brush strokes


@contextlib.contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside `target` (same suffix); rename it to `target` on success,
    delete it on any failure or interruption."""
    target = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}",
                                   dir=target.parent)
    except OSError as e:
        raise OutputError(f"cannot write in {target.parent} ({e.strerror}): choose another "
                          "output location with -o") from e
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def encode_image(img: np.ndarray, suffix: str) -> bytes:
    """RGB/RGBA uint8 (H, W, 3|4) -> file bytes in the format named by `suffix` ('.png', ...)."""
    if img.shape[2] == 4:
        if suffix.lower() in (".jpg", ".jpeg", ".jpe", ".bmp"):  # no alpha in these formats
            img = img[..., :3]
    code = cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if suffix.lower() in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(suffix, cv2.cvtColor(img, code), params)
    except cv2.error as e:
        raise OutputError(f"cannot encode an image as '{suffix}': use .png or .jpg") from e
    if not ok:
        raise OutputError(f"cannot encode an image as '{suffix}': use .png or .jpg")
    return buf.tobytes()


def write_image(path: str | Path, img: np.ndarray) -> Path:
    """Write RGB/RGBA uint8 to `path` atomically; the format follows the extension."""
    path = Path(path)
    data = encode_image(img, path.suffix or ".png")
    with atomic_path(path) as tmp:
        try:
            tmp.write_bytes(data)
        except OSError as e:
            raise OutputError(f"cannot write {path} ({e.strerror}): free space or choose another "
                              "output location with -o") from e
    return path
