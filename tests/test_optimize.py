"""The optimizer on problems with known answers."""

import pytest
import torch

from nstvideo.errors import RenderError
from nstvideo.style.optimize import PRECONDITION, EarlyStop, Preconditioner, optimize


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


@pytest.mark.parametrize("precondition", [None, PRECONDITION])
@pytest.mark.parametrize("size,held_cols,iterations", [(4, 2, 40), (8, 3, 60)])
def test_fixed_pixels_are_held_and_the_rest_converge(precondition, size, held_cols,
                                                     iterations):
    target = torch.full((1, 3, size, size), 200.0)
    mask = torch.zeros(1, 1, size, size, dtype=torch.bool)
    mask[..., :held_cols] = True
    held = torch.full_like(target, 50.0)
    x, _ = optimize(torch.full_like(target, 128.0), quadratic(target, torch.ones_like(target)),
                    iterations=iterations, fixed=(mask, held), precondition=precondition)
    assert torch.equal(x[..., :held_cols], held[..., :held_cols])
    assert (x[..., held_cols:] - 200).abs().max() < 0.5


def test_a_batch_takes_the_steps_each_item_takes_alone():
    """Two unrelated problems in one batch: per-item L-BFGS scalars, so each ends where it
    ends when optimized alone (a shared step size would couple them)."""
    torch.manual_seed(1)
    target = torch.rand(2, 3, 8, 8) * 200 + 20
    scales = torch.stack([torch.logspace(-1, 1, 192), torch.logspace(1, 3, 192)]).view(2, 3, 8, 8)

    def f(x):  # a non-quadratic, per-item separable cost, its total given per item
        d = x - target
        per_item = (scales * d ** 2 + 0.01 * d ** 4).sum(dim=(1, 2, 3))
        return per_item, {"total": per_item.sum().detach()}

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


def test_the_preconditioner_is_symmetric_positive_definite_on_the_free_pixels():
    """L-BFGS needs H0 symmetric positive definite: uᵀPv = vᵀPu, uᵀPu > 0; held pixels are
    neither read nor moved."""
    torch.manual_seed(2)
    shape = torch.Size((2, 3, 20, 28))
    u, v = torch.randn(2, 3 * 20 * 28, dtype=torch.float64), torch.randn(2, 3 * 20 * 28,
                                                                           dtype=torch.float64)
    free = torch.rand(2, 1, 20, 28) > 0.3
    for p in (PRECONDITION, Preconditioner(10.0, 2.0)):
        for mask in (None, free):
            pu, pv = p(u, shape, mask), p(v, shape, mask)
            assert torch.allclose((u * pv).sum(1), (v * pu).sum(1), rtol=1e-9)
            assert ((u * pu).sum(1) > 0).all()
        held = ~free.expand(2, 3, 20, 28).reshape(2, -1)
        assert (p(u, shape, free)[held] == 0).all()
        moved = p(u + 1e3 * held, shape, free)  # whatever the held pixels hold
        assert torch.allclose(moved, p(u, shape, free))


def smooth_quadratic(target):
    """A cost ruled by the differences between neighbours (as TV and the deep VGG costs are):
    its broad structure is what plain gradient steps move least."""
    def f(x):
        d = x - target
        total = (0.001 * d ** 2).sum() + ((d[..., 1:, :] - d[..., :-1, :]) ** 2).sum() + \
            ((d[..., :, 1:] - d[..., :, :-1]) ** 2).sum()
        return total, {"total": float(total.detach())}
    return f


def test_preconditioning_moves_broad_structure_sooner():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    target = (128 + 80 * torch.sin(xx / 6) * torch.cos(yy / 7)).expand(1, 3, 32, 32).clone()
    f = smooth_quadratic(target)
    init = torch.full_like(target, 128.0)
    _, plain = optimize(init, f, iterations=10)
    x, pre = optimize(init, f, iterations=10, precondition=PRECONDITION)
    assert pre.last["total"] < 0.5 * plain.last["total"], (pre.last, plain.last)
    # and it still solves the problem
    x, pre = optimize(init, f, iterations=200, precondition=PRECONDITION)
    assert (x - target).abs().max() < 1.0



def test_a_step_that_raises_an_images_cost_is_halved_or_dropped(monkeypatch):
    """A non-convex cost (a well in a flat plain) on which unit L-BFGS steps overshoot: no
    image's cost rises from one iteration to the next by more than RISE (its step halved,
    else dropped with its memory), and an image in a batch still takes the steps it takes alone, one
    image's dropped step leaving the other's alone."""
    import nstvideo.style.optimize as optimize_module

    torch.manual_seed(0)
    target = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 100 + 80  # float64: the same steps
    width = torch.tensor([5.0, 40.0], dtype=torch.float64).view(2, 1, 1, 1)  # on any CPU
    init = torch.full_like(target, 128.0) + torch.randn_like(target) * 20

    def well(t, w):
        def f(x):
            d = x - t
            per_item = (-1e3 * torch.exp(-(d / w) ** 2) + 0.01 * d ** 2).sum(dim=(1, 2, 3))
            return per_item, {"total": per_item.sum().detach()}
        return f

    forgotten = []
    real = optimize_module.LBFGS.forget
    monkeypatch.setattr(optimize_module.LBFGS, "forget",
                        lambda self, items: (forgotten.append(items.tolist()), real(self, items)))
    totals = []
    both, rep = optimize(init, well(target, width), iterations=40,
                         on_step=lambda i, p: totals.append(p["total"]))
    assert rep.backtracks > 0 and any(sum(f) == 1 for f in forgotten)  # one dropped a step
    rise = optimize_module.RISE  # the rise a step may make before it is halved
    assert all(b <= a + rise * abs(a) for a, b in zip(totals, totals[1:])), totals
    for k in range(2):
        one, _ = optimize(init[k:k + 1], well(target[k:k + 1], width[k:k + 1]), iterations=40)
        assert torch.allclose(both[k:k + 1], one, atol=1e-3), k


def test_forgetting_leaves_the_other_items_memory():
    """An item that forgets takes a first step next; the other keeps its L-BFGS direction;
    forgetting before any pair is a no-op."""
    from nstvideo.style.optimize import LBFGS

    lbfgs = LBFGS()
    lbfgs.forget(torch.tensor([True, False]))  # no pair yet
    torch.manual_seed(3)
    s, y = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    y = s * 2 + 0.1 * y  # positive curvature for both
    lbfgs.update(s, y)
    g = torch.randn(2, 3, 4, 4)
    before = lbfgs.direction(g)
    lbfgs.forget(torch.tensor([True, False]))
    after = lbfgs.direction(g)
    assert torch.allclose(after[1], before[1])
    assert torch.allclose(after[0], LBFGS._first_step(LBFGS(), g[:1])[0])


def _two_loop(pairs, g, h0):
    """The textbook two-loop recursion (Nocedal & Wright, alg. 7.4) for one item, in float64:
    -H·g with H₀ = h0 (a function); pairs oldest first, those without positive curvature
    skipped."""
    q, alphas = g.clone(), []
    pairs = [(s, y, 1 / float(s @ y)) for s, y in pairs if float(s @ y) > 1e-10]
    for s, y, rho in reversed(pairs):
        a = rho * float(s @ q)
        q -= a * y
        alphas.append(a)
    q = h0(q)
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        q += s * (a - rho * float(y @ q))
    return -q


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compact_lbfgs_gives_the_two_loop_direction(dtype):
    """The compact form's -H·g equals the two-loop recursion's, with the preconditioner, after
    the ring of pairs has wrapped, for a batch whose items differ in which pairs have positive
    curvature (and so in their γ), with pairs stored in fp32 or bf16."""
    from nstvideo.style.optimize import LBFGS, PRECONDITION

    torch.manual_seed(0)
    shape = (2, 3, 12, 10)
    lbfgs = LBFGS(history=4, precondition=PRECONDITION, dtype=dtype)
    kept: list[list] = [[], []]
    g = torch.randn(shape)
    for i in range(7):  # 7 pairs into a ring of 4, a direction between (as `optimize` goes)
        lbfgs.direction(g)
        s = torch.randn(shape)
        y = 2 * s + 0.3 * torch.randn(shape)
        if i == 5:
            y[1] = -s[1]  # negative curvature for item 1 only: skipped for it
        for b in range(2):
            sb, yb = s[b].reshape(-1).double(), y[b].reshape(-1).double()
            if dtype == torch.bfloat16:  # what the ring holds
                sb, yb = sb.to(dtype).double(), yb.to(dtype).double()
            kept[b].append((sb, yb))
        g = g + y  # y: the gradient's change
        lbfgs.update(s.clone(), y.clone())
    got = lbfgs.direction(g)
    for b in range(2):
        pairs = kept[b][-4:]
        last = [p for p in pairs if float(p[0] @ p[1]) > 1e-10][-1]
        pre = lambda q: PRECONDITION(q.float().view(1, -1), torch.Size((1, *shape[1:])))  # noqa
        gamma = float(last[0] @ last[1]) / float(last[1] @ pre(last[1]).double().view(-1))
        want = _two_loop(pairs, g[b].reshape(-1).double(),
                         lambda q: gamma * pre(q).double().view(-1))
        err = (got[b].reshape(-1).double() - want).norm() / want.norm()
        assert err < (1e-5 if dtype == torch.float32 else 2e-2), (b, float(err))


def test_an_lbfgs_iteration_launches_the_same_operations_whatever_its_history():
    """The direction and the update are a fixed number of tensor operations, not a few per
    stored pair (on a GPU each is a kernel launch: 600 an iteration at 100 pairs before)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from nstvideo.style.optimize import LBFGS, PRECONDITION

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += 1
            return func(*args, **(kwargs or {}))

    def ops(history, dtype):
        torch.manual_seed(1)
        lbfgs = LBFGS(history=history, precondition=PRECONDITION, dtype=dtype)
        shape = (1, 3, 8, 8)
        for _ in range(history + 3):  # full, and wrapped
            s = torch.randn(shape)
            lbfgs.update(s, 2 * s + 0.1 * torch.randn(shape))
        g = torch.randn(shape)
        with Count() as n:
            lbfgs.direction(g)
            s = torch.randn(shape)
            lbfgs.update(s, 2 * s)
        return n.ops

    for dtype in (torch.float32, torch.bfloat16):
        assert ops(100, dtype) == ops(10, dtype), dtype
    assert ops(100, torch.float32) < 300  # the two-loop recursion: 1403 at 100 pairs, 233 at 10


READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


def count_reads(monkeypatch) -> list:
    """Every read of a tensor's values into Python (on a GPU each is a sync: the host waits
    for the device), counted by method."""
    seen: list = []
    for name in READS:
        real = getattr(torch.Tensor, name)

        def read(self, *a, _real=real, _name=name, **k):
            seen.append(_name)
            return _real(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, read)
    return seen


def test_one_read_from_the_device_per_evaluation(monkeypatch):
    """L-BFGS over a batch (items checked one by one, preconditioned): the only read of a
    tensor into Python is the evaluation's (its cost parts and the items' totals, together);
    the step, the curvature pair and the safeguard read nothing."""
    from nstvideo.style.optimize import PRECONDITION

    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 16) * 255

    def objective(x):
        per = ((x - target) ** 2).sum(dim=(1, 2, 3)) + 0.1 * (x[..., 1:] - x[..., :-1]).abs().sum(
            dim=(1, 2, 3))
        return per, {"total": per.sum().detach(), "fit": per[0].detach()}

    reads = count_reads(monkeypatch)
    _, rep = optimize(torch.full_like(target, 128.0), objective, iterations=12,
                      precondition=PRECONDITION)
    evaluations = rep.iterations + 1 + rep.backtracks
    assert rep.iterations == 12 and reads == ["tolist"] * evaluations, reads


def test_a_stylizer_run_reads_once_per_evaluation_and_level(monkeypatch):
    """--preserve-colors reads the content's luminance statistics once per level (one read for
    both), and nothing else is read besides the evaluations."""
    from conftest import content_array, style_array
    from nstvideo.photos import build_stylizer
    from nstvideo.settings import StyleSettings

    from nstvideo.style.stylizer import schedule

    settings = StyleSettings(size=256, iterations=2, seed=0, preserve_colors=True)
    st = build_stylizer(style_array(), settings)
    x = st.prepare(content_array(48, 64))
    levels = len(schedule(tuple(x.shape[2:]), 2, settings))
    reads = count_reads(monkeypatch)
    _, rep = st.run(x, x.clone())
    assert levels == 2 and rep.iterations == 4
    assert reads == ["tolist"] * (rep.iterations + levels + rep.backtracks + levels), reads


def test_a_first_pair_without_curvature_leaves_a_first_step():
    """Alone or in a batch, an item whose only pair has no positive curvature takes a first
    (gradient) step, not a step scaled by that pair's meaningless γ."""
    from nstvideo.style.optimize import LBFGS, PRECONDITION

    torch.manual_seed(2)
    for b in (1, 2):
        lbfgs = LBFGS(precondition=PRECONDITION)
        g = torch.randn(b, 3, 6, 6)
        lbfgs.direction(g)
        s = torch.randn(b, 3, 6, 6)
        lbfgs.update(s.clone(), -s)  # negative curvature
        g2 = g - s
        torch.testing.assert_close(lbfgs.direction(g2), LBFGS._first_step(lbfgs, g2))


def test_the_preconditioner_blurs_a_large_picture_in_strips(monkeypatch):
    """Large pictures are blurred a strip of rows at a time (the CPU's convolution of a
    1 x K kernel unfolds K copies of its input): the same P·q as in one piece, including the
    rows where strips meet and the picture's zero-padded border."""
    import nstvideo.style.optimize as optimize_module

    torch.manual_seed(0)
    shape = torch.Size((2, 3, 61, 37))
    q = torch.randn(2, 3 * 61 * 37) * 50
    free = torch.rand(2, 1, 61, 37) > 0.2
    whole = PRECONDITION(q, shape, free)
    monkeypatch.setattr(optimize_module, "STRIP", 2 * 37 * 5)  # strips of 5 rows
    strips = PRECONDITION(q, shape, free)
    assert torch.allclose(strips, whole, rtol=1e-5, atol=1e-4)
    assert not torch.equal(whole, q)  # (it blurs)
