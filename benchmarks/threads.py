"""What fixing a seeded render's thread count costs, and what other thread counts change.

A seeded render fixes the torch threads its units use in its plan (`--threads`, default: the
cores shared among the workers), because on some CPUs (AVX-512 kernels) the thread count
changes the floats a frame comes out with, and the difference grows along a chain of frames.
This renders one clip in one process with each thread count asked, side by side in one run
(`--repeats` times, medians), and prints seconds a frame, the ratio to the fastest, and each
render's PSNR against the first count's frame by frame.

Run:  python benchmarks/threads.py [--video samples/clip.mp4] [--size 96] [--threads 1,2,3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nstvideo import StyleSettings, VideoSettings, stylize_video  # noqa: E402
from nstvideo.video.checkpoint import checkpoint_dir  # noqa: E402


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def render(video: Path, style: Path, out: Path, size: int, iterations: int, threads: int,
           frames: int | None):
    settings = StyleSettings(size=size, iterations=iterations, seed=0)
    v = VideoSettings(iterations=iterations, iterations_first=iterations, threads=threads,
                      duration=None if frames is None else f"{frames}f")
    rep = stylize_video(video, [style], out, settings=settings, video=v, keep_frames=True,
                        overwrite=True)
    kept = sorted(checkpoint_dir(out).glob("frame_*.png"))
    frames = [cv2.imread(str(p)) for p in kept]
    shutil.rmtree(checkpoint_dir(out))
    return rep.seconds_per_frame, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=ROOT / "samples" / "clip.mp4")
    ap.add_argument("--style", type=Path, default=ROOT / "samples" / "style.png")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--frames", type=int, default=None, help="render only the first N")
    ap.add_argument("--threads", default="1,2,3")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--grid", type=Path, default=Path("/tmp/nst_threads.png"),
                    help="the last frame of each thread count, side by side (PNG)")
    args = ap.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    print(f"CPU kernels: {torch.backends.cpu.get_cpu_capability()}, torch default threads: "
          f"{torch.get_num_threads()}; {args.video.name} at {args.size} px, "
          f"{args.iterations} iterations a frame, seed 0")
    times: dict[int, list[float]] = {t: [] for t in counts}
    frames: dict[int, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for t in counts:  # interleaved: the machine's noise falls on every count alike
                spf, fr = render(args.video, args.style, Path(tmp) / f"t{t}.mp4", args.size,
                                 args.iterations, t, args.frames)
                times[t].append(spf)
                frames.setdefault(t, fr)
    best = min(statistics.median(v) for v in times.values())
    ref = frames[counts[0]]
    print(f"{'threads':>7} {'s/frame (median)':>17} {'x fastest':>9} "
          f"{'PSNR vs ' + str(counts[0]) + ' thread(s): first, min, last':>40}")
    for t in counts:
        p = [psnr(a, b) for a, b in zip(frames[t], ref)]
        print(f"{t:>7} {statistics.median(times[t]):>17.3f} "
              f"{statistics.median(times[t]) / best:>9.2f} "
              f"{p[0]:>14.1f} {min(p):>12.1f} {p[-1]:>12.1f}")
    grid = np.hstack([frames[t][-1] for t in counts])
    cv2.imwrite(str(args.grid), cv2.resize(grid, None, fx=3, fy=3,
                                           interpolation=cv2.INTER_NEAREST))
    print(f"last frames side by side ({', '.join(map(str, counts))} threads): {args.grid}")


if __name__ == "__main__":
    main()
