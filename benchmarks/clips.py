"""Film-like test clips made from the real footage in ../shared/data: shots cut from the
cockatoo clip (forwards and backwards, at different places) and the street clip, with shot
lengths drawn from a film-like distribution, and a tone as the sound. Used by scale.py,
disk.py and seams.py; made once and cached under the temp folder."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CACHE = Path(tempfile.gettempdir()) / "nst_clips"


def _frames(name: str, width: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(DATA / name))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        h = round(f.shape[0] * width / f.shape[1] / 2) * 2
        out.append(cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA))
    cap.release()
    return out


def shot_lengths(total: int, fps: float, mean_s: float = 5.0, seed: int = 0) -> list[int]:
    """Shot lengths (frames) summing to `total`: log-normal around `mean_s` seconds, as in
    feature films (many short shots, a few long ones)."""
    rng = np.random.default_rng(seed)
    sigma = 0.6
    mu = np.log(mean_s) - sigma ** 2 / 2  # so that the mean is mean_s
    lengths = []
    while sum(lengths) < total:
        lengths.append(max(6, int(round(rng.lognormal(mu, sigma) * fps))))
    lengths[-1] -= sum(lengths) - total
    if lengths[-1] < 6 and len(lengths) > 1:
        lengths[-2] += lengths.pop()
    return lengths


def film(total: int = 600, width: int = 256, fps: int = 20, mean_s: float = 5.0,
         lengths: list[int] | None = None) -> tuple[Path, list[int]]:
    """A clip of `total` frames made of shots; returns (path, shot lengths)."""
    lengths = lengths or shot_lengths(total, fps, mean_s)
    key = f"film_{width}_{fps}_{'-'.join(map(str, lengths))}"[:120]
    path = CACHE / f"{key}.mp4"
    if path.exists():
        return path, lengths
    CACHE.mkdir(parents=True, exist_ok=True)
    cock, street = _frames("cockatoo.mp4", width), _frames("realshort.mp4", width)
    h = cock[0].shape[0]
    street = [cv2.resize(f, (width, h), interpolation=cv2.INTER_AREA) for f in street]
    rng = np.random.default_rng(1)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
           "-pix_fmt", "bgr24", "-s", f"{width}x{h}", "-r", str(fps), "-i", "-", "-f", "lavfi",
           "-i", f"sine=frequency=330:duration={total / fps:.3f}", "-c:v", "libx264", "-crf",
           "16", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for i, n in enumerate(lengths):
        src = street if i % 3 == 2 else cock
        start = int(rng.integers(0, len(src)))
        step = 1 if rng.random() < 0.5 else -1
        k, seq = start, []
        for _ in range(n):  # ping-pong through the source: motion continues, no jump
            seq.append(src[k])
            if not 0 <= k + step < len(src):
                step = -step
            k += step
        for f in seq:
            p.stdin.write(np.ascontiguousarray(f).tobytes())
    p.stdin.close()
    if p.wait() != 0:
        raise RuntimeError("ffmpeg failed to make the clip")
    return path, lengths
