"""Settings: frozen dataclasses with the defaults, each with its reason.

Library functions take one of these (keyword `settings=`) or keyword overrides; the CLI builds
them from its options. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from nstvideo.errors import InputError
from nstvideo.style.vgg import check_layer


def check_number(value: float, what: str, positive: bool = False) -> float:
    """A cost weight or scale must be a finite number >= 0 (> 0 where `positive`): NaN or
    infinity would make every loss NaN, a negative weight rewards the opposite."""
    try:
        ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    except TypeError:
        ok = False
    if not ok:
        raise InputError(f"{what} is {value}: give a finite number "
                         + ("above 0" if positive else "0 or more"))
    return value

# Classic Gatys layer choice (content relu4_2, style relu1_1..relu5_1) with equal layer weights.
DEFAULT_STYLE_LAYERS: tuple[tuple[str, float], ...] = (
    ("relu1_1", 0.2), ("relu2_1", 0.2), ("relu3_1", 0.2), ("relu4_1", 0.2), ("relu5_1", 0.2))

OPTIMIZERS = ("lbfgs", "adam")
# --preserve-colors, as given -> as kept (True: luminance, as the option was a flag before)
COLOR_MODES = {False: False, None: False, "": False, "none": False, True: True,
               "luminance": True, "histogram": "histogram"}
MAX_ITERATIONS = 100_000  # a ceiling on mistakes (999999999 estimated 9,200 hours): L-BFGS
# converges by eye in a few hundred; a frame or level stops early once its loss stops falling
MAX_SIZE = 16384  # px, the longest side: a 36 x 24 inch print at 300 dpi is 10800 x 7200, and
# tiles keep any size within memory (nstvideo.style.memory); this is a ceiling on mistakes
PRECISIONS = ("auto", "fp32", "bf16")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise InputError(f"unknown {what} '{value}': use {', '.join(choices[:-1])} or "
                         f"{choices[-1]}")
    return value


@dataclass(frozen=True)
class StyleSettings:
    """How one image (or frame) is stylized."""

    size: int = 512  # longest side of the result in pixels; 512 is the classic tools' default
    iterations: int = 300  # L-BFGS iterations (one VGG forward+backward each); converged by eye
    # α, β, γ of J = α·J_content + β·Σλ_l·J_style[l] + γ·TV. None takes the weight source's own
    # default (see `loss_weights`): Caffe and torchvision features differ in scale by ~1e3.
    content_weight: float | None = None
    style_weight: float | None = None
    tv_weight: float | None = None
    content_layer: str = "relu4_2"
    style_layers: tuple[tuple[str, float], ...] = DEFAULT_STYLE_LAYERS  # (layer, λ_l) pairs
    style_scale: float = 1.0  # style image's longest side relative to the result's
    style_blend: tuple[float, ...] | None = None  # weight of each style image; None: equal
    preserve_colors: bool | str = False  # keep the content's colours: True or "luminance",
    # luminance-only transfer; "histogram", the style's colours matched to the content's first
    # Coarse-to-fine (nstvideo.style.stylizer.schedule): the picture is composed at a size
    # VGG sees whole, then refined level by level, each twice the size of the one before,
    # the style image scaled with it (so the strokes are at the picture's scale). Levels:
    # None (auto) halves down to COARSEST_SIDE; 1 is one level at the full size. The
    # coarsest level runs `iterations`, each finer one `level_decay` times the one before.
    coarse_levels: int | None = None
    level_decay: float = 0.7
    # a finer level's picture, blurred and taken at every second pixel, held to the level
    # below's by this weight (losses.level_loss): it paints the finer strokes and keeps the
    # picture composed below (0: free, the finer levels drift from it, RESULTS.md "The
    # levels held")
    level_weight: float = 300.0
    optimizer: str = "lbfgs"  # L-BFGS converges in far fewer iterations than Adam here
    learning_rate: float = 4.0  # Adam's step in pixel units (0-255); unused by L-BFGS
    init: str = "content"  # "content", "noise", or the path of an image to start from
    seed: int | None = None  # makes noise init (and anything random) repeatable
    device: str = "auto"  # auto: CUDA, then Apple MPS, then CPU
    batch: int = 0  # photos of one size optimized together; 0 (auto): 1 off CUDA, on CUDA as
                    # many as fit under MAX_BATCH_PIXELS (stylizer.py). Each photo takes its
                    # own L-BFGS steps in a batch (equal results up to float rounding)
    precision: str = "auto"  # auto: bf16 convolutions where the device computes bf16
                             # natively (CUDA GPUs from Ampere on, CPUs with AMX or
                             # AVX512-BF16; costs in fp32), fp32 elsewhere; "fp32" or "bf16"
                             # to force
    weights: str = "caffe"  # "caffe" (offline), "torchvision", or a state-dict path
    max_megapixels: float = 100.0  # refuse inputs (photos, frames) larger than this, from
                                   # their header, before decoding: bombs and mistakes
    # GB one optimization may use (VGG, the optimizer's state); None: a share of the RAM
    # available (of the free GPU memory on CUDA). Over it the objective is computed in tiles,
    # exactly (nstvideo.style.tiled), and L-BFGS keeps fewer pairs (nstvideo.style.memory)
    max_memory: float | None = None
    tile: int | None = None  # force tiles of this many px a side (tests; users who know their
                             # machine); None: tiles only where the budget needs them

    def __post_init__(self):
        colors = self.preserve_colors
        if colors not in COLOR_MODES:
            raise InputError(f"--preserve-colors {colors}: use luminance (the default) or "
                             "histogram")
        object.__setattr__(self, "preserve_colors", COLOR_MODES[colors])
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if value is not None:
                check_number(value, "--" + name.replace("_", "-"))
        check_layer(self.content_layer)
        if not self.style_layers:
            raise InputError("--style-layers is empty: give e.g. relu1_1,relu2_1,relu3_1")
        for layer, weight in self.style_layers:
            check_layer(layer)
            check_number(weight, f"--style-layers weight of {layer}")
        if sum(w for _, w in self.style_layers) <= 0:
            raise InputError("--style-layers weights are all 0: give at least one above 0")
        for weight in self.style_blend or ():
            check_number(weight, "--style-weights")
        if self.style_blend is not None and sum(self.style_blend) <= 0:
            raise InputError("--style-weights are all 0: give at least one above 0")
        check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        check_choice(self.precision, PRECISIONS, "precision")
        check_number(self.style_scale, "--style-scale", positive=True)
        check_number(self.level_decay, "--level-decay", positive=True)
        check_number(self.level_weight, "level_weight")
        if self.coarse_levels is not None and (int(self.coarse_levels) != self.coarse_levels
                                               or self.coarse_levels < 1):
            raise InputError(f"--levels {self.coarse_levels}: give a whole number, 1 or more "
                             "(1: one level, at the full size)")
        check_number(self.learning_rate, "learning_rate", positive=True)
        check_number(self.max_megapixels, "--max-megapixels", positive=True)
        if self.max_memory is not None:
            check_number(self.max_memory, "--max-memory", positive=True)
        if self.tile is not None and (int(self.tile) != self.tile or self.tile < 16):
            raise InputError(f"--tile {self.tile}: give a whole number of pixels, 16 or more")
        if int(self.size) != self.size or not 16 <= self.size <= MAX_SIZE:
            raise InputError(f"--size {self.size}: give a whole number of pixels, 16 to "
                             f"{MAX_SIZE}")
        if int(self.iterations) != self.iterations or not 1 <= self.iterations <= MAX_ITERATIONS:
            raise InputError(f"--iterations {self.iterations}: give a whole number, 1 to "
                             f"{MAX_ITERATIONS}")

    @property
    def by_luminance(self) -> bool:
        """Luminance-only transfer (the content's colours put back at the end)."""
        return self.preserve_colors is True

    @property
    def by_histogram(self) -> bool:
        """The style images' colours matched to the content's before the transfer."""
        return self.preserve_colors == "histogram"

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)

    def replace(self, **changes) -> "StyleSettings":
        return dataclasses.replace(self, **changes)


# Per weight source: (content α, style β, tv γ) at the default layers.
# caffe: chosen by eye on tubingen + starry night / the scream and a cockatoo video frame: the
#   seed's style cost with equal λ is ~1e10 at a photo, so β is small; 1e-3 lost low-contrast
#   subjects (the white cockatoo), 1e-4 began to look like a filtered photo. γ=10 smooths
#   single-pixel noise (TV is ~4% of the final cost).
# torchvision: its features are ~60x smaller (0-1 normalized input); α/β converted from the
#   PyTorch NST tutorial's tuning for these weights (content 1, style 1e6 on MSE/Gram-mean
#   costs). Not checked by eye here: those weights cannot be downloaded on our machines.
_SOURCE_WEIGHTS = {
    "caffe": (1.0, 3e-4, 10.0),
    "torchvision": (1.0, 20.0, 1e-3),
}


def loss_weights(settings: StyleSettings) -> tuple[float, float, float]:
    """(α, β, γ) with the source defaults filled in where the settings leave them None."""
    source = settings.weights if settings.weights in _SOURCE_WEIGHTS else "torchvision"
    a, b, g = _SOURCE_WEIGHTS[source]
    pick = lambda v, d: d if v is None else v  # noqa: E731
    return (pick(settings.content_weight, a), pick(settings.style_weight, b),
            pick(settings.tv_weight, g))


def parse_keyframes(value: str | int) -> int | None:
    """'auto' -> None; 'K' (a whole number >= 1) -> K."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise InputError(f"--keyframes {value}: give 'auto' or a whole number of frames "
                         "between keyframes, 1 or more")
    return k


TEMPORAL_MODES = ("flow", "previous", "none")
WARPS = ("auto", "bilinear", "bicubic", "adaptive")
METHODS = ("optimize", "keyframes", "fast")
NET_METHODS = ("keyframes", "fast")  # the methods that paint keyframes and train a network
TEMPORAL_WEIGHT = 1e3  # the temporal cost's weight (Ruder et al.'s scale, our cost's units)
FAST_TEMPORAL_WEIGHT = 300.0  # the fast method's: its few iterations a frame leave it steadier
# than the optimizer (warping error 0.37-0.88x), and a lower weight lets them paint more:
# style cost 1.78x -> 1.57x the optimizer's at 384 px at the same steadiness, 1.87x -> 1.64x at
# 128 px (RESULTS.md, "Fast 5")
TRAIN_STEPS = 850  # the keyframe network's default training: ~5.5 min on 2 CPU cores with
# the feature term (benchmarks/keyframes.py); a GPU affords many more (--train-steps)


@dataclass(frozen=True)
class VideoSettings:
    """How a sequence of frames is rendered (on top of a StyleSettings for each frame)."""

    temporal: str = "flow"  # flow: warm start + temporal cost along optical flow (Ruder et al.)
    temporal_weight: float | None = None  # τ on the masked squared difference to the warped
    # previous result; None: TEMPORAL_WEIGHT, FAST_TEMPORAL_WEIGHT for the fast method (`tau`)
    iterations_first: int | None = None  # a chain's first frame (the first of a shot, or after
                                         # a scene cut), started from the content; None: 3x
                                         # `iterations`
    iterations: int = 100  # later frames: they start from the warped previous result
    early_stop_tol: float = 1e-3  # stop a frame when its loss fell by less than this (relative)
    early_stop_window: int = 20  # ... over this many iterations
    start: str = "0"  # where to begin: seconds ("70.5"), a time ("00:01:10") or a frame ("1750f")
    duration: str | None = None  # how much to render, same forms; None: to the end
    every: int = 1  # render every N-th frame (a quick preview at fps/N)
    fps: float | None = None  # frame rate of a folder of frames (default 25)
    sequence: bool = False  # a folder is one sequence of frames, not photos (also implied by
                            # fps or a video output)
    warp: str = "auto"  # how the previous result is carried along the flow: bilinear,
    # bicubic (keeps more brush detail at few iterations; see RESULTS) or adaptive (bicubic
    # where the flow moves far, bilinear where it jitters: nstvideo.video.flow.warp); auto:
    # adaptive for the fast method, bilinear otherwise (`interpolation`)
    flow_preset: str = "medium"  # DIS preset: 'fast' halves flow time, a little less accurate
    scene_cuts: bool = True  # restart from the content frame where the content jumps
    overlap: int = 16  # frames two pieces of a long shot both render and cross-fade (several
                       # workers only; see benchmarks/RESULTS.md, "Seams")
    segment_frames: int = 120  # finished frames are encoded into a video segment every this
                               # many (their PNGs then go): disk stays near the output's size
    hold_static: bool = True  # flow: keep pixels whose content has not changed since they were
                              # painted exactly as painted, so still backgrounds cannot drift
    # optimize: every frame optimized (the reference look); keyframes: keyframes optimized, a
    # network trained on them paints every frame (nstvideo/video/keyframes.py; ~20-50x
    # faster, softer); fast: as keyframes, then each frame refined by `refine_iterations`
    # of the optimizer from the warped previous result and the network's painting
    method: str = "optimize"
    keyframes: str = "auto"  # keyframes: 'auto' (where the content moved on) or every K frames
    train_steps: int | None = None  # the network's training steps (None: keyframes
    # TRAIN_STEPS; fast a share of its refinement's work, nstvideo.video.keyframes.steps_for)...
    train_seconds: float | None = None  # ... or fewer, when this much time has passed
    train_perceptual: float = 5.0  # keyframes: weight of the training's VGG feature term (0:
                                   # pixel L1 only): sharper strokes at equal time (RESULTS.md)
    net: str | None = None  # keyframes: a network saved by an earlier render (no training)
    save_net: str | None = None  # keyframes: save the trained network here (reuse with `net`)
    # torch threads every unit renders with, recorded in the plan (a resumed render keeps
    # them); None: with a seed on a CPU, the cores shared among the workers (results can
    # depend on the thread count on some CPUs: nstvideo.video.plan.unit_threads)
    threads: int | None = None
    refine_iterations: int = 10  # fast: the optimizer's iterations on each frame

    def __post_init__(self):
        if self.temporal_weight is not None:
            check_number(self.temporal_weight, "--temporal-weight")
        if self.fps is not None:
            check_number(self.fps, "--fps", positive=True)
        if int(self.overlap) != self.overlap or self.overlap < 1:
            raise InputError(f"overlap {self.overlap}: give a whole number of frames, 1 or more")
        check_choice(self.temporal, TEMPORAL_MODES, "temporal mode")
        check_choice(self.warp, WARPS, "warp interpolation")
        check_choice(self.method, METHODS, "method")
        parse_keyframes(self.keyframes)
        if self.train_seconds is not None:
            check_number(self.train_seconds, "--train-seconds", positive=True)
        check_number(self.train_perceptual, "--train-perceptual")
        for name in ("every", "segment_frames", "refine_iterations"):
            n = getattr(self, name)
            if int(n) != n or n < 1:
                raise InputError(f"--{name.replace('_', '-')} {n}: give a whole number, 1 or more")
        for name in ("iterations", "iterations_first", "threads", "train_steps"):
            n = getattr(self, name)
            if n is not None and (int(n) != n or n < 1):
                raise InputError(f"--{name.replace('_', '-')} {n}: give a whole number, 1 or more")
        for name in ("iterations", "iterations_first", "refine_iterations"):
            n = getattr(self, name)
            if n is not None and n > MAX_ITERATIONS:
                raise InputError(f"--{name.replace('_', '-')} {n}: give at most "
                                 f"{MAX_ITERATIONS}")
        self._check_method_options()

    def _check_method_options(self) -> None:
        """An option of another method than the one chosen would be silently ignored: refused."""
        defaults = VideoSettings.__dataclass_fields__
        given = [name for name in ("keyframes", "train_steps", "train_seconds",
                                   "train_perceptual", "net", "save_net", "refine_iterations")
                 if getattr(self, name) != defaults[name].default]
        for name in given:
            methods = ("fast",) if name == "refine_iterations" else NET_METHODS
            if self.method not in methods:
                flag = "--" + name.replace("_", "-")
                raise InputError(f"{flag} applies to --method {' or '.join(methods)}, not "
                                 f"{self.method}: drop it or choose "
                                 f"{'that method' if len(methods) == 1 else 'one of those'}")

    @property
    def trains_net(self) -> bool:
        """Whether the method paints keyframes and trains a network on them."""
        return self.method in NET_METHODS

    @property
    def interpolation(self) -> str:
        """How the previous result is warped: `warp`, auto resolved by the method."""
        if self.warp != "auto":
            return self.warp
        return "adaptive" if self.method == "fast" else "bilinear"

    @property
    def tau(self) -> float:
        """The temporal cost's weight: `temporal_weight`, auto resolved by the method."""
        if self.temporal_weight is not None:
            return self.temporal_weight
        return FAST_TEMPORAL_WEIGHT if self.method == "fast" else TEMPORAL_WEIGHT

    @property
    def chained(self) -> bool:
        """Whether each frame is optimized from the previous one (a chain per shot)."""
        return self.temporal != "none" and self.method != "keyframes"

    def replace(self, **changes) -> "VideoSettings":
        return dataclasses.replace(self, **changes)
