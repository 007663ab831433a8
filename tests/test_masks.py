"""Where to paint: a mask keeps the photo outside it, the region inside gets the whole style
(guided Grams, Gatys et al. 2017), one style per region. (Bad masks: test_bad_inputs.py.)"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import content_array, style_array, write_rgb
from typer.testing import CliRunner

from nstvideo import stylize_image
from nstvideo.cli import app
from nstvideo.photos import build_stylizer
from nstvideo.settings import StyleSettings
from nstvideo.style import losses
from nstvideo.style.regions import Regions, guided

S = dict(size=64, iterations=30, seed=0)


def photo(h=48, w=64):
    """The test photo with texture (noise), so a painted region and a kept one differ."""
    rng = np.random.default_rng(5)
    return np.clip(content_array(h, w) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)


def left_mask(h=48, w=64, share=0.5):
    m = np.zeros((h, w), np.uint8)
    m[:, :round(w * share)] = 255
    return m


def test_a_guided_gram_is_the_region_s_own_gram_by_its_area():
    """Binary mask: the Gram of the region's positions alone over its own area; a white mask:
    the plain Gram."""
    torch.manual_seed(0)
    a = torch.rand(1, 8, 12, 16)
    c, h, w = 8, 12, 16
    full = torch.ones(1, 1, 12, 16)
    torch.testing.assert_close(losses.gram(guided(a, full)), losses.gram(a))
    half = torch.zeros(1, 1, 12, 16)
    half[..., :, :5] = 1
    region = a[..., :, :5].reshape(1, c, -1)
    want = region @ region.transpose(1, 2) / (2 * c * 12 * 5)
    torch.testing.assert_close(losses.gram(guided(a, half)) / (2 * c * h * w), want)


def test_the_kept_region_is_the_photo_and_the_painted_one_the_style():
    content = photo()
    mask = left_mask()
    out = stylize_image(content, style_array(), mask=mask, **S).astype(float)
    plain = stylize_image(content, style_array(), **S).astype(float)
    kept, painted = slice(40, None), slice(None, 24)  # 8 px from the edge at 32 either side
    assert np.abs(out[:, kept] - content[:, kept]).mean() <= 2.0
    assert np.abs(out[:, painted] - content[:, painted]).mean() > 10  # painted
    # ... with the whole style: its region's style cost (guided Grams) near the same region's
    # in a render of the whole picture, far below the photo's
    st = build_stylizer(style_array(), StyleSettings(**S))
    inner = cv2.erode(mask, np.ones((9, 9), np.uint8))
    costs = [region_cost(st, img.astype(np.uint8), inner, 0) for img in (out, plain, content)]
    assert costs[0] < 1.5 * costs[1] and costs[0] < 0.3 * costs[2], costs


def region_cost(stylizer, image, mask, style_index):
    """The region's style cost (guided Grams) against one style alone."""
    mask_t = torch.from_numpy(mask.astype(np.float32) / 255)[None, None]
    blend = tuple(float(i == style_index) for i in range(len(stylizer.styles)))
    return stylizer.region_style_cost(stylizer.prepare(image), mask_t, blend)


def test_two_regions_each_take_their_own_style():
    content, a, b = photo(), style_array(seed=0), style_array(seed=1)[..., ::-1].copy()
    b = cv2.GaussianBlur(b, (9, 9), 0)  # a soft painting beside a hard-stroked one
    left, right = left_mask(), 255 - left_mask()
    out = stylize_image(content, [a, b], mask=[left, right], **S)
    st = build_stylizer([a, b], StyleSettings(**S))
    for mask, own, other in ((left, 0, 1), (right, 1, 0)):
        inner = cv2.erode(mask, np.ones((9, 9), np.uint8))  # away from the seam
        assert region_cost(st, out, inner, own) * 2 < region_cost(st, out, inner, other)


def test_a_region_s_mask_is_resized_and_the_edge_has_no_seam():
    """A mask at twice the photo's size works; along the edge the result passes from painted
    to kept without a step larger than those inside the painted region."""
    content = photo()
    big = cv2.resize(left_mask(), (128, 96), interpolation=cv2.INTER_NEAREST)
    out = stylize_image(content, style_array(), mask=big, **S).astype(float)
    steps = np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))  # per column boundary
    assert steps[29:34].max() < 2.5 * np.median(steps[:24])


runner = CliRunner()


def test_a_black_mask_warns_and_gives_the_photo_back(tmp_path):
    src = write_rgb(tmp_path / "p.png", photo())
    style = write_rgb(tmp_path / "s.png", style_array())
    black = write_rgb(tmp_path / "black.png", np.zeros((48, 64, 3), np.uint8))
    out = tmp_path / "o.png"
    r = runner.invoke(app, ["stylize", src, style, "--mask", black, "-o", str(out),
                            "--size", "64", "--iterations", "2", "-q"])
    assert r.exit_code == 0 and "paints nothing" in r.output, r.output
    got = cv2.imread(str(out))[..., ::-1].astype(int)
    assert np.abs(got - photo()).max() <= 1


def test_masks_as_arrays_of_any_kind_mean_the_same():
    """A mask given as uint8, bool, float 0-1 or with transparency reads as the same mask."""
    from nstvideo.photos import load_regions

    m = left_mask()
    want = load_regions(m, 1, (48, 64), "cpu").masks
    rgba = np.dstack([np.full((48, 64, 3), 255, np.uint8), m])  # white, transparent right
    for other in (m > 128, m.astype(np.float32) / 255, rgba):
        torch.testing.assert_close(load_regions([other], 1, (48, 64), "cpu").masks, want)


def test_a_region_that_paints_nothing_is_left_out():
    from nstvideo.photos import load_regions

    with pytest.warns(UserWarning, match="paints nothing"):
        r = load_regions([left_mask(), np.zeros((48, 64), np.uint8)], 2, (48, 64), "cpu")
    assert r.masks.shape[0] == 1 and r.blends == ((1.0, 0.0),)


def test_regions_are_one_image_at_a_time():
    st = build_stylizer(style_array(), StyleSettings(size=32, iterations=1))
    x = torch.cat([st.prepare(photo())] * 2)
    with pytest.raises(ValueError, match="one image"):
        st.run(x, x.clone(), regions=Regions(torch.ones(1, 1, 48, 64), (None,)))


def test_histogram_colours_match_the_style_to_the_photo_first():
    """--preserve-colors histogram: the style's pixels moved to the photo's colour mean and
    covariance; the result keeps the photo's colours far better than a plain transfer."""
    from nstvideo.style.tensors import colour_stats, match_colors

    torch.manual_seed(0)
    style = torch.rand(1, 3, 40, 40) * torch.tensor([200.0, 60, 90]).view(1, 3, 1, 1)
    content = torch.rand(1, 3, 30, 30) * 60 + 90  # (away from 0 and 255: nothing clipped)
    content[:, 2] = 0.5 * content[:, 0] + 40  # correlated channels
    for got, want in zip(colour_stats(match_colors(style, content)), colour_stats(content)):
        torch.testing.assert_close(got, want, atol=1.0, rtol=0.02)
    red = np.zeros((64, 64, 3), np.uint8)  # a red painting with dark strokes
    red[..., 0] = 220
    red[::6] = 30
    plain = stylize_image(photo(), red, **S).astype(float)
    kept = stylize_image(photo(), red, preserve_colors="histogram", **S).astype(float)
    mean = photo().reshape(-1, 3).mean(0)
    assert np.abs(kept.reshape(-1, 3).mean(0) - mean).sum() < \
        0.3 * np.abs(plain.reshape(-1, 3).mean(0) - mean).sum()


def test_preserve_colors_alone_means_luminance():
    from nstvideo.cli import optional_values

    assert optional_values(["stylize", "a.jpg", "s.jpg", "--preserve-colors"]) == \
        ["stylize", "a.jpg", "s.jpg", "--preserve-colors=luminance"]
    assert optional_values(["stylize", "a.jpg", "--preserve-colors", "histogram", "s.jpg"]) == \
        ["stylize", "a.jpg", "--preserve-colors=histogram", "s.jpg"]
    assert optional_values(["x", "--", "--preserve-colors"]) == ["x", "--", "--preserve-colors"]
    assert StyleSettings(preserve_colors=True).by_luminance
    assert StyleSettings(preserve_colors="histogram").by_histogram
    from nstvideo.errors import InputError
    with pytest.raises(InputError, match="luminance .* or histogram"):
        StyleSettings(preserve_colors="sepia")


def test_a_folder_of_photos_with_a_folder_of_masks(tmp_path):
    """Masks named as the photos (any image type, subfolders mirrored); a photo without one is
    painted whole and named in a warning; a changed mask folder repaints."""
    import warnings

    from nstvideo import stylize

    photos, masks = tmp_path / "holiday", tmp_path / "masks"
    (photos / "day2").mkdir(parents=True)
    (masks / "day2").mkdir(parents=True)
    write_rgb(photos / "a.png", photo())
    write_rgb(photos / "day2" / "b.jpg", photo()[::-1].copy())
    cv2.imwrite(str(masks / "day2" / "b.png"), left_mask())  # b's mask, a PNG for a JPEG
    style = write_rgb(tmp_path / "s.png", style_array())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = stylize(photos, style, tmp_path / "out", mask=masks, **S)
    assert len(rep.written) == 2 and not rep.failed
    assert any("no mask" in str(w.message) and "a.png" in str(w.message) for w in caught)
    b = cv2.imread(str(tmp_path / "out" / "day2" / "b.jpg"))[..., ::-1].astype(float)
    a = cv2.imread(str(tmp_path / "out" / "a.png"))[..., ::-1].astype(float)
    source_b = cv2.imread(str(photos / "day2" / "b.jpg"))[..., ::-1].astype(float)  # decoded
    assert np.abs(b[:, 40:] - source_b[:, 40:]).mean() < 4  # kept (JPEG's own loss aside)
    assert np.abs(b[:, :24] - source_b[:, :24]).mean() > 10  # painted
    assert np.abs(a[:, 40:] - photo()[:, 40:]).mean() > 10  # no mask: painted whole


def test_the_temporal_hold_grows_as_a_regions_grams_feel_a_repainted_texture():
    """Each pixel's factor: the sum over regions of its mask over the region's share, at least
    1 (a region a quarter of the picture: 4; two overlapping: their sum; a soft edge: less)."""
    masks = torch.zeros(2, 1, 40, 40)
    masks[0, :, :20, :20] = 1  # a quarter
    masks[1, :, :, :20] = 0.5  # half the picture, half painted: its share 0.25
    factor = Regions(masks, (None, None)).temporal_factor((40, 40))[0, 0]
    assert factor.shape == (40, 40)
    assert float(factor[5, 5]) == pytest.approx(4 + 2)
    assert float(factor[30, 5]) == pytest.approx(2)
    assert float(factor[5, 30]) == pytest.approx(1)  # painted by none: the whole picture's
    half = Regions(masks[1:], (None,)).temporal_factor((20, 20))[0, 0]  # resized with them
    assert float(half[10, 3]) == pytest.approx(2) and float(half[10, 16]) == pytest.approx(1)


@pytest.mark.parametrize("tile", [None, 32])
def test_a_regions_content_tv_temporal_and_level_costs_weigh_as_in_a_whole_picture(tile):
    """Those costs (and a finer level's hold on the picture below it) are means over the
    whole picture and the kept pixels add nothing to them, while a region's guided style cost
    is its own area's: they are divided by the painted share, so that a region is painted as
    strongly as a whole picture would be (not with a third of the content weight where it
    covers a third); the temporal cost is held more inside the region (temporal_factor)."""
    from nstvideo.style import losses
    from nstvideo.style.stylizer import Temporal

    settings = StyleSettings(size=64, style_weight=0, tile=tile)
    stylizer = build_stylizer([style_array(64)], settings)
    content = stylizer.prepare(content_array(48, 64))
    mask = torch.zeros(1, 1, 48, 64)
    mask[..., :, :20] = 1
    regions = Regions(mask, (None,))
    share = float(regions.cover((48, 64)).mean())
    x = content + torch.randn(content.shape, generator=torch.Generator().manual_seed(0)) * 20
    temporal = Temporal(content.clone(), torch.ones(1, 1, 48, 64), 500.0)
    below = losses.level_target(content.flip(3), (48, 64))  # far from x: the hold counts
    whole = stylizer.objective(content, temporal, tile=tile, below=below)(x)
    masked = stylizer.objective(content, temporal, tile=tile, regions=regions, below=below)(x)
    assert 0.3 < share < 0.4
    d2 = (x - content).pow(2) * 500.0 / x.numel()  # each pixel's temporal cost, weighed
    inside, outside = float(d2[..., :20].sum()), float(d2[..., 20:].sum())
    assert float(whole[1]["temporal"]) * 500.0 == pytest.approx(inside + outside, rel=1e-4)
    assert inside + outside > 0.1 * float(whole[0])
    expected = (float(whole[0]) - inside - outside + inside * 64 / 20 + outside) / share
    assert float(masked[0]) == pytest.approx(expected, rel=1e-4)
    level = settings.level_weight * float(whole[1]["level"])
    assert level > 0.3 * float(whole[0])  # the hold is a good part of the total
