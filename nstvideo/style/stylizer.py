"""The style-transfer engine: VGG-19 and the style targets, built once per run, and the
objective for one image (or frame), optimized by `optimize.optimize`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nstvideo.style import losses
from nstvideo.errors import InputError
from nstvideo.style.device import (MEMORY_SHARE, check_fits, configure, estimate_bytes, free_bytes,
                             out_of_memory, resolve_device, use_bf16)
from nstvideo.style.optimize import (PRECONDITION, EarlyStop, OptimizeReport, Preconditioner,
                                     optimize)
from nstvideo.settings import StyleSettings, loss_weights
from nstvideo.style.tensors import (fit_checked, fit_longest, luminance, resize, resize_tensor,
                              to_tensor, with_colors_of)
from nstvideo.style.vgg import VGGFeatures, min_side

COARSEST_SIDE = 64  # px; below this the deep style layers see only a few pixels
# Auto batching of same-size photos, CUDA only (on two CPU cores a batch of 4 small photos is
# only 1.12x faster, benchmarks/RESULTS.md): up to this many pixels per batch, i.e. 16 images
# at 256 px, 4 at 512, 1 at 1024. Small frames leave most of a large GPU idle between kernel
# launches; big ones fill it.
MAX_BATCH_PIXELS = 1024 * 1024
MAX_BATCH = 16


@dataclass
class Temporal:
    """The temporal cost's inputs for one frame: previous result warped to this frame (pixels,
    (1, 3, H, W)), the per-pixel consistency weight (1, 1, H, W) and the cost's weight; and
    optionally `frozen` (1, 1, H, W) bool: static pixels held at `warped` exactly."""

    warped: torch.Tensor
    mask: torch.Tensor
    weight: float
    frozen: torch.Tensor | None = None

    def resized(self, hw: tuple[int, int], space=lambda t: t) -> "Temporal":
        """At size hw (a pixel stays frozen only if all it covers is frozen), with the warped
        frame mapped by `space` (e.g. to luminance)."""
        frozen = None if self.frozen is None else (
            resize_tensor(self.frozen.float(), hw) > 0.999)
        return Temporal(resize_tensor(space(self.warped), hw), resize_tensor(self.mask, hw),
                        self.weight, frozen)


def style_longest(content_longest: int, style_scale: float) -> int:
    """The longer side a style image is scaled to for a result whose longer side is
    `content_longest` (the reader may decode a large JPEG style no larger than this needs)."""
    return max(8, round(content_longest * style_scale))


def _style_pixels(img: np.ndarray, device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A style image as VGG's input, and its opacity (1, 1, H, W) where it has transparent
    pixels (else None). Those are given the opaque pixels' mean colour, so that what is stored
    under them (black, mostly) does not bleed into the painted pixels' features at the edge;
    the style targets then weigh each position by its opacity."""
    if img.ndim < 3 or img.shape[2] < 4 or img[..., 3].min() == 255:
        return to_tensor(img[..., :3], device), None
    a = img[..., 3:4].astype(np.float32) / 255.0
    if a.max() < 0.5 / 255:
        raise InputError("the style image is wholly transparent: give one with painted pixels")
    mean = (img[..., :3] * a).sum(axis=(0, 1)) / a.sum()
    rgb = np.clip(img[..., :3] * a + mean * (1 - a) + 0.5, 0, 255).astype(np.uint8)
    return to_tensor(rgb, device), torch.from_numpy(a[None, ..., 0][None]).to(device)


class Stylizer:
    """Holds VGG-19 and the blended style targets; `run` stylizes one content image.

    Build once per run: the style Grams are computed here, once.
    """

    def __init__(self, styles: list[np.ndarray], settings: StyleSettings,
                 precondition: Preconditioner | None = PRECONDITION):
        self.settings = s = settings
        self.precondition = precondition  # L-BFGS's (optimize.Preconditioner; None: plain)
        if not styles:
            raise InputError("no style image given: name at least one")
        blend = s.style_blend or tuple(1.0 for _ in styles)
        if len(blend) != len(styles):
            raise InputError(f"--style-weights has {len(blend)} values for {len(styles)} style "
                             "images: give one weight per style image")
        self.blend = [w / sum(blend) for w in blend]
        self.device = resolve_device(s.device)
        layers = [s.content_layer] + [name for name, _ in s.style_layers]
        self.amp = use_bf16(s.precision, self.device)
        self.vgg = VGGFeatures(layers, weights=s.weights).compute_on(self.device, self.amp)
        self.min_side = min_side(layers)
        self.alpha, self.beta, self.gamma = loss_weights(s)
        configure(self.device, s.seed)
        self.styles = styles
        self._targets: dict[tuple, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def style_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Blended style targets per layer for a result the size of `content` (1, 3, H, W):
        the style image is scaled to style_scale x its longest side. With preserve_colors the
        style's luminance is matched to `content`'s. Cached: computed once per size."""
        s = self.settings
        longest = style_longest(max(content.shape[2:]), s.style_scale)
        key: tuple = (longest,)
        if s.preserve_colors:
            y = luminance(content)[:, 0]
            key += (round(float(y.mean()), 1), round(float(y.std()), 1))
        if key in self._targets:
            return self._targets[key]
        targets: dict[str, torch.Tensor] = {}
        for img, w in zip(self.styles, self.blend):
            hw = fit_longest(*img.shape[:2], longest)
            if min(hw) < self.min_side:  # a thin style image: enlarged until VGG can take it
                sides = img.shape[:2]  # (its own: the fit above rounded the short one)
                hw = fit_longest(*sides, math.ceil(self.min_side * max(sides) / min(sides)))
            x, opacity = _style_pixels(resize(img, hw), self.device)
            if s.preserve_colors:
                x = luminance(x, like=content)
            feats = self.features(x)
            for name, _ in s.style_layers:
                f = feats[name]
                t = w * (losses.style_target(f) if opacity is None else
                         losses.weighted_style_target(f, torch.nn.functional.adaptive_avg_pool2d(
                             opacity, f.shape[2:])))
                targets[name] = targets[name] + t if name in targets else t
        if len(self._targets) > 8:  # bounded: preserve_colors over many photos adds keys
            self._targets.clear()
        self._targets[key] = targets
        return targets

    def objective(self, content: torch.Tensor, temporal: Temporal | None = None):
        """The total cost J(x) for one content image (1, 3, H, W) in pixels; returns a callable
        x -> (total per item (B,), parts summed) as `optimize` wants. Content targets are
        computed here, once."""
        s = self.settings
        style_t = self.style_targets(content)
        with torch.no_grad():
            content_t = self.features(content)[s.content_layer]

        def f(x: torch.Tensor):  # the total per item (B,), the parts summed over the batch
            feats = self.features(x)
            jc = losses.content_loss(feats[s.content_layer], content_t)
            js = sum(lam * losses.style_loss(feats[n], style_t[n]) for n, lam in s.style_layers)
            jt = losses.tv_loss(x)
            total = self.alpha * jc + self.beta * js + self.gamma * jt
            parts = {"content": jc, "style": js, "tv": jt}
            if temporal is not None:
                jtemp = losses.temporal_loss(x, temporal.warped, temporal.mask)
                total = total + temporal.weight * jtemp
                parts["temporal"] = jtemp
            parts["total"] = total
            return total, {k: v.detach().sum() for k, v in parts.items()}  # one sync, later

        return f

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG features of pixels x (B, 3, H, W), as float32 whatever the compute precision:
        with bf16 only the convolutions run in bf16; Grams and costs stay in float32."""
        return self.vgg(x)

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """Content image (H, W, 3|4) uint8 -> (1, 3, h, w) pixels at the run's size."""
        hw = fit_checked(*image.shape[:2], self.settings.size, self.min_side)
        return to_tensor(resize(image[..., :3], hw), self.device)

    def initial(self, content: torch.Tensor, init: np.ndarray | None = None) -> torch.Tensor:
        """The starting image(s) for content (B, 3, H, W): the content, noise, or a given image
        resized to fit. Seeded noise is the same for every item, as each would get alone."""
        mode, b = self.settings.init, content.shape[0]
        if init is not None:
            one = to_tensor(resize(init[..., :3], tuple(content.shape[2:])), self.device)
            return one.repeat(b, 1, 1, 1)
        if mode == "noise":
            g = torch.Generator()
            if self.settings.seed is None:
                g.seed()  # a fresh random seed: only --seed makes noise repeatable
                return (torch.rand(content.shape, generator=g) * 255.0).to(self.device)
            g.manual_seed(self.settings.seed)
            one = torch.rand((1, *content.shape[1:]), generator=g) * 255.0
            return one.repeat(b, 1, 1, 1).to(self.device)
        return content.clone()

    def batch_limit(self, hw: tuple[int, int]) -> int:
        """How many photos of size hw to optimize at once: `settings.batch` if set; auto (0):
        one off CUDA, and on CUDA as many as stay under MAX_BATCH_PIXELS and in free memory.
        Always one with preserve_colors (each photo has its own style target then)."""
        s = self.settings
        if s.preserve_colors:
            return 1
        if s.batch > 0:
            return s.batch
        if self.device.type != "cuda":
            return 1
        by_memory = int(MEMORY_SHARE * free_bytes(self.device) // estimate_bytes(hw, self.vgg.wanted))
        return max(1, min(MAX_BATCH, MAX_BATCH_PIXELS // (hw[0] * hw[1]), by_memory))

    def levels(self, hw: tuple[int, int], iterations: int) -> list[tuple[tuple[int, int], int]]:
        """Coarse-to-fine schedule: [(size (h, w), iterations)], coarsest first, ending at `hw`.

        Each coarser level halves the size (down to COARSEST_SIDE) and the coarse levels share
        `coarse_share` of the iterations equally; the rest run at full size."""
        s = self.settings
        sizes = [hw]
        while len(sizes) < s.coarse_levels and max(sizes[-1]) // 2 >= COARSEST_SIDE:
            sizes.append((max(1, sizes[-1][0] // 2), max(1, sizes[-1][1] // 2)))
        n_coarse = len(sizes) - 1
        per = round(iterations * s.coarse_share / n_coarse) if n_coarse else 0
        its = [per] * n_coarse + [iterations - per * n_coarse]
        return [(size, n) for size, n in zip(reversed(sizes), its) if n > 0]

    def run(self, content: torch.Tensor, init: torch.Tensor, *, iterations: int | None = None,
            temporal: Temporal | None = None, early_stop: EarlyStop | None = None,
            on_step=None) -> tuple[torch.Tensor, OptimizeReport]:
        """Stylize content from `init`; both (B, 3, H, W) pixels on the device (a batch: B
        independent images of one size, each optimized as it would be alone).

        Runs the coarse-to-fine schedule of `levels`. With preserve_colors the optimization
        runs on luminance and the content's colours are put back at the end. Returns the
        result in pixels and the optimizer's report (iterations summed over levels).
        """
        hw, layers = tuple(content.shape[2:]), self.vgg.wanted
        check_fits(self.device, hw, layers, batch=len(content))
        try:
            return self._run(content, init, iterations, temporal, early_stop, on_step)
        except torch.cuda.OutOfMemoryError as e:
            raise out_of_memory(self.device, hw, layers, len(content)) from e

    def _run(self, content, init, iterations, temporal, early_stop, on_step):
        s = self.settings
        space = luminance if s.preserve_colors else (lambda t: t)
        target, x = space(content), space(init)
        report = OptimizeReport()
        for hw, n in self.levels(tuple(content.shape[2:]), iterations or s.iterations):
            level_t = None if temporal is None else temporal.resized(hw, space)
            fixed = None if level_t is None or level_t.frozen is None else (
                level_t.frozen, level_t.warped)
            done = report.iterations
            step = None if on_step is None else (lambda i, p, d=done: on_step(d + i, p))
            x, rep = optimize(resize_tensor(x, hw), self.objective(resize_tensor(target, hw), level_t),
                              iterations=n, optimizer=s.optimizer,
                              learning_rate=s.learning_rate, early_stop=early_stop,
                              on_step=step, fixed=fixed, precondition=self.precondition)
            report.iterations += rep.iterations
            report.backtracks += rep.backtracks
            report.first = report.first or rep.first
            report.last = rep.last
        if s.preserve_colors:
            x = with_colors_of(x, content)
        return x, report
