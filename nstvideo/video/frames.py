"""One shot's chain of frames: each frame optimized from the previous result warped along the
optical flow (the first from the content, or from a guess), with the temporal cost where the
flow is consistent, pixels that have not changed held as painted, and a restart at a scene
cut (Ruder et al. 2016). Knows nothing of units, stores, files or where it runs.
"""

from __future__ import annotations

import numpy as np
import torch

from nstvideo.settings import VideoSettings
from nstvideo.style.optimize import EarlyStop, OptimizeReport
from nstvideo.style.regions import Regions
from nstvideo.style.stylizer import Stylizer, Temporal
from nstvideo.style.tensors import to_image, to_tensor
from nstvideo.video.flow import (SCENE_CUT_DIFF, FlowEstimator, FramePair, analyse,
                                 frame_difference, static_pixels, warp, warp_tensor)


def on_device(image: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """An image given as RGB uint8 (H, W, 3) or as pixels (1, 3, H, W), as pixels on `device`."""
    return image.to(device) if isinstance(image, torch.Tensor) else to_tensor(image, device)


class FrameRenderer:
    """Stylizes the frames of one sequence in order, carrying the previous result along."""

    def __init__(self, stylizer: Stylizer, video: VideoSettings, full_first: bool = False,
                 by_new: bool = False):
        self.stylizer, self.video = stylizer, video
        self.full_first = full_first  # a chain's first frame from a guess: the first budget
        self.by_new = by_new  # a later frame's budget grows with its pixels the flow cannot
        # carry, towards the first frame's (all new)
        self.new_share = 0.0
        self.entering = 0.0  # share of the painted pixels the masks newly paint
        self.prev_cover: np.ndarray | None = None  # the masks' painted share, last frame
        self.flow = FlowEstimator(video.flow_preset) if video.temporal == "flow" else None
        self.prev_content: np.ndarray | None = None
        self.prev_result: np.ndarray | None = None
        self.prev_tensor: torch.Tensor | None = None  # the same on the device (warped there)
        self.backdrop: torch.Tensor | None = None  # with a mask clip, where given: the whole
        # frame painted, carried along the flow beside the result (a newly masked pixel's
        # start; not kept over a resume, after which such pixels start from `fill` again)
        self.reference: np.ndarray | None = None  # per pixel: content when last painted
        self.first_iterations = video.iterations_first or 3 * video.iterations
        self.early_stop = EarlyStop(video.early_stop_tol, video.early_stop_window)

    def restore(self, content: np.ndarray, result: np.ndarray,
                still: np.ndarray | None = None, cover: np.ndarray | None = None) -> None:
        """Continue after a frame finished by an earlier run; `still`, the `still` it left
        (without it, every pixel counts as painted from `content`: a held pixel may then be
        repainted where an unbroken chain would have kept it)."""
        self.prev_cover = cover  # (a masked frame's painted share: `coverage`)
        self.prev_content, self.prev_result, self.prev_tensor = content, result, None
        self.reference = (content if still is None else still).astype(np.float32)

    @property
    def still(self) -> np.ndarray | None:
        """What a resume needs beside the last result: each pixel's content when it was last
        painted (uint8; its values are content values), where still pixels are held."""
        if self.reference is None or not (self.video.hold_static and self.flow is not None):
            return None
        return self.reference.astype(np.uint8)

    def compare(self, prev: np.ndarray, cur: np.ndarray) -> FramePair | float | None:
        """What the temporal step needs from two consecutive content frames alone: the flow
        analysis (flow mode), their difference (previous mode) or nothing. Depends on the
        source only, so `stylize_video` computes it ahead, beside the optimization."""
        if self.video.temporal == "flow":
            return analyse(prev, cur, self.flow)
        if self.video.temporal == "previous":
            return frame_difference(prev, cur)
        return None

    def render(self, content: np.ndarray, init: np.ndarray | None = None, on_step=None,
               compared: FramePair | float | None = None, guess=None, fill=None,
               painted: np.ndarray | None = None, regions: Regions | None = None,
               backdrop: np.ndarray | None = None):
        """Stylize one content frame (RGB uint8 at the processing size); `compared` is
        `compare(previous content, content)` where already computed. `guess`: where the chain
        restarts, a callable giving an image to start from instead of the content (the
        keyframe method's network: what it learned so far), with the later frames' budget
        unless `full_first` (a chain's first frame from the content gets `iterations_first`,
        by default 3x).
        `fill`: a callable giving an image to start from where the flow cannot carry the
        previous result (occluded or new pixels), instead of the warped previous result.
        `painted`: this frame already painted (a keyframe), taken as it is where the chain
        restarts. `regions`: where to paint (nstvideo.style.regions; the rest is the content,
        a frame whose masks paint nothing the content itself). `backdrop`: this frame painted
        wherever the masks will paint for a while (a keyframe: keyframes.keyframe_regions),
        from here on carried along the chain beside the result: a pixel a mask newly paints
        starts from it.

        Returns (result RGB uint8, report, whether the chain restarted here)."""
        v, dev = self.video, self.stylizer.device
        had_previous = self.prev_result is not None
        fresh = None if backdrop is None else on_device(backdrop, dev)
        content_t = to_tensor(content, dev)
        temporal, start, restart = None, None, self.prev_result is None or v.temporal == "none"
        static = None
        if not restart and compared is None:
            compared = self.compare(self.prev_content, content)
        if not restart and self.prev_tensor is None:  # (a resumed chain's: once)
            self.prev_tensor = to_tensor(self.prev_result, dev)
        cover = coverage(regions, content.shape[:2])
        if not restart and v.temporal == "flow":
            pair: FramePair = compared
            restart = v.scene_cuts and pair.scene_cut
            if not restart:
                start, temporal, static = self._carry(pair, content, fill, cover, fresh)
        elif not restart:  # previous: warm start from the unwarped result
            restart = v.scene_cuts and compared > SCENE_CUT_DIFF
            start = None if restart else self.prev_tensor
        if restart:
            self.backdrop = fresh
        if regions is not None and regions.empty:
            painted, start = content, None  # nothing to paint: the content as it is
        if start is None and painted is not None:
            result, report = painted, OptimizeReport()
            result_t = to_tensor(painted, dev)
        else:
            result_t, report = self._optimize(content_t, start, init, restart, temporal, guess,
                                              on_step, regions)
            result = to_image(result_t)  # the frame's one copy to the host (for the writer)
            result_t = result_t.detach().clamp(0, 255).round()  # as saved (a resume's start)
        self.prev_content, self.prev_result, self.prev_tensor = content, result, result_t
        self.prev_cover = cover
        if self.backdrop is not None and cover is not None:  # painted now: as painted
            self.backdrop = torch.where(torch.from_numpy(cover > 0.5)[None, None].to(dev),
                                        result_t, self.backdrop)
        if static is None:
            self.reference = content.astype(np.float32)
        else:
            self.reference[~static] = content[~static]
        return result, report, restart and had_previous and v.temporal != "none"

    def _carry(self, pair: FramePair, content: np.ndarray, fill, cover: np.ndarray | None,
               fresh: torch.Tensor | None = None):
        """The previous result carried along the flow: (start, temporal cost, static pixels
        or None). With masks (`cover`: this frame's painted share per pixel), a pixel painted
        now but not in the previous frame (the mask moved over it) is new: no temporal cost
        holds it to the previous frame's content, it is not held as static, and the frame's
        budget grows with such pixels' share. New pixels (these and the flow's holes) start
        from the backdrop where there is one (`fresh`, this frame's; else the last one carried
        along, its own holes filled by `fill`), else from `fill`."""
        v, dev = self.video, self.stylizer.device
        carried = None if cover is None or self.prev_cover is None else np.clip(
            warp(self.prev_cover, pair.backward), 0, 1)  # painted share before, carried
        start = warp_tensor(self.prev_tensor, pair.backward,
                            v.interpolation).round_().clamp_(0, 255)  # on the device
        frozen = static = None
        if v.hold_static:
            static = static_pixels(pair.backward, pair.mask, content, self.reference)
            if carried is not None:  # (the kept ones stay held, at the content)
                static &= np.abs(cover - carried) < 0.01
            if static.any():  # held as painted, not resampled
                frozen = torch.from_numpy(static)[None, None].to(dev)
                start = torch.where(frozen, self.prev_tensor, start)
        holes = pair.mask < 0.5
        self.new_share = float(holes.mean())
        self.entering = 0.0 if carried is None else float(
            np.clip(cover - carried, 0, 1).sum() / max(float(cover.sum()), 1.0))
        filled = lambda at, image: torch.where(  # noqa: E731
            torch.from_numpy(at)[None, None].to(dev), on_device(fill(), dev), image)
        if fresh is not None:
            self.backdrop = fresh
        elif self.backdrop is not None:  # carried too, the flow's holes filled
            self.backdrop = warp_tensor(self.backdrop, pair.backward,
                                        v.interpolation).round_().clamp_(0, 255)
            if fill is not None and holes.any():
                self.backdrop = filled(holes, self.backdrop)
        if carried is not None:  # pixels the mask newly paints start as new ones too
            holes = holes | (cover - carried > 0.5)
        if self.backdrop is not None:  # (the cost ignores them: mask 0)
            start = torch.where(torch.from_numpy(holes)[None, None].to(dev), self.backdrop,
                                start)
        elif fill is not None and holes.any():
            start = filled(holes, start)
        weight = pair.mask if carried is None else pair.mask * carried
        mask = torch.from_numpy(np.ascontiguousarray(weight, np.float32))[None, None].to(dev)
        return start, Temporal(start, mask, v.tau, frozen), static

    def _optimize(self, content_t, start, init, restart, temporal, guess, on_step,
                  regions=None):
        """The optimizer's run on one frame: (result tensor, report)."""
        s = self.stylizer
        guessed = start is None and guess is not None
        fresh = start is None and not guessed  # from the content: composed coarse to fine
        if start is None:
            start = on_device(guess(), s.device) if guessed else s.initial(content_t, init)
        return s.run(content_t, start, iterations=self.budget(restart, guessed),
                     temporal=temporal, early_stop=self.early_stop, on_step=on_step,
                     coarse=fresh, regions=regions)

    def budget(self, restart: bool, guessed: bool = False) -> int:
        """The iterations the frame being rendered gets (at most: early stop may end it
        sooner): a chain's first frame starts from the content and gets the larger budget
        (with temporal none every frame is independent and gets `iterations`, as asked); a
        later frame `iterations`, more for its new pixels (the flow's, with by_new; the
        masks')."""
        v = self.video
        iterations = (self.first_iterations if restart and v.temporal != "none" and (
            self.full_first or not guessed) else v.iterations)
        if not restart:
            grow = max(self.new_share if self.by_new else 0.0, self.entering)
            iterations += round((self.first_iterations - v.iterations) * grow)
        return iterations


def coverage(regions: Regions | None, hw: tuple[int, int]) -> np.ndarray | None:
    """How much of each pixel `regions` paint (H, W) in 0-1; None without masks."""
    return None if regions is None else regions.cover(hw)[0, 0].cpu().numpy()


def laid_over(content: np.ndarray, painted: np.ndarray, regions: Regions | None) -> np.ndarray:
    """A frame painted whole (by the network) laid over its content where `regions` paint,
    through their feathered union, as the optimizer's result is (None: as painted)."""
    if regions is None:
        return painted
    cover = regions.cover(content.shape[:2]).cpu()
    c, p = to_tensor(content, "cpu"), to_tensor(painted, "cpu")
    return to_image(torch.lerp(c, p, cover))
