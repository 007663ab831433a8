"""Writing outputs atomically: a temporary name beside the target, renamed when complete, so an
interrupted run never leaves a half-written file under the final name. The only place where
RGB turns into BGR for encoding.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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


# Per container: video codec arguments, and the audio codec to re-encode to when copying fails.
_H264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "medium"]
_VIDEO_ARGS = {
    ".mp4": (_H264 + ["-movflags", "+faststart"], "aac"),
    ".mov": (_H264 + ["-movflags", "+faststart"], "aac"),
    ".mkv": (_H264, "aac"),
    ".webm": (["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-crf", "32", "-b:v", "0",
               "-row-mt", "1"], "libopus"),
    ".gif": (["-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse", "-loop", "0"], None),
}


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace")


def encode_video(frame_pattern: str, output: Path, fps: Fraction, *,
                 audio_from: Path | None = None, audio_start: float = 0.0,
                 audio_duration: float | None = None) -> bool:
    """Encode numbered PNG frames (`frame_pattern`, e.g. 'dir/frame_%06d.png', from 0) into
    `output` at exactly `fps`, with the audio of `audio_from` (trimmed to the rendered range)
    copied, or re-encoded where the container needs it. Atomic: the file appears complete.

    Returns whether audio was included.
    """
    output = Path(output)
    vargs, audio_codec = _VIDEO_ARGS[output.suffix.lower()]
    frames_in = ["-framerate", f"{fps.numerator}/{fps.denominator}", "-start_number", "0",
                 "-i", frame_pattern]
    attempts: list[list[str]] = []
    if audio_from is not None and audio_codec is not None:
        trim = ["-ss", f"{audio_start:.6f}"] + (
            ["-t", f"{audio_duration:.6f}"] if audio_duration is not None else [])
        audio_in = [*trim, "-i", str(audio_from)]
        for acodec in (["-c:a", "copy"], ["-c:a", audio_codec, "-b:a", "192k"]):
            attempts.append([*frames_in, *audio_in, "-map", "0:v:0", "-map", "1:a:0?", *vargs,
                             *acodec])
    attempts.append([*frames_in, "-map", "0:v:0", *vargs, "-an"])
    errors = []
    with atomic_path(output) as tmp:
        for args in attempts:
            p = _run_ffmpeg([*args, str(tmp)])
            if p.returncode == 0:
                return "-an" not in args
            errors.append(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "?")
        raise OutputError(f"ffmpeg could not encode {output.name} ({errors[-1]}): the frames are "
                          "kept; try another output extension (.mp4, .mkv)")
