"""The objective tile by tile equals the whole picture's; the memory plan tiles what does not
fit and refuses in one line what cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import content_array, style_array
from nstvideo.errors import InputError, ModelError
from nstvideo.settings import StyleSettings
from nstvideo.style import memory
from nstvideo.style.stylizer import Stylizer, Temporal
from nstvideo.style.tiled import grid, halo, receptive, split

LAYERS = ("relu4_2", "relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
GIB = 2 ** 30


def test_receptive_fields_are_vggs():
    assert [receptive(n).size for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2",
                                        "relu5_1")] == [3, 10, 24, 68, 84, 156]
    assert receptive("relu5_1").stride == 16 and grid(LAYERS) == 16
    assert halo(LAYERS) == 80  # 70 px reach to relu5_1, on the 16 px grid
    assert halo(("relu1_1", "relu2_1")) % grid(("relu1_1", "relu2_1")) == 0


def test_tiles_own_every_feature_once():
    """Each position of each layer's map is owned by exactly one tile, for sizes on and off
    the grid (a last row thinner than a grid cell is merged into its neighbour)."""
    for hw in ((96, 96), (100, 77), (50, 200), (33, 40)):
        tiles = split(hw, 32, LAYERS)
        for layer in LAYERS:
            s = receptive(layer).stride
            count = np.zeros((hw[0] // s, hw[1] // s), int)
            for t in tiles:
                cy0, cy1, cx0, cx1 = t.crop
                assert cy0 % 16 == 0 and cx0 % 16 == 0  # on the grid
                ys, xs = t.owned(s, ((cy1 - cy0) // s, (cx1 - cx0) // s))
                count[cy0 // s + ys.start:cy0 // s + ys.stop,
                      cx0 // s + xs.start:cx0 // s + xs.stop] += 1
            assert (count == 1).all(), (hw, layer)


def _stylizer(**kw) -> Stylizer:
    return Stylizer([style_array(80)], StyleSettings(size=96, precision="fp32", seed=0, **kw))


@pytest.mark.parametrize("temporal,keep,level,height", [
    (False, 1, False, 72), (True, 1, False, 72), (False, 4, False, 72), (False, 1, True, 75)])
def test_tiled_objective_equals_the_whole_pictures(temporal, keep, level, height):
    """At 96 px with 32 px tiles (9 tiles, each crop mostly halo): the same total, parts and
    gradient as the untiled objective, in fp32 (float rounding only); with one tile's VGG pass
    kept between its two passes, or four; with a finer level held to the one below (an odd
    height: the last row's half positions)."""
    st = _stylizer()
    content = st.prepare(content_array(height, 96))
    assert content.shape[2] == height
    rng = torch.Generator().manual_seed(1)
    x = (content + 40 * torch.randn(content.shape, generator=rng)).clamp(0, 255)
    temp = below = None
    if temporal:
        warped = (content + 30 * torch.randn(content.shape, generator=rng)).clamp(0, 255)
        mask = (torch.rand((1, 1, *content.shape[2:]), generator=rng) > 0.3).float()
        temp = Temporal(warped, mask, 1000.0)
    if level:
        below = 255 * torch.rand((1, 3, height // 2, 48), generator=rng)
    results = []
    for tile in (None, 32):
        f = st.objective(content, temp, tile, keep, below=below)
        xr = x.clone().requires_grad_(True)
        total, parts = f(xr)
        (g,) = torch.autograd.grad(total.sum(), xr)
        results.append((float(total.detach().sum()), {k: float(v) for k, v in parts.items()}, g))
    (t0, p0, g0), (t1, p1, g1) = results
    assert abs(t1 - t0) <= 1e-4 * abs(t0)
    for k in p0:
        assert abs(p1[k] - p0[k]) <= 1e-4 * abs(p0[k]) + 1e-12, k
    assert set(p0) == set(p1) and ("temporal" in p0) == temporal and ("level" in p0) == level
    assert float((g1 - g0).norm() / g0.norm()) <= 1e-4
    assert g0.abs().amax() > 0  # a gradient to compare


def test_masked_regions_in_tiles_equal_the_whole_pictures():
    """Two regions (a soft mask and its complement) in two styles: their guided Grams summed
    tile by tile, and each position's gradient weighed by its regions, give the untiled
    objective's total and gradient (fp32)."""
    from nstvideo.style.regions import Regions

    st = Stylizer([style_array(80), style_array(80, seed=1)],
                  StyleSettings(size=96, precision="fp32", seed=0))
    content = st.prepare(content_array(72, 96))
    x = (content + 40 * torch.randn(content.shape, generator=torch.Generator().manual_seed(2)))
    left = torch.linspace(1, 0, 96).view(1, 1, 1, 96).expand(1, 1, 72, 96).contiguous()
    regions = Regions(torch.cat([left, 1 - left]), ((1.0, 0.0), (0.0, 1.0)))
    results = []
    for tile in (None, 32):
        xr = x.clamp(0, 255).requires_grad_(True)
        total, parts = st.objective(content, None, tile, 1, regions)(xr)
        (g,) = torch.autograd.grad(total.sum(), xr)
        results.append((float(parts["style"]), float(total.detach().sum()), g))
    (s0, t0, g0), (s1, t1, g1) = results
    assert abs(s1 - s0) <= 1e-4 * s0 and abs(t1 - t0) <= 1e-4 * t0
    assert float((g1 - g0).norm() / g0.norm()) <= 1e-4 and g0.abs().amax() > 0


def test_a_render_in_tiles_gives_the_untiled_result():
    """A short fp32 render forced into 32 px tiles ends where the untiled one does."""
    outs = []
    for tile in (None, 32):
        st = _stylizer(iterations=8, tile=tile)
        content = st.prepare(content_array(72, 96))
        x, rep = st.run(content, content.clone())
        outs.append(x)
        assert rep.memory.tile == tile
    mse = float((outs[0] - outs[1]).pow(2).mean())
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-12)) >= 35  # dB: rounding, grown by L-BFGS
    assert float((outs[0] - st.prepare(content_array(72, 96))).abs().mean()) > 1  # it painted


def test_the_plan_tiles_what_does_not_fit_and_refuses_what_cannot():
    cpu = torch.device("cpu")
    whole = memory.plan((512, 512), LAYERS, cpu, 8 * GIB)
    assert whole.tile is None and whole.history == 100  # today's run, untouched
    assert whole.history_dtype == torch.float32 and whole.peak <= 8 * GIB
    small = memory.plan((3072, 4096), LAYERS, cpu, 6 * GIB)
    assert small.tile is not None and small.tile % 16 == 0 and small.peak <= 6 * GIB
    assert small.history >= memory.MIN_PAIRS
    forced = memory.plan((512, 512), LAYERS, cpu, 8 * GIB, tile=128)
    assert forced.tile == 128
    with pytest.raises(ModelError, match=r"use --size (\d+) or less") as e:
        memory.plan((12000, 16000), LAYERS, cpu, 4 * GIB)
    text = str(e.value)
    assert "\n" not in text and "--max-memory" in text
    fit = int(text.split("--size ")[1].split()[0])
    assert 1000 < fit < 16000 and fit % 16 == 0
    hw = (round(12000 * fit / 16000), fit)
    assert memory.plan(hw, LAYERS, cpu, 4 * GIB).peak <= 4 * GIB  # the size named fits


def test_a_budget_too_small_is_refused_before_any_work(monkeypatch):
    st = _stylizer(max_memory=0.01)  # less than the process itself: nothing fits
    content = st.prepare(content_array(72, 96))
    with pytest.raises(ModelError, match="too little to paint anything.*larger --max-memory"):
        st.run(content, content.clone())
    st = Stylizer([style_array(80)], StyleSettings(size=16384, max_memory=2.0))
    monkeypatch.setattr(memory, "resident_bytes", lambda: GIB // 2)
    big = torch.zeros((1, 3, 1, 1)).expand(1, 3, 12288, 16384)  # its size only, no memory
    steps = []  # a size that fits in none: named before the first iteration
    with pytest.raises(ModelError, match=r"16384x12288 picture .* use --size \d+ or less"):
        st.run(big, big, on_step=lambda i, p: steps.append(i))
    assert not steps


@pytest.mark.parametrize("alpha", [False, True])
def test_style_targets_in_tiles_equal_the_whole_images(alpha):
    """A style as large as a print is taken in tiles too: the same Gram targets, with a
    cut-out painting's transparent pixels weighed out as whole."""
    style = style_array(80)
    if alpha:
        a = np.full((80, 80, 1), 255, np.uint8)
        a[:, :30] = 0
        a[:, 30:40] = 128
        style = np.dstack([style, a])
    content = torch.zeros((1, 3, 72, 96))
    got = [Stylizer([style], StyleSettings(size=96, precision="fp32", tile=tile))
           .style_targets(content) for tile in (None, 32)]
    for name in got[0]:
        rel = float((got[1][name] - got[0][name]).norm() / got[0][name].norm())
        assert rel <= 1e-5, name


def test_the_scale_schedule():
    """Coarse to fine: halving down to 128 px, the coarsest level with the iterations given,
    each finer one 0.7x as many (at least 10); one level where asked or for a start that
    already holds the painting (a video's later frames)."""
    from nstvideo.style.stylizer import schedule

    s = StyleSettings()
    assert schedule((384, 512), 300, s) == [((96, 128), 300), ((192, 256), 210),
                                             ((384, 512), 147)]
    poster = schedule((7200, 10800), 300, s)
    assert [max(hw) for hw, _ in poster] == [168, 337, 675, 1350, 2700, 5400, 10800]
    assert [n for _, n in poster] == [300, 210, 147, 103, 72, 50, 35]
    assert schedule((48, 64), 300, s) == [((48, 64), 300)]  # small: one level
    assert schedule((384, 512), 300, s, coarse=False) == [((384, 512), 300)]
    assert schedule((384, 512), 300, s.replace(coarse_levels=1)) == [((384, 512), 300)]
    assert [n for _, n in schedule((2048, 2048), 12, s)] == [12, 10, 10, 10, 10]
    assert [n for _, n in schedule((2048, 2048), 5, s)] == [5] * 5  # never more than asked


def test_a_finer_level_keeps_the_picture_composed_below(monkeypatch):
    """Two levels (48 then 96 px): the finer level paints (its style cost falls) while its
    picture, blurred and taken at every second pixel, stays where it started (the level
    below's), far closer than with the hold off (level_weight 0). (At this size a small
    random style pulls hard: the default weight is chosen at real sizes, RESULTS.md.)"""
    from nstvideo.style import stylizer as module
    from nstvideo.style.losses import downsampled, level_target
    from nstvideo.style.tensors import resize_tensor

    monkeypatch.setattr(module, "COARSEST_SIDE", 32)
    levels = []

    def spy(*args, **kw):
        out = real(*args, **kw)
        levels.append(out)
        return out

    real = module.optimize
    monkeypatch.setattr(module, "optimize", spy)
    drift = {}
    for weight in (3e4, 0.0):
        levels.clear()
        st = _stylizer(iterations=30, coarse_levels=2, level_weight=weight)
        content = st.prepare(content_array(72, 96))
        st.run(content, content)
        (below, _), (x, rep) = levels
        assert below.shape[2:] == (36, 48) and rep.last["style"] < rep.first["style"]
        held = level_target(resize_tensor(below, (72, 96)), (36, 48))
        drift[weight] = float((downsampled(x) - held).abs().mean())
    assert drift[3e4] < 0.5 * drift[0.0], drift
    with pytest.raises(InputError, match="level_weight is -1.0: give a finite number 0 or"):
        StyleSettings(level_weight=-1.0)


def test_a_video_that_must_tile_gives_the_untiled_frames(tmp_path, style_png):
    """A clip rendered in 32 px tiles (each frame's temporal cost too) against whole, fp32."""
    import cv2
    from videokit import make_clip, psnr
    from nstvideo import stylize
    from nstvideo.settings import VideoSettings

    clip = make_clip(tmp_path / "c.mp4", size=(96, 64), frames=3, audio=False)
    outs = []
    for tile in (None, 32):
        out = tmp_path / f"o_{tile}"  # PNG frames: no encoder between the two
        rep = stylize(clip, style_png, out, size=96, seed=0, precision="fp32", tile=tile,
                      video=VideoSettings(iterations=4, iterations_first=6))
        assert ("tiles" in rep.video.memory) == (tile is not None)
        outs.append([cv2.imread(str(p)) for p in sorted(out.glob("*.png"))])
    assert len(outs[0]) == len(outs[1]) == 3
    assert min(psnr(a, b) for a, b in zip(*outs)) >= 35
