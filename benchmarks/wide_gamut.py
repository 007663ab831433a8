"""A Display P3 photo, two ways: converted to sRGB, stylized, tagged sRGB (what nstvideo does)
against stylized in its P3 numbers and tagged P3 (the profile kept). Both as a colour-managed
viewer shows them (sRGB on screen), measured against the style image: mean chroma (CIELAB C*)
and the distance of the ab-histograms; and saved side by side to look at.

Run:  python benchmarks/wide_gamut.py [--content ../shared/data/tubingen.jpg]
          [--style ../shared/data/starry_night.jpg] [--size 192] [--out /tmp/wide_gamut.png]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageCms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_phone import p3_profile  # noqa: E402 - the test's own P3 profile, byte by byte

from nstvideo import StyleSettings, stylize, stylize_image  # noqa: E402
from nstvideo.media.reader import read_image  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def convert(rgb: np.ndarray, src: bytes | None, dst: bytes | None) -> np.ndarray:
    """RGB uint8 from profile `src` to `dst` (None: sRGB)."""
    prof = lambda b: ImageCms.createProfile("sRGB") if b is None else \
        ImageCms.ImageCmsProfile(io.BytesIO(b))  # noqa: E731
    return np.asarray(ImageCms.profileToProfile(Image.fromarray(rgb), prof(src), prof(dst),
                                                outputMode="RGB"))


def lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def ab_hist(rgb: np.ndarray) -> np.ndarray:
    h, _, _ = np.histogram2d(*lab(rgb)[:, 1:].T, bins=24, range=[[-80, 80], [-80, 80]])
    return h / h.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--content", type=Path, default=DATA / "tubingen.jpg")
    ap.add_argument("--style", type=Path, default=DATA / "starry_night.jpg")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--out", type=Path, default=Path("/tmp/wide_gamut.png"))
    args = ap.parse_args()
    p3 = p3_profile()
    settings = StyleSettings(size=args.size, seed=0)
    srgb_photo = read_image(args.content)
    p3_numbers = convert(srgb_photo, None, p3)  # the same picture, stored as a P3 phone photo
    tmp = args.out.parent / "wide_gamut_p3.png"
    Image.fromarray(p3_numbers).save(tmp, icc_profile=p3)
    converted = read_image(stylize(tmp, [args.style], args.out.parent / "wide_gamut_a.png",
                                   settings=settings, overwrite=True).output)
    kept = convert(stylize_image(p3_numbers, [args.style], settings=settings), p3, None)
    style = cv2.resize(read_image(args.style), converted.shape[1::-1],
                       interpolation=cv2.INTER_AREA)
    shown = cv2.resize(srgb_photo, converted.shape[1::-1], interpolation=cv2.INTER_AREA)
    chroma = lambda im: float(np.hypot(*lab(im)[:, 1:].T).mean())  # noqa: E731
    print(f"style {args.style.name}: mean chroma C* {chroma(style):.1f}; the photo {chroma(shown):.1f}")
    print("| way | mean chroma C* | against the style's | ab-histogram distance to the style (L1) |")
    print("|---|---|---|---|")
    for name, im in (("converted to sRGB, tagged sRGB (nstvideo)", converted),
                     ("stylized in P3 numbers, tagged P3", kept)):
        print(f"| {name} | {chroma(im):.1f} | {chroma(im) / chroma(style):.2f}x | "
              f"{np.abs(ab_hist(im) - ab_hist(style)).sum():.3f} |")
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate([shown, style, converted, kept], 1),
                                            cv2.COLOR_RGB2BGR))
    print(f"side by side (photo | style | converted | kept P3), as shown on screen: {args.out}")


if __name__ == "__main__":
    main()
