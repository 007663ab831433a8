"""`nstvideo preview`: frames painted as the render paints them, the sheet's layout and
labels, --vary rows, the projection, photos and folders, and bad inputs (one line, exit 2,
nothing written)."""

import math

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from nstvideo import preview
from nstvideo.cli import app
from nstvideo.media.reader import read_image
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.sheet import GAP, band_height
from nstvideo.video.render import stylize_video

from conftest import content_array, write_rgb
from videokit import moving_frames

S = StyleSettings(size=40, seed=0)
V = VideoSettings(iterations=2, iterations_first=3, sequence=True)
runner = CliRunner()


@pytest.fixture
def two_shots(tmp_path):
    """A folder of 8 numbered frames, a cut before the 5th (inverted, mirrored)."""
    folder = moving_frames(tmp_path / "shots", n=8, size=(48, 40))
    for p in sorted(folder.iterdir())[4:]:
        img = cv2.imread(str(p))
        cv2.imwrite(str(p), 255 - img[:, ::-1])
    return folder


def test_frames_equal_the_renders_at_each_shots_start(tmp_path, two_shots, style_png):
    rep = preview(two_shots, style_png, tmp_path / "p.png", settings=S, video=V)
    row = rep.rows[0]
    # the two shots' starts, and frames spread over the clip up to 4 (25 fps)
    assert rep.kind == "clip" and rep.total == 8 and [f.label[:6] for f in row.frames] == [
        "0:00.0", "0:00.1", "0:00.2", "0:00.2"]
    assert [f.time for f in row.frames] == pytest.approx([0, 0.08, 0.16, 0.24])
    assert [f.shot_start for f in row.frames] == [True, False, True, False]
    out = tmp_path / "render"
    stylize_video(two_shots, [style_png], out, settings=S, video=V)
    rendered = sorted(out.iterdir())
    for f, k in zip(row.frames[::2], (0, 4)):
        assert np.array_equal(f.result, read_image(rendered[k])), k  # the same bits
        assert f.source.shape == f.result.shape == (32, 40, 3)
    # the projection: every method, from what was measured
    assert set(row.projection) == {"optimize", "fast", "keyframes"}
    assert all(math.isfinite(v) and v > 0 for v in row.projection.values())
    m = row.measured
    assert m["later"] is not None and m["refine"] is not None and m["step"] > 0
    # optimize: the pass, the stylizer, two first frames and six later ones, as measured
    assert row.projection["optimize"] == pytest.approx(
        m["scan"] + m["setup"] + 2 * m["first"] + 6 * m["later"])


def test_sheet_layout_labels_and_one_row_per_varied_value(tmp_path, two_shots, style_png):
    out = tmp_path / "sheet.png"
    rep = preview(two_shots, style_png, out, settings=S, video=V, frames=3,
                  vary="style-weight=1e-6,1e-1")  # frames 0, 2 (filling) and 4
    assert [r.label for r in rep.rows] == ["style-weight=1e-6", "style-weight=1e-1"]
    assert all(len(r.frames) == 3 for r in rep.rows)  # the two shots' starts and one more
    assert "(in a shot)" in rep.rows[0].frames[1].label
    a, b = (r.frames[0].result.astype(int) for r in rep.rows)
    assert np.abs(a - b).mean() > 5  # the weight changed the painting
    sheet = read_image(out)
    h, w = 32, 40
    bh = band_height([("", [(f.source, f.result, "")]) for f in rep.rows[0].frames])
    row_h = bh + bh + h  # title band, caption band, pictures
    row_w = 3 * (2 * w + GAP) + 2 * GAP
    assert sheet.shape == (2 * row_h + 2 * GAP, row_w, 3)
    assert np.array_equal(sheet[2 * bh:2 * bh + h, w + GAP:2 * w + GAP],
                          rep.rows[0].frames[0].result)  # the result beside its source
    assert np.array_equal(sheet[2 * bh:2 * bh + h, :w], rep.rows[0].frames[0].source)
    assert sheet[:bh].max() > 200  # the title written in its band


def test_the_keyframe_method_shows_its_networks_painting(tmp_path, two_shots, style_png):
    v = V.replace(method="keyframes", train_steps=5)
    rep = preview(two_shots, style_png, settings=S, video=v, write=False)
    row = rep.rows[0]
    assert rep.sheet is None and any("the network trained on these 4 frames (5 steps" in n
                                     for n in row.notes)
    fast = preview(two_shots, style_png, settings=S, video=v.replace(method="fast"),
                   write=False).rows[0]
    # keyframes: the network's painting of the frame; fast: the optimizer's keyframe
    assert np.abs(row.frames[0].result.astype(int) - fast.frames[0].result).mean() > 2


def test_photos_and_a_folder(tmp_path, style_png):
    photo = write_rgb(tmp_path / "p.png", content_array(40, 56))
    rep = preview(photo, style_png, settings=S.replace(iterations=3))
    assert rep.sheet == tmp_path / "p_monet_preview.png" and rep.sheet.is_file()
    assert rep.kind == "photo" and list(rep.rows[0].projection) == ["photo"]
    folder = tmp_path / "holiday"
    folder.mkdir()
    for i in range(5):
        write_rgb(folder / f"{i}.png", content_array(40 + 8 * i, 56))
    rep = preview(folder, style_png, settings=S.replace(iterations=3), frames=2)
    assert rep.total == 5 and [f.label.split(",")[0] for f in rep.rows[0].frames] == [
        "0.png", "2.png"]
    assert rep.rows[0].projection["photos"] > sum(f.seconds for f in rep.rows[0].frames)


def cli(*args):
    return runner.invoke(app, ["preview", *map(str, args), "--size", "40", "--iterations",
                               "2", "--quiet"])


def test_cli_writes_the_sheet_and_prints_the_projection(tmp_path, two_shots, style_png):
    out = tmp_path / "s.png"
    r = cli(two_shots, style_png, "-o", out, "--sequence", "--at", "0.2")
    assert r.exit_code == 0, r.output
    assert "the whole render: optimize" in r.output and out.is_file()
    assert read_image(out).shape[0] > 32


@pytest.mark.parametrize("args,fragment,code", [
    (["-o", "{tmp}/s.jpg"], "a preview sheet is a PNG", 4),  # an output error, as stylize's
    (["--vary", "bogus=1,2"], "give NAME=V1,V2,...", 2),
    (["--vary", "size=big"], "is not a whole number", 2),
    (["--at", "99"], "not in the range rendered", 2),
    (["--at", "1", "--vary", "method=fast"], "photos", 2),
])
def test_bad_inputs_one_line_nothing_written(tmp_path, two_shots, style_png, args, fragment,
                                             code):
    photo_case = "--at" in args and "method=fast" in args
    src = write_rgb(tmp_path / "p.png", content_array()) if photo_case else two_shots
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    r = cli(src, style_png, *args, *([] if photo_case else ["--sequence"]))
    assert r.exit_code == code and fragment in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*preview*")) and not (tmp_path / "s.jpg").exists()


def test_an_existing_sheet_is_kept_without_overwrite(tmp_path, style_png):
    photo = write_rgb(tmp_path / "p.png", content_array())
    sheet = tmp_path / "p_monet_preview.png"
    sheet.write_bytes(b"mine")
    r = cli(photo, style_png)
    assert r.exit_code != 0 and "--overwrite" in r.output and sheet.read_bytes() == b"mine"


def test_a_later_frame_is_timed_from_its_first_iterations(tmp_path, two_shots, style_png,
                                                           monkeypatch):
    """The projection's later optimize frame is cut after its first TIMED_ITERATIONS (the rest
    of its budget, FrameRenderer.budget, counted at their median): the preview does not pay
    for the whole frame."""
    import nstvideo.video.preview as pv
    from nstvideo.style.stylizer import Stylizer

    runs = []
    real = Stylizer.run

    def run(self, content, init, **kw):
        seen, step = [], kw.get("on_step")

        def counting(i, parts):
            seen.append(i)
            if step is not None:
                step(i, parts)
        runs.append((kw.get("iterations"), seen))
        return real(self, content, init, **{**kw, "on_step": counting})

    monkeypatch.setattr(Stylizer, "run", run)
    monkeypatch.setattr(pv, "TIMED_ITERATIONS", 2)
    video = V.replace(iterations=8, iterations_first=3, early_stop_window=100)
    rep = preview(two_shots, style_png, tmp_path / "p.png", settings=S, video=video)
    cut = [(n, seen) for n, seen in runs if n is not None and len(seen) < n]
    assert [len(seen) for _, seen in cut] == [3] and cut[0][0] >= 8  # its budget, cut at 3
    assert rep.rows[0].measured["later"] > 0
