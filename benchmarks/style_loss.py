"""What the style cost's closed-form gradient saves in an optimizer iteration.

`losses.style_loss` computes ∂J/∂A in one matrix product (`_StyleLoss`); autograd through the
Gram (A·Aᵀ) takes two, one through a transposed copy, and adds them. This times the same
iterations of `Stylizer.run` (one frame of a clip, from the content) with each, alternating,
`--repeats` times, in each precision this machine computes natively, and prints the medians,
the ratio and both runs' final costs (equal up to rounding).

Run:  python benchmarks/style_loss.py [--size 384] [--iterations 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from keyframes import DATA

from nstvideo.media.video import open_source
from nstvideo.photos import build_stylizer, load
from nstvideo.settings import StyleSettings
from nstvideo.style import losses
from nstvideo.style.device import cpu_computes_bf16, resolve_device


def through_the_gram(a_g: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The same cost, its gradient left to autograd (what `style_loss` was)."""
    return (losses.style_target(a_g) - target).pow(2).sum(dim=(1, 2))


def first_frame(video: str) -> np.ndarray:
    """The clip's first frame, RGB, as a render decodes it."""
    return next(iter(open_source(Path(video)).frames()))[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(DATA / "cockatoo.mp4"))
    ap.add_argument("--style", default=str(DATA / "starry_night.jpg"))
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device("auto")
    native_bf16 = device.type == "cuda" or cpu_computes_bf16()
    closed_form = losses.style_loss
    print(f"{args.size} px, {args.iterations} iterations from the content, {args.threads} "
          f"threads, {device}; medians of {args.repeats}")
    print("| precision | through the Gram (s) | closed form (s) | speed-up | final costs, "
          "through the Gram / closed form |")
    print("|---|---|---|---|---|")
    for precision in ("fp32", "bf16") if native_bf16 else ("fp32",):
        st = build_stylizer([load(args.style, "style")],
                            StyleSettings(size=args.size, seed=0, precision=precision))
        c = st.prepare(first_frame(args.video))
        times: dict[str, list[float]] = {"gram": [], "closed": []}
        final = {}
        for i in range(args.repeats + 1):  # the first round warms up, not counted
            for name, fn in (("gram", through_the_gram), ("closed", closed_form)):
                losses.style_loss = fn
                t = time.perf_counter()
                _, report = st.run(c, c, iterations=args.iterations)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i:
                    times[name].append(time.perf_counter() - t)
                final[name] = (report.last["content"] * st.alpha, report.last["style"] * st.beta)
        losses.style_loss = closed_form
        g, f = statistics.median(times["gram"]), statistics.median(times["closed"])
        (cg, sg), (cf, sf) = final["gram"], final["closed"]
        print(f"| {precision} | {g:.2f} | {f:.2f} | {g / f:.2f}x | content {cg:.4g} / {cf:.4g}, "
              f"style {sg:.4g} / {sf:.4g} |")


if __name__ == "__main__":
    main()
