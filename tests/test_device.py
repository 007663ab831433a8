"""Device, precision and memory policy (nstvideo/style/device.py, memory.py). No GPU here: the CUDA calls are
mocked with what a GPU would answer, so the policy is proven on the CPU."""

from __future__ import annotations

import inspect

import pytest
import torch

from nstvideo.style import device as D
from nstvideo.style import memory as M
from nstvideo.errors import ModelError

LAYERS = ("relu1_1", "relu5_1")
GIB = 2 ** 30


class FakeCuda:
    """What torch.cuda would say on a machine with `count` GPUs: free memory from the driver,
    and what the caching allocator holds (reserved) and uses (allocated)."""

    def __init__(self, monkeypatch, *, count=2, free=8 * GIB, reserved=0, allocated=0,
                 bf16=True):
        self.free, self.reserved, self.allocated, self.bf16 = free, reserved, allocated, bf16
        self.asked_bf16_on: list = []
        self.emulation_flags: list = []
        self.current = 0
        self.monkeypatch = monkeypatch
        self.fake("is_available", lambda: True)
        self.fake("device_count", lambda: count)
        self.fake("current_device", lambda: self.current)
        self.fake("mem_get_info", self._mem_get_info)
        self.fake("memory_reserved", lambda device=None: self.reserved)
        self.fake("memory_allocated", lambda device=None: self.allocated)
        self.fake("empty_cache", lambda: None)
        self.fake("device", self._device_ctx)

        def is_bf16_supported(including_emulation=True):
            self.asked_bf16_on.append(self.current)
            self.emulation_flags.append(including_emulation)
            return self.bf16[self.current] if isinstance(self.bf16, list) else self.bf16
        self.fake("is_bf16_supported", is_bf16_supported)

    def fake(self, name, impl):
        """torch.cuda.`name` answered by `impl`, called as the installed torch's own function
        may be called (its signature checked at each call: a keyword an older or newer torch
        lacks fails here, as it would on a GPU)."""
        sig = inspect.signature(getattr(torch.cuda, name))

        def checked(*a, **k):
            sig.bind(*a, **k)
            return impl(*a, **k)
        self.monkeypatch.setattr(torch.cuda, name, checked)

    def _mem_get_info(self, device=None):
        if device is not None and torch.device(device).type == "cuda":
            assert torch.device(device).index is not None, "mem_get_info of a device without index"
        return self.free, 80 * GIB

    def _device_ctx(self, dev):
        fake = self

        class Ctx:
            def __enter__(self):
                self.prev, fake.current = fake.current, torch.device(dev).index or 0

            def __exit__(self, *exc):
                fake.current = self.prev
        return Ctx()


def test_memory_estimate_and_refusal():
    cuda = torch.device("cuda", 0)
    small, big = M.estimate_bytes((256, 256), LAYERS, cuda), M.estimate_bytes((512, 512), LAYERS,
                                                                            cuda)
    assert 3.9 < big / small < 4.1  # grows with the pixel count
    assert 0.5 * GIB < big < 4 * GIB  # ~2.4 GiB
    assert M.plan((512, 512), LAYERS, cuda, big).tile is None  # fits whole, as today
    with pytest.raises(ModelError, match=r"use --size (\d+) or less") as e:
        M.plan((8192, 8192), LAYERS, cuda, big // 2)  # not even in the smallest tiles
    fit = int(str(e.value).split("--size ")[1].split()[0])
    assert 256 <= fit < 8192 and fit % 16 == 0
    M.plan((fit, fit), LAYERS, cuda, big // 2)  # the size named fits (in tiles)
    tiled = M.plan((2048, 2048), LAYERS, cuda, big)  # over the budget whole: tiles
    assert tiled.tile is not None and tiled.peak <= big


def test_free_memory_counts_what_the_caching_allocator_holds(monkeypatch):
    """Frame 1 leaves its memory cached by PyTorch (reserved, not allocated): the driver then
    reports little free, yet frame 2 of the same size fits whole."""
    need = M.estimate_bytes((512, 512), LAYERS, torch.device("cuda", 0))
    fake = FakeCuda(monkeypatch, free=need // 4, reserved=2 * need, allocated=need // 10)
    dev = torch.device("cuda", 0)
    assert M.free_bytes(dev) == need // 4 + 2 * need - need // 10
    assert M.plan((512, 512), LAYERS, dev, M.default_budget(dev)).tile is None
    fake.reserved = 0  # a quarter free: a 512 px picture is one smallest tile: refused
    with pytest.raises(ModelError, match="--size"):
        M.plan((512, 512), LAYERS, dev, M.default_budget(dev))


def test_out_of_memory_is_one_line_naming_a_size(monkeypatch):
    FakeCuda(monkeypatch, free=2 * GIB)
    err = M.out_of_memory(torch.device("cuda", 0), (1080, 1920), LAYERS)
    text = str(err)
    assert "\n" not in text and "ran out of memory" in text and "--max-memory" in text
    fit = int(text.split("--size ")[1].split()[0])
    assert 16 <= fit and fit % 16 == 0
    M.plan((fit * 9 // 16, fit), LAYERS, torch.device("cuda", 0), int(1.4 * GIB))


def test_oom_during_a_run_becomes_a_model_error(monkeypatch, tmp_path):
    """A torch.cuda.OutOfMemoryError inside the optimization reaches the user as one line."""
    from nstvideo.photos import build_stylizer
    from nstvideo.settings import StyleSettings
    from conftest import content_array, style_array

    stylizer = build_stylizer(style_array(), StyleSettings(size=32, iterations=2))

    def boom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(stylizer, "_run", boom)
    x = stylizer.prepare(content_array())
    with pytest.raises(ModelError, match=r"ran out of memory .*--size"):
        stylizer.run(x, x.clone())


def test_out_of_memory_measures_what_is_free_once_the_failed_run_is_gone(monkeypatch):
    """The suggestion is made from the memory free once the failed run's tensors are released
    (they live in the exception's traceback until its handler ends): 8 GiB here, where with
    them still held only 1 GiB is free and the size named would be far too small."""
    import weakref

    from nstvideo.photos import build_stylizer
    from nstvideo.settings import StyleSettings
    from conftest import content_array, style_array

    stylizer = build_stylizer(style_array(), StyleSettings(size=32, iterations=2))
    x = stylizer.prepare(content_array())
    fake = FakeCuda(monkeypatch, free=8 * GIB)
    held = []

    class Activations:  # what the failed run held on the GPU
        pass

    def free_now():  # the driver's answer: the run's memory back only once it is gone
        return 1 * GIB if held and held[0]() is not None else 8 * GIB

    def boom(*a, **k):
        acts = Activations()
        held.append(weakref.ref(acts))
        fake.free = free_now()
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(stylizer, "_run", boom)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: setattr(fake, "free", free_now()))
    stylizer.device = torch.device("cuda", 0)
    with pytest.raises(ModelError, match=r"--max-memory 5\.6 ") as e:
        stylizer.run(x, x.clone())
    assert "\n" not in str(e.value)


def test_device_names_and_indices(monkeypatch):
    FakeCuda(monkeypatch, count=2)
    assert D.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert D.resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ModelError, match="cuda:0 to cuda:1"):
        D.resolve_device("cuda:2")
    for bad in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(ModelError, match="unknown device"):
            D.resolve_device(bad)


def test_no_cuda_named_device_is_refused():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="no CUDA GPU"):
        D.resolve_device("cuda:0")


def test_bf16_only_where_native_on_the_chosen_device(monkeypatch):
    fake = FakeCuda(monkeypatch, count=2, bf16=[False, True])  # an old GPU 0, a new GPU 1
    assert D.use_bf16("auto", torch.device("cuda", 1)) is True
    assert D.use_bf16("auto", torch.device("cuda", 0)) is False
    assert fake.asked_bf16_on == [1, 0]  # asked of the device in use, not the current one
    assert fake.emulation_flags == [False, False]  # emulated bf16 never counts
    with pytest.raises(ModelError, match="bf16 natively"):
        D.use_bf16("bf16", torch.device("cuda", 0))
    assert D.use_bf16("fp32", torch.device("cuda", 1)) is False


@pytest.mark.parametrize("amx, avx512_bf16", [(False, False), (True, False), (False, True)])
def test_bf16_on_the_cpu_only_where_it_multiplies_bf16(monkeypatch, amx, avx512_bf16):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16,
                        raising=False)
    native = amx or avx512_bf16
    assert D.use_bf16("auto", torch.device("cpu")) is native
    assert D.use_bf16("fp32", torch.device("cpu")) is False
    if native:
        assert D.use_bf16("bf16", torch.device("cpu")) is True
    else:
        with pytest.raises(ModelError, match="AMX or AVX512-BF16"):
            D.use_bf16("bf16", torch.device("cpu"))


def test_seed_makes_cuda_deterministic(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    calls = []
    monkeypatch.setattr(torch, "use_deterministic_algorithms",
                        lambda on, warn_only=False: calls.append((on, warn_only)))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    D.configure(torch.device("cuda", 0), seed=7)
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert calls == [(True, True)]
    import os
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    torch.backends.cudnn.deterministic = False
    D.configure(torch.device("cuda", 0), seed=None, tune=True)
    assert torch.backends.cudnn.benchmark  # no seed, one frame size: the fastest kernels
    D.configure(torch.device("cuda", 0), seed=None)
    assert not torch.backends.cudnn.benchmark  # photos of many sizes: no re-timing at each


def test_matrix_products_keep_fp32_on_cuda(monkeypatch):
    """TF32 for VGG's convolutions, never for matrix products (L-BFGS's curvature products,
    the Grams): their 10-bit mantissas would round the dot products that steer each step."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    before = matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic
    matmul.allow_tf32, cudnn.allow_tf32 = True, False
    try:
        D.configure(torch.device("cuda", 0), seed=None)
        assert not matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32, cudnn.benchmark, cudnn.deterministic = before


def test_only_video_runs_tune_cudnn_for_their_shapes(monkeypatch, tmp_path, style_png,
                                                     content_png):
    """A photo (or a folder of them) is painted at many sizes: no autotuning; a video's frames
    share one size: its runs tune (asked of `configure` by every stylizer made)."""
    from nstvideo import stylize
    from nstvideo.settings import StyleSettings, VideoSettings
    from nstvideo.style import stylizer as stylizer_module
    from videokit import make_clip

    asked = []
    real = stylizer_module.configure
    monkeypatch.setattr(stylizer_module, "configure",
                        lambda device, seed, tune=False: (asked.append(tune),
                                                          real(device, seed, tune)))
    s = StyleSettings(size=32, iterations=1)
    stylize(content_png, style_png, tmp_path / "p.png", settings=s)
    assert asked == [False]
    stylize(make_clip(tmp_path / "c.mp4", frames=2), style_png, tmp_path / "v.mp4", settings=s,
            video=VideoSettings(iterations=1, iterations_first=1))
    assert asked[1:] and all(asked[1:])


def test_local_workers_get_one_gpu_each_or_a_share_of_the_cores(monkeypatch):
    from nstvideo.video import engines as schedule

    FakeCuda(monkeypatch, count=2)
    assert schedule.placements("auto", 2) == [("cuda:0", 1), ("cuda:1", 1)]
    assert schedule.placements("cuda", 3) == [("cuda:0", 1), ("cuda:1", 1), ("cuda:0", 1)]
    assert schedule.placements("cuda:1", 2) == [("cuda:1", 1), ("cuda:1", 1)]  # as asked
    monkeypatch.setattr(schedule, "cpu_cores", lambda: 16)
    assert schedule.placements("cpu", 4) == [("cpu", 4)] * 4
    assert schedule.placements("cpu", 32) == [("cpu", 1)] * 32


def test_the_network_paints_as_many_frames_as_free_memory_holds(monkeypatch):
    """A GPU's painting batch follows its free memory (not a fixed 16 megapixels), at least one
    frame; a batch that runs out of memory anyway is one line saying what to do."""
    import numpy as np

    from nstvideo.net import PAINT_BYTES_PER_PX, TranslationNet, batch_size, paint_tensor

    fake = FakeCuda(monkeypatch, free=8 * GIB)
    dev, hw = torch.device("cuda", 0), (1080, 1920)
    roomy = batch_size(hw, dev)
    fake.free = 2 * GIB
    tight = batch_size(hw, dev)
    assert roomy * PAINT_BYTES_PER_PX * hw[0] * hw[1] <= 8 * GIB
    assert tight >= 1 and 3.5 <= roomy / tight <= 4.5, (roomy, tight)
    assert batch_size(hw, dev, budget=1) == 1
    assert batch_size(hw, torch.device("cpu")) == 1  # ~1 megapixel a batch on a CPU

    net = TranslationNet()

    def out_of_memory(x):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
    monkeypatch.setattr(net, "forward", out_of_memory)
    with pytest.raises(ModelError, match=r"ran out of memory painting 2 frame\(s\) of 64x48 "
                                         r"with the network: .*--size") as e:
        paint_tensor(net, [np.zeros((48, 64, 3), np.uint8)] * 2)
    assert "\n" not in str(e.value)
