"""The methods that train a network, in a render (after Texler et al. 2020): the plan's
keyframes painted by the optimizer and a network trained on them (both resumable); then every
unit painted by that network (keyframes: PaintRunner), or each frame's start painted by it and
refined by a few optimizer iterations (fast: RefineRunner). The training itself is
nstvideo.training; the choice of keyframes is the plan's. Knows nothing of where units run.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from nstvideo.errors import RenderError
from nstvideo.media.writer import decode_frame
from nstvideo.net import (Training, batch_size, net_bytes, net_from_bytes, paint,
                          paint_tensor)
from nstvideo.settings import TRAIN_STEPS, StyleSettings, VideoSettings, loss_weights
from nstvideo.style.device import configure, resolve_device, torch_threads
from nstvideo.style.memory import budget
from nstvideo.style.stylizer import Stylizer
from nstvideo.style.vgg import LAYER_NAMES
from nstvideo.training import NetTraining
from nstvideo.video.background import prefetch
from nstvideo.video.frames import FrameRenderer, coverage, laid_over
from nstvideo.video.job import Job
from nstvideo.video.plan import Plan
from nstvideo.video.store import UnitStore
from nstvideo.video.unit import OptimizeRunner, UnitRunner


class _WithNet:
    """A runner that paints with the job's network (loaded once per process)."""

    _net = None

    @property
    def net(self):
        if self._net is None:
            configure(self.device, self.job.settings.seed, tune=True)
            self._net = net_from_bytes(self.job.net, self.device)[0]
        return self._net


class PaintRunner(_WithNet, UnitRunner):
    """The keyframe method's units: every frame painted by the job's network, in batches.
    Frames are independent: a resumed unit continues at its first missing frame."""

    chained = False

    def paint(self, unit, store, done, content, finished, report) -> None:
        frames = prefetch(content)
        n = batch_size(self.job.hw, self.device, budget(self.job.settings.max_memory,
                                                        self.device))
        while batch := list(itertools.islice(frames, n)):
            for (pos, frame), result in zip(batch, paint(self.net, [f for _, f in batch])):
                finished(pos - unit.begin, laid_over(frame, result, self.regions(pos)))


FAST_CONTENT_FACTOR = 1.5  # the refining's content weight over the one asked for: content
# cost 1.18x -> 1.09x the optimizer's at 384 px (style 1.57x -> 1.91x), 1.10x -> 1.01x at
# 128 px (1.64x -> 1.86x); 1.7 took the style past 2x at 384 px (RESULTS.md, "Fast 5")


def refine_settings(settings: StyleSettings) -> StyleSettings:
    """The fast method's refining leaves out the style layers deeper than the content layer
    (by default relu5_1): from a start already painted they carry under 1% of the style cost
    (benchmarks/warp_texture.py), and the convolutions only they need (conv4_3 to conv5_1)
    are about a fifth of VGG's work (unless that would leave no style layer). And it weighs
    the content FAST_CONTENT_FACTOR x the weight asked for: its start carries the painting's
    texture along the flow but not the fine detail that moves (RESULTS.md, "Fast 4"), which
    its few iterations rebuild only that much weighed up ("Fast 5")."""
    depth = LAYER_NAMES.index(settings.content_layer)
    kept = tuple((n, w) for n, w in settings.style_layers if LAYER_NAMES.index(n) <= depth)
    return replace(settings, style_layers=kept or settings.style_layers,
                   content_weight=loss_weights(settings)[0] * FAST_CONTENT_FACTOR)


class RefineRunner(_WithNet, OptimizeRunner):
    """The fast method's units: a chain as the optimize method's, a shot's first frame its
    keyframe as the optimizer painted it (with a mask clip, painted wherever the masks paint
    while it serves: refined from it by 3x `refine_iterations` where its own masks paint,
    and every keyframe carried along as the backdrop new pixels start from; else the
    network's painting refined by 3x `refine_iterations`), each later frame starting from
    the previous result warped along the flow (adaptive by default: bicubic where the flow
    moves far, as bilinear sampling blurs away the texture the style cost is made of,
    RESULTS.md "Fast 3"; bilinear where it jitters, as bicubic's sharpening then crawls,
    "Fast 4") where the flow carries it and from the network's painting (or the backdrop)
    where it does not (new or uncovered pixels), refined by
    `refine_iterations` of the optimizer with the temporal cost (by default at
    FAST_TEMPORAL_WEIGHT, VideoSettings.tau: "Fast 5"), plus up to 2x as many in proportion to
    its new pixels (FrameRenderer's by_new): the network gives the painting's colours and
    large shapes at once, the iterations, adding up along the chain, its brushwork."""

    @property
    def stylizer(self) -> Stylizer:
        if self._stylizer is None:
            self._stylizer = Stylizer(self.job.styles, refine_settings(self.job.settings),
                                      tune=True)
        return self._stylizer

    def renderer(self) -> FrameRenderer:
        """A chain whose frames get `refine_iterations`, its first frame 3x as many (unless it
        is a painted keyframe)."""
        v = self.job.video
        n = v.refine_iterations
        return FrameRenderer(self.stylizer, v.replace(iterations=n, iterations_first=3 * n),
                             full_first=True, by_new=True)

    def render(self, renderer, frame, compared, pos):
        guessed = []

        def guess():  # painted at most once a frame, only where asked
            if not guessed:
                guessed.append(paint_tensor(self.net, [frame]))  # kept on the device
            return guessed[0]

        key = self.job.painted.get(pos)
        painted, start, backdrop = None if key is None else decode_frame(key), guess, None
        if painted is not None and self.job.masks is not None and self.job.masks.moving:
            # painted where the masks paint while it serves (keyframe_regions): the chain's
            # first frame starts from it, refined where its own masks paint, and it is carried
            # along as the start of the pixels the masks come over
            painted, start, backdrop = None, lambda p=painted: p, painted
        return renderer.render(frame, self.job.init, compared=compared, guess=start,
                               fill=guess, painted=painted, regions=self.regions(pos),
                               backdrop=backdrop)


def keyframe_net(job: Job, plan: Plan, store: UnitStore, checkpoint: Path,
                 progress: bool = False) -> tuple[bytes, dict]:
    """The keyframe method's first two stages, both resumable: paint the plan's keyframes with
    the optimizer into `store`, and train the network on them (its state in `checkpoint`),
    with the job's threads. Returns (the network as file bytes, the training's report)."""
    with torch_threads(job.threads):
        contents = _keyframe_contents(job, plan.keys)
        device = resolve_device(job.settings.device)
        configure(device, job.settings.seed, tune=True)
        info = {"keyframes": len(contents), "size": list(job.hw), "styles": len(job.styles)}
        video = job.video
        steps = steps_for(video, plan.total, job.hw)
        training = net_training(job, steps, device, checkpoint, info)
        _paint_keyframes(job, plan, contents, store, training, progress)
        with tqdm(total=steps, initial=training.trainer.step, unit="step",
                  desc="training", disable=not progress, dynamic_ncols=True,
                  leave=False) as bar:
            train(training, video, 1.0, on_step=lambda i: bar.update(1))
        return net_bytes(training.net, info), training.report()


def net_training(job: Job, steps: int, device, checkpoint: Path | None = None,
                 info: dict | None = None) -> NetTraining:
    """The network's training for this job (`steps` of it), its state kept in `checkpoint`."""
    return NetTraining(Training(steps=steps, perceptual=job.video.train_perceptual),
                       job.settings.seed, device, checkpoint, info, job.settings.weights,
                       job.settings.precision)


def keyframe_regions(job: Job, keys: list[int], total: int):
    """Where each keyframe is painted (None: everywhere), one after the other: with a mask
    clip, where the masks paint in any of the frames it serves (up to the next keyframe, or
    `total`). The network learns a keyframe only where it was painted, and it paints the
    pixels a moving mask comes over (the fast method's start for them): painted over its own
    frame's mask alone, a band crossing the frame started them from a network that had never
    seen them painted, faint, and the refining built their texture up over the next frames
    (flicker 2.7x an unmasked render's; RESULTS.md, "Moving masks and the network")."""
    masks = job.masks
    if masks is None:
        yield from [None] * len(keys)
        return
    device = resolve_device(job.settings.device)
    if not masks.moving:
        still = masks.regions(masks.still(job.hw), job.hw, device)
        yield from [still] * len(keys)
        return
    cursor = masks.cursor(job.hw, 1)
    for k, stop in zip(keys, keys[1:] + [total]):
        union = None  # per region, the most any served frame paints each pixel
        for _, frames in cursor.take(k, max(stop, k + 1)):
            union = frames if union is None else [np.maximum(u, f)
                                                  for u, f in zip(union, frames)]
        yield masks.regions(union, job.hw, device)


def _keyframe_contents(job: Job, keys: list[int]) -> list[np.ndarray]:
    """The content of each keyframe at the processing size (frames between them are only
    grabbed, not decoded)."""
    contents: list[np.ndarray] = []
    next_key = lambda: keys[len(contents)]  # noqa: E731 - frames before it are only grabbed
    for k, frame, _ in job.source.frames(hw=job.hw, decode_from=next_key):
        if k == keys[len(contents)]:
            contents.append(frame)
            if len(contents) == len(keys):
                break
    if len(contents) < len(keys):
        raise RenderError(f"{job.source.path.name} ended before keyframe {len(contents)} "
                          "(changed since the render began?): check the file, then pass "
                          "--restart")
    return contents


FAST_TRAIN_SHARE = 0.25  # fast: the training's time against the refinement's (RESULTS.md,
# "Fast 2", "Fast 4", "Fast 5": at 384 px 339 steps gave the same costs as 678, 134 steps a
# style cost 1.88x the optimizer's against 1.78x)
FAST_TRAIN_STEPS = (50, 3000)  # ... within these bounds ("Fast 5", 128 px: 50 steps against
# 100 cost 3% of style cost for 9% of the time on cockatoo; 30 steps on a 36-frame clip 2%
# for 30% of the time)
PIXEL_COST = 0.53  # a refining iteration's time per pixel over a training step's (2 CPU
# cores with AMX, bf16, at 384 px: 0.154 s an iteration against 0.23 s a step; 1.34 before
# the style cost's closed-form gradient, "Fast 5")


def steps_for(video: VideoSettings, frames: int, hw: tuple[int, int],
              method: str | None = None) -> int:
    """The network's training steps: `train_steps` where given; the keyframe method's
    TRAIN_STEPS (its network paints every frame); for the fast method, whose network only
    fills in where the flow carries nothing, FAST_TRAIN_SHARE of the refinement's own time
    (frames x iterations x pixels x PIXEL_COST, against steps x batch x patch pixels; counted,
    not timed, so that a seeded render trains the same steps anywhere), so that the fixed
    cost scales with the clip: ~50 steps (the least) for 280 frames at 128 px, ~340 for 200
    at 384 px."""
    if video.train_steps is not None:
        return video.train_steps
    if (method or video.method) != "fast":
        return TRAIN_STEPS
    t = Training()
    work = frames * video.refine_iterations * hw[0] * hw[1] * PIXEL_COST
    lo, hi = FAST_TRAIN_STEPS
    return int(min(hi, max(lo, round(FAST_TRAIN_SHARE * work / (t.batch * t.patch ** 2)))))


def train(training: NetTraining, video, share: float, on_step=None) -> None:
    """Train to this share of the steps (and of --train-seconds)."""
    secs = video.train_seconds
    training.train_to(round(training.training.steps * share), on_step,
                      None if secs is None else max(0.0, secs * share - training.seconds))


def keyframe_stylizer(job: Job) -> Stylizer:
    """The optimizer that paints keyframes: plain L-BFGS (no preconditioner): the network fits
    keyframes painted with one worse (RESULTS.md, "Fast 6")."""
    return Stylizer(job.styles, job.settings, precondition=None, tune=True)


def _paint_keyframes(job: Job, plan: Plan, contents: list[np.ndarray], store: UnitStore,
                     training: NetTraining, progress: bool) -> None:
    """Each shot's keyframes are one chain (each from the last one warped along the flow,
    where the flow can carry it); where it cannot (the first of a shot, or one too far from
    the last), a keyframe starts from the network's guess, trained on the keyframes before it
    for its share of the steps, so that it needs the later frames' budget, not the first
    frame's, and paints in the strokes the earlier ones set. Each is fed to the training.
    Painted with plain L-BFGS (no preconditioner): the network fits keyframes painted with
    one worse (RESULTS.md, "Fast 6")."""
    keys, done, n = plan.keys, store.open(), len(contents)
    with tqdm(total=n, initial=done, unit="keyframe", desc="painting keyframes",
              disable=not progress, dynamic_ncols=True, leave=False) as bar:
        stylizer = keyframe_stylizer(job) if done < n else None
        renderer, shot = None, None
        for i, (k, content, region) in enumerate(zip(keys, contents,
                                                     keyframe_regions(job, keys, plan.total))):
            if plan.shot_of(k) != shot:  # a new shot: a new chain
                renderer, shot = FrameRenderer(stylizer, job.video), plan.shot_of(k)
            if i < done:
                painted = store.load(i)
                renderer.restore(content, painted, cover=coverage(region, content.shape[:2]))
            else:
                if i > 0:
                    train(training, job.video, i / n)
                guess = None if i == 0 else lambda c=content: training.guess(c)
                painted, _, _ = renderer.render(content, job.init, guess=guess,
                                                regions=region)
                store.save(i, painted, plan.times[k])
                bar.update(1)
            # a masked keyframe teaches the network where it was painted only
            training.add(content, painted, coverage(region, content.shape[:2]))
    if not store.complete:
        store.finish()
