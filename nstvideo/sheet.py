"""A preview sheet as one RGB image: one row per setting tried, each a title band over its
frames, every frame as a (source | result) pair under a caption. Text in OpenCV's Hershey font
(ASCII), shrunk to fit its band, cut short with '...' where even that does not fit."""

from __future__ import annotations

import cv2
import numpy as np

BACKGROUND = 24  # grey level of the sheet behind the pictures
INK = (235, 235, 235)
GAP = 4  # px between a source and its result, and between pairs
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_SCALE = 0.3  # smallest font scale (about 7 px high)

Pair = tuple[np.ndarray, np.ndarray, str]  # source, result, caption


def band(width: int, height: int, text: str) -> np.ndarray:
    """A band of the sheet's background with `text` written across it, left-aligned."""
    out = np.full((height, width, 3), BACKGROUND, np.uint8)
    text = text.encode("ascii", "replace").decode()
    scale = height / 40
    while scale > MIN_SCALE and _width(text, scale) > width - 4:
        scale *= 0.9
    scale = max(scale, MIN_SCALE)
    while len(text) > 3 and _width(text, scale) > width - 4:
        text = text[:-4] + "..."
    (_, h), _ = cv2.getTextSize(text, FONT, scale, 1)
    cv2.putText(out, text, (2, (height + h) // 2), FONT, scale, INK, 1, cv2.LINE_AA)
    return out


def _width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def rgb(image: np.ndarray) -> np.ndarray:
    """RGB uint8 for the sheet: an alpha channel laid over the background."""
    if image.shape[2] == 3:
        return image
    a = image[..., 3:].astype(np.float32) / 255
    return np.round(image[..., :3] * a + BACKGROUND * (1 - a)).astype(np.uint8)


def _pad(image: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.full((h, w, 3), BACKGROUND, np.uint8)
    out[:image.shape[0], :image.shape[1]] = image
    return out


def _cell(pair: Pair, band_h: int) -> np.ndarray:
    source, result = rgb(pair[0]), rgb(pair[1])
    h = max(source.shape[0], result.shape[0])
    body = np.hstack([_pad(source, h, source.shape[1]),
                      np.full((h, GAP, 3), BACKGROUND, np.uint8),
                      _pad(result, h, result.shape[1])])
    return np.vstack([band(body.shape[1], band_h, pair[2]), body])


def band_height(rows: list[tuple[str, list[Pair]]]) -> int:
    """Captions scaled with the pictures: 8% of the tallest, 16 to 36 px."""
    tallest = max(p[1].shape[0] for _, pairs in rows for p in pairs)
    return int(min(36, max(16, round(tallest * 0.08))))


def draw_sheet(rows: list[tuple[str, list[Pair]]]) -> np.ndarray:
    """The sheet: for each row (title, pairs), the title's band over the pairs side by side."""
    bh = band_height(rows)
    drawn = []
    for title, pairs in rows:
        cells = [_cell(p, bh) for p in pairs]
        h = max(c.shape[0] for c in cells)
        parts = []
        for c in cells:
            parts += [_pad(c, h, c.shape[1]), np.full((h, GAP, 3), BACKGROUND, np.uint8)]
        body = np.hstack(parts[:-1])
        drawn.append(np.vstack([band(body.shape[1], bh, title), body]) if title else body)
    width = max(r.shape[1] for r in drawn)
    gap = np.full((GAP * 2, width, 3), BACKGROUND, np.uint8)
    out = []
    for r in drawn:
        out += [_pad(r, r.shape[0], width), gap]
    return np.vstack(out[:-1])
