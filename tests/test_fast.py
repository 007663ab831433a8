"""The fast method (--method fast): the keyframe method's network paints each frame's start (a
chain's first frame, and wherever the flow cannot carry the previous result), a few optimizer
iterations refine it. Against the network alone it must lower the style cost; it keeps the
frames, rate and audio; it resumes; it repeats with --seed; workers paint what one process
paints."""

import cv2
import numpy as np
import pytest
from test_keyframes import assert_like_its_source, render_shots
from test_video import Interrupt
from videokit import kept, probe, psnr, read_frames, shots_clip

from nstvideo import stylize
from nstvideo.photos import build_stylizer
from nstvideo.settings import StyleSettings, VideoSettings
from nstvideo.style.tensors import to_tensor

S = StyleSettings(size=48, iterations=3, seed=0)
V = VideoSettings(iterations=3, iterations_first=3, method="fast", train_steps=12,
                  refine_iterations=4, keyframes="4", threads=1)
SHOTS = (7, 6)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render_shots(tmp_path_factory.mktemp("fast"), SHOTS, S, V)


def style_costs(frames, content, style, positions):
    stylizer = build_stylizer([style], S)
    out = []
    for k in positions:
        c = cv2.resize(content[k], frames[k].shape[1::-1], interpolation=cv2.INTER_AREA)
        f = stylizer.objective(to_tensor(c, stylizer.device))
        out.append(float(f(to_tensor(frames[k], stylizer.device))[1]["style"]))
    return np.array(out)


def test_refining_lowers_the_style_cost_of_the_networks_frames(rendered, tmp_path):
    tmp, src, style, out, rep, frames = rendered
    alone = tmp_path / "net.mp4"  # the same network, painting alone (--method keyframes)
    stylize(src, style, alone, settings=S, keep_frames=True,
            video=V.replace(method="keyframes", net=str(tmp / "n.pt"),
                            refine_iterations=VideoSettings.refine_iterations))
    net_frames = kept(alone)
    between = [k for k in range(sum(SHOTS)) if k not in rep.keyframes]
    content = read_frames(src)
    ours = style_costs(frames, content, style, between)
    theirs = style_costs(net_frames, content, style, between)
    assert len(between) >= 8 and np.median(ours) < 0.8 * np.median(theirs), (ours, theirs)
    assert (ours < theirs).mean() >= 0.75, (ours, theirs)


def test_the_video_keeps_frames_rate_and_audio(rendered):
    rep = rendered[4]
    assert_like_its_source(rendered, SHOTS)
    assert rep.keyframes == [0, 4, 7, 11] and rep.scene_cuts == [7]
    assert rep.training["steps"] == V.train_steps


def test_seeded_renders_repeat_and_workers_paint_the_same(rendered, tmp_path):
    tmp, src, style, out, rep, frames = rendered
    again = tmp_path / "again.mp4"
    stylize(src, style, again, settings=S, video=V, keep_frames=True)
    assert all(np.array_equal(a, b) for a, b in zip(kept(again), frames))
    par = tmp_path / "par.mp4"
    rep2 = stylize(src, style, par, settings=S, video=V, keep_frames=True, workers=2).video
    assert len(rep2.where) == 2 and len(kept(par)) == len(frames)
    assert min(psnr(a, b) for a, b in zip(kept(par), frames)) >= 40


def test_an_interrupted_fast_render_resumes(tmp_path, style_png, monkeypatch):
    src = shots_clip(tmp_path / "s.mp4", (6, 6), audio=False)
    out = tmp_path / "o.mp4"
    video = V.replace(keyframes="3")  # keyframes 0, 3, 6, 9: four renders, then the frames
    counter = Interrupt(monkeypatch, at=9)  # the fifth frame of the first unit
    with pytest.raises(KeyboardInterrupt):
        stylize(src, style_png, out, settings=S, video=video, keep_frames=True)
    counter.calls, counter.at = 0, None
    rep = stylize(src, style_png, out, settings=S, video=video, keep_frames=True).video
    # no keyframe again; unit 0 continues after its 4 finished frames (frames 4, 5), unit 1
    # renders its 6
    assert rep.resumed == 4 and counter.calls == 2 + 6
    assert probe(out)["frames"] == 12
    # ... and paints what an uninterrupted render paints (seeded, one thread; compared as
    # PNGs: the encoder may code equal frames differently beside different ones)
    whole = tmp_path / "whole.mp4"
    stylize(src, style_png, whole, settings=S, video=video, keep_frames=True)
    resumed, uninterrupted = kept(out), kept(whole)
    assert len(resumed) == len(uninterrupted) == 12
    assert all(np.array_equal(a, b) for a, b in zip(resumed, uninterrupted))


def test_a_chain_starts_from_the_painted_keyframe_and_new_pixels_get_iterations(style_png):
    """Where the chain restarts on a keyframe it takes the optimizer's painting as it is (no
    iterations); a later frame ignores it, and gets more iterations the more of its pixels
    the flow cannot carry (fast: by_new), from `refine_iterations` to the first frame's."""
    from conftest import content_array
    from nstvideo.style.stylizer import Stylizer
    from nstvideo.video.flow import FramePair
    from nstvideo.video.frames import FrameRenderer

    video = VideoSettings(iterations=4, iterations_first=12, early_stop_tol=0.0,
                          hold_static=False)
    stylizer = Stylizer([cv2.imread(str(style_png))[..., ::-1].copy()], S.replace(size=32))
    content = cv2.resize(content_array(48, 64), (32, 24), interpolation=cv2.INTER_AREA)
    painted = np.random.default_rng(0).integers(0, 256, content.shape, np.uint8)
    r = FrameRenderer(stylizer, video, full_first=True, by_new=True)
    result, report, _ = r.render(content, painted=painted)
    assert result is painted and report.iterations == 0
    used = []
    for share in (0.0, 0.5):
        mask = np.ones(content.shape[:2], np.float32)
        mask[:, : round(share * content.shape[1])] = 0
        pair = FramePair(np.zeros((*content.shape[:2], 2), np.float32), mask, False)
        result, report, cut = r.render(content, compared=pair, painted=painted,
                                       fill=lambda: content)
        assert not cut and not np.array_equal(result, painted)
        used.append(report.iterations)
    assert used == [4, 8], used  # 4 + (12 - 4) * 0.5


def test_pixels_a_moving_mask_comes_over_start_from_the_carried_backdrop(style_png):
    """With a mask clip the fast chain starts from its keyframe painted wherever the masks
    will paint: that painting, the backdrop, is carried along beside the result (painted
    pixels taking the result), and a pixel a mask newly paints starts from it, not from the
    network's fill; a later keyframe gives the chain a fresh one."""
    from conftest import content_array
    from nstvideo.masks import load_regions
    from nstvideo.style.stylizer import Stylizer
    from nstvideo.style.tensors import to_image
    from nstvideo.video.flow import FramePair
    from nstvideo.video.frames import FrameRenderer

    video = VideoSettings(iterations=2, iterations_first=2, early_stop_tol=0.0,
                          hold_static=False)
    stylizer = Stylizer([cv2.imread(str(style_png))[..., ::-1].copy()], S.replace(size=32))
    content = cv2.resize(content_array(48, 64), (32, 24), interpolation=cv2.INTER_AREA)
    red = np.zeros_like(content)
    red[..., 0] = 255
    half, most = (np.zeros((24, 32), np.uint8) for _ in range(2))
    half[:, :16], most[:, :24] = 255, 255
    regions = lambda m: load_regions([m], 1, (24, 32), "cpu")  # noqa: E731
    pair = FramePair(np.zeros((24, 32, 2), np.float32), np.ones((24, 32), np.float32), False)

    def chain(backdrop):
        r = FrameRenderer(stylizer, video, full_first=True)
        r.render(content, guess=lambda: red, regions=regions(half), backdrop=backdrop)
        result, _, _ = r.render(content, compared=pair, fill=lambda: content,
                                regions=regions(most))
        return r, result

    (r, result), (_, plain) = chain(red), chain(None)
    far = lambda image: np.abs(image[:, 18:22].astype(float) - red[:, 18:22]).mean()  # noqa
    assert far(result) < far(plain) / 2, (far(result), far(plain))  # newly painted: from it
    kept = to_image(r.backdrop)
    assert np.array_equal(kept[:, 27:], red[:, 27:])  # not painted yet: the backdrop, carried
    assert np.array_equal(kept[:, :22], result[:, :22])  # painted: as painted
    blue = red[..., ::-1].copy()  # a keyframe's backdrop, given later on: from here on
    result, _, _ = r.render(content, compared=pair, fill=lambda: content,
                            regions=regions(np.full((24, 32), 255, np.uint8)), backdrop=blue)
    new = result[:, 27:].astype(float)
    assert np.abs(new - blue[:, 27:]).mean() < np.abs(new - red[:, 27:]).mean() / 2


def test_the_fast_training_budget_scales_with_the_work():
    from nstvideo.settings import TRAIN_STEPS
    from nstvideo.video.keyframes import FAST_TRAIN_STEPS, steps_for

    fast = VideoSettings(method="fast")
    preview, full = steps_for(fast, 280, (72, 128)), steps_for(fast, 200, (216, 384))
    assert FAST_TRAIN_STEPS[0] <= preview < full < FAST_TRAIN_STEPS[1]
    assert 3 * preview < full  # ~9x the pixels, ~0.7x the frames (the preview at the least)
    assert steps_for(fast, 10, (24, 32)) == FAST_TRAIN_STEPS[0]
    assert steps_for(fast, 100_000, (1080, 1920)) == FAST_TRAIN_STEPS[1]
    assert steps_for(fast.replace(refine_iterations=20), 280, (72, 128)) > preview
    assert steps_for(fast.replace(train_steps=12), 280, (72, 128)) == 12
    assert steps_for(VideoSettings(method="keyframes"), 280, (72, 128)) == TRAIN_STEPS


def test_the_fast_method_carries_the_last_frame_adaptively_unless_told():
    """Bilinear sampling blurs the strokes a few iterations must then repaint (RESULTS.md,
    "Fast 3"), bicubic's crawl on jitter ("Fast 4"): the fast method warps adaptive; the
    others keep bilinear; --warp wins."""
    assert VideoSettings(method="fast").interpolation == "adaptive"
    assert VideoSettings(method="fast", warp="bicubic").interpolation == "bicubic"
    assert VideoSettings().interpolation == VideoSettings(method="keyframes").interpolation \
        == "bilinear"
    assert VideoSettings(method="fast", warp="bilinear").interpolation == "bilinear"
    assert VideoSettings(warp="bicubic").interpolation == "bicubic"


def test_the_fast_method_has_its_own_temporal_weight_unless_told():
    """The fast method's few iterations leave it steadier than the optimizer; a lower weight
    lets them paint more (RESULTS.md, "Fast 5"). --temporal-weight wins."""
    from nstvideo.settings import FAST_TEMPORAL_WEIGHT, TEMPORAL_WEIGHT

    assert FAST_TEMPORAL_WEIGHT < TEMPORAL_WEIGHT
    assert VideoSettings(method="fast").tau == FAST_TEMPORAL_WEIGHT
    assert VideoSettings().tau == VideoSettings(method="keyframes").tau == TEMPORAL_WEIGHT
    assert VideoSettings(method="fast", temporal_weight=1000.0).tau == 1000.0
    assert VideoSettings(temporal_weight=0.0).tau == 0.0


def test_the_refining_leaves_out_style_layers_deeper_than_the_content_layer():
    from nstvideo.video.keyframes import refine_settings
    from nstvideo.style.stylizer import Stylizer
    from conftest import style_array

    s = refine_settings(S)  # default: content relu4_2, style relu1_1 ... relu5_1
    assert [n for n, _ in s.style_layers] == ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
    assert dict(s.style_layers) == {n: w for n, w in S.style_layers if n != "relu5_1"}
    assert Stylizer([style_array()], s).vgg.names[-1] == "relu4_2"  # conv4_3 on not computed
    deep = StyleSettings(content_layer="relu5_2")
    assert refine_settings(deep).style_layers == deep.style_layers  # all on the way
    only5 = StyleSettings(style_layers=(("relu5_1", 1.0),))
    assert refine_settings(only5).style_layers == only5.style_layers  # never without style


def test_the_refining_weighs_the_content_up_from_what_was_asked():
    """Its start carries the painting's texture but not the fine detail that moves: the few
    iterations weigh the content FAST_CONTENT_FACTOR x the weight asked for (RESULTS.md,
    "Fast 5"); the style and smoothness weights stay as asked."""
    from nstvideo.settings import loss_weights
    from nstvideo.video.keyframes import FAST_CONTENT_FACTOR, refine_settings

    assert FAST_CONTENT_FACTOR > 1
    for asked in (S, S.replace(content_weight=2.5, style_weight=1e-3),
                  StyleSettings(weights="torchvision")):
        (a, b, g), (ra, rb, rg) = loss_weights(asked), loss_weights(refine_settings(asked))
        assert ra == pytest.approx(a * FAST_CONTENT_FACTOR) and (rb, rg) == (b, g)


def test_keyframes_are_painted_plainly_and_frames_refined_preconditioned(tmp_path, style_png,
                                                                          monkeypatch):
    """The network fits keyframes painted by plain L-BFGS better (RESULTS.md, "Fast 6"); the
    refining, whose few iterations gain most from it, runs preconditioned."""
    import nstvideo.style.optimize as optimize_module
    from nstvideo.style.optimize import PRECONDITION

    seen = []
    real = optimize_module.LBFGS

    class Recording(real):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen.append(self.precondition)

    monkeypatch.setattr(optimize_module, "LBFGS", Recording)
    src = shots_clip(tmp_path / "s.mp4", (6,), audio=False)
    stylize(src, style_png, tmp_path / "o.mp4", settings=S, video=V.replace(keyframes="3"))
    # keyframes 0 and 3 first, then the chain's frames after its first (keyframe 0, taken as
    # painted)
    assert seen[:2] == [None, None] and seen[2:] == [PRECONDITION] * 5, seen
