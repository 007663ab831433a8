"""One image's optimization: from an init tensor and an objective to the optimized pixels.

Knows nothing of videos or files: the objective closes over the precomputed targets.

L-BFGS is our own (Nocedal & Wright; its compact form, see `LBFGS`) rather than torch.optim's,
for two measured reasons (benchmarks/vs_pastiche.py, README):
  * pixels are kept in the displayable box [0, 255] by projecting every step, so the result that
    is saved is the one that was optimized (clipping afterwards raised the loss by ~15%);
  * the first step moves the largest pixel by FIRST_STEP_PX instead of torch's 1/|g|₁ scaling,
    which wasted the first ~5 iterations on steps of a fraction of a grey level;
  * it can be preconditioned (`Preconditioner`): its initial inverse Hessian γ·P with P a
    low-pass boost instead of γ·I, so that its first iterations, before its curvature pairs
    know better, move the image's broad structure as well as its finest pixels.
One objective evaluation per iteration, as with torch's L-BFGS without line search, unless
a step raised an image's cost: then its step is halved (up to BACKTRACKS times, one
evaluation each), and if that does not help it is dropped and its memory with it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nstvideo.errors import RenderError

# x -> (total cost, {name: cost part}); parts may be floats or 0-d tensors (read in one sync).
# The total may be per item of the batch, (B,): then each item's steps are checked on its own
# (see BACKTRACKS); a scalar total is checked only for a single image.
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]

LBFGS_HISTORY = 100  # curvature pairs kept (3·H·W floats each: 3 MB at 512 px)
BACKTRACKS = 2  # a unit step that raised an image's cost is halved up to this many times,
# then dropped with the image's memory: without it one overlong step early on (γ of the
# first pair, the box cutting the step) could raise the cost 8x and leave a 60-iteration
# photo as noise (benchmarks/RESULTS.md, "Fast 6")
RISE = 0.05  # a step may raise an image's cost this much (as unit steps near an optimum often
# do, and the next ones recover) before it is halved: at 0 a 300-iteration photo took up to 44
# extra evaluations for no lower cost (RESULTS.md, "Fast 6")
FIRST_STEP_PX = 8.0  # the first (gradient) step moves the most-changed pixel by this much
PIXEL_RANGE = (0.0, 255.0)  # the box the optimized pixels are projected into


@dataclass(frozen=True)
class Preconditioner:
    """P = I + boost·G_σ (G_σ a Gaussian blur of `sigma` pixels, zero outside the image, on
    the free pixels only): symmetric positive definite, a step of P·g moves detail as the
    plain gradient does and structure wider than σ (1 + boost) times as far. In pixels, not
    in shares of the image, as VGG's receptive fields are. (benchmarks/RESULTS.md, "Fast 6":
    from the content, 2-3% lower total cost after 100 iterations at 128 and 384 px; a 128 px
    video optimized frame by frame, 9% lower style cost and 6% steadier; the fast method's
    refining, 5-7% lower style cost.)"""

    boost: float = 3.0
    sigma: float = 4.0

    def __call__(self, q: torch.Tensor, shape: torch.Size,
                 free: torch.Tensor | None = None) -> torch.Tensor:
        """P·q for q of shape (B, N) holding (B, C, H, W) images; `free` (B, 1, H, W) bool."""
        x = q.view(shape)
        b, c, h, w = x.shape
        r = max(1, math.ceil(3 * self.sigma))
        t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-t ** 2 / (2 * self.sigma ** 2))
        k = k / k.sum()
        out = torch.empty_like(x)
        for i in range(c):  # a channel at a time: the blurs' temporaries are a third of an image
            xi = x[:, i:i + 1] if free is None else x[:, i:i + 1] * free
            y = F.conv2d(xi, k.view(1, 1, 1, -1), padding=(0, r))
            y = F.conv2d(y, k.view(1, 1, -1, 1), padding=(r, 0))
            out[:, i:i + 1] = xi + self.boost * y
            if free is not None:
                out[:, i:i + 1] *= free
        return out.reshape(q.shape)


PRECONDITION = Preconditioner()  # what the stylizer's L-BFGS runs with


@dataclass(frozen=True)
class EarlyStop:
    """Stop when the loss improved by less than `rel_tol` (relative) over the last `window`
    iterations (Ruder et al. 2016: 1e-4 over 50)."""

    rel_tol: float = 1e-4
    window: int = 50


@dataclass
class OptimizeReport:
    iterations: int = 0  # iterations actually run
    backtracks: int = 0  # extra evaluations of steps halved because they raised the cost
    first: dict[str, float] | None = None  # the loss parts at the init image
    last: dict[str, float] | None = None  # the loss parts at the final image
    memory: object = None  # the top level's nstvideo.style.memory.MemoryPlan, where planned


class _Evaluator:
    """Calls the objective with gradients on; keeps the parts of the latest evaluation."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.parts: dict[str, float] = {}
        self.items: list[float] | None = None  # each item's total; None if not known

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        total, parts = self.objective(x)
        items = total.detach().reshape(-1).float()
        (grad,) = torch.autograd.grad(total.sum(), x)
        values = [v if isinstance(v, float) else v.float().reshape(()) for v in parts.values()]
        # one read from the device (its one sync) for all parts and the items' totals
        read = torch.cat([torch.stack([torch.as_tensor(v, device=grad.device,
                                                       dtype=torch.float32) for v in values]),
                          items.to(grad.device)]).tolist()
        self.parts = dict(zip(parts, read[:len(values)]))
        self.items = read[len(values):] if len(items) == len(x) else None
        return grad


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of (B, N) tensors -> (B, 1), without a (B, N) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1, 1)


CHUNKS = 8  # pairs stored in bf16 are read in this many pieces, each made fp32 for its
# matrix product (the piece is the only temporary: an eighth of the pairs, in fp32)


def _pieces(buf: torch.Tensor, k: int, dtype: torch.dtype):
    """The first k stored pairs of `buf` (B, capacity, N) in `dtype`, as (start, block)
    pieces: one view where stored in `dtype`, else CHUNKS converted copies."""
    if buf.dtype == dtype:
        yield 0, buf[:, :k]
        return
    bounds = sorted({k * i // CHUNKS for i in range(CHUNKS + 1)})
    for i, j in zip(bounds, bounds[1:]):
        yield i, buf[:, i:j].to(dtype)


def _products(buf: torch.Tensor, k: int, v: torch.Tensor) -> torch.Tensor:
    """(B, k): the dot product of each of the first k stored vectors with v (B, N)."""
    return torch.cat([torch.bmm(block, v.unsqueeze(2)).squeeze(2)
                      for _, block in _pieces(buf, k, v.dtype)], dim=1)


def _add_combination(out: torch.Tensor, buf: torch.Tensor, k: int, c: torch.Tensor) -> None:
    """out (B, N) += Σᵢ c[:, i] · (stored vector i), for the first k; in place."""
    for i, block in _pieces(buf, k, out.dtype):
        out.unsqueeze(1).baddbmm_(c[:, i:i + block.shape[1]].unsqueeze(1), block)


class LBFGS:
    """Projected L-BFGS with unit steps; state: the last `history` (s, y) pairs.

    H·g in the compact form of Byrd, Nocedal & Schnabel (1994, eq. 3.1), with H₀ = γ·P:
        H = H₀ + [S  H₀Y] · [[R⁻ᵀ(D + YᵀH₀Y)R⁻¹, -R⁻ᵀ], [-R⁻¹, 0]] · [Sᵀ; YᵀH₀]
    (S, Y: the pairs as columns, oldest first; R: the upper triangle of SᵀY, D its
    diagonal): four matrix products with the stored pairs and two small triangular solves,
    so the kernels an iteration launches do not grow with the history (the two-loop
    recursion launched ~6 per pair, 1400 an iteration at 100 pairs: on a GPU as long as
    VGG's passes). It stores S and P·Y (so P is applied once a direction, as before), and
    reads the stored pairs as often as the two-loop did (four times a direction, never in an
    update): the new column of SᵀY and of YᵀPY is the change of Sᵀg and (PY)ᵀg from one
    direction to the next, as y is the change of g (Sᵀy = Sᵀg' - Sᵀg). So `update(s, y)`
    must be given y = the gradient the next `direction` is asked for minus the one the last
    was; where no direction came between two updates, the column is computed directly.
    The same directions as the two-loop recursion, up to rounding (tests/test_optimize.py).

    Batched: each item of a (B, ...) batch is its own problem with its own scalars (the
    pairs' curvature, H₀'s scale, the first step), so an image optimized in a batch follows
    the steps it would follow alone (the objective is a sum of per-item costs); a pair
    without positive curvature for an item is stored as zeros for it, a no-op.
    With a `precondition`er P (images only), H₀ = γ·P, γ = sᵀy / yᵀPy, and the first step
    follows P·g; `free` (B, 1, H, W) bool restricts P to the pixels that may move."""

    def __init__(self, history: int = LBFGS_HISTORY, precondition: Preconditioner | None = None,
                 free: torch.Tensor | None = None, dtype: torch.dtype = torch.float32):
        self.precondition, self.free = precondition, free
        self.capacity = max(1, history)
        self.dtype = dtype  # what the pairs are stored in (bf16 halves them at print sizes)
        self.shape: torch.Size | None = None
        self.count = 0  # pairs added since the start (or since all were forgotten)
        self.S: torch.Tensor | None = None  # (B, capacity, N) in `dtype`: a ring of s
        self.PY: torch.Tensor | None = None  # ... of P·y
        self.SY: torch.Tensor | None = None  # (B, cap, cap) fp32: sᵢ·yⱼ, i older than j
        self.YPY: torch.Tensor | None = None  # yᵢ·P·yⱼ
        self.seen: torch.Tensor | None = None  # (B, 2, cap): Sᵀg, (PY)ᵀg of the last direction
        self.pending: tuple | None = None  # the newest pair's (slot, ok) until its column is in
        self.directed = False  # a direction was asked for since the last update
        self.gamma: torch.Tensor | None = None  # (B, 1): H₀ = γ·P, sᵀy / yᵀPy of the newest
        self.started: torch.Tensor | None = None  # (B, 1) bool: the item has a usable pair

    @property
    def stored(self) -> int:
        """The pairs held (at most `capacity`)."""
        return min(self.count, self.capacity)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H·g, per batch item. Everything stays on the device: no host sync."""
        b = g.shape[0]
        self.shape = g.shape
        if self.count == 0:
            self.seen, self.directed = None, True
            return self._first_step(g)
        k, gamma = self.stored, self.gamma
        flat = g.reshape(b, -1)
        seen = torch.stack([_products(self.S, k, flat), _products(self.PY, k, flat)], 1)
        if self.pending is not None:  # the newest pair's column: how Sᵀg, (PY)ᵀg changed
            slot, ok = self.pending
            old = self.seen.shape[2]
            self._column(slot, ok, seen[:, :, :old] - self.seen)
        self.pending, self.seen, self.directed = None, seen, True
        a, c = seen[:, 0], seen[:, 1] * gamma  # Sᵀg, YᵀH₀g
        sy, ypy = self.SY[:, :k, :k], self.YPY[:, :k, :k]
        order = None
        if self.count > self.capacity:  # the ring has wrapped: oldest first
            order = torch.roll(torch.arange(k, device=g.device), -(self.count % k))
            sy, ypy, a, c = sy[:, order][:, :, order], ypy[:, order][:, :, order], \
                a[:, order], c[:, order]
        d = torch.diagonal(sy, dim1=1, dim2=2)
        r = torch.triu(sy, 1) + torch.diag_embed(torch.where(d > 0, d, 1.0))  # zero pairs: 1
        ria = torch.linalg.solve_triangular(r, a.unsqueeze(2), upper=True)  # R⁻¹Sᵀg
        w = d.unsqueeze(2) * ria + gamma.unsqueeze(2) * torch.bmm(ypy, ria)
        p = torch.linalg.solve_triangular(r.transpose(1, 2), w - c.unsqueeze(2),
                                          upper=False).squeeze(2)
        q = ria.squeeze(2).neg()
        if order is not None:  # back to ring order
            p = torch.empty_like(p).index_copy_(1, order, p)
            q = torch.empty_like(q).index_copy_(1, order, q)
        h = self._h0(flat)
        h = (h.clone() if h is flat else h)
        _add_combination(h, self.PY, k, q)  # P(g + Y·q)
        h.mul_(gamma)
        _add_combination(h, self.S, k, p)  # + S·p
        out = h.neg_().view_as(g)
        if b > 1:  # an item with no usable pair yet takes a first step instead
            out = torch.where(self.started.view(b, *([1] * (g.dim() - 1))), out,
                              self._first_step(g))
        return out

    def _column(self, t: int, ok: torch.Tensor, change: torch.Tensor) -> None:
        """The newest pair's (slot t) column of SᵀY and YᵀPY from `change` (B, 2, k): Sᵀy
        and (PY)ᵀy of the pairs in the first k slots (zero for an item where the pair is
        zero); its own entries (slot t) are kept as `update` set them."""
        col = change * ok.view(-1, 1, 1)
        diag_sy, diag_ypy = self.SY[:, t, t].clone(), self.YPY[:, t, t].clone()
        self.SY[:, :col.shape[2], t] = col[:, 0]
        self.YPY[:, :col.shape[2], t] = col[:, 1]
        self.YPY[:, t, :col.shape[2]] = col[:, 1]
        self.SY[:, t, t], self.YPY[:, t, t] = diag_sy, diag_ypy

    def _h0(self, q: torch.Tensor) -> torch.Tensor:
        """P·q for q (B, N) (a copy), or q itself without a preconditioner."""
        return q if self.precondition is None else self.precondition(q, self.shape, self.free)

    def _first_step(self, g: torch.Tensor) -> torch.Tensor:
        """A (preconditioned) gradient step that moves each item's most-changed pixel by
        FIRST_STEP_PX."""
        b = g.shape[0]
        d = self._h0(g.reshape(b, -1)).view_as(g)
        peak = d.reshape(b, -1).abs().amax(dim=1).clamp_min(1e-12)
        return -d * (FIRST_STEP_PX / peak).view(b, *([1] * (g.dim() - 1)))

    def forget(self, items: torch.Tensor) -> None:
        """Forget the curvature pairs of these items ((B,) bool, on the host): their next
        direction is a first step (a zero pair is a no-op for an item)."""
        if self.started is None:  # no pair yet: a first step anyway
            return
        if all(items.tolist()):  # (a host tensor: no sync)
            self.count = 0
            self.gamma = self.started = self.seen = self.pending = None
            return
        keep = ~items.to(self.S.device).view(-1, 1)
        for t in (self.S, self.PY, self.SY, self.YPY, self.seen):
            if t is not None:
                t.mul_(keep.view(-1, 1, 1))
        if self.pending is not None:
            self.pending = (self.pending[0], self.pending[1] & keep)
        self.started = self.started & keep

    def update(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Add the pair (s, y) (consumed: changed in place), for the items where it has
        positive curvature (so H stays positive definite); elsewhere it is stored as zeros,
        a no-op for that item. y must be the change of the gradient between the last
        direction and the next (see the class). No host sync."""
        b = s.shape[0]
        self.shape = s.shape
        s, y = s.reshape(b, -1), y.reshape(b, -1)
        sy = _dot(s, y)
        ok = sy > 1e-10
        s.mul_(ok)
        y.mul_(ok)
        py = self._h0(y)
        ypy = _dot(y, py)
        gamma = sy / ypy.clamp_min(1e-30)
        if self.gamma is None:
            self.gamma, self.started = gamma, ok
        else:
            self.gamma, self.started = torch.where(ok, gamma, self.gamma), self.started | ok
        if self.S is None:
            n, cap = s.shape[1], self.capacity
            self.S = s.new_empty((b, cap, n), dtype=self.dtype)
            self.PY = s.new_empty((b, cap, n), dtype=self.dtype)
            self.SY = s.new_zeros((b, cap, cap))
            self.YPY = s.new_zeros((b, cap, cap))
        if self.pending is not None:  # two pairs without a direction between: the older
            self._drop(self.pending[0])  # one's column cannot be had; it becomes a no-op
        t = self.count % self.capacity
        self.S[:, t].copy_(s)
        self.PY[:, t].copy_(py)
        self.count += 1
        if self.directed and self.seen is not None:  # its column at the next direction
            self.pending = (t, ok)
        else:  # (no direction before it: now, from y)
            k = self.stored
            self._column(t, ok, torch.stack([_products(self.S, k, y),
                                             _products(self.PY, k, y)], 1))
        self.SY[:, t, t] = sy.view(-1) * ok.view(-1)
        self.YPY[:, t, t] = ypy.view(-1) * ok.view(-1)
        self.directed = False

    def _drop(self, t: int) -> None:
        """Make the pair in slot t a zero pair (a no-op for every item)."""
        for buf in (self.S, self.PY):
            buf[:, t].zero_()
        for m in (self.SY, self.YPY):
            m[:, t].zero_()
            m[:, :, t].zero_()
        self.pending = None


def optimize(init: torch.Tensor, objective: Objective, *, iterations: int,
             optimizer: str = "lbfgs", learning_rate: float = 4.0,
             early_stop: EarlyStop | None = None,
             on_step: Callable[[int, dict[str, float]], None] | None = None,
             fixed: tuple[torch.Tensor, torch.Tensor] | None = None,
             precondition: Preconditioner | None = None, history: int = LBFGS_HISTORY,
             history_dtype: torch.dtype = torch.float32,
             ) -> tuple[torch.Tensor, OptimizeReport]:
    """Minimize objective(x) over pixels x in [0, 255], starting from `init` (B, 3, H, W).

    The objective's total is the sum of independent per-item costs: with L-BFGS each item
    takes its own steps (see `LBFGS`); the loss parts reported are sums over the batch, and
    early stop looks at the summed loss.

    `fixed` = (mask (B, 1, H, W) bool, values (B, 3, H, W)) holds the masked pixels at those
    values (a constraint, projected like the box). `precondition`: L-BFGS's (see `LBFGS`);
    `history`, `history_dtype`: how many of its curvature pairs it keeps, and in what
    (nstvideo.style.memory.plan chooses).

    `on_step(i, parts)` is called after each iteration with the loss parts (floats) of the
    image that iteration started from. Returns the optimized tensor and a report.
    """
    lo, hi = PIXEL_RANGE

    def project(t: torch.Tensor) -> torch.Tensor:
        t = t.clamp_(lo, hi)
        return t if fixed is None else torch.where(fixed[0], fixed[1], t)

    def gradient(t: torch.Tensor) -> torch.Tensor:
        """The objective's gradient on the free pixels only: held pixels do not move, so their
        gradient would only corrupt L-BFGS's curvature pairs (y ≠ 0 where s = 0)."""
        grad = evaluate(t)
        return grad if fixed is None else grad.masked_fill(fixed[0], 0.0)

    x = project(init.detach().clone()).contiguous()
    del init  # a level's upsampled start is the caller's temporary: a print-size image freed
    evaluate = _Evaluator(objective)
    report = OptimizeReport()
    trace: list[float] = []  # the total at each iteration (early stop)
    lbfgs = None if optimizer != "lbfgs" else LBFGS(
        min(history, iterations), precondition=precondition, free=None if fixed is None else ~fixed[0],
        dtype=history_dtype)
    if lbfgs is None:
        param = x.clone().requires_grad_(True)
        adam = torch.optim.Adam([param], lr=learning_rate)
    g = gradient(x)
    for i in range(iterations):
        parts, items = evaluate.parts, evaluate.items
        report.first = report.first or dict(parts)
        if not math.isfinite(parts["total"]):
            raise RenderError(f"the loss became NaN or infinite at iteration {i}: lower the "
                              "cost weights (--style-weight, --temporal-weight) or use "
                              "--precision fp32")
        trace.append(parts["total"])
        if lbfgs is not None:
            d = lbfgs.direction(g)
            x_new = project(x + d)
        else:
            param.grad = g
            adam.step()
            with torch.no_grad():
                param.copy_(project(param.detach().clone()))
            x_new = param.detach().clone()
        g_new = gradient(x_new)
        if lbfgs is not None and items is not None and evaluate.items is not None:
            x_new, g_new = _safeguarded(x, g, d, x_new, g_new, items, parts, project,
                                        gradient, evaluate, lbfgs, report)
        if lbfgs is not None and x_new is not x:  # the pair, made in place of the old
            del d  # point and gradient (at print sizes each image-sized tensor is a GB)
            lbfgs.update(x.sub_(x_new).neg_(), g.sub_(g_new).neg_())
        x, g = x_new, g_new
        report.iterations = i + 1
        if on_step is not None:
            on_step(i, parts)
        if early_stop and len(trace) > early_stop.window:
            old, new = trace[-1 - early_stop.window], trace[-1]
            if old - new <= early_stop.rel_tol * abs(old):
                break
    report.last = dict(evaluate.parts)
    return x.detach(), report


def _safeguarded(x, g, d, x_new, g_new, items, parts, project, gradient, evaluate, lbfgs,
                 report):
    """The step x -> x_new along d, checked item by item: an item whose cost rose gets its step
    halved (up to BACKTRACKS times, one evaluation each); one whose cost still rose stays at x
    and forgets its curvature pairs (its next step is a first step). Returns (x_new, g_new).
    The items' totals are floats read with the evaluation's parts: no read of its own."""
    per = (-1, *([1] * (x.dim() - 1)))

    def rose() -> list[bool]:
        return [new > old + RISE * abs(old) for new, old in zip(evaluate.items, items)]

    worse = rose()
    for _ in range(BACKTRACKS):
        if not any(worse):
            return x_new, g_new
        halve = torch.tensor(worse, device=x.device).view(per)
        d = torch.where(halve, d * 0.5, d)  # the others' steps as they were
        x_new = project(x + d)
        g_new = gradient(x_new)
        report.backtracks += 1
        worse = rose()
    if not any(worse):
        return x_new, g_new
    lbfgs.forget(torch.tensor(worse))
    if all(worse):  # all stay: the evaluation at x is the one before
        evaluate.parts, evaluate.items = parts, items
        return x, g
    x_new = torch.where(torch.tensor(worse, device=x.device).view(per), x, x_new)
    return x_new, gradient(x_new)  # a mixed batch: its parts, evaluated once more
