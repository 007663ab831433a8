"""Device, precision and memory policy: which device a run uses, whether it computes in bf16,
how much memory a frame needs and whether it fits, repeatable (deterministic) runs, and what
to say when the GPU runs out of memory anyway. Knows nothing of images or files."""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from nstvideo.errors import ModelError
from nstvideo.style.optimize import LBFGS_HISTORY

MEMORY_SHARE = 0.9  # of the free memory a run plans to use: cuDNN workspaces need the rest


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple MPS, then the CPU; a named device ('cuda', 'cuda:1',
    'mps', 'cpu') must be available."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns when it finds no driver
        cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError) as e:
        raise ModelError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from e
    if dev.type == "cuda":
        if not cuda:
            raise ModelError(f"--device {name}: no CUDA GPU is available here: use --device cpu "
                             "or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ModelError(f"--device {name}: this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}: choose one of those")
        return torch.device("cuda", dev.index if dev.index is not None else
                            torch.cuda.current_device())
    if dev.type == "mps" and not mps:
        raise ModelError("--device mps: Apple's MPS is not available here: use --device cpu or auto")
    if dev.type not in ("cpu", "mps"):
        raise ModelError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps")
    return dev


def cpu_computes_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware, where oneDNN's bf16 convolutions beat
    fp32's: Intel AMX tiles (Xeons from Sapphire Rapids on; an iteration 3.3x faster at 384
    px) or AVX512-BF16's dot products (AMD Zen 4 and later, Cooper Lake; 2.0x at 384 px,
    1.7x at 128, RESULTS.md "Fast 7"). Other CPUs emulate bf16, slower than fp32."""
    probes = (getattr(torch.cpu, name, None)
              for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
    return any(bool(probe and probe()) for probe in probes)


def use_bf16(precision: str, device: torch.device) -> bool:
    """auto: bf16 convolutions where `device` computes bf16 natively (CUDA: Ampere and later;
    CPU: AMX or AVX512-BF16), else fp32. Emulated bf16 (older GPUs and CPUs) is slower than
    fp32, so it never counts."""
    if precision == "fp32":
        return False
    supported = False
    if device.type == "cuda":
        with torch.cuda.device(device):
            supported = torch.cuda.is_bf16_supported(including_emulation=False)
    elif device.type == "cpu":
        supported = cpu_computes_bf16()
    if precision == "bf16" and not supported:
        raise ModelError(f"--precision bf16 needs a device that computes bf16 natively (a CUDA "
                         f"GPU from Ampere on, or a CPU with AMX or AVX512-BF16); {device} "
                         "does not: use --precision fp32 or auto")
    return supported


def configure(device: torch.device, seed: int | None) -> None:
    """Backend settings for a run on `device`. With a seed, repeatable on one GPU: deterministic
    algorithms (cuBLAS needs its workspace fixed before its first use) and no cuDNN
    autotuning, at some speed; without one, cuDNN picks the fastest kernels."""
    if device.type != "cuda":  # the CPU's kernels are repeatable as they are
        return
    torch.backends.cuda.matmul.allow_tf32 = True  # Grams: TF32 is ample here
    torch.backends.cudnn.allow_tf32 = True
    if seed is None:
        torch.backends.cudnn.benchmark = True  # VGG's shapes repeat every iteration
        torch.backends.cudnn.deterministic = False
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run the block with `n` intra-op threads (None: as they are), as before afterwards. On
    some CPUs the thread count changes a result's floats: a render that must repeat fixes it
    (nstvideo.video.plan.unit_threads)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def free_bytes(device: torch.device) -> int:
    """Memory a new frame can use on `device`: the driver's free memory plus what PyTorch's
    caching allocator already holds but does not use (freed by the previous frame)."""
    free = torch.cuda.mem_get_info(device)[0]
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def estimate_bytes(hw: tuple[int, int], layers: tuple[str, ...], history: int = LBFGS_HISTORY) -> int:
    """Rough device memory one optimization needs at size hw: VGG activations up to the deepest
    layer, kept for the backward pass and their gradients (x3, fp32), plus L-BFGS's history
    (2 x `history` images) and a few working images."""
    from nstvideo.style.vgg import LAYER_NAMES, layer_channels

    h, w = hw
    deepest = max(LAYER_NAMES.index(n) for n in layers)
    total = 0
    for name in LAYER_NAMES[: deepest + 1]:
        block = int(name[4])
        scale = 2 ** (block - (0 if name.startswith("pool") else 1))
        total += layer_channels(name) * (h // scale) * (w // scale)
    return 4 * (3 * total + (2 * history + 8) * 3 * h * w)


def size_that_fits(hw: tuple[int, int], layers: tuple[str, ...], available: float) -> int:
    """The largest --size (multiple of 16) whose frames need at most `available` bytes."""
    return int(max(hw) * (MEMORY_SHARE * available / estimate_bytes(hw, layers)) ** 0.5) // 16 * 16


def check_fits(device: torch.device, hw: tuple[int, int], layers: tuple[str, ...],
               free: int | None = None, batch: int = 1) -> None:
    """On CUDA, refuse before starting a size that would not fit in free memory, naming the
    largest longest side that would (memory grows with the pixel count)."""
    if free is None:
        if device.type != "cuda":
            return
        free = free_bytes(device)
    one = estimate_bytes(hw, layers)
    if batch > 1 and batch * one > MEMORY_SHARE * free >= one:
        raise ModelError(f"a batch of {batch} {hw[1]}x{hw[0]} images needs about "
                         f"{batch * one / 2**30:.1f} GiB on {device} but {free / 2**30:.1f} "
                         f"GiB are free: use --batch {int(MEMORY_SHARE * free // one)} or less")
    if one > MEMORY_SHARE * free:
        raise ModelError(f"a {hw[1]}x{hw[0]} frame needs about {one / 2**30:.1f} GiB on {device} "
                         f"but {free / 2**30:.1f} GiB are free: use --size "
                         f"{size_that_fits(hw, layers, free)} or less")


def out_of_memory(device: torch.device, hw: tuple[int, int], layers: tuple[str, ...],
                  batch: int = 1) -> ModelError:
    """The error for a torch.cuda.OutOfMemoryError met anyway (another process took memory,
    or the estimate was short): one line naming a --size that fits the whole device."""
    room = 0.0
    if device.type == "cuda":
        torch.cuda.empty_cache()
        room = 0.7 * free_bytes(device)  # the estimate fell short here: leave a margin
    fit = max(16, size_that_fits(hw, layers, room / max(1, batch))) if room else None
    hint = f"use --size {fit} or less" if fit else "use a smaller --size"
    if batch > 1:
        hint += " or --batch 1"
    return ModelError(f"{device} ran out of memory on a {hw[1]}x{hw[0]} frame: {hint} (or free "
                      "the GPU of other programs)")
