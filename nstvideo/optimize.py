"""One image's optimization: from an init tensor and an objective to the optimized pixels.

Knows nothing of videos or files: the objective closes over the precomputed targets.
"""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass

import torch

Objective = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]]

LBFGS_HISTORY = 50  # curvature pairs kept; beyond ~50 the loss per iteration barely improves


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


def _make_optimizer(x: torch.Tensor, name: str, lr: float) -> torch.optim.Optimizer:
    if name == "lbfgs":
        # One iteration per step() call: the history carries over between calls, and each call
        # costs exactly one objective evaluation, so progress and early stop come for free.
        return torch.optim.LBFGS([x], lr=1.0, max_iter=1, history_size=LBFGS_HISTORY,
                                 tolerance_grad=0.0, tolerance_change=0.0)
    return torch.optim.Adam([x], lr=lr)


def optimize(init: torch.Tensor, objective: Objective, *, iterations: int,
             optimizer: str = "lbfgs", learning_rate: float = 4.0,
             early_stop: EarlyStop | None = None,
             on_step: Callable[[int, dict[str, float]], None] | None = None,
             ) -> tuple[torch.Tensor, OptimizeReport]:
    """Minimize objective(x) over pixels x starting from `init` (B, 3, H, W).

    `on_step(i, parts)` is called after each iteration with the loss parts (floats) of the
    image that iteration evaluated. Returns the optimized tensor (detached) and a report.
    """
    x = init.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    opt = _make_optimizer(x, optimizer, learning_rate)
    report = OptimizeReport()
    history: list[float] = []
    parts: dict[str, float] = {}

    def closure():
        nonlocal parts
        opt.zero_grad(set_to_none=True)
        total, parts = objective(x)
        total.backward()
        return total

    for i in range(iterations):
        opt.step(closure)
        report.iterations = i + 1
        if report.first is None:
            report.first = dict(parts)
        history.append(parts["total"])
        if on_step is not None:
            on_step(i, parts)
        if not math.isfinite(parts["total"]):
            raise FloatingPointError("the loss became NaN or infinite")
        if early_stop and len(history) > early_stop.window:
            old, new = history[-1 - early_stop.window], history[-1]
            if old - new < early_stop.rel_tol * abs(old):
                break
    with torch.no_grad():
        report.last = objective(x)[1]
    return x.detach(), report
