"""The optimizer on problems with known answers."""

import pytest
import torch

from nstvideo.errors import RenderError
from nstvideo.style.optimize import EarlyStop, optimize


def quadratic(target, scales):
    def f(x):
        total = (scales * (x - target) ** 2).sum()
        return total, {"total": float(total.detach())}
    return f


def test_lbfgs_solves_an_ill_conditioned_quadratic_like_torchs():
    torch.manual_seed(0)
    target = torch.rand(1, 3, 8, 8) * 200 + 20
    scales = torch.logspace(-1, 1, 3 * 8 * 8).view(1, 3, 8, 8)  # condition number 100
    f = quadratic(target, scales)
    x, rep = optimize(torch.full_like(target, 128.0), f, iterations=60)
    assert rep.iterations == 60
    assert (x - target).abs().max() < 0.5
    assert rep.last["total"] < 1e-6 * rep.first["total"]
    # torch's L-BFGS (unit steps, same history) reaches no better in the same iterations
    ref = torch.full_like(target, 128.0).requires_grad_(True)
    opt = torch.optim.LBFGS([ref], lr=1, max_iter=1, history_size=100, tolerance_grad=0,
                            tolerance_change=0)
    def closure():
        opt.zero_grad()
        total = f(ref)[0]
        total.backward()
        return total
    for _ in range(60):
        opt.step(closure)
    assert rep.last["total"] <= 2 * float(f(ref.detach())[0])


def test_pixels_stay_in_the_box():
    target = torch.full((1, 3, 4, 4), 300.0)
    target[..., :2] = -50.0
    x, _ = optimize(torch.full_like(target, 128.0), quadratic(target, torch.ones_like(target)),
                    iterations=30)
    assert x.min() >= 0 and x.max() <= 255
    assert torch.allclose(x[..., :2], torch.zeros(1)) and torch.allclose(x[..., 2:], torch.full((1,), 255.0))


def test_adam_converges_and_early_stop_ends_a_flat_run():
    target = torch.full((1, 3, 4, 4), 100.0)
    f = quadratic(target, torch.ones_like(target))
    x, rep = optimize(torch.zeros_like(target), f, iterations=300, optimizer="adam",
                      learning_rate=4.0)
    assert (x - target).abs().max() < 2
    _, rep = optimize(target.clone(), f, iterations=500, early_stop=EarlyStop(1e-4, 10))
    assert rep.iterations == 11  # nothing to improve: stops after one window


def test_nan_loss_is_reported():
    def f(x):
        total = (x * float("nan")).sum()
        return total, {"total": float(total.detach())}
    with pytest.raises(RenderError):
        optimize(torch.ones(1, 3, 2, 2), f, iterations=3)


def test_fixed_pixels_are_held_and_the_rest_converge():
    target = torch.full((1, 3, 4, 4), 200.0)
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2] = True
    held = torch.full_like(target, 50.0)
    x, _ = optimize(torch.full_like(target, 128.0), quadratic(target, torch.ones_like(target)),
                    iterations=40, fixed=(mask, held))
    assert torch.equal(x[..., :2], held[..., :2])
    assert (x[..., 2:] - 200).abs().max() < 0.5


def test_a_batch_takes_the_steps_each_item_takes_alone():
    """Two unrelated problems in one batch: per-item L-BFGS scalars, so each ends where it
    ends when optimized alone (a shared step size would couple them)."""
    torch.manual_seed(1)
    target = torch.rand(2, 3, 8, 8) * 200 + 20
    scales = torch.stack([torch.logspace(-1, 1, 192), torch.logspace(1, 3, 192)]).view(2, 3, 8, 8)

    def f(x):  # a non-quadratic, per-item separable cost
        d = x - target
        per_item = (scales * d ** 2 + 0.01 * d ** 4).sum(dim=(1, 2, 3))
        return per_item.sum(), {"total": per_item.sum().detach()}

    init = torch.full_like(target, 128.0)
    both, _ = optimize(init, f, iterations=12)
    for k in range(2):
        def alone(x, k=k):
            d = x - target[k:k + 1]
            total = (scales[k:k + 1] * d ** 2 + 0.01 * d ** 4).sum()
            return total, {"total": total.detach()}
        one, _ = optimize(init[k:k + 1], alone, iterations=12)
        assert torch.allclose(both[k:k + 1], one, atol=1e-3), k
    # and the two problems are far from each other's scale: one shared step would not do
    assert (both[0] - target[0]).abs().max() > 1e-3 or (both[1] - target[1]).abs().max() > 1e-3
