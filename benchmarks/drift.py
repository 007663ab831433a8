"""Does a still background drift or darken over a long shot? Renders a clip whose background
never moves (a real frame, held) while a small square crosses it, with the default temporal
mode, and prints how far the background's stylization wanders from the first frame's.

Run:  python benchmarks/drift.py [--frames 40] [--size 128]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from nstvideo.photos import build_stylizer
from nstvideo.media.reader import read_image
from nstvideo.media.video import VideoFile
from nstvideo.video.frames import FrameRenderer
from nstvideo.video.job import even_size
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import resize

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DATA / "cockatoo.mp4")
    ap.add_argument("--style", type=Path, default=DATA / "starry_night.jpg")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--temporal", default="flow")
    ap.add_argument("--out", type=Path, default=Path("/tmp/nst_drift"))
    args = ap.parse_args()
    src = VideoFile(args.video)
    hw = even_size(src.height, src.width, args.size)
    background = resize(next(src.frames(0, 1))[1], hw)
    side = max(4, hw[0] // 6)
    still = np.ones(hw, bool)  # pixels the square never covers
    frames = []
    for t in range(args.frames):
        f = background.copy()
        x = int((hw[1] - side) * t / max(1, args.frames - 1))
        f[hw[0] - side - 2:hw[0] - 2, x:x + side] = (230, 40, 40)
        still[hw[0] - side - 6:, :] = False
        frames.append(f)
    stylizer = build_stylizer(read_image(args.style), StyleSettings(size=args.size, device="cpu"))
    renderer = FrameRenderer(stylizer, VideoSettings(temporal=args.temporal))
    args.out.mkdir(parents=True, exist_ok=True)
    first = None
    print(f"{'frame':>6}{'iters':>7}{'bg luma':>9}{'|bg - bg0|':>12}{'max px':>8}")
    for t, f in enumerate(frames):
        out, rep, _ = renderer.render(f)
        luma = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32)
        first = luma if first is None else first
        d = np.abs(luma - first)[still]
        if t in (0, 1, 2, 5) or t % 10 == 9 or t == args.frames - 1:
            print(f"{t:>6}{rep.iterations:>7}{luma[still].mean():>9.2f}{d.mean():>12.2f}"
                  f"{np.percentile(d, 99):>8.1f}", flush=True)
            cv2.imwrite(str(args.out / f"frame_{t:04d}.png"), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
    print(f"frames: {args.out}")


if __name__ == "__main__":
    main()
