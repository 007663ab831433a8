"""One image's optimization: from an init tensor and an objective to the optimized pixels.

Knows nothing of videos or files: the objective closes over the precomputed targets.

L-BFGS is our own (Nocedal & Wright; its compact form, see `LBFGS`) rather than torch.optim's,
for two measured reasons (benchmarks/vs_pastiche.py, README):
  * pixels are kept in the displayable box [0, 255] by projecting every step, so the result that
    is saved is the one that was optimized (clipping afterwards raised the loss by ~15%);
  * the first step moves the largest pixel by lbfgs.FIRST_STEP_PX, not torch's 1/|g|₁ scaling,
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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nstvideo.errors import RenderError
from nstvideo.style.lbfgs import LBFGS, LBFGS_HISTORY
from nstvideo.style.tensors import gaussian_kernel

# x -> (total cost, {name: cost part}); parts may be floats or 0-d tensors (read in one sync).
# The total may be per item of the batch, (B,): then each item's steps are checked on its own
# (see BACKTRACKS); a scalar total is checked only for a single image.
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]

BACKTRACKS = 2  # a unit step that raised an image's cost is halved up to this many times,
# then dropped with the image's memory: without it one overlong step early on (γ of the
# first pair, the box cutting the step) could raise the cost 8x and leave a 60-iteration
# photo as noise (benchmarks/RESULTS.md, "Fast 6")
RISE = 0.05  # a step may raise an image's cost this much (as unit steps near an optimum often
# do, and the next ones recover) before it is halved: at 0 a 300-iteration photo took up to 44
# extra evaluations for no lower cost (RESULTS.md, "Fast 6")
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
        k, r = gaussian_kernel(self.sigma, x.device, x.dtype)
        out = torch.empty_like(x)
        for i in range(c):  # a channel at a time: the blurs' temporaries are a third of an image
            xi = x[:, i:i + 1] if free is None else x[:, i:i + 1] * free
            y = _blurred(_blurred(xi, k, r, vertical=False), k, r, vertical=True)
            out[:, i:i + 1] = y.mul_(self.boost).add_(xi)
            if free is not None:
                out[:, i:i + 1] *= free
        return out.reshape(q.shape)


STRIP = 1 << 20  # elements: the CPU convolves a 1 x K (or K x 1) kernel by unfolding K
# copies of its input (17 times its size was measured at 3600 x 5400: 11 GB at the poster's
# size), so a large picture is blurred a strip of rows at a time (up to a megapixel: in
# one piece, as before)


def _blurred(x: torch.Tensor, k: torch.Tensor, r: int, vertical: bool) -> torch.Tensor:
    """x (B, 1, H, W) convolved with kernel k (2r + 1 taps, zero outside the picture) along
    its columns (`vertical`) or its rows, STRIP elements at a time (a vertical blur's strips
    read r rows beyond their own)."""
    kernel, pad = (k.view(1, 1, -1, 1), (r, 0)) if vertical else (k.view(1, 1, 1, -1), (0, r))
    h = x.shape[2]
    rows = max(1, STRIP // max(1, x.shape[0] * x.shape[3]))
    if rows >= h:
        return F.conv2d(x, kernel, padding=pad)
    out, reach = torch.empty_like(x), (r if vertical else 0)
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        a = max(0, y0 - reach)
        piece = F.conv2d(x[:, :, a:min(h, y1 + reach)], kernel, padding=pad)
        out[:, :, y0:y1] = piece[:, :, y0 - a:y1 - a]
    return out


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

    Memory: the step taken is kept in the direction's place, and the point it left is not
    kept (x_new - step, where a checked step needs it): at print sizes each image-sized
    tensor is a GB, and one less is held while the objective is evaluated.
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
        step = None
        if lbfgs is not None:
            d = lbfgs.direction(g)
            x_new = project(x + d)
            step = torch.sub(x_new, x, out=d)  # the point it left is x_new - step
            del d, x
        else:
            param.grad = g
            adam.step()
            with torch.no_grad():
                param.copy_(project(param.detach().clone()))
            x_new = param.detach().clone()
        g_new = gradient(x_new)
        if lbfgs is not None and items is not None and evaluate.items is not None:
            x_new, g_new, step = _safeguarded(g, step, x_new, g_new, items, parts, project,
                                              gradient, evaluate, lbfgs, report)
        if step is not None:  # the pair: s the step, y made in place of the old gradient
            lbfgs.update(step, g.sub_(g_new).neg_())
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


def _safeguarded(g, step, x_new, g_new, items, parts, project, gradient, evaluate, lbfgs,
                 report):
    """The step from x = x_new - step to x_new, checked item by item: an item whose cost rose
    gets its step halved (up to BACKTRACKS times, one evaluation each; half a step inside
    the box stays inside it); one whose cost still rose stays at x and forgets its curvature
    pairs (its next step is a first step). Returns (x_new, g_new, the step taken), the step
    None where every item stayed (then x_new is x and g_new its gradient, `g`). The items'
    totals are floats read with the evaluation's parts: no read of its own."""
    per = (-1, *([1] * (x_new.dim() - 1)))

    def rose() -> list[bool]:
        return [new > old + RISE * abs(old) for new, old in zip(evaluate.items, items)]

    worse = rose()
    if not any(worse):
        return x_new, g_new, step
    x = x_new - step  # (an image more, only while a step is checked)
    for _ in range(BACKTRACKS):
        halve = torch.tensor(worse, device=x.device).view(per)
        step = torch.where(halve, step * 0.5, step)  # the others' steps as they were
        x_new = project(x + step)
        g_new = gradient(x_new)
        report.backtracks += 1
        worse = rose()
        if not any(worse):
            return x_new, g_new, x_new - x
    lbfgs.forget(torch.tensor(worse))
    if all(worse):  # all stay: the evaluation at x is the one before
        evaluate.parts, evaluate.items = parts, items
        return x, g, None
    x_new = torch.where(torch.tensor(worse, device=x.device).view(per), x, x_new)
    return x_new, gradient(x_new), x_new - x  # a mixed batch: its parts, evaluated once more
