"""The keyframe method's image-to-image network: a small U-Net-like appearance translation
network (after Texler et al. 2020, "Interactive Video Stylization Using Few-Shot Patch-Based
Training") trained from scratch on random patches of (content keyframe, stylized keyframe)
pairs, then applied to whole frames in batches. Also its file format (save, load with
`weights_only`). Knows nothing of videos, keyframe choice or scheduling.
"""

from __future__ import annotations

import io
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nstvideo.errors import InputError, ModelError
from nstvideo.media.writer import write_file
from nstvideo.settings import TRAIN_STEPS

NET_FORMAT = "nstvideo-net"
NET_VERSION = 1
_OPTIM_IMPORT: list[threading.Thread] = []  # import_optimizer_early's thread, once started


def import_optimizer_early() -> None:
    """Start importing what a process's first torch.optim optimizer imports (torch._dynamo:
    about a second of one core here) in a thread, for a process that will train the network
    only after other work (a preview trains after painting its frames): the import is then
    done beside that work, not on its own. Trainer waits for it before making its optimizer."""
    if not _OPTIM_IMPORT and "torch._dynamo" not in sys.modules:
        thread = threading.Thread(target=__import__, args=("torch._dynamo",), daemon=True)
        _OPTIM_IMPORT.append(thread)
        thread.start()


@dataclass(frozen=True)
class NetShape:
    """The network's architecture (saved with its weights)."""

    width: int = 16  # channels at full resolution; x2 at each level down
    levels: int = 3  # stride-2 downsamplings (receptive field and cost grow with these)
    blocks: int = 2  # residual blocks at the coarsest level


@dataclass(frozen=True)
class Training:
    """How the network learns the keyframes' look."""

    steps: int = TRAIN_STEPS  # Adam steps: on 2 CPU cores 0.14 s each, 0.39 s with the
                              # feature term (benchmarks/keyframes.py)
    seconds: float | None = None  # stop earlier when this much time has passed
    patch: int = 64  # px: side of the random training patches
    batch: int = 16  # patches per step
    learning_rate: float = 1e-3
    noise: float = 0.02  # std of the noise added to the input patches (0-1 scale): the net
                         # must not copy sensor noise into strokes, frame by frame (flicker)
    perceptual: float = 0.0  # weight of a feature term (L1 between VGG features of the
                             # network's patch and the painted one, Texler et al.): sharper
                             # strokes, ~3x a step's cost on a CPU; 0: pixel L1 only


# The layers are built from slices, concatenations and convolutions only: each has a
# deterministic backward on CUDA, so a seeded training repeats there (reflection padding's and
# bilinear upsampling's own CUDA backward kernels add with atomics, in no fixed order; torch
# only warns of them). The same sums as F.pad(mode="reflect") and F.interpolate(bilinear,
# align_corners=False) at 2x (tests/test_keyframes.py).

def reflect1(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) reflect-padded by one pixel on each side, as F.pad(x, (1,)*4, 'reflect')."""
    x = torch.cat([x[:, :, 1:2], x, x[:, :, -2:-1]], dim=2)
    return torch.cat([x[..., 1:2], x, x[..., -2:-1]], dim=3)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """x (B, C, H, W) -> (B, C, 2H, 2W), bilinear, as F.interpolate(x, scale_factor=2,
    mode='bilinear', align_corners=False): each output pixel 3/4 of its source pixel and
    1/4 of the neighbour on its side (the edge pixel itself at the border)."""
    for dim in (2, 3):
        n = x.shape[dim]
        before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim=dim)
        after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)
        x = torch.stack([0.25 * before + 0.75 * x, 0.75 * x + 0.25 * after],
                        dim=dim + 1).flatten(dim, dim + 1)
    return x


class _Conv(nn.Conv2d):
    """A 3x3 convolution of the reflect-padded input (weights as nn.Conv2d's: saved networks
    load as before)."""

    def __init__(self, a: int, b: int, stride: int = 1):
        super().__init__(a, b, 3, stride=stride, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(reflect1(x))


class _Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.a = _Conv(c, c)
        self.b = _Conv(c, c)

    def forward(self, x):
        return x + self.b(F.leaky_relu(self.a(x), 0.2))


class TranslationNet(nn.Module):
    """Content RGB (B, 3, H, W) in pixels 0-255 -> stylized RGB, same size, 0-255.

    Encoder (a conv per level, stride 2 down), residual blocks at the coarsest level, decoder
    (bilinear up 2x, conv, skip connection from the encoder), sigmoid out; 3x3 convolutions
    of reflect-padded inputs. No normalization
    layers: it is trained on patches and applied to whole frames, and batch or instance
    statistics differ between the two."""

    def __init__(self, shape: NetShape = NetShape()):
        super().__init__()
        self.shape = shape
        w, act = shape.width, lambda: nn.LeakyReLU(0.2)
        conv = _Conv
        self.inp = nn.Sequential(conv(3, w), act(), conv(w, w), act())
        self.down = nn.ModuleList(nn.Sequential(conv(w << i, w << (i + 1), 2), act())
                                  for i in range(shape.levels))
        c = w << shape.levels
        self.middle = nn.Sequential(*(_Block(c) for _ in range(shape.blocks)))
        self.up = nn.ModuleList(nn.Sequential(conv(w << (i + 1), w << i), act())
                                for i in reversed(range(shape.levels)))
        self.merge = nn.ModuleList(nn.Sequential(conv(w << (i + 1), w << i), act())
                                   for i in reversed(range(shape.levels)))
        self.out = _Conv(w, 3)

    @property
    def multiple(self) -> int:
        return 1 << self.shape.levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        m = self.multiple
        ph, pw = (-h) % m, (-w) % m  # any size: reflect-padded to a multiple, cropped after
        x = F.pad(x / 127.5 - 1.0, (0, pw, 0, ph), mode="reflect") if ph or pw else x / 127.5 - 1
        skips = [self.inp(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        y = self.middle(skips.pop())
        for up, merge in zip(self.up, self.merge):
            skip = skips.pop()
            y = up(upsample2(y))  # (the encoder halves sizes exactly: a multiple is padded)
            y = merge(torch.cat([y, skip], dim=1))
        return (torch.sigmoid(self.out(y)) * 255.0)[:, :, :h, :w]


def _batch_tensor(frames: list[np.ndarray], device, as_float: bool = True) -> torch.Tensor:
    """RGB uint8 frames (H, W, 3) -> (B, 3, H, W) on `device`, float pixels (or uint8)."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(frames)[..., :3])).to(device)
    x = x.permute(0, 3, 1, 2)
    return x.float() if as_float else x


def _l1(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    """Mean absolute difference, each position weighed by `w` (B, 1, H, W) in 0-1, pooled to
    a's size (None: plain)."""
    if w is None:
        return F.l1_loss(a, b)
    if w.shape[2:] != a.shape[2:]:
        w = F.adaptive_avg_pool2d(w, a.shape[2:])
    return ((a - b).abs() * w).sum() / (w.sum() * a.shape[1]).clamp_min(1.0)


class Trainer:
    """Trains a net on (content, stylized) keyframe pairs (RGB uint8, same size per pair) by
    L1 on random patches; can stop and continue (`state`/`restore`)."""

    def __init__(self, net: TranslationNet, pairs: list[tuple[np.ndarray, np.ndarray]],
                 training: Training = Training(), seed: int | None = None,
                 device: torch.device | str = "cpu", features=None):
        self.net, self.training, self.device = net.to(device), training, torch.device(device)
        self.pairs: list[tuple] = []  # (content, painted, weight or None), uint8
        for c, s in pairs:
            self.add(c, s)
        for thread in _OPTIM_IMPORT:
            thread.join()
        self.opt = torch.optim.Adam(net.parameters(), lr=training.learning_rate)
        self.features = features  # rgb255 (B, 3, H, W) -> {layer: features}, for `perceptual`
        self.step = 0
        self._losses: list = []  # per step: a tensor until read (no device sync a step)
        self.rng = np.random.default_rng(seed)
        self.noise = self._generator()

    def add(self, content: np.ndarray, painted: np.ndarray,
            weight: np.ndarray | None = None) -> None:
        """One more (content, painted) pair to learn from; `weight` (H, W) in 0-1: how much
        each pixel counts (a masked keyframe: where it was painted; None: every pixel)."""
        # kept as uint8 (a quarter of float32's memory: many keyframes of a long film)
        w = None if weight is None else torch.from_numpy(
            np.round(np.clip(weight, 0, 1) * 255).astype(np.uint8))[None].to(self.device)
        self.pairs.append((_batch_tensor([content], self.device, False)[0],
                           _batch_tensor([painted], self.device, False)[0], w))

    def _patches(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        t = self.training
        xs, ys, ws = [], [], []
        for i in self.rng.integers(len(self.pairs), size=t.batch):
            c, s, m = self.pairs[i]
            h, w = c.shape[1:]
            p = min(t.patch, h, w)
            y0, x0 = int(self.rng.integers(h - p + 1)), int(self.rng.integers(w - p + 1))
            xs.append(c[:, y0:y0 + p, x0:x0 + p])
            ys.append(s[:, y0:y0 + p, x0:x0 + p])
            ws.append(None if m is None else m[:, y0:y0 + p, x0:x0 + p])
        x, y = torch.stack(xs).float(), torch.stack(ys).float()
        weights = None if all(m is None for m in ws) else torch.stack([
            torch.full_like(c[:1], 255) if m is None else m
            for m, c in zip(ws, xs)]).float() / 255
        if t.noise:
            x = x + torch.randn(x.shape, generator=self.noise, device=x.device,
                                dtype=x.dtype) * (255.0 * t.noise)  # drawn where it is used
        return x, y, weights

    def run(self, steps: int | None = None, on_step=None, seconds: float | None = None) -> float:
        """Train up to `steps` in total (the training's own by default) or until `seconds`
        have passed; returns the mean L1 (0-255) of the last steps."""
        if not self.pairs:
            raise InputError("no keyframes to train the network on")
        steps = self.training.steps if steps is None else steps
        seconds = self.training.seconds if seconds is None else seconds
        t0 = time.perf_counter()
        self.net.train()
        while self.step < steps:
            if seconds is not None and time.perf_counter() - t0 >= seconds:
                break
            x, y, w = self._patches()
            out = self.net(x)
            loss = _l1(out, y, w)
            if self.training.perceptual and self.features is not None:
                fo, fy = self.features(out), self.features(y)
                loss = loss + self.training.perceptual * sum(
                    _l1(fo[n], fy[n].detach(), w) for n in fo)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1
            self._losses.append(loss.detach())
            if on_step is not None:
                on_step(self.step)
        self.net.eval()
        return float(np.mean(self.losses[-20:])) if self._losses else float("nan")

    @property
    def losses(self) -> list[float]:
        """The training loss of every step so far."""
        self._losses = [float(v) for v in self._losses]
        return self._losses

    def _generator(self) -> torch.Generator:
        """The input noise's generator, on the training's device (no copy to it a step),
        seeded from the run's seeded draws."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(self.rng.integers(2 ** 62)))
        return gen

    def state(self) -> dict:
        return {"step": self.step, "optimizer": self.opt.state_dict(),
                "rng": self.rng.bit_generator.state, "noise": self.noise.get_state(),
                "noise_device": self.device.type, "losses": self.losses}

    def restore(self, state: dict) -> None:
        self.step = int(state["step"])
        self.opt.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        if state.get("noise_device", "cpu") == self.device.type:
            self.noise.set_state(state["noise"])
        else:  # a training resumed on another kind of device: its noise drawn afresh
            self.noise = self._generator()
        self._losses = [float(v) for v in state["losses"]]


@torch.no_grad()
def paint_tensor(net: TranslationNet, frames: list[np.ndarray]) -> torch.Tensor:
    """Stylize frames (RGB uint8, one size) in one batch: (B, 3, H, W) float pixels, rounded,
    on the network's device (where a start for the optimizer is wanted). A device out of
    memory is one line saying what to do."""
    device = next(net.parameters()).device
    net.eval()
    try:
        return net(_batch_tensor(frames, device)).clamp_(0, 255).round_()
    except torch.cuda.OutOfMemoryError:
        pass  # (the batch's activations freed with the exception, before the advice)
    h, w = frames[0].shape[:2]
    raise ModelError(f"{device} ran out of memory painting {len(frames)} frame(s) of {w}x{h} "
                     "with the network: free the GPU of other programs, or use a smaller "
                     "--size or --max-memory")


def paint(net: TranslationNet, frames: list[np.ndarray], device=None) -> list[np.ndarray]:
    """Stylize frames (RGB uint8, one size) in one batch; RGB uint8 out (on the host)."""
    if device is not None:
        net = net.to(device)
    return list(paint_tensor(net, frames).byte().permute(0, 2, 3, 1).cpu().numpy())


PAINT_BYTES_PER_PX = 800  # the network's activations painting a frame (without gradients),
# at its default width, with room to spare: ~200 floats a pixel
CPU_PAINT_PIXELS = 1e6  # a CPU paints ~1 megapixel a batch (larger ones gain nothing)


def batch_size(hw: tuple[int, int], device: torch.device, budget: int | None = None) -> int:
    """Frames per inference batch: ~1 megapixel on a CPU; on a GPU as many as its memory
    budget holds (`budget` bytes; default: nstvideo.style.memory's share of what is free),
    at least one."""
    pixels = hw[0] * hw[1]
    if torch.device(device).type != "cuda":
        return max(1, int(CPU_PAINT_PIXELS // pixels))
    from nstvideo.style.memory import default_budget

    room = default_budget(torch.device(device)) if budget is None else budget
    return max(1, int(room // (PAINT_BYTES_PER_PX * pixels)))


def net_bytes(net: TranslationNet, info: dict | None = None,
              trainer: Trainer | None = None) -> bytes:
    """The network as a file: format, shape, weights, what it was trained on (`info`) and,
    while training is unfinished, the trainer's state."""
    data = {"format": NET_FORMAT, "version": NET_VERSION, "shape": asdict(net.shape),
            "weights": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "info": info or {}}
    if trainer is not None:
        data["trainer"] = trainer.state()
    buf = io.BytesIO()
    torch.save(data, buf)
    return buf.getvalue()


def save_net(path: Path, net: TranslationNet, info: dict | None = None,
             trainer: Trainer | None = None, durable: bool = False) -> None:
    write_file(Path(path), net_bytes(net, info, trainer), durable=durable)


def load_net(path: Path, device: torch.device | str = "cpu") -> tuple[TranslationNet, dict]:
    """A network saved by `save_net` (weights_only: a file cannot run code) -> (net, data);
    anything else is refused in one line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--net {path}: no such file: give a network saved with --save-net")
    return net_from_bytes(path.read_bytes(), device, f"--net {path}")


def net_from_bytes(data: bytes, device: torch.device | str = "cpu",
                   what: str = "the network") -> tuple[TranslationNet, dict]:
    try:
        with warnings.catch_warnings():  # torch's own notes on a foreign pickle: ours is one line
            warnings.simplefilter("ignore")
            saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise InputError(f"{what} is not a network saved by nstvideo (unreadable: "
                         f"{type(e).__name__}): give a file written by --save-net") from e
    if not isinstance(saved, dict) or saved.get("format") != NET_FORMAT:
        raise InputError(f"{what} is not a network saved by nstvideo: give a file written by "
                         "--save-net")
    if saved.get("version") != NET_VERSION:
        raise InputError(f"{what} was saved by another version of nstvideo (format "
                         f"{saved.get('version')}, this one reads {NET_VERSION}): train it again")
    try:
        net = TranslationNet(NetShape(**saved["shape"]))
        net.load_state_dict(saved["weights"])
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        raise InputError(f"{what} is damaged (its weights do not fit its shape): give a file "
                         "written by --save-net") from e
    return net.to(device).eval(), saved
