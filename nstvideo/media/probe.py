"""What ffmpeg says of a media file that OpenCV does not: its timeline, audio and subtitle
tracks, colour description, pixel aspect and metadata tags (one short ffmpeg run).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import imageio_ffmpeg

# Colour descriptions we carry from source to output: SDR ones (8-bit RGB in between). Others
# (BT.2020, HDR transfers) and untagged sources get BT.709, what HD players assume.
SDR_MATRICES = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470bg"}
SDR_PRIMARIES = {"bt709", "smpte170m", "bt470bg", "bt470m"}
SDR_TRANSFERS = {"bt709", "smpte170m", "bt470bg", "bt470m", "gamma22", "gamma28", "iec61966-2-1"}
HDR_TRANSFERS = {"smpte2084": "PQ", "arib-std-b67": "HLG"}


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
    duration: float | None = None  # the file's duration from `start` (to 10 ms), seconds
    video_start: float = 0.0  # the first video frame's time on the file's timeline, seconds
    audio_tracks: int = 0
    colour: Colour = Colour()
    sar: Fraction = Fraction(1)  # sample (pixel) aspect ratio: non-square pixels (anamorphic)
    hdr: tuple[str, str, str] | None = None  # an HDR source's (matrix, primaries, transfer)
    kinds: frozenset[str] = frozenset()  # its streams' kinds (`stream_kinds`)
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
    length = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", log)
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
    return Probe(start=fmt_start, duration=(int(length.group(1)) * 3600 + int(length.group(2))
                                            * 60 + float(length.group(3))) if length else None,
                 video_start=float(first.group(1)) if first else fmt_start,
                 audio_tracks=len(re.findall(r"Stream #\d+:\d+.*?: Audio:", log)),
                 colour=colour, sar=Fraction(sar) if 1 / 8 <= sar <= 8 else Fraction(1),
                 hdr=hdr, tags=tags(log), kinds=frozenset(stream_kinds(log)),
                 subtitles=tuple((codec, lang or "und") for lang, codec in re.findall(
                     r"Stream #0:\d+(?:\[\w+\])?(?:\((\w+)\))?: Subtitle: (\w+)", log)))


def _described(path: Path) -> str:
    """What `ffmpeg -i` says of a file ('' if it cannot run)."""
    try:
        return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                              capture_output=True, text=True, errors="replace",
                              timeout=60).stderr
    except (OSError, subprocess.TimeoutExpired):
        return ""


def streams(path: Path) -> set[str]:
    """The kinds of stream ffmpeg finds in a file ('Video', 'Audio', ...; 'Picture' for the
    cover art of an audio file); empty if none or it cannot be read."""
    return container(path)[1]


def container(path: Path) -> tuple[set[str], set[str]]:
    """The names of the demuxer ffmpeg reads a file with ('mpegts'; 'mov', 'mp4', ... for
    one that has several) and the kinds of its streams; empty sets if it reads none."""
    text = _described(path)
    m = re.search(r"Input #0, (.+?), from ", text)
    return set(m.group(1).split(",")) if m else set(), stream_kinds(text)


def stream_kinds(log: str) -> set[str]:
    """The kinds of stream in ffmpeg's description of a file ('Video', 'Audio', 'Subtitle',
    ...; 'Picture' for an audio file's cover art, which ffmpeg lists as a video stream)."""
    return {"Picture" if "(attached pic)" in line else kind
            for kind, line in re.findall(r"Stream #\d+:\d+.*?: (\w+):(.*)", log)}
