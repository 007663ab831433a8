"""Helpers for the video tests: synthetic clips made with ffmpeg, and probing results."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path: Path, *, size=(66, 50), rate="30000/1001", frames=8, audio=True,
              vcodec=None) -> Path:
    """ffmpeg's testsrc2 pattern (moving), optionally with a sine tone of the same length."""
    w, h = size
    dur = f"{frames}*1001/30000" if rate == "30000/1001" else f"{frames}/{rate}"
    cmd = [FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
           f"testsrc2=size={w}x{h}:rate={rate}"]
    if audio:
        seconds = eval(dur)  # noqa: S307 - our own arithmetic string
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds:.4f}"]
    cmd += ["-frames:v", str(frames)]
    ext = path.suffix.lower()
    # yuv444p lets H.264 keep odd sizes (66x51); the others pad nothing either
    codec = vcodec or {".webm": ["-c:v", "libvpx-vp9"], ".gif": [],
                       ".webp": ["-c:v", "libwebp_anim", "-loop", "0", "-f", "webp"],
                       ".png": ["-c:v", "apng", "-plays", "0", "-f", "apng"],
                       ".avi": ["-c:v", "mpeg4"]}.get(ext, ["-c:v", "libx264", "-pix_fmt", "yuv444p"])
    acodec = {".webm": ["-c:a", "libopus"], ".avi": ["-c:a", "pcm_s16le"],
              ".gif": []}.get(ext, ["-c:a", "aac"]) if audio else []
    subprocess.run(cmd + codec + acodec + [str(path)], check=True)
    return path


def moving_frames(folder: Path, n=6, size=(48, 40), speed=2, prefix="frame_") -> Path:
    """A textured scene sliding right by `speed` px a frame, as numbered PNGs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = size
    big = cv2.resize(rng.integers(0, 256, (h // 4, (w + n * speed) // 4 + 2, 3), dtype=np.uint8),
                     None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (5, 5), 0)
    for i in range(n):
        x0 = (n - 1 - i) * speed
        cv2.imwrite(str(folder / f"{prefix}{i + 1:04d}.png"), big[:h, x0:x0 + w])
    return folder


def probe(path: Path) -> dict:
    """Streams, size, fps (as ffmpeg's text) and per-stream durations of a media file."""
    info = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                          text=True).stderr
    out = {"video": None, "audio": "Audio:" in info}
    m = re.search(r"Video: (\w+).*?, (\d+)x(\d+)", info)
    if m:
        out["video"], out["width"], out["height"] = m.group(1), int(m.group(2)), int(m.group(3))
    m = re.search(r"([\d.]+) fps", info)
    out["fps_text"] = m.group(1) if m else None
    out["pix_fmt"] = "yuv420p" if "yuv420p" in info else None
    for kind in ("v", "a") if out["audio"] else ("v",):
        log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-map", f"0:{kind}:0",
                              "-f", "null", "-"], capture_output=True, text=True).stderr
        t = re.findall(r"time=(\d+):(\d+):([\d.]+)", log)
        h, mnt, s = t[-1]
        out[f"{kind}_duration"] = int(h) * 3600 + int(mnt) * 60 + float(s)
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    out["frames"] = n
    out["fps"] = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return out


SHOT_SOURCES = ("testsrc2", "mandelbrot", "smptebars", "rgbtestsrc")


def shots_clip(path: Path, lengths=(5, 4, 5), *, size=(64, 48), rate=12, audio=True) -> Path:
    """A clip of several shots (different lavfi patterns, so each change is a cut), with a tone
    as long as the video."""
    w, h = size
    cmd = [FFMPEG, "-y", "-loglevel", "error"]
    for name, _ in zip(SHOT_SOURCES, lengths):
        cmd += ["-f", "lavfi", "-i", f"{name}=size={w}x{h}:rate={rate}"]
    parts = "".join(f"[{i}:v]trim=end_frame={n},setpts=PTS-STARTPTS[v{i}];"
                    for i, n in enumerate(lengths))
    graph = parts + "".join(f"[v{i}]" for i in range(len(lengths))) + \
        f"concat=n={len(lengths)}:v=1[v]"
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={sum(lengths) / rate:.4f}"]
    cmd += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        cmd += ["-map", f"{len(lengths)}:a", "-c:a", "aac"]
    subprocess.run(cmd + ["-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video, RGB."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def kept(out: Path) -> list[np.ndarray]:
    """The PNG frames a render kept (--keep-frames), in order, RGB."""
    from nstvideo.video.checkpoint import checkpoint_dir

    paths = sorted(checkpoint_dir(out).glob("frame_*.png"))
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
