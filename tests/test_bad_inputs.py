"""Every bad input named in the README and the robustness issue, through the command line:
one line on stderr, no traceback, the right exit code, and every file that was there before
unchanged (nothing of the user's is lost or overwritten)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import content_array, style_array, write_rgb
from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.cli import main
from test_phone import heic_with_size, truncated_heic
from test_photos import png_header_only
from videokit import FFMPEG, make_clip


class Hostile:
    """A pickle that would create a file if it were ever unpickled with code allowed."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def bad_weights(kind):
    def build(t):
        path = t / f"w_{kind}.pth"
        if kind == "shapes":  # right names, wrong convolution shapes
            torch.save({f"features.{i}.weight": torch.zeros(8, 3, 3, 3) for i in range(40)}
                       | {f"features.{i}.bias": torch.zeros(8) for i in range(40)}, path)
        elif kind == "random":
            path.write_bytes(np.random.default_rng(0).bytes(5000))
        else:
            with open(path, "wb") as f:
                pickle.dump(Hostile(str(t / "pwned")), f)
        return [t / "photo.png", t / "style.png", "--weights", path, "-o", t / "w.png"]
    return build


def bad_net(kind):
    """--net files that are not a network saved by nstvideo."""
    def build(t):
        path = t / f"n_{kind}.pt"
        if kind == "other torch file":
            torch.save({"a": torch.zeros(3)}, path)
        elif kind == "truncated":
            from nstvideo.net import TranslationNet, net_bytes
            path.write_bytes(net_bytes(TranslationNet())[:5000])
        elif kind == "text":
            path.write_text("not a network")
        else:
            with open(path, "wb") as f:
                pickle.dump(Hostile(str(t / "pwned")), f)
        return [t / "clip.mp4", t / "style.png", "--method", "keyframes", "--net", path]
    return build


def fifo(which):
    """A named pipe where a file is expected: reading it would wait forever."""
    def build(t):
        os.mkfifo(t / "pipe.jpg")
        return ([t / "pipe.jpg", t / "style.png"] if which == "input"
                else [t / "photo.png", t / "pipe.jpg", "-o", t / "f.png"])
    return build


def song_with_cover(ext):
    """An audio file with its album cover (a one-frame 'video' stream OpenCV opens)."""
    def build(t):
        path = t / f"song{ext}"
        subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                        "sine=duration=1", "-f", "lavfi", "-i", "color=red:size=64x64",
                        "-frames:v", "1", "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v",
                        "mjpeg", "-disposition:v", "attached_pic", str(path)], check=True)
        return [path, t / "style.png", "--fps", "1"] if ext == ".mp4" else [path, t / "style.png"]
    return build


def first_layer_only(t):
    path = t / "w_part.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3),
                "features.0.bias": torch.zeros(64)}, path)
    return [t / "photo.png", t / "style.png", "--weights", path, "-o", t / "w.png"]


def flat_clip(t):
    path = t / "wide.mp4"  # 1280x272: at --size 64 the short side would be 14 px
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x272:rate=10", "-frames:v", "3", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    return [path, t / "style.png", "--size", "64"]


def users_frames_folder(t):
    folder = checkpoint_dir(t / "clip_style.mp4")
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    return [t / "clip.mp4", t / "style.png", "--restart"]


def photo(t, w, h):
    write_rgb(t / "odd.png", cv2.resize(content_array(), (w, h)))
    return t / "odd.png"


P = ["{t}/photo.png", "{t}/style.png"]
CASES = {
    # name: (args or a builder of them, exit code, a fragment of the line)
    "missing input": (["{t}/nope.jpg", "{t}/style.png"], 2, "not found"),
    "missing style": (["{t}/photo.png", "{t}/nope.png"], 2, "not found"),
    "not an image": (["{t}/notes.txt", "{t}/style.png", "-o", "{t}/n.png"], 2, "not a readable"),
    "empty folder": (["{t}/empty", "{t}/style.png"], 2, "no images"),
    "output exists": ([*P, "-o", "{t}/exists.png"], 4, "--overwrite"),
    "output folder missing": ([*P, "-o", "{t}/no/such/o.png"], 4, "does not exist"),
    "bad output extension": ([*P, "-o", "{t}/o.xyz"], 4, "unsupported"),
    "output is the style": ([*P, "-o", "{t}/style.png", "--overwrite"], 4, "is an input"),
    "video output is the style": (["{t}/clip.mp4", "{t}/style.gif", "-o", "{t}/style.gif",
                                   "--overwrite"], 4, "is an input"),
    "output is the init": ([*P, "--init", "{t}/init.jpg", "-o", "{t}/init.jpg",
                            "--overwrite"], 4, "is an input"),
    "output is the weights": ([*P, "--weights", "{t}/exists.png", "-o", "{t}/exists.png",
                               "--overwrite"], 4, "is an input"),
    "restart on a user's folder": (users_frames_folder, 4, "not an nstvideo checkpoint"),
    "size 16 on 4:3": (lambda t: [photo(t, 64, 48), t / "style.png", "--size", "16"], 2,
                       "--size 22 or more"),
    "size 16 on a panorama": (lambda t: [photo(t, 200, 20), t / "style.png", "--size", "16"],
                              2, "--size 160 or more"),
    "video too flat for the flow": (flat_clip, 2, "--size 76 or more"),
    "size below 16": ([*P, "--size", "8"], 2, "--size"),
    "style weights nan": ([*P, "--style-weights", "nan,1"], 2, "finite"),
    "style weight inf": ([*P, "--style-weight", "inf"], 2, "finite"),
    "layer weight nan": ([*P, "--style-layers", "relu1_1:nan"], 2, "finite"),
    "layer weight huge negative": ([*P, "--style-layers", "relu1_1:-1e9"], 2, "0 or more"),
    "unknown layer": ([*P, "--style-layers", "relu9_1"], 2, "unknown VGG-19 layer"),
    "duration 1e400": (["{t}/clip.mp4", "{t}/style.png", "--duration", "1e400"], 2, "finite"),
    "start not a time": (["{t}/clip.mp4", "{t}/style.png", "--start", "soon"], 2, "not a time"),
    "every 0": (["{t}/clip.mp4", "{t}/style.png", "--every", "0"], 2, "--every"),
    "workers 0": (["{t}/clip.mp4", "{t}/style.png", "--workers", "0"], 2, "--workers"),
    "no Ray cluster running": (["{t}/clip.mp4", "{t}/style.png", "--ray", "auto"], 2,
                               "ray start --head"),
    # a mistyped address: at once (nothing listens there), not minutes of Ray's retries
    "Ray cluster address wrong": (["{t}/clip.mp4", "{t}/style.png", "--ray", "127.0.0.1:1"], 3,
                                  "ray start --head"),
    "Ray address not one": (["{t}/clip.mp4", "{t}/style.png", "--ray", "head:port"], 2,
                            "HOST:PORT"),
    "threads 0": (["{t}/clip.mp4", "{t}/style.png", "--threads", "0"], 2, "--threads"),
    "net missing": (["{t}/clip.mp4", "{t}/style.png", "--method", "keyframes", "--net",
                     "{t}/nope.pt"], 2, "no such file"),
    "net a text file": (bad_net("text"), 2, "not a network saved by nstvideo"),
    "net another torch file": (bad_net("other torch file"), 2, "not a network saved"),
    "net truncated": (bad_net("truncated"), 2, "not a network saved"),
    "net hostile pickle": (bad_net("hostile"), 2, "not a network saved"),
    "net without keyframes": (["{t}/clip.mp4", "{t}/style.png", "--net", "{t}/exists.png"], 2,
                              "--method keyframes"),
    "keyframes 0": (["{t}/clip.mp4", "{t}/style.png", "--method", "keyframes", "--keyframes",
                     "0"], 2, "--keyframes"),
    "save-net over the style": (["{t}/clip.mp4", "{t}/style.png", "--method", "keyframes",
                                 "--save-net", "{t}/style.png", "--overwrite"], 4, "is an input"),
    "save-net exists": (["{t}/clip.mp4", "{t}/style.png", "--method", "keyframes",
                         "--save-net", "{t}/exists.png"], 4, "--save-net"),
    "fps 0 on frames": (["{t}/empty", "{t}/style.png", "--fps", "0"], 2, "--fps"),
    "weights of the wrong shapes": (bad_weights("shapes"), 3, "(64, 3, 3, 3)"),
    "random weights file": (bad_weights("random"), 3, "not a torch.save'd VGG-19"),
    "hostile weights file": (bad_weights("hostile"), 3, "not a torch.save'd VGG-19"),
    "unknown device": ([*P, "--device", "gpu"], 3, "unknown device"),
    "a GPU this machine lacks": ([*P, "--device", "cuda:7"], 3, "cuda"),
    "decompression bomb": (lambda t: [png_header_only(t / "bomb.png", 60000, 60000),
                                      t / "style.png"], 2, "100 MP limit"),
    "broken video": (["{t}/broken.mp4", "{t}/style.png"], 2, "video"),
    "truncated HEIC": (lambda t: [truncated_heic(t / "IMG_1.HEIC"), t / "style.png"], 2,
                       "not a readable image"),
    "HEIC bomb by its header": (lambda t: [heic_with_size(t / "IMG_2.HEIC", 60000, 60000),
                                           t / "style.png"], 2, "100 MP limit"),
    "an audio file with cover art": (song_with_cover(".m4a"), 2, "sound but no picture"),
    "the same named .mp4, with --fps": (song_with_cover(".mp4"), 2, "with cover art"),
    "a FIFO as the input": (fifo("input"), 2, "not a file or a folder"),
    "a FIFO as the style": (fifo("style"), 2, "not a file or a folder"),
    "weights with the first layer only": (first_layer_only, 3, "only part of VGG-19"),
    "output folder is a file": ([*P, "-o", "{t}/photo.png/x.png"], 4, "is a file, not a folder"),
    "input name too long": (["{t}/" + "a" * 256 + ".jpg", "{t}/style.png"], 2,
                            "too long"),
    "output folder name too long": ([*P, "-o", "{t}/" + "b" * 300 + "/o.png"], 4, "255"),
    "iterations absurd": ([*P, "--iterations-first", "999999999"], 2, "--iterations-first"),
    "memory budget below the process": ([*P, "--max-memory", "0.1"], 3, "--max-memory"),
    "size past the ceiling": ([*P, "--size", "20000"], 2, "--size"),
    "tile below 16": ([*P, "--tile", "8"], 2, "--tile"),
    "unknown option": ([*P, "--bogus"], 2, "--bogus"),
    "bad choice": ([*P, "--temporal", "sideways"], 2, "--temporal"),
    "mask of another shape": ([*P, "--mask", "{t}/wide_mask.png", "-o", "{t}/m.png"], 2,
                              "another shape"),
    "masks neither one nor one per style": (
        ["{t}/photo.png", "{t}/style.png", "{t}/style.png", "{t}/style.png", "--mask",
         "{t}/mask.png", "--mask", "{t}/mask.png", "-o", "{t}/m.png"], 2, "2 times for 3"),
    "mask truncated": ([*P, "--mask", "{t}/cut_mask.png", "-o", "{t}/m.png"], 2,
                       "cut_mask.png"),
    "video mask of another shape": (["{t}/clip.mp4", "{t}/style.png", "--mask",
                                     "{t}/wide_mask.png"], 2, "another shape than the frames"),
    "mask clip of another length": (["{t}/clip.mp4", "{t}/style.png", "--mask",
                                     "{t}/mask_frames"], 2, "has 2 frames and clip.mp4 3"),
    "output is the mask": ([*P, "--mask", "{t}/mask.png", "-o", "{t}/mask.png",
                            "--overwrite"], 4, "is an input"),
}


@pytest.fixture
def place(tmp_path):
    t = tmp_path
    write_rgb(t / "photo.png", content_array())
    write_rgb(t / "style.png", style_array())
    write_rgb(t / "init.jpg", content_array())
    write_rgb(t / "exists.png", content_array())
    cv2.imwrite(str(t / "style.gif"), style_array())  # OpenCV writes no GIF: fall back
    if not (t / "style.gif").exists():
        (t / "style.gif").write_bytes((t / "style.png").read_bytes())
    (t / "notes.txt").write_text("not an image")
    mask = np.zeros((48, 64), np.uint8)
    mask[:, :32] = 255
    cv2.imwrite(str(t / "mask.png"), mask)
    cv2.imwrite(str(t / "wide_mask.png"), np.full((20, 64), 255, np.uint8))
    (t / "cut_mask.png").write_bytes((t / "mask.png").read_bytes()[:60])
    (t / "mask_frames").mkdir()  # 2 mask frames for the 3-frame clip
    for i in range(2):
        cv2.imwrite(str(t / "mask_frames" / f"m{i}.png"), np.full((36, 48), 255, np.uint8))
    (t / "empty").mkdir()
    (t / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(300))
    make_clip(t / "clip.mp4", size=(48, 36), frames=3, audio=False)
    return t


def snapshot(root):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line(place, capsys, name):
    args, code, fragment = CASES[name]
    args = args(place) if callable(args) else [a.format(t=place) for a in args]
    before = snapshot(place)
    try:
        rc = main([str(a) for a in [*["stylize"], *args, "--iterations", "1", "--quiet"]])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("nstvideo: error: "), err
    assert "Traceback" not in out + err and fragment in lines[0], lines[0]
    assert not (place / "pwned").exists()  # a hostile pickle ran no code
    after = snapshot(place)
    assert all(after.get(p) == v for p, v in before.items())  # nothing of the user's changed
    assert not [p for p in set(after) - set(before)]  # and nothing left behind


def test_noise_of_libraries_stays_off_the_terminal(tmp_path):
    """libpng's own warning (a bad colour profile) is not shown unless --verbose."""
    import struct
    import zlib

    ok, buf = cv2.imencode(".png", content_array())
    data = bytes(buf)
    body = b"bad\x00\x00" + zlib.compress(b"x" * 10)
    icc = (struct.pack(">I", len(body)) + b"iCCP" + body
           + struct.pack(">I", zlib.crc32(b"iCCP" + body) & 0xFFFFFFFF))
    (tmp_path / "p.png").write_bytes(data[:33] + icc + data[33:])
    write_rgb(tmp_path / "s.png", style_array())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(__import__("pathlib").Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    base = [sys.executable, "-m", "nstvideo", "stylize", str(tmp_path / "p.png"),
            str(tmp_path / "s.png"), "--size", "32", "--iterations", "1", "--quiet"]
    quiet = subprocess.run(base + ["-o", str(tmp_path / "a.png")], capture_output=True,
                           text=True, env=env)
    loud = subprocess.run(base + ["-o", str(tmp_path / "b.png"), "--verbose"],
                          capture_output=True, text=True, env=env)
    assert quiet.returncode == 0 and loud.returncode == 0, quiet.stderr + loud.stderr
    assert "libpng" in loud.stderr and "libpng" not in quiet.stderr
    (tmp_path / "bad.gif").write_bytes(b"GIF89a")  # OpenCV logs an [ERROR:...] of its own
    broken = subprocess.run([sys.executable, "-m", "nstvideo", "stylize", str(tmp_path / "bad.gif"),
                             str(tmp_path / "s.png")], capture_output=True, text=True, env=env)
    assert broken.returncode == 2 and broken.stderr.count("\n") == 1, broken.stderr
    assert broken.stderr.startswith("nstvideo: error: "), broken.stderr
    ok, jpg = cv2.imencode(".jpg", content_array())  # bytes before its end: libjpeg warns
    (tmp_path / "padded.jpg").write_bytes(bytes(jpg)[:-2] + bytes(42) + b"\xff\xd9")
    padded = subprocess.run(base[:4] + [str(tmp_path / "padded.jpg")] + base[5:]
                            + ["-o", str(tmp_path / "c.png")], capture_output=True, text=True,
                            env=env)
    assert padded.returncode == 0 and "JPEG" not in padded.stderr, padded.stderr
