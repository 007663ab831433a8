"""Where to paint, and with which style: masks over the picture (Gatys, Ecker, Bethge,
Hertzmann & Shechtman 2017, "Controlling Perceptual Factors in Neural Style Transfer": spatial
control by guided Gram matrices). Each region's Gram is taken over its own positions only,
weighed by its mask pooled to the layer's grid and divided by its own area, so a small region
gets the whole style, not a share of it diluted by the rest of the picture. Pixels outside
every region are held at the content (they are not optimized: no halo of changed pixels
around the painted region), and the result is laid over the content through the masks'
union, feathered, at the end. Knows nothing of files.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nstvideo.style.tensors import gaussian_kernel

FEATHER = 0.004  # the union's edge is softened over this share of the longer side (at least
# a pixel): a hard mask cut from a photo leaves no stair-stepped seam
HOLD_BELOW = 0.02  # pixels the feathered union covers less than this are held at the content
EMPTY = 1e-3  # a region whose mean coverage is below this paints nothing (masks.py leaves
# it out; every region so: the content is given back)


@dataclass(frozen=True)
class Regions:
    """Masks (R, 1, H, W) in 0-1, at any size (resized to each level's), and for each region
    the style blend it is painted with (weights over the stylizer's styles; None: the
    settings' blend)."""

    masks: torch.Tensor
    blends: tuple[tuple[float, ...] | None, ...]

    @property
    def empty(self) -> bool:
        """Whether they paint nothing (every region's mean coverage under EMPTY)."""
        return float(self.masks.mean(dim=(1, 2, 3)).max()) < EMPTY

    def at(self, hw: tuple[int, int]) -> torch.Tensor:
        """The masks at size hw (R, 1, h, w)."""
        if tuple(self.masks.shape[2:]) == tuple(hw):
            return self.masks
        return F.interpolate(self.masks, size=hw, mode="bilinear", align_corners=False,
                             antialias=True).clamp_(0, 1)

    def cover(self, hw: tuple[int, int]) -> torch.Tensor:
        """The union of the regions at size hw, feathered (1, 1, h, w) in 0-1: how much of each
        pixel is painted in the result."""
        union = self.at(hw).amax(dim=0, keepdim=True)
        k, r = gaussian_kernel(max(1.0, FEATHER * max(hw)), union.device, union.dtype)
        soft = F.conv2d(F.pad(union, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        soft = F.conv2d(F.pad(soft, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        return torch.maximum(soft, union)  # (never less painted than the mask asks)

    def temporal_factor(self, hw: tuple[int, int]) -> torch.Tensor:
        """(1, 1, h, w): each pixel's factor on a video frame's temporal hold, the sum over
        regions of mask / the region's share of the picture (at least 1). A region's guided
        Gram is a mean over its own positions, so a change uncorrelated from pixel to pixel (a
        texture repainted from one frame to the next) raises its cost 1/share times more than
        the same change raises a whole picture's Gram; held as much more, a region flickers
        1.0-1.2x what a picture painted whole does at pixels of the same texture (without it
        a band a third wide flickered 2.5x an unmasked render, 3x when moving; RESULTS.md,
        "The masked band's flicker, session 24", "The still band, like for like")."""
        masks = self.at(hw)
        shares = masks.mean(dim=(1, 2, 3), keepdim=True).clamp_min(EMPTY)
        return (masks / shares).sum(dim=0, keepdim=True).clamp_min(1.0)

    def held(self, hw: tuple[int, int]) -> torch.Tensor:
        """(1, 1, h, w) bool: the pixels kept as the content, not optimized."""
        return self.cover(hw) < HOLD_BELOW


def guided(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Features a (1, C, h, w) weighed so that their plain Gram, scaled as losses.style_loss
    scales it (1 / 2·C·h·w), is the region's guided Gram: Σ_p w_p·a_p·a_pᵀ / (2·C·Σ_p w_p),
    `w` (1, 1, h, w) the region's mask pooled to the layer's positions (tiled.pooled)."""
    area = w.sum().clamp_min(EMPTY)
    return a * (w * (a.shape[2] * a.shape[3]) / area).sqrt()
