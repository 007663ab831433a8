"""The style-transfer engine: VGG-19 and the style targets, built once per run, and the
objective for one image (or frame), optimized by `optimize.optimize`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from nstvideo import losses
from nstvideo.errors import InputError, ModelError
from nstvideo.optimize import LBFGS_HISTORY, EarlyStop, OptimizeReport, optimize
from nstvideo.settings import StyleSettings, loss_weights
from nstvideo.tensors import (fit_longest, luminance, resize, resize_tensor, to_tensor,
                              with_colors_of)
from nstvideo.vgg import VGGFeatures

COARSEST_SIDE = 64  # px; below this the deep style layers see only a few pixels
# Auto batching of same-size photos, CUDA only (on two CPU cores a batch of 4 small photos is
# only 1.12x faster, benchmarks/RESULTS.md): up to this many pixels per batch, i.e. 16 images
# at 256 px, 4 at 512, 1 at 1024. Small frames leave most of a large GPU idle between kernel
# launches; big ones fill it.
MAX_BATCH_PIXELS = 1024 * 1024
MAX_BATCH = 16


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; a named device must be available."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when it finds no driver
        cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name.startswith("cuda") and not cuda:
        raise ModelError("--device cuda: no CUDA GPU is available here: use --device cpu or auto")
    if name == "mps" and not mps:
        raise ModelError("--device mps: Apple's MPS is not available here: use --device cpu or auto")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ModelError(f"unknown device '{name}': use auto, cpu, cuda or mps")
    return torch.device(name)


def use_bf16(precision: str, device: torch.device) -> bool:
    """auto: bf16 convolutions on CUDA GPUs that have bf16 (Ampere and later), else fp32."""
    if precision not in ("auto", "fp32", "bf16"):
        raise InputError(f"unknown precision '{precision}': use auto, fp32 or bf16")
    if precision == "fp32":
        return False
    supported = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "bf16" and not supported:
        raise ModelError(f"--precision bf16 needs a CUDA GPU with bf16 support; {device} has "
                         "none: use --precision fp32 or auto")
    return supported


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


class Stylizer:
    """Holds VGG-19 and the blended style targets; `run` stylizes one content image.

    Build once per run: the style Grams are computed here, once.
    """

    def __init__(self, styles: list[np.ndarray], settings: StyleSettings):
        self.settings = s = settings
        if not styles:
            raise InputError("no style image given: name at least one")
        blend = s.style_blend or tuple(1.0 for _ in styles)
        if len(blend) != len(styles):
            raise InputError(f"--style-weights has {len(blend)} values for {len(styles)} style "
                             "images: give one weight per style image")
        if any(w < 0 for w in blend) or sum(blend) <= 0:
            raise InputError("--style-weights must be non-negative and not all zero")
        self.blend = [w / sum(blend) for w in blend]
        self.device = resolve_device(s.device)
        layers = [s.content_layer] + [name for name, _ in s.style_layers]
        self.vgg = VGGFeatures(layers, weights=s.weights).to(self.device)
        self.alpha, self.beta, self.gamma = loss_weights(s)
        self.amp = use_bf16(s.precision, self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # VGG's shapes repeat every iteration
            torch.backends.cuda.matmul.allow_tf32 = True  # Grams: TF32 is ample here
            torch.backends.cudnn.allow_tf32 = True
            self.vgg.to(memory_format=torch.channels_last)
            self.vgg.channels_last = True
        self.styles = styles
        self._targets: dict[tuple, dict[str, torch.Tensor]] = {}

    @torch.no_grad()
    def style_targets(self, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Blended style targets per layer for a result the size of `content` (1, 3, H, W):
        the style image is scaled to style_scale x its longest side. With preserve_colors the
        style's luminance is matched to `content`'s. Cached: computed once per size."""
        s = self.settings
        longest = max(8, round(max(content.shape[2:]) * s.style_scale))
        key: tuple = (longest,)
        if s.preserve_colors:
            y = luminance(content)[:, 0]
            key += (round(float(y.mean()), 1), round(float(y.std()), 1))
        if key in self._targets:
            return self._targets[key]
        targets: dict[str, torch.Tensor] = {}
        for img, w in zip(self.styles, self.blend):
            x = to_tensor(resize(img[..., :3], fit_longest(*img.shape[:2], longest)), self.device)
            if s.preserve_colors:
                x = luminance(x, like=content)
            feats = self.features(x)
            for name, _ in s.style_layers:
                t = w * losses.style_target(feats[name])
                targets[name] = targets[name] + t if name in targets else t
        if len(self._targets) > 8:  # bounded: preserve_colors over many photos adds keys
            self._targets.clear()
        self._targets[key] = targets
        return targets

    def objective(self, content: torch.Tensor, temporal: Temporal | None = None):
        """The total cost J(x) for one content image (1, 3, H, W) in pixels; returns a callable
        x -> (total, parts) as `optimize` wants. Content targets are computed here, once."""
        s = self.settings
        style_t = self.style_targets(content)
        with torch.no_grad():
            content_t = self.features(content)[s.content_layer]

        def f(x: torch.Tensor):
            feats = self.features(x)
            jc = losses.content_loss(feats[s.content_layer], content_t).sum()
            js = sum(lam * losses.style_loss(feats[n], style_t[n]).sum()
                     for n, lam in s.style_layers)
            jt = losses.tv_loss(x).sum()
            total = self.alpha * jc + self.beta * js + self.gamma * jt
            parts = {"content": jc, "style": js, "tv": jt}
            if temporal is not None:
                jtemp = losses.temporal_loss(x, temporal.warped, temporal.mask).sum()
                total = total + temporal.weight * jtemp
                parts["temporal"] = jtemp
            parts["total"] = total
            return total, {k: v.detach() for k, v in parts.items()}  # floats: one sync, later

        return f

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG features of pixels x (B, 3, H, W), as float32 whatever the compute precision:
        with bf16 only the convolutions run in bf16; Grams and costs stay in float32."""
        if not self.amp:
            return self.vgg(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            feats = self.vgg(x)
        return {k: v.float() for k, v in feats.items()}

    def prepare(self, image: np.ndarray) -> torch.Tensor:
        """Content image (H, W, 3|4) uint8 -> (1, 3, h, w) pixels at the run's size."""
        hw = fit_longest(*image.shape[:2], self.settings.size)
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
        free = torch.cuda.mem_get_info(self.device)[0]
        by_memory = int(0.9 * free // estimate_bytes(hw, self.vgg.wanted))
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
        s = self.settings
        check_fits(self.device, tuple(content.shape[2:]), self.vgg.wanted, batch=len(content))
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
                              on_step=step, fixed=fixed)
            report.iterations += rep.iterations
            report.first = report.first or rep.first
            report.last = rep.last
        if s.preserve_colors:
            x = with_colors_of(x, content)
        return x, report


def estimate_bytes(hw: tuple[int, int], layers: tuple[str, ...], history: int = LBFGS_HISTORY) -> int:
    """Rough device memory one optimization needs at size hw: VGG activations up to the deepest
    layer, kept for the backward pass and their gradients (x3, fp32), plus L-BFGS's history
    (2 x `history` images) and a few working images."""
    from nstvideo.vgg import LAYER_NAMES, layer_channels

    h, w = hw
    deepest = max(LAYER_NAMES.index(n) for n in layers)
    total = 0
    for name in LAYER_NAMES[: deepest + 1]:
        block = int(name[4])
        scale = 2 ** (block - (0 if name.startswith("pool") else 1))
        total += layer_channels(name) * (h // scale) * (w // scale)
    return 4 * (3 * total + (2 * history + 8) * 3 * h * w)


def check_fits(device: torch.device, hw: tuple[int, int], layers: tuple[str, ...],
               free_bytes: int | None = None, batch: int = 1) -> None:
    """On CUDA, refuse before starting a size that would not fit in free memory, naming the
    largest longest side that would (memory grows with the pixel count)."""
    if free_bytes is None:
        if device.type != "cuda":
            return
        free_bytes = torch.cuda.mem_get_info(device)[0]
    one = estimate_bytes(hw, layers)
    if batch > 1 and batch * one > 0.9 * free_bytes >= one:
        raise ModelError(f"a batch of {batch} {hw[1]}x{hw[0]} images needs about "
                         f"{batch * one / 2**30:.1f} GiB on {device} but {free_bytes / 2**30:.1f} "
                         f"GiB are free: use --batch {int(0.9 * free_bytes // one)} or less")
    if one > 0.9 * free_bytes:
        fit = int(max(hw) * (0.9 * free_bytes / one) ** 0.5) // 16 * 16
        raise ModelError(f"a {hw[1]}x{hw[0]} frame needs about {one / 2**30:.1f} GiB on {device} "
                         f"but {free_bytes / 2**30:.1f} GiB are free: use --size {fit} or less")
