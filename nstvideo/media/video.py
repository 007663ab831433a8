"""Frame sources: video files (OpenCV, streamed) and folders of numbered frames.

Both yield RGB uint8 frames one at a time: a clip of any length is never held in memory.
Checks run in order at open: exists -> opens -> has frames -> sane fps.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from nstvideo.errors import InputError
from nstvideo.media.probe import HDR_TRANSFERS, Probe, container, probe, streams
from nstvideo.media.reader import (IMAGE_EXTS, MAX_PIXELS, RAW_EXTS, check_pixels, existing,
                                   header, list_images, read_image, transparent)

VIDEO_EXTS = frozenset(
    ".mp4 .mov .mkv .avi .webm .gif .apng .m4v .mpg .mpeg .wmv .flv .ts .mts".split())
# Pictures that may be animated (stickers, web animations): a video when they are
ANIMATED_PICTURE_EXTS = frozenset((".webp", ".png"))
PICTURE_EXTS = ANIMATED_PICTURE_EXTS | {".gif", ".apng"}  # animations that may be transparent
# ffmpeg's demuxers of video containers and streams: a file of another extension read by one
# of these is a video (not one read as a picture or as text)
VIDEO_CONTAINERS = frozenset(
    "mpegts mov mp4 3gp 3g2 matroska webm avi asf flv mpeg mpegvideo mxf dv ogg rm nut ivf "
    "h264 hevc m4v vc1 yuv4mpegpipe wtv gxf".split())
MAX_FPS = 1000  # above this a container's rate is nonsense (some report 90000 = the timebase)
_FPS_DENOMINATOR = 1001  # NTSC rates are n·1000/1001: 29.97 must come back as 30000/1001


def exact_fps(fps: float) -> Fraction:
    """The rational frame rate behind a float: 29.97002997 -> 30000/1001, 25.0 -> 25."""
    return Fraction(fps).limit_denominator(_FPS_DENOMINATOR)


def check_fps(fps: Fraction | float, where: str) -> Fraction:
    fps = Fraction(fps)
    if not 0 < fps <= MAX_FPS:
        raise InputError(f"{where} has a frame rate of {float(fps):g} fps, which cannot be "
                         f"right: give the rate with --fps (0-{MAX_FPS})")
    return fps


@dataclass
class Source:
    """An opened frame source: its size, rate, (estimated) frame count and audio."""

    path: Path
    fps: Fraction
    width: int
    height: int
    frame_count: int | None  # a container's guess: for progress bars only
    has_audio: bool
    info: "Probe | None" = None  # timeline, audio tracks, colour (video files)
    damaged: int = 0  # frames the last pass over it skipped as damaged (video files)
    end: float | None = None  # when the last pass's last frame stops showing: the time of the
    # first frame past its range, else the stream's end (None: the pass did not finish)

    def frames(self, start: int = 0, stop: int | None = None, step: int = 1,
               decode_from=0) -> Iterator[tuple[int, np.ndarray | None, float]]:
        """Yield (index, RGB frame, time) for index in range(start, stop, step); time is the
        frame's presentation time in seconds from the stream's first frame (variable frame
        rates included); frames of output position < decode_from are skipped cheaply and
        yielded as None (for resuming). `decode_from` may be a callable, asked at each frame
        (a reader that jumps ahead as it goes)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        raise NotImplementedError


# HDR -> SDR BT.709: linear light with HDR reference white (BT.2408: 203 cd/m²) at 1.0, so
# SDR-range tones keep their levels; Möbius keeps them linear up to its knee and rolls the
# highlights above white off smoothly (hue kept: desat 0); then BT.709's transfer, full range
HDR_WHITE_NITS = 203
TONEMAP = ("zscale=min={m}:pin={p}:tin={t}:t=linear:npl={npl},format=gbrpf32le,"
           "zscale=p=bt709,tonemap=mobius:desat=0,zscale=t=bt709:m=bt709:r=full,format=rgb24")


def file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first and last MiB: cheap, and changes when the file does."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return f"{size}:{h.hexdigest()[:32]}"


DAMAGED_RUN = 32  # frames in a row the decoder fails on before a stream counts as ended
# (a damaged stretch of a file, a bad sector or a broken download, is skipped and the frames
# after it kept; at the real end every grab fails at once)


@dataclass
class _Pass:
    """What one pass over a video has met of damage."""

    damaged: int = 0  # frames skipped as damaged
    failed: bool = False  # the decoder failed on a frame
    last: float | None = None  # the time (ms) of the last frame kept


def _refuse_audio(path: Path, kinds) -> None:
    """An audio file (its only picture, if any, a cover) is refused in one line."""
    if "Audio" in kinds and "Video" not in kinds:
        raise InputError(f"{path} has sound but no picture (an audio file"
                         f"{', with cover art' if 'Picture' in kinds else ''}): give a "
                         "video file, or an image")


class VideoFile(Source):
    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS):
        path = existing(path, "video")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            _refuse_audio(path, streams(path))
            raise InputError(f"{path} cannot be opened as a video (not a video, or a codec "
                             "OpenCV's FFmpeg lacks): convert it to MP4 (H.264) first")
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        try:
            check_pixels(w, h, max_pixels, "the frames of video", path)
        except InputError:
            cap.release()
            raise
        ok, first = cap.retrieve() if self._grab(cap, _Pass()) else (False, None)
        if not ok or first is None:
            cap.release()
            raise InputError(f"{path} has no decodable frames (empty, corrupt or truncated): "
                             "check the file plays, or re-export it")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        rate = cap.get(cv2.CAP_PROP_FPS)
        cap.release()
        info = probe(path)
        _refuse_audio(path, info.kinds)  # OpenCV takes an audio file's cover for a video
        fps = check_fps(exact_fps(rate or 0.0), str(path))
        self.stored = first.shape[:2]  # as decoded (turned by the display matrix)
        # non-square pixels: the picture as it is shown (square pixels at the display width)
        width = max(1, round(first.shape[1] * info.sar))
        super().__init__(path, fps, width, first.shape[0], n if n > 0 else None,
                         info.audio_tracks > 0, info)

    def frames(self, start=0, stop=None, step=1, decode_from=0):
        cap = cv2.VideoCapture(str(self.path))
        first = decode_from if callable(decode_from) else lambda: decode_from
        hdr = self._tonemapped() if self.info.hdr else None  # pixels from ffmpeg, times here
        seen = _Pass()
        self.end = None
        times: list[float] = []  # the last two frames' (for the stream's end)
        try:
            index = 0
            position = 0  # output position: index of the yielded frame in the result
            while True:
                if not (self._grab(cap, seen) if hdr is None else cap.grab()):
                    self.end = self._stream_end(times)
                    break
                t = self._time(cap, index)
                if stop is not None and index >= stop:  # the range's end: this frame's time
                    self.end = t
                    break
                times = [*times[-1:], t]
                wanted = index >= start and (index - start) % step == 0
                if wanted and position >= first():
                    if hdr is None:
                        ok, frame = cap.retrieve()
                        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None
                    else:
                        frame = self._next(hdr)
                    if frame is None:
                        self.end = t
                        break
                    yield index, frame, t
                else:
                    if hdr is not None and self._next(hdr) is None:
                        self.end = t
                        break
                    if wanted:
                        yield index, None, t
                position += wanted
                index += 1
            self.damaged = seen.damaged
        finally:
            cap.release()
            if hdr is not None:
                hdr.kill()
                hdr.wait()

    @staticmethod
    def _grab(cap, seen: "_Pass") -> bool:
        """Grab the next frame that decodes; False at the end of the stream. A damaged stretch
        of the file is skipped (its frames counted in `seen.damaged`; the output holds the last
        good frame over them, as the frames keep their times): frames the decoder fails on, up
        to DAMAGED_RUN in a row (more is the end), and after such a failure, frames whose time
        is not after the last one kept (the stretch's reordering gone wrong)."""
        misses = 0
        while misses < DAMAGED_RUN:
            if not cap.grab():
                misses += 1
                continue
            seen.damaged += misses  # failures followed by a frame were damaged frames
            seen.failed = seen.failed or misses > 0
            misses = 0
            t = cap.get(cv2.CAP_PROP_POS_MSEC)
            if seen.failed and seen.last is not None and 0 < t <= seen.last:
                seen.damaged += 1
                continue
            seen.last = t if t > 0 else seen.last
            return True
        return False

    @property
    def note(self) -> str | None:
        """What a user should be told of how this source is read (an HDR one: tone-mapped)."""
        if self.info.hdr:
            return (f"{self.path.name} is HDR ({HDR_TRANSFERS[self.info.hdr[2]]}): tone-mapped to "
                    "SDR BT.709 before stylizing")
        if self.path.suffix.lower() in PICTURE_EXTS and transparent(self.path):  # a sticker
            return (f"{self.path.name} has transparent pixels: an animation is painted whole, "
                    "so they come out as the colour stored under them (often black)")
        return None

    def _tonemapped(self) -> subprocess.Popen:
        """ffmpeg decoding the HDR source tone-mapped to SDR BT.709 RGB, frame for frame as
        OpenCV decodes it (turned by the display matrix as OpenCV turns it)."""
        m, p, t = self.info.hdr
        chain = TONEMAP.format(m=m, p=p, t=t, npl=HDR_WHITE_NITS)
        return subprocess.Popen([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i",
                                 str(self.path), "-map", "0:v:0", "-vf", chain, "-fps_mode",
                                 "passthrough", "-f", "rawvideo", "-"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def _next(self, pipe: subprocess.Popen) -> np.ndarray | None:
        h, w = self.stored
        data = pipe.stdout.read(h * w * 3)
        return np.frombuffer(data, np.uint8).reshape(h, w, 3) if len(data) == h * w * 3 else None

    def _stream_end(self, times: list[float]) -> float | None:
        """When the stream's last frame (at times[-1]) stops showing: one frame interval on
        (the last one, as the frame rate may vary), or sooner where the file ends sooner."""
        if not times:
            return None
        step = times[-1] - times[0] if len(times) > 1 else 0.0
        end = times[-1] + (step if step > 0 else 1 / float(self.fps))
        if self.info.duration:  # the file's end, on the stream's clock (10 ms precision)
            file_end = self.info.start + self.info.duration - self.info.video_start
            if times[-1] < file_end < end:
                end = file_end
        return end

    def _time(self, cap, index: int) -> float:
        """The frame just read: its time from the stream's first frame, by its timestamp
        (OpenCV reports 0 for a frame without one: then by the nominal rate)."""
        ms = cap.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000 if ms > 0 or index == 0 else float(index / self.fps)

    def fingerprint(self) -> str:
        return file_fingerprint(self.path)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) upright (EXIF orientation applied) from the header, without decoding
    the pixels where the format allows."""
    head = header(path)
    if head is None:
        img = read_image(path)
        return img.shape[1], img.shape[0]
    w, h = head.width, head.height
    return (h, w) if head.orientation >= 5 else (w, h)  # 5-8 turn the picture a quarter


class FrameFolder(Source):
    def __init__(self, folder: Path, fps: float | Fraction | None, files: list[Path] | None = None,
                 max_pixels: int = MAX_PIXELS):
        folder = Path(folder)
        files = files or list_images(folder)
        if not files:
            raise InputError(f"no frames in folder {folder}: put numbered images in it "
                             "(frame_0001.png, ...)")
        sizes = {}
        for p in files:
            sizes.setdefault(image_size(p), p)
        for (w, h), p in sizes.items():
            check_pixels(w, h, max_pixels, "frame", p)
        self.max_pixels = max_pixels
        if len(sizes) > 1:
            (s1, p1), (s2, p2) = list(sizes.items())[:2]
            raise InputError(f"frames in {folder} differ in size ({p1.name} is {s1[0]}x{s1[1]}, "
                             f"{p2.name} is {s2[0]}x{s2[1]}): resize them to one size first")
        self.files = files
        (w, h), = sizes
        super().__init__(folder, check_fps(exact_fps(fps) if fps else Fraction(25), str(folder)),
                         w, h, len(files), False)

    def frames(self, start=0, stop=None, step=1, decode_from=0):
        first = decode_from if callable(decode_from) else lambda: decode_from
        last = min(stop or len(self.files), len(self.files))
        self.end = None
        for position, index in enumerate(range(start, last, step)):
            yield index, (read_image(self.files[index], what="frame",
                                     max_pixels=self.max_pixels)[..., :3]
                          if position >= first() else None), float(index / self.fps)
        self.end = float(last / self.fps)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.files:
            h.update(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}\n".encode())
        return f"{len(self.files)}:{h.hexdigest()[:32]}"


def is_video_path(path: Path) -> bool:
    """A video file: by its extension, an animated WebP or PNG (APNG) by its frames, and a file
    of another extension (a camcorder's .m2ts, an old phone's .3gp, .vob, .mxf) by its content:
    a video stream in what no image reader takes."""
    ext = path.suffix.lower()
    if ext in ANIMATED_PICTURE_EXTS:
        head = header(path)
        return head is not None and head.frames > 1
    if ext in VIDEO_EXTS:
        return True
    if ext in IMAGE_EXTS or ext in RAW_EXTS or not path.is_file() or header(path) is not None:
        return False
    names, kinds = container(path)  # sound in a video's container (.m4a): told as audio there
    return bool(names & VIDEO_CONTAINERS) and bool(kinds & {"Video", "Audio"})


def open_source(path: Path, files: list[Path] | None = None, fps: float | None = None,
                max_pixels: int = MAX_PIXELS) -> Source:
    """A video file, or a folder of numbered frames (`files`: its frames, else every image in
    it; `fps`: its rate, default 25)."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, fps, files, max_pixels)
    return VideoFile(path, max_pixels)
