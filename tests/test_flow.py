"""Optical flow, warping and the consistency mask on motions with known answers."""

import numpy as np

from nstvideo.video.flow import FlowEstimator, analyse, consistency_mask, is_cut, warp

from videokit import moving_frames
from nstvideo.media.reader import read_image


def test_warp_follows_the_flow():
    img = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 0] = 3  # each pixel takes the value 3 px to its right
    out = warp(img, flow)
    np.testing.assert_allclose(out[:, :27], img[:, 3:], rtol=1e-5)  # (float32 coordinates)
    np.testing.assert_allclose(out[:, 27:], img[:, 29:30].repeat(3, axis=1), rtol=1e-5)  # border


def test_bicubic_warp_keeps_more_detail_over_many_subpixel_moves():
    """A painted texture carried 16 frames along a 0.5 px sway: bilinear sampling averages
    neighbours each time and washes the texture out; bicubic keeps much more of it."""
    rng = np.random.default_rng(0)
    tex = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    flow = np.zeros((40, 40, 2), np.float32)
    kept = {}
    for interp in ("bilinear", "bicubic"):
        img = tex
        for k in range(16):
            flow[..., 0] = 0.5 if k % 2 else -0.5
            img = warp(img, flow, interp)
        kept[interp] = img[8:-8, 8:-8].astype(float).std() / tex[8:-8, 8:-8].std()
    assert kept["bilinear"] < 0.5 < kept["bicubic"]


def test_mask_marks_leaving_pixels_and_boundaries():
    h, w = 20, 30
    back = np.zeros((h, w, 2), np.float32)
    back[..., 0] = -4  # frame t came from 4 px to the left in t-1: the left edge is new
    fwd = -back
    mask = consistency_mask(back, fwd)
    assert mask[:, :4].max() == 0 and mask[:, 6:].min() == 1
    # a flow that disagrees forward/backward fails the check
    assert consistency_mask(back, back).mean() < 0.1
    # a motion boundary (an object moving against a still background)
    back2 = np.zeros((h, w, 2), np.float32)
    back2[5:15, 10:20, 0] = -3
    m2 = consistency_mask(back2, -back2)
    assert m2[:, 9:12].min() == 0 and m2[0, 0] == 1


def test_dis_flow_on_a_sliding_scene(tmp_path):
    folder = moving_frames(tmp_path / "f", n=2, size=(64, 48), speed=3)
    a, b = (read_image(p) for p in sorted(folder.iterdir()))
    pair = analyse(a, b, FlowEstimator("medium"))
    inner = pair.backward[8:-8, 12:-8]
    assert abs(np.median(inner[..., 0]) - (-3)) < 0.5 and abs(np.median(inner[..., 1])) < 0.5
    assert pair.mask[:, :3].max() == 0 and pair.mask[8:-8, 12:-8].mean() > 0.8
    assert not pair.scene_cut
    other = np.full_like(a, 255) - a
    assert analyse(a, other, FlowEstimator("medium")).scene_cut


def test_fast_motion_the_flow_explains_is_no_cut():
    # measured (benchmarks/cuts.py): a whip of the camera in cockatoo.mp4 left 34% of pixels
    # reliable but the warped frame within 8.4 grey levels; cuts between real clips left
    # at most 14% reliable and 31+ unexplained
    assert not is_cut(0.34, 8.4)
    assert is_cut(0.34, 20.0) and is_cut(0.14, 31.0)
    assert is_cut(0.9, 45.0)  # however reliable the flow looks, the frame is another
    assert not is_cut(0.9, 12.0)


def test_adaptive_warp_is_bilinear_on_jitter_and_bicubic_on_motion():
    rng = np.random.default_rng(1)
    tex = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    flow = np.zeros((24, 32, 2), np.float32)
    flow[:, :16, 0] = 0.3  # jitter on the left
    flow[:, 16:, 0] = 2.5  # motion on the right
    out = warp(tex, flow, "adaptive").astype(int)
    lin, cub = warp(tex, flow, "bilinear").astype(int), warp(tex, flow, "bicubic").astype(int)
    assert np.array_equal(out[:, :14], lin[:, :14]) and np.array_equal(out[:, 18:], cub[:, 18:])
    assert not np.array_equal(lin[:, 18:], cub[:, 18:])  # the two differ there
    mid = np.zeros((24, 32, 2), np.float32)
    mid[..., 0] = 1.3  # between: a blend of both
    m = warp(tex, mid, "adaptive").astype(int)[:, 4:-4]
    lo = np.minimum(warp(tex, mid, "bilinear"), warp(tex, mid, "bicubic")).astype(int)[:, 4:-4]
    hi = np.maximum(warp(tex, mid, "bilinear"), warp(tex, mid, "bicubic")).astype(int)[:, 4:-4]
    assert (m >= lo - 1).all() and (m <= hi + 1).all()
