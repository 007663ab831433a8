"""A clip's masks: where each frame is painted, given once per region (per style, or one for
the styles' blend) as a still image for the whole clip, or as a clip of mask frames (a video,
or a folder of images) matched to the content frame for frame and read along with it. Checked
before any work (a mask clip of another length, or of another shape, refused in one line);
picklable, so every process of a render reads them itself. Knows nothing of painting."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nstvideo.errors import InputError
from nstvideo.masks import as_list, load_regions
from nstvideo.media.reader import IMAGE_EXTS, read_image
from nstvideo.media.video import Source, is_video_path, open_source
from nstvideo.record import fingerprint
from nstvideo.style.regions import Regions
from nstvideo.style.tensors import resize
from nstvideo.video.job import Cursor, SourceSpec


@dataclass(frozen=True)
class ClipMasks:
    """Per region a still mask (an image path or array) or the spec of a mask clip, over the
    same range of positions as the content's; `styles`, the number of style images."""

    masks: tuple  # SourceSpec (a clip of masks) | Path | np.ndarray (a still), per region
    styles: int
    max_pixels: int

    @property
    def moving(self) -> bool:
        return any(isinstance(m, SourceSpec) for m in self.masks)

    def fingerprints(self) -> list[str]:
        """What a render's masks are, by content (a render resumes only with the same)."""
        return [m.fingerprint if isinstance(m, SourceSpec) else fingerprint(m)
                for m in self.masks]

    def still(self, hw: tuple[int, int]) -> list[np.ndarray]:
        """The still masks at size hw (a clip's as None)."""
        return [None if isinstance(m, SourceSpec) else resize(
            m if isinstance(m, np.ndarray) else read_image(m, what="mask",
                                                           max_pixels=self.max_pixels), hw)
                for m in self.masks]

    def cursor(self, hw: tuple[int, int], keep: int) -> Cursor:
        """A reader of every position's masks at size hw (a list, one per region), for units
        taken in order, as the content's cursor reads its frames."""
        still = self.still(hw)

        def open_frames(want):
            readers = [None if s is not None else m.frames(hw=hw, decode_from=want)
                       for m, s in zip(self.masks, still)]
            k = 0
            while True:
                items = [None if r is None else next(r, None) for r in readers]
                if any(r is not None and i is None for r, i in zip(readers, items)):
                    return  # a mask clip ended (checked against the content's length first)
                frames = [s if i is None else i[1] for s, i in zip(still, items)]
                yield k, (None if any(f is None for f in frames) else frames), None
                k += 1
        return Cursor(open_frames, keep)

    def regions(self, frames: list[np.ndarray], hw: tuple[int, int], device) -> Regions:
        """One position's masks (at size hw) as the stylizer takes them."""
        return load_regions(frames, self.styles, hw, device, self.max_pixels, quiet=True)


def clip_masks(mask, spec: SourceSpec, source: Source, styles: int) -> ClipMasks | None:
    """The masks given for a clip (`mask`: paths or arrays, one or one per style), checked
    before any work: each a still image, a video or a folder of mask frames of the clip's
    length; of the clip's shape (any size); one or one per style."""
    given = as_list(mask)
    if not given:
        return None
    if len(given) not in (1, styles):
        raise InputError(f"--mask is given {len(given)} times for {styles} style image(s): "
                         "give one (where the styles paint) or one per style, in the styles' "
                         "order")
    out = []
    for m in given:
        if isinstance(m, np.ndarray):
            out.append(m)
            continue
        path = Path(m)
        if path.is_dir() or (path.is_file() and is_video_path(path)):
            try:
                mask_source = open_source(path, None, float(source.fps), spec.max_pixels)
            except InputError as e:  # (said as the mask's, not the clip's)
                raise InputError(f"--mask {path.name}: {e}") from None
            _same_length(path, mask_source, spec, source)
            _same_shape(path, (mask_source.width, mask_source.height), source)
            out.append(SourceSpec(path, None, float(source.fps), spec.max_pixels, spec.first,
                                  spec.stop, spec.every, mask_source.fingerprint()))
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTS:
            img = read_image(path, what="mask", max_pixels=spec.max_pixels)
            _same_shape(path, (img.shape[1], img.shape[0]), source)
            out.append(path)
        else:
            raise InputError(f"--mask {m}: not an image, a video or a folder of mask frames")
    return ClipMasks(tuple(out), styles, spec.max_pixels)


def _same_length(path: Path, masks: Source, spec: SourceSpec, source: Source) -> None:
    n, m = source.frame_count, masks.frame_count
    if n is not None and m is not None and n != m:
        raise InputError(f"--mask {path.name} has {m} frames and {spec.path.name} {n}: give a "
                         "mask clip of the same length (one mask frame per frame), or one "
                         "image for the whole clip")


def _same_shape(path: Path, wh: tuple[int, int], source: Source) -> None:
    (mw, mh), (w, h) = wh, (source.width, source.height)
    if abs(mh * w - mw * h) > max(mh, mw, h, w):
        raise InputError(f"--mask {path.name} is {mw}x{mh}, another shape than the frames "
                         f"({w}x{h}): make the masks from the clip (any size of its shape)")
