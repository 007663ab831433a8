"""Video throughput on the CPU: nstvideo with the default temporal mode against pastiche
stylizing each frame on its own at its default 1000 iterations, on a real clip; both with the
same objective (as in vs_pastiche.py) and the same frames. Prints frames per minute and the
temporal warping error (benchmarks/temporal.py) of each.

Run:  python benchmarks/video_speed.py [--sizes 256,384] [--frames 6] [--pastiche-frames 2]
      [--pastiche-iterations 1000]
pastiche renders only --pastiche-frames frames (its cost per frame does not depend on the
frame); its warping error needs at least 2.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nstvideo.photos import build_stylizer
from nstvideo.media.reader import read_image
from nstvideo.media.video import VideoFile
from nstvideo.media.writer import write_image
from nstvideo.video.frames import FrameRenderer
from nstvideo.video.job import even_size
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import resize

from nstvideo.video.flow import warping_error
from vs_pastiche import run_pastiche

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TMP = Path(tempfile.gettempdir()) / "nst_video_speed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DATA / "cockatoo.mp4")
    ap.add_argument("--style", type=Path, default=DATA / "starry_night.jpg")
    ap.add_argument("--sizes", default="256,384")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--pastiche-frames", type=int, default=2)
    ap.add_argument("--pastiche-iterations", type=int, default=1000)
    args = ap.parse_args()
    TMP.mkdir(parents=True, exist_ok=True)
    src = VideoFile(args.video)
    style = read_image(args.style)
    print(f"{'size':>6}{'tool':>10}{'frames/min':>12}{'warp err':>10}")
    for size in (int(s) for s in args.sizes.split(",")):
        hw = even_size(src.height, src.width, size)
        frames = [resize(f, hw) for _, f, _ in src.frames(0, args.frames)]
        settings = StyleSettings(size=size, device="cpu", tv_weight=0.0)
        renderer = FrameRenderer(build_stylizer(style, settings), VideoSettings())
        t = time.perf_counter()
        ours = [renderer.render(f)[0] for f in frames]
        ours_fpm = 60 * len(frames) / (time.perf_counter() - t)
        style_png = write_image(TMP / f"style_{size}.png",
                                resize(style, even_size(*style.shape[:2], size)))
        theirs, t = [], time.perf_counter()
        for k, f in enumerate(frames[: args.pastiche_frames]):
            png = write_image(TMP / f"content_{size}_{k}.png", f)
            img, _ = run_pastiche(png, style_png, hw, read_image(style_png).shape[:2],
                                  settings.replace(iterations=args.pastiche_iterations))
            theirs.append(img)
        theirs_fpm = 60 * len(theirs) / (time.perf_counter() - t)
        n = len(theirs)
        print(f"{size:>6}{'nstvideo':>10}{ours_fpm:>12.2f}{warping_error(ours, frames):>10.1f}")
        print(f"{size:>6}{'pastiche':>10}{theirs_fpm:>12.3f}"
              f"{warping_error(theirs, frames[:n]) if n > 1 else float('nan'):>10.1f}")
        print(f"{size:>6}{'ratio':>10}{ours_fpm / theirs_fpm:>12.1f}x", flush=True)


if __name__ == "__main__":
    main()
