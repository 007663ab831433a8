"""Phone and camera video: non-square pixels shown at their display aspect, a rotated phone
clip upright. The clips are made here with the bundled ffmpeg."""

from __future__ import annotations

import subprocess

import cv2
import numpy as np
import pytest

from nstvideo import StyleSettings, VideoSettings, stylize
from nstvideo.media.probe import tags
from nstvideo.media.video import VideoFile
from videokit import FFMPEG, read_frames

S = StyleSettings(size=96, iterations=1, seed=0)
V = VideoSettings(iterations=1, iterations_first=1)


def test_anamorphic_video_keeps_its_display_aspect(tmp_path, style_png):
    """176x144 stored with pixels 128:117 wide (PAL 4:3-ish): shown 1.337:1, not 1.22:1."""
    src = tmp_path / "ana.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=176x144:rate=12", "-frames:v", "3", "-vf", "setsar=128/117",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(src)], check=True)
    sar = VideoFile(src).info.sar
    display = 176 * sar / 144
    assert abs(display - 176 * 128 / 117 / 144) < 0.01, sar
    out = stylize(src, style_png, tmp_path / "o.mp4", settings=S, video=V).output
    h, w = read_frames(out)[0].shape[:2]
    assert abs(w / h - display) < 0.03, (w, h, float(display))


def test_a_rotated_phone_clip_comes_out_upright(tmp_path, style_png):
    """A landscape-stored clip whose display matrix says 90°: the result is portrait and
    shows the picture turned as a player shows it."""
    flat = tmp_path / "flat.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=96x64:rate=12", "-frames:v", "3", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(flat)], check=True)
    turned = tmp_path / "turned.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-display_rotation", "90", "-i",
                    str(flat), "-c", "copy", str(turned)], check=True)
    shown = read_frames(turned)[0]  # OpenCV applies the display matrix, as players do
    assert shown.shape[:2] == (96, 64)
    out = stylize(turned, style_png, tmp_path / "o.mp4", settings=S, video=V).output
    got = read_frames(out)[0].astype(float).mean(axis=2)
    assert got.shape[0] > got.shape[1]  # portrait
    upright = shown.astype(float).mean(axis=2)

    def similarity(ref):
        ref = cv2.resize(np.ascontiguousarray(ref), got.shape[::-1])
        return np.corrcoef(ref.ravel(), got.ravel())[0, 1]
    assert similarity(upright) > similarity(np.rot90(upright, 2)) + 0.1


def hdr_clip(path, patches: np.ndarray, transfer: str):
    """A 10-bit HEVC clip whose pixels really are in `transfer` (smpte2084: PQ, arib-std-b67:
    HLG), BT.2020, made from an SDR BT.709 picture with SDR white at HDR reference white."""
    png = path.with_suffix(".png")
    cv2.imwrite(str(png), cv2.cvtColor(patches, cv2.COLOR_RGB2BGR))
    chain = ("format=gbrpf32le,zscale=tin=bt709:pin=bt709:p=bt709:min=gbr:m=gbr:t=linear:"
             f"npl=203,zscale=p=bt2020:t={transfer}:m=bt2020nc:r=tv:npl=203,format=yuv420p10le")
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-loop", "1", "-i", str(png),
                    "-frames:v", "3", "-r", "12", "-vf", chain, "-c:v", "libx265",
                    "-x265-params", "log-level=error:lossless=1", "-color_primaries", "bt2020",
                    "-color_trc", transfer, "-colorspace", "bt2020nc", "-color_range", "tv",
                    str(path)], check=True)
    return path


def code_values(path) -> np.ndarray:
    """The first frame's luma code values as stored (8-bit, no colour conversion at all)."""
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-frames:v", "1", "-f",
                          "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True,
                         check=True).stdout
    return np.frombuffer(raw, np.uint8)


@pytest.mark.parametrize("transfer", ["smpte2084", "arib-std-b67"])
def test_hdr_video_is_tone_mapped_to_the_sdr_picture(tmp_path, style_png, transfer):
    """Grey patches 40, 90, 130 and white: the HDR clip's stored code values are far from the
    SDR picture's (white is not 255); read back, the greys come out within 4 levels of the
    SDR original and white stays the brightest, rolled off (above HDR reference white the
    Möbius curve compresses)."""
    levels = [40, 90, 130, 255]
    patches = np.zeros((48, 128, 3), np.uint8)
    for i, v in enumerate(levels):
        patches[:, 32 * i:32 * (i + 1)] = v
    src = hdr_clip(tmp_path / "hdr.mp4", patches, transfer)
    stored = code_values(src).reshape(48, 128)
    assert abs(float(stored[24, 32 * 3 + 16]) - 255) > 50  # really HDR: white is not 255
    source = VideoFile(src)
    assert "tone-mapped to SDR BT.709" in source.note
    frames = [f for _, f, _ in source.frames()]
    assert len(frames) == 3 and frames[0].shape == (48, 128, 3)
    got = [frames[-1][16:32, 32 * i + 8:32 * i + 24].mean() for i in range(4)]
    assert all(abs(g - v) <= 4 for g, v in zip(got[:3], levels)), got
    assert got[3] > 200 and got[3] > got[2] + 50, got
    with pytest.warns(UserWarning, match="tone-mapped to SDR BT.709"):
        out = stylize(src, style_png, tmp_path / "o.mp4", settings=S.replace(size=64),
                      video=V).output
    assert len(read_frames(out)) == 3


def file_tags(path) -> dict:
    """The file's global metadata as ffmpeg reads it back."""
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                         text=True).stderr
    return dict(tags(log))


LIVE_PHOTO_ID = "com.apple.quicktime.content.identifier"


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_a_phone_clip_keeps_when_and_where_it_was_filmed(tmp_path, style_png, ext):
    """A phone's clip keeps its date and place (a photo library files the stylized copy with
    the source), its title and one-line comment; a multi-line value, and the container's own
    technical tags, are not carried, nor a Live Photo clip's pairing with its still (a library
    would pair the stylized clip with the original photo). The place, kept by the phone only
    under Apple's key, is written under the key the muxer keeps."""
    src = tmp_path / "phone.mov"
    place = "+48.8577+002.2950+035.000/"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=96x64:rate=12", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000", "-frames:v", "3", "-shortest",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-metadata", "creation_time=2024-05-01T10:00:00.000000Z",
                    "-metadata", f"com.apple.quicktime.location.ISO6709={place}",
                    "-metadata", "title=Pont Neuf", "-metadata", "comment=line one\nline two",
                    "-metadata", f"{LIVE_PHOTO_ID}=5E1F2A3B-0C4D-4E5F-8A9B-0C1D2E3F4A5B",
                    "-movflags", "use_metadata_tags", str(src)], check=True)
    got = file_tags(src)
    assert got["creation_time"].startswith("2024-05-01T10:00:00") and "comment" not in got
    described = lambda f: subprocess.run([FFMPEG, "-hide_banner", "-i", str(f)],  # noqa: E731
                                         capture_output=True, text=True).stderr
    assert LIVE_PHOTO_ID in described(src)
    rep = stylize(src, style_png, tmp_path / f"o{ext}", settings=S, video=V)
    out = rep.output
    assert rep.video.audio  # the tags did not cost the sound
    kept = {k.lower(): v for k, v in file_tags(out).items()}
    assert kept["creation_time"].startswith("2024-05-01T10:00:00"), kept
    assert kept["location"].startswith("+48.8577+002.2950"), kept
    assert kept["title"] == "Pont Neuf", kept
    assert "comment" not in kept and "major_brand" not in kept, kept
    assert LIVE_PHOTO_ID not in described(out).lower()  # not paired with the original still
    assert len(read_frames(out)) == 3


def test_strip_metadata_leaves_a_clips_tags_out(tmp_path, style_png):
    src = tmp_path / "dated.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=96x64:rate=12", "-frames:v", "3", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-metadata", "creation_time=2024-05-01T10:00:00Z",
                    "-metadata", "location=+48.8577+002.2950/", str(src)], check=True)
    assert "location" in file_tags(src)
    out = stylize(src, style_png, tmp_path / "o.mp4", settings=S, video=V,
                  strip_metadata=True).output
    got = file_tags(out)
    assert "creation_time" not in got and "location" not in got, got
