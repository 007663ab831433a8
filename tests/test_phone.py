"""What phones and cameras make: HEIC photos read and written back as HEIC, metadata (EXIF
dates, camera, GPS; XMP) and colour profiles kept (wide gamut converted to sRGB and tagged
so), --strip-metadata; damaged HEIC and EXIF handled. Every file is made here: HEIC with
pillow-heif, EXIF/XMP/ICC with Pillow, a Display P3 profile written byte by byte."""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import content_array
from nstvideo import StyleSettings, stylize
from nstvideo.errors import InputError
from nstvideo.media import photometa, reader
from nstvideo.media.photometa import describe, read_meta
from nstvideo.media.reader import read_image

S = StyleSettings(size=48, iterations=2)
MAKE, MODEL, DATE, ORIENT, GPS_IFD, DATE_ORIGINAL = 0x010F, 0x0110, 0x0132, 0x0112, 0x8825, 0x9003
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
       b'22-rdf-syntax-ns#"><rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
       b'xmp:Rating="4"/></rdf:RDF></x:xmpmeta>')


def camera_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[MAKE], exif[MODEL], exif[DATE], exif[ORIENT] = "Apple", "iPhone 15", \
        "2023:07:01 10:00:00", orientation
    exif.get_ifd(0x8769)[DATE_ORIGINAL] = "2023:07:01 09:59:58"
    gps = exif.get_ifd(GPS_IFD)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.0), "E", (2.0, 17.0, 40.0)
    return exif


def assert_camera_metadata(path, stripped: bool = False):
    with Image.open(path) as im:
        exif = im.getexif()
        if stripped:
            assert not len(exif) and not im.info.get("xmp"), (dict(exif), path)
            return
        assert exif[MAKE] == "Apple" and exif[MODEL] == "iPhone 15", dict(exif)
        assert exif[DATE] == "2023:07:01 10:00:00" and exif.get(ORIENT, 1) == 1
        assert exif.get_ifd(0x8769)[DATE_ORIGINAL] == "2023:07:01 09:59:58"
        gps = exif.get_ifd(GPS_IFD)
        assert gps[1] == "N" and [float(v) for v in gps[2]] == [48, 51, 29], dict(gps)


def s15(v):
    return struct.pack(">i", round(v * 65536))


def xyz(x, y, z):
    return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)


def icc(kind: bytes, text: bytes, tags: list) -> bytes:
    """An ICC v2 profile byte by byte: `kind` is its class, colour space and connection
    space (b"mntrRGB XYZ "), `tags` its (signature, data) beside a description and a D50
    white point."""
    desc = (b"desc\0\0\0\0" + struct.pack(">I", len(text) + 1) + text + b"\0"
            + bytes(8) + bytes(3) + bytes(67))
    tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), *tags,
            (b"cprt", b"text\0\0\0\0" + b"none\0" + bytes(3))]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    head = (struct.pack(">I", size) + bytes(4) + bytes([2, 0x10, 0, 0]) + kind
            + bytes(12) + b"acsp" + bytes(16) + bytes(8) + struct.pack(">I", 0)
            + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(4) + bytes(16) + bytes(28))
    assert len(head) == 128
    return head + struct.pack(">I", len(tags)) + table + body


def gamma_curve(gamma: float) -> bytes:
    return (b"curv\0\0\0\0" + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256))
            + bytes(2))


def p3_profile() -> bytes:
    """An ICC v2 matrix/TRC profile of Display P3 (D50-adapted colorants, gamma 2.2)."""
    curve = gamma_curve(2.2)
    return icc(b"mntrRGB XYZ ", b"Display P3 (test)", [
        (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)), (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
        (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)), (b"rTRC", curve), (b"gTRC", curve),
        (b"bTRC", curve)])


SRGB_D50 = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606],
                     [0.0139, 0.0971, 0.7141]])  # linear sRGB -> XYZ, D50-adapted


def srgb_encode(lin: np.ndarray) -> np.ndarray:
    """Linear 0-1 -> sRGB 0-255 (the sRGB transfer curve)."""
    lin = np.clip(lin, 0, 1)
    return 255 * np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def p3_to_srgb(rgb: np.ndarray) -> np.ndarray:
    """The reference conversion, by the formulas: P3 (gamma 2.2) -> XYZ D50 -> sRGB."""
    p3 = np.array([[0.5151, 0.2920, 0.1571], [0.2412, 0.6922, 0.0666],
                   [-0.0011, 0.0419, 0.7841]])
    return srgb_encode(np.linalg.solve(SRGB_D50, p3 @ ((rgb / 255.0) ** 2.2)))


def test_a_phone_folder_heic_and_jpeg_keeps_formats_and_metadata(tmp_path, style_png):
    """HEIC in, HEIC out (upright, its metadata kept); a JPEG beside it keeps EXIF (dates,
    camera, GPS), XMP and its sRGB profile; nothing is left out unnamed."""
    folder = tmp_path / "DCIM"
    folder.mkdir()
    photo = content_array(48, 64)
    sideways = np.rot90(photo, 1)  # stored on its side; EXIF 6 turns it upright
    Image.fromarray(sideways).save(folder / "IMG_0001.HEIC", exif=camera_exif(6).tobytes(),
                                   quality=95)
    from PIL import ImageCms
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(photo).save(folder / "IMG_0002.JPG", exif=camera_exif().tobytes(),
                                xmp=XMP, icc_profile=srgb, quality=95)
    rep = stylize(folder, style_png, tmp_path / "out", settings=S)
    assert rep.failed == [] and sorted(p.name for p in rep.written) == ["IMG_0001.HEIC",
                                                                        "IMG_0002.JPG"]
    heic, jpeg = tmp_path / "out" / "IMG_0001.HEIC", tmp_path / "out" / "IMG_0002.JPG"
    with Image.open(heic) as im:
        assert im.format == "HEIF" and im.size == (48, 36)  # upright: landscape
    assert read_image(heic).shape == (36, 48, 3)
    for out in (heic, jpeg):
        assert_camera_metadata(out)
    assert b"xmp:Rating" in read_image_xmp(jpeg)
    with Image.open(jpeg) as im:
        assert "sRGB" in describe(im.info["icc_profile"])


def test_an_avif_photo_comes_back_avif_upright_with_its_metadata(tmp_path, style_png):
    """AVIF (newer Android phones, the web) is read in a folder like the others and written
    back as AVIF under its own name: upright (stored on its side, EXIF 6: Pillow writes that
    as the file's own rotation), its EXIF and XMP kept."""
    folder = tmp_path / "Camera"
    folder.mkdir()
    photo = content_array(48, 64)
    Image.fromarray(np.rot90(photo, 1)).save(folder / "PXL_1.avif", exif=camera_exif(6).tobytes(),
                                             xmp=XMP, quality=90)
    assert read_image(folder / "PXL_1.avif").shape == (48, 64, 3)  # read upright
    rep = stylize(folder, style_png, tmp_path / "out", settings=S)
    out = tmp_path / "out" / "PXL_1.avif"
    assert rep.failed == [] and rep.written == [out]
    with Image.open(out) as im:
        assert im.format == "AVIF" and im.size == (48, 36), im.size  # upright: landscape
    assert b"xmp:Rating" in read_image_xmp(out)
    assert read_image(out).shape == (36, 48, 3)
    assert_camera_metadata(out)


def test_strip_metadata_leaves_no_place_or_date(tmp_path, style_png):
    from nstvideo.cli import main

    src = tmp_path / "IMG_0003.JPG"
    Image.fromarray(content_array(48, 64)).save(src, exif=camera_exif().tobytes(), xmp=XMP)
    assert main(["stylize", str(src), str(style_png), "--size", "48", "--iterations", "1",
                 "--quiet", "--strip-metadata", "-o", str(tmp_path / "a.jpg")]) in (0, None)
    assert_camera_metadata(tmp_path / "a.jpg", stripped=True)
    stylize(src, style_png, tmp_path / "b.png", settings=S)  # a PNG keeps them too
    assert_camera_metadata(tmp_path / "b.png")


def test_a_display_p3_photo_is_converted_to_srgb_and_tagged_so(tmp_path, style_png):
    patches = np.array([[150, 120, 100], [90, 160, 90], [120, 130, 180], [200, 60, 60]],
                       np.uint8)
    img = np.repeat(np.repeat(patches[None], 32, axis=0), 8, axis=1)  # 32 x 32, 4 patches
    path = tmp_path / "p3.png"
    Image.fromarray(img).save(path, icc_profile=p3_profile())
    got = read_image(path)[4, 4::8].astype(float)
    want = p3_to_srgb(patches.astype(float).T).T
    assert np.abs(got - want).max() <= 3, (got, want)
    assert np.abs(got - patches).max() >= 10  # the conversion did something
    meta = read_meta(path)
    assert "sRGB" in describe(meta.icc)
    out = stylize(path, style_png, tmp_path / "o.png", settings=S).output
    with Image.open(out) as im:
        assert "sRGB" in describe(im.info["icc_profile"])


# A press's CMYK: inks that each keep a share of R, G, B (light through cyan: little red, a
# little green lost too) -- what a printer's profile says and a naive 255 - ink does not.
# Corners of a 2-point CMYK table in sRGB, multiplied out; the paper white (as in a
# relative-intent table: LittleCMS maps a profile's white to the screen's white).
PAPER = np.array([255.0, 255.0, 255.0])
INKS = {"C": (0.10, 0.60, 0.85), "M": (0.85, 0.25, 0.55), "Y": (0.98, 0.92, 0.15),
        "K": (0.12, 0.12, 0.13)}


def press_colour(cmyk) -> np.ndarray:
    """The sRGB of a CMYK corner (each ink 0 or 255) on PAPER."""
    rgb = PAPER.copy()
    for ink, on in zip("CMYK", cmyk):
        if on:
            rgb *= np.array(INKS[ink])
    return rgb


def srgb_to_lab8(rgb: np.ndarray) -> np.ndarray:
    """sRGB (N, 3) -> ICC v2 8-bit Lab (L x 2.55, a + 128, b + 128), D50, by the formulas."""
    v = rgb / 255.0
    lin = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    t = (lin @ SRGB_D50.T) / np.array([0.9642, 1.0, 0.8249])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return np.clip((lab * [2.55, 1, 1] + [0, 128, 128]).round(), 0, 255).astype(np.uint8)


def cmyk_profile() -> bytes:
    """An ICC v2 output profile, CMYK -> Lab through a lut8 A2B0 table on the 16 corners."""
    corners = [(c, m, y, k) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]
    lab = srgb_to_lab8(np.array([press_colour(c) for c in corners]))
    identity = bytes(range(256))
    lut = (b"mft1\0\0\0\0" + bytes([4, 3, 2, 0]) + b"".join(
        s15(float(i == j)) for i in range(3) for j in range(3)) + identity * 4
        + lab.tobytes() + identity * 3)
    return icc(b"prtrCMYKLab ", b"A press (test)", [(b"A2B0", lut)])


def test_a_cmyk_scan_and_a_gray_scan_are_read_through_their_profiles(tmp_path, style_png):
    """A printer's CMYK scan of a painting (TIFF, JPEG) and a gray scan with a linear gray
    profile come out as their profiles say in sRGB, not as a naive conversion would."""
    corners = [(0, 0, 0, 0), (255, 0, 0, 0), (0, 255, 0, 0), (0, 0, 255, 0), (0, 0, 0, 255),
               (255, 255, 0, 0)]
    img = np.repeat(np.repeat(np.array(corners, np.uint8)[None], 16, axis=0), 8, axis=1)
    want = np.array([press_colour(c) for c in corners])
    naive = np.array([(255 - np.array(c[:3])) * (255 - c[3]) / 255 for c in corners])
    for name, opts, tol in (("scan.tif", {}, 4), ("scan.jpg", {"quality": 98}, 8)):
        path = tmp_path / name
        Image.fromarray(img, "CMYK").save(path, icc_profile=cmyk_profile(), **opts)
        got = read_image(path)[8, 4::8].astype(float)
        assert np.abs(got - want).max() <= tol, (name, got, want)
        assert np.abs(got - naive).max() >= 60  # not 255 - ink: cyan is not (0, 255, 255)
    out = stylize(tmp_path / "scan.jpg", style_png, tmp_path / "o.jpg", settings=S).output
    with Image.open(out) as im:
        assert im.mode == "RGB" and "sRGB" in describe(im.info["icc_profile"])
    levels = np.array([0, 64, 128, 192, 255], np.uint8)
    gray = np.repeat(np.repeat(levels[None], 16, axis=0), 8, axis=1)
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path, icc_profile=icc(b"mntrGRAYXYZ ", b"Linear gray",
                                                          [(b"kTRC", gamma_curve(1.0))]))
    got = read_image(path)[8, 4::8].astype(float)
    srgb = srgb_encode(levels / 255.0)  # linear gray
    assert np.abs(got - srgb[:, None]).max() <= 2, (got, srgb)  # 64 -> 137, 128 -> 188
    assert (got == got[:, :1]).all()  # still gray


def test_a_damaged_exif_still_stylizes_without_metadata(tmp_path, style_png):
    buf = io.BytesIO()
    Image.fromarray(content_array(48, 64)).save(buf, "JPEG")
    payload = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 500) + b"\x01" * 30
    data = buf.getvalue()
    src = tmp_path / "bad_exif.jpg"
    src.write_bytes(data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
                    + data[2:])
    with pytest.warns(UserWarning, match="EXIF metadata is damaged"):
        out = stylize(src, style_png, tmp_path / "o.jpg", settings=S).output
    with Image.open(out) as im:
        assert im.size == (48, 36) and not len(im.getexif())


def test_without_pillow_heif_a_heic_is_refused_in_one_line_and_named(tmp_path, style_png,
                                                                     monkeypatch):
    folder = tmp_path / "f"
    folder.mkdir()
    Image.fromarray(content_array(48, 64)).save(folder / "a.heic")
    Image.fromarray(content_array(48, 64)).save(folder / "b.jpg")
    monkeypatch.setattr(reader, "heif_support", lambda: "HEIC/HEIF photos need pillow-heif: "
                        "pip install pillow-heif")
    with pytest.raises(InputError, match="pip install pillow-heif"):
        read_image(folder / "a.heic")
    rep = stylize(folder, style_png, tmp_path / "out", settings=S)
    assert [p.name for p in rep.written] == ["b.jpg"]
    assert [p.name for p, _ in rep.failed] == ["a.heic"] and "pillow-heif" in rep.failed[0][1]


def test_one_heic_photo_comes_back_as_heic_beside_it(tmp_path, style_png):
    src = tmp_path / "IMG_0002.HEIC"
    Image.fromarray(content_array(48, 64)).save(src, exif=camera_exif().tobytes())
    out = stylize(src, style_png, settings=S).output
    assert out == tmp_path / "IMG_0002_monet.HEIC"
    assert read_image(out).shape == (36, 48, 3)
    assert_camera_metadata(out)


def test_metadata_a_format_cannot_hold_is_dropped_not_the_photo():
    from nstvideo.media.photometa import PhotoMeta, encode_with_meta

    img = content_array(24, 32)
    with pytest.warns(UserWarning, match="metadata could not be written as JPEG"):
        data = encode_with_meta(img, ".jpg", PhotoMeta(xmp=b"x" * 70000), 95)
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (32, 24) and "xmp" not in im.info


def test_heic_is_written_as_jpeg_where_it_cannot_be_encoded(monkeypatch):
    from nstvideo import outputs

    assert outputs.photo_name("IMG_1.HEIC") == "IMG_1.HEIC"
    monkeypatch.setattr(outputs, "heif_writable", lambda: False)
    assert outputs.photo_name("IMG_1.HEIC") == "IMG_1.jpg"


def heic_with_size(path, w: int, h: int):
    """A real HEIC whose header (its 'ispe' box) claims w x h pixels (64 x 64 coded: no
    clean-aperture crop to hide it)."""
    photometa.heif_support()
    buf = io.BytesIO()
    Image.fromarray(content_array(64, 64)).save(buf, format="HEIF")
    data = buf.getvalue()
    i = data.index(b"ispe")
    path.write_bytes(data[:i + 8] + struct.pack(">II", w, h) + data[i + 16:])
    return path


def truncated_heic(path):
    photometa.heif_support()
    buf = io.BytesIO()
    Image.fromarray(content_array(48, 64)).save(buf, format="HEIF")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return path


def test_a_heic_bomb_is_refused_from_its_header(tmp_path):
    with pytest.raises(InputError, match=r"60000x60000 .* over the 100 MP limit"):
        read_image(heic_with_size(tmp_path / "bomb.heic", 60000, 60000))
    with pytest.raises(InputError, match="not a readable image"):
        read_image(truncated_heic(tmp_path / "cut.heic"))


@pytest.fixture(autouse=True)
def _heif():
    assert photometa.heif_support() is None  # pillow-heif is a dependency: installed
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield


MOTION_XMP = (  # a Pixel's motion photo: the clip's place in the file, in both XMP forms
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    'syntax-ns#"><rdf:Description rdf:about="" xmlns:GCam="http://ns.google.com/photos/1.0/'
    'camera/" xmlns:Container="http://ns.google.com/photos/1.0/container/" xmlns:Item="http://'
    'ns.google.com/photos/1.0/container/item/" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" '
    'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/'
    '1.0/" hdrgm:Version="1.0" GCam:MotionPhoto="1" GCam:MotionPhotoVersion="1" '
    "GCam:MotionPhotoPresentationTimestampUs='968000' xmpNote:HasExtendedXMP=\"0123\" "
    'xmp:Rating="4"><GCam:MicroVideoOffset>{n}</GCam:MicroVideoOffset><Container:Directory>'
    '<rdf:Seq><rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg" '
    'Item:Semantic="Primary" Item:Length="0" Item:Padding="0"/></rdf:li><rdf:li rdf:parseType='
    '"Resource"><Container:Item Item:Mime="video/mp4" Item:Semantic="MotionPhoto" Item:Length='
    '"{n}" Item:Padding="0"/></rdf:li></rdf:Seq></Container:Directory></rdf:Description>'
    '</rdf:RDF></x:xmpmeta>')


def test_a_motion_photo_comes_back_a_still_that_claims_no_clip(tmp_path, style_png):
    """A motion photo (Pixel, Samsung) is a JPEG with a clip appended and XMP that says where
    it is (an Ultra HDR one: its gain map too). The stylized copy is a still: it keeps the rest
    of the XMP (the rating) but not the tags that would make a gallery read its last bytes as
    a video or look for a gain map."""
    from videokit import make_clip

    clip = make_clip(tmp_path / "clip.mp4", size=(48, 36), frames=3).read_bytes()
    src = tmp_path / "PXL_20261204_101010.MP.jpg"
    buf = io.BytesIO()
    Image.fromarray(content_array(48, 64)).save(buf, "JPEG", exif=camera_exif().tobytes(),
                                                xmp=MOTION_XMP.format(n=len(clip)).encode())
    src.write_bytes(buf.getvalue() + clip)
    assert b"MotionPhoto" in read_image_xmp(src)  # what the phone wrote, read as it is
    out = stylize(src, style_png, settings=S).output
    xmp = read_image_xmp(out)
    assert b'xmp:Rating="4"' in xmp and b"rdf:Description" in xmp
    for claim in (b"MotionPhoto", b"MicroVideo", b"Container:Directory", b"Item:Mime",
                  b"HasExtendedXMP", b"hdrgm:Version"):
        assert claim not in xmp, claim
    assert b"ftyp" not in out.read_bytes()  # no clip after the picture either
    assert_camera_metadata(out)  # the EXIF as for any photo


def read_image_xmp(path) -> bytes:
    with Image.open(path) as im:
        x = im.info.get("xmp", b"")
    return x.encode() if isinstance(x, str) else x
