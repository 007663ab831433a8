"""Optical flow between content frames (OpenCV DIS), warping, and the consistency mask of
Ruder, Dosovitskiy & Brox 2016. Works on RGB uint8 frames and float arrays; knows nothing of VGG.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

# Thresholds of Ruder et al. 2016 (their eq. 5 and 6), in pixels² of flow.
FB_REL, FB_ABS = 0.01, 0.5  # forward-backward: |w + ŵ|² > 0.01(|w|² + |ŵ|²) + 0.5
MB_REL, MB_ABS = 0.01, 0.002  # motion boundary: |∇u|² + |∇v|² > 0.01|w|² + 0.002
STILL_PX = 0.05  # flow shorter than this is treated as zero: avoids re-sampling (and slowly
                 # blurring) a static background with DIS's sub-pixel noise, frame after frame
SCENE_CUT_RELIABLE = 0.35  # below this share of reliable pixels, the content may have jumped:
SCENE_CUT_UNEXPLAINED = 16.0  # a cut if the warped previous frame still differs by more (fast
                              # motion also leaves few reliable pixels, but its flow explains the
                              # frame: benchmarks/cuts.py)
SCENE_CUT_DIFF = 40.0  # ...and a cut whenever the warped previous frame differs by more (mean
                       # abs, 0-255)

_PRESETS = {"fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
            "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST}


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame


class FlowEstimator:
    """DIS optical flow; `flow(a, b)` gives for each pixel of `a` its displacement to `b`."""

    def __init__(self, preset: str = "medium"):
        self._dis = cv2.DISOpticalFlow_create(_PRESETS[preset])

    def flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (H, W, 3) x2 -> (H, W, 2)
        f = self._dis.calc(_gray(a), _gray(b), None)
        f[(f ** 2).sum(axis=2) < STILL_PX ** 2] = 0.0
        return f


ADAPTIVE_PX = (0.5, 1.5)  # adaptive: bilinear where the flow moves less than this, bicubic
# where more, blended between: on a nearly still, jittering shot bicubic's slight sharpening,
# applied frame after frame at sub-pixel offsets, makes fine strokes crawl (RESULTS.md,
# "Fast 4": warping error 1.26x the optimizer's, 0.72x adaptive)


def warp_tensor(image: torch.Tensor, flow, interpolation: str = "bilinear") -> torch.Tensor:
    """Sample `image` (B, C, H, W), on any device, at p + flow(p) for every pixel p (borders
    replicated); `flow` (H, W, 2), an array or a tensor. Float32 out.

    With the backward flow of frame t (t -> t-1), this brings frame t-1's pixels to frame t.
    Bilinear sampling blurs a little at sub-pixel offsets, frame after frame; bicubic (cubic
    convolution, a = -0.75, as OpenCV's) keeps more of a painted texture's detail
    (benchmarks/RESULTS.md, "Video defaults"); adaptive takes bicubic where the flow moves the
    texture far, bilinear where it barely moves it (ADAPTIVE_PX). Runs where the image lives:
    a frame on the GPU is warped there, not copied out and back."""
    b, _, h, w = image.shape
    f = torch.as_tensor(flow, dtype=torch.float32).to(image.device)
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=torch.float32),
                            torch.arange(w, device=image.device, dtype=torch.float32),
                            indexing="ij")
    grid = torch.stack([(xs + f[..., 0]) * (2 / max(w - 1, 1)) - 1,  # align_corners: pixel
                        (ys + f[..., 1]) * (2 / max(h - 1, 1)) - 1], dim=-1)  # centres at ±1
    grid = grid.unsqueeze(0).expand(b, -1, -1, -1)
    image = image.float()

    def sample(mode: str) -> torch.Tensor:
        return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)

    if interpolation != "adaptive":
        return sample(interpolation)
    lo, hi = ADAPTIVE_PX
    share = ((f.norm(dim=2) - lo) / (hi - lo)).clamp(0.0, 1.0)
    return torch.lerp(sample("bilinear"), sample("bicubic"), share)


def warp(image: np.ndarray, flow: np.ndarray, interpolation: str = "bilinear") -> np.ndarray:
    """`warp_tensor` for an array (H, W) or (H, W, C) on the host: uint8 comes back rounded
    and clipped, floats in their own type."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    t = (t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None])
    out = warp_tensor(t, flow, interpolation)[0].permute(1, 2, 0).reshape(image.shape).numpy()
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype)


def consistency_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s c: 1 where the backward flow of frame t (t -> t-1) is reliable, 0 where
    the forward-backward check fails, on motion boundaries, and where it leaves the frame.

    backward: (H, W, 2) flow t -> t-1; forward: (H, W, 2) flow t-1 -> t. Returns (H, W) float32.
    """
    h, w = backward.shape[:2]
    fwd_at = warp(forward, backward)  # ŵ(p + w(p))
    w2 = (backward ** 2).sum(axis=2)
    fb_fail = ((backward + fwd_at) ** 2).sum(axis=2) > FB_REL * (w2 + (fwd_at ** 2).sum(axis=2)) + FB_ABS
    du = np.gradient(backward[..., 0])
    dv = np.gradient(backward[..., 1])
    grad2 = du[0] ** 2 + du[1] ** 2 + dv[0] ** 2 + dv[1] ** 2
    boundary = grad2 > MB_REL * w2 + MB_ABS
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    tx, ty = gx + backward[..., 0], gy + backward[..., 1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return (~(fb_fail | boundary | outside)).astype(np.float32)


@dataclass
class FramePair:
    """What the temporal step knows about frame t given frame t-1 (both content, RGB uint8)."""

    backward: np.ndarray  # (H, W, 2) flow t -> t-1
    mask: np.ndarray  # (H, W) float32 in {0, 1}
    scene_cut: bool


def analyse(prev: np.ndarray, cur: np.ndarray, estimator: FlowEstimator) -> FramePair:
    """Flow, mask and scene-cut decision for consecutive content frames."""
    backward = estimator.flow(cur, prev)
    mask = consistency_mask(backward, estimator.flow(prev, cur))
    diff = frame_difference(warp(prev, backward), cur)
    return FramePair(backward, mask, is_cut(float(mask.mean()), diff))


def is_cut(reliable: float, unexplained: float) -> bool:
    """The cut test: `reliable`, the share of pixels whose flow passed the consistency check;
    `unexplained`, the mean abs difference (0-255) of the previous frame warped by the flow
    from the frame."""
    return unexplained > SCENE_CUT_DIFF or (reliable < SCENE_CUT_RELIABLE
                                            and unexplained > SCENE_CUT_UNEXPLAINED)


def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference (0-255) of two frames: the cut test where no flow is computed."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


STATIC_TOL = 3.0  # grey levels (5x5 mean): content this close to when a pixel was last painted
STATIC_FLOW_PX = 0.5  # and flow shorter than this: DIS's noise near moving things reaches it
STATIC_MARGIN = 2  # px left free around anything that moves, so the optimizer can blend it in


def static_pixels(backward: np.ndarray, mask: np.ndarray, content: np.ndarray,
                  reference: np.ndarray) -> np.ndarray:
    """Pixels of frame t that neither move nor changed since they were last stylized.

    backward: (H, W, 2) flow t -> t-1; mask: (H, W) consistency; content: (H, W, 3) uint8 frame
    t; reference: (H, W, 3) float32, each pixel's content when it was last optimized (so a slow
    change, e.g. of light, still counts up until the pixel is repainted). Returns (H, W) bool.
    """
    still = ((backward ** 2).sum(axis=2) < STATIC_FLOW_PX ** 2) & (mask > 0)
    diff = cv2.blur(np.abs(content.astype(np.float32) - reference).max(axis=2), (5, 5))
    static = (still & (diff < STATIC_TOL)).astype(np.uint8)
    k = 2 * STATIC_MARGIN + 1
    return cv2.erode(static, np.ones((k, k), np.uint8), borderValue=1).astype(bool)


def warping_error_maps(frames: list[np.ndarray], content: list[np.ndarray],
                       estimator: FlowEstimator | None = None):
    """For each consecutive pair (t-1, t), the terms of Lai et al. 2018's temporal warping
    error: per pixel, the squared difference between stylized frame t and stylized frame t-1
    warped by the content's flow, over the channels (H, W), and the occlusion mask M it is
    counted under (H, W)."""
    est = estimator or FlowEstimator("medium")
    for t in range(1, len(frames)):
        back = est.flow(content[t], content[t - 1])
        mask = consistency_mask(back, est.flow(content[t - 1], content[t]))
        diff = frames[t].astype(np.float32) - warp(frames[t - 1], back).astype(np.float32)
        yield (diff ** 2).sum(axis=2) / 3, mask


def frame_warping_errors(frames: list[np.ndarray], content: list[np.ndarray],
                         estimator: FlowEstimator | None = None,
                         region: list[np.ndarray] | None = None) -> list[float]:
    """Lai et al. 2018's temporal warping error of each consecutive pair: the occlusion-masked
    mean squared difference between stylized frame t and stylized frame t-1 warped by the
    content's flow, Σ M·(O_t − warp(O_{t−1}))² / (3·ΣM). Entry t-1 is the pair (t-1, t).
    `region`: per frame, (H, W) weights in 0-1 (a masked render's painted pixels) that M is
    multiplied by."""
    errs = []
    for t, (squared, mask) in enumerate(warping_error_maps(frames, content, estimator), 1):
        if region is not None:
            mask = mask * region[t]
        errs.append(float(3 * (mask * squared).sum() / max(1.0, 3 * mask.sum())))
    return errs


def warping_error(frames: list[np.ndarray], content: list[np.ndarray],
                  region: list[np.ndarray] | None = None) -> float:
    """The mean of `frame_warping_errors`: the steadiness measure of benchmarks/."""
    return float(np.mean(frame_warping_errors(frames, content, region=region)))
