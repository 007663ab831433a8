"""The costs, as pure functions on tensors (Gatys et al. 2015 as the seed writes them;
Ruder et al. 2016 for the temporal cost). Shapes: B batch, C channels, H, W spatial.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nstvideo.style.tensors import gaussian_taps


def gram(a: torch.Tensor) -> torch.Tensor:
    """G = A·Aᵀ with A the activations unrolled to (C, H·W).  (B, C, H, W) -> (B, C, C)"""
    b, c, h, w = a.shape
    flat = a.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2)


def content_loss(a_g: torch.Tensor, a_c: torch.Tensor) -> torch.Tensor:
    """J_content = 1/(4·nH·nW·nC) · Σ (a_C − a_G)².  (B, C, H, W) x2 -> (B,)"""
    _, c, h, w = a_g.shape
    return (a_c - a_g).pow(2).sum(dim=(1, 2, 3)) / (4 * c * h * w)


def style_target(a_s: torch.Tensor) -> torch.Tensor:
    """A style image's Gram scaled by 1/(2·nC·nH·nW), the form `style_loss` compares.

    (B, C, H, W) -> (B, C, C). Scaling each Gram by its own image's size lets the style image
    differ in size from the result; for equal sizes the loss is exactly the seed's.
    """
    _, c, h, w = a_s.shape
    return gram(a_s) / (2 * c * h * w)


def style_loss(a_g: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J_style[l] = 1/(2·nC·nH·nW)² · Σ (G_S − G_G)², target from `style_target`.

    (B, C, H, W), (B or 1, C, C) -> (B,). The scale is applied before squaring to stay far
    from float32's range (unscaled Grams of 512-px images reach 1e9). Its gradient is the
    closed form (`_StyleLoss`), not autograd's through the Gram.
    """
    return _StyleLoss.apply(a_g, target)


class _StyleLoss(torch.autograd.Function):
    """`style_loss` with its gradient written out: with D = G/n − T (n = 2·nC·nH·nW),
    ∂J/∂A = (2/n)·(D + Dᵀ)·A, one matrix product. Autograd through `gram` takes two (one per
    factor of A·Aᵀ, the second through a transposed copy) and adds them: on a 2-core CPU in
    bf16 those were over half of an iteration's time, the convolutions 14% (RESULTS.md, "Fast
    5"; benchmarks/style_loss.py). The activations are read in the layout they come in
    (channels-last as (H·W, C), else (C, H·W)), without a copy."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        b, c, h, w = a.shape
        n = 2 * c * h * w
        channels_last = a.permute(0, 2, 3, 1).is_contiguous()
        if channels_last:
            m = a.permute(0, 2, 3, 1).reshape(b, h * w, c)  # a view
            g = m.transpose(1, 2) @ m
        else:
            m = a.reshape(b, c, h * w)
            g = m @ m.transpose(1, 2)
        d = g / n - target
        ctx.save_for_backward(m, d)
        ctx.layout = (b, c, h, w, n, channels_last)
        ctx.target_shape = target.shape
        return d.pow(2).sum(dim=(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        m, d = ctx.saved_tensors
        b, c, h, w, n, channels_last = ctx.layout
        grad = grad.view(-1, 1, 1)
        grad_a = grad_target = None
        if ctx.needs_input_grad[0]:
            s = (d + d.transpose(1, 2)) * (grad * (2.0 / n))
            grad_a = ((m @ s).view(b, h, w, c).permute(0, 3, 1, 2) if channels_last
                      else (s @ m).view(b, c, h, w))
        if ctx.needs_input_grad[1]:  # summed over the batch where one target served it
            grad_target = (-2.0 * d * grad).sum_to_size(ctx.target_shape)
        return grad_a, grad_target


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation: mean over pixels of squared differences to the right and below neighbour,
    in the image's own units.  (B, C, H, W) -> (B,)"""
    dx = (x[..., :, 1:] - x[..., :, :-1]).pow(2).sum(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).pow(2).sum(dim=(1, 2, 3))
    return (dx + dy) / x[0].numel()


def temporal_loss(x: torch.Tensor, warped_prev: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1/D) · Σ c · (x − warped_prev)², D = H·W·C, c the per-pixel weight (the flow's
    consistency in [0, 1]; where masks paint, times `Regions.temporal_factor`).

    (B, C, H, W), (B, C, H, W), (B, 1, H, W) -> (B,)
    """
    return (mask * (x - warped_prev).pow(2)).sum(dim=(1, 2, 3)) / x[0].numel()


LEVEL_SIGMA = 1.0  # px of the finer level: the blur before taking every second pixel, so
# that the held picture is the level below's and no 2 px grid (a box of 2 x 2 pixels held
# leaves one: RESULTS.md, "The levels held")


def downsampled(x: torch.Tensor) -> torch.Tensor:
    """x blurred by a Gaussian of LEVEL_SIGMA px (zero outside the picture) at every second
    pixel from the first: (B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)). Sums of shifted
    views, not a convolution: the CPU unfolds a convolution's taps (a copy each)."""
    k, r = gaussian_taps(LEVEL_SIGMA)
    for dim in (-1, -2):
        n = x.shape[dim]
        padded = F.pad(x, (r, r) if dim == -1 else (0, 0, r, r))
        out = None
        for i, v in enumerate(k):
            part = padded.narrow(dim, i, n)
            part = part[..., ::2] if dim == -1 else part[..., ::2, :]
            out = part * v if out is None else out.add(part, alpha=v)
        x = out
    return x


def level_target(start: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """What `level_loss` holds a finer level to: its start (the level below's result
    upsampled) as `downsampled` sees it, cut to the level below's size hw; a channel at a
    time (a print's padded copies are a third of an image each)."""
    return torch.cat([downsampled(start[:, i:i + 1])[..., :hw[0], :hw[1]]
                      for i in range(start.shape[1])], dim=1)


def level_loss(x: torch.Tensor, below: torch.Tensor) -> torch.Tensor:
    """(1/D) · Σ (downsampled(x) − below)², D = C·h·w of `below` (`level_target`, (B or 1,
    C, h, w), h = H // 2, w = W // 2): how far a finer level has moved the picture composed
    below it (0 at its start).  (B, C, H, W) -> (B,)"""
    h, w = below.shape[2:]
    d = downsampled(x)[..., :h, :w] - below
    return d.pow(2).sum(dim=(1, 2, 3)) / below[0].numel()
