"""Peak disk use of a long render: segments (what a render keeps now) against a folder of
every finished frame as PNG (what it kept before segments, and what --keep-frames keeps).

A film-like clip (benchmarks/clips.py, real footage cut into shots) is rendered in one
process while a thread measures, every 0.2 s, the bytes under the output's checkpoint folder
plus the output itself; the PNG folder's size is the sum of every frame's PNG as it was
written (recorded in the checkpoint). Few iterations: the figure is about storage, not looks.

Run:  python benchmarks/disk.py [--frames 2000] [--size 256] [--iterations 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from clips import DATA, film

from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.video.render import stylize_video
from nstvideo.settings import StyleSettings, VideoSettings


def used(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        if p.is_file():
            total += p.stat().st_size
        elif p.is_dir():
            total += sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=1)
    args = ap.parse_args()
    clip, lengths = film(args.frames, width=args.size)
    out = Path(tempfile.mkdtemp(prefix="nst_disk_")) / "film.mp4"
    folder = checkpoint_dir(out)
    peak = {"render": 0, "join": 0}
    png_bytes: dict[str, int] = {}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                n = used([folder, out, *out.parent.glob(f".{out.stem}*")])
                joining = any(out.parent.glob(f".{out.name}.segments*"))
                key = "join" if joining else "render"
                peak[key] = max(peak[key], n)
                for rec in folder.glob("u*/frames.jsonl"):
                    png_bytes[rec.parent.name] = sum(
                        r.get("bytes", 0) for r in map(json.loads, rec.read_text().splitlines())
                        if "k" in r)
            except (OSError, ValueError):
                pass
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0 = time.perf_counter()
    rep = stylize_video(clip, DATA / "starry_night.jpg", out, settings=StyleSettings(
        size=args.size), video=VideoSettings(iterations=args.iterations,
                                             iterations_first=args.iterations))
    seconds = time.perf_counter() - t0
    stop.set()
    t.join()
    final = out.stat().st_size
    pngs = sum(png_bytes.values())
    mb = 1e6
    print(f"clip: {clip.name}, {rep.frames} frames at {args.size} px, {len(lengths)} shots, "
          f"{rep.units} units, {seconds / 60:.1f} min")
    print(f"final file:                     {final / mb:8.1f} MB")
    print(f"peak during the render:         {peak['render'] / mb:8.1f} MB "
          f"({peak['render'] / final:.2f}x the final file)")
    print(f"peak during the join:           {peak['join'] / mb:8.1f} MB "
          f"({peak['join'] / final:.2f}x)")
    print(f"every frame as PNG (before):    {pngs / mb:8.1f} MB ({pngs / final:.1f}x the final "
          f"file; segments' peak is {peak['render'] / pngs:.3f}x of it)")


if __name__ == "__main__":
    main()
