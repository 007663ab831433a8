"""Folders of photos are photos: names, formats, orientation and alpha kept, failures one by
one; and images too large to be real are refused before they are decoded."""

from __future__ import annotations

import re
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import content_array, write_rgb
from nstvideo import StyleSettings, stylize
from nstvideo.errors import InputError, OutputError
from nstvideo.media.reader import read_image

S = StyleSettings(size=48, iterations=2)

# EXIF orientation -> what turns the stored pixels upright (the TIFF/EXIF definitions,
# written independently of Pillow's table)
UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
           4: lambda a: a[::-1], 5: lambda a: a.transpose(1, 0, 2),
           6: lambda a: np.rot90(a, -1), 7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
           8: lambda a: np.rot90(a, 1)}


def with_orientation(path, stored: np.ndarray, orientation: int):
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_exif_orientations(tmp_path, orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), np.uint8)
    path = with_orientation(tmp_path / "p.png", stored, orientation)
    assert np.array_equal(read_image(path), UPRIGHT[orientation](stored))


def test_a_camera_folder_is_photos(tmp_path, style_png, monkeypatch):
    """IMG_0001.JPG ... of one size: each photo on its own (no temporal warm start, its own
    --iterations), names and formats kept, a portrait upright, alpha kept, a broken photo
    reported alone."""
    from nstvideo import photos as images

    folder = tmp_path / "DCIM"
    folder.mkdir()
    photo = content_array(48, 64)
    for i in (1, 2, 3):
        write_rgb(folder / f"IMG_000{i}.JPG", np.roll(photo, 9 * i, axis=1))
    with_orientation(folder / "IMG_0004.JPG", photo, 6)  # a portrait, stored on its side
    rgba = np.dstack([photo, np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))])
    cv2.imwrite(str(folder / "IMG_0005.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    (folder / "IMG_0006.JPG").write_bytes(b"\xff\xd8 not really a jpeg")
    iterations = []
    real = images.run_batch

    def spy(stylizer, group, **k):
        outs, rep = real(stylizer, group, **k)
        iterations.append(rep.iterations)
        return outs, rep
    monkeypatch.setattr(images, "run_batch", spy)
    rep = stylize(folder, style_png, settings=S.replace(iterations=3))
    out = tmp_path / "DCIM_monet"
    assert rep.video is None and iterations == [3] * 5
    assert sorted(p.name for p in out.iterdir() if p.name[0] != ".") == [
        "IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG", "IMG_0004.JPG", "IMG_0005.png"]
    assert [p.name for p, _ in rep.failed] == ["IMG_0006.JPG"]
    assert Image.open(out / "IMG_0001.JPG").format == "JPEG"
    assert read_image(out / "IMG_0004.JPG").shape == (48, 36, 3)  # portrait stays portrait
    back = cv2.imread(str(out / "IMG_0005.png"), cv2.IMREAD_UNCHANGED)
    assert back.shape == (36, 48, 4) and back[..., 3].min() < 10 and back[..., 3].max() > 245


def png_header_only(path, w, h):
    """A PNG that claims w x h pixels (an IHDR and an empty image stream): what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


def test_huge_images_refused_before_decoding(tmp_path, style_png):
    bomb = png_header_only(tmp_path / "bomb.png", 60000, 60000)
    with pytest.raises(InputError, match=r"60000x60000 \(3600 MP\), over the 100 MP limit"):
        read_image(bomb)
    big = png_header_only(tmp_path / "big.png", 30000, 30000)
    with pytest.raises(InputError, match="--max-megapixels"):
        read_image(big)
    folder = tmp_path / "f"
    folder.mkdir()
    write_rgb(folder / "a.png", content_array())
    (folder / "bomb.png").write_bytes(bomb.read_bytes())
    rep = stylize(folder, style_png, tmp_path / "o", settings=S)
    assert [p.name for p in rep.written] == ["a.png"] and rep.failed[0][0].name == "bomb.png"
    only_bombs = tmp_path / "g"
    only_bombs.mkdir()
    (only_bombs / "bomb.png").write_bytes(bomb.read_bytes())
    rep = stylize(only_bombs, style_png, tmp_path / "none", settings=S)
    assert not rep.written and not (tmp_path / "none").exists()  # no empty folder left


@pytest.mark.parametrize("shape", [(12, 16), (4, 40)])
def test_too_small_for_vgg_names_the_size_that_works(tmp_path, style_png, shape):
    """--size 16 on a 4:3 photo or a 10:1 panorama: VGG's poolings need 16 px a side."""
    h, w = shape
    photo = write_rgb(tmp_path / "p.png", cv2.resize(content_array(), (w * 8, h * 8)))
    with pytest.raises(InputError, match=r"use --size (\d+) or more") as e:
        stylize(photo, style_png, settings=S.replace(size=16))
    need = int(re.search(r"use --size (\d+)", str(e.value)).group(1))
    assert need == (22 if w / h < 2 else 160)
    out = stylize(photo, style_png, tmp_path / "ok.png", settings=S.replace(size=need))
    assert min(read_image(out.output).shape[:2]) >= 16


def test_a_photo_past_the_limit_is_decoded_smaller_not_refused(tmp_path, style_png):
    """A 108 or 200 MP phone photo passes the 100 MP limit, but a JPEG is decoded at 1/2-1/8
    (libjpeg's scaled IDCT) when it is to be shrunk anyway: read for the result, upright, as
    the whole picture shrunk would be. Here at scale: 2400x1600, sideways (EXIF 6), a 1 MP
    limit, --size 64."""
    rng = np.random.default_rng(0)
    stored = cv2.resize(rng.integers(0, 256, (40, 60, 3), np.uint8), (2400, 1600),
                        interpolation=cv2.INTER_CUBIC)
    photo = with_orientation(tmp_path / "IMG_0001.JPG", stored, 6)
    whole = read_image(photo)  # no size given: decoded whole
    assert whole.shape == (2400, 1600, 3)
    with pytest.raises(InputError, match=r"2400x1600 \(4 MP\), over the 1 MP limit"):
        read_image(photo, max_pixels=1_000_000)
    small = read_image(photo, max_pixels=1_000_000, longest=64)
    assert small.shape == (300, 200, 3)  # 1/8: still 4x the 64 px it is shrunk to
    assert read_image(photo, longest=300).shape == (1200, 800, 3)  # 1/2 keeps 4x 300 px
    assert read_image(photo, longest=400).shape == (2400, 1600, 3)  # 1/2 would not: whole
    shrunk = cv2.resize(whole, (200, 300), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(small.astype(int) - shrunk).mean() < 1.5  # the same picture, upright
    with pytest.raises(InputError, match="over the 0.05 MP limit"):  # 1/8 is still too much
        read_image(photo, max_pixels=50_000, longest=64)
    out = stylize(photo, style_png, tmp_path / "out.jpg",
                  settings=S.replace(size=64, max_megapixels=1))
    assert read_image(out.output).shape[:2] == (64, 43)  # portrait, as the phone held it


def test_subfolders_are_photos_too_mirrored_in_the_output(tmp_path, style_png):
    """A camera's DCIM/100APPLE, a holiday sorted by day: the photos in subfolders are painted
    into the same subfolders of the output; hidden folders (thumbnails) are left out, and an
    output folder inside the input is not read back as input on the next run."""
    hol = tmp_path / "holiday"
    rng = np.random.default_rng(1)
    for rel in ("day1/a.jpg", "day1/b.png", "day2/a.jpg", "top.jpg", ".thumbs/t.jpg"):
        (hol / rel).parent.mkdir(parents=True, exist_ok=True)
        write_rgb(hol / rel, cv2.resize(rng.integers(0, 256, (6, 8, 3), np.uint8), (64, 48)))
    out = hol / "painted"
    rep = stylize(hol, style_png, out, settings=S)
    rel = sorted(str(p.relative_to(out)) for p in rep.written)
    assert rel == ["day1/a.jpg", "day1/b.png", "day2/a.jpg", "top.jpg"], rel
    assert all(read_image(p).shape[:2] == (36, 48) for p in rep.written)
    again = stylize(hol, style_png, out, settings=S, overwrite=True)
    assert len(again.written) == 4 and not (out / "painted").exists()
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(InputError, match="no images in folder .* or its subfolders"):
        stylize(tmp_path / "empty", style_png, tmp_path / "x", settings=S)


def test_two_photos_that_would_be_one_output_are_refused(tmp_path, style_png):
    """a.jpg and A.JPG are two files here and one on macOS or Windows: neither is written."""
    folder = tmp_path / "f"
    folder.mkdir()
    write_rgb(folder / "a.jpg", content_array())
    write_rgb(folder / "A.JPG", content_array())
    with pytest.raises(OutputError, match="would both be written as"):
        stylize(folder, style_png, tmp_path / "o", settings=S)
    assert not (tmp_path / "o").exists()


def test_camera_raw_files_are_named_not_read_as_their_previews(tmp_path, style_png):
    """A DNG (iPhone ProRAW, Android RAW) or a camera's CR2/NEF is sensor data: Pillow would
    read a DNG's small preview as the photo. Alone it is refused in one line; in a folder
    (RAW beside JPEG, as cameras save) it is named in a warning and its JPEG is painted."""
    folder = tmp_path / "card"
    folder.mkdir()
    write_rgb(folder / "IMG_0001.JPG", content_array())
    (folder / "IMG_0001.DNG").write_bytes((folder / "IMG_0001.JPG").read_bytes())
    with pytest.raises(InputError, match=r"IMG_0001.DNG is a camera RAW file: develop it"):
        stylize(folder / "IMG_0001.DNG", style_png, tmp_path / "o.png", settings=S)
    with pytest.warns(UserWarning, match=r"1 camera RAW file\(s\) \(IMG_0001.DNG\), left out"):
        rep = stylize(folder, style_png, tmp_path / "out", settings=S)
    assert [p.name for p in rep.written] == ["IMG_0001.JPG"]
    (folder / "IMG_0001.JPG").unlink()
    with pytest.raises(InputError, match="holds camera RAW files only"):
        stylize(folder, style_png, tmp_path / "out2", settings=S)


def test_the_current_folder_is_painted_beside_it_not_into_it(tmp_path, style_png, monkeypatch):
    """`nstvideo stylize . monet.jpg` in holiday/ writes holiday_monet/ beside it."""
    folder = tmp_path / "holiday"
    folder.mkdir()
    write_rgb(folder / "a.png", content_array())
    monkeypatch.chdir(folder)
    rep = stylize(".", style_png, settings=S)
    assert rep.output.resolve() == tmp_path / "holiday_monet" and len(rep.written) == 1


def test_names_too_long_for_a_filesystem_are_cut_or_refused_before_the_work(tmp_path):
    """Styles named by long titles (two of them) made a default name past the 255 bytes a
    filesystem takes, found only when the result was written; a long -o is refused at once."""
    title = "The Starry Night by Vincent van Gogh (1889), Museum of Modern Art, scan é" * 2
    styles = []
    for k in range(2):
        styles.append(write_rgb(tmp_path / f"{title}{k}.png", content_array(48, 48)))
    photo = write_rgb(tmp_path / ("IMG_" + "0" * 120 + ".png"), content_array())
    rep = stylize(photo, styles, settings=S)
    assert len(rep.output.name.encode()) <= 200 and rep.output.name.startswith("IMG_0000")
    assert rep.output.suffix == ".png" and read_image(rep.output).shape[:2] == (36, 48)
    with pytest.raises(OutputError, match="bytes long, over the 200"):
        stylize(photo, styles[0], tmp_path / ("o" * 230 + ".png"), settings=S)
