"""Seams between the pieces of a long shot: when several workers share a shot, each piece
after the first starts `overlap` frames before the previous one ends, and those frames are
cross-faded. Two optimization chains never paint the same strokes, so a hard seam jumps; a
fade spreads the jump over `overlap` frames.

Renders one long real shot (the cockatoo clip) split in pieces (--workers 2, --overlap W) for
several W, and the same shot unsplit, and prints the warping error (Lai et al. 2018) at the
seams against the mean within the pieces. The error is measured with Farneback's flow, not
the DIS flow the renderer uses, so that the renderer is not graded by its own flow. Writes a
PNG strip of the frames around each seam under --out to look at.

Run:  python benchmarks/seams.py [--frames 128] [--size 128] [--iterations 40]
          [--overlaps 1,4,8,16] [--style ../shared/data/the_scream.jpg] [--no-unsplit]
Target (issue #9): seam error at most 1.2x the mean within the pieces.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from clips import DATA

from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.video.flow import frame_warping_errors
from nstvideo.video.job import even_size
from nstvideo.video.render import stylize_video
from nstvideo.settings import StyleSettings, VideoSettings


class Farneback:
    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (a, b))
        return cv2.calcOpticalFlowFarneback(ga, gb, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def kept(out: Path) -> list[np.ndarray]:
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
            for p in sorted(checkpoint_dir(out).glob("frame_*.png"))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DATA / "cockatoo.mp4")
    ap.add_argument("--style", type=Path, default=DATA / "the_scream.jpg")
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--overlaps", default="1,4,8,16")
    ap.add_argument("--no-unsplit", action="store_true", help="skip the unsplit reference")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "nst_seams")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = StyleSettings(size=args.size, seed=0)
    base = VideoSettings(iterations=args.iterations, duration=f"{args.frames}f")
    cap = cv2.VideoCapture(str(args.video))
    content = []
    while len(content) < args.frames:
        ok, f = cap.read()
        if not ok:
            break
        content.append(f)
    h, w = even_size(content[0].shape[0], content[0].shape[1], args.size)
    content = [cv2.cvtColor(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_BGR2RGB) for f in content]
    flow = Farneback()
    overlaps = [int(o) for o in args.overlaps.split(",")]
    runs = [] if args.no_unsplit else [("unsplit", None)]
    runs += [(f"overlap {o}", o) for o in overlaps]
    print(f"{args.video.name}: {len(content)} frames at {w}x{h}, {args.iterations} iterations "
          f"a frame, style {args.style.name}; warping error with Farneback flow")
    print(f"{'run':<12} {'units':>5} {'seam err':>9} {'within':>8} {'ratio':>6} {'min':>6}")
    for name, overlap in runs:
        out = args.out / f"{name.replace(' ', '_')}.mp4"
        video = base if overlap is None else base.replace(overlap=overlap)
        t0 = time.perf_counter()
        rep = stylize_video(args.video, [args.style], out, settings=settings, video=video,
                            keep_frames=True, overwrite=True, restart=True,
                            workers=1 if overlap is None else 2)
        frames = kept(out)
        errs = frame_warping_errors(frames, content, flow)
        # unsplit: measured at the windows of the second overlap's split, for reference
        plan = split_plan(len(frames), overlap or overlaps[min(1, len(overlaps) - 1)])
        seam = sorted({t - 1 for a, b in plan for t in range(a, b + 1) if 0 < t < len(frames)})
        inside = [e for i, e in enumerate(errs) if i not in seam]
        s = np.mean([errs[i] for i in seam]) if seam else float("nan")
        print(f"{name:<12} {rep.units:>5} {s:>9.1f} {np.mean(inside):>8.1f} "
              f"{s / np.mean(inside):>6.2f} {time.perf_counter() - t0:>5.0f}s")
        for a, b in plan:
            strip = np.concatenate(frames[max(0, a - 2):b + 2], axis=1)
            cv2.imwrite(str(args.out / f"{name.replace(' ', '_')}_seam_{a}.png"),
                        cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
        for p in checkpoint_dir(out).glob("frame_*.png"):
            p.unlink()


def split_plan(total: int, overlap: int) -> list[tuple[int, int]]:
    """The cross-faded windows [a, b) of a two-worker render of one shot of `total` frames."""
    from nstvideo.video.plan import make_units

    units = make_units(total, [0], workers=2, overlap=overlap)
    return [(u.begin, u.begin + u.head) for u in units if u.head]


if __name__ == "__main__":
    main()
