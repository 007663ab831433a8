"""The one place where images cross between uint8 arrays and float tensors, and the small
image operations that act on either (resizing, luminance)."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import torch

from nstvideo.errors import InputError

# ITU-R BT.601 luma/chroma (YIQ), as in Gatys et al. 2016 "Preserving color in NST".
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114],
                         [0.595716, -0.274453, -0.321263],
                         [0.211456, -0.522591, 0.311135]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def fit_longest(h: int, w: int, longest: int) -> tuple[int, int]:
    """(h, w) scaled so that the longer side is `longest` pixels, aspect kept, each side >= 1."""
    s = longest / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def fit_checked(h: int, w: int, longest: int, min_side: int, what: str = "image") -> tuple[int, int]:
    """`fit_longest`, refusing a result whose short side is under `min_side` (VGG-19's
    poolings, or the optical flow, cannot work on less) with the --size that would do."""
    hw = fit_longest(h, w, longest)
    if min(hw) < min_side:
        need = math.ceil(min_side * max(h, w) / min(h, w))
        raise InputError(f"at --size {longest} the {what} ({w}x{h}) would be {hw[1]}x{hw[0]}, "
                         f"but its short side must be at least {min_side} px: use --size "
                         f"{need} or more")
    return hw


def resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize (H, W, C) uint8 to (h, w): area averaging when shrinking, bicubic when growing."""
    h, w = hw
    if (h, w) == img.shape[:2]:
        return img
    shrink = h * w < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def gaussian_taps(sigma: float) -> tuple[list[float], int]:
    """A Gaussian of `sigma` px cut at 3 sigma (at least one tap each side): its 2r + 1 taps,
    summing to 1, and r."""
    r = max(1, math.ceil(3 * sigma))
    k = [math.exp(-t * t / (2 * sigma * sigma)) for t in range(-r, r + 1)]
    total = sum(k)
    return [v / total for v in k], r


@functools.lru_cache(maxsize=32)
def gaussian_kernel(sigma: float, device: torch.device,
                    dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """`gaussian_taps` as a tensor on `device`, made once: the preconditioner blurs with it at
    every iteration, where a copy from the host each time would wait for a GPU. Shared: read
    it, never write to it."""
    taps, r = gaussian_taps(sigma)
    return torch.tensor(taps, device=device, dtype=dtype), r


def resize_tensor(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Resize (B, C, H, W) to (h, w): bilinear, antialiased when shrinking; no-op if equal."""
    if tuple(x.shape[2:]) == tuple(hw):
        return x
    return torch.nn.functional.interpolate(x, size=hw, mode="bilinear", antialias=True,
                                           align_corners=False)


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 pixels 0-255 on `device`."""
    t = torch.from_numpy(np.ascontiguousarray(img[..., :3])).to(device)
    return t.permute(2, 0, 1).unsqueeze(0).float().contiguous()


def to_image(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float pixels -> (H, W, 3) uint8 RGB, rounded and clipped."""
    return t.detach()[0].clamp(0, 255).round().byte().permute(1, 2, 0).cpu().numpy()


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H, W)
    return torch.einsum("ij,bjhw->bihw", _RGB2YIQ.to(x), x)


def yiq_to_rgb(x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H, W)
    return torch.einsum("ij,bjhw->bihw", _YIQ2RGB.to(x), x)


def luminance(x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """Luma of (B, 3, H, W) pixels, repeated to 3 channels; if `like` is given, its mean and
    standard deviation are matched (luminance-only transfer, Gatys et al. 2016)."""
    y = rgb_to_yiq(x)[:, :1]
    if like is not None:
        ref = rgb_to_yiq(like)[:, :1]
        y = (y - y.mean()) / (y.std() + 1e-6) * ref.std() + ref.mean()
    return y.expand(-1, 3, -1, -1).contiguous()


def with_colors_of(y_image: torch.Tensor, colors: torch.Tensor) -> torch.Tensor:
    """Luma of `y_image` combined with the chroma (I, Q) of `colors`; both (B, 3, H, W)."""
    yiq = rgb_to_yiq(colors)
    yiq = torch.cat([rgb_to_yiq(y_image)[:, :1], yiq[:, 1:]], dim=1)
    return yiq_to_rgb(yiq)


def colour_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean (3, 1) and covariance (3, 3) of the RGB pixels of x (B, 3, H, W), float64."""
    f = x.detach().double().transpose(0, 1).reshape(3, -1)
    mean = f.mean(dim=1, keepdim=True)
    d = f - mean
    return mean, d @ d.T / max(1, d.shape[1] - 1)


def _sqrtm(c: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """The symmetric square root of a covariance (or its inverse), its eigenvalues kept above
    a grey level's square (a flat image has no colour axis to scale)."""
    vals, vecs = torch.linalg.eigh(c)
    vals = vals.clamp_min(1.0).sqrt()
    return vecs @ torch.diag(1 / vals if inverse else vals) @ vecs.T


def match_colors(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """x's pixels (B, 3, H, W, 0-255) moved by one affine map of colour so that their mean and
    covariance are those of `like`'s: x' = Σ_l^½ Σ_x^-½ (x - μ_x) + μ_l (colour histogram
    matching, Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, §5; the symmetric square
    roots, which rotate colours least). Clipped to 0-255."""
    mx, cx = colour_stats(x)
    ml, cl = colour_stats(like)
    a = _sqrtm(cl) @ _sqrtm(cx, inverse=True)
    f = x.double().transpose(0, 1).reshape(3, -1)
    out = (a @ (f - mx) + ml).reshape(3, x.shape[0], *x.shape[2:]).transpose(0, 1)
    return out.clamp(0, 255).to(x.dtype).contiguous()
