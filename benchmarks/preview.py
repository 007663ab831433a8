"""The preview's projected render times against real renders, and what the preview costs
against the frames it paints (#35).

For each size: `nstvideo.preview` of the clip (its default frames, the optimize method),
timed; then a real render with each method, timed in the same process (VGG loaded, as the
preview's), its time set against the preview's projection for that method. Also the
preview's own time against its frames' painting (the pass over the clip, the stylizer built,
the frames painted: what 4 first frames of the render cost) and what the rest of its time
went to (one later frame of each method's chain, a few training steps, the network painting).

Run:  python benchmarks/preview.py [--clip ../shared/data/cockatoo.mp4] [--frames 200]
      [--sizes 128,384] [--methods optimize,fast] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from nstvideo import StyleSettings, VideoSettings, stylize_video
from nstvideo.previews import preview

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=str(DATA / "cockatoo.mp4"))
    ap.add_argument("--style", default=str(DATA / "starry_night.jpg"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--sizes", default="128,384")
    ap.add_argument("--methods", default="optimize,fast")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    video = VideoSettings(duration=f"{a.frames}f")
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        settings = StyleSettings(size=size, seed=a.seed)
        t0 = time.perf_counter()
        rep = preview(a.clip, [a.style], settings=settings, video=video, write=False)
        spent = time.perf_counter() - t0
        row = rep.rows[0]
        painted = sum(f.seconds for f in row.frames)
        first = statistics.median(f.seconds for f in row.frames)
        print(f"{size} px: preview {spent:.1f} s for {len(row.frames)} frames (painting them "
              f"{painted:.1f} s, median {first:.1f} s a frame); {row.line()}; "
              f"{'; '.join(row.notes)}\n  measured: "
              + ", ".join(f"{k} {v:.2f} s" for k, v in row.measured.items() if v is not None),
              flush=True)
        for method in a.methods.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                stylize_video(a.clip, [a.style], Path(tmp) / "out.mp4", settings=settings,
                              video=video.replace(method=method))
                real = time.perf_counter() - t0
            projected = row.projection[method]
            rows.append((size, method, projected, real))
            print(f"  {method}: projected {projected:.0f} s, real {real:.0f} s, "
                  f"projected/real {projected / real:.2f}", flush=True)
    print("\n| size | method | projected s | real s | projected / real |")
    print("|---|---|---|---|---|")
    for size, method, p, r in rows:
        print(f"| {size} | {method} | {p:.0f} | {r:.0f} | {p / r:.2f} |")


if __name__ == "__main__":
    main()
