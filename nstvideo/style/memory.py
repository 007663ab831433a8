"""Memory: what one optimization needs at a size, and the plan that keeps it within a budget
on every device: the picture whole, or in tiles (nstvideo.style.tiled), and how many of
L-BFGS's curvature pairs are kept, in which precision. Refuses, before the first iteration,
what cannot fit even in the smallest tiles, naming the size that would. Knows nothing of
images or files."""

from __future__ import annotations

import gc

import os
from dataclasses import dataclass

import torch

from nstvideo.errors import ModelError
from nstvideo.style.lbfgs import CHUNKS, LBFGS_HISTORY

GIB = 2 ** 30
MEMORY_SHARE = 0.9  # of the free GPU memory a run plans to use: cuDNN workspaces need the rest
RAM_SHARE = 0.75  # of the available RAM a run plans to use by default: the OS, the decoder,
# the encoder and other programs need the rest (a laptop that swaps crawls)
# CPU: bytes per pixel of VGG-19's forward and backward pass to relu5_1 with the costs, the
# picture whole (measured 1.55 KB at 2048 px) and a tile's crop (3.9 KB at 4096 px: the
# owned slices' gradients and the Grams' operands are copies), fp32 and bf16 alike, with a
# margin (RESULTS.md "Any size")
CPU_ACTIVATION_PER_PX = 2000
CPU_TILE_ACTIVATION_PER_PX = 4400
REGION_SHARE = 0.17  # each masked region's guided copies of the style layers' activations,
# over VGG's pass (CPU, 1024 px: +0.13 GB for one region, +0.52 GB for two in two styles, of
# 1.57 GB: RESULTS.md "Where to paint")
# Image-sized float32 working tensors an optimization allocates besides the history (the
# content is allocated before it plans, and counted as the process's own: `budget`): the
# gradient, the step (kept in place of the point it left), the next pixels and gradient,
# the new pair before it is stored (made in place of the old ones; in bf16 with its fp32
# form), the preconditioner's temporaries, and the allocator's slack (measured peaks at
# 4096 px and at the 10800 x 7200 poster, 7 before the step took the point's place:
# RESULTS.md "Any size"). A finer level's hold on the level below (a quarter of an image,
# losses.level_loss) came later, within that slack (the poster peaked 2 GB under its plan)
WORKING_IMAGES = 6
CONTENT_FEATURE_PER_PX = 512 / 64  # relu4_2's floats per pixel, kept per tile when tiled
MIN_PAIRS = 10  # fewer curvature pairs than this and tiling comes first: 10 pairs reach a cost
# 0.5% above 100 pairs' after 300 iterations (RESULTS.md "Any size")
FLOOR_PAIRS = 2  # the least L-BFGS keeps before a size is refused (3 pairs lose 1.8% of the
# cost's level against 100 at 300 iterations; a print's top level runs a few dozen)
MIN_TILE = 256  # px: the smallest tile core; its crop is 416 px with relu5_1's 80 px halos
SMALL_TILE = 512  # px: below this the halos make a tile's VGG pass 1.7x its core's or more,
# which costs more time than keeping 2 pairs instead of 10 costs in the look


@dataclass(frozen=True)
class MemoryPlan:
    """How one optimization at a size runs within `budget` bytes."""

    tile: int | None  # core side of the tiles in px; None: the picture whole
    history: int  # L-BFGS curvature pairs kept
    history_dtype: torch.dtype  # what they are stored in
    peak: int  # estimated bytes at the peak
    budget: int
    keep: int = 1  # tiles whose VGG pass is kept from the Grams' pass to the gradient's

    def describe(self) -> str:
        how = "whole" if self.tile is None else f"in {self.tile} px tiles"
        kind = "bf16" if self.history_dtype == torch.bfloat16 else "fp32"
        return (f"{how}, {self.history} L-BFGS pairs in {kind}, about "
                f"{self.peak / GIB:.1f} of {self.budget / GIB:.1f} GiB")


def activation_bytes(hw: tuple[int, int], layers: tuple[str, ...], device: torch.device,
                     tile: bool = False) -> int:
    """VGG-19's forward and backward pass at size hw (`tile`: a tile's crop), kept for the
    gradient: on the CPU as measured; on a GPU every layer's output, its copy and its
    gradient in fp32 (cuDNN and the caching allocator keep more than the CPU's allocator)."""
    if device.type == "cpu":
        return (CPU_TILE_ACTIVATION_PER_PX if tile else CPU_ACTIVATION_PER_PX) * hw[0] * hw[1]
    from nstvideo.style.vgg import LAYER_NAMES, layer_channels

    h, w = hw
    deepest = max(LAYER_NAMES.index(n) for n in layers)
    total = 0
    for name in LAYER_NAMES[: deepest + 1]:
        block = int(name[4])
        scale = 2 ** (block - (0 if name.startswith("pool") else 1))
        total += layer_channels(name) * (h // scale) * (w // scale)
    return 4 * 3 * total


def estimate_bytes(hw: tuple[int, int], layers: tuple[str, ...], device: torch.device,
                   history: int = LBFGS_HISTORY, batch: int = 1) -> int:
    """One untiled optimization at size hw with `history` fp32 pairs: VGG's pass plus the
    image-sized working tensors and the pairs."""
    image = 4 * 3 * hw[0] * hw[1] * batch
    return activation_bytes(hw, layers, device) * batch + (WORKING_IMAGES + 2 * history) * image


def default_budget(device: torch.device) -> int:
    """The memory a run plans to use when --max-memory is not given: a share of the free GPU
    memory on CUDA, else of the RAM available now (Linux's MemAvailable; elsewhere the free
    physical pages)."""
    if device.type == "cuda":
        return int(MEMORY_SHARE * free_bytes(device))
    return int(RAM_SHARE * available_ram())


def budget(max_memory: float | None, device: torch.device) -> int:
    """Bytes one optimization may use: the default, or what `max_memory` GB (--max-memory:
    the whole process, as the OS counts it) leaves beside what the process holds already on
    the CPU (PyTorch, VGG, the decoder: 0.8 GB at rest)."""
    if max_memory is None:
        return default_budget(device)
    return int(max_memory * GIB) - (resident_bytes() if device.type == "cpu" else 0)


def resident_bytes() -> int:
    """This process's resident memory now (Linux); 0 where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # Windows, macOS without the name
        return 8 * GIB


def free_bytes(device: torch.device) -> int:
    """Memory a new frame can use on a CUDA `device`: the driver's free memory plus what
    PyTorch's caching allocator already holds but does not use (freed by the previous
    frame)."""
    free = torch.cuda.mem_get_info(device)[0]
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def plan(hw: tuple[int, int], layers: tuple[str, ...], device: torch.device, budget: int,
         *, batch: int = 1, tile: int | None = None, temporal: bool = False,
         bf16: bool = False, regions: int = 0) -> MemoryPlan:
    """How to optimize a (batch of) picture(s) of size hw within `budget` bytes.

    The picture whole with LBFGS_HISTORY fp32 pairs where that fits (the run as before);
    else whole with fewer pairs (down to MIN_PAIRS, fp32 then bf16); else in the largest
    tiles that leave room for MIN_PAIRS (then FLOOR_PAIRS); `tile` forces tiles of that
    size. Refuses (ModelError, one line) what does not fit in MIN_TILE tiles. `bf16`: VGG
    computes in bf16 (the tiles' content features are kept in bf16 too). `regions`: masked
    regions painted (nstvideo.style.regions), each REGION_SHARE more of VGG's pass."""
    chosen = _choose(hw, layers, device, budget, batch, tile, temporal, bf16, regions)
    if chosen is not None:
        return chosen
    if _choose((16, 16), layers, device, budget, batch, None, False) is None:
        raise ModelError(f"{max(budget, 0) / GIB:.1f} GiB left of the memory budget is too "
                         "little to paint anything (PyTorch and VGG-19 take about 0.8 GB): "
                         "give a larger --max-memory")
    if tile is not None:
        raise ModelError(f"--tile {tile} does not fit a {hw[1]}x{hw[0]} picture in "
                         f"{budget / GIB:.1f} GiB: use a smaller --tile or a larger "
                         "--max-memory")
    raise ModelError(f"a {hw[1]}x{hw[0]} picture needs more than {budget / GIB:.1f} GiB of "
                     f"memory on {device} even in tiles: use --size "
                     f"{size_that_fits(hw, layers, device, budget, batch)} or less, or a "
                     "larger --max-memory")


def _choose(hw, layers, device, budget, batch, tile, temporal,
            bf16=False, regions=0) -> MemoryPlan | None:
    image = 4 * 3 * hw[0] * hw[1] * batch
    fixed = (WORKING_IMAGES + (2 if temporal else 0) + regions) * image  # (masks: a third)
    grow = 1 + REGION_SHARE * regions

    def pairs(room: int, least: int) -> tuple[int, torch.dtype] | None:
        for dtype in (torch.float32, torch.bfloat16):
            n = min(LBFGS_HISTORY, room // _pair_bytes(dtype, image))
            if n >= least:
                return n, dtype
        return None

    if tile is None:
        room = budget - fixed - int(activation_bytes(hw, layers, device) * batch * grow)
        got = pairs(room, MIN_PAIRS)
        if got:
            return MemoryPlan(None, *got, _peak(budget, room, got, image), budget)
    from nstvideo.style.tiled import grid, halo, split

    g, reach = grid(layers), halo(layers)
    cache = int((2 if bf16 else 4) * CONTENT_FEATURE_PER_PX * hw[0] * hw[1] * batch)
    sides = [tile] if tile is not None else \
        range(max(hw) // g * g, MIN_TILE - 1, -g)
    for least in ((FLOOR_PAIRS,) if tile is not None else (MIN_PAIRS, FLOOR_PAIRS)):
        for side in sides:
            if least > FLOOR_PAIRS and side < SMALL_TILE:
                break  # fewer pairs before tiles this small
            crop = (min(hw[0], side + 2 * reach), min(hw[1], side + 2 * reach))
            one = int(activation_bytes(crop, layers, device, tile=True) * batch * grow)
            room = budget - fixed - cache - one
            got = pairs(room, least)
            if got:
                return _spend(budget, room, got, image, one, len(split(hw, side, layers)),
                              side)
    return None


def _spend(budget, room, got, image, one, tiles, side) -> MemoryPlan:
    """A tiled plan's spare room, after `least` pairs: first on keeping tiles' VGG passes
    between the Grams' pass and the gradient's (each one kept saves a forward pass, a
    quarter of an evaluation's time for that tile), then on more pairs (90 more lose 0.5%
    of the cost's fall at 300 iterations: RESULTS.md "Any size")."""
    n, dtype = got
    size = _pair_bytes(dtype, image)
    least = min(n, MIN_PAIRS)
    spare = room - least * size
    keep = 1 + min(tiles - 1, spare // one)
    spare -= (keep - 1) * one
    n = min(LBFGS_HISTORY, least + spare // size)
    return MemoryPlan(side, n, dtype, budget - room + n * size + (keep - 1) * one, budget, keep)


def _peak(budget: int, room: int, got: tuple[int, torch.dtype], image: int) -> int:
    n, dtype = got
    return budget - room + n * _pair_bytes(dtype, image)


def _pair_bytes(dtype: torch.dtype, image: int) -> int:
    """One curvature pair (s, y) of an `image`-byte fp32 picture, stored in `dtype` (bf16:
    with its share of the fp32 piece L-BFGS reads the pairs in, lbfgs.CHUNKS)."""
    return 2 * image if dtype == torch.float32 else image + image // CHUNKS


def size_that_fits(hw: tuple[int, int], layers: tuple[str, ...], device: torch.device,
                   budget: int, batch: int = 1) -> int:
    """The largest --size (a multiple of 16, at least 16) at which a picture of hw's aspect
    fits in `budget` bytes (in tiles where need be)."""
    lo, hi = 1, max(hw) // 16
    while lo < hi:  # the largest k whose 16·k fits
        k = (lo + hi + 1) // 2
        s = 16 * k / max(hw)
        size = (max(1, round(hw[0] * s)), max(1, round(hw[1] * s)))
        if _choose(size, layers, device, budget, batch, None, False) is not None:
            lo = k
        else:
            hi = k - 1
    return 16 * lo


def release(device: torch.device) -> None:
    """Give back to the device what this process's allocator keeps of tensors now gone (CUDA
    caches freed blocks for reuse: memory another process, or a size estimate, cannot have)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def out_of_memory(device: torch.device, hw: tuple[int, int], layers: tuple[str, ...],
                  batch: int = 1) -> ModelError:
    """The error for a torch.cuda.OutOfMemoryError met anyway (another process took memory,
    or the estimate was short): one line naming a --max-memory and --size that would fit.
    Call it once the failed run's tensors are gone (outside the `except` block, whose
    traceback holds them), so that what is free is measured without them."""
    hint = "use a smaller --size or --max-memory"
    if device.type == "cuda":
        release(device)
        room = int(0.7 * free_bytes(device))  # the estimate fell short here: leave a margin
        hint = (f"use --max-memory {room / GIB:.1f} (tiles) or --size "
                f"{size_that_fits(hw, layers, device, room, batch)} or less")
    if batch > 1:
        hint += " or --batch 1"
    return ModelError(f"{device} ran out of memory on a {hw[1]}x{hw[0]} frame: {hint} (or free "
                      "the GPU of other programs)")
