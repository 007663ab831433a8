"""The style-transfer engine: VGG-19 and the style targets, built once per run, and the
objective for one image (or frame), optimized by `optimize.optimize`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nstvideo.style import losses
from nstvideo.errors import InputError
from nstvideo.style.device import configure, resolve_device, use_bf16
from nstvideo.style.memory import MemoryPlan, budget, estimate_bytes, out_of_memory, plan
from nstvideo.style.optimize import (PRECONDITION, EarlyStop, OptimizeReport, Preconditioner,
                                     optimize)
from nstvideo.settings import StyleSettings, loss_weights
from nstvideo.style.tensors import (colour_stats, fit_checked, fit_longest, luminance,
                                    match_colors, resize, resize_tensor, to_tensor,
                                    with_colors_of)
from nstvideo.style.regions import EMPTY, Regions, guided
from nstvideo.style.tiled import TiledObjective, gram_sums, pooled, receptive, split
from nstvideo.style.vgg import VGGFeatures, min_side

COARSEST_SIDE = 128  # px: the coarsest level's longest side (auto levels) is at least this:
# relu5_1 sees 156 px, so at 128-256 px VGG sees the whole picture and composes it
MIN_LEVEL_ITERATIONS = 10  # the least a finer level runs: enough to sharpen the upsampled start
# Auto batching of same-size photos, CUDA only (2 CPU cores: 1.12x at 4 small photos, RESULTS):
# up to this many pixels a batch (16 at 256 px, 4 at 512, 1 at 1024): small frames idle a GPU.
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


def _region_balance(regions: Regions, content: torch.Tensor, weights: tuple[float, ...],
                    temporal: Temporal | None):
    """`weights` (content, TV, level hold) and the temporal cost for a picture painted in
    `regions` only: those costs are means over the whole picture, the kept pixels add nothing
    to them, and a region's guided style cost is its own area's; divided by the painted share,
    they weigh against the style in the region as in a picture painted whole (else a third of
    the frame is painted with a third of the content weight: garish noise); the temporal one
    is held more where a region's Grams feel a repainted texture more (`temporal_factor`)."""
    share = max(float(regions.cover(tuple(content.shape[2:])).mean()), EMPTY)
    if temporal is not None:
        mask = temporal.mask * regions.temporal_factor(temporal.mask.shape[2:]).to(temporal.mask)
        temporal = Temporal(temporal.warped, mask, temporal.weight / share, temporal.frozen)
    return tuple(w / share for w in weights), temporal


def _held(kept: torch.Tensor, content: torch.Tensor, frozen):
    """What `optimize` holds fixed: the pixels no region paints at the content, and a video
    frame's static pixels (`frozen`: (where, values) or None) at their values."""
    if frozen is None:
        return kept, content
    return kept | frozen[0], torch.where(kept, content, frozen[1])


def schedule(hw: tuple[int, int], iterations: int, settings: StyleSettings,
             coarse: bool = True) -> list[tuple[tuple[int, int], int]]:
    """Coarse-to-fine: [(size (h, w), iterations)], coarsest first, ending at `hw`.

    Each coarser level halves the size, down to COARSEST_SIDE (or `settings.coarse_levels`
    levels); the coarsest runs `iterations`, each finer one `level_decay` times as many as
    the one before (at least MIN_LEVEL_ITERATIONS): a level starts from the one before,
    upsampled, and has only the finer strokes to paint, at 4x the cost per iteration. One
    level (`coarse` False: a frame started from the previous one) is `iterations` at hw."""
    s = settings
    sizes = [hw]
    while coarse and (s.coarse_levels is None or len(sizes) < s.coarse_levels) and \
            max(sizes[-1]) // 2 >= COARSEST_SIDE and min(sizes[-1]) // 2 >= 16:
        sizes.append((max(1, sizes[-1][0] // 2), max(1, sizes[-1][1] // 2)))
    sizes.reverse()
    its = [max(min(iterations, MIN_LEVEL_ITERATIONS), round(iterations * s.level_decay ** k))
           for k in range(len(sizes))]
    return list(zip(sizes, its))


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
                 precondition: Preconditioner | None = PRECONDITION, tune: bool = False):
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
        configure(self.device, s.seed, tune)  # tune: the same frame size again and again
        self.styles = styles
        self._targets: dict[tuple, list[dict[str, torch.Tensor]]] = {}

    def style_targets(self, content: torch.Tensor,
                      blend: tuple[float, ...] | None = None) -> dict[str, torch.Tensor]:
        """Style targets per layer for a result the size of `content` (1, 3, H, W), the styles
        blended by `blend` (weights, default the settings'): each style image is scaled to
        style_scale x its longest side. With preserve_colors the style's luminance (or, by
        histogram, its colours' mean and covariance) is matched to `content`'s. Each style's
        are computed once per size."""
        per_style = self._style_targets(content)
        weights = self.blend if blend is None else [w / sum(blend) for w in blend]
        out: dict[str, torch.Tensor] = {}
        for targets, w in zip(per_style, weights):
            if w:
                for name, t in targets.items():
                    out[name] = out[name] + w * t if name in out else w * t
        return out

    @torch.no_grad()
    def _style_targets(self, content: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Each style image's targets per layer (unblended), cached by size."""
        s = self.settings
        longest = style_longest(max(content.shape[2:]), s.style_scale)
        key: tuple = (longest,)
        if s.by_luminance:  # (one read of the content's statistics: the cache's key)
            y = luminance(content)[:, 0]
            key += tuple(round(v, 1) for v in torch.stack([y.mean(), y.std()]).tolist())
        elif s.by_histogram:
            stats = torch.cat([t.view(-1) for t in colour_stats(content)])
            key += tuple(round(v, 1) for v in stats.tolist())
        if key in self._targets:
            return self._targets[key]
        per_style: list[dict[str, torch.Tensor]] = []
        for img in self.styles:
            targets: dict[str, torch.Tensor] = {}
            per_style.append(targets)
            hw = fit_longest(*img.shape[:2], longest)
            if min(hw) < self.min_side:  # a thin style image: enlarged until VGG can take it
                sides = img.shape[:2]  # (its own: the fit above rounded the short one)
                hw = fit_longest(*sides, math.ceil(self.min_side * max(sides) / min(sides)))
            x, opacity = _style_pixels(resize(img, hw), self.device)
            if s.by_luminance:
                x = luminance(x, like=content)
            elif s.by_histogram:
                x = match_colors(x, content)
            names = [name for name, _ in s.style_layers]
            tile = self.memory_plan(hw).tile  # a style as large as a print: in tiles too
            grams = gram_sums(self.features, x, split(hw, tile or max(hw), names), names,
                              weight=opacity)
            for name in names:
                size = (hw[0] // receptive(name).stride, hw[1] // receptive(name).stride)
                area = size[0] * size[1] if opacity is None else \
                    torch.nn.functional.adaptive_avg_pool2d(opacity, size).sum()
                targets[name] = grams[name] / (2 * grams[name].shape[1] * area)  # style_target
        if len(self._targets) > 8:  # bounded: preserve_colors over many photos adds keys
            self._targets.clear()
        self._targets[key] = per_style
        return per_style

    def objective(self, content: torch.Tensor, temporal: Temporal | None = None,
                  tile: int | None = None, keep: int = 1, regions: Regions | None = None,
                  below: torch.Tensor | None = None):
        """The total cost J(x) for one content image (1, 3, H, W) in pixels; returns a callable
        x -> (total per item (B,), parts summed) as `optimize` wants. Content targets are
        computed here, once. With `tile` (px) it is computed tile by tile, with the same
        value and gradient (nstvideo.style.tiled), `keep` tiles' VGG passes kept between
        its two passes. With `regions`, each region's guided Grams against its own style
        blend (nstvideo.style.regions). `below`: a finer level's hold on the level below's
        picture (losses.level_target, (B, 3, H//2, W//2)), weighed by `level_weight`."""
        s = self.settings
        style_t = self.style_targets(content) if regions is None else None
        alpha, beta, gamma, hold = self.alpha, self.beta, self.gamma, s.level_weight
        if regions is not None:  # the painted share balanced as a whole picture would be
            (alpha, gamma, hold), temporal = _region_balance(
                regions, content, (alpha, gamma, hold), temporal)
        level = None if below is None or not hold else (below, hold)
        if tile is not None:
            masks = None if regions is None else regions.at(tuple(content.shape[2:]))
            return TiledObjective(
                self.features, content, split(tuple(content.shape[2:]), tile, self.vgg.wanted),
                content_layer=s.content_layer, style_layers=s.style_layers, style_t=style_t,
                weights=(alpha, beta, gamma), temporal=temporal, keep=keep,
                content_dtype=torch.bfloat16 if self.amp else torch.float32, level=level,
                regions=None if regions is None else [
                    (masks[r:r + 1], self.style_targets(content, blend))
                    for r, blend in enumerate(regions.blends)])
        if regions is None:
            def style(feats):
                return sum(lam * losses.style_loss(feats[n], style_t[n])
                           for n, lam in s.style_layers)
        else:  # each region's guided Grams against its own blend; masks pooled once
            masks = regions.at(tuple(content.shape[2:]))
            painted = [(self._pooled(masks[r:r + 1], content),
                        self.style_targets(content, blend))
                       for r, blend in enumerate(regions.blends)]

            def style(feats):
                return sum(self._region_style(feats, w, t) for w, t in painted)
        with torch.no_grad():
            content_t = self.features(content)[s.content_layer]

        def f(x: torch.Tensor):  # the total per item (B,), the parts summed over the batch
            feats = self.features(x)
            jc = losses.content_loss(feats[s.content_layer], content_t)
            js = style(feats)
            jt = losses.tv_loss(x)
            total = alpha * jc + beta * js + gamma * jt
            parts = {"content": jc, "style": js, "tv": jt}
            if temporal is not None:
                jtemp = losses.temporal_loss(x, temporal.warped, temporal.mask)
                total = total + temporal.weight * jtemp
                parts["temporal"] = jtemp
            if level is not None:
                parts["level"] = losses.level_loss(x, level[0])
                total = total + level[1] * parts["level"]
            parts["total"] = total
            return total, {k: v.detach().sum() for k, v in parts.items()}  # one sync, later

        return f

    def _pooled(self, mask: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """A region's mask (1, 1, H, W) pooled to each style layer's positions."""
        return {n: pooled(mask, tuple(content.shape[2:]), n) for n, _ in self.settings.style_layers}

    def _region_style(self, feats: dict, weights: dict, targets: dict) -> torch.Tensor:
        """A region's style cost: its guided Grams (`weights`: `_pooled`) against `targets`."""
        return sum(lam * losses.style_loss(guided(feats[n], weights[n]), targets[n])
                   for n, lam in self.settings.style_layers)

    @torch.no_grad()
    def region_style_cost(self, image: torch.Tensor, mask: torch.Tensor,
                          blend: tuple[float, ...] | None = None) -> float:
        """The style cost of pixels `image` (1, 3, H, W) over a region (`mask` (1, 1, H, W) in
        0-1) against the styles blended by `blend`: how much the region is the painting
        (benchmarks and tests measure masks with it)."""
        return float(self._region_style(self.features(image), self._pooled(mask, image),
                                        self.style_targets(image, blend)))

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
        return content  # not a copy: the optimizer copies its start (a print-size image less)

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
        by_memory = int(self.budget() // estimate_bytes(hw, self.vgg.wanted, self.device))
        return max(1, min(MAX_BATCH, MAX_BATCH_PIXELS // (hw[0] * hw[1]), by_memory))

    def run(self, content: torch.Tensor, init: torch.Tensor, *, iterations: int | None = None,
            temporal: Temporal | None = None, early_stop: EarlyStop | None = None,
            on_step=None, coarse: bool = True,
            regions: Regions | None = None) -> tuple[torch.Tensor, OptimizeReport]:
        """Stylize content from `init`; both (B, 3, H, W) pixels on the device (a batch: B
        independent images of one size, each optimized as it would be alone).

        Runs the coarse-to-fine `schedule` (`coarse` False: at the full size only, for a
        start that already holds the painting, such as a video's previous frame). With
        preserve_colors the optimization runs on luminance and the content's colours are put
        back at the end. Returns the result in pixels and the optimizer's report (iterations
        summed over levels; `memory`, the full size's plan). `regions`: where to paint and
        with which styles (one image; nstvideo.style.regions): the rest is the content.
        """
        hw, layers = tuple(content.shape[2:]), self.vgg.wanted
        levels = schedule(hw, iterations or self.settings.iterations, self.settings, coarse)
        plans = [self.memory_plan(size, len(content), temporal is not None,
                                  0 if regions is None else len(regions.blends))
                 for size, _ in reversed(levels)][::-1]  # the full size refused first, here
        if regions is not None and len(content) != 1:
            raise ValueError("regions: one image at a time")
        try:
            return self._run(content, init, levels, plans, temporal, early_stop, on_step, regions)
        except torch.cuda.OutOfMemoryError:
            pass  # the failed run's tensors leave with the exception: what fits is asked after
        raise out_of_memory(self.device, hw, layers, len(content))

    def planned_iterations(self, hw: tuple[int, int], iterations: int | None = None) -> int:
        """The iterations `run` takes at most from the content at size hw, all levels."""
        return sum(n for _, n in schedule(hw, iterations or self.settings.iterations, self.settings))

    def budget(self) -> int:
        """Bytes one optimization may use: --max-memory, else a share of what is free."""
        return budget(self.settings.max_memory, self.device)

    def memory_plan(self, hw: tuple[int, int], batch: int = 1, temporal: bool = False,
                    regions: int = 0) -> MemoryPlan:
        """How an optimization at size hw (with `regions` masked regions) fits the budget
        (tiles, L-BFGS pairs); refuses in one line what cannot (nstvideo.style.memory.plan)."""
        return plan(hw, self.vgg.wanted, self.device, self.budget(), batch=batch,
                    tile=self.settings.tile, temporal=temporal, bf16=self.amp,
                    regions=regions)

    def _run(self, content, init, levels, plans, temporal, early_stop, on_step, regions):
        s = self.settings
        space = luminance if s.by_luminance else (lambda t: t)
        target, x = space(content), space(init)
        report = OptimizeReport()
        for i, ((hw, n), mem) in enumerate(zip(levels, plans)):
            level_t = None if temporal is None else temporal.resized(hw, space)
            fixed = None if level_t is None or level_t.frozen is None else (
                level_t.frozen, level_t.warped)
            level_target = resize_tensor(target, hw)
            if regions is not None:  # the pixels no region paints: held at the content
                fixed = _held(regions.held(hw), level_target, fixed)
            step = None if on_step is None else (
                lambda k, p, d=report.iterations: on_step(d + k, p))
            start = resize_tensor(x, hw)  # a finer level holds its picture where it starts
            below = losses.level_target(start, tuple(x.shape[2:])) if i and s.level_weight \
                else None  # (a finer level: the one below is x)
            objective = self.objective(level_target, level_t, mem.tile, mem.keep, regions,
                                       below)
            x, rep = optimize(start, objective, iterations=n,
                              optimizer=s.optimizer, learning_rate=s.learning_rate,
                              early_stop=early_stop, on_step=step, fixed=fixed,
                              precondition=self.precondition, history=mem.history,
                              history_dtype=mem.history_dtype)
            del objective
            report.memory = mem
            report.iterations += rep.iterations
            report.backtracks += rep.backtracks
            report.first = report.first or rep.first
            report.last = rep.last
        if s.by_luminance:
            x = with_colors_of(x, content)
        if regions is not None:  # laid over the content through the feathered union
            x = torch.lerp(content, x, regions.cover(tuple(content.shape[2:])))
        return x, report
