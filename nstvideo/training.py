"""Training the keyframe method's network (nstvideo.net) on (content, painted) pairs, so that
an interrupted training continues where it stopped; callable without a video:

    net, report = train_net([(content, painted), ...], Training(steps=850), seed=0, device="cpu")
    frames = paint(net, [frame, ...])

Knows nothing of videos, plans or scheduling.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from nstvideo.errors import InputError
from nstvideo.media.writer import write_file
from nstvideo.net import (NetShape, Trainer, Training, TranslationNet, load_net, net_bytes,
                          paint, paint_tensor)
from nstvideo.style.device import resolve_device, use_bf16
from nstvideo.style.vgg import VGGFeatures

PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1")  # the feature term's VGG-19 layers
SAVE_EVERY_S = 60.0  # training saves its state this often (a resume loses at most this)


class NetTraining:
    """The keyframe network's training, fed keyframe by keyframe: `add` a painted keyframe,
    `train_to` a step count, `guess` a frame's painting from what is learned so far. With a
    `checkpoint` file, the state is saved there every SAVE_EVERY_S seconds, at the end of
    each `train_to` and when interrupted, and a new NetTraining continues from it."""

    def __init__(self, training: Training, seed: int | None, device: torch.device,
                 checkpoint: Path | None = None, info: dict | None = None,
                 weights: str = "caffe", precision: str = "auto"):
        if seed is not None:
            torch.manual_seed(seed)
        self.net = TranslationNet(NetShape())
        features = None
        if training.perceptual:
            # the feature term's VGG in bf16 where the device computes it natively, as the
            # optimizer's (the net itself stays fp32: its loss suffered in bf16)
            features = VGGFeatures(PERCEPTUAL_LAYERS, weights=weights).compute_on(
                device, use_bf16(precision, device))
        self.trainer = Trainer(self.net, [], training, seed, device, features)
        self.training, self.checkpoint, self.info = training, checkpoint, info
        self.seconds = 0.0
        if checkpoint is not None and checkpoint.is_file():
            saved, data = load_net(checkpoint, device)
            if "trainer" in data:
                self.net.load_state_dict(saved.state_dict())
                self.trainer.restore(data["trainer"])
        self.resumed = self.trainer.step

    def add(self, content: np.ndarray, painted: np.ndarray,
            weight: np.ndarray | None = None) -> None:
        self.trainer.add(content, painted, weight)

    def guess(self, content: np.ndarray) -> torch.Tensor:
        """What the network paints `content` as so far: (1, 3, H, W) on its device."""
        return paint_tensor(self.net, [content])

    def train_to(self, steps: int, on_step=None, seconds: float | None = None) -> None:
        last_save, t0, start = time.perf_counter(), time.perf_counter(), self.trainer.step

        def step(i):
            nonlocal last_save
            if self.checkpoint is not None and time.perf_counter() - last_save > SAVE_EVERY_S:
                self.save()
                last_save = time.perf_counter()
            if on_step is not None:
                on_step(i)

        try:
            self.trainer.run(steps, on_step=step, seconds=seconds)
        finally:  # finished, or interrupted: what was learned is kept for the next run
            self.seconds += time.perf_counter() - t0
            if self.checkpoint is not None and self.trainer.step > start:
                self.save()

    def save(self) -> None:
        write_file(self.checkpoint, net_bytes(self.net, self.info, self.trainer), durable=True)

    def report(self) -> dict:
        losses = self.trainer.losses
        return {"steps": self.trainer.step, "resumed": self.resumed, "seconds": self.seconds,
                "first_loss": float(np.mean(losses[:20])) if losses else float("nan"),
                "last_loss": float(np.mean(losses[-20:])) if losses else float("nan")}


def train_net(pairs: list[tuple[np.ndarray, np.ndarray]], training: Training = Training(),
              seed: int | None = None, device: torch.device | str = "auto",
              checkpoint: Path | None = None, info: dict | None = None, on_step=None,
              weights: str = "caffe", precision: str = "auto") -> tuple[TranslationNet, dict]:
    """A network trained on (content, painted) pairs of RGB uint8 frames, all at once
    (resumable as NetTraining, with a `checkpoint` file). Paint frames with it with
    `nstvideo.net.paint`. Returns (net, report: steps, resumed, seconds, first and last
    loss)."""
    if not pairs:
        raise InputError("no keyframes to train the network on")
    device = resolve_device(device) if isinstance(device, str) else device
    t = NetTraining(training, seed, device, checkpoint, info, weights, precision)
    for c, s in pairs:
        t.add(c, s)
    t.train_to(training.steps, on_step, training.seconds)
    return t.net, t.report()
