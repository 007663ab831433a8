"""The command as a user types it: outputs, names, folders, and every bad input's one line."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nstvideo.cli import app
from nstvideo.media.reader import read_image

from conftest import content_array, write_rgb
from videokit import make_clip

FAST = ["--size", "40", "--iterations", "3", "--quiet"]
runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["stylize", *map(str, args)])


def assert_clean_error(result, *fragments):
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nstvideo: error: "), result.stderr
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in lines[0]


def test_image_default_name_and_size(tmp_path, content_png, style_png):
    r = run(content_png, style_png, *FAST)
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "photo_monet.png"
    assert read_image(out).shape == (30, 40, 3)


def test_output_option_and_two_styles(tmp_path, content_png, style_png, style2_png):
    r = run(content_png, style_png, style2_png, "--style-weights", "0.7,0.3", "-o",
            tmp_path / "x.jpg", *FAST)
    assert r.exit_code == 0, r.stderr
    assert read_image(tmp_path / "x.jpg").shape == (30, 40, 3)
    assert not (tmp_path / "photo_monet_vangogh.png").exists()


def test_existing_output_is_kept_without_overwrite(tmp_path, content_png, style_png):
    out = tmp_path / "photo_monet.png"
    out.write_bytes(b"mine")
    assert_clean_error(run(content_png, style_png, *FAST), "already exists", "--overwrite")
    assert out.read_bytes() == b"mine"
    assert run(content_png, style_png, "--overwrite", *FAST).exit_code == 0
    assert read_image(out).shape == (30, 40, 3)


def test_folder_reports_failures_and_does_the_rest(tmp_path, style_png):
    src = tmp_path / "holiday"
    src.mkdir()
    write_rgb(src / "a.png", content_array())
    write_rgb(src / "b.jpg", content_array(40, 30))
    (src / "c.png").write_bytes(b"broken")
    r = run(src, style_png, *FAST)
    assert r.exit_code == 1
    out = tmp_path / "holiday_monet"
    assert sorted(p.name for p in out.iterdir() if p.name[0] != ".") == ["a.png", "b.jpg"]
    assert read_image(out / "b.jpg").shape == (40, 30, 3)
    assert "c.png" in r.stderr and "1 of 3 images failed" in r.stderr
    assert "Traceback" not in r.output


def test_a_camera_roll_of_photos_and_videos_says_what_it_left_out(tmp_path, style_png):
    """A phone's folder mixes photos and clips: the photos are done and the clips named (not
    passed over unseen); a folder of clips alone is refused in one line naming one."""
    roll = tmp_path / "roll"
    roll.mkdir()
    write_rgb(roll / "IMG_1.jpg", content_array())
    make_clip(roll / "IMG_2.MOV", size=(48, 36), frames=3, audio=False)
    (roll / ".IMG_3.mp4").write_bytes(b"hidden")
    moving = [Image.fromarray(content_array()), Image.fromarray(content_array()[::-1])]
    moving[0].save(roll / "IMG_4.webp", save_all=True, append_images=moving[1:], duration=100)
    Image.fromarray(content_array()).save(roll / "IMG_5.webp")  # a still WebP is a photo
    r = run(roll, style_png, *FAST)
    assert r.exit_code == 0, r.output
    painted = (tmp_path / "roll_monet").iterdir()
    assert sorted(p.name for p in painted if p.name[0] != ".") == ["IMG_1.jpg", "IMG_5.webp"]
    assert "2 video(s) or animation(s) (IMG_2.MOV, IMG_4.webp)" in r.stderr, r.stderr
    assert "give each on its own" in r.stderr and ".IMG_3" not in r.stderr
    (roll / "IMG_1.jpg").unlink()
    (roll / "IMG_5.webp").unlink()
    r = run(roll, style_png, *FAST, "-o", tmp_path / "again")
    assert_clean_error(r, "holds videos or animations but no photos (IMG_2.MOV, IMG_4.webp)",
                       "IMG_2.MOV STYLE")
    assert not (tmp_path / "again").exists()


def test_folder_in_batches_matches_one_by_one(tmp_path, style_png):
    src = tmp_path / "trip"
    src.mkdir()
    for name, img in (("1.png", content_array()), ("2.png", content_array(40, 30)),
                      ("3.png", content_array()[::-1].copy()), ("4.png", content_array()[:, ::-1].copy())):
        write_rgb(src / name, img)
    r = run(src, style_png, *FAST, "--batch", "2", "-o", tmp_path / "batched")
    assert r.exit_code == 0, r.output
    r = run(src, style_png, *FAST, "--batch", "1", "-o", tmp_path / "single")
    assert r.exit_code == 0, r.output
    for name in ("1.png", "2.png", "3.png", "4.png"):
        a, b = read_image(tmp_path / "batched" / name), read_image(tmp_path / "single" / name)
        assert a.shape == b.shape
        # the same optimization (float32 rounding aside: test_stylize checks it exactly)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3, name
    # each output is its own photo's, not a neighbour's from the batch
    one, three = (read_image(tmp_path / "batched" / n).astype(int) for n in ("1.png", "3.png"))
    assert np.abs(one - three).mean() > 20


def test_folder_refuses_to_overwrite(tmp_path, style_png):
    src = tmp_path / "pics"
    src.mkdir()
    write_rgb(src / "a.png", content_array())
    assert_clean_error(run(src, style_png, "-o", src, *FAST), "input folder")
    (tmp_path / "pics_monet").mkdir()
    (tmp_path / "pics_monet" / "a.png").write_bytes(b"mine")
    assert_clean_error(run(src, style_png, *FAST), "--overwrite")
    assert (tmp_path / "pics_monet" / "a.png").read_bytes() == b"mine"


@pytest.mark.parametrize("case", ["missing", "not_image", "empty_dir", "bad_style", "no_style",
                                  "same_as_input", "bad_dir", "bad_ext"])
def test_bad_inputs(tmp_path, content_png, style_png, case):
    args = {
        "missing": (tmp_path / "nope.jpg", style_png),
        "not_image": (write_text(tmp_path / "notes.png"), style_png),
        "empty_dir": (mkdir(tmp_path / "empty"), style_png),
        "bad_style": (content_png, write_text(tmp_path / "s.jpg")),
        "no_style": (content_png, tmp_path / "nostyle.jpg"),
        "same_as_input": (content_png, style_png, "-o", content_png, "--overwrite"),
        "bad_dir": (content_png, style_png, "-o", tmp_path / "no" / "dir" / "x.png"),
        "bad_ext": (content_png, style_png, "-o", tmp_path / "x.xyz"),
    }[case]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert_clean_error(run(*args, *FAST))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("opts,fragment", [
    (["--style-weights", "a,b"], "comma-separated"),
    (["--style-weights", "1,2,3"], "one weight per style"),
    (["--style-layers", "relu9_1"], "unknown VGG-19 layer"),
    (["--content-layer", "conv7_1"], "unknown VGG-19 layer"),
    (["--weights", "/no/such.pth"], "not found"),
    (["--init", "/no/such.png"], "not found"),
])
def test_bad_option_values(content_png, style_png, opts, fragment):
    assert_clean_error(run(content_png, style_png, *opts, *FAST), fragment)


def test_unavailable_device(content_png, style_png):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_clean_error(run(content_png, style_png, "--device", "cuda", *FAST), "--device cpu")


def test_out_of_range_option_is_a_usage_error(content_png, style_png):
    r = run(content_png, style_png, "--size", "0")
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_help_and_module_entry():
    r = runner.invoke(app, ["stylize", "--help"])
    assert r.exit_code == 0 and "nstvideo stylize photo.jpg monet.jpg" in r.stdout
    for opt in ("--style-weights", "--preserve-colors", "--weights", "--seed", "--device"):
        assert opt in r.stdout
    p = subprocess.run([sys.executable, "-m", "nstvideo", "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and "stylize" in p.stdout


def write_text(path):
    path.write_text("hello")
    return path


def mkdir(path):
    path.mkdir()
    return path


def test_interrupt_leaves_no_output(tmp_path, content_png, style_png, monkeypatch):
    import nstvideo.photos

    def interrupting_bar(bar):
        def on_step(i, parts):
            if i == 1:
                raise KeyboardInterrupt
        return on_step

    monkeypatch.setattr(nstvideo.photos, "_step_bar", interrupting_bar)
    files_before = sorted(os.listdir(tmp_path))
    r = run(content_png, style_png, *FAST)
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert sorted(os.listdir(tmp_path)) == files_before


def test_precision_bf16_needs_native_bf16(monkeypatch, content_png, style_png):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setattr("nstvideo.style.device.cpu_computes_bf16", lambda: False)
    assert_clean_error(run(content_png, style_png, "--precision", "bf16", *FAST), "bf16")
    assert run(content_png, style_png, "--precision", "fp32", *FAST).exit_code == 0


@pytest.mark.parametrize("args, fragments", [
    (["--train-steps", "50"], ["--train-steps", "keyframes or fast", "optimize"]),
    (["--method", "keyframes", "--refine-iterations", "4"], ["--refine-iterations", "fast"]),
    (["--keyframes", "12"], ["--keyframes"]),
])
def test_an_option_of_another_method_is_refused_not_ignored(tmp_path, content_png, style_png,
                                                            args, fragments):
    out = tmp_path / "out.png"
    assert_clean_error(run(content_png, style_png, "-o", out, *args, *FAST), *fragments)
    assert not out.exists()


def test_video_options_given_for_a_photo_are_said_to_be_ignored(tmp_path, style_png):
    photo = write_rgb(tmp_path / "p.png", content_array())
    r = run(photo, style_png, *FAST, "--start", "10", "--fps", "24", "--method", "fast",
            "-o", tmp_path / "a.png")
    assert r.exit_code == 0 and read_image(tmp_path / "a.png").shape == (30, 40, 3)
    assert "--start, --fps, --method: for videos and frame sequences, ignored for photos" \
        in r.stderr, r.stderr
    r = run(photo, style_png, *FAST, "-o", tmp_path / "b.png")  # --iterations is a photo's too
    assert r.exit_code == 0 and "ignored" not in r.stderr, r.stderr
