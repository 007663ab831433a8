"""The keyframe method: keyframes at every shot, a network that learns their look (its loss
falls), deterministic with a seed, saved and reloaded to the same frames, resumable, and a
video out like the other method's (frame count, rate, audio), also from worker processes."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from conftest import content_array, style_array, write_rgb
from test_video import Interrupt
from videokit import kept, probe, psnr, read_frames, shots_clip

from nstvideo import net as keyframes
from nstvideo import stylize
from nstvideo.video.checkpoint import checkpoint_dir
from nstvideo.training import train_net
from nstvideo.video.plan import KeyframeChooser
from nstvideo.net import (NetShape, Trainer, Training, TranslationNet, load_net, paint,
                          save_net)
from nstvideo.video.plan import find_cuts
from nstvideo.settings import StyleSettings, VideoSettings

S = StyleSettings(size=48, iterations=3, seed=0)
# one thread everywhere: the one-process render equals the workers' (see test_parallel.py)
V = VideoSettings(iterations=3, iterations_first=3, method="keyframes", train_steps=12,
                  threads=1)
SHOTS = (8, 7, 9)


def pairs(n=2, h=48, w=64):
    """(content, 'stylized') pairs: moved content, and a fixed transform of it to learn (an
    inverted, blurred, recoloured copy: as far from the identity as a painting)."""
    out = []
    for i in range(n):
        c = np.roll(content_array(h, w), 5 * i, axis=1)
        s = cv2.GaussianBlur(255 - c[..., ::-1], (5, 5), 0)
        out.append((c, np.ascontiguousarray(s)))
    return out


def test_training_lowers_the_loss_and_learns_the_look():
    torch.manual_seed(0)
    data = pairs()
    net = TranslationNet(NetShape(width=16))
    trainer = Trainer(net, data, Training(steps=80, patch=32, batch=8), seed=0)
    before = float(np.abs(paint(net, [data[0][0]])[0].astype(float) - data[0][1]).mean())
    trainer.run()
    after = float(np.abs(paint(net, [data[0][0]])[0].astype(float) - data[0][1]).mean())
    first, last = np.mean(trainer.losses[:10]), np.mean(trainer.losses[-10:])
    assert last < 0.6 * first, (first, last)
    assert after < 0.6 * before, (before, after)  # on the whole frame, not just the patches


def test_seeded_training_is_repeatable_and_a_saved_net_paints_the_same(tmp_path):
    data = pairs()
    frame = np.roll(content_array(), 2, axis=0)  # not one it was trained on
    runs = []
    for _ in range(2):
        net, rep = train_net(data, Training(steps=15, patch=32, batch=4), seed=3,
                             device=torch.device("cpu"))
        runs.append(paint(net, [frame])[0])
    assert np.array_equal(runs[0], runs[1])
    other, _ = train_net(data, Training(steps=15, patch=32, batch=4), seed=4,
                         device=torch.device("cpu"))
    assert not np.array_equal(paint(other, [frame])[0], runs[0])  # the seed matters
    save_net(tmp_path / "n.pt", net, {"keyframes": 2})
    again, data_ = load_net(tmp_path / "n.pt")
    assert np.array_equal(paint(again, [frame])[0], runs[1])
    assert data_["info"] == {"keyframes": 2}
    # painted alone or in a batch: the same frame
    assert np.array_equal(paint(again, [frame, frame[::-1].copy()])[0], runs[1])


def test_the_training_s_feature_term_in_bf16_learns_as_in_fp32(monkeypatch):
    """On a device that computes bf16 natively (forced here: other CPUs emulate it),
    the feature term's VGG runs in bf16 and the training's losses follow fp32's."""
    from nstvideo.training import NetTraining
    monkeypatch.setattr("nstvideo.style.device.cpu_computes_bf16", lambda: True)
    losses = {}
    for precision in ("fp32", "bf16"):
        t = NetTraining(Training(steps=20, patch=32, batch=4, perceptual=5), 0,
                        torch.device("cpu"),
                        precision=precision)
        assert t.trainer.features.bf16 is (precision == "bf16")
        for c, s_ in pairs():
            t.add(c, s_)
        t.train_to(20)
        losses[precision] = np.array(t.trainer.losses)
    assert losses["bf16"][0] == pytest.approx(losses["fp32"][0], rel=0.02)
    assert losses["bf16"][-5:].mean() == pytest.approx(losses["fp32"][-5:].mean(), rel=0.1)
    assert losses["bf16"][-5:].mean() < losses["bf16"][:5].mean()


def test_the_training_is_callable_from_the_api_without_a_video(tmp_path):
    import nstvideo

    data = pairs()
    net, rep = nstvideo.train_net(data, nstvideo.Training(steps=40, patch=32, batch=8), seed=0,
                                  device="cpu")
    assert rep["steps"] == 40 and rep["last_loss"] < rep["first_loss"]
    out = nstvideo.paint(net, [data[0][0]])[0]
    assert out.shape == data[0][1].shape and out.dtype == np.uint8
    nstvideo.save_net(tmp_path / "n.pt", net)
    assert np.array_equal(nstvideo.paint(nstvideo.load_net(tmp_path / "n.pt")[0], [data[0][0]])[0],
                          out)


def test_training_continues_from_its_checkpoint(tmp_path, monkeypatch):
    data, ckpt = pairs(), tmp_path / "net.pt"
    calls = []

    def stop_at_6(i):
        calls.append(i)
        if i == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_net(data, Training(steps=10, patch=32, batch=4), 1, torch.device("cpu"), ckpt,
                  on_step=stop_at_6)
    assert ckpt.exists()  # kept at the interruption
    net, rep = train_net(data, Training(steps=10, patch=32, batch=4), 1, torch.device("cpu"),
                         ckpt, on_step=calls.append)
    assert rep["resumed"] == 6 and rep["steps"] == 10 and calls[-4:] == [7, 8, 9, 10]


def test_a_keyframe_starts_every_shot_and_auto_follows_new_colours(tmp_path):
    src = shots_clip(tmp_path / "s.mp4", SHOTS, audio=False)
    frames = read_frames(src)
    chooser = KeyframeChooser(None, fps=4)  # auto: 1 s = 4 frames at least between keys
    cuts = find_cuts(iter(frames), "flow", on_frame=chooser.see)
    assert cuts == [0, 8, 15]
    assert set(cuts) <= set(chooser.keys)
    every = KeyframeChooser(3, fps=12)
    find_cuts(iter(frames), "flow", on_frame=every.see)
    assert every.keys == [0, 3, 6, 8, 11, 14, 15, 18, 21]
    # a shot that turns to colours its keyframe never showed gets a new keyframe there
    green = np.zeros((40, 40, 3), np.uint8)
    green[..., 1] = 200
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 200
    seq = [green] * 6 + [red] * 6
    auto = KeyframeChooser(None, fps=2)
    for k, f in enumerate(seq):
        auto.see(k, f, k == 0)
    assert auto.keys == [0, 6]


def render_shots(tmp, shots, settings, video):
    """A clip of `shots` (12 fps, with audio) rendered with its network saved (tmp/n.pt) and
    its frames kept: (tmp, clip, style, output, report, frames)."""
    src = shots_clip(tmp / "shots.mp4", shots, rate=12)
    style = write_rgb(tmp / "style.png", style_array())
    out = tmp / "out.mp4"
    rep = stylize(src, style, out, settings=settings,
                  video=video.replace(save_net=str(tmp / "n.pt")), keep_frames=True).video
    return tmp, src, style, out, rep, kept(out)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A three-shot clip with audio, rendered by the keyframe method, frames kept."""
    return render_shots(tmp_path_factory.mktemp("kf"), SHOTS, S, V)


def assert_like_its_source(rendered, shots) -> None:
    """The render has every frame, the source's rate (12 fps) and its audio."""
    tmp, src, style, out, rep, frames = rendered
    info, source = probe(out), probe(src)
    assert info["frames"] == sum(shots) == len(frames) == rep.frames
    assert info["fps_text"] == source["fps_text"] == "12" and info["audio"] and rep.audio
    assert abs(info["a_duration"] - source["a_duration"]) < 0.1


def test_the_video_keeps_frames_rate_audio_and_has_a_keyframe_per_shot(rendered):
    tmp, src, style, out, rep, frames = rendered
    assert_like_its_source(rendered, SHOTS)
    assert {0, 8, 15} <= set(rep.keyframes) and rep.training["steps"] == V.train_steps
    assert rep.scene_cuts == [8, 15]
    content = read_frames(src)
    # painted: far from the content, and not one flat colour
    assert all(psnr(f, cv2.resize(c, f.shape[1::-1])) < 20 for f, c in zip(frames, content))
    assert all(f.std() > 5 for f in frames)
    assert not (checkpoint_dir(out) / "keys").exists()  # the checkpoint went with the render


def test_a_saved_net_paints_the_same_frames_without_training(rendered, tmp_path, monkeypatch):
    _, src, style, out, rep, frames = rendered
    monkeypatch.setattr(keyframes.Trainer, "run", lambda *a, **k: pytest.fail("trained"))
    again = tmp_path / "again.mp4"
    rep2 = stylize(src, style, again, settings=S,
                   video=V.replace(net=str(out.parent / "n.pt")), keep_frames=True).video
    assert rep2.keyframes == [] and rep2.training == {} and rep2.net == str(out.parent / "n.pt")
    assert all(np.array_equal(a, b) for a, b in zip(kept(again), frames))


def test_workers_paint_what_one_process_paints(rendered, tmp_path):
    _, src, style, out, rep, frames = rendered
    par = tmp_path / "par.mp4"
    rep2 = stylize(src, style, par, settings=S, video=V, keep_frames=True, workers=2).video
    assert len(rep2.where) == 2  # both workers painted
    assert all(psnr(a, b) > 40 for a, b in zip(kept(par), frames))


def test_an_interrupted_keyframe_render_resumes(tmp_path, style_png, monkeypatch):
    src = shots_clip(tmp_path / "s.mp4", (6, 6), audio=False)
    out = tmp_path / "o.mp4"
    video = V.replace(keyframes="3", train_steps=8)
    counter = Interrupt(monkeypatch, at=3)  # the third keyframe
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style_png, out, settings=S, video=video)
    assert len(list((checkpoint_dir(out) / "keys").glob("frame_*.png"))) == 2
    counter.calls, counter.at = 0, None
    rep = stylize(src, style_png, out, settings=S, video=video).video
    assert counter.calls == 2  # only the two keyframes not painted before
    assert rep.keyframes == [0, 3, 6, 9] and probe(out)["frames"] == 12


def test_start_duration_every_with_keyframes(tmp_path, style_png):
    src = shots_clip(tmp_path / "s.mp4", (10, 10), rate=10)
    out = tmp_path / "o.mp4"
    rep = stylize(src, style_png, out, settings=S,
                  video=V.replace(start="0.4", duration="1.2", every=2)).video
    info = probe(out)
    assert rep.frames == info["frames"] == 6 and abs(info["fps"] - 5) < 1e-6
    assert rep.keyframes[0] == 0 and 3 in rep.keyframes  # the cut at source frame 10


def test_cli_keyframes_end_to_end(tmp_path):
    src = shots_clip(tmp_path / "s.mp4", (6, 5), rate=12)
    style = write_rgb(tmp_path / "style.png", style_array())
    r = subprocess.run([sys.executable, "-m", "nstvideo", "stylize", str(src), style,
                        "--method", "keyframes", "--size", "48", "--iterations", "2",
                        "--train-steps", "5", "--save-net", str(tmp_path / "n.pt"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "s_style.mp4"
    assert probe(out)["frames"] == 11 and (tmp_path / "n.pt").exists()
    load_net(tmp_path / "n.pt")


@pytest.mark.ray
def test_ray_tasks_paint_with_the_net(rendered, tmp_path, monkeypatch):
    """A saved network applied by Ray tasks (a real local instance), the frames shipped
    through the object store: the frames one process painted."""
    _, src, style, out, rep, frames = rendered
    monkeypatch.setenv("NSTVIDEO_RAY_SHIP_FRAMES", "1")
    par = tmp_path / "ray.mp4"
    rep2 = stylize(src, style, par, settings=S, video=V.replace(net=str(out.parent / "n.pt")),
                   keep_frames=True, ray="local").video
    assert sum(rep2.where.values()) == rep2.units >= 2
    assert all("(cpu)" in w for w in rep2.where)
    assert min(psnr(a, b) for a, b in zip(kept(par), frames)) >= 40
    assert probe(par)["frames"] == sum(SHOTS)


def test_the_keyframe_stage_gives_its_memory_back_before_the_units(tmp_path, style_png,
                                                                   monkeypatch):
    """Keyframes are painted and the network trained in this process; workers on the same GPU
    start after: by then the stage's VGG, network and trainer must be gone and the allocator's
    cache given back (on CUDA, empty_cache: asked of the job's device here, on the CPU)."""
    import weakref

    from nstvideo.video import keyframes as K
    from nstvideo.video import render as R

    made, order = [], []
    real_init = K.NetTraining.__init__

    def init(self, *a, **k):
        real_init(self, *a, **k)
        made.extend(weakref.ref(o) for o in (self, self.net, self.trainer))
    monkeypatch.setattr(K.NetTraining, "__init__", init)

    def release(device):
        R_release(device)
        order.append(("release", device.type, [r() is None for r in made]))
    R_release = R.release
    monkeypatch.setattr(R, "release", release)
    real_render = R._render
    monkeypatch.setattr(R, "_render", lambda *a, **k: (order.append(("units",)),
                                                      real_render(*a, **k))[1])
    src = shots_clip(tmp_path / "c.mp4", (4, 3))
    rep = stylize(src, style_png, tmp_path / "o.mp4", settings=S, video=V).video
    assert rep.frames == 7 and made
    assert order[0] == ("release", "cpu", [True] * len(made)) and order[1] == ("units",)


def test_the_network_s_layers_are_the_reference_ones():
    """Its reflection padding and 2x bilinear upsampling, made of slices, give what torch's
    own ops give (saved networks paint as before)."""
    from torch.nn import functional as F

    from nstvideo.net import reflect1, upsample2

    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 7) * 100
    assert torch.equal(reflect1(x), F.pad(x, (1, 1, 1, 1), mode="reflect"))
    torch.testing.assert_close(upsample2(x), F.interpolate(x, scale_factor=2, mode="bilinear",
                                                           align_corners=False))


# torch ops whose CUDA backward has no deterministic kernel (torch.use_deterministic_algorithms'
# list): under a seed they would only warn, and a training would differ run to run on a GPU
NONDETERMINISTIC_ON_CUDA = ("reflection_pad", "replication_pad", "upsample_", "grid_sampler",
                            "adaptive_avg_pool", "adaptive_max_pool", "avg_pool3d",
                            "max_pool3d", "fractional_max_pool", "max_unpool", "embedding_bag",
                            "index_add", "scatter_add", "scatter_reduce", "index_put", "put_",
                            "histc", "bincount", "kthvalue", "median", "nll_loss2d", "ctc_loss")


def test_a_seeded_training_uses_only_ops_with_deterministic_cuda_kernels():
    """Every op of training steps (forward and backward, the feature term's VGG included) has
    a deterministic CUDA kernel: what --seed promises for keyframe and fast renders on a GPU
    (README) rests on this; reflection padding and bilinear upsampling broke it."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from nstvideo.training import NetTraining

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.add(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    t = NetTraining(Training(steps=2, patch=32, batch=2, perceptual=5), 0, torch.device("cpu"))
    for c, s_ in pairs():
        t.add(c, s_)
    with Record() as rec:
        t.train_to(2)
    assert "convolution_backward" in rec.ops  # it recorded the backward pass
    bad = sorted(op for op in rec.ops if any(op.startswith(n) for n in NONDETERMINISTIC_ON_CUDA))
    assert not bad, bad
