"""The look at several scales: how much of the painting a result is, seen whole and up close.

A Gram cost at one scale cannot tell the painting's big swirls from a fine texture laid over
the photo. So each result, the content and the style are scaled down together to 1/4, 1/2
and 1x of `--size`, and at each scale (Caffe VGG-19, fp32, the default layers and weights):
  style reduction  1 - J_style(result) / J_style(content): 1 is the style's Grams matched,
                   0 no closer than the photo
  content ratio    |F(result) - F(content)|^2 / |F(content)|^2 at relu4_2: 0 is the photo
Lower content ratio and higher style reduction are both better; compare results side by
side (e.g. against jcjohnson/neural-style's published examples/outputs/tubingen_starry.png).

Run:  python benchmarks/look.py CONTENT STYLE RESULT [RESULT ...] [--size 512]
Or, to render first and then measure (several schedules side by side, timed):
      python benchmarks/look.py CONTENT STYLE --render "levels=1" --render "levels=3" ...
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nstvideo.media.reader import read_image
from nstvideo.settings import StyleSettings
from nstvideo.style import losses
from nstvideo.style.tensors import fit_longest, resize, to_tensor
from nstvideo.style.vgg import VGGFeatures

SCALES = (0.25, 0.5, 1.0)


def measure(vgg: VGGFeatures, content: np.ndarray, style: np.ndarray, result: np.ndarray,
            size: int) -> list[tuple[float, float]]:
    """[(style reduction, content ratio)] at each of SCALES of `size`."""
    s = StyleSettings()
    out = []
    for scale in SCALES:
        longest = round(size * scale)
        hw = fit_longest(*content.shape[:2], longest)
        c = to_tensor(resize(content[..., :3], hw))
        r = to_tensor(resize(result[..., :3], hw))
        st = to_tensor(resize(style[..., :3], fit_longest(*style.shape[:2], longest)))
        with torch.no_grad():
            fc, fr, fs = vgg(c), vgg(r), vgg(st)
            t = {n: losses.style_target(fs[n]) for n, _ in s.style_layers}
            js = lambda f: sum(lam * float(losses.style_loss(f[n], t[n]))  # noqa: E731
                               for n, lam in s.style_layers)
            a, b = fr[s.content_layer], fc[s.content_layer]
            out.append((1 - js(fr) / js(fc), float((a - b).pow(2).sum() / b.pow(2).sum())))
    return out


def row(name: str, figures, seconds: float | None = None) -> str:
    cells = " | ".join(f"{sr:.3f} / {cr:.2f}" for sr, cr in figures)
    return f"| {name} | {cells} |" + ("" if seconds is None else f" {seconds:.0f} s |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("content")
    ap.add_argument("style")
    ap.add_argument("results", nargs="*")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--render", action="append", default=[],
                    help="render first with these StyleSettings fields (k=v,k=v), e.g. "
                         "'coarse_levels=3,iterations=300'; the result is saved as "
                         "look_<k=v...>.png")
    args = ap.parse_args()
    content, style = read_image(args.content), read_image(args.style)
    vgg = VGGFeatures([StyleSettings().content_layer] + [n for n, _ in StyleSettings().style_layers])
    print(f"| result | style reduction / content ratio at {' | '.join(f'{s:g}x' for s in SCALES)}"
          f" of {args.size} |")
    for path in args.results:
        print(row(path, measure(vgg, content, style, read_image(path), args.size)), flush=True)
    for spec in args.render:
        from nstvideo import stylize_image
        from nstvideo.media.writer import write_image
        fields = {}
        for kv in filter(None, spec.split(",")):
            k, v = kv.split("=")
            fields[k] = type(getattr(StyleSettings(), k) or 0.0)(float(v)) if k != "init" else v
        fields.setdefault("size", args.size)
        t0 = time.perf_counter()
        out = stylize_image(content, [style], seed=0, **fields)
        seconds = time.perf_counter() - t0
        write_image(f"look_{spec.replace(',', '_').replace('=', '')}.png", out)
        print(row(spec, measure(vgg, content, style, out, args.size), seconds), flush=True)


if __name__ == "__main__":
    main()
