"""Real phone and broadcast material: a video stream that starts after its audio, variable
frame rates, colour tags, several audio tracks, and names ffmpeg could mistake for syntax."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from nstvideo import StyleSettings, VideoSettings, stylize
from nstvideo.media.probe import Colour
from nstvideo.media.writer import encode_video
from videokit import FFMPEG

S = StyleSettings(size=48, iterations=2)
V = VideoSettings(iterations=1, iterations_first=1)
FLASH = 1.5  # s: when the flash and the click happen in the source


def flash_clip(path, *, video_delay=0.0, vfr=False):
    """A dark clip with one white frame at FLASH s and a click at the same moment in the
    audio; the video stream may start `video_delay` s after the audio, or run at a variable
    rate (30 fps, then 12 fps from 1 s on, as phones do when the light drops)."""
    if vfr:  # frame N at N/30 s up to 1 s, then every 1/12 s: FLASH = 1.5 s is frame 36
        n, flash, timing = 60, 36, ",settb=1/60,setpts='if(lt(N,30),N/30,1+(N-30)/12)/TB'"
    else:
        n, flash, timing = 75, round(FLASH * 30), ""
    vf = f"geq=lum='if(eq(N,{flash}),235,30)':cb=128:cr=128{timing}"
    if video_delay:
        vf += f",setpts=PTS+{video_delay}/TB"
    click = f"aevalsrc='if(between(t,{FLASH + video_delay},{FLASH + video_delay + 0.01}),0.9,0)'"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=black:size=64x48:rate=30", "-f", "lavfi", "-i", f"{click}:s=16000:d=4",
                    "-filter_complex", f"[0:v]{vf}[v]", "-map", "[v]", "-map", "1:a",
                    "-frames:v", str(n), *(["-fps_mode", "vfr", "-enc_time_base", "filter"] if vfr
                                            else []), "-c:v",
                    "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-t", "4", str(path)],
                   check=True)
    return path


def events(path):
    """(time of the brightest frame, time of the loudest audio sample, video duration), all
    on the file's own timeline as a player presents it."""
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-vf",
                          "showinfo", "-f", "null", "-"], capture_output=True, text=True).stderr
    frames = [(float(t), float(m)) for t, m in
              re.findall(r"pts_time:([\d.]+).*?mean:\[([\d.]+)", log)]
    flash = max(frames, key=lambda f: f[1])[0]
    pcm = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-af",
                          "aresample=async=1:first_pts=0", "-ac", "1", "-ar", "16000", "-f",
                          "s16le", "-"], capture_output=True).stdout
    audio = np.abs(np.frombuffer(pcm, np.int16).astype(np.float32))
    click = float(np.argmax(audio)) / 16000
    return flash, click, frames


@pytest.mark.parametrize("kind", ["video starts late", "variable frame rate"])
def test_flash_and_click_stay_together(tmp_path, style_png, kind):
    delay, vfr = (0.4, False) if kind == "video starts late" else (0.0, True)
    src = flash_clip(tmp_path / "phone.mp4", video_delay=delay, vfr=vfr)
    f0, c0, src_frames = events(src)
    assert abs((f0 - c0) - 0.0) < 0.04, (f0, c0)  # the source is in sync
    out = tmp_path / "out.mp4"
    rep = stylize(src, style_png, out, settings=S, video=V).video
    f1, c1, out_frames = events(out)
    frame = 1 / 12 if vfr else 1 / 30
    assert abs((f1 - c1) - (f0 - c0)) <= frame, (f1, c1, f0, c0)
    assert rep.frames == len(src_frames) == len(out_frames)
    span_in = src_frames[-1][0] - src_frames[0][0]
    span_out = out_frames[-1][0] - out_frames[0][0]
    assert abs(span_out - span_in) <= frame, (span_in, span_out)  # the duration matches


def duration(path) -> float:
    """The file's duration as ffmpeg reports it (10 ms precision)."""
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True,
                         text=True).stderr
    h, m, sec = re.search(r"Duration: (\d+):(\d+):([\d.]+)", log).groups()
    return int(h) * 3600 + int(m) * 60 + float(sec)


@pytest.mark.parametrize("span", ["whole", "40f"])
def test_variable_rate_keeps_its_last_frame_and_reports_the_range_rate(tmp_path, style_png,
                                                                        span):
    """30 fps for 1 s, then 12 fps: the last frame lasts 1/12 s (not the file's average
    interval, nor nothing), a range ends where its next frame would begin, and the summary's
    rate is the range's (60 frames in 3.5 s), not the file's nominal one."""
    src = flash_clip(tmp_path / "phone.mp4", vfr=True)  # 60 frames, the last at 3.417 s
    out = tmp_path / "out.mp4"
    video = V.replace(duration=None if span == "whole" else span)
    rep = stylize(src, style_png, out, settings=S, video=video).video
    end = 3.5 if span == "whole" else 1 + 10 / 12  # the 40th frame begins at 1.833 s
    frames = 60 if span == "whole" else 40
    assert rep.frames == frames and rep.variable_rate
    assert abs(duration(out) - end) < 0.02, duration(out)  # the audio (4 s) cut there too
    assert rep.fps == pytest.approx(frames / end, rel=0.01)


def test_colour_bars_come_back_with_bt709_tags(tmp_path):
    """RGB frames -> yuv420p with the BT.709 matrix, tagged: a player decoding by the tags
    gets the colours back (untagged BT.601 output would be shifted by HD players)."""
    bars = np.zeros((64, 128, 3), np.uint8)
    colours = [(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191),
               (191, 0, 0), (0, 0, 191), (16, 16, 16)]
    for i, c in enumerate(colours):
        bars[:, i * 16:(i + 1) * 16] = c
    import cv2
    for k in range(3):
        cv2.imwrite(str(tmp_path / f"frame_{k:06d}.png"), bars[..., ::-1])
    out = tmp_path / "bars.mp4"
    encode_video(tmp_path, [f"frame_{k:06d}.png" for k in range(3)], out, Fraction(25),
                 colour=Colour())
    tags = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True,
                          text=True).stderr
    assert "yuv420p(tv, bt709, progressive)" in tags  # matrix, primaries, transfer: all BT.709
    raw = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(out), "-frames:v", "1", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True).stdout
    back = np.frombuffer(raw, np.uint8).reshape(64, 128, 3).astype(np.float32)
    inner = (slice(None), np.r_[[np.arange(i * 16 + 3, i * 16 + 13) for i in range(8)]].ravel())
    assert np.abs(back[inner] - bars[inner]).mean() < 2.0
    # the same bars read with BT.601 would be off by far more: the tag matters
    raw601 = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(out), "-frames:v", "1",
                             "-vf", "scale=in_color_matrix=bt601", "-f", "rawvideo",
                             "-pix_fmt", "rgb24", "-"], capture_output=True).stdout
    wrong = np.frombuffer(raw601, np.uint8).reshape(64, 128, 3).astype(np.float32)
    assert np.abs(wrong[inner] - bars[inner]).mean() > 4.0


def test_every_audio_track_kept_first_default_and_odd_names(tmp_path, style_png):
    src = tmp_path / "two tracks.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=10", "-f", "lavfi", "-i", "sine=440", "-f",
                    "lavfi", "-i", "sine=880", "-t", "0.6", "-map", "0:v", "-map", "1:a",
                    "-map", "2:a", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(src)], check=True)
    out = tmp_path / "50% preview 'x'.mp4"  # '%' and quotes: no ffmpeg syntax in names
    rep = stylize(src, style_png, out, settings=S, video=V).video
    assert rep.frames == 6 and rep.audio
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True,
                         text=True).stderr
    audio = [line for line in log.splitlines() if "Audio:" in line]
    assert len(audio) == 2 and "(default)" in audio[0] and "(default)" not in audio[1]
    assert "yuv420p(tv, bt709, progressive)" in log


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_subtitles_are_carried_and_trimmed_with_the_sound(tmp_path, style_png, ext):
    """A film's subtitles come back in the output (SRT in MKV, mov_text in MP4), their
    times moved with the part rendered (--start 1: a line at 1.5 s plays at 0.5 s, one
    before 1 s is left out); and the sound of an MKV cut at 1 s starts there, not at the
    key frame its seek lands on (the picture is not delayed under a second of extra sound)."""
    (tmp_path / "film.srt").write_text("1\n00:00:00,200 --> 00:00:00,700\nBefore\n\n"
                                       "2\n00:00:01,500 --> 00:00:01,900\nHello there\n")
    src = tmp_path / "film.mkv"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=10", "-f", "lavfi", "-i", "sine=440", "-i",
                    str(tmp_path / "film.srt"), "-t", "2", "-map", "0:v", "-map", "1:a", "-map",
                    "2:s", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-c:s",
                    "srt", str(src)], check=True)
    out = tmp_path / f"out{ext}"
    rep = stylize(src, style_png, out, settings=S, video=V.replace(start="1")).video
    assert rep.frames == 10 and rep.audio
    srt = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(out), "-map", "0:s:0", "-f",
                          "srt", "-"], capture_output=True, text=True).stdout
    assert "Hello there" in srt and "Before" not in srt, srt
    start = re.search(r"(\d\d):(\d\d):(\d\d),(\d\d\d) -->", srt).groups()
    assert abs(int(start[2]) + int(start[3]) / 1000 - 0.5) <= 0.05, srt
    log = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True,
                         text=True).stderr
    assert float(re.search(r"Duration: 00:00:([\d.]+)", log).group(1)) <= 1.1, log
    late = re.search(r"Video: .*?, start ([\d.]+)", log)
    assert "Subtitle:" in log and (late is None or float(late.group(1)) < 0.1), log


def test_disk_full_during_the_encode_keeps_the_frames(tmp_path, style_png, monkeypatch):
    from nstvideo.video.checkpoint import checkpoint_dir
    from nstvideo.errors import OutputError
    from nstvideo.media import writer
    from videokit import make_clip

    src = make_clip(tmp_path / "c.mp4", frames=4)
    out = tmp_path / "o.mp4"
    real = writer._run_ffmpeg
    full = subprocess.CompletedProcess([], 1, "", "av_interleaved_write_frame(): No space left "
                                       "on device\n")
    monkeypatch.setattr(writer, "_run_ffmpeg", lambda args: full)
    with pytest.raises(OutputError, match="disk is full.*run the same command again"):
        stylize(src, style_png, out, settings=S, video=V)
    assert not out.exists() and len(list(checkpoint_dir(out).glob("u*/frame_*.png"))) == 4
    monkeypatch.setattr(writer, "_run_ffmpeg", real)
    rep = stylize(src, style_png, out, settings=S, video=V).video  # the rerun: encode only
    assert rep.resumed == 4 and rep.frames == 4 and out.exists()


def damaged(src, folder, broken=(20, 21)):
    """`src` with its video frames `broken` (in decode order) made undecodable, as a bad sector
    or a broken download leaves them: each one's first NAL length set past its packet (the
    decoder rejects the packet whole). The audio is carried over untouched."""
    v, a, out = folder / "v.mp4", folder / "a.m4a", folder / "damaged.mp4"
    run = lambda *args: subprocess.run([FFMPEG, "-y", "-loglevel", "error", *map(str, args)],  # noqa: E731
                                       check=True, capture_output=True, text=True)
    run("-i", src, "-map", "0:v", "-c", "copy", "-movflags", "+faststart", v)  # packets in a row
    run("-i", src, "-map", "0:a", "-c", "copy", a)
    listing = run("-i", v, "-c", "copy", "-f", "framecrc", "-").stdout
    sizes = [int(line.split(",")[4]) for line in listing.splitlines()
             if line and not line.startswith("#")]
    data = bytearray(v.read_bytes())
    at = data.index(b"mdat") + 4
    assert int.from_bytes(data[at - 8:at - 4], "big") - 8 == sum(sizes)  # the layout assumed
    for k in broken:
        pos = at + sum(sizes[:k])
        data[pos:pos + 4] = b"\xff\xff\xff\xff"
    v.write_bytes(bytes(data))
    run("-i", v, "-i", a, "-map", "0:v", "-map", "1:a", "-c", "copy", out)
    return out


def test_a_damaged_stretch_is_skipped_and_what_follows_kept_in_time(tmp_path, style_png):
    """Two frames early in the clip cannot be decoded: the render skips them (holding the
    frame before) and goes on to the end, the flash and the click after them still together,
    where it used to stop at the first and call the file truncated."""
    src = damaged(flash_clip(tmp_path / "phone.mp4"), tmp_path)
    out = tmp_path / "out.mp4"
    with pytest.warns(UserWarning, match=r"damaged frame\(s\) that could not be decoded"):
        rep = stylize(src, style_png, out, settings=S, video=V).video
    f1, c1, out_frames = events(out)
    assert 70 <= rep.frames < 75 and len(out_frames) == rep.frames  # the two and no more lost
    assert abs(f1 - FLASH) <= 1 / 30 and abs(c1 - FLASH) <= 1 / 30, (f1, c1)
    assert abs(out_frames[-1][0] - 74 / 30) <= 1 / 30  # the last frame where it was
    times = [t for t, _ in out_frames]
    assert times == sorted(set(times))


def test_every_past_the_range_is_one_frame_for_the_range(tmp_path, style_png):
    """--every larger than the frames rendered: one frame shown for the range's duration,
    with the range's sound (it was shown for every/fps seconds: 55 minutes, whole sound)."""
    clip = tmp_path / "c.mp4"
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=64x48:rate=30", "-f", "lavfi", "-i", "sine=duration=4",
                    "-t", "4", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    str(clip)], check=True)
    out = tmp_path / "o.mp4"
    with pytest.warns(UserWarning, match="--every 100000 is more than the 6 frames"):
        rep = stylize(clip, style_png, out, settings=S,
                      video=V.replace(every=100000, duration="6f"))
    assert rep.video.frames == 1
    info = subprocess.run([FFMPEG, "-hide_banner", "-i", str(out)], capture_output=True,
                          text=True).stderr
    h, m, sec = re.search(r"Duration: (\d+):(\d+):([\d.]+)", info).groups()
    assert abs(int(h) * 3600 + int(m) * 60 + float(sec) - 0.2) < 0.05, info
