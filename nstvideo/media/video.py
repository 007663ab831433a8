"""Frame sources: video files (OpenCV, streamed) and folders of numbered frames.

Both yield RGB uint8 frames one at a time: a clip of any length is never held in memory.
Checks run in order at open: exists -> opens -> has frames -> sane fps.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from nstvideo.errors import InputError
from nstvideo.media.reader import (MAX_PIXELS, check_pixels, existing, header, list_images,
                                   read_image)

VIDEO_EXTS = frozenset(".mp4 .mov .mkv .avi .webm .gif .m4v .mpg .mpeg .wmv .flv .ts .mts".split())
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


# Colour descriptions we carry from source to output: SDR ones (8-bit RGB in between). Others
# (BT.2020, HDR transfers) and untagged sources get BT.709, what HD players assume.
SDR_MATRICES = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470bg"}
SDR_PRIMARIES = {"bt709", "smpte170m", "bt470bg", "bt470m"}
SDR_TRANSFERS = {"bt709", "smpte170m", "bt470bg", "bt470m", "gamma22", "gamma28", "iec61966-2-1"}
HDR_TRANSFERS = {"smpte2084": "PQ", "arib-std-b67": "HLG"}
# HDR -> SDR BT.709: linear light with HDR reference white (BT.2408: 203 cd/m²) at 1.0, so
# SDR-range tones keep their levels; Möbius keeps them linear up to its knee and rolls the
# highlights above white off smoothly (hue kept: desat 0); then BT.709's transfer, full range
HDR_WHITE_NITS = 203
TONEMAP = ("zscale=min={m}:pin={p}:tin={t}:t=linear:npl={npl},format=gbrpf32le,"
           "zscale=p=bt709,tonemap=mobius:desat=0,zscale=t=bt709:m=bt709:r=full,format=rgb24")


@dataclass(frozen=True)
class Colour:
    """The YUV matrix, primaries and transfer an output is converted with and tagged as."""

    matrix: str = "bt709"
    primaries: str = "bt709"
    transfer: str = "bt709"


@dataclass(frozen=True)
class Probe:
    """What ffmpeg says of a file that OpenCV does not: its timeline and streams."""

    start: float = 0.0  # the file's start time (the earliest stream's), seconds
    video_start: float = 0.0  # the first video frame's time on the file's timeline, seconds
    audio_tracks: int = 0
    colour: Colour = Colour()
    sar: Fraction = Fraction(1)  # sample (pixel) aspect ratio: non-square pixels (anamorphic)
    hdr: tuple[str, str, str] | None = None  # an HDR source's (matrix, primaries, transfer)
    tags: tuple[tuple[str, str], ...] = ()  # the file's own metadata, as written back (`tags`)
    subtitles: tuple[tuple[str, str], ...] = ()  # each subtitle track's (codec, language)


# A file's metadata tags that describe its container or encoder, not what was filmed: not
# carried to the output (whose muxer writes its own)
TECHNICAL_TAGS = frozenset({"major_brand", "minor_version", "compatible_brands", "encoder",
                            "handler_name", "vendor_id", "duration"})
# ... nor tags that tie the file to another: a Live Photo's clip carries its still's content
# identifier, and a library would pair the stylized clip with the original still
PAIRING_TAGS = ("com.apple.quicktime.content.identifier", "com.apple.quicktime.live-photo")
APPLE_LOCATION = "com.apple.quicktime.location.ISO6709"
MAX_TAG = 1000  # characters: longer values (embedded blobs) are left out


def tags(log: str) -> tuple[tuple[str, str], ...]:
    """The first input's global metadata from ffmpeg's description of a file, to write back
    with the stylized copy: when and where it was filmed (creation_time, location), title,
    comment and the like; technical tags left out, a Live Photo's pairing with its still
    (PAIRING_TAGS), and multi-line or overlong values too.
    A phone's location kept only in Apple's key is also given as `location`, the key the MP4
    and MOV muxers write (a library then places the stylized clip where the source was)."""
    m = re.search(r"^Input #0, .*?\n  Metadata:\n((?:    .*\n)+)", log, re.M)
    found: dict[str, str] = {}
    broken: set[str] = set()
    last = None
    for line in m.group(1).splitlines() if m else ():
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not key:  # a value's continuation line: that tag is left out whole
            broken.add(last)
            continue
        last = key
        if len(set(value.split(";"))) == 1:  # a key stored twice (MOV's header and its own
            value = value.split(";")[0]      # key list), read back joined: written once
        if sep and value and len(value) <= MAX_TAG and key.lower() not in TECHNICAL_TAGS \
                and not key.lower().startswith(PAIRING_TAGS):
            found[key] = value
    kept = {k: v for k, v in found.items() if k not in broken}
    if APPLE_LOCATION in kept and "location" not in kept:
        kept["location"] = kept[APPLE_LOCATION]
    return tuple(kept.items())


def probe(path: Path) -> Probe:
    """Streams, start times and colour description of a media file (one short ffmpeg run
    that decodes the first video frame with its original timestamp)."""
    try:
        p = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-copyts", "-i",
                            str(path), "-map", "0:v:0", "-frames:v", "1", "-vf", "showinfo",
                            "-f", "null", "-"], capture_output=True, text=True,
                           errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return Probe()
    log = p.stderr
    start = re.search(r"Duration: .*?, start: (-?[\d.]+)", log)
    first = re.search(r"pts_time:(-?[\d.]+)", log)
    fmt_start = float(start.group(1)) if start else 0.0
    colour, hdr = Colour(), None
    m = re.search(r"Stream #\d+:\d+.*?: Video: [^,]+, \w+\(([^)]*)\)", log)
    if m:
        fields = [f.strip() for f in m.group(1).split(",")]
        # 'bt709' when all three agree, else 'matrix/primaries/transfer'
        desc = next((f for f in fields if "/" in f or f in SDR_MATRICES), None)
        if desc:
            parts = desc.split("/") if "/" in desc else [desc] * 3
            matrix, primaries, transfer = (parts + [parts[-1]] * 3)[:3]
            if transfer in HDR_TRANSFERS:
                hdr = (matrix, primaries, transfer)
            if matrix in SDR_MATRICES:  # unknown primaries/transfer: the matrix's family's
                colour = Colour(SDR_MATRICES[matrix],
                                primaries if primaries in SDR_PRIMARIES else matrix,
                                transfer if transfer in SDR_TRANSFERS else
                                ("bt709" if matrix == "bt709" else "smpte170m"))
    sar = re.search(r"Stream #\d+:\d+.*?: Video: .*?\[SAR (\d+):(\d+) DAR", log)
    sar = Fraction(int(sar.group(1)), int(sar.group(2))) if sar and int(sar.group(2)) else 1
    return Probe(start=fmt_start, video_start=float(first.group(1)) if first else fmt_start,
                 audio_tracks=len(re.findall(r"Stream #\d+:\d+.*?: Audio:", log)),
                 colour=colour, sar=Fraction(sar) if 1 / 8 <= sar <= 8 else Fraction(1),
                 hdr=hdr, tags=tags(log),
                 subtitles=tuple((codec, lang or "und") for lang, codec in re.findall(
                     r"Stream #0:\d+(?:\[\w+\])?(?:\((\w+)\))?: Subtitle: (\w+)", log)))


def _streams(path: Path) -> set[str]:
    """The kinds of stream ffmpeg finds in a file ('Video', 'Audio', ...); empty if none or
    it cannot be read."""
    try:
        p = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                           capture_output=True, text=True, errors="replace", timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(re.findall(r"Stream #\d+:\d+.*?: (\w+):", p.stderr))


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


class VideoFile(Source):
    def __init__(self, path: Path, max_pixels: int = MAX_PIXELS):
        path = existing(path, "video")
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            if _streams(path) == {"Audio"}:
                raise InputError(f"{path} has sound but no picture (an audio file?): give a "
                                 "video file, or an image")
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
        fps = check_fps(exact_fps(cap.get(cv2.CAP_PROP_FPS) or 0.0), str(path))
        cap.release()
        info = probe(path)
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
        try:
            index = 0
            position = 0  # output position: index of the yielded frame in the result
            while stop is None or index < stop:
                if not (self._grab(cap, seen) if hdr is None else cap.grab()):
                    break
                wanted = index >= start and (index - start) % step == 0
                t = self._time(cap, index)
                if wanted and position >= first():
                    if hdr is None:
                        ok, frame = cap.retrieve()
                        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if ok else None
                    else:
                        frame = self._next(hdr)
                    if frame is None:
                        break
                    yield index, frame, t
                else:
                    if hdr is not None and self._next(hdr) is None:
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
        for position, index in enumerate(range(start, min(stop or len(self.files),
                                                          len(self.files)), step)):
            yield index, (read_image(self.files[index], what="frame",
                                     max_pixels=self.max_pixels)[..., :3]
                          if position >= first() else None), float(index / self.fps)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.files:
            h.update(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}\n".encode())
        return f"{len(self.files)}:{h.hexdigest()[:32]}"


def is_video_path(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTS


def open_source(path: Path, files: list[Path] | None = None, fps: float | None = None,
                max_pixels: int = MAX_PIXELS) -> Source:
    """A video file, or a folder of numbered frames (`files`: its frames, else every image in
    it; `fps`: its rate, default 25)."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, fps, files, max_pixels)
    return VideoFile(path, max_pixels)
