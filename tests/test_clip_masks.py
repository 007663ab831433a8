"""Masks for clips: a still mask for the whole clip, a clip of mask frames following it,
every method honouring them (kept pixels are the source frames as decoded and resized, exactly),
and bad masks refused in one line before any work."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from nstvideo.cli import app
from nstvideo.errors import InputError
from nstvideo.media.reader import read_image
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import resize
from nstvideo.video.render import stylize_video

from conftest import write_rgb
from videokit import moving_frames

S = StyleSettings(size=40, seed=0)
V = VideoSettings(iterations=3, iterations_first=6, sequence=True)
runner = CliRunner()
EDGE = 4  # px from the mask's edge, where the feathering may reach (at 40 px: 1 px sigma)


def clip(tmp_path, n=6):
    return moving_frames(tmp_path / "clip", n=n, size=(48, 40))  # 40 px -> 40x32 frames


def sources(folder, hw=(32, 40)):
    return [resize(read_image(p)[..., :3], hw) for p in sorted(folder.iterdir())]


def mask_frames(tmp_path, n=6, size=(48, 40), moving=True):
    """Mask frames: white left of a border that moves right 4 px a frame."""
    folder = tmp_path / "masks"
    folder.mkdir()
    w, h = size
    for i in range(n):
        m = np.zeros((h, w, 3), np.uint8)
        m[:, :w // 3 + (6 * i if moving else 0)] = 255
        write_rgb(folder / f"m_{i:04d}.png", m)
    return folder


def rendered(out):
    return [read_image(p) for p in sorted(out.iterdir())]


@pytest.mark.parametrize("method", ["optimize", "fast", "keyframes"])
def test_a_still_mask_keeps_the_rest_of_every_frame_exactly(tmp_path, style_png, method):
    src = clip(tmp_path)
    mask = np.zeros((40, 48), np.uint8)
    mask[:, :24] = 255  # the left half painted
    v = V.replace(method=method, **({} if method == "optimize" else {"train_steps": 20}))
    stylize_video(src, [style_png], tmp_path / "out", settings=S, video=v, mask=mask)
    kept_cols = slice(20 + EDGE, None)  # 24 of 48 px is 20 of 40
    for got, want in zip(rendered(tmp_path / "out"), sources(src)):
        assert np.array_equal(got[:, kept_cols], want[:, kept_cols])
        assert np.abs(got[:, :20 - EDGE].astype(int) - want[:, :20 - EDGE]).mean() > 8


@pytest.mark.parametrize("method", ["optimize", "fast", "keyframes"])
def test_a_mask_clip_follows_the_clip_frame_for_frame(tmp_path, style_png, method):
    src, masks = clip(tmp_path), mask_frames(tmp_path)
    v = V.replace(method=method, **({} if method == "optimize" else {"train_steps": 20}))
    stylize_video(src, [style_png], tmp_path / "out", settings=S, video=v, mask=masks)
    for i, (got, want) in enumerate(zip(rendered(tmp_path / "out"), sources(src))):
        edge = round((48 // 3 + 6 * i) * 40 / 48)  # the border at 40 px
        assert np.array_equal(got[:, edge + EDGE:], want[:, edge + EDGE:]), i
        assert np.abs(got[:, :edge - EDGE].astype(int) - want[:, :edge - EDGE]).mean() > 8, i


def test_a_keyframe_is_painted_where_the_masks_paint_in_the_frames_it_serves(tmp_path):
    """The network learns a keyframe where it was painted: with a mask clip, that is every
    pixel a mask paints up to the next keyframe, not its own frame's mask alone."""
    from types import SimpleNamespace

    from nstvideo.media.video import open_source
    from nstvideo.video.clipmasks import clip_masks
    from nstvideo.video.job import SourceSpec
    from nstvideo.video.keyframes import keyframe_regions

    src, folder = clip(tmp_path), mask_frames(tmp_path)  # each mask wider than the last
    masks = clip_masks(folder, SourceSpec(src, None, None, 10 ** 8, 0, None, 1),
                       open_source(src), 1)
    job, hw = SimpleNamespace(masks=masks, hw=(32, 40), settings=S), (32, 40)
    first, second = keyframe_regions(job, [0, 3], 6)
    frames = [f for _, f in masks.cursor(hw, 1).take(0, 6)]
    for got, widest in ((first, frames[2]), (second, frames[5])):
        want = masks.regions(widest, hw, "cpu")
        assert torch.equal(got.masks, want.masks)
    assert first.cover(hw)[0, 0, :, 23 - EDGE].min() > 0.99  # frame 2's border, not frame 0's
    assert second.cover(hw)[0, 0, :, 38 - EDGE].min() > 0.99  # frame 5's


def test_a_region_per_style_in_a_clip(tmp_path, style_png, style2_png):
    src, masks = clip(tmp_path), mask_frames(tmp_path, moving=False)
    inverse = tmp_path / "inverse"
    inverse.mkdir()
    for p in sorted(masks.iterdir()):
        write_rgb(inverse / p.name, 255 - read_image(p))
    stylize_video(src, [style_png, style2_png], tmp_path / "out", settings=S, video=V,
                  mask=[masks, inverse])
    got, want = rendered(tmp_path / "out")[2], sources(src)[2]
    left, right = slice(0, 13 - EDGE), slice(13 + EDGE, None)
    assert np.abs(got[:, left].astype(int) - want[:, left]).mean() > 8  # both painted
    assert np.abs(got[:, right].astype(int) - want[:, right]).mean() > 8


def test_bad_clip_masks_are_refused_before_any_work(tmp_path, style_png):
    src = clip(tmp_path)
    short = mask_frames(tmp_path, n=5)
    with pytest.raises(InputError, match="has 5 frames and clip 6"):
        stylize_video(src, [style_png], tmp_path / "out", settings=S, video=V, mask=short)
    wide = write_rgb(tmp_path / "wide.png", np.zeros((10, 40, 3), np.uint8))
    with pytest.raises(InputError, match="another shape than the frames"):
        stylize_video(src, [style_png], tmp_path / "out", settings=S, video=V, mask=wide)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="--mask empty: no frames in folder"):
        stylize_video(src, [style_png], tmp_path / "out", settings=S, video=V,
                      mask=tmp_path / "empty")
    assert not (tmp_path / "out").exists()
    r = runner.invoke(app, ["stylize", str(src), str(style_png), "--sequence", "--mask",
                            str(short), "-o", str(tmp_path / "o"), "--size", "40", "--quiet"])
    assert r.exit_code == 2 and "has 5 frames" in r.output and len(
        r.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_preview_of_a_masked_clip_is_the_renders_first_frame(tmp_path, style_png):
    from nstvideo import preview

    src, masks = clip(tmp_path), mask_frames(tmp_path)
    row = preview(src, style_png, settings=S, video=V, mask=masks, write=False).rows[0]
    stylize_video(src, [style_png], tmp_path / "out", settings=S, video=V, mask=masks)
    assert np.array_equal(row.frames[0].result, rendered(tmp_path / "out")[0])


def test_the_memory_plan_counts_masked_regions():
    import torch

    from nstvideo.style.memory import GIB, REGION_SHARE, activation_bytes, plan

    hw, layers, cpu = (512, 768), ("relu4_2", "relu1_1", "relu5_1"), torch.device("cpu")
    plain, two = (plan(hw, layers, cpu, 20 * GIB, regions=r) for r in (0, 2))
    image = 4 * 3 * hw[0] * hw[1]
    assert plain.tile is None and two.tile is None and plain.history == two.history
    assert two.peak - plain.peak == pytest.approx(
        2 * REGION_SHARE * activation_bytes(hw, layers, cpu) + 2 * image, abs=8)
    tight = plain.peak + 1024  # enough for the plain plan, not for two regions'
    assert plan(hw, layers, cpu, tight).tile is None
    squeezed = plan(hw, layers, cpu, tight, regions=2)
    assert squeezed.peak <= tight and (squeezed.history, squeezed.tile) != (plain.history, None)


def test_the_networks_loss_counts_a_keyframe_only_where_it_was_painted():
    import torch

    from nstvideo.net import _l1

    a = torch.rand(2, 3, 16, 16) * 255
    b = a.clone()
    b[..., 8:] += 100  # differs only where the weight is 0
    w = torch.zeros(2, 1, 16, 16)
    w[..., :8] = 1
    assert float(_l1(a, b, w)) == 0 and float(_l1(a, b, None)) == pytest.approx(50)
    feats = torch.rand(2, 8, 4, 4)  # a feature layer at a quarter of the size: w pooled
    other = feats.clone()
    other[..., 2:] += 1
    assert float(_l1(feats, other, w)) == 0
