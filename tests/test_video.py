"""Video renders end to end on tiny synthetic clips: container, rate, audio, ranges, every
input kind, resume, and temporal steadiness."""

import shutil
import subprocess
import warnings

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import nstvideo.video.frames as frames_module
from nstvideo.video.render import stylize_video
from nstvideo.api import stylize
from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.cli import app
from nstvideo.errors import InputError
from nstvideo.media.reader import read_image
from nstvideo.video.flow import FlowEstimator, consistency_mask, warp
from nstvideo.settings import StyleSettings, VideoSettings

from conftest import style_array, write_rgb
from videokit import FFMPEG, kept, make_clip, moving_frames, probe

S = StyleSettings(size=40)
V = VideoSettings(iterations=2, iterations_first=3)
runner = CliRunner()


def one_frame_time(fps_text="29.97"):
    return 1.0 / float(fps_text)


def test_mp4_keeps_rate_audio_and_duration(tmp_path, style_png):
    src = make_clip(tmp_path / "clip.mp4", size=(67, 51), frames=8)  # odd sizes
    rep = stylize(src, style_png, settings=S.replace(size=41), video=V).video  # 41x31 -> 40x30
    out = tmp_path / "clip_monet.mp4"
    assert rep.output == out and rep.frames == 8 and rep.audio
    info, ref = probe(out), probe(src)
    assert info["video"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["width"] % 2 == 0 and info["height"] % 2 == 0 and info["width"] == 40
    assert info["frames"] == 8 and info["fps_text"] == "29.97"
    assert abs(info["fps"] - 30000 / 1001) < 1e-3
    assert abs(info["v_duration"] - ref["v_duration"]) <= one_frame_time()
    assert info["audio"] and abs(info["a_duration"] - info["v_duration"]) <= one_frame_time()
    assert not checkpoint_dir(out).exists()  # checkpoints removed once encoded


@pytest.mark.parametrize("ext,out_name", [(".mov", "o.mov"), (".mkv", "o.mkv"),
                                          (".avi", "o.mp4"), (".webm", "o.webm"),
                                          (".gif", "o.gif")])
def test_every_container(tmp_path, style_png, ext, out_name):
    src = make_clip(tmp_path / f"clip{ext}", size=(48, 36), frames=6, audio=ext != ".gif",
                    rate="12")
    rep = stylize(src, style_png, tmp_path / out_name, settings=S, video=V).video
    info = probe(tmp_path / out_name)
    # GIF stores frame delays in 1/100 s: 12 fps becomes 8 cs a frame
    fps = 100 / round(100 / 12) if ".gif" in (ext, out_name[-4:]) else 12
    assert info["frames"] == 6 and abs(info["fps"] - fps) < 0.01
    assert rep.audio == (ext != ".gif" and not out_name.endswith(".gif")) == info["audio"]


@pytest.mark.parametrize("ext", [".webp", ".png"])
def test_an_animated_webp_or_png_comes_back_animated(tmp_path, style_png, ext):
    """A sticker or web animation (animated WebP, APNG) is a clip: every frame painted, with
    its timing and looping, back in its own format (it was painted as one still)."""
    rng = np.random.default_rng(0)
    colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40), (40, 220, 220),
               (220, 40, 220)]
    source = [np.clip(np.array(c) + rng.normal(0, 12, (36, 48, 3)), 0, 255).astype(np.uint8)
              for c in colours]
    src = tmp_path / f"anim{ext}"
    first, *rest = (Image.fromarray(f) for f in source)
    first.save(src, save_all=True, append_images=rest, duration=100, loop=0)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        rep = stylize(src, style_png, settings=S, video=V).video
    assert not [w for w in said if "transparent" in str(w.message)]  # opaque: nothing to say
    out = tmp_path / f"anim_monet{ext}"
    assert rep.output == out and rep.frames == 6
    with Image.open(out) as im:
        assert im.format == ("WEBP" if ext == ".webp" else "PNG") and im.n_frames == 6
        assert im.info.get("loop") == 0 and im.size == (40, 30)
        durations, frames = [], []
        for i in range(6):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB"), dtype=float))
            durations.append(im.info["duration"])  # (WebP: known once the frame is read)
    assert abs(sum(durations) - 600) <= 6, durations  # 6 frames of 100 ms
    small = [cv2.resize(f, (40, 30), interpolation=cv2.INTER_AREA).astype(float) for f in source]
    for k, frame in enumerate(frames):  # each painted frame is its own source frame's
        nearest = min(range(6), key=lambda j: np.abs(frame - small[j]).mean())
        assert nearest == k, (k, nearest)
    assert read_image(src).shape[:2] == (36, 48)  # the first frame is still a picture to read


def test_a_transparent_sticker_is_said_to_lose_its_transparency(tmp_path, style_png):
    frames = []
    for i in range(3):
        a = np.zeros((36, 48, 4), np.uint8)
        a[8:28, 4 + 6 * i:24 + 6 * i] = (200, 60, 60, 255)  # a square moving over nothing
        frames.append(Image.fromarray(a, "RGBA"))
    frames[0].save(tmp_path / "sticker.png", save_all=True, append_images=frames[1:],
                   duration=100, loop=0)
    with pytest.warns(UserWarning, match="sticker.png has transparent pixels"):
        rep = stylize(tmp_path / "sticker.png", style_png, settings=S, video=V).video
    assert rep.frames == 3


def test_a_video_of_an_extension_not_listed_is_found_by_its_content(tmp_path, style_png):
    """A camcorder's .m2ts (AVCHD) is a video, though no list of extensions here names it; a
    file that is neither picture nor video is still refused as an image, in one line."""
    src = make_clip(tmp_path / "00001.m2ts", size=(48, 36), frames=6, rate="12")
    rep = stylize(src, style_png, settings=S, video=V).video
    assert rep.output == tmp_path / "00001_monet.mp4" and rep.frames == 6 and rep.audio
    (tmp_path / "notes.xyz").write_bytes(b"not a picture, not a video" * 40)
    with pytest.raises(InputError, match="notes.xyz is not a readable image"):
        stylize(tmp_path / "notes.xyz", style_png, settings=S)


def test_no_audio_and_folder_outputs(tmp_path, style_png):
    src = make_clip(tmp_path / "mute.mp4", frames=6, audio=False)
    rep = stylize(src, style_png, tmp_path / "frames_out", settings=S, video=V).video
    files = sorted((tmp_path / "frames_out").iterdir())
    assert rep.frames == 6 and len(files) == 6 and files[0].name == "frame_000000.png"
    assert cv2.imread(str(files[0])).shape == (30, 40, 3)


def test_numbered_frames_folder_to_video_and_frames(tmp_path, style_png):
    folder = moving_frames(tmp_path / "shots", n=5, size=(45, 33))
    r = runner.invoke(app, ["stylize", str(folder), style_png, "--fps", "24", "-o",
                            str(tmp_path / "shots.mp4"), "--size", "40", "--iterations", "2",
                            "--quiet"])
    assert r.exit_code == 0, r.stderr
    info = probe(tmp_path / "shots.mp4")
    assert info["frames"] == 5 and abs(info["fps"] - 24) < 0.01 and not info["audio"]
    rep = stylize(folder, style_png, settings=S, video=V.replace(sequence=True)).video
    assert rep.output == tmp_path / "shots_monet"
    assert sorted(p.name for p in rep.output.iterdir()) == [f"frame_{i:04d}.png" for i in range(1, 6)]


def test_range_and_every(tmp_path, style_png):
    src = make_clip(tmp_path / "c.mp4", frames=12, rate="12")
    out = tmp_path / "part.mp4"
    rep = stylize(src, style_png, out, settings=S,
                  video=V.replace(start="3f", duration="0.5", every=2)).video
    info = probe(out)
    assert rep.frames == 3 and info["frames"] == 3 and abs(info["fps"] - 6) < 0.01
    assert abs(info["a_duration"] - 0.5) <= 1 / 6 and abs(info["v_duration"] - 0.5) <= 1 / 6


class Interrupt:
    """Counts renders; raises KeyboardInterrupt on render number `at` (1-based)."""

    def __init__(self, monkeypatch, at=None):
        self.calls, self.at = 0, at
        original = frames_module.FrameRenderer.render

        def render(renderer, *a, **k):
            self.calls += 1
            if self.at is not None and self.calls == self.at:
                raise KeyboardInterrupt
            return original(renderer, *a, **k)

        monkeypatch.setattr(frames_module.FrameRenderer, "render", render)


def test_resume_continues_after_an_interruption(tmp_path, style_png, monkeypatch):
    src = make_clip(tmp_path / "long.mp4", frames=9)
    out = tmp_path / "long_monet.mp4"
    counter = Interrupt(monkeypatch, at=5)
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style_png, settings=S, video=V, keep_frames=True)
    assert not out.exists()  # no half-written output under the final name
    assert len(list(checkpoint_dir(out).glob("u*/frame_*.png"))) == 4
    assert len(list(checkpoint_dir(out).glob("u*/still_*.png"))) == 2  # the last two
    counter.calls, counter.at = 0, None
    rep = stylize(src, style_png, settings=S, video=V, keep_frames=True).video
    assert rep.resumed == 4 and counter.calls == 5  # continued, not restarted
    assert probe(out)["frames"] == 9

    # the same run without interruption gives the same frames (the PNGs: an encoder may
    # code equal frames differently beside different ones)
    ref = tmp_path / "ref.mp4"
    assert stylize(src, style_png, ref, settings=S, video=V, keep_frames=True).video.frames == 9
    resumed, whole = kept(out), kept(ref)
    assert len(resumed) == len(whole) == 9
    assert all(np.array_equal(a, b) for a, b in zip(resumed, whole))


def test_changed_settings_refuse_to_resume(tmp_path, style_png, monkeypatch):
    src = make_clip(tmp_path / "c.mp4", frames=6)
    counter = Interrupt(monkeypatch, at=3)
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style_png, settings=S, video=V)
    counter.at = None
    with pytest.raises(InputError, match="--restart") as e:
        stylize(src, style_png, settings=S, video=V.replace(iterations=3))
    assert "video" in str(e.value)
    counter.calls = 0
    rep = stylize(src, style_png, settings=S, video=V.replace(iterations=3), restart=True).video
    assert rep.resumed == 0 and counter.calls == 6


def test_the_default_temporal_weight_resumes_as_the_value_it_means(tmp_path, style_png,
                                                                   monkeypatch):
    """A render records the temporal weight it used, not 'default': one begun with the default
    resumes with the same weight given outright (and renders begun before the default became
    per-method resume), and refuses another."""
    src = make_clip(tmp_path / "c.mp4", frames=5)
    counter = Interrupt(monkeypatch, at=3)
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style_png, settings=S, video=V)
    counter.at = None
    with pytest.raises(InputError, match="--restart"):
        stylize(src, style_png, settings=S, video=V.replace(temporal_weight=300.0))
    rep = stylize(src, style_png, settings=S, video=V.replace(temporal_weight=1000.0)).video
    assert rep.resumed == 2 and rep.frames == 5


def test_flow_is_steadier_than_independent_frames(tmp_path):
    folder = moving_frames(tmp_path / "m", n=6, size=(64, 48), speed=2)
    style = write_rgb(tmp_path / "s.png", style_array(64, seed=3))
    errors = {}
    for mode in ("none", "flow"):
        out = tmp_path / f"out_{mode}"
        stylize(folder, style, out, settings=StyleSettings(size=64),
                video=VideoSettings(temporal=mode, iterations=8, iterations_first=20,
                                    sequence=True))
        frames = [cv2.imread(str(p)).astype(np.float32) for p in sorted(out.iterdir())]
        content = [cv2.imread(str(p)) for p in sorted(folder.iterdir())]
        est = FlowEstimator()
        errs = []
        for t in range(1, len(frames)):
            back, fwd = est.flow(content[t], content[t - 1]), est.flow(content[t - 1], content[t])
            mask = consistency_mask(back, fwd)[..., None]
            errs.append(float((mask * (frames[t] - warp(frames[t - 1], back)) ** 2).sum()
                              / (mask.sum() * 3)))
        errors[mode] = np.mean(errs)
    assert errors["flow"] < 0.5 * errors["none"], errors


def test_scene_cut_restarts_the_chain(tmp_path, style_png):
    folder = moving_frames(tmp_path / "cut", n=6, size=(48, 40))
    files = sorted(folder.iterdir())
    for p in files[3:]:  # a different shot from frame 4 on
        img = cv2.imread(str(p))
        cv2.imwrite(str(p), 255 - img[:, ::-1])
    rep = stylize(folder, style_png, tmp_path / "o.mp4", settings=S, video=V).video
    assert rep.scene_cuts == [3]


def run_cli(*args):
    return runner.invoke(app, ["stylize", *map(str, args), "--size", "40", "--iterations", "2",
                               "--quiet"])


def clean_error(r, fragment):
    lines = r.stderr.strip().splitlines()
    assert r.exit_code != 0 and len(lines) == 1 and "Traceback" not in r.output, r.output
    assert fragment in lines[0], lines[0]


def test_bad_video_inputs(tmp_path, style_png):
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video at all")
    clean_error(run_cli(fake, style_png), "cannot be opened as a video")
    sound = tmp_path / "sound.mp4"  # an audio file named as a video
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=1", str(sound)], check=True)
    clean_error(run_cli(sound, style_png), "has sound but no picture")
    good = make_clip(tmp_path / "good.mp4", frames=30)
    data = good.read_bytes()
    (tmp_path / "trunc.mp4").write_bytes(data[: len(data) // 3])  # moov atom cut off
    clean_error(run_cli(tmp_path / "trunc.mp4", style_png), "trunc.mp4")
    clean_error(run_cli(good, style_png, "-o", tmp_path / "x.avi"), "unsupported output")
    clean_error(run_cli(good, style_png, "-o", tmp_path / "no" / "x.mp4"), "does not exist")
    clean_error(run_cli(good, style_png, "--start", "soon"), "not a time")
    clean_error(run_cli(good, style_png, "--start", "999"), "past the end")
    with pytest.raises(InputError, match="use auto, bilinear, bicubic or adaptive"):
        stylize_video(good, style_png, tmp_path / "w.mp4",
                               video=VideoSettings(warp="lanczos"))
    assert run_cli(good, style_png, "--warp", "lanczos").exit_code == 2  # usage error
    (tmp_path / "good_monet.mp4").write_bytes(b"mine")
    clean_error(run_cli(good, style_png), "--overwrite")
    assert (tmp_path / "good_monet.mp4").read_bytes() == b"mine"


def test_mixed_sizes_and_bad_fps(tmp_path, style_png):
    folder = moving_frames(tmp_path / "mixed", n=3, size=(48, 40))
    shutil.copy(folder / "frame_0001.png", tmp_path / "keep.png")
    cv2.imwrite(str(folder / "frame_0002.png"), np.zeros((20, 20, 3), np.uint8))
    clean_error(run_cli(folder, style_png, "-o", tmp_path / "m.mp4"), "differ in size")
    r = run_cli(folder, style_png, "--fps", "0", "-o", tmp_path / "m.mp4")
    assert r.exit_code == 2 and "Traceback" not in r.output
    with pytest.raises(InputError, match="frame rate"):
        stylize(moving_frames(tmp_path / "ok", n=2), style_png, tmp_path / "o.mp4",
                settings=S, video=V.replace(fps=5000))


def test_still_background_does_not_drift(tmp_path, style_png):
    """A held frame with a small square crossing it: the background's stylization stays put."""
    bg = cv2.GaussianBlur(np.random.default_rng(5).integers(0, 256, (40, 48, 3), np.uint8), (5, 5), 0)
    folder = tmp_path / "still"
    folder.mkdir()
    for t in range(12):
        f = bg.copy()
        f[30:38, 3 * t:3 * t + 8] = (40, 40, 230)
        cv2.imwrite(str(folder / f"f_{t:03d}.png"), f)
    rep = stylize(folder, style_png, tmp_path / "o", settings=StyleSettings(size=48),
                  video=VideoSettings(iterations=6, iterations_first=20, sequence=True)).video
    frames = [cv2.imread(str(p)).astype(np.float32) for p in sorted((tmp_path / "o").iterdir())]
    assert rep.frames == 12 and rep.scene_cuts == []
    region = (slice(0, 24), slice(None))  # never touched by the square
    drift = np.abs(frames[-1][region] - frames[1][region]).mean()
    darkening = frames[1][region].mean() - frames[-1][region].mean()
    assert drift < 4 and abs(darkening) < 2, (drift, darkening)


def test_a_frame_goes_to_the_host_once_and_is_warped_where_it_lives(tmp_path, style_png,
                                                                      monkeypatch):
    """Per frame, one image copy from the device (the result, for the writer) and one to it
    (the content): the previous result is warped, held and filled on the device, not copied
    out, warped by the CPU and copied back (counted here on the CPU, where the same calls
    run: on a GPU each is a transfer)."""
    counts = {"to_tensor": 0, "to_image": 0}
    for name in counts:
        real = getattr(frames_module, name)

        def counted(*a, _real=real, _name=name, **k):
            counts[_name] += 1
            return _real(*a, **k)
        monkeypatch.setattr(frames_module, name, counted)
    src = make_clip(tmp_path / "c.mp4", frames=6)
    rep = stylize(src, style_png, tmp_path / "o.mp4", settings=S,
                  video=V.replace(scene_cuts=False)).video
    assert rep.frames == 6
    assert counts == {"to_tensor": 6, "to_image": 6}, counts
