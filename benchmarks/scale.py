"""Shots in parallel: the same multi-shot clip rendered by one process, by two local workers
and through a private local Ray cluster, each worker with one thread (this machine has two
cores, so the ratio shows whether the scheduling works: target <= 0.6x the one-worker time);
then a projection for 8 and 64 GPUs of a two-hour film, by simulating the scheduler on a
film-like shot-length distribution with the per-frame and per-unit times measured here.

Run:  python benchmarks/scale.py [--frames 160] [--size 96] [--iterations 10] [--no-ray]
          [--film-frame-seconds 1,2,4]
(`--film-frame-seconds`: the seconds one GPU takes per 1080p frame, which only a GPU can
measure (benchmarks/gpu.sh); the projection is given for each value.)
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import tempfile
import time
from pathlib import Path

from clips import DATA, film, shot_lengths

from nstvideo.video.render import stylize_video
from nstvideo.video.plan import MAX_PIECE, make_units
from nstvideo.settings import StyleSettings, VideoSettings


def render(clip: Path, out: Path, args, events=None, **engine) -> tuple[float, object]:
    import torch

    torch.set_num_threads(1)  # one thread in every worker, the one-process run included

    def on_event(kind, unit, where, detail):
        if events is not None:
            events.append((time.perf_counter(), kind, unit))

    t0 = time.perf_counter()
    rep = stylize_video(clip, [DATA / "starry_night.jpg"], out, overwrite=True, restart=True,
                        settings=StyleSettings(size=args.size, seed=0),
                        video=VideoSettings(iterations=args.iterations), on_event=on_event,
                        **engine)
    return time.perf_counter() - t0, rep


def unit_costs(events: list) -> tuple[float, float]:
    """(seconds a later frame takes, extra seconds a unit costs over its frames: its first
    frame's larger budget, its segment encodes...) from the events of a one-process render."""
    frames = [t for t, kind, _ in events if kind == "frame"]
    steps = [b - a for a, b in zip(frames, frames[1:])]
    firsts = [b - a for (a, ka, ua), (b, kb, ub) in zip(events, events[1:])
              if kb == "frame" and ka == "unit"]  # from the end of one unit to the next's 1st
    frame_s = statistics.median(steps)
    return frame_s, max(0.0, statistics.mean(firsts) - frame_s) if firsts else 0.0


def simulate(units: list[int], workers: int, frame_s: float, unit_s: float) -> tuple[float, float]:
    """Units (frames each) taken in order by whichever worker is free first, as the local
    pool and the Ray engine do. Returns (makespan seconds, idle share of worker time)."""
    free = [0.0] * workers
    heapq.heapify(free)
    busy = 0.0
    for n in units:
        t = heapq.heappop(free)
        d = unit_s + n * frame_s
        busy += d
        heapq.heappush(free, t + d)
    makespan = max(free)
    return makespan, 1 - busy / (makespan * workers)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=160)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--film-frame-seconds", default="1,2,4")
    args = ap.parse_args()
    clip, lengths = film(args.frames, width=max(args.size, 96), mean_s=1.0)
    tmp = Path(tempfile.mkdtemp(prefix="nst_scale_"))
    print(f"clip: {args.frames} frames in {len(lengths)} shots {lengths}, {args.size} px, "
          f"{args.iterations} iterations a frame, one thread a worker")
    runs = [("1 process", {}), ("2 workers", {"workers": 2})]
    if not args.no_ray:
        runs.append(("Ray local, 2 CPUs", {"ray": "local"}))
    base, events = None, []
    for i, (name, engine) in enumerate(runs):
        seconds, rep = render(clip, tmp / f"{i}.mp4", args, events if i == 0 else None,
                              **engine)
        base = base or seconds
        where = ", ".join(f"{n} on {w}" for w, n in sorted(rep.where.items()))
        print(f"{name:<20} {seconds:7.1f} s  {seconds / base:5.2f}x  {rep.units} units ({where})")
    # the projection: a two-hour film at 24 fps, shots log-normal around 5 s
    frame_s, extra = unit_costs(events)
    film_lengths = shot_lengths(2 * 3600 * 24, 24, mean_s=5.0, seed=0)
    print(f"\nprojection: a 2-hour film at 24 fps, {len(film_lengths)} shots (mean "
          f"{statistics.mean(film_lengths) / 24:.1f} s, median "
          f"{statistics.median(film_lengths) / 24:.1f} s, longest "
          f"{max(film_lengths) / 24:.0f} s); measured here: a later frame {frame_s:.2f} s, a "
          f"unit {extra:.2f} s more (= {extra / frame_s:.1f} frames: the first frame's budget, "
          f"the segment encode), so a unit costs (frames + {extra / frame_s:.1f}) x s/frame")
    print(f"{'GPUs':>5} {'units':>6} {'s/frame':>8} {'makespan h':>11} {'idle':>6} "
          f"{'speed-up':>9}")
    total = sum(film_lengths)
    cuts = [0]
    for n in film_lengths[:-1]:
        cuts.append(cuts[-1] + n)
    for fs in (float(x) for x in args.film_frame_seconds.split(",")):
        fixed = fs * extra / frame_s  # the unit's extra, in frames, at the film's frame cost
        one = total * fs + len(film_lengths) * fixed
        for gpus in (1, 8, 64):
            units = make_units(total, cuts, workers=gpus)
            sizes = [u.frames for u in units]
            span, idle = simulate(sizes, gpus, fs, fixed)
            print(f"{gpus:>5} {len(units):>6} {fs:>8.1f} {span / 3600:>11.1f} {idle:>6.1%} "
                  f"{one / span:>9.1f}")
    print(f"(1 GPU renders whole shots; with several, long shots are split so that every "
          f"GPU has about two units, pieces of at most {MAX_PIECE} frames)")


if __name__ == "__main__":
    main()
