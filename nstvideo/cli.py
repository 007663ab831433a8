"""The `nstvideo` command: parses options, builds settings, calls the library, maps errors to
one line on stderr and a non-zero exit code."""

from __future__ import annotations

import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from nstvideo import __version__
from nstvideo.api import stylize
from nstvideo.previews import preview
from nstvideo.settings import (MAX_ITERATIONS, MAX_SIZE, METHODS, OPTIMIZERS, PRECISIONS,
                               TEMPORAL_MODES, WARPS, StyleSettings, VideoSettings)
from nstvideo.video.status import render_status
from nstvideo.terminal import (fail, one_line_warning, optional_values, options_like,
                               parse_floats, parse_style_layers, quiet_libraries,
                               run_reporting, sigterm_as_interrupt, summary)

app = typer.Typer(
    name="nstvideo", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Paint videos and photos in the style of an artwork (Gatys et al. neural style "
         "transfer on VGG-19).\n\nExample: nstvideo stylize photo.jpg monet.jpg")


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str-Enum for Typer from one of the settings' tuples of choices."""
    return Enum(name, {v: v for v in values}, type=str)


Optimizer = _choices("Optimizer", OPTIMIZERS)
TemporalMode = _choices("TemporalMode", TEMPORAL_MODES)
Warp = _choices("Warp", WARPS)
Method = _choices("Method", METHODS)
Precision = _choices("Precision", PRECISIONS)
ColorMode = _choices("ColorMode", ("luminance", "histogram"))
def _version(value: bool):
    if value:
        typer.echo(f"nstvideo {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit.")] = None):
    """Paint videos and photos in the style of an artwork."""


D = StyleSettings()  # the defaults shown in --help
V = VideoSettings()


@app.command("stylize", epilog="Examples:\n\n\b\n"
             "  nstvideo stylize photo.jpg monet.jpg                  -> photo_monet.jpg\n"
             "  nstvideo stylize holiday/ monet.jpg -o painted/       every photo of the folder\n"
             "  nstvideo stylize photo.jpg monet.jpg vangogh.jpg --style-weights 0.7,0.3\n"
             "  nstvideo stylize photo.jpg scream.jpg --size 256 --iterations 200 --preserve-colors\n"
             "  nstvideo stylize clip.mp4 monet.jpg                   -> clip_monet.mp4, with sound\n"
             "  nstvideo stylize clip.mp4 monet.jpg --start 1:10 --duration 5 --every 2 -o preview.mp4\n"
             "  nstvideo stylize frames/ monet.jpg --fps 24 -o out.mp4   numbered frames to a video\n"
             "  nstvideo stylize clip.mp4 monet.jpg --method fast   painted, several times faster\n"
             "  nstvideo stylize clip.mp4 monet.jpg --method keyframes --save-net monet.pt"
             "   fastest\n"
             "  nstvideo stylize other.mp4 monet.jpg --method keyframes --net monet.pt   no training")
def stylize_cmd(
    input: Annotated[Path, typer.Argument(
        help="An image, a folder of photos, a folder of numbered frames, or a video file "
             "(mp4, mov, mkv, avi, webm, gif; an animated WebP or PNG).", show_default=False)],
    styles: Annotated[list[Path], typer.Argument(
        help="One or more style images (paintings); several are blended.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Output image; folder (photos, or PNG frames); or video by "
        "extension (.mp4 .mov .mkv .webm .gif, animated .webp .png). Default: INPUT_STYLE.png, "
        "INPUT_STYLE/, or INPUT_STYLE.mp4 beside the input (an animation as its own "
        "kind).")] = None,
    size: Annotated[int, typer.Option(min=16, max=MAX_SIZE, help="Longest side of the result "
                                      "in pixels (a 36 x 24 inch print at 300 dpi: 10800).")]
    = D.size,
    iterations: Annotated[Optional[int], typer.Option(
        min=1, max=MAX_ITERATIONS, help=f"Optimizer iterations per image [default: "
        f"{D.iterations}], at its coarsest level (each finer one runs 0.7x as many, see "
        "--levels); for a video, "
        f"per frame after the first [default: {V.iterations}], each stopping early when the "
        "loss stops improving.", show_default=False)] = None,
    iterations_first: Annotated[Optional[int], typer.Option(
        min=1, max=MAX_ITERATIONS, help="Video: iterations of the first frame and after a "
        "scene cut [default: 3x --iterations]; with --temporal none every frame gets "
        "--iterations.",
        show_default=False)] = None,
    temporal: Annotated[TemporalMode, typer.Option(
        help="Video: flow = start each frame from the previous result warped along the optical "
             "flow, with a temporal cost (no flicker); previous = start from the previous "
             "result; none = independent frames.")] = TemporalMode(V.temporal),
    temporal_weight: Annotated[Optional[float], typer.Option(
        min=0, help="Video: weight of the temporal cost (higher: steadier, may smear); "
                    "default 1000, 300 with --method fast.", show_default=False)]
    = V.temporal_weight,
    warp: Annotated[Warp, typer.Option(
        help="Video (flow): how the previous result is carried along the flow; bicubic keeps "
             "more brush detail when --iterations is low; adaptive: bicubic where the flow "
             "moves far, bilinear where it jitters; auto: adaptive for --method fast, else "
             "bilinear.")] = Warp(V.warp),
    start: Annotated[str, typer.Option(
        help="Video: where to begin: seconds (70.5), HH:MM:SS (00:01:10) or a frame (1750f).")]
    = V.start,
    duration: Annotated[Optional[str], typer.Option(
        help="Video: how much to render, same forms as --start [default: to the end].",
        show_default=False)] = None,
    every: Annotated[int, typer.Option(
        min=1, help="Video: render every N-th frame only (a quick preview, at fps/N).")] = 1,
    fps: Annotated[Optional[float], typer.Option(
        min=0.001, max=1000, help="Frame rate for a folder of frames [default: 25]; makes a "
        "folder one sequence.", show_default=False)] = None,
    sequence: Annotated[bool, typer.Option(
        "--sequence", help="A folder is one sequence of frames (temporal coherence, frame "
        "names kept as PNG), not photos. Implied by --fps or a video output.")] = False,
    strip_metadata: Annotated[bool, typer.Option(
        "--strip-metadata", help="Leave out a photo's EXIF and XMP metadata (dates, camera, "
        "GPS place; the colour profile is kept) and a video's tags (creation time, place, "
        "title). By default a result keeps them.")]
        = False,
    keep_frames: Annotated[bool, typer.Option(
        "--keep-frames", help="Video: keep the stylized PNG frames (OUTPUT.frames/) after "
        "encoding.")] = False,
    restart: Annotated[bool, typer.Option(
        "--restart", help="Video: discard an unfinished earlier render of this output "
        "instead of resuming it.")] = False,
    workers: Annotated[int, typer.Option(
        min=1, max=1024, help="Video: render the shots in N worker processes on this machine: "
        "one per GPU (cuda:0 .. cuda:N-1), or sharing the CPU cores. Same result as one.")] = 1,
    ray: Annotated[Optional[str], typer.Option(
        help="Video: render the shots as Ray tasks (one GPU each) on the cluster at ADDRESS; "
             "'auto' finds the one started here with 'ray start', 'local' starts a private "
             "one for this run. Needs: pip install 'nstvideo[ray]'.", metavar="ADDRESS",
        show_default=False)] = None,
    threads: Annotated[Optional[int], typer.Option(
        min=1, max=1024, help="Video: CPU threads each unit renders with [default: the cores "
        "shared among the workers]; recorded in the render, so a resumed one keeps them. "
        "With --seed, renders with the same --threads paint the same frames, whatever "
        "--workers or --ray; other thread counts give the same look, not the same bits.",
        show_default=False)] = None,
    method: Annotated[Method, typer.Option(
        help="Video: optimize = every frame optimized (the reference look, slow); keyframes "
             "= keyframes optimized and a small network trained on them paints every frame "
             "(~20x faster on a CPU, steady, softer strokes); fast = the same network's "
             "painting refined by a few optimizer iterations a frame (see the README).")]
    = Method(V.method),
    refine_iterations: Annotated[int, typer.Option(
        min=1, help="--method fast: optimizer iterations on each frame.")]
    = V.refine_iterations,
    keyframes: Annotated[str, typer.Option(
        help="--method keyframes/fast: 'auto' (each shot's first frame, then wherever the content "
             "has moved on) or K (every K frames).", metavar="auto|K")] = V.keyframes,
    train_steps: Annotated[Optional[int], typer.Option(
        min=1, help="--method keyframes/fast: training steps of the network (default: 850 for "
        "keyframes; for fast a share of its refining work, 100 to 3000).",
        show_default=False)] = V.train_steps,
    train_seconds: Annotated[Optional[float], typer.Option(
        min=0.001, help="--method keyframes/fast: stop training after this many seconds (or "
        "--train-steps, whichever comes first).", show_default=False)] = None,
    train_perceptual: Annotated[float, typer.Option(
        min=0, help="--method keyframes/fast: weight of a VGG feature term in the training "
        "(sharper strokes, ~3x the training time on a CPU); 0: pixel L1 only.")]
    = V.train_perceptual,
    net: Annotated[Optional[Path], typer.Option(
        help="--method keyframes/fast: paint with this network (saved by --save-net) instead "
             "of "
             "painting keyframes and training one.", show_default=False)] = None,
    save_net: Annotated[Optional[Path], typer.Option(
        help="--method keyframes/fast: save the trained network to this file (reuse it with "
             "--net).", show_default=False)] = None,
    content_weight: Annotated[Optional[float], typer.Option(
        min=0, help="α, weight of the content cost. Default: the weight source's own (1).")] = None,
    style_weight: Annotated[Optional[float], typer.Option(
        min=0, help="β, weight of the style cost; higher paints more strongly.")] = None,
    tv_weight: Annotated[Optional[float], typer.Option(
        min=0, help="Weight of the total-variation cost (smoothness).")] = None,
    content_layer: Annotated[str, typer.Option(help="VGG-19 layer of the content cost.")]
    = D.content_layer,
    style_layers: Annotated[str, typer.Option(
        help="Style layers with optional weights λ, e.g. relu1_1:0.2,relu2_1:0.2 (default "
             "weight 1).")] = ",".join(f"{n}:{w:g}" for n, w in D.style_layers),
    style_scale: Annotated[float, typer.Option(
        min=0.05, max=8.0, help="Style image size relative to the result (smaller: finer "
                                "brush strokes... larger: bigger ones).")] = D.style_scale,
    style_weights: Annotated[Optional[str], typer.Option(
        help="Blend of several styles, one weight each, e.g. 0.7,0.3.")] = None,
    mask: Annotated[Optional[list[Path]], typer.Option(
        "--mask", help="Where to paint: an image (white painted, black kept as the input, "
        "grey between); a clip: an image for the whole clip, or a video or folder of mask "
        "frames, one per frame; a folder of photos: a folder of masks named as them. Once: "
        "where the styles' blend goes; once per style, in the styles' order: each style on "
        "its own region.", show_default=False)] = None,
    preserve_colors: Annotated[Optional[ColorMode], typer.Option(
        "--preserve-colors", help="Keep the photo's colours: luminance (alone: the default) "
        "transfers the style's luminance only; histogram matches the style's colours to the "
        "photo's first (Gatys et al. 2017).", show_default=False)] = None,
    optimizer: Annotated[Optimizer, typer.Option(help="lbfgs (fewer iterations) or adam.")]
    = Optimizer(D.optimizer),
    init: Annotated[str, typer.Option(help="Start from: content, noise, or an image PATH.")]
    = D.init,
    seed: Annotated[Optional[int], typer.Option(min=0, help="Random seed: makes a run "
                                                "repeatable on the same machine.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N (the N-th GPU) or mps; "
                                        "auto picks CUDA, then Apple MPS, then CPU.")] = "auto",
    precision: Annotated[Precision, typer.Option(
        help="auto: bf16 convolutions where the device computes bf16 natively (CUDA GPUs "
             "from Ampere on, CPUs with AMX or AVX512-BF16; about 2x faster, costs in fp32), "
             "fp32 elsewhere.")] = Precision(D.precision),
    batch: Annotated[int, typer.Option(
        min=0, max=256, help="Folder of photos: how many photos of one size to optimize at "
        "once; 0 (auto): 1 on a CPU, on a CUDA GPU as many as fit up to ~1 megapixel per "
        "batch. Each photo is optimized as it would be alone.")] = D.batch,
    weights: Annotated[str, typer.Option(
        help="VGG-19 weights: caffe (original, offline), torchvision (ImageNet, downloaded "
             "once), or the PATH of a torchvision-layout state dict.")] = D.weights,
    max_megapixels: Annotated[float, typer.Option(
        min=0.001, help="Refuse photos and frames larger than this many megapixels (checked "
        "from the header, before decoding).")] = D.max_megapixels,
    levels: Annotated[Optional[int], typer.Option(
        min=1, max=12, help="Coarse-to-fine levels: the picture is composed at a small size "
        "and refined level by level, each twice the one before, so the painting's strokes "
        "come out at the picture's scale; 1: one level at the full size [default: halving "
        "down to 128 px, 3 levels at 512].", show_default=False)] = None,
    max_memory: Annotated[Optional[float], typer.Option(
        min=0.05, help="GB of memory the painting may use [default: 3/4 of the free RAM, 9/10 "
        "of the free GPU memory]. Larger pictures are painted in tiles, with the same result; "
        "what cannot fit even so is refused before any work, naming the --size that fits.",
        show_default=False)] = None,
    tile: Annotated[Optional[int], typer.Option(
        min=16, max=MAX_SIZE, help="Paint in tiles of this many pixels a side whatever the "
        "memory (the result is the same; only memory and time change) [default: tiles only "
        "where --max-memory needs them].", show_default=False)] = None,
    dpi: Annotated[Optional[float], typer.Option(
        min=1, max=100000, help="Photos: the print resolution written into the result "
        "(--size 10800 --dpi 300 prints 36 inches wide) [default: the photo's own].",
        show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs "
                                            "(never an input).")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show the libraries' own warnings (libpng, FFmpeg) and, on an "
        "unexpected failure, the traceback.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or summary.")]
    = False,
):
    """Stylize INPUT (an image, a folder of photos, a folder of numbered frames, or a video) in
    the style of STYLE image(s). An interrupted video render resumes when run again."""
    args = dict(locals())
    warnings.showwarning = one_line_warning
    with sigterm_as_interrupt(), quiet_libraries(verbose):
        report = run_reporting(verbose, lambda: _stylize(**args))
    for path, why in report.failed:
        typer.echo(f"nstvideo: failed: {path}: {why}", err=True)
    if not quiet:
        typer.echo(summary(report), err=True)
    if report.failed:
        fail(f"{len(report.failed)} of {len(report.failed) + len(report.written)} images "
             "failed (listed above); the others were written", 1)


def _preview_options(
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="The sheet (PNG) [default: INPUT_STYLE_preview.png beside the "
        "input].", show_default=False)] = None,
    frames: Annotated[Optional[int], typer.Option(
        min=1, max=64, help="How many frames (a clip: spread over it, one per shot first) or "
        "photos (a folder) [default: one per shot, up to 4; 4 photos].",
        show_default=False)] = None,
    at: Annotated[Optional[str], typer.Option(
        help="A clip: the frames at these times, e.g. 12.5,1:10,300f (instead of --frames).",
        metavar="T,T,...", show_default=False)] = None,
    vary: Annotated[Optional[str], typer.Option(
        help="One row of the sheet per value of one stylize option, the rest as given: "
             "style-weight, style-scale, content-weight, tv-weight, size, iterations or "
             "method, e.g. --vary style-weight=1e-4,3e-4,1e-3.", metavar="NAME=V1,V2,...",
        show_default=False)] = None,
):
    """The preview's own options (their signature only: see options_like)."""


@app.command("preview", epilog="Examples:\n\n\b\n"
             "  nstvideo preview clip.mp4 monet.jpg               -> clip_monet_preview.png\n"
             "  nstvideo preview clip.mp4 monet.jpg --vary style-weight=1e-4,3e-4,1e-3\n"
             "  nstvideo preview clip.mp4 monet.jpg --at 0:12,1:40 --vary method=optimize,fast")
@options_like(stylize_cmd, _preview_options,
              {"output", "restart", "keep_frames", "workers", "ray", "save_net",
               "strip_metadata", "dpi", "batch"})
def preview_cmd(**o):
    """Paint a few frames of INPUT exactly as `stylize` with the same options would (a clip:
    one per shot, up to 4; a folder: 4 photos), beside their sources on one PNG sheet, and
    print the time the whole render would take on this device by each method."""
    warnings.showwarning = one_line_warning
    with sigterm_as_interrupt(), quiet_libraries(o["verbose"]):
        settings, video = _settings(o)
        report = run_reporting(o["verbose"], lambda: preview(
            o["input"], o["styles"], o["output"], settings=settings, video=video,
            frames=o["frames"], at=o["at"].split(",") if o["at"] else None, vary=o["vary"],
            mask=o["mask"] or None, overwrite=o["overwrite"], progress=not o["quiet"]))
    for row in report.rows:
        typer.echo(row.line() + "".join(f"; {n}" for n in row.notes))
    what = {"clip": f"{report.total} frames", "photos": f"{report.total} photos",
            "photo": "the photo"}[report.kind]
    if not o["quiet"]:
        typer.echo(f"wrote {report.sheet} (projections for {what}, in one process on this "
                   "device)", err=True)


@app.command("status")
def status_cmd(
    output: Annotated[Path, typer.Argument(
        help="The output a render writes (clip_monet.mp4, or its .frames folder).",
        show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="The status as JSON, for scripts.")]
    = False,
):
    """The state of a render, running or stopped, from its folder alone (read-only: the
    render is not disturbed): frames and units done, rate, time left, who renders it, the last
    frame written, its settings, and how to resume it."""
    report = run_reporting(False, lambda: render_status(output))
    typer.echo(report.to_json() if as_json else report.line())


def _settings(o: dict) -> tuple[StyleSettings, VideoSettings]:
    """The settings the options `o` (stylize's, by parameter name) ask for."""
    iterations = o["iterations"]
    settings = StyleSettings(
        size=o["size"], iterations=iterations or D.iterations,
        content_weight=o["content_weight"], style_weight=o["style_weight"],
        tv_weight=o["tv_weight"], content_layer=o["content_layer"],
        style_layers=parse_style_layers(o["style_layers"]), style_scale=o["style_scale"],
        style_blend=parse_floats(o["style_weights"], "--style-weights")
        if o["style_weights"] else None,
        preserve_colors=o["preserve_colors"].value if o["preserve_colors"] else False,
        optimizer=o["optimizer"].value, init=o["init"], seed=o["seed"], device=o["device"],
        precision=o["precision"].value, batch=o.get("batch", D.batch), weights=o["weights"],
        max_megapixels=o["max_megapixels"], coarse_levels=o["levels"],
        max_memory=o["max_memory"], tile=o["tile"])
    net, save_net = o["net"], o.get("save_net")
    video = VideoSettings(
        temporal=o["temporal"].value, temporal_weight=o["temporal_weight"],
        warp=o["warp"].value, iterations_first=o["iterations_first"],
        iterations=iterations or V.iterations, start=o["start"], duration=o["duration"],
        every=o["every"], fps=o["fps"], sequence=o["sequence"], threads=o["threads"],
        method=o["method"].value, refine_iterations=o["refine_iterations"],
        keyframes=o["keyframes"], train_steps=o["train_steps"],
        train_seconds=o["train_seconds"], train_perceptual=o["train_perceptual"],
        net=None if net is None else str(net),
        save_net=None if save_net is None else str(save_net))
    return settings, video


def _stylize(**o):
    settings, video = _settings(o)
    return stylize(o["input"], o["styles"], o["output"], settings=settings, video=video,
                   overwrite=o["overwrite"], restart=o["restart"], keep_frames=o["keep_frames"],
                   progress=not o["quiet"], workers=o["workers"], ray=o["ray"],
                   strip_metadata=o["strip_metadata"], dpi=o["dpi"], mask=o["mask"] or None)


def main(argv: list[str] | None = None) -> int:
    """The `nstvideo` command: the Typer app, with usage errors (a bad option value, a missing
    argument) as one line on stderr and exit code 2, like every other error. (Typer's parser
    is click, vendored by recent Typer versions: its exceptions are matched by class name.)"""
    try:
        args = optional_values(list(sys.argv[1:] if argv is None else argv))
        result = app(args=args, prog_name="nstvideo", standalone_mode=False)
    except typer.Abort:
        fail("interrupted", 130)
    except Exception as e:  # noqa: BLE001 - only click's usage errors are handled here
        kinds = {c.__name__ for c in type(e).__mro__}
        ctx = getattr(e, "ctx", None)
        if "NoArgsIsHelpError" in kinds and ctx is not None:
            typer.echo(ctx.get_help())
            return 0
        if "UsageError" not in kinds:
            raise
        where = f"'{ctx.command_path} --help'" if ctx is not None else "'nstvideo --help'"
        fail(f"{' '.join(e.format_message().split())} (see {where})", 2)
    return result if isinstance(result, int) else 0
