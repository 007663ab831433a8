"""One unit into its store: the unit runner every engine calls, and the optimize method's
runner (every frame optimized, each from the previous one: nstvideo.video.frames). A runner
renders what the store lacks of its unit, saves each frame as it finishes and encodes the
finished frames into segments as it goes; the keyframe method's runner
(nstvideo.video.keyframes) differs only in how frames are painted. Knows nothing of where it
runs (engines) or of the render folder around the store.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from nstvideo.errors import RenderError, reason
from nstvideo.media.writer import encode_image, write_file
from nstvideo.style.device import resolve_device, torch_threads
from nstvideo.style.stylizer import Stylizer
from nstvideo.video.background import BackgroundWriter, prefetch
from nstvideo.video.frames import FrameRenderer, coverage
from nstvideo.video.job import Job
from nstvideo.video.names import LATEST, STATE
from nstvideo.video.plan import Unit
from nstvideo.video.store import UnitStore

LATEST_EVERY_S = 5.0  # the render folder's latest.png is replaced at most this often


class UnitRunner:
    """Renders units of one job in this process, with the job's thread count (the plan's),
    the source read forward once across units taken in order. A method's runner gives
    `paint(unit, store, done, content, finished, report)`; `chained`: a frame needs the one
    before it (a resumed unit starts again from its last finished frame)."""

    chained = True

    def __init__(self, job: Job):
        self.job = job
        self.device = resolve_device(job.settings.device)
        self._cursor = job.cursor()
        masks = job.masks
        self._mask_cursor = (masks.cursor(job.hw, job.video.overlap + 1)
                             if masks is not None and masks.moving else None)
        self._mask_of: dict[int, list] = {}  # a clip's masks read along with the content
        self._still = None  # still masks' regions (built once)

    def run(self, unit: Unit, store: UnitStore, on_frame=None, frames=None) -> dict:
        """Render what `store` lacks of `unit`: its frames, saved as they finish, encoded into
        segments every `segment_frames` (but the frames it shares with a neighbour, which the
        join cross-fades). `frames`: the unit's content frames at the processing size where
        they were shipped (else read from the source). Returns {rendered, seconds, cuts
        (output positions), threads (torch's, as it rendered)}."""
        with torch_threads(self.job.threads):
            return self._run(unit, store, on_frame, frames)

    def _run(self, unit: Unit, store: UnitStore, on_frame, frames) -> dict:
        done = store.open()
        report = {"rendered": 0, "seconds": 0.0, "cuts": [], "threads": torch.get_num_threads()}
        if store.complete:
            return report
        t0 = time.perf_counter()
        if done < unit.frames:
            begin = unit.begin + max(0, done - self.chained)
            content = (self._cursor.take(begin, unit.stop) if frames is None else
                       ((unit.begin + i, frames[i]) for i in range(begin - unit.begin,
                                                                    len(frames))))
            if self._mask_cursor is not None:
                content = self._with_masks(content, begin, unit.stop)
            with BackgroundWriter() as writer:
                def finished(k: int, result: np.ndarray, still: np.ndarray | None = None) -> None:
                    if still is not None:  # first: a frame on record has its reference
                        writer.submit(store.save_still, k, still)
                    writer.submit(store.save, k, result, self.job.times[unit.begin + k])
                    writer.submit(self._latest, store, result)
                    writer.submit(self._segments, unit, store, k + 1)
                    report["rendered"] += 1
                    if on_frame is not None:
                        on_frame(k)

                self.paint(unit, store, done, content, finished, report)
            if store.done() < unit.frames:
                raise RenderError(f"{self.job.source.path.name} ended at frame "
                                  f"{unit.begin + store.done()} of the {len(self.job.times)} "
                                  "its first pass found (changed or unreadable since?): check "
                                  "the file, then pass --restart")
        self._segments(unit, store, unit.frames)  # the last ones
        store.finish()
        report["seconds"] = time.perf_counter() - t0 if report["rendered"] else 0.0
        return report

    def paint(self, unit: Unit, store: UnitStore, done: int, content, finished,
              report: dict) -> None:
        raise NotImplementedError

    def _with_masks(self, content, begin: int, stop: int):
        """The content frames, each position's masks read along and kept for `regions`."""
        for (pos, frame), (_, masks) in zip(content, self._mask_cursor.take(begin, stop)):
            self._mask_of[pos] = masks
            yield pos, frame

    def add_masks(self, pos: int, masks: list) -> None:
        """Give position `pos` its masks where the content was not read by this runner."""
        self._mask_of[pos] = masks

    def regions(self, pos: int):
        """Where output frame `pos` is painted (nstvideo.style.regions; None: everywhere)."""
        masks = self.job.masks
        if masks is None:
            return None
        if not masks.moving:
            if self._still is None:
                self._still = masks.regions(masks.still(self.job.hw), self.job.hw, self.device)
            return self._still
        return masks.regions(self._mask_of.pop(pos), self.job.hw, self.device)

    _shown = 0.0  # when this process last replaced the render's latest.png

    def _latest(self, store: UnitStore, result: np.ndarray) -> None:
        """The render folder's latest.png, replaced (atomically) by this frame, at most every
        LATEST_EVERY_S; only where the unit's store is in the render folder (a Ray task's is in
        a scratch folder: the driver shows its last frame when the unit comes back)."""
        folder = store.folder.parent
        if time.monotonic() - self._shown < LATEST_EVERY_S or not (folder / STATE).exists():
            return
        UnitRunner._shown = time.monotonic()
        write_file(folder / LATEST, encode_image(result, ".png"))

    def _segments(self, unit: Unit, store: UnitStore, done: int) -> None:
        """Encode the finished frames not yet in a segment, every `segment_frames` of them
        (and the last ones once the unit's own frames are all done)."""
        job = self.job
        if job.segment_ext is None:
            return
        a, b = unit.own[0] - unit.begin, unit.own[1] - unit.begin
        while True:
            k0 = store.segments[-1]["k1"] if store.segments else a
            k1 = min(k0 + job.segment_frames, b)
            if k0 >= b or done < k1:
                return
            path = store.segment_path(len(store.segments), job.segment_ext)
            job.encode(store.folder, [store.frame_path(k).name for k in range(k0, k1)], path,
                       unit.begin + k0, unit.begin + k1)
            store.add_segment(path, k0, k1)


class OptimizeRunner(UnitRunner):
    """The optimize method: every frame optimized from the previous result (one stylizer per
    process: VGG and the style targets built once)."""

    def __init__(self, job: Job):
        super().__init__(job)
        self._stylizer: Stylizer | None = None

    @property
    def stylizer(self) -> Stylizer:
        if self._stylizer is None:
            self._stylizer = Stylizer(self.job.styles, self.job.settings, tune=True)
        return self._stylizer

    def renderer(self) -> FrameRenderer:
        """A new chain of frames."""
        return FrameRenderer(self.stylizer, self.job.video)

    def render(self, renderer: FrameRenderer, frame: np.ndarray, compared, pos: int):
        """One frame of the chain, output position `pos`: (result, report, whether the chain
        restarted)."""
        return renderer.render(frame, self.job.init, compared=compared,
                               regions=self.regions(pos))

    def paint(self, unit, store, done, content, finished, report) -> None:
        """Optimize the frames one after the other, each from the previous result."""
        renderer = self.renderer()

        def ahead():  # runs in a thread: decode, resize and compare with the previous frame
            prev = None
            for pos, frame in content:
                k = pos - unit.begin
                yield k, frame, (None if prev is None or k < done
                                 else renderer.compare(prev, frame))
                prev = frame

        for k, frame, compared in prefetch(ahead()):
            if k < done:
                renderer.restore(frame, store.load(k), store.still(k),
                                 coverage(self.regions(unit.begin + k), frame.shape[:2]))
                continue
            try:
                result, _, cut = self.render(renderer, frame, compared, unit.begin + k)
            except cv2.error as e:
                raise RenderError(f"OpenCV failed on frame {unit.begin + k} ({reason(e)}): "
                                  "check the input plays, or report it") from e
            if cut:
                report["cuts"].append(unit.begin + k)
            finished(k, result, renderer.still)
