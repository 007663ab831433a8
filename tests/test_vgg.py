"""VGG-19: real weights, named layers, the cut, each source's normalization and errors."""

import pytest
import torch

from nstvideo.style import vgg
from nstvideo.errors import InputError, ModelError


@pytest.fixture(scope="module")
def caffe_state():
    return vgg._caffe_state()


def test_layer_names_and_channels():
    assert vgg.LAYER_NAMES[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert len(vgg.CONV_NAMES) == 16 and len(vgg.LAYER_NAMES) == 37
    assert vgg.layer_channels("relu4_2") == 512 and vgg.layer_channels("pool2") == 128
    with pytest.raises(InputError, match="unknown VGG-19 layer 'relu6_1'"):
        vgg.check_layer("relu6_1")


def test_caffe_weights_decode_to_vgg19_shapes(caffe_state):
    w, b = caffe_state["conv1_1"]
    assert w.shape == (64, 3, 3, 3) and b.shape == (64,)
    assert caffe_state["conv5_4"][0].shape == (512, 512, 3, 3)
    assert w.dtype == torch.float32 and 0 < w.abs().mean() < 1  # decoded, not indices


def test_features_cut_after_deepest_layer_and_frozen():
    net = vgg.VGGFeatures(["relu1_1", "relu2_1"])
    assert net.names[-1] == "relu2_1" and len(net.layers) == 7
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    feats = net(torch.rand(1, 3, 32, 32) * 255)
    assert set(feats) == {"relu1_1", "relu2_1"}
    assert feats["relu2_1"].shape == (1, 128, 16, 16) and (feats["relu1_1"] >= 0).all()


def test_caffe_normalization_is_bgr_minus_mean():
    net = vgg.VGGFeatures(["relu1_1"])
    rgb = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    got = net.normalize(rgb).flatten().tolist()
    assert got == pytest.approx([30 - 103.939, 20 - 116.779, 10 - 123.68])


def _torchvision_layout(state):
    """Save the caffe convs under torchvision's `features.N` keys."""
    sd = {}
    for i, name in enumerate(vgg.LAYER_NAMES):
        if name.startswith("conv"):
            sd[f"features.{i}.weight"], sd[f"features.{i}.bias"] = state[name]
    return sd


def test_weights_path_and_torch_home(tmp_path, monkeypatch, caffe_state):
    sd = _torchvision_layout(caffe_state)
    path = tmp_path / "mine.pth"
    torch.save(sd, path)
    net = vgg.VGGFeatures(["relu3_1"], weights=str(path))
    assert net.source == "torchvision"
    torch.testing.assert_close(net.layers[0].weight, caffe_state["conv1_1"][0])
    x = torch.rand(1, 3, 16, 16) * 255  # RGB, 0-1, normalized by ImageNet mean/std
    expected = (x / 255 - torch.tensor(vgg.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        vgg.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(net.normalize(x), expected)
    # --weights torchvision reads the file torchvision would have downloaded into TORCH_HOME
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    target = vgg.torchvision_weights_path()
    assert str(target).startswith(str(tmp_path / "th"))
    target.parent.mkdir(parents=True)
    torch.save(sd, target)
    assert vgg.VGGFeatures(["relu1_1"], weights="torchvision").source == "torchvision"


def test_missing_torchvision_weights_name_the_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    asked = []

    def no_network(url, *a, **k):
        asked.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    with pytest.raises(ModelError) as e:
        vgg.VGGFeatures(["relu1_1"], weights="torchvision")
    assert str(tmp_path / "empty" / "hub" / "checkpoints" / vgg.TORCHVISION_FILE) in str(e.value)
    assert asked == [vgg.TORCHVISION_URL]  # torchvision's own file, fetched by torch's hub


def test_bad_weights_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        vgg.VGGFeatures(["relu1_1"], weights=str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read weights file"):
        vgg.VGGFeatures(["relu1_1"], weights=str(junk))
    torch.save({"features.0.weight": torch.zeros(2)}, tmp_path / "wrong.pth")
    with pytest.raises(ModelError, match="not a VGG-19 state dict"):
        vgg.VGGFeatures(["relu1_1"], weights=str(tmp_path / "wrong.pth"))
