"""Print output: the resolution tag (DPI) kept or set, and TIFF written valid at any size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import content_array
from nstvideo import stylize
from nstvideo.settings import StyleSettings
from nstvideo.errors import InputError

FAST = dict(iterations=2, seed=0)


def _photo(path, fmt, **save):
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"  # Make
    exif[0x011A] = exif[0x011B] = 300.0  # XResolution, YResolution (some cameras write them)
    exif[0x0128] = 2
    Image.fromarray(content_array(64, 96)).save(path, format=fmt, exif=exif.tobytes(), **save)
    return path


@pytest.mark.parametrize("name,fmt,save", [
    ("scan.tiff", "TIFF", {"dpi": (300, 300)}),
    ("scan_lzw.tif", "TIFF", {"dpi": (300, 300), "compression": "tiff_lzw"}),
    ("photo.png", "PNG", {"dpi": (300, 300)}),
    ("photo.jpg", "JPEG", {"dpi": (300, 300)}),
])
def test_a_resized_photo_is_valid_and_keeps_or_sets_its_dpi(tmp_path, style_png, name, fmt, save):
    src = _photo(tmp_path / name, fmt, **save)
    for dpi, want in ((None, 300), (150, 150)):
        out = tmp_path / f"out_{dpi}{src.suffix}"
        stylize(src, style_png, out, size=48, dpi=dpi, **FAST)
        with Image.open(out) as im:
            im.load()  # the whole file decodes (a TIFF with the source's strips would not)
            assert im.size == (48, 32)
            assert [round(v) for v in im.info["dpi"]] == [want, want]
            exif = im.getexif()
            assert exif.get(0x010F) == "Camera Maker"  # the rest of the metadata kept
            assert exif.get(0x0100) in (None, 48)  # no width of the source's left behind
            assert round(float(exif.get(0x011A, want))) == want  # EXIF agrees with the tag
        img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.shape[:2] == (32, 48)  # OpenCV reads it too


def test_dpi_is_kept_with_strip_metadata_and_set_where_there_was_none(tmp_path, style_png):
    src = tmp_path / "plain.png"
    Image.fromarray(content_array(64, 96)).save(src)  # no resolution tag
    stylize(src, style_png, tmp_path / "a.png", size=48, **FAST)
    with Image.open(tmp_path / "a.png") as im:
        assert "dpi" not in im.info  # none invented
    stylize(src, style_png, tmp_path / "b.png", size=48, dpi=300, strip_metadata=True, **FAST)
    with Image.open(tmp_path / "b.png") as im:
        assert [round(v) for v in im.info["dpi"]] == [300, 300]


def test_size_reaches_print_sizes_and_stops_at_a_ceiling():
    assert StyleSettings(size=16384).size == 16384  # 16384 px: 54 inches at 300 dpi
    with pytest.raises(InputError, match="16 to 16384"):
        StyleSettings(size=20000)


def test_a_folder_of_scans_takes_dpi(tmp_path, style_png):
    folder = tmp_path / "scans"
    folder.mkdir()
    _photo(folder / "a.tif", "TIFF", dpi=(600, 600))
    rep = stylize(folder, style_png, tmp_path / "out", size=48, dpi=200, **FAST)
    assert rep.ok and len(rep.written) == 1
    with Image.open(rep.written[0]) as im:
        im.load()
        assert [round(v) for v in im.info["dpi"]] == [200, 200]
    assert np.asarray(Image.open(rep.written[0])).shape[:2] == (32, 48)
