"""What carrying a painted frame along the flow does to its style cost, layer by layer.

A painted frame (the optimizer's result for frame K-1 of a render kept with --keep-frames, or,
without --frames, frame 0 of the clip optimized here) is warped to frame K with the flow the
renderer uses (DIS, backward) by each interpolation, and the project's style cost
(Stylizer.objective at the default settings) is printed per layer against frame K's content:
the refining iterations of a frame start from this. Bilinear sampling at sub-pixel offsets
averages neighbours, and the deep layers' Grams (relu4_1 carries most of the cost) react to
the lost texture far more than the eye does (RESULTS.md, "Fast 3").

Run:  python benchmarks/warp_texture.py [--size 128] [--k 1] [--frames DIR --k K]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from keyframes import DATA, content_frames

from nstvideo.photos import build_stylizer, load
from nstvideo.settings import StyleSettings
from nstvideo.style import losses
from nstvideo.style.tensors import to_image, to_tensor
from nstvideo.video.flow import FlowEstimator, analyse, warp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DATA / "cockatoo.mp4")
    ap.add_argument("--style", type=Path, default=DATA / "starry_night.jpg")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--k", type=int, default=1, help="the frame warped to (from K-1)")
    ap.add_argument("--frames", type=Path, default=None,
                    help="a kept render's frames (frame_%%06d.png at --size)")
    ap.add_argument("--iterations", type=int, default=300, help="without --frames")
    args = ap.parse_args()
    settings = StyleSettings(size=args.size, seed=0, iterations=args.iterations)
    st = build_stylizer([load(args.style, "style")], settings)
    if args.frames is not None:  # the render's own size (even sides)
        painted = cv2.cvtColor(cv2.imread(str(args.frames / f"frame_{args.k - 1:06d}.png")),
                               cv2.COLOR_BGR2RGB)
        hw = painted.shape[:2]
    else:
        cap = cv2.VideoCapture(str(args.video))
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        cap.release()
        hw = tuple(st.prepare(np.zeros((h, w, 3), np.uint8)).shape[2:])
    prev_c, cur_c = content_frames(args.video, hw, args.k - 1, 2)
    if args.frames is None:
        c = to_tensor(prev_c, st.device)
        painted = to_image(st.run(c, c)[0])
    pair = analyse(prev_c, cur_c, FlowEstimator("medium"))
    target = st.style_targets(to_tensor(cur_c, st.device))
    shift = np.round(pair.backward.reshape(-1, 2).mean(0)) * np.ones_like(pair.backward)
    starts = {"as painted (no move)": painted,
              "whole pixels (mean flow, rounded)": warp(painted, shift, "bilinear")}
    starts.update({m: warp(painted, pair.backward, m) for m in ("bilinear", "bicubic")})
    names = [n for n, _ in settings.style_layers]
    print(f"{args.video.name} frame {args.k - 1} -> {args.k} at {hw[1]}x{hw[0]}; "
          f"mean flow {np.linalg.norm(pair.backward, axis=2).mean():.2f} px; weighted style cost (beta)")
    print("| start | " + " | ".join(names) + " | total | x as painted |")
    print("|---" * (len(names) + 3) + "|")
    base = None
    for name, img in starts.items():
        with torch.no_grad():
            f = st.features(to_tensor(img, st.device))
        per = [float(lam * losses.style_loss(f[n], target[n]).sum()) * st.beta
               for n, lam in settings.style_layers]
        base = base or sum(per)
        print(f"| {name} | " + " | ".join(f"{v:.3g}" for v in per) +
              f" | {sum(per):.3g} | {sum(per) / base:.1f}x |")


if __name__ == "__main__":
    main()
