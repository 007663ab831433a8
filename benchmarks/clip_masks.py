"""Masks in clips (#34): the kept region against the source frames, and the painted region's
steadiness against an unmasked render of the same clip, for the optimize and fast methods.

  python benchmarks/clip_masks.py [--clip ../shared/data/cockatoo.mp4] [--frames 24]
          [--size 128] [--methods optimize,fast] [--out /tmp/clip_masks]

The mask is a clip of mask frames: a vertical band a third of the frame wide, moving from the
left edge to the right over the clip (so pixels enter and leave the painted region), or with
--still the middle third in every frame. Prints:
  kept     mean absolute difference from the source frames (as decoded and resized), grey
           levels, at least 8 px from the mask's edge (target <= 2)
  warp     the temporal warping error (Lai et al. 2018, benchmarks/temporal.py) over the
           pixels at least 8 px inside the band in both frames of a pair, masked render over
           unmasked (target <= 1.1x)
  texture  the ratio of the two renders' texture energy there (the mean squared difference
           of neighbouring pixels): the guided Grams paint the band more strongly than the
           same pixels of an unmasked render, and a stronger texture changes more under the
           same motion
  like for like  the masked render's warping error over the unmasked render's at pixels of
           the same local texture energy (the band's pixels in the unmasked render binned by
           it, in tenths; a masked pixel compared with its bin's mean; beyond the unmasked
           render's range, with the top bin's): how steady the band is for the painting it
           carries
and writes frames of both renders to --out (look at them).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from nstvideo import StyleSettings, VideoSettings, stylize_video  # noqa: E402
from nstvideo.media.reader import read_image  # noqa: E402
from nstvideo.media.video import open_source  # noqa: E402
from nstvideo.style.tensors import resize  # noqa: E402
from nstvideo.video.flow import warping_error, warping_error_maps  # noqa: E402
from nstvideo.video.job import even_size  # noqa: E402

MARGIN = 8  # px from the mask's edge


def band(n: int, k: int, hw: tuple[int, int], still: bool = False) -> np.ndarray:
    """Frame k's mask (H, W) uint8: a band a third wide, its left edge moving across (still:
    the middle third, in every frame)."""
    h, w = hw
    x0 = w // 3 if still else round((w - w // 3) * k / max(1, n - 1))
    m = np.zeros((h, w), np.uint8)
    m[:, x0:x0 + w // 3] = 255
    return m


def inside(mask: np.ndarray, margin: int) -> np.ndarray:
    return cv2.erode((mask > 127).astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8),
                     borderValue=1).astype(bool)


def energy(frame: np.ndarray) -> np.ndarray:
    """(H, W) the squared difference of neighbouring pixels (grey levels², over the channels),
    averaged over the two directions."""
    f = frame[..., :3].astype(np.float64)
    e = np.zeros(f.shape[:2])
    e[:, 1:] += (np.diff(f, axis=1) ** 2).mean(axis=2)
    e[1:] += (np.diff(f, axis=0) ** 2).mean(axis=2)
    return e / 2


def texture(frames: list[np.ndarray], region: list[np.ndarray]) -> float:
    """The mean of `energy` within `region`, over the frames."""
    return float(np.mean([energy(f)[r > 0].mean() for f, r in zip(frames, region)]))


def like_for_like(masked: list[np.ndarray], whole: list[np.ndarray], content: list[np.ndarray],
                  region: list[np.ndarray], bins: int = 10) -> float:
    """The masked render's warping error in `region` over what the unmasked render's pixels of
    the same local texture energy (`energy` blurred over ~3 px) show there."""
    def pixels(frames):
        errs, local = [], []
        for t, (squared, mask) in enumerate(warping_error_maps(frames, content), 1):
            k = (mask * region[t]) > 0.5
            errs.append(squared[k])
            local.append(cv2.GaussianBlur(energy(frames[t]), (0, 0), 3)[k])
        return np.concatenate(errs), np.concatenate(local)
    (em, tm), (ew, tw) = pixels(masked), pixels(whole)
    edges = np.quantile(tw, np.linspace(0, 1, bins + 1))[1:-1]
    of_w, of_m = np.digitize(tw, edges), np.digitize(tm, edges)
    mean_w = np.array([ew[of_w == b].mean() for b in range(bins)])
    return float(em.mean() / mean_w[of_m].mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=str(DATA / "cockatoo.mp4"))
    ap.add_argument("--style", default=str(DATA / "starry_night.jpg"))
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--methods", default="optimize,fast")
    ap.add_argument("--out", default="/tmp/clip_masks")
    ap.add_argument("--reuse", action="store_true", help="measure the renders already in --out")
    ap.add_argument("--still", action="store_true", help="the band still, the middle third")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    source = open_source(Path(a.clip))
    hw = even_size(source.height, source.width, a.size)
    content = [resize(f, hw) for _, f, _ in source.frames(0, a.frames)]
    n = len(content)
    with tempfile.TemporaryDirectory() as tmp:
        masks = Path(tmp) / "masks"
        masks.mkdir()
        for k in range(source.frame_count):  # a mask frame for every frame of the clip
            cv2.imwrite(str(masks / f"m_{k:04d}.png"), band(n, min(k, n - 1), hw, a.still))
        mask = [band(n, k, hw, a.still) for k in range(n)]
        # the pixels painted in frame t and in frame t-1 (pixels entering the band change
        # from the photo to the painting: no flicker)
        painted = [(inside(m, MARGIN) & inside(p, MARGIN)).astype(np.float32)
                   for m, p in zip(mask, mask[:1] + mask[:-1])]
        kept = [inside(255 - m, MARGIN) for m in mask]
        video = VideoSettings(duration=f"{n}f", sequence=True)
        settings = StyleSettings(size=a.size, seed=0)
        print("| method | kept: mean abs diff (grey levels) | warp error masked | unmasked | "
              "ratio | texture | like for like |\n|---|---|---|---|---|---|---|")
        for method in a.methods.split(","):
            runs = {}
            for name, m in (("masked", masks), ("whole", None)):
                folder = out / f"{method}_{name}"
                if not (a.reuse and folder.is_dir()):
                    stylize_video(a.clip, [a.style], folder, settings=settings,
                                  video=video.replace(method=method), mask=m, overwrite=True,
                                  restart=True)
                runs[name] = [read_image(p) for p in sorted(folder.iterdir())]
            diff = np.mean([np.abs(r.astype(float) - c)[k].mean()
                            for r, c, k in zip(runs["masked"], content, kept)])
            w_masked = warping_error(runs["masked"], content, region=painted)
            w_whole = warping_error(runs["whole"], content, region=painted)
            stronger = texture(runs["masked"], painted) / texture(runs["whole"], painted)
            alike = like_for_like(runs["masked"], runs["whole"], content, painted)
            print(f"| {method} | {diff:.2f} | {w_masked:.1f} | {w_whole:.1f} | "
                  f"{w_masked / w_whole:.2f}x | {stronger:.2f}x | {alike:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
