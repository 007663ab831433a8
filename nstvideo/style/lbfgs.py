"""L-BFGS's memory and its step: the curvature pairs of the last iterations, and -H·g from
them in the compact form (Byrd, Nocedal & Schnabel 1994), batched, on the device, without a
host sync. Used by nstvideo.style.optimize; knows nothing of images beyond their shape.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# P·q for q (B, N) holding images of a shape, on their free pixels: optimize.Preconditioner
Precondition = Callable[[torch.Tensor, torch.Size, "torch.Tensor | None"], torch.Tensor]

LBFGS_HISTORY = 100  # curvature pairs kept (3·H·W floats each: 3 MB at 512 px)
FIRST_STEP_PX = 8.0  # the first (gradient) step moves the most-changed pixel by this much


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products of (B, N) tensors -> (B, 1), without a (B, N) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1, 1)


CHUNKS = 8  # pairs stored in bf16 are read in this many pieces, each made fp32 for its
# matrix product (the piece is the only temporary: an eighth of the pairs, in fp32)


def _pieces(buf: torch.Tensor, k: int, dtype: torch.dtype):
    """The first k stored pairs of `buf` (B, capacity, N) in `dtype`, as (pairs, positions,
    block) pieces: one view where stored in `dtype`, else converted copies of at most an
    eighth of k vectors: CHUNKS groups of pairs, or with fewer pairs than CHUNKS, each
    group's positions in pieces (2 pairs of a print-size picture are 2 GB in fp32)."""
    if buf.dtype == dtype:
        yield slice(0, k), slice(None), buf[:, :k]
        return
    bounds = sorted({k * i // CHUNKS for i in range(CHUNKS + 1)})
    n, cuts = buf.shape[2], max(1, -(-CHUNKS // k))
    spans = [slice(n * c // cuts, n * (c + 1) // cuts) for c in range(cuts)]
    for i, j in zip(bounds, bounds[1:]):
        for span in spans:
            yield slice(i, j), span, buf[:, i:j, span].to(dtype)


def _products(buf: torch.Tensor, k: int, v: torch.Tensor) -> torch.Tensor:
    """(B, k): the dot product of each of the first k stored vectors with v (B, N)."""
    out = v.new_zeros(v.shape[0], k)
    for pairs, span, block in _pieces(buf, k, v.dtype):
        out[:, pairs] += torch.bmm(block, v[:, span].unsqueeze(2)).squeeze(2)
    return out


def _add_combination(out: torch.Tensor, buf: torch.Tensor, k: int, c: torch.Tensor) -> None:
    """out (B, N) += Σᵢ c[:, i] · (stored vector i), for the first k; in place."""
    for pairs, span, block in _pieces(buf, k, out.dtype):
        out[:, span].unsqueeze(1).baddbmm_(c[:, pairs].unsqueeze(1), block)


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

    def __init__(self, history: int = LBFGS_HISTORY, precondition: Precondition | None = None,
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
        # an item with no usable pair yet holds only zero pairs (p = q = 0): its direction is
        # γ·P·g, a first step with γ = FIRST_STEP_PX / its largest |P·g| (no image more)
        first = FIRST_STEP_PX / torch.linalg.vector_norm(h, float("inf"), dim=1,
                                                         keepdim=True).clamp_min(1e-12)
        _add_combination(h, self.PY, k, q)  # P(g + Y·q)
        h.mul_(torch.where(self.started, gamma, first))
        _add_combination(h, self.S, k, p)  # + S·p
        return h.neg_().view_as(g)

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
        FIRST_STEP_PX (made in place of P·g: no image-sized temporary beside it)."""
        b = g.shape[0]
        flat = g.reshape(b, -1)
        d = self._h0(flat)
        d = d.clone() if d is flat else d
        peak = torch.linalg.vector_norm(d, float("inf"), dim=1, keepdim=True).clamp_min(1e-12)
        return d.mul_(-FIRST_STEP_PX / peak).view_as(g)

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
