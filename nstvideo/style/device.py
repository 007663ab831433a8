"""Device and precision policy: which device a run uses, whether it computes in bf16, and
repeatable (deterministic) runs (memory: nstvideo.style.memory). Knows nothing of images
or files."""

from __future__ import annotations

import contextlib
import os
import warnings

import torch

from nstvideo.errors import ModelError


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


def configure(device: torch.device, seed: int | None, tune: bool = False) -> None:
    """Backend settings for a run on `device`. With a seed, repeatable on one GPU: deterministic
    algorithms (cuBLAS needs its workspace fixed before its first use) and no cuDNN
    autotuning, at some speed; without one, cuDNN picks the fastest kernels, timing them
    for each new shape where `tune` (a video: one frame size, thousands of frames; not a
    folder of photos of many sizes, each re-timed at each of its coarse-to-fine levels).
    Convolutions may use TF32 (VGG's features lose nothing visible); matrix products may not:
    L-BFGS's curvature products and the Gram matrices keep fp32's 23-bit mantissas (TF32's 10
    would round the dot products that steer every step)."""
    if device.type != "cuda":  # the CPU's kernels are repeatable as they are
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True
    if seed is None:
        torch.backends.cudnn.benchmark = tune
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
