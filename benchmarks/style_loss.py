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


def alternate(cases: dict, repeats: int, device) -> tuple[dict, dict]:
    """Run each case (name -> a call returning `Stylizer.run`'s report) in turn, `repeats`
    rounds after one that warms up; the median seconds and the last report of each."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    last = {}
    for i in range(repeats + 1):
        for name, run in cases.items():
            t = time.perf_counter()
            last[name] = run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}, last


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

        def with_loss(fn):
            def run():
                losses.style_loss = fn
                return st.run(c, c, iterations=args.iterations)[1]
            return run

        med, last = alternate({"gram": with_loss(through_the_gram),
                               "closed": with_loss(closed_form)}, args.repeats, device)
        losses.style_loss = closed_form
        g, f = med["gram"], med["closed"]
        (cg, sg), (cf, sf) = ((last[k].last["content"] * st.alpha, last[k].last["style"] * st.beta)
                              for k in ("gram", "closed"))
        print(f"| {precision} | {g:.2f} | {f:.2f} | {g / f:.2f}x | content {cg:.4g} / {cf:.4g}, "
              f"style {sg:.4g} / {sf:.4g} |")


if __name__ == "__main__":
    main()
