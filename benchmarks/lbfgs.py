"""L-BFGS: the compact form against the two-loop recursion it replaced, side by side in one
process, on the same photo at the same size (alternating runs, medians).

  python benchmarks/lbfgs.py [--size 512] [--iterations 20] [--runs 3] [--history 100]
          [--before COMMIT]

Prints, for each: seconds per iteration of a whole render (VGG's passes included), and the
time of one direction + update alone with a full history; the tensor operations (kernel
launches on a GPU) an iteration of L-BFGS makes; and the results' agreement (PSNR).
The two-loop version is read from git (`--before`, default the commit before the change).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

import nstvideo.style.optimize as current  # noqa: E402
from nstvideo.photos import build_stylizer  # noqa: E402
from nstvideo.media.reader import read_image  # noqa: E402
from nstvideo.settings import StyleSettings  # noqa: E402


def old_module(commit: str):
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:nstvideo/style/optimize.py"],
                          capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "optimize_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("optimize_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (its dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def step_cost(cls, precondition, shape, history):
    """(seconds, tensor operations) of one direction + update with `history` pairs held."""
    torch.manual_seed(0)
    lbfgs = cls(history=history, precondition=precondition)
    lbfgs.shape = torch.Size(shape)
    for _ in range(history):
        s = torch.randn(shape)
        lbfgs.update(s, 2 * s + 0.1 * torch.randn(shape))
    g = torch.randn(shape)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        lbfgs.direction(g)
        s = torch.randn(shape)
        lbfgs.update(s, 2 * s)
        times.append(time.perf_counter() - t)
    with Count() as n:
        lbfgs.direction(g)
        s = torch.randn(shape)
        lbfgs.update(s, 2 * s)
    return statistics.median(times), n.ops


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--history", type=int, default=100)
    ap.add_argument("--before", default="90703f3")
    a = ap.parse_args()
    before = old_module(a.before)
    impls = {"two-loop": before.LBFGS, "compact": current.LBFGS}
    style = read_image(DATA / "starry_night.jpg")
    content = read_image(DATA / "tubingen.jpg")
    st = build_stylizer(style, StyleSettings(size=a.size, iterations=a.iterations, seed=0,
                                             coarse_levels=1))
    x = st.prepare(content)
    shape = tuple(x.shape)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {shape[3]}x{shape[2]}"
          f", {a.iterations} iterations, history {a.history}")
    for name, cls in impls.items():
        sec, ops = step_cost(cls, current.PRECONDITION, shape, a.history)
        print(f"  {name:9s} one direction + update with {a.history} pairs: {sec * 1e3:7.1f} ms,"
              f" {ops} tensor operations")
    real = current.LBFGS
    per_it: dict[str, list[float]] = {k: [] for k in impls}
    evals: dict[str, int] = {}
    finals: dict[str, list[float]] = {}
    results = {}
    for r in range(a.runs):  # ABBA: neither always first
        for name, cls in (list(impls.items()) if r % 2 == 0 else list(impls.items())[::-1]):
            current.LBFGS = cls
            try:
                t = time.perf_counter()
                out, rep = st.run(x, x.clone(), coarse=False)
                per_it[name].append((time.perf_counter() - t) / rep.iterations)
                results[name], evals[name] = out, rep.iterations + rep.backtracks
                finals.setdefault(name, []).append(rep.last["total"])
            finally:
                current.LBFGS = real
    base = statistics.median(per_it["two-loop"])
    for name, v in per_it.items():
        m = statistics.median(v)
        print(f"  {name:9s} render: {m:.3f} s/iteration (median of {len(v)}: "
              f"{', '.join(f'{t:.3f}' for t in v)}), {m / base:.3f}x the two-loop's; "
              f"{evals[name]} evaluations of the objective; final cost "
              f"{statistics.median(finals[name]):.4g}")
    mse = float(((results["two-loop"] - results["compact"]) ** 2).mean())
    print(f"  results agree to {10 * torch.log10(torch.tensor(255 ** 2 / max(mse, 1e-12))):.1f}"
          " dB PSNR")


if __name__ == "__main__":
    main()
