"""Each cost against a naive loop or a value computed by hand (the seed's formulas)."""

import itertools

import pytest
import torch

from nstvideo.style import losses


def naive_gram(a):  # a: (C, H, W)
    c, h, w = a.shape
    g = torch.zeros(c, c, dtype=torch.float64)
    for i, j in itertools.product(range(c), range(c)):
        g[i, j] = sum(float(a[i, y, x] * a[j, y, x]) for y in range(h) for x in range(w))
    return g


def test_gram_matches_naive_loop():
    a = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    g = losses.gram(a)
    assert g.shape == (2, 3, 3)
    for b in range(2):
        torch.testing.assert_close(g[b], naive_gram(a[b]))


def test_content_loss_by_hand():
    a_g = torch.zeros(1, 2, 1, 2)
    a_c = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])
    # 1/(4·nH·nW·nC) Σ (a_C − a_G)² = (1 + 4 + 9) / (4·1·2·2) = 14/16
    assert losses.content_loss(a_g, a_c).item() == pytest.approx(14 / 16)


def test_style_loss_is_the_seed_formula():
    a_s = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    a_g = torch.randn(1, 3, 4, 5, dtype=torch.float64)
    n_c, n_h, n_w = 3, 4, 5
    expected = ((naive_gram(a_s[0]) - naive_gram(a_g[0])) ** 2).sum() / (2 * n_c * n_h * n_w) ** 2
    got = losses.style_loss(a_g, losses.style_target(a_s))
    assert got.item() == pytest.approx(expected.item(), rel=1e-9)


def test_style_loss_compares_grams_of_different_sizes_per_pixel():
    # A texture tiled twice has the same per-pixel Gram: its loss against the tile is ~0.
    tile = torch.rand(1, 4, 6, 6, dtype=torch.float64)
    tiled = torch.cat([tile, tile], dim=3)
    assert losses.style_loss(tiled, losses.style_target(tile)).item() == pytest.approx(0, abs=1e-12)
    assert losses.style_loss(tiled, losses.style_target(tile * 2)).item() > 1e-3


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_style_loss_gradient_is_autograds_through_the_gram(layout):
    # The closed-form gradient against the numerical one (gradcheck) and against autograd
    # through the Gram, in both layouts, a batch of 2 against one target.
    torch.manual_seed(0)
    a = torch.randn(2, 5, 4, 3, dtype=torch.float64).contiguous(memory_format=layout)
    target = losses.style_target(torch.randn(1, 5, 6, 2, dtype=torch.float64))
    assert torch.autograd.gradcheck(losses.style_loss, (a.clone().requires_grad_(True),
                                                        target.clone().requires_grad_(True)))
    x, y = a.clone().requires_grad_(True), a.clone().requires_grad_(True)
    weights = torch.tensor([0.5, 2.0], dtype=torch.float64)
    (losses.style_loss(x, target) * weights).sum().backward()
    ((losses.style_target(y) - target).pow(2).sum(dim=(1, 2)) * weights).sum().backward()
    torch.testing.assert_close(x.grad, y.grad)
    assert x.grad.abs().max() > 1e-4


def test_tv_loss_by_hand():
    x = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])  # (1, 1, 2, 2)
    # right: (1-0)² + (4-2)² = 5; below: (2-0)² + (4-1)² = 13; / 4 pixels
    assert losses.tv_loss(x).item() == pytest.approx(18 / 4)
    assert losses.tv_loss(torch.full((1, 3, 5, 5), 7.0)).item() == 0


def test_temporal_loss_masks_pixels():
    x = torch.zeros(1, 3, 2, 2)
    prev = torch.ones(1, 3, 2, 2) * 2
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.5]]]])
    # (1/D) Σ c (x − prev)², D = 12: (4·3·1 + 4·3·0.5) / 12
    assert losses.temporal_loss(x, prev, mask).item() == pytest.approx(18 / 12)
