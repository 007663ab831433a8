"""Peak memory of a render against clip length: a 10 s and a 60 s clip of the same size, each
rendered in its own process; frames are streamed, so the peaks should match (within 10%).

Run:  python benchmarks/memory.py [--device cpu|cuda] [--size 128] [--lengths 10,60]
Prints peak RSS (and peak GPU memory on CUDA) per clip, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np

TMP = Path(tempfile.gettempdir()) / "nst_memory"


def make_clip(seconds: float, w: int = 320, h: int = 240, fps: int = 20) -> Path:
    path = TMP / f"clip_{seconds:g}s.mp4"
    if not path.exists():
        TMP.mkdir(parents=True, exist_ok=True)
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f",
                        "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}", "-f", "lavfi", "-i",
                        "sine=frequency=300", "-t", str(seconds), "-c:v", "libx264",
                        "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)], check=True)
    return path


def child(path: str, device: str, size: int) -> None:
    import torch

    from nstvideo.video.render import stylize_video
    from nstvideo.settings import StyleSettings, VideoSettings

    style = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    t = time.perf_counter()
    rep = stylize_video(path, [style], TMP / f"out_{Path(path).stem}.mp4",
                        settings=StyleSettings(size=size, device=device),
                        video=VideoSettings(iterations=1, iterations_first=1),
                        overwrite=True, restart=True)
    gpu = torch.cuda.max_memory_allocated() / 2 ** 20 if device.startswith("cuda") else 0.0
    print(json.dumps({"frames": rep.frames, "seconds": time.perf_counter() - t, "gpu_mib": gpu,
                      "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--lengths", default="10,60")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    rows = []
    for seconds in (float(s) for s in args.lengths.split(",")):
        path = make_clip(seconds)
        out = subprocess.run([sys.executable, __file__, "--child", str(path), args.device,
                              str(args.size)], capture_output=True, text=True, check=True)
        rows.append((seconds, json.loads(out.stdout.strip().splitlines()[-1])))
    print("| clip | frames | render s | peak RSS MiB | peak GPU MiB |\n|---|---|---|---|---|")
    for seconds, r in rows:
        print(f"| {seconds:g} s, 320x240 -> {args.size} px | {r['frames']} | {r['seconds']:.0f} | "
              f"{r['rss_mib']:.0f} | {r['gpu_mib']:.0f} |")
    a, b = rows[0][1], rows[-1][1]
    print(f"\nlongest/shortest peak RSS: {b['rss_mib'] / a['rss_mib']:.3f}"
          + (f", GPU: {b['gpu_mib'] / a['gpu_mib']:.3f}" if a["gpu_mib"] else ""))


if __name__ == "__main__":
    main()
