"""The keyframe method: which frames are painted by the optimizer (the first of each shot, then
every K frames or wherever new colours appear), and the network that learns their look
and paints every frame (nstvideo.net), trained so that an interrupted render continues.
Knows nothing of scheduling or encoding.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import torch

from nstvideo.errors import InputError
from nstvideo.media.writer import write_file
from nstvideo.net import NetShape, Trainer, Training, TranslationNet, net_bytes, paint
from nstvideo.style.vgg import VGGFeatures

# auto: a new keyframe once more than this share of a frame's pixels have colours the shot's
# keyframes do not show (the network learns local appearance: what it has not seen painted,
# it guesses), ...
KEY_NOVEL = 0.10
COLOUR_LEVELS = 16  # per channel: 4096 colour bins (after a 3x3 blur: noise is not new)
KNOWN_SHARE = 1e-4  # a colour is known once it covers this share of the keyframes' pixels
KEY_MIN_SECONDS = 1.0  # ... but not sooner than this after the last (fast motion)
KEY_MAX_SECONDS = 8.0  # and at least this often (slow drifts of shape the colours miss)
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1")  # the feature term's VGG-19 layers
SAVE_EVERY_S = 60.0  # training saves its state this often (a resume loses at most this)


class KeyframeChooser:
    """Sees the (small) frames of a clip in order with the shot cuts, and keeps the output
    positions of its keyframes: each shot's first frame, then every `every` frames (when
    given), else (auto) where more than KEY_NOVEL of the frame is colours the shot's
    keyframes so far do not show, KEY_MIN_SECONDS to KEY_MAX_SECONDS apart."""

    def __init__(self, every: int | None, fps: float):
        self.every, self.keys = every, []
        self.min_gap = max(1, round(KEY_MIN_SECONDS * fps))
        self.max_gap = max(self.min_gap, round(KEY_MAX_SECONDS * fps))
        self._seen = np.zeros(COLOUR_LEVELS ** 3, np.int64)  # colour counts of the keyframes

    def see(self, k: int, frame: np.ndarray, cut: bool) -> None:
        if cut or not self.keys:
            self._seen[:] = 0
            return self._take(k, frame)
        gap = k - self.keys[-1]
        if self.every is not None:
            if gap >= self.every:
                self._take(k, frame)
            return
        if gap < self.min_gap:
            return
        if gap >= self.max_gap or self.novelty(frame) > KEY_NOVEL:
            self._take(k, frame)

    def novelty(self, frame: np.ndarray) -> float:
        """The share of `frame`'s pixels whose colour the shot's keyframes do not show."""
        known = self._seen >= max(1.0, self._seen.sum() * KNOWN_SHARE)
        return float((~known[_colours(frame)]).mean())

    def _take(self, k: int, frame: np.ndarray) -> None:
        self.keys.append(k)
        self._seen += np.bincount(_colours(frame).ravel(), minlength=self._seen.size)


def _colours(frame: np.ndarray) -> np.ndarray:
    """(H, W) colour bin of each pixel of an RGB uint8 frame."""
    q = cv2.blur(frame[..., :3], (3, 3)).astype(np.int32) // (256 // COLOUR_LEVELS)
    return (q[..., 0] * COLOUR_LEVELS + q[..., 1]) * COLOUR_LEVELS + q[..., 2]


class NetTraining:
    """The keyframe network's training, fed keyframe by keyframe: `add` a painted keyframe,
    `train_to` a step count, `guess` a frame's painting from what is learned so far. With a
    `checkpoint` file, the state is saved there every SAVE_EVERY_S seconds, at the end of
    each `train_to` and when interrupted, and a new NetTraining continues from it."""

    def __init__(self, training: Training, seed: int | None, device: torch.device,
                 checkpoint: Path | None = None, info: dict | None = None,
                 weights: str = "caffe"):
        from nstvideo.net import load_net

        if seed is not None:
            torch.manual_seed(seed)
        self.net = TranslationNet(NetShape())
        features = None
        if training.perceptual:
            features = VGGFeatures(PERCEPTUAL_LAYERS, weights=weights).to(device)
        self.trainer = Trainer(self.net, [], training, seed, device, features)
        self.training, self.checkpoint, self.info = training, checkpoint, info
        self.seconds = 0.0
        if checkpoint is not None and checkpoint.is_file():
            saved, data = load_net(checkpoint, device)
            if "trainer" in data:
                self.net.load_state_dict(saved.state_dict())
                self.trainer.restore(data["trainer"])
        self.resumed = self.trainer.step

    def add(self, content: np.ndarray, painted: np.ndarray) -> None:
        self.trainer.add(content, painted)

    def guess(self, content: np.ndarray) -> np.ndarray:
        return paint(self.net, [content])[0]

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


def train_net(pairs: list[tuple[np.ndarray, np.ndarray]], training: Training, seed: int | None,
              device: torch.device, checkpoint: Path | None = None, info: dict | None = None,
              on_step=None) -> tuple[TranslationNet, dict]:
    """A network trained on (content, painted) keyframe pairs, all at once (resumable as
    NetTraining). Returns (net, report: steps, resumed, seconds, first and last loss)."""
    if not pairs:
        raise InputError("no keyframes to train the network on")
    t = NetTraining(training, seed, device, checkpoint, info)
    for c, s in pairs:
        t.add(c, s)
    t.train_to(training.steps, on_step, training.seconds)
    return t.net, t.report()
