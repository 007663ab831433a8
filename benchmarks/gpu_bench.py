"""GPU figures for benchmarks/RESULTS.md (run through benchmarks/gpu.sh):

1. seconds per L-BFGS iteration at 512 px, 1024 px and 1920x1080, fp32 and bf16 (mixed);
2. photos per second at 512 px optimized one at a time and in batches of 2, 4 and 8 (the
   evidence behind --batch auto);
3. frames per second of a 720p and a 1080p clip with the default temporal mode (flow), with
   the GPU's busy fraction (nvidia-smi sampled every 100 ms): the frame loop alone (later
   frames), and `stylize_video` end to end (decode, flow and checkpoint writes overlapped
   with the optimization, first frame and H.264 encode included);
4. the keyframe method's network (--method keyframes): training steps per second and the time
   of the default training, and frames per second of its batched inference at 720p;
5. peak GPU memory and peak RSS for a 10 s and a 60 s clip (benchmarks/memory.py).

Clips are made with ffmpeg's testsrc2 (moving pattern) so that nothing is needed on disk.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

from nstvideo.photos import build_stylizer
from nstvideo.media.video import VideoFile
from nstvideo.video.frames import FrameRenderer
from nstvideo.video.job import even_size
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import resize, to_tensor

TMP = Path(tempfile.gettempdir()) / "nst_gpu_bench"


def style_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    import cv2
    img = np.zeros((512, 512, 3), np.uint8)
    for _ in range(400):
        p = rng.integers(0, 512, 4)
        cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])),
                 tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(2, 9)))
    return img


def clip(w: int, h: int, seconds: float, fps: int = 25) -> Path:
    path = TMP / f"test_{w}x{h}_{seconds:g}s.mp4"
    if not path.exists():
        TMP.mkdir(parents=True, exist_ok=True)
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f",
                        "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={fps}", "-t", str(seconds),
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def lbfgs_ms(device: str, hw, history: int, reps: int) -> float:
    """Milliseconds of one L-BFGS direction + update with `history` pairs held (the compact
    form: a fixed number of kernels whatever the history, #33)."""
    from nstvideo.style.optimize import LBFGS, PRECONDITION

    dev = torch.device(device)
    lbfgs, shape = LBFGS(history=history, precondition=PRECONDITION), (1, 3, *hw)
    g = torch.randn(shape, device=dev)
    for _ in range(history + 1):
        lbfgs.direction(g)
        s = torch.randn(shape, device=dev)
        lbfgs.update(s, 2 * s + 0.1 * torch.randn(shape, device=dev))
    sync(dev)
    t = time.perf_counter()
    for _ in range(reps):
        lbfgs.direction(g)
        s = torch.randn(shape, device=dev)
        lbfgs.update(s, 2 * s)
    sync(dev)
    return 1e3 * (time.perf_counter() - t) / reps


def seconds_per_iteration(device: str, hw, precision: str, its: int) -> float:
    s = StyleSettings(size=max(hw), device=device, precision=precision)
    stylizer = build_stylizer(style_image(), s)
    content = to_tensor(np.random.default_rng(1).integers(0, 256, (*hw, 3), dtype=np.uint8),
                        stylizer.device)
    stylizer.run(content, content.clone(), iterations=3)  # warm-up (cuDNN autotuning)
    sync(stylizer.device)
    t = time.perf_counter()
    stylizer.run(content, content.clone(), iterations=its)
    sync(stylizer.device)
    return (time.perf_counter() - t) / its


def photos_per_second(device: str, hw, batch: int, its: int) -> float:
    s = StyleSettings(size=max(hw), device=device, iterations=its)
    stylizer = build_stylizer(style_image(), s)
    rng = np.random.default_rng(2)
    content = torch.cat([to_tensor(rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
                                   stylizer.device) for _ in range(batch)])
    stylizer.run(content, content.clone(), iterations=3)  # warm-up (cuDNN autotuning)
    sync(stylizer.device)
    t = time.perf_counter()
    stylizer.run(content, content.clone(), iterations=its)
    sync(stylizer.device)
    return batch / (time.perf_counter() - t)


class BusySampler:
    """nvidia-smi utilization.gpu sampled every 100 ms in the background."""

    def __init__(self):
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self):
        def run():
            try:
                p = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits", "-lms", "100"],
                                     stdout=subprocess.PIPE, text=True)
            except OSError:
                return
            for line in p.stdout:
                if self._stop.is_set():
                    break
                try:
                    self.samples.append(float(line.split(",")[0]))
                except ValueError:
                    pass
            p.terminate()
        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    @property
    def busy(self) -> float | None:
        return statistics.mean(self.samples) / 100 if self.samples else None


def video_fps(device: str, w: int, h: int, frames: int, video: VideoSettings) -> tuple:
    src = VideoFile(clip(w, h, frames / 25 + 0.5))
    hw = even_size(src.height, src.width, max(w, h))
    stylizer = build_stylizer(style_image(), StyleSettings(size=max(w, h), device=device))
    renderer = FrameRenderer(stylizer, video)
    content = [resize(f, hw) for _, f, _ in src.frames(0, frames)]
    renderer.render(content[0])  # first frame: full budget, not part of the rate
    sync(stylizer.device)
    with BusySampler() as busy:
        t = time.perf_counter()
        for f in content[1:]:
            renderer.render(f)
        sync(stylizer.device)
        dt = time.perf_counter() - t
    return (len(content) - 1) / dt, busy.busy


def video_end_to_end(device: str, w: int, h: int, frames: int, video: VideoSettings) -> tuple:
    """The whole command: stylize_video on the clip, first frame and encode included."""
    from nstvideo.video.render import stylize_video

    path = clip(w, h, frames / 25 + 0.5)
    out = TMP / f"out_{w}x{h}.mp4"
    with BusySampler() as busy:
        t = time.perf_counter()
        rep = stylize_video(path, style_image(), out, overwrite=True, restart=True,
                            settings=StyleSettings(size=max(w, h), device=device),
                            video=video.replace(duration=f"{frames}f"))
        dt = time.perf_counter() - t
    return rep.frames / dt, busy.busy


def keyframe_net(device: str, w: int, h: int, steps: int, frames: int) -> tuple:
    """(training steps/s, seconds of `steps`, inference frames/s at w x h) of the keyframe
    method's network, trained on two keyframes of the test clip."""
    from nstvideo.training import train_net
    from nstvideo.net import Training, batch_size, paint

    dev = torch.device(device)
    src = VideoFile(clip(w, h, frames / 25 + 0.5))
    content = [f for _, f, _ in src.frames(0, frames)]
    style = resize(style_image(), (h, w))
    pairs = [(content[0], style), (content[-1], style[::-1].copy())]
    train_net(pairs, Training(steps=5), 0, dev)  # warm-up (cuDNN autotuning)
    sync(dev)
    t = time.perf_counter()
    net, _ = train_net(pairs, Training(steps=steps), 0, dev)
    sync(dev)
    train_s = time.perf_counter() - t
    n = batch_size((h, w), dev)
    paint(net, content[:n])  # warm-up
    sync(dev)
    t = time.perf_counter()
    for i in range(0, len(content), n):
        paint(net, content[i:i + n])
    sync(dev)
    return steps / train_s, train_s, len(content) / (time.perf_counter() - t)


class Budget:
    """Rows that would start after `seconds` are skipped (and listed as such), so that the run
    ends inside the device's 10-minute call."""

    def __init__(self, seconds: float | None):
        self.seconds, self.t0 = seconds, time.perf_counter()

    def left(self, row: str) -> bool:
        used = time.perf_counter() - self.t0
        if self.seconds is not None and used > self.seconds:
            print(f"| {row} | skipped: time budget ({used:.0f} s of {self.seconds:.0f} s used) |",
                  flush=True)
            return False
        return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test on a CPU")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds: rows that would start later are skipped")
    args = ap.parse_args()
    dev = args.device
    budget = Budget(args.budget)
    name = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "CPU"
    print(f"# nstvideo GPU figures, {datetime.date.today()}, {name}, torch {torch.__version__}")
    sizes = [(384, 512), (768, 1024), (1080, 1920)] if not args.quick else [(48, 64)]
    its = 20 if not args.quick else 2
    print("\n| size | fp32 s/iter | bf16 s/iter | speed-up |\n|---|---|---|---|")
    for hw in sizes:
        if not budget.left(f"{hw[1]}x{hw[0]}"):
            continue
        f32 = seconds_per_iteration(dev, hw, "fp32", its)
        try:
            b16 = seconds_per_iteration(dev, hw, "bf16", its)
        except Exception as e:  # noqa: BLE001 - CPUs have no bf16 path here
            print(f"| {hw[1]}x{hw[0]} | {f32:.4f} | - ({type(e).__name__}) | - |")
            continue
        print(f"| {hw[1]}x{hw[0]} | {f32:.4f} | {b16:.4f} | {f32 / b16:.2f}x |", flush=True)
    lb_sizes = [(384, 512), (1080, 1920)] if not args.quick else [(48, 64)]
    history = 100 if not args.quick else 5
    print(f"\n| L-BFGS, {history} pairs | direction + update, ms |\n|---|---|")
    for hw in lb_sizes:
        if budget.left(f"L-BFGS {hw[1]}x{hw[0]}"):
            ms = lbfgs_ms(dev, hw, history, 20 if not args.quick else 2)
            print(f"| {hw[1]}x{hw[0]} | {ms:.2f} |", flush=True)
    from nstvideo.settings import TRAIN_STEPS
    steps, (w, h) = (TRAIN_STEPS, (1280, 720)) if not args.quick else (5, (64, 36))
    print(f"\n| keyframe network, {w}x{h} | training steps/s | {steps} steps | inference "
          "frames/s |\n|---|---|---|---|")
    if budget.left("keyframe network"):
        rate, secs, fps = keyframe_net(dev, w, h, steps, 100 if not args.quick else 4)
        print(f"| | {rate:.1f} | {secs:.1f} s | {fps:.1f} |", flush=True)
    hw, its_b = ((384, 512), 20) if not args.quick else ((48, 64), 2)
    print(f"\n| {hw[1]}x{hw[0]} photos, {its_b} its | batch | photos/s | vs batch 1 |\n|---|---|---|---|")
    one = None
    for b in (1, 2, 4, 8) if not args.quick else (1, 2):
        if not budget.left(f"batch {b}"):
            continue
        rate = photos_per_second(dev, hw, b, its_b)
        one = one or rate
        print(f"| | {b} | {rate:.3f} | {rate / one:.2f}x |", flush=True)
    # the quick pass proves the set-up only: two iterations a frame
    video = VideoSettings() if not args.quick else VideoSettings(iterations=2, iterations_first=2)
    clips = [(1280, 720), (1920, 1080)] if not args.quick else [(64, 36)]
    n = 40 if not args.quick else 3
    print(f"\n| clip | frames/s (flow, <= {video.iterations} its, early stop) | GPU busy |\n|---|---|---|")
    for w, h in clips:
        if not budget.left(f"{w}x{h}"):
            continue
        fps, busy = video_fps(dev, w, h, n, video)
        print(f"| {w}x{h} | {fps:.2f} | {'-' if busy is None else f'{busy:.0%}'} |", flush=True)
    print(f"\n| clip | frames/s, stylize_video end to end ({n} frames, first and encode "
          "included) | GPU busy |\n|---|---|---|")
    for w, h in clips:
        if not budget.left(f"{w}x{h}"):
            continue
        fps, busy = video_end_to_end(dev, w, h, n, video)
        print(f"| {w}x{h} | {fps:.2f} | {'-' if busy is None else f'{busy:.0%}'} |", flush=True)
    print()
    if args.quick or not budget.left("memory.py"):
        return  # the memory rows start two fresh processes: not part of the set-up check
    import subprocess as sp
    import sys
    sp.run([sys.executable, str(Path(__file__).with_name("memory.py")), "--device", dev,
            "--size", "256", "--lengths", "10,60"], check=True)


if __name__ == "__main__":
    main()
