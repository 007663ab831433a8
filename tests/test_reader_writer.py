"""Still-image reading and writing: colour, depth, alpha, orientation, errors, atomicity."""

import os
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest
from PIL import Image

from nstvideo.errors import InputError
from nstvideo.media.reader import list_images, read_image
from nstvideo.media import scratch, subtitles
from nstvideo.media.scratch import scratch_folder, scratch_root
from nstvideo.media.writer import atomic_path, write_image

from conftest import content_array


def test_rgb_order_kept(tmp_path):
    img = content_array()
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), img)


def test_grayscale_16bit_and_alpha(tmp_path):
    gray = np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 21
    cv2.imwrite(str(tmp_path / "g16.png"), gray)
    got = read_image(tmp_path / "g16.png")
    assert got.shape == (48, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[..., 0], got[..., 2])
    assert abs(int(got[-1, -1, 0]) - round(int(gray[-1, -1]) * 255 / 65535)) <= 1

    rgba = np.dstack([content_array(), np.full((48, 64), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(got, rgba)

    rgb16 = (content_array().astype(np.uint16) * 257)
    cv2.imwrite(str(tmp_path / "c16.png"), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), content_array())


def test_exif_orientation_applied(tmp_path):
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = (255, 0, 0)  # red band on the left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(img).save(tmp_path / "r.jpg", exif=exif, quality=100)
    got = read_image(tmp_path / "r.jpg")
    assert got.shape == (40, 20, 3)  # upright: portrait
    assert got[:10, :, 0].mean() > 200 and got[-10:, :, 0].mean() < 60  # left band now on top


@pytest.mark.parametrize("content", [b"", b"this is not an image", b"\x89PNG\r\n\x1a\n broken"])
def test_not_an_image(tmp_path, content):
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(InputError, match="not a readable image"):
        read_image(tmp_path / "x.png", what="style image")


def test_missing_and_folder(tmp_path):
    with pytest.raises(InputError, match="style image not found"):
        read_image(tmp_path / "nope.jpg", what="style image")
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)


def test_list_images_natural_order(tmp_path):
    for n in ("img10.png", "img2.png", "img1.jpg", ".hidden.png", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["img1.jpg", "img2.png", "img10.png"]


def test_write_is_atomic(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [target]  # no temporary left behind
    write_image(target, content_array())
    np.testing.assert_array_equal(read_image(target), content_array())


def test_a_scratch_folder_a_killed_process_left_is_removed_by_the_next(tmp_path, monkeypatch):
    """A Ray worker killed mid-task cannot remove its unit's folder: the next scratch folder
    made on the machine does, and only that: a live process's, or another machine's sharing
    the temporary folder, are kept."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root, host = scratch_root(), scratch._host()
    assert root.parent == tmp_path
    root.mkdir()
    left = root / f"unit-{host}-{dead.pid}-abcd1234"
    live = root / f"unit-{host}-{os.getpid()}-efgh5678"
    other = root / f"unit-otherhost-{dead.pid}-ijkl9012"
    for d in (left, live, other):
        d.mkdir()
        (d / "frame_000000.png").write_bytes(b"frame")
    with scratch_folder("fade") as tmp:
        assert tmp.parent == root and tmp.name.startswith(f"fade-{host}-{os.getpid()}-")
        (tmp / "x.png").write_bytes(b"x")
        assert not left.exists() and live.is_dir() and other.is_dir()
    assert not tmp.exists()
    assert sorted(p.name for p in root.iterdir()) == sorted([live.name, other.name])


def test_subtitle_cues_move_and_are_cut_with_the_part_rendered():
    """The part from 10 s lasting 5 s: a cue before it goes, one across its start or end is
    cut there, one inside moves 10 s earlier; two-line cues and CRLF files keep their text."""
    srt = ("1\r\n00:00:02,000 --> 00:00:03,000\r\nbefore\r\n\r\n"
           "2\r\n00:00:09,500 --> 00:00:10,400\r\nacross the start\r\n\r\n"
           "3\r\n00:00:12,250 --> 00:00:13,000\r\ntwo\r\nlines\r\n\r\n"
           "4\r\n00:00:14,500 --> 00:00:16,000\r\nacross the end\r\n\r\n"
           "5\r\n00:00:15,000 --> 00:00:17,000\r\nafter\r\n")
    assert subtitles.shifted_srt(srt, 10.0, 5.0) == (
        "1\n00:00:00,000 --> 00:00:00,400\nacross the start\n\n"
        "2\n00:00:02,250 --> 00:00:03,000\ntwo\nlines\n\n"
        "3\n00:00:04,500 --> 00:00:05,000\nacross the end\n\n")
    assert subtitles.shifted_srt(srt, 20.0, None) == ""
    assert subtitles.shifted_srt(srt, 0.0, None).count("-->") == 5
