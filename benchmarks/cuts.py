"""The scene-cut test's two signals on real clips: consecutive frames (no cut) against made
cuts (one clip's frame followed by another clip's, and a clip's frame followed by one far
from it), at the plan's scan size; and what the test (nstvideo.video.flow.is_cut) decides.

Run:  python benchmarks/cuts.py [CLIP ...]   (default: the clips in ../shared/data)
Prints, per group, the reliable share (pixels passing the flow's consistency check) and the
unexplained difference (mean abs, 0-255, of the previous frame warped by the flow from the
frame), and every pair the test gets wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from nstvideo.media.video import open_source
from nstvideo.video.flow import (FlowEstimator, consistency_mask, frame_difference, is_cut,
                                 warp)
from nstvideo.video.plan import scan_size, shrink

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def frames(path: Path) -> list[np.ndarray]:
    """Every frame of a clip, RGB, as a render decodes it."""
    return [frame for _, frame, _ in open_source(path).frames()]


def signals(est: FlowEstimator, prev: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    hw = scan_size(cur.shape[:2])
    p, c = shrink(cv2.resize(prev, (cur.shape[1], cur.shape[0])), hw), shrink(cur, hw)
    back = est.flow(c, p)
    return float(consistency_mask(back, est.flow(p, c)).mean()), \
        frame_difference(warp(p, back), c)


def main() -> None:
    clips = [Path(a) for a in sys.argv[1:]] or sorted(DATA.glob("*.mp4"))
    all_frames = {c.name: frames(c) for c in clips}
    est = FlowEstimator("medium")
    groups: dict[str, list[tuple[str, float, float, bool]]] = {"consecutive": [], "cut": []}
    for name, fr in all_frames.items():
        for k in range(1, len(fr)):
            groups["consecutive"].append((f"{name} {k - 1}->{k}", *signals(est, fr[k - 1], fr[k]),
                                          False))
    names = list(all_frames)
    for i, a in enumerate(names):  # another clip's frame follows: a cut
        for b in names[i + 1:]:
            fa, fb = all_frames[a], all_frames[b]
            for t in (0.1, 0.5, 0.9):
                ka, kb = int(t * (len(fa) - 1)), int((1 - t) * (len(fb) - 1))
                groups["cut"].append((f"{a} {ka} -> {b} {kb}", *signals(est, fa[ka], fb[kb]), True))
                groups["cut"].append((f"{b} {kb} -> {a} {ka}", *signals(est, fb[kb], fa[ka]), True))
    for name, fr in all_frames.items():  # the same clip, far on: a cut where the view changed
        n = len(fr)
        for t in (0.0, 0.3):
            a, b = int(t * n), int(t * n) + n // 2
            if b < n:
                groups.setdefault("far (same clip)", []).append(
                    (f"{name} {a} -> {b}", *signals(est, fr[a], fr[b]), None))
    for g, rows in groups.items():
        rel = np.array([r[1] for r in rows])
        une = np.array([r[2] for r in rows])
        called = sum(is_cut(r[1], r[2]) for r in rows)
        print(f"{g}: {len(rows)} pairs; reliable min {rel.min():.2f} median {np.median(rel):.2f} "
              f"max {rel.max():.2f}; "
              f"unexplained min {une.min():.1f} median {np.median(une):.1f} max {une.max():.1f}; "
              f"called cuts: {called}")
        for label, r, u, truth in rows:
            if truth is not None and is_cut(r, u) != truth:
                print(f"  wrong: {label} (reliable {r:.2f}, unexplained {u:.1f})")
            elif truth is None:
                print(f"  {label}: reliable {r:.2f}, unexplained {u:.1f}, cut: {is_cut(r, u)}")


if __name__ == "__main__":
    main()
