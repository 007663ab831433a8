"""Where to paint (#34): a mask's kept and painted regions, two regions in two styles, and the
colour modes, measured on a real photo and paintings.

  python benchmarks/masks.py [--size 384] [--iterations 150] [--content tubingen.jpg]
          [--styles starry_night.jpg the_scream.jpg] [--out /tmp/masks]

Prints:
  kept     the mean absolute difference from the photo (grey levels) at least 8 px from the
           mask's edge (target <= 2)
  painted  a quarter of the picture (its top-left) masked: its style cost, guided Grams over
           the region alone against the style, over the same region's in an unmasked render
           of the whole picture (target <= 1.2x)
  regions  the top half and the bottom half in two styles: each region's cost against its
           own style and against the other (target: own lower by 2x or more)
  colours  luminance against histogram: the distance of the result's a*b* histogram (CIELAB,
           16x16 bins, L1 of the normalized histograms) to the photo's, and the plain render's
and writes the pictures it measured to --out (look at them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from nstvideo import stylize_image  # noqa: E402
from nstvideo.media.reader import read_image  # noqa: E402
from nstvideo.photos import build_stylizer  # noqa: E402
from nstvideo.settings import StyleSettings  # noqa: E402


def region_cost(stylizer, image: np.ndarray, mask: np.ndarray, style: int) -> float:
    """The region's style cost (guided Grams) against one style alone."""
    mask_t = torch.from_numpy(mask.astype(np.float32) / 255)[None, None]
    blend = tuple(float(i == style) for i in range(len(stylizer.styles)))
    return stylizer.region_style_cost(stylizer.prepare(image), mask_t, blend)


def ab_distance(a: np.ndarray, b: np.ndarray) -> float:
    def hist(img):
        lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
        h = cv2.calcHist([lab], [1, 2], None, [16, 16], [0, 256, 0, 256])
        return h / h.sum()
    return float(np.abs(hist(a) - hist(b)).sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--content", default="tubingen.jpg")
    ap.add_argument("--styles", nargs=2, default=["starry_night.jpg", "the_scream.jpg"])
    ap.add_argument("--out", type=Path, default=Path("/tmp/masks"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    common = dict(size=a.size, iterations=a.iterations, seed=0)
    styles = [str(DATA / s) for s in a.styles]
    st = build_stylizer(styles, StyleSettings(**common))
    photo = read_image(DATA / a.content)[..., :3]
    h, w = st.prepare(photo).shape[2:]
    photo = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)

    def save(name, img):
        cv2.imwrite(str(a.out / f"{name}.png"), img[..., ::-1])

    quarter = np.zeros((h, w), np.uint8)
    quarter[: h // 2, : w // 2] = 255
    inner = cv2.erode(quarter, np.ones((17, 17), np.uint8))  # 8 px inside the edge
    outer = cv2.erode(255 - quarter, np.ones((17, 17), np.uint8))
    masked = stylize_image(photo, styles[0], mask=quarter, **common)
    plain = stylize_image(photo, styles[0], **common)
    save("quarter", masked)
    save("plain", plain)
    kept = np.abs(masked.astype(float) - photo)[outer > 0].mean()
    ratio = region_cost(st, masked, inner, 0) / region_cost(st, plain, inner, 0)
    print(f"kept     mean |result - photo| 8 px or more outside the edge: {kept:.2f} grey levels"
          " (target <= 2)")
    print(f"painted  the quarter's style cost, masked over unmasked: {ratio:.2f}x (target <= "
          f"1.2x; the photo's own: {region_cost(st, photo, inner, 0) / region_cost(st, plain, inner, 0):.0f}x)")

    top = np.zeros((h, w), np.uint8)
    top[: h // 2] = 255
    two = stylize_image(photo, styles, mask=[top, 255 - top], **common)
    save("two", two)
    for name, m, own in (("top", top, 0), ("bottom", 255 - top, 1)):
        core = cv2.erode(m, np.ones((17, 17), np.uint8))
        mine, other = region_cost(st, two, core, own), region_cost(st, two, core, 1 - own)
        print(f"regions  {name} ({a.styles[own]}): against its own style {mine:.3g}, the other "
              f"{other:.3g}: {other / mine:.1f}x (target >= 2x)")

    for mode in ("luminance", "histogram"):
        out = stylize_image(photo, styles[1], preserve_colors=mode, **common)
        save(mode, out)
        print(f"colours  {mode:9s}: a*b* histogram distance to the photo {ab_distance(out, photo):.3f}")
    import nstvideo.style.stylizer as stylizer_module  # the alternative Gatys et al. name:
    real = stylizer_module.match_colors  # each channel's mean and deviation matched alone

    def per_channel(x, like):
        mx, sx = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
        ml, sl = like.mean(dim=(0, 2, 3), keepdim=True), like.std(dim=(0, 2, 3), keepdim=True)
        return ((x - mx) / sx.clamp_min(1) * sl + ml).clamp(0, 255)
    stylizer_module.match_colors = per_channel
    try:
        out = stylize_image(photo, styles[1], preserve_colors="histogram", **common)
    finally:
        stylizer_module.match_colors = real
    save("per_channel", out)
    print(f"colours  {'channels':9s}: a*b* histogram distance to the photo {ab_distance(out, photo):.3f}"
          " (each channel matched alone, not shipped)")
    out = stylize_image(photo, styles[1], **common)
    save("colours_plain", out)
    print(f"colours  {'plain':9s}: a*b* histogram distance to the photo {ab_distance(out, photo):.3f}")


if __name__ == "__main__":
    main()
