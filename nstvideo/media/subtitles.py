"""Subtitles carried from a source to its stylized copy: text tracks read out as SRT, their cues
moved and cut to the part rendered, for the muxer to take (media.writer)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import imageio_ffmpeg

# Text subtitles carried from the source (moved and cut with the part rendered), in each
# container's own format; bitmap ones (DVD, Blu-ray) are left out
SUBTITLE_FORMATS = {".mp4": "mov_text", ".mov": "mov_text", ".mkv": "srt", ".webm": "webvtt"}
TEXT_SUBTITLES = frozenset("subrip srt ass ssa mov_text webvtt text subviewer subviewer1 "
                           "microdvd sami realtext mpl2 pjs vplayer jacosub stl".split())
_SRT_TIME = r"(\d+):(\d\d):(\d\d)[,.](\d{1,3})"
_CUE = re.compile(rf"{_SRT_TIME}[ \t]*-->[ \t]*{_SRT_TIME}[^\n]*\n(.*?)(?=\n[ \t]*\n|\Z)", re.S)


def shifted_srt(text: str, start: float, duration: float | None) -> str:
    """SRT cues as they play with the part of a film that begins `start` s in and lasts
    `duration` s: moved `start` s earlier, cut at the part's ends, those outside it left out
    (renumbered). '' if none is left."""
    def seconds(g):
        return int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3].ljust(3, "0")) / 1000

    def stamp(t):
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    cues = []
    for m in _CUE.finditer(text.replace("\r\n", "\n")):
        a, b = seconds(m.groups()[:4]) - start, seconds(m.groups()[4:8]) - start
        end = float("inf") if duration is None else duration
        if b > max(a, 0.0) and a < end and m.group(9).strip():
            cues.append((max(a, 0.0), min(b, end), m.group(9).strip()))
    return "".join(f"{i}\n{stamp(a)} --> {stamp(b)}\n{t}\n\n" for i, (a, b, t)
                   in enumerate(cues, 1))


def subtitle_files(source: Path, tracks, start: float, duration: float | None,
                    folder: Path) -> list[tuple[Path, str]]:
    """Each text subtitle track of `source` (`tracks`: (codec, language) per subtitle
    stream, in order) as an SRT file in `folder`, its cues moved and cut to the part from
    `start` lasting `duration` (`shifted_srt`). Returns (file, language) for each track that
    has cues left; a track ffmpeg cannot read is left out."""
    files = []
    for k, (codec, lang) in enumerate(tracks):
        if codec not in TEXT_SUBTITLES:
            continue
        p = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(source),
                            "-map", f"0:s:{k}", "-f", "srt", "-"], capture_output=True)
        text = shifted_srt(p.stdout.decode("utf-8", "replace"), start, duration) \
            if p.returncode == 0 else ""
        if text:
            path = folder / f"track{k}.srt"
            path.write_text(text, encoding="utf-8")
            files.append((path, lang))
    return files
