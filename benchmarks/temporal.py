"""Temporal coherence against speed: stylize a real clip under --temporal none, previous and
flow, and print seconds per frame and the temporal warping error of each (Lai et al. 2018:
mean over frame pairs of the occlusion-masked squared difference between stylized frame t and
stylized frame t-1 warped by the content's flow), with the source clip itself as the floor.

Run:  python benchmarks/temporal.py [--video ../shared/data/cockatoo.mp4] [--size 160]
          [--frames 8] [--iterations 100] [--modes none,previous,flow] [--out /tmp/nst_temporal]
A mode may name its own later-frame iteration cap and warp, e.g. --modes
flow:100,flow:50,flow:50:bicubic (the first frame always gets the default 3x): the
speed/quality trade-off behind the defaults.
Writes the stylized frames as PNGs under --out/MODE/ to look at.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from nstvideo.video.flow import warping_error
from nstvideo.photos import build_stylizer
from nstvideo.media.reader import read_image
from nstvideo.media.video import VideoFile
from nstvideo.media.writer import write_image
from nstvideo.video.frames import FrameRenderer
from nstvideo.video.job import even_size
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import resize

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: brush-stroke detail (falls as repeated
    warping softens the texture)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DATA / "cockatoo.mp4")
    ap.add_argument("--style", type=Path, default=DATA / "starry_night.jpg")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=VideoSettings().iterations)
    ap.add_argument("--modes", default="none,previous,flow")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "nst_temporal")
    args = ap.parse_args()
    src = VideoFile(args.video)
    hw = even_size(src.height, src.width, args.size)
    content = [resize(f, hw) for _, f, _ in src.frames(0, args.frames)]
    settings = StyleSettings(size=args.size, device="cpu")
    stylizer = build_stylizer(read_image(args.style), settings)
    rows = {"source clip": (None, None, warping_error(content, content))}
    costs = {}
    for mode in args.modes.split(","):
        name, its, interp = (mode.split(":") + ["", ""])[:3]
        renderer = FrameRenderer(stylizer, VideoSettings(
            temporal=name, iterations=int(its or args.iterations),
            iterations_first=3 * args.iterations, warp=interp or "bilinear"))
        out, times, parts = [], [], []
        (args.out / mode).mkdir(parents=True, exist_ok=True)
        for k, frame in enumerate(content):
            t = time.perf_counter()
            result, rep, _ = renderer.render(frame)
            times.append(time.perf_counter() - t)
            out.append(result)
            parts.append(rep.last)
            write_image(args.out / mode / f"frame_{k:04d}.png", result)
        rows[mode] = (times[0], statistics.median(times[1:]), warping_error(out, content))
        costs[mode] = {p: statistics.mean(q[p] for q in parts[1:]) for p in ("content", "style")}
        costs[mode]["detail"] = sharpness(out[-1]) / sharpness(out[0])
        print(f"{mode}: first {times[0]:.1f} s, later median {rows[mode][1]:.2f} s/frame, "
              f"warping error {rows[mode][2]:.1f}, later frames' mean content "
              f"{costs[mode]['content']:.4g} style {costs[mode]['style']:.4g}, detail of the "
              f"last frame vs the first {costs[mode]['detail']:.2f}", flush=True)

    print(f"\n{args.video.name}, {hw[1]}x{hw[0]} px, {len(content)} frames, style "
          f"{args.style.name}, later frames <= {args.iterations} iterations (early stop)")
    print(f"{'mode':12}{'first s':>10}{'s/frame':>10}{'warp err':>12}{'vs none':>10}"
          f"{'content':>12}{'style':>12}{'detail':>8}")
    base = rows.get("none", (None, None, None))[2]
    for name, (first, per, err) in rows.items():
        rel = f"{err / base:.3f}" if base else "-"
        c = costs.get(name, dict.fromkeys(("content", "style", "detail"), float("nan")))
        print(f"{name:12}{first if first is not None else float('nan'):>10.1f}"
              f"{per if per is not None else float('nan'):>10.2f}{err:>12.1f}{rel:>10}"
              f"{c['content']:>12.4g}{c['style']:>12.4g}{c['detail']:>8.2f}")
    print("content, style: mean costs of the later frames; detail: Laplacian variance of the "
          "last frame / the first's (brush-stroke texture kept)")
    if "flow" in rows and "previous" in rows:
        print(f"\nflow / previous seconds per later frame: {rows['flow'][1] / rows['previous'][1]:.2f}")
    print(f"frames: {args.out}/MODE/")


if __name__ == "__main__":
    main()
