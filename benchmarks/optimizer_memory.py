"""The optimizer's own memory at a print size, phase by phase (#31): L-BFGS with the
preconditioner and bf16 pairs on a quadratic cost (whose evaluation holds one image, the
gradient, as the tiled objective's does), so that what the optimizer allocates is seen apart
from VGG's. Prints, for each call of the evaluation, L-BFGS's direction and its update, the
resident memory before and after and the rise of the peak RSS, in images (3 x H x W fp32).

  python benchmarks/optimizer_memory.py [--size 10800x7200] [--iterations 3] [--pairs 2]

At the poster's size (RESULTS.md "The poster's memory, found") this showed the
preconditioner's blur unfolding 17 times its input: a 7-image spike at every direction.
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nstvideo.style import lbfgs, memory, optimize, tiled  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="10800x7200")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=2)
    a = ap.parse_args()
    w, h = map(int, a.size.split("x"))
    torch.set_num_threads(2)
    image = 4 * 3 * h * w

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / image

    def resident() -> float:
        return memory.resident_bytes() / image

    def traced(owner, name, label):
        real = getattr(owner, name)

        def call(*args, **kw):
            p0, r0 = peak(), resident()
            out = real(*args, **kw)
            print(f"{label:10s} resident {r0:5.2f} -> {resident():5.2f} images, "
                  f"peak {p0:5.2f} -> {peak():5.2f}", flush=True)
            return out
        setattr(owner, name, call)

    for owner, name in ((lbfgs.LBFGS, "direction"), (lbfgs.LBFGS, "update"),
                        (optimize._Evaluator, "__call__")):
        traced(owner, name, name.strip("_").replace("call", "evaluate"))
    target = torch.rand(1, 3, h, w) * 255
    start = torch.rand(1, 3, h, w) * 255
    print(f"{w}x{h}: an image is {image / 2 ** 30:.2f} GiB; resident {resident():.2f} images "
          "(the target, the start, PyTorch)", flush=True)

    def cost(x):
        g = torch.sub(x.detach(), target).mul_(2.0)
        total = (torch.linalg.vector_norm(g) ** 2 / 4).reshape(1)
        return tiled._Attached.apply(x, total, g), {"total": total.detach().sum()}

    optimize.optimize(start, cost, iterations=a.iterations,
                      precondition=optimize.PRECONDITION, history=a.pairs,
                      history_dtype=torch.bfloat16)


if __name__ == "__main__":
    main()
