"""The keyframe method against per-frame optimization on a real clip: speed, look, steadiness.

  optimize:   --method optimize --temporal flow on a part of the clip (--part A:N, output
              positions), timed; the whole clip extrapolated from it (each shot's first frame
              at the first-frame cost, the others at the later-frame median).
  keyframes:  --method keyframes (or --method fast) on the whole clip, end to end (plan,
              keyframes, training, painting or refining every frame, encoding), timed.
  report:     on the part's frames that are not keyframes: the project's own content and style
              costs (Stylizer.objective at the render's settings) of both methods, and the
              warping error (Lai et al. 2018) of both, measured with Farneback's flow (neither
              renderer's DIS flow); a PNG grid content | optimize | keyframes to look at.

Run:  python benchmarks/keyframes.py [--video ../shared/data/cockatoo.mp4] [--size 384]
          [--style ../shared/data/starry_night.jpg] [--part 100:6]
          [--phases optimize,keyframes,report] [--variant NAME --train-steps N --train-perceptual W]
Each phase keeps its frames and figures under --out (default /tmp/nst_keyframes), so the
phases can be run one at a time (a 384 px run is ~15 + ~25 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from seams import Farneback, kept

from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.video.flow import frame_warping_errors
from nstvideo.photos import build_stylizer, load
from nstvideo.video.render import stylize_video
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import to_tensor

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def content_frames(video: Path, hw: tuple[int, int], first: int, n: int) -> list[np.ndarray]:
    cap, out, k = cv2.VideoCapture(str(video)), [], 0
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        if k >= first:
            out.append(cv2.cvtColor(cv2.resize(f, (hw[1], hw[0]), interpolation=cv2.INTER_AREA),
                                    cv2.COLOR_BGR2RGB))
        k += 1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DATA / "cockatoo.mp4")
    ap.add_argument("--style", type=Path, default=DATA / "starry_night.jpg")
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--part", default="100:6", help="A:N, the optimize part (output positions)")
    ap.add_argument("--keyframes", default="auto")
    ap.add_argument("--train-steps", type=int, default=VideoSettings.train_steps)
    ap.add_argument("--train-perceptual", type=float, default=VideoSettings.train_perceptual)
    ap.add_argument("--method", default="keyframes", choices=["keyframes", "fast"],
                    help="the fast method to run in the 'keyframes' phase")
    ap.add_argument("--frames", type=int, default=None,
                    help="the fast runs render only the clip's first N frames")
    ap.add_argument("--refine-iterations", type=int, default=VideoSettings.refine_iterations)
    ap.add_argument("--warp", default=VideoSettings.warp, help="the fast runs' warp")
    ap.add_argument("--no-hold-static", action="store_true", help="the fast runs: hold_static off")
    ap.add_argument("--temporal-weight", type=float, default=VideoSettings.temporal_weight,
                    help="the fast runs' temporal weight (default: the method's)")
    ap.add_argument("--content-weight", type=float, default=None,
                    help="the fast runs' content weight α (default: the weights' own)")
    ap.add_argument("--variant", default="", help="a name for this keyframes run (its frames "
                    "and figures are kept beside the others'; the report covers them all)")
    ap.add_argument("--precision", default=StyleSettings.precision,
                    help="auto, fp32 or bf16, for every phase (auto: bf16 where the device "
                    "computes it natively)")
    ap.add_argument("--phases", default="optimize,keyframes,report")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "nst_keyframes")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    a, n = (int(v) for v in args.part.split(":"))
    settings = StyleSettings(size=args.size, seed=0, precision=args.precision)
    phases = args.phases.split(",")
    figures = args.out / "figures.json"
    fig = json.loads(figures.read_text()) if figures.exists() else {}

    if "optimize" in phases:
        out = args.out / "optimize.mp4"
        shutil.rmtree(checkpoint_dir(out), ignore_errors=True)  # frames kept by a last run
        times: list[float] = []
        last = [time.perf_counter()]

        def on_event(kind, unit, where, detail):
            if kind == "frame":
                times.append(time.perf_counter() - last[0])
                last[0] = time.perf_counter()

        t0 = time.perf_counter()
        stylize_video(args.video, [args.style], out, settings=settings,
                      video=VideoSettings(start=f"{a}f", duration=f"{n}f"), keep_frames=True,
                      overwrite=True, restart=True, on_event=on_event)
        fig["optimize"] = {"part": [a, n], "wall": time.perf_counter() - t0, "frame_s": times}
        figures.write_text(json.dumps(fig, indent=1))

    name = args.method + (f"_{args.variant}" if args.variant else "")
    if "keyframes" in phases:
        out = args.out / f"{name}.mp4"
        shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
        t0 = time.perf_counter()
        rep = stylize_video(args.video, [args.style], out,
                            settings=settings.replace(content_weight=args.content_weight),
                            video=VideoSettings(method=args.method, keyframes=args.keyframes,
                                                duration=args.frames and f"{args.frames}f",
                                                refine_iterations=args.refine_iterations,
                                                warp=args.warp,
                                                hold_static=not args.no_hold_static,
                                                temporal_weight=args.temporal_weight,
                                                train_steps=args.train_steps,
                                                train_perceptual=args.train_perceptual,
                                                save_net=str(args.out / f"{name}.pt")),
                            keep_frames=True, overwrite=True, restart=True)
        fig[name] = {"wall": time.perf_counter() - t0, "frames": rep.frames,
                            "keys": rep.keyframes, "cuts": [0, *rep.scene_cuts],
                            "training": rep.training,
                            "paint_s_per_frame": rep.seconds_per_frame}
        figures.write_text(json.dumps(fig, indent=1))

    if "report" in phases:
        report(args, fig, a, n, settings)


def report(args, fig: dict, a: int, n: int, settings: StyleSettings) -> None:
    opt = fig["optimize"]
    runs = {k: v for k, v in fig.items() if k.startswith(("keyframes", "fast"))}
    o_frames = kept(args.out / "optimize.mp4")
    hw = o_frames[0].shape[:2]
    content = content_frames(args.video, hw, a, n)
    any_run = next(iter(runs.values()))
    total, shots = any_run["frames"], len(any_run["cuts"])
    first, later = opt["frame_s"][0], statistics.median(opt["frame_s"][1:])
    extrapolated = shots * first + (total - shots) * later
    print(f"{args.video.name}: {total} frames at {hw[1]}x{hw[0]}, style {args.style.name}, "
          f"{shots} shot(s); threads {torch.get_num_threads()}")
    print(f"optimize (part {a}..{a + n - 1}): first frame {first:.0f} s, later frames "
          f"median {later:.0f} s -> whole clip {extrapolated / 60:.0f} min "
          f"({total / (extrapolated / 60):.2f} frames/min)")
    def own_extrapolation(run: dict) -> float:  # optimizing the frames that run rendered
        cuts = len(run["cuts"])
        return cuts * first + (run["frames"] - cuts) * later

    # the costs in fp32 whatever the runs computed in
    stylizer = build_stylizer([load(args.style, "style")], replace(settings, precision="fp32"))
    flow = Farneback()

    def costs(frames, keys):
        rows = []
        for i in range(n):
            if a + i not in keys:
                f = stylizer.objective(to_tensor(content[i], stylizer.device))
                p = f(to_tensor(frames[i], stylizer.device))[1]
                rows.append((float(p["content"]) * stylizer.alpha,
                             float(p["style"]) * stylizer.beta))
        return [statistics.median(r[j] for r in rows) for j in (0, 1)]

    err = lambda frames: float(np.mean(frame_warping_errors(frames, content, flow)))  # noqa: E731
    keys_all = sorted({k for r in runs.values() for k in r["keys"]})
    oc, os_ = costs(o_frames, keys_all)
    eo, ec = err(o_frames), err(content)
    print("| run | keyframes | training | s/frame | end to end | speed-up | content "
          "cost | style cost | warping error |\n|---|---|---|---|---|---|---|---|---|")
    print(f"| optimize --temporal flow | - | - | {later:.0f} (later frames) | "
          f"{extrapolated / 60:.0f} min (extrapolated) | 1x | {oc:.3g} | {os_:.3g} | {eo:.1f} |")
    strips = [np.concatenate([content[i] for i in range(n) if a + i not in keys_all][:3], 0),
              np.concatenate([o_frames[i] for i in range(n) if a + i not in keys_all][:3], 0)]
    for name, key in runs.items():
        k_frames = kept(args.out / f"{name}.mp4")[a:a + n]
        kc, ks = costs(k_frames, keys_all)
        tr = key["training"]
        trained = "-" if not tr else (f"{tr['steps']} steps, {tr['seconds']:.0f} s, "
                                      f"L1 {tr['first_loss']:.1f} -> {tr['last_loss']:.1f}")
        print(f"| {name} | {len(key['keys'])} {key['keys']} | {trained} | "
              f"{key['paint_s_per_frame']:.3f} | {key['wall'] / 60:.1f} min | "
              f"{own_extrapolation(key) / key['wall']:.1f}x | {kc:.3g} ({kc / oc:.2f}x) | {ks:.3g} "
              f"({ks / os_:.3g}x) | {err(k_frames):.1f} ({err(k_frames) / eo:.2f}x) |")
        strips.append(np.concatenate([k_frames[i] for i in range(n)
                                      if a + i not in keys_all][:3], 0))
    print(f"the content's own warping error: {ec:.1f} (Farneback flow, frames {a}..{a + n - 1}); "
          "costs: medians over the part's frames that are no run's keyframe, weighted (α, β)")
    path = args.out / "grid.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(strips, axis=1), cv2.COLOR_RGB2BGR))
    print(f"grid (columns: content | optimize | {' | '.join(runs)}): {path}")


if __name__ == "__main__":
    main()
