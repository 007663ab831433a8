"""bf16 against fp32 for the optimizer on this machine: the evidence behind `--precision auto`.

Times the same iterations of `Stylizer.run` (one frame of a clip, from the content) in fp32
and in bf16 (convolutions under autocast, Grams and costs in fp32), alternating, `--repeats`
times, at each `--sizes`, and prints the medians, the ratio and both runs' final costs. bf16 is
forced where this CPU would only emulate it (auto leaves it off there), so that the figure
shows why.

Run:  python benchmarks/precision.py [--sizes 128,384] [--iterations 10] [--repeats 3]
"""

from __future__ import annotations

import argparse

import torch
from keyframes import DATA
from style_loss import alternate, first_frame

from nstvideo.photos import build_stylizer, load
from nstvideo.settings import StyleSettings
from nstvideo.style import device as D


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", default=str(DATA / "cockatoo.mp4"))
    ap.add_argument("--style", default=str(DATA / "starry_night.jpg"))
    ap.add_argument("--sizes", default="128,384")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = D.resolve_device("auto")
    native = D.use_bf16("auto", device)
    print(f"{device}, {args.threads} threads, capability "
          f"{torch.backends.cpu.get_cpu_capability()}; bf16 native: {native}; "
          f"{args.iterations} iterations from the content, medians of {args.repeats}")
    D.cpu_computes_bf16 = lambda: True  # bf16 forced, to measure it where it is emulated too
    style = load(args.style, "style")
    frame = first_frame(args.video)
    print("| size | fp32 (s) | bf16 (s) | bf16 speed-up | final costs (content, style), "
          "fp32 / bf16 |")
    print("|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        stylizers = {}
        for precision in ("fp32", "bf16"):
            st = build_stylizer([style], StyleSettings(size=size, seed=0, precision=precision))
            stylizers[precision] = (st, st.prepare(frame))
        med, last = alternate({p: (lambda st=st, c=c: st.run(c, c, iterations=args.iterations)[1])
                               for p, (st, c) in stylizers.items()}, args.repeats, device)
        f32, b16 = med["fp32"], med["bf16"]
        (c32, s32), (c16, s16) = ((last[p].last["content"] * st.alpha,
                                   last[p].last["style"] * st.beta)
                                  for p, (st, _) in stylizers.items())
        print(f"| {size} px | {f32:.2f} | {b16:.2f} | {f32 / b16:.2f}x | {c32:.4g} / {c16:.4g}, "
              f"{s32:.4g} / {s16:.4g} |", flush=True)


if __name__ == "__main__":
    main()
