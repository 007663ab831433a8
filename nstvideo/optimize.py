"""One image's optimization: from an init tensor and an objective to the optimized pixels.

Knows nothing of videos or files: the objective closes over the precomputed targets.

L-BFGS is our own (Nocedal & Wright, alg. 7.4, two-loop recursion) rather than torch.optim's,
for two measured reasons (benchmarks/vs_pastiche.py, README):
  * pixels are kept in the displayable box [0, 255] by projecting every step, so the result that
    is saved is the one that was optimized (clipping afterwards raised the loss by ~15%);
  * the first step moves the largest pixel by FIRST_STEP_PX instead of torch's 1/|g|₁ scaling,
    which wasted the first ~5 iterations on steps of a fraction of a grey level.
One objective evaluation per iteration, as with torch's L-BFGS without line search.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

# x -> (total cost, {name: cost part}); parts may be floats or 0-d tensors (read in one sync).
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, dict]]

LBFGS_HISTORY = 100  # curvature pairs kept (3·H·W floats each: 3 MB at 512 px)
FIRST_STEP_PX = 8.0  # the first (gradient) step moves the most-changed pixel by this much
PIXEL_RANGE = (0.0, 255.0)  # the box the optimized pixels are projected into


@dataclass(frozen=True)
class EarlyStop:
    """Stop when the loss improved by less than `rel_tol` (relative) over the last `window`
    iterations (Ruder et al. 2016: 1e-4 over 50)."""

    rel_tol: float = 1e-4
    window: int = 50


@dataclass
class OptimizeReport:
    iterations: int = 0  # iterations actually run
    first: dict[str, float] | None = None  # the loss parts at the init image
    last: dict[str, float] | None = None  # the loss parts at the final image


class _Evaluator:
    """Calls the objective with gradients on; keeps the parts of the latest evaluation."""

    def __init__(self, objective: Objective):
        self.objective = objective
        self.parts: dict[str, float] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().requires_grad_(True)
        total, parts = self.objective(x)
        (grad,) = torch.autograd.grad(total, x)
        values = [v if isinstance(v, float) else v.float() for v in parts.values()]
        if any(isinstance(v, torch.Tensor) for v in values):  # one device sync for all parts
            values = torch.stack([torch.as_tensor(v, device=grad.device, dtype=torch.float32)
                                  for v in values]).tolist()
        self.parts = dict(zip(parts, values))
        return grad


class LBFGS:
    """Projected L-BFGS with unit steps; state: the last `history` (s, y) pairs."""

    def __init__(self, history: int = LBFGS_HISTORY):
        self.pairs: deque[tuple[torch.Tensor, torch.Tensor, float]] = deque(maxlen=history)

    def direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H·g by the two-loop recursion, H₀ = (sᵀy / yᵀy)·I from the newest pair.

        The scalars stay 0-d tensors on the device: no host sync inside the recursion."""
        if not self.pairs:
            return -g * (FIRST_STEP_PX / g.abs().max().clamp_min(1e-12))
        q = g.flatten().clone()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * torch.dot(s, q)
            q.sub_(a * y)
            alphas.append(a)
        s, y, _ = self.pairs[-1]
        q.mul_(torch.dot(s, y) / torch.dot(y, y))
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * torch.dot(y, q)
            q.add_((a - b) * s)
        return q.neg_().view_as(g)

    def update(self, s: torch.Tensor, y: torch.Tensor) -> None:
        s, y = s.flatten(), y.flatten()
        sy = torch.dot(s, y)
        if float(sy) > 1e-10:  # keep only pairs with positive curvature (H stays pos. definite)
            self.pairs.append((s, y, 1.0 / sy))


def optimize(init: torch.Tensor, objective: Objective, *, iterations: int,
             optimizer: str = "lbfgs", learning_rate: float = 4.0,
             early_stop: EarlyStop | None = None,
             on_step: Callable[[int, dict[str, float]], None] | None = None,
             fixed: tuple[torch.Tensor, torch.Tensor] | None = None,
             ) -> tuple[torch.Tensor, OptimizeReport]:
    """Minimize objective(x) over pixels x in [0, 255], starting from `init` (B, 3, H, W).

    `fixed` = (mask (B, 1, H, W) bool, values (B, 3, H, W)) holds the masked pixels at those
    values (a constraint, projected like the box).

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
    evaluate = _Evaluator(objective)
    report = OptimizeReport()
    history: list[float] = []
    lbfgs = LBFGS() if optimizer == "lbfgs" else None
    if lbfgs is None:
        param = x.clone().requires_grad_(True)
        adam = torch.optim.Adam([param], lr=learning_rate)
    g = gradient(x)
    for i in range(iterations):
        parts = evaluate.parts
        report.first = report.first or dict(parts)
        if not math.isfinite(parts["total"]):
            raise FloatingPointError("the loss became NaN or infinite")
        history.append(parts["total"])
        if lbfgs is not None:
            x_new = project(x + lbfgs.direction(g))
        else:
            param.grad = g
            adam.step()
            with torch.no_grad():
                param.copy_(project(param.detach().clone()))
            x_new = param.detach().clone()
        g_new = gradient(x_new)
        if lbfgs is not None:
            lbfgs.update(x_new - x, g_new - g)
        x, g = x_new, g_new
        report.iterations = i + 1
        if on_step is not None:
            on_step(i, parts)
        if early_stop and len(history) > early_stop.window:
            old, new = history[-1 - early_stop.window], history[-1]
            if old - new <= early_stop.rel_tol * abs(old):
                break
    report.last = dict(evaluate.parts)
    return x.detach(), report
