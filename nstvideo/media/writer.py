"""Writing outputs atomically: a temporary name beside the target, renamed when complete, so an
interrupted run never leaves a half-written file under the final name. The only place where
RGB turns into BGR for encoding.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np

from nstvideo.errors import OutputError
from nstvideo.media.photometa import HEIF_EXTS, PhotoMeta, encode_with_meta
from nstvideo.media.scratch import scratch_folder
from nstvideo.media.subtitles import SUBTITLE_FORMATS, TEXT_SUBTITLES, subtitle_files

_JPEG_QUALITY = 95  # visually lossless for painted textures; the default 75 smears brush strokes
PARTIAL_GLOB = ".*.partial*"  # the names of files on their way (atomic_path, scratch_path)
FRAME_LIST = "frames.ffconcat"  # the list of frames and their durations (variable rates)


@contextlib.contextmanager
def atomic_path(target: Path):
    """Yield a temporary path beside `target` (same suffix); rename it to `target` on success,
    delete it on any failure or interruption."""
    target = Path(target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}",
                                   dir=target.parent)
    except OSError as e:
        raise OutputError(f"cannot write in {target.parent} ({e.strerror}): choose another "
                          "output location with -o") from e
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def scratch_path(folder: Path, name: str) -> Path:
    """A file of ours on its way in `folder`, named so that `remove_partials` removes it when a
    run killed meanwhile left it behind."""
    name = Path(name)
    return Path(folder) / f".{name.stem}.partial{name.suffix}"


def remove_partials(folder: Path) -> None:
    """Remove what runs killed mid-write left in `folder` (atomic_path's and scratch_path's
    files)."""
    for p in Path(folder).glob(PARTIAL_GLOB):
        p.unlink(missing_ok=True)


def fsync_dir(folder: Path) -> None:
    """Make the renames in `folder` durable (a power loss cannot undo them); a no-op where the
    platform cannot open folders."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def encode_image(img: np.ndarray, suffix: str) -> bytes:
    """RGB/RGBA uint8 (H, W, 3|4) -> file bytes in the format named by `suffix` ('.png', ...)."""
    if img.shape[2] == 4:
        if suffix.lower() in (".jpg", ".jpeg", ".jpe", ".bmp"):  # no alpha in these formats
            img = img[..., :3]
    code = cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if suffix.lower() in (".jpg", ".jpeg") else []
    try:
        ok, buf = cv2.imencode(suffix, cv2.cvtColor(img, code), params)
    except cv2.error as e:
        raise OutputError(f"cannot encode an image as '{suffix}': use .png or .jpg") from e
    if not ok:
        raise OutputError(f"cannot encode an image as '{suffix}': use .png or .jpg")
    return buf.tobytes()


def decode_frame(data: bytes) -> np.ndarray:
    """The inverse of `encode_image` for an RGB frame this program encoded itself -> RGB uint8."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                        cv2.COLOR_BGR2RGB)


def write_file(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Write `data` to `path` atomically; `durable`: on disk (fsync'd, file and folder) before
    it appears under its name, so a power loss cannot leave it truncated."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
    if durable:
        fsync_dir(Path(path).parent)


def write_image(path: str | Path, img: np.ndarray, meta: PhotoMeta | None = None) -> Path:
    """Write RGB/RGBA uint8 to `path` atomically; the format follows the extension. `meta`:
    a photo's metadata and colour profile, written where the format keeps them (and HEIC,
    which OpenCV cannot write, and AVIF, which not every OpenCV can, always through Pillow)."""
    path = Path(path)
    suffix = path.suffix or ".png"
    try:
        if (meta and meta.save_args() and suffix.lower() != ".bmp") or \
                suffix.lower() in HEIF_EXTS | {".avif"}:
            data = encode_with_meta(img, suffix, meta or PhotoMeta(), _JPEG_QUALITY, path.name)
        else:
            data = encode_image(img, suffix)
        write_file(path, data)
    except OSError as e:
        raise OutputError(f"cannot write {path} ({e.strerror}): free space or choose another "
                          "output location with -o") from e
    return path


# Per container: video codec arguments, and the audio codec to re-encode to when copying fails.
# No B-frames: a segment of one or two frames has no decoding delay where longer ones have two
# frames of it, and segments that differ in delay cannot be joined without re-encoding
# (timestamps run backwards). Costs about 11% in size at the same quality (cockatoo, 384 px).
_H264 = ["-c:v", "libx264", "-crf", "18", "-preset", "medium", "-bf", "0"]
_VIDEO_ARGS = {
    ".mp4": (_H264 + ["-movflags", "+faststart"], "aac"),
    ".mov": (_H264 + ["-movflags", "+faststart"], "aac"),
    ".mkv": (_H264, "aac"),
    ".webm": (["-c:v", "libvpx-vp9", "-crf", "32", "-b:v", "0", "-row-mt", "1"], "libopus"),
    ".gif": (["-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse", "-loop", "0"], None),
    ".webp": (["-c:v", "libwebp_anim", "-quality", "90", "-loop", "0", "-f", "webp"], None),
    ".png": (["-c:v", "apng", "-plays", "0", "-f", "apng"], None),
    ".apng": (["-c:v", "apng", "-plays", "0", "-f", "apng"], None),
}
# Outputs that are animated pictures: RGB frames encoded whole (no segments), looping, no
# sound, no subtitles, no YUV colour tags
PICTURE_OUTS = frozenset((".gif", ".webp", ".png", ".apng"))
# Containers that index every audio sample: a copied track starts where it is cut. Others
# (Matroska, WebM: cues on the video's key frames; MPEG-TS: none) land a seek up to a key
# frame early, and ffmpeg then delays the picture to keep the sound's extra seconds in sync:
# cut there, the sound is re-encoded (decoded from the cut exactly) unless that fails
_SAMPLE_INDEXED = frozenset(".mp4 .mov .m4v .m4a .3gp .3g2".split())
# Frame times further than this share of a frame from the nominal grid: variable frame rate
VFR_TOLERANCE = 0.25
# swscale's names for the YUV matrices (the tag names differ for BT.601)
_SWS_MATRIX = {"bt709": "bt709", "smpte170m": "smpte170m", "bt470bg": "bt470"}


def _colour_args(colour) -> list[str]:
    """RGB -> yuv420p with the matrix the stream is tagged with (ffmpeg's default would
    convert with BT.601 and tag nothing, and players shift the colours of HD video)."""
    return ["-vf", f"scale=out_color_matrix={_SWS_MATRIX.get(colour.matrix, 'bt709')}"
                   ":out_range=tv,format=yuv420p,setparams=range=tv"
                   f":colorspace={colour.matrix}:color_primaries={colour.primaries}"
                   f":color_trc={colour.transfer}",  # frames carry the tags to the encoder
            "-colorspace", colour.matrix, "-color_primaries", colour.primaries,
            "-color_trc", colour.transfer, "-color_range", "tv"]


def _run_ffmpeg(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace")


def is_constant_rate(times: list[float], step: float) -> bool:
    return all(abs(t - times[0] - k * step) <= VFR_TOLERANCE * step for k, t in enumerate(times))


def _frames_input(folder: Path, names: list[str], fps: Fraction, times: list[float] | None,
                  step: float, end: float | None = None,
                  vfr: bool | None = None) -> tuple[list[str], list[str]]:
    """ffmpeg's input arguments for the frames: a numbered pattern at exactly `fps` where the
    frames are evenly spaced, else a concat list giving each frame its own duration (variable
    frame rates, as phones record, keep their timing; `end`: when the last frame ends, else
    one `step` after it begins). Either way no character of the folder's name is taken for
    syntax ('%' is escaped in a pattern; the list names files relatively). `vfr` forces the
    choice (segments of one output must share a time base: the list's is 1/90000 s).
    Returns (input arguments, output arguments)."""
    if times is None or (is_constant_rate(times, step) if vfr is None else not vfr):
        pattern = str(folder).replace("%", "%%") + "/" + re.sub(r"\d{6}", "%06d", names[0])
        return ["-framerate", f"{fps.numerator}/{fps.denominator}", "-start_number",
                str(int(re.search(r"\d{6}", names[0]).group())), "-i", pattern], \
            ["-frames:v", str(len(names))]
    durations = [b - a for a, b in zip(times, [*times[1:], end or times[-1] + step])]
    lines = ["ffconcat version 1.0"]
    for name, d in zip(names, durations):  # each image read on a 1/90000 s clock, so that
        # its time is not rounded to the image reader's default 1/25 s
        lines += [f"file '{name}'", "option framerate 90000", f"duration {max(d, 1e-3):.6f}"]
    lines.append(f"file '{names[-1]}'")  # the concat demuxer takes the last duration so
    listing = folder / FRAME_LIST
    listing.write_text("\n".join(lines) + "\n")
    return (["-f", "concat", "-safe", "0", "-i", str(listing)],
            ["-fps_mode", "vfr", "-frames:v", str(len(names)), "-bsf:v", _last_lasts(
                sum(max(d, 1e-3) for d in durations))])


def _last_lasts(end: float) -> str:
    """A bitstream filter giving the last packet (in decoding order) the duration that makes
    the stream end at `end` s: each image comes with a duration of one tick, which the
    encoder gives the last frame, so a variable-rate stream would lose its last frame's time.
    A packet's duration is its step in decoding time; the container shows decoding time moved
    by the first packet's (STARTPTS - STARTDTS: the encoder's reordering delay)."""
    return (f"setts=pts=PTS:dts=DTS:duration='if(eq(NEXT_DTS,NOPTS),"
            f"{end:.6f}/TB-DTS+STARTDTS-STARTPTS,DURATION)'")


def segment_ext(output: Path) -> str | None:
    """The extension of the segments a video output is assembled from (its codec's own
    container), or None where segments cannot be joined without re-encoding (GIF, animated
    WebP and PNG)."""
    ext = output.suffix.lower()
    return {".mp4": ".mp4", ".mov": ".mp4", ".mkv": ".mp4", ".webm": ".webm"}.get(ext)


def encode_video(folder: Path, names: list[str], output: Path, fps: Fraction, *,
                 times: list[float] | None = None, frame_duration: float | None = None,
                 end: float | None = None, vfr: bool | None = None,
                 audio_from: Path | None = None,
                 audio_start: float = 0.0, audio_duration: float | None = None,
                 colour=None, tags=(), subtitles=()) -> bool:
    """Encode the PNG frames `names` (in `folder`, numbered consecutively) into `output` at
    exactly `fps`, or at their own `times` where those are not evenly spaced (or `vfr`; the
    last one lasting until `end`), converted to YUV with and tagged as `colour` (a
    media.probe.Colour), with every audio track of `audio_from` (trimmed to the rendered
    range; the first track is the default one) copied, or re-encoded where the container
    needs it, and the metadata `tags` ((key, value) pairs: the source's, `media.probe.tags`);
    and the text ones of its `subtitles` tracks ((codec, language) each, as
    `media.probe.Probe` lists them), their times moved and cut to the range as the audio's.
    Atomic: the file appears complete.

    Returns whether audio was included.
    """
    from nstvideo.media.probe import Colour

    vargs, _ = _VIDEO_ARGS[Path(output).suffix.lower()]
    if Path(output).suffix.lower() not in PICTURE_OUTS:
        vargs = vargs + _colour_args(colour or Colour())
    step = frame_duration or 1 / float(fps)
    frames_in, frames_out = _frames_input(Path(folder), names, fps, times, step, end, vfr)
    return _mux(frames_in, frames_out + vargs, output, audio_from, audio_start, audio_duration,
                tags, subtitles)


def join_segments(segments: list[tuple[Path, float]], output: Path, *,
                  audio_from: Path | None = None, audio_start: float = 0.0,
                  audio_duration: float | None = None, frames: int | None = None,
                  tags=(), subtitles=()) -> bool:
    """Join video segments (path, seconds it spans) of one codec and size into `output`
    without re-encoding (ffmpeg's concat demuxer: each segment starts on a key frame and at
    the time the ones before it span: exact, where a segment's own container would round its
    last frame's duration), with the audio and metadata as for `encode_video`. Returns whether
    audio was included."""
    listing = scratch_path(Path(output).parent, f"{Path(output).name}.segments.ffconcat")
    lines = ["ffconcat version 1.0"]
    for path, seconds in segments:
        lines += ["file '{}'".format(str(Path(path).resolve()).replace("'", "'\\''")),
                  f"duration {seconds:.6f}"]
    listing.write_text("\n".join(lines) + "\n")
    ext = Path(output).suffix.lower()
    vargs = ["-c:v", "copy"] + (["-movflags", "+faststart"] if ext in (".mp4", ".mov") else [])
    if frames is not None:
        vargs += ["-frames:v", str(frames)]
    try:
        return _mux(["-f", "concat", "-safe", "0", "-i", str(listing)], vargs, output,
                    audio_from, audio_start, audio_duration, tags, subtitles)
    finally:
        listing.unlink(missing_ok=True)


def _mux(video_in: list[str], vargs: list[str], output: Path, audio_from: Path | None,
         audio_start: float, audio_duration: float | None, tags=(), subtitles=()) -> bool:
    """Run ffmpeg with the video input `video_in` (first input, its first stream) and, where
    given, every audio track of `audio_from` (copied, else re-encoded to the container's
    audio codec, else left out) and the text ones of its `subtitles` tracks (in the
    container's format, SUBTITLE_FORMATS, else left out; media.subtitles), with the global
    metadata `tags` (left out as a last resort, should the container refuse them). Atomic.
    Returns whether audio was included."""
    output = Path(output)
    _, audio_codec = _VIDEO_ARGS[output.suffix.lower()]
    sub_codec = SUBTITLE_FORMATS.get(output.suffix.lower())
    if audio_from is None or audio_codec is None or sub_codec is None or not any(
            codec in TEXT_SUBTITLES for codec, _ in subtitles):
        return _mux_with(video_in, vargs, output, audio_from, audio_start, audio_duration, tags)
    with scratch_folder("subtitles") as tmp:
        subs = subtitle_files(audio_from, subtitles, audio_start, audio_duration, tmp)
        return _mux_with(video_in, vargs, output, audio_from, audio_start, audio_duration, tags,
                         subs, sub_codec)


def _mux_with(video_in, vargs, output: Path, audio_from, audio_start, audio_duration, tags,
              subs: list[tuple[Path, str]] = (), sub_codec: str | None = None) -> bool:
    _, audio_codec = _VIDEO_ARGS[output.suffix.lower()]
    attempts: list[list[str]] = []
    if audio_from is not None and audio_codec is not None:
        trim = ["-ss", f"{audio_start:.6f}"] + (
            ["-t", f"{audio_duration:.6f}"] if audio_duration is not None else [])
        audio_in = [*trim, "-i", str(audio_from)]
        tracks = ["-map", "1:a?", "-disposition:a", "0", "-disposition:a:0", "default"]
        sub_in = [a for path, _ in subs for a in ("-i", str(path))]
        sub_out = [a for i, (_, lang) in enumerate(subs) for a in (
            "-map", f"{2 + i}:s", f"-metadata:s:s:{i}", f"language={lang}")]
        with_subs = [[*sub_out, "-c:s", sub_codec]] if subs else []
        codecs = [["-c:a", "copy"], ["-c:a", audio_codec, "-b:a", "192k"]]
        if audio_start > 0 and Path(audio_from).suffix.lower() not in _SAMPLE_INDEXED:
            codecs.reverse()  # copied, the sound would start where the seek landed
        for acodec in codecs:
            for sub in (*with_subs, []):
                attempts.append([*video_in, *audio_in, *(sub_in if sub else []), "-map",
                                 "0:v:0", *tracks, *sub, *vargs, *acodec])
    attempts.append([*video_in, "-map", "0:v:0", *vargs, "-an"])
    meta = [a for k, v in tags for a in ("-metadata", f"{k}={v}")]
    attempts = [a + meta for a in attempts] + (attempts if meta else [])
    errors = []
    with atomic_path(output) as tmp:
        for args in attempts:
            p = _run_ffmpeg([*args, str(tmp)])
            if p.returncode == 0:
                return "-an" not in args
            if "No space left on device" in p.stderr:
                raise OutputError(f"the disk is full while encoding {output.name}: free some "
                                  "space and run the same command again (the finished frames "
                                  "are kept and the render resumes)")
            errors.append(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "?")
        raise OutputError(f"ffmpeg could not encode {output.name} ({errors[-1]}): the frames are "
                          "kept; try another output extension (.mp4, .mkv)")
