"""Regenerate the project's samples deterministically (no external media):

  samples/style.png   a procedural "painting": thick curved brush strokes in a bold palette
  samples/scene.png   a still of a synthetic landscape (content image for the image demo)
  samples/clip.mp4    3 s of that landscape with a slow pan and a moving kite, 12 fps, with a
                      soft two-tone audio track (H.264 + AAC)

Run: python samples/make_samples.py
     python samples/make_samples.py --montage RESULT.png   (samples/result.png for the README)
     python samples/make_samples.py --print RESULT.png     (samples/print.png: a 1024 px
                                                            render whole and at 100%)
     python samples/make_samples.py --masks SKY.png TWO.png (samples/masks.png: scene | mask |
                                                            painted sky; two styles, two regions)

  samples/sky.png, samples/ground.png   masks of the scene (white: the region), and
  samples/style2.png                    a second "painting" (straight strokes, warm palette)
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

HERE = Path(__file__).resolve().parent
W, H = 160, 120  # clip size: small enough for a CPU demo in a few minutes
FPS, SECONDS = 12, 3
PALETTE = [(20, 40, 120), (30, 90, 200), (240, 200, 40), (250, 140, 30), (20, 140, 140),
           (245, 240, 220), (120, 30, 60), (10, 20, 50)]  # RGB: blues, yellow, orange, teal...


WARM = [(120, 30, 20), (200, 70, 30), (240, 170, 60), (250, 230, 180), (90, 60, 40),
        (160, 110, 70)]  # RGB: reds, ochres, browns


def style_image(size: int = 384, seed: int = 7, palette=None, swirl: bool = True) -> np.ndarray:
    palette = palette or PALETTE
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3), np.float32)
    img[:] = np.dstack([30 + 60 * y, 50 + 80 * x, 120 + 100 * (1 - y)])  # dusk gradient
    img = img.astype(np.uint8)
    for _ in range(900):  # swirling strokes: short arcs along a vortex field
        cx, cy = rng.uniform(0, size, 2)
        angle = (np.arctan2(cy - size * 0.4, cx - size * 0.55) + np.pi / 2 if swirl
                 else 0.3) + rng.normal(0, 0.3)
        length, width = rng.uniform(10, 40), int(rng.integers(2, 7))
        pts = [(cx + t * length * np.cos(angle + 0.03 * t), cy + t * length * np.sin(angle + 0.03 * t))
               for t in np.linspace(-0.5, 0.5, 6)]
        color = np.array(palette[int(rng.integers(len(palette)))], float)
        color = np.clip(color + rng.normal(0, 18, 3), 0, 255)
        cv2.polylines(img, [np.int32(pts)], False, tuple(int(c) for c in color), width, cv2.LINE_AA)
    return cv2.GaussianBlur(img, (3, 3), 0)


def scene(t: float, w: int = W, h: int = H) -> np.ndarray:
    """The landscape at time t seconds (RGB uint8): sky, sun, hills, house, trees, a kite."""
    pan = 12.0 * t  # slow camera pan, pixels at 160 px width
    s = w / 160.0
    y = np.arange(h)[:, None] / h
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = np.dstack([np.broadcast_to(140 + 80 * y, (h, w)), np.broadcast_to(180 + 50 * y, (h, w)),
                        np.broadcast_to(np.full_like(y, 235.0), (h, w))]).astype(np.uint8)
    cv2.circle(img, (int((125 - 0.3 * pan) * s), int(25 * s)), int(12 * s), (250, 220, 90), -1, cv2.LINE_AA)
    xs = np.arange(w)
    for base, amp, color in ((70, 10, (90, 140, 80)), (88, 7, (60, 110, 50))):
        ridge = (base + amp * np.sin((xs / s + pan * (base / 70)) / 17.0)) * s
        for xi, r in zip(xs, ridge):
            img[int(r):, xi] = color
    hx = int((60 - pan) * s)
    cv2.rectangle(img, (hx, int(72 * s)), (hx + int(26 * s), int(95 * s)), (200, 80, 60), -1)
    cv2.fillPoly(img, [np.int32([(hx - 3 * s, 72 * s), (hx + 13 * s, 58 * s), (hx + 29 * s, 72 * s)])],
                 (120, 50, 40))
    for tx in (20, 105, 140, 185):
        px = int((tx - pan * 1.2) * s)
        cv2.rectangle(img, (px - int(2 * s), int(92 * s)), (px + int(2 * s), int(104 * s)), (90, 60, 30), -1)
        cv2.circle(img, (px, int(88 * s)), int(9 * s), (40, 100, 40), -1, cv2.LINE_AA)
    kx, ky = (30 + 30 * t) * s, (40 + 8 * np.sin(2.5 * t)) * s  # the kite moves on its own
    cv2.fillPoly(img, [np.int32([(kx, ky - 8 * s), (kx + 6 * s, ky), (kx, ky + 8 * s), (kx - 6 * s, ky)])],
                 (220, 40, 90), cv2.LINE_AA)
    cv2.line(img, (int(kx), int(ky + 8 * s)), (int(kx - 20 * s), int(ky + 40 * s)), (250, 250, 250), 1,
             cv2.LINE_AA)
    return img


def write_clip(path: Path) -> None:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{W}x{H}", "-r", str(FPS), "-i", "-",
           "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=44100:duration={SECONDS}",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-threads", "1",
           "-bitexact", "-c:a", "aac", "-b:a", "64k", "-shortest", "-map_metadata", "-1",
           "-flags", "+bitexact", str(path)]
    frames = b"".join(scene(i / FPS).tobytes() for i in range(FPS * SECONDS))
    subprocess.run(cmd, input=frames, check=True)


def montage(result_path: Path) -> None:
    """samples/result.png: scene | style | result, side by side at the result's height."""
    imgs = [cv2.imread(str(p)) for p in (HERE / "scene.png", HERE / "style.png", result_path)]
    h = imgs[2].shape[0]
    row = [cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h), interpolation=cv2.INTER_AREA)
           for im in imgs]
    cv2.imwrite(str(HERE / "result.png"), np.hstack(row))


def print_view(result_path: Path, side: int = 384) -> None:
    """samples/print.png: a large render seen whole (scaled to `side` px tall) | a `side` px
    crop of it at 100%, its place outlined on the whole view."""
    big = cv2.imread(str(result_path))
    h, w = big.shape[:2]
    y0, x0 = h // 2 - side // 2, w * 3 // 5 - side // 2  # the kite and the hills' edge
    crop = big[y0:y0 + side, x0:x0 + side]
    s = side / h
    whole = cv2.resize(big, (round(w * s), side), interpolation=cv2.INTER_AREA)
    cv2.rectangle(whole, (round(x0 * s), round(y0 * s)),
                  (round((x0 + side) * s), round((y0 + side) * s)), (255, 255, 255), 1)
    cv2.imwrite(str(HERE / "print.png"), np.hstack([whole, crop]), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def sky_mask(w: int = 320, h: int = 240) -> np.ndarray:
    """The scene's sky (white) above its far ridge, at t = 0 (uint8)."""
    s = w / 160.0
    ridge = (70 + 10 * np.sin(np.arange(w) / s / 17.0)) * s
    return np.where(np.arange(h)[:, None] < ridge[None, :], 255, 0).astype(np.uint8)


def masks_view(sky_result: Path, two_result: Path) -> None:
    """samples/masks.png: scene | sky mask | the sky painted; then the two styles | the two
    regions painted, each with its own."""
    read = lambda p: cv2.imread(str(p))  # noqa: E731
    scene_, mask = read(HERE / "scene.png"), read(HERE / "sky.png")
    h, w = scene_.shape[:2]
    fit = lambda im: cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)  # noqa: E731
    styles = np.hstack([fit(read(HERE / n))[:, w // 4: w // 4 + w // 2]
                        for n in ("style.png", "style2.png")])
    rows = [np.hstack([scene_, mask, fit(read(sky_result))]),
            np.hstack([styles, fit(read(HERE / "ground.png")), fit(read(two_result))])]
    cv2.imwrite(str(HERE / "masks.png"), np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    import sys

    if len(sys.argv) == 3 and sys.argv[1] in ("--montage", "--print"):
        (montage if sys.argv[1] == "--montage" else print_view)(Path(sys.argv[2]))
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--masks":
        masks_view(Path(sys.argv[2]), Path(sys.argv[3]))
        return
    cv2.imwrite(str(HERE / "style.png"), cv2.cvtColor(style_image(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(HERE / "style2.png"), cv2.cvtColor(style_image(seed=3, palette=WARM,
                                                                   swirl=False),
                                                       cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(HERE / "scene.png"), cv2.cvtColor(scene(0.0, 320, 240), cv2.COLOR_RGB2BGR))
    sky = sky_mask()
    cv2.imwrite(str(HERE / "sky.png"), sky)
    cv2.imwrite(str(HERE / "ground.png"), 255 - sky)
    write_clip(HERE / "clip.mp4")
    for name in ("style.png", "style2.png", "scene.png", "sky.png", "ground.png", "clip.mp4"):
        print(f"{name}: {(HERE / name).stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
