"""Shared fixtures: tiny media made by the tests themselves (no external files)."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import torch

# NSTVIDEO_TEST_THREADS=3 python -m pytest: the whole suite with another intra-op thread count
# in this process (torch caps OMP_NUM_THREADS at the cores). On CPUs whose kernels depend on
# the thread count (AVX-512) this shows any test that rests on one count's floats.
if os.environ.get("NSTVIDEO_TEST_THREADS"):
    torch.set_num_threads(int(os.environ["NSTVIDEO_TEST_THREADS"]))


def content_array(h: int = 48, w: int = 64) -> np.ndarray:
    """A small 'photo': gradient sky, a disc, a ground band (RGB uint8)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.dstack([120 + 100 * y / h, 160 + 60 * x / w, np.full((h, w), 220.0)]).astype(np.uint8)
    cv2.circle(img, (w // 3, h // 3), max(2, h // 6), (250, 210, 60), -1)
    img[2 * h // 3:] = (60, 120, 50)
    return img


def style_array(size: int = 64, seed: int = 0) -> np.ndarray:
    """A small 'painting': random thick coloured strokes (RGB uint8)."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (20, 30, 90), np.uint8)
    for _ in range(60):
        p = rng.integers(0, size, 4)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), color, 3)
    return img


def write_rgb(path, img) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.fixture
def content_png(tmp_path):
    return write_rgb(tmp_path / "photo.png", content_array())


@pytest.fixture
def style_png(tmp_path):
    return write_rgb(tmp_path / "monet.png", style_array())


@pytest.fixture
def style2_png(tmp_path):
    return write_rgb(tmp_path / "vangogh.png", style_array(seed=1)[..., ::-1].copy())
