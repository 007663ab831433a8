"""Any size: the tiled objective's exactness, memory and cost, and the poster's projection.

Each measurement of memory or time runs in its own process (peak RSS is per process), one
after another, so the figures of one run sit side by side.

  python benchmarks/any_size.py exact [--size 1024] [--iterations 50] [--tile 256]
          [--render-size N]
      value and gradient, tiled against whole, fp32 (relative error); then a render of
      --iterations in tiles against the whole, same seed: PSNR (dB)
  python benchmarks/any_size.py memory --size 4096 --max-memory 6 [--iterations 2]
      peak RSS, the plan chosen, seconds per iteration per megapixel
  python benchmarks/any_size.py cost [--size 2048] [--tile 1024] [--iterations 3]
      seconds per iteration per megapixel, whole against --tile, side by side
  python benchmarks/any_size.py history [--size 256] [--iterations 300]
      L-BFGS's curvature pairs (100, 10, 3; fp32 and bf16): the cost reached
  python benchmarks/any_size.py big [--size 4096] [--max-memory 6] [--iterations N]
      a render with the default schedule (--iterations at its coarsest level): its look
      scaled to 512 beside a 512 px render's, and the gradient across each tile border
      against the rows or columns around it (seams; 1.00: none)
  python benchmarks/any_size.py video4k [--frames 3] [--iterations 2] [--max-memory GB]
      a 4K clip rendered: each frame's memory plan and the peak RSS
  python benchmarks/any_size.py poster [--size 10800] [--max-memory 12] [--iterations 2]
      the poster's top level measured (s/iteration, peak RSS) and the whole schedule
      projected from it (each level's pixels x its iterations)
Content: ../shared/data/tubingen.jpg, style: starry_night.jpg (any pair: --content/--style).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def child(args) -> dict:
    """One optimization in this process: its plan, seconds per iteration, peak RSS."""
    import torch

    from nstvideo.media.reader import read_image
    from nstvideo.settings import StyleSettings
    from nstvideo.style.stylizer import Stylizer

    s = StyleSettings(size=args.size, iterations=args.iterations, seed=0,
                      max_memory=args.max_memory, tile=args.tile or None,
                      precision=args.precision, max_megapixels=1000, coarse_levels=1)
    st = Stylizer([read_image(args.style, longest=args.size)], s)
    content = st.prepare(read_image(args.content, max_pixels=10 ** 9))
    times = []
    t0 = time.perf_counter()
    x, rep = st.run(content, content,  # as the command does: the optimizer copies its start
                    on_step=lambda i, p: times.append(time.perf_counter()))
    total = time.perf_counter() - t0
    steps = [b - a for a, b in zip([t0] + times, times)]
    mp = content.shape[2] * content.shape[3] / 1e6
    out = {"hw": list(content.shape[2:]), "plan": rep.memory.describe(),
           "tile": rep.memory.tile, "history": rep.memory.history,
           "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
           "first_s": steps[0], "s_per_it": statistics.median(steps[1:] or steps),
           "total_s": total, "mp": mp, "loss": rep.last["total"]}
    out["s_per_it_mp"] = out["s_per_it"] / mp
    if args.save:
        torch.save(x, args.save)
    return out


def run_child(args, **over) -> dict:
    argv = [sys.executable, __file__, "child"]
    for k, v in {**vars(args), **over}.items():
        if k not in ("mode", "func") and v is not None:
            argv += [f"--{k.replace('_', '-')}", str(v)]
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def exact(args):
    import torch

    from nstvideo.media.reader import read_image
    from nstvideo.settings import StyleSettings
    from nstvideo.style.stylizer import Stylizer

    st = Stylizer([read_image(args.style)], StyleSettings(size=args.size, precision="fp32"))
    content = st.prepare(read_image(args.content))
    x = (content + 30 * torch.randn(content.shape, generator=torch.Generator().manual_seed(0)))
    x = x.clamp(0, 255)
    got = []
    for tile in (None, args.tile):
        xr = x.clone().requires_grad_(True)
        total, _ = st.objective(content, None, tile)(xr)
        (g,) = torch.autograd.grad(total.sum(), xr)
        got.append((float(total.detach().sum()), g))
    (v0, g0), (v1, g1) = got
    print(f"{content.shape[3]}x{content.shape[2]}, tiles of {args.tile}: value rel. error "
          f"{abs(v1 - v0) / abs(v0):.2e}, gradient rel. error "
          f"{float((g1 - g0).norm() / g0.norm()):.2e}", flush=True)
    size = args.render_size or args.size  # the render may be smaller than the check
    a = run_child(args, mode="child", precision="fp32", tile=0, size=size,
                  save="/tmp/any_whole.pt")
    b = run_child(args, mode="child", precision="fp32", size=size, save="/tmp/any_tiled.pt")
    x0, x1 = torch.load("/tmp/any_whole.pt"), torch.load("/tmp/any_tiled.pt")
    mse = float((x0.clamp(0, 255).round() - x1.clamp(0, 255).round()).pow(2).mean())
    print(f"{size} px, {args.iterations} iterations fp32: whole loss {a['loss']:.6g}, tiled "
          f"{b['loss']:.6g}; PSNR {10 * math.log10(255 ** 2 / max(mse, 1e-12)):.1f} dB; "
          f"{a['s_per_it']:.1f} s/it whole, {b['s_per_it']:.1f} tiled", flush=True)


def memory(args):
    r = run_child(args, mode="child")
    print(f"{r['hw'][1]}x{r['hw'][0]}, --max-memory {args.max_memory}: {r['plan']}; peak RSS "
          f"{r['peak_rss_gb']:.2f} GB; {r['s_per_it']:.1f} s/it ({r['s_per_it_mp']:.2f} s/it/MP),"
          f" first evaluation {r['first_s']:.1f} s", flush=True)


def cost(args):
    rows = []
    for tile in (0, args.tile, 0, args.tile):  # alternated: drift on a shared machine
        r = run_child(args, mode="child", tile=tile)
        rows.append((tile, r))
        print(f"tile {tile or 'none'}: {r['plan']}; {r['s_per_it_mp']:.2f} s/it/MP, peak "
              f"{r['peak_rss_gb']:.2f} GB", flush=True)
    whole = sorted(r["s_per_it_mp"] for t, r in rows if not t)
    tiled = sorted(r["s_per_it_mp"] for t, r in rows if t)
    print(f"tiled/whole: {sum(tiled) / sum(whole):.2f}x (s/it/MP {sum(whole) / 2:.2f} -> "
          f"{sum(tiled) / 2:.2f})")


def history(args):
    from nstvideo.media.reader import read_image
    from nstvideo.settings import StyleSettings
    from nstvideo.style import optimize as O
    from nstvideo.style.stylizer import Stylizer
    import torch

    st = Stylizer([read_image(args.style)], StyleSettings(size=args.size, seed=0))
    content = st.prepare(read_image(args.content))
    first = None
    for n, dtype in ((100, torch.float32), (10, torch.float32), (10, torch.bfloat16),
                     (3, torch.float32)):
        t0 = time.perf_counter()
        x, rep = O.optimize(content.clone(), st.objective(content), iterations=args.iterations,
                            precondition=st.precondition, history=n, history_dtype=dtype)
        first = first or rep.first["total"]
        print(f"{n} pairs {str(dtype)[6:]}: loss {rep.last['total']:.5g} (fall "
              f"{(first - rep.last['total']) / first:.4f}), {time.perf_counter() - t0:.0f} s",
              flush=True)


def poster(args):
    """The top level measured; the schedule's lower levels projected from its s/it/MP (they
    fit whole or in fewer tiles, so this overestimates them a little)."""
    from nstvideo.settings import StyleSettings
    from nstvideo.style.stylizer import schedule

    from nstvideo.media.reader import read_image
    from nstvideo.media.writer import write_image

    img = read_image(args.content)  # cropped to the poster's 3:2 (36 x 24 inches)
    h = min(img.shape[0], img.shape[1] * 2 // 3)
    write_image("/tmp/poster_content.png", img[(img.shape[0] - h) // 2:][:h, :h * 3 // 2])
    r = run_child(args, mode="child", content="/tmp/poster_content.png")
    print(f"top level {r['hw'][1]}x{r['hw'][0]}: {r['plan']}; peak RSS {r['peak_rss_gb']:.2f} "
          f"GB; {r['s_per_it']:.0f} s/it ({r['s_per_it_mp']:.2f} s/it/MP)", flush=True)
    s = StyleSettings(size=args.size)
    total = 0.0
    for (h, w), n in schedule(tuple(r["hw"]), s.iterations, s):
        sec = n * r["s_per_it_mp"] * h * w / 1e6
        total += sec
        print(f"  {w}x{h}: {n} iterations, ~{sec / 3600:.2f} h")
    print(f"projected: {total / 3600:.1f} h for the whole schedule")


def big(args):
    """A render at --size with the default schedule in --max-memory, saved as big_SIZE.png:
    its look scaled down to 512 (style reduction / content ratio at 1/4, 1/2, 1x of 512,
    benchmarks/look.py) beside a 512 px render's, and the seams: the mean gradient magnitude
    across each tile border against the 28 rows (columns) around it, beside the same ratio at
    the 16 px grid's other rows (columns), where VGG's poolings leave a faint
    grid in any render, tiled or not (a seam: borders above those)."""
    import numpy as np

    from look import measure
    from nstvideo import stylize_image
    from nstvideo.media.reader import read_image
    from nstvideo.media.writer import write_image
    from nstvideo.photos import build_stylizer, run_one
    from nstvideo.settings import StyleSettings
    from nstvideo.style.vgg import VGGFeatures

    content, style = read_image(args.content), read_image(args.style)
    s = StyleSettings()
    vgg = VGGFeatures([s.content_layer] + [n for n, _ in s.style_layers])
    t0 = time.perf_counter()
    big_settings = StyleSettings(size=args.size, seed=0, max_memory=args.max_memory,
                                 max_megapixels=1000,  # as stylize_image builds it
                                 **({"iterations": args.iterations} if args.iterations else {}))
    out, report = run_one(build_stylizer([style], big_settings), content, progress=True)
    seconds = time.perf_counter() - t0
    tile = report.memory.tile  # the top level's plan, as it ran
    write_image(f"/tmp/big_{args.size}.png", out)
    small = stylize_image(content, [style], size=512, seed=0)
    for name, img in ((f"{args.size} px, scaled to 512", out), ("512 px", small)):
        cells = " | ".join(f"{a:.3f} / {b:.2f}" for a, b in measure(vgg, content, style, img, 512))
        print(f"| {name} | {cells} |", flush=True)
    print(f"{args.size} px: {report.memory.describe()}, {seconds / 60:.0f} min")
    if tile:
        for axis, name in ((0, "rows"), (1, "columns")):
            g = np.abs(np.diff(out.astype(np.float32), axis=axis)).mean(axis=(1 - axis, 2))
            near = lambda b: np.r_[g[b - 17:b - 3], g[b + 2:b + 16]].mean()  # noqa: E731
            borders = [g[b - 1] / near(b) for b in range(tile, len(g) - 16, tile)]
            # VGG's poolings leave a faint grid in any render (every 2, 8 or 16 px), and tile
            # borders lie on it: a seam is a border above the grid's other lines
            grid = [g[b - 1] / near(b) for b in range(32, len(g) - 16, 16) if b % tile]
            odd = [g[b - 1] / near(b) for b in range(21, len(g) - 16, 2)]
            print(f"gradient across tile borders / the 28 {name} around each: "
                  + " ".join(f"{r:.3f}" for r in borders)
                  + f" (the 16 px grid's other lines: median {np.median(grid):.3f}, 90% within "
                  f"{np.percentile(grid, 5):.3f}-{np.percentile(grid, 95):.3f}; odd {name}: "
                  f"median {np.median(odd):.3f})")


def video4k(args):
    """A 4K clip (the real cockatoo clip scaled to 3840x2160, --frames frames) rendered in a
    child process: the report's memory line and the process's peak RSS."""
    import imageio_ffmpeg

    clip = Path("/tmp/any_size_4k.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i",
                    str(DATA / "cockatoo.mp4"), "-frames:v", str(args.frames), "-vf",
                    "scale=3840:2160", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip)],
                   check=True)
    code = ("import json, resource, time, sys\n"
            "from nstvideo import stylize\n"
            "from nstvideo.settings import VideoSettings\n"
            "t = time.perf_counter()\n"
            f"rep = stylize({str(clip)!r}, {args.style!r}, '/tmp/any_size_4k_out.mp4', "
            f"size=3840, seed=0, overwrite=True, restart=True, max_memory={args.max_memory!r}, "
            f"video=VideoSettings(iterations={args.iterations}, "
            f"iterations_first={args.iterations}))\n"
            "print(json.dumps({'memory': rep.video.memory, 'frames': rep.video.frames, "
            "'s': time.perf_counter() - t, "
            "'peak': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(p.stderr[-3000:])
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"3840x2160, {r['frames']} frames x {args.iterations} iterations: each frame "
          f"{r['memory']}; peak RSS {r['peak']:.2f} GB; {r['s'] / r['frames']:.0f} s a frame")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["exact", "memory", "cost", "history", "poster", "video4k",
                                     "big", "child"])
    ap.add_argument("--content", default=str(DATA / "tubingen.jpg"))
    ap.add_argument("--style", default=str(DATA / "starry_night.jpg"))
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--iterations", type=int, default=None)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--max-memory", type=float, default=None)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--save", default=None)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--render-size", type=int, default=None)
    args = ap.parse_args()
    defaults = {"exact": (1024, 50, 256), "memory": (4096, 2, 0), "cost": (2048, 3, 1024),
                "history": (256, 300, 0), "poster": (10800, 2, 0), "video4k": (3840, 2, 0),
                "big": (4096, 0, 0),
                "child": (512, 2, 0)}
    size, its, tile = defaults[args.mode]
    args.size = args.size or size
    args.iterations = args.iterations or its
    args.tile = tile if args.tile is None else args.tile
    if args.mode == "child":
        print(json.dumps(child(args)))
    else:
        globals()[args.mode](args)


if __name__ == "__main__":
    main()
