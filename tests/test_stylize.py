"""The style-transfer core on real VGG-19 weights at tiny sizes."""

import math

import cv2
import numpy as np
import pytest
import torch

import nstvideo
from nstvideo.photos import build_stylizer, run_batch, run_one
from nstvideo.settings import StyleSettings
from nstvideo.style import losses
from nstvideo.style.tensors import resize, rgb_to_yiq, to_tensor

from conftest import content_array, style_array

TINY = dict(size=48, iterations=15)


def test_optimization_paints_the_style():
    s = StyleSettings(**TINY)
    stylizer = build_stylizer(style_array(), s)
    out, report = run_one(stylizer, content_array())
    assert out.shape == (36, 48, 3) and out.dtype == np.uint8
    assert report.iterations == 15
    assert report.first["content"] == pytest.approx(0, abs=1e-3)  # init = content
    assert report.last["style"] < 0.2 * report.first["style"]  # the style cost fell by 5x+
    assert report.last["total"] < report.first["total"]
    small = nstvideo.photos.resize(content_array(), (36, 48))
    assert np.abs(out.astype(int) - small.astype(int)).mean() > 5  # visibly repainted


def test_bf16_convolutions_give_the_fp32_costs(monkeypatch):
    """--precision bf16 (auto on CPUs with AMX or AVX512-BF16): only the convolutions run in
    bf16, so the features come back fp32 and the costs stay within bf16's rounding of fp32's; an
    optimization in bf16 paints as an fp32 one does. Forced here on any CPU (one without AMX or
    AVX512-BF16 emulates bf16: slower, same numbers)."""
    monkeypatch.setattr("nstvideo.style.device.cpu_computes_bf16", lambda: True)
    st16 = build_stylizer(style_array(), StyleSettings(**TINY, precision="bf16"))
    st32 = build_stylizer(style_array(), StyleSettings(**TINY, precision="fp32"))
    assert st16.amp and st16.vgg.channels_last and not st32.amp
    c = to_tensor(nstvideo.photos.resize(content_array(), (36, 48)))
    x = c + 40 * torch.randn(c.shape, generator=torch.Generator().manual_seed(0))
    feats = st16.features(x)
    assert all(v.dtype == torch.float32 for v in feats.values())
    p16, p32 = st16.objective(c)(x)[1], st32.objective(c)(x)[1]
    for k in ("content", "style"):
        assert float(p16[k]) == pytest.approx(float(p32[k]), rel=0.05)
    a, ra = run_one(st16, content_array())
    _, rb = run_one(st32, content_array())
    assert ra.last["style"] < 0.2 * ra.first["style"]
    assert ra.last["total"] == pytest.approx(rb.last["total"], rel=0.25)
    small = nstvideo.photos.resize(content_array(), (36, 48)).astype(int)
    assert np.abs(a - small).mean() > 5  # visibly repainted (pixel by pixel, two L-BFGS runs
    # part ways after a few steps whatever the precision: the costs are what must agree)


def test_noise_init_repeatable_with_seed():
    a = nstvideo.stylize_image(content_array(), style_array(), init="noise", seed=3, **TINY)
    b = nstvideo.stylize_image(content_array(), style_array(), init="noise", seed=3, **TINY)
    c = nstvideo.stylize_image(content_array(), style_array(), init="noise", seed=4, **TINY)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1


def test_style_blend_targets_are_the_weighted_mean():
    a, b = style_array(seed=0), style_array(seed=1)
    s = StyleSettings(size=48, style_blend=(0.75, 0.25))
    c = torch.zeros(1, 3, 36, 48)
    blended = build_stylizer([a, b], s).style_targets(c)
    ta = build_stylizer(a, s.replace(style_blend=None)).style_targets(c)
    tb = build_stylizer(b, s.replace(style_blend=None)).style_targets(c)
    for name in blended:
        torch.testing.assert_close(blended[name], 0.75 * ta[name] + 0.25 * tb[name])
    only_a = nstvideo.stylize_image(content_array(), [a, b], style_blend=(1, 0), **TINY)
    np.testing.assert_array_equal(only_a, nstvideo.stylize_image(content_array(), a, **TINY))


@pytest.mark.parametrize("h, w", [(1, 300), (3, 397), (4, 400)])
def test_a_thin_strip_of_a_painting_is_enlarged_until_vgg_takes_it(h, w):
    """A style image a few pixels tall (a strip cut from a scan) is scaled up, aspect kept,
    until its short side reaches VGG-19's deepest pooling, from its own sides (a fit to the
    result's size rounds a 4 px side to 1 first)."""
    strip = cv2.resize(style_array(400), (w, h), interpolation=cv2.INTER_AREA)
    s = StyleSettings(size=48)
    stylizer = build_stylizer(strip, s)
    targets = stylizer.style_targets(torch.zeros(1, 3, 36, 48))
    assert set(targets) == {n for n, _ in s.style_layers}
    side = stylizer.min_side  # the short side it is enlarged to, the long one in proportion
    hw = (side, math.ceil(side * w / h))
    feats = stylizer.features(to_tensor(resize(strip, hw), stylizer.device))
    for name, target in targets.items():  # exactly the strip's own Gram at that size
        torch.testing.assert_close(target, losses.style_target(feats[name]))
    out = nstvideo.stylize_image(content_array(), strip, **TINY)
    assert out.shape == (36, 48, 3)  # the 64x48 content at --size 48


def test_a_painting_cut_out_on_transparency_is_its_painted_pixels_style():
    """A style PNG whose right half is transparent (stored black under it, as cut-outs often
    are): its targets are the painted half's, not a style half of flat black."""
    painted = style_array(96)[:, :48]
    cutout = np.zeros((96, 96, 4), np.uint8)
    cutout[:, :48, :3], cutout[:, :48, 3] = painted, 255
    s = StyleSettings(size=96)
    content = torch.zeros(1, 3, 96, 96)
    mine = build_stylizer(cutout, s).style_targets(content)
    alone = build_stylizer(painted, s).style_targets(content)  # 96x48: as large as in mine
    black = build_stylizer(np.ascontiguousarray(cutout[..., :3]), s).style_targets(content)
    for name, _ in s.style_layers:
        gap = (mine[name] - alone[name]).norm() / alone[name].norm()
        naive = (black[name] - alone[name]).norm() / alone[name].norm()
        assert gap < naive, (name, float(gap), float(naive))
        if name != "relu5_1":  # (at 96 px its 6x6 positions all see across the cut's edge)
            assert gap < 0.35 and gap < 0.5 * naive, (name, float(gap), float(naive))
    with pytest.raises(nstvideo.InputError, match="wholly transparent"):
        build_stylizer(np.zeros((64, 64, 4), np.uint8), s).style_targets(content)


def test_preserve_colors_keeps_the_photos_chroma():
    content = content_array()
    style = np.zeros((64, 64, 3), np.uint8)
    style[::4] = (255, 0, 255)  # magenta stripes on black: far from the photo's colours
    def chroma_gap(out):
        ref = to_tensor(nstvideo.photos.resize(content, out.shape[:2]))
        return (rgb_to_yiq(to_tensor(out))[:, 1:] - rgb_to_yiq(ref)[:, 1:]).abs().mean().item()
    plain = nstvideo.stylize_image(content, style, **TINY)
    kept = nstvideo.stylize_image(content, style, preserve_colors=True, **TINY)
    assert chroma_gap(kept) < 3 and chroma_gap(plain) > 2 * chroma_gap(kept)


def test_alpha_channel_is_carried_over():
    rgba = np.dstack([content_array(), np.zeros((48, 64), np.uint8)])
    rgba[:, 32:, 3] = 255
    out = nstvideo.stylize_image(rgba, style_array(), **TINY)
    assert out.shape == (36, 48, 4)
    assert out[:, :20, 3].max() == 0 and out[:, 28:, 3].min() == 255


def test_adam_and_init_file(tmp_path):
    from conftest import write_rgb
    init = write_rgb(tmp_path / "init.png", np.full((10, 10, 3), 128, np.uint8))
    s = StyleSettings(optimizer="adam", init=init, **TINY)
    stylizer = build_stylizer(style_array(), s)
    out, rep = run_one(stylizer, content_array(), init=nstvideo.photos.load(init, "init"))
    assert rep.first["content"] > 1  # started from the grey init, not the content
    assert rep.last["total"] < 0.8 * rep.first["total"]


def test_a_batch_of_photos_gives_each_what_it_gets_alone():
    """In float64 a batched image follows exactly its own steps (per-item L-BFGS scalars);
    in float32 the convolutions' summation order differs with the batch and the non-convex
    optimization amplifies it, so there it is an equally good result (same loss)."""
    s = StyleSettings(**TINY)
    stylizer = build_stylizer(style_array(), s)
    a, b = content_array(), content_array()[::-1, ::-1].copy()
    content = torch.cat([stylizer.prepare(a), stylizer.prepare(b)])
    stylizer.vgg.to(torch.float64)
    stylizer._targets = {k: [{n: t.double() for n, t in d.items()} for d in v]
                         for k, v in stylizer._targets.items()}
    x64 = content.double()
    both, rep = stylizer.run(x64, x64.clone())
    for k in range(2):
        alone, rep_k = stylizer.run(x64[k:k + 1], x64[k:k + 1].clone())
        assert torch.allclose(both[k:k + 1], alone, atol=1e-6), k
    assert rep.iterations == 15
    assert (both[0] - both[1].flip(1, 2)).abs().mean() > 5  # two different results

    stylizer = build_stylizer(style_array(), s)  # float32, as it runs
    (out_a, out_b), report = run_batch(stylizer, [a, b])
    alone_a, rep_a = run_one(stylizer, a)
    alone_b, rep_b = run_one(stylizer, b)
    assert report.last["total"] == pytest.approx(rep_a.last["total"] + rep_b.last["total"],
                                                 rel=0.1)  # 15 its: not converged
    assert out_a.shape == alone_a.shape and out_b.shape == alone_b.shape


def test_batch_size_rules():
    stylizer = build_stylizer(style_array(), StyleSettings(**TINY))
    assert stylizer.batch_limit((512, 512)) == 1  # auto: no batching on a CPU
    assert build_stylizer(style_array(), StyleSettings(**TINY, batch=3)).batch_limit((64, 64)) == 3
    assert build_stylizer(style_array(), StyleSettings(**TINY, batch=3, preserve_colors=True)
                          ).batch_limit((64, 64)) == 1  # each photo has its own style target
