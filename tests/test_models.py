"""Model frame, insertion points, reference sizes (spec sections 1, 3, 4) and argument errors."""

import pytest
import torch
import torchvision

import actionlib
from actionlib.models import BNInception, insertion_points, to_channels_last
from actionlib.ops import ActionModule, TemporalShift
from actionlib.profiling import count_macs, count_params

# spec section 4: (backbone, arch) -> (params in M, GMACs), 174 classes, 8 x 224 x 224
REFERENCE = {
    ("resnet50", "tsn"): (23.865, 32.713),
    ("resnet50", "action"): (28.082, 34.451),
    ("mobilenetv2", "tsn"): (2.447, 2.406),
    ("mobilenetv2", "action"): (2.472, 2.419),
    ("bninception", "tsn"): (10.449, 16.261),
    ("bninception", "action"): (11.544, 16.608),
}


@pytest.fixture(scope="module")
def measured():
    """Params and GMACs of the six reference rows plus TSM (one forward each at 8 x 224)."""
    torch.manual_seed(0)
    out = {}
    x = torch.randn(1, 8, 3, 224, 224)
    for backbone in ("resnet50", "mobilenetv2", "bninception"):
        for arch in ("tsn", "tsm", "action"):
            m = actionlib.build_model(arch, backbone, 174, 8)
            out[backbone, arch] = (count_params(m), count_macs(m, x))
    return out


@pytest.mark.parametrize("key", list(REFERENCE), ids=lambda k: "-".join(k))
def test_reference_sizes(measured, key):
    ref_params, ref_gmacs = REFERENCE[key]
    params, macs = measured[key]
    assert round(params / 1e3) == round(ref_params * 1e3)  # exact to the thousand
    assert abs(macs / 1e9 - ref_gmacs) / ref_gmacs <= 0.005


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenetv2", "bninception"])
def test_tsm_costs_what_tsn_costs(measured, backbone):
    assert measured[backbone, "tsm"] == measured[backbone, "tsn"]


@pytest.mark.parametrize("key", list(REFERENCE), ids=lambda k: "-".join(k))
def test_reference_gmacs_counted_a_1000_way_classifier(measured, key):
    """Observation, kept as a test: every reference GMACs figure equals ours with the linear
    head's 174 outputs replaced by 1000 (T x 1000 x F MACs instead of T x 174 x F), to 1e-3."""
    feature_dim = {"resnet50": 2048, "mobilenetv2": 1280, "bninception": 1024}[key[0]]
    macs = measured[key][1] + 8 * (1000 - 174) * feature_dim
    assert macs / 1e9 == pytest.approx(REFERENCE[key][1], abs=1e-3)


EXPECTED_POINTS = {
    "resnet50": (
        ["layer1.%d.conv1" % i for i in range(3)] + ["layer2.%d.conv1" % i for i in range(4)]
        + ["layer3.%d.conv1" % i for i in range(6)] + ["layer4.%d.conv1" % i for i in range(3)]
    ),
    "mobilenetv2": ["features.%d.conv.0" % i for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)],
    "bninception": ["temporal.%s" % p for p in ("conv2", "3a", "3b", "3c", "4a", "4b", "4c", "4d", "4e", "5a")],
}  # fmt: skip


@pytest.mark.parametrize("backbone", list(EXPECTED_POINTS))
@pytest.mark.parametrize("arch,kind", [("tsm", TemporalShift), ("action", ActionModule)])
def test_insertion_points(backbone, arch, kind):
    m = actionlib.build_model(arch, backbone, 10, 8)
    names = [n.removesuffix(".temporal") for n, _ in m.temporal_modules()]
    assert names == EXPECTED_POINTS[backbone]
    blocks = [mod for mod in m.modules() if isinstance(mod, kind)]
    assert len(blocks) == len(EXPECTED_POINTS[backbone])


def test_resnet_module_on_residual_branch_only():
    m = actionlib.build_model("action", "resnet50", 10, 8)
    block = m.backbone.layer2[1]
    assert isinstance(block.conv1.temporal, ActionModule)  # before conv1: residual branch
    assert block.downsample is None  # the shortcut is the identity: it sees the original input
    assert block.conv1.temporal.channels == 512


def test_mobilenet_module_before_expansion():
    m = actionlib.build_model("action", "mobilenetv2", 10, 8)
    block = m.backbone.features[5]
    assert block.use_res_connect
    assert block.conv[0].temporal.channels == 32
    assert block.conv[0].net[0].kernel_size == (1, 1)  # the expansion conv


def test_bninception_channels_at_points():
    bb = BNInception()
    assert [p.channels for p in insertion_points("bninception", bb)] == [192, 256, 320, 576, 576, 576, 608, 608, 1056, 1024]
    out = bb(torch.randn(1, 3, 64, 96))
    assert out.shape == (1, 1024, 2, 3)


def test_resnet101_every_second_block():
    m = actionlib.build_model("tsm", "resnet101", 10, 8)
    names = [n for n, _ in m.temporal_modules()]
    assert len(names) == 2 + 2 + 12 + 2
    assert "layer3.21.conv1.temporal" not in names and "layer3.22.conv1.temporal" in names


def test_stage_and_every_selection():
    m = actionlib.build_model("action", "resnet50", 10, 8, stages=[3, 4], every=2)
    names = [n.removesuffix(".conv1.temporal") for n, _ in m.temporal_modules()]
    assert names == ["layer3.0", "layer3.2", "layer3.4", "layer4.0", "layer4.2"]
    with pytest.raises(ValueError, match="stages"):
        actionlib.build_model("action", "resnet50", 10, 8, stages=[5])


@pytest.mark.parametrize("arch", ["tsn", "tsm", "action"])
def test_output_shape(arch):
    m = actionlib.build_model(arch, "resnet18", 7, 4)
    assert m(torch.randn(3, 4, 3, 32, 32)).shape == (3, 7)
    assert m(torch.randn(12, 3, 32, 32)).shape == (3, 7)  # (N*T, 3, H, W) accepted too


def test_channels_last_conversion_keeps_outputs():
    """``to_channels_last`` converts the 2-D convolutions' weights (``Module.to(memory_format=...)``
    fails on ACTION's 5-D STE weight) and the models compute the same logits from NHWC input."""
    x = torch.randn(2, 4, 3, 32, 32)
    for arch in ("tsn", "tsm", "action"):
        torch.manual_seed(0)
        m = actionlib.build_model(arch, "resnet18", 7, 4).eval()
        with torch.no_grad():
            ref = m(x)
            assert to_channels_last(m) is m
            convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
            assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
            if arch == "action":
                ste = next(c for c in m.modules() if isinstance(c, torch.nn.Conv3d))
                assert ste.weight.dim() == 5 and ste.weight.is_contiguous()
                with pytest.raises(RuntimeError, match="rank 4"):  # what the plain call does
                    m.to(memory_format=torch.channels_last)
            frames = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
            assert torch.allclose(m(frames), ref, rtol=1e-4, atol=1e-5), arch


def test_head_init():
    m = actionlib.build_model("tsn", "resnet18", 5, 2)
    assert torch.all(m.fc.bias == 0)
    assert m.fc.weight.std().item() == pytest.approx(0.001, rel=0.2)


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenetv2"])
def test_order_invariance(backbone):
    """TSN averages per-frame logits: frame order cannot matter. TSM and ACTION see it."""
    x = torch.randn(2, 4, 3, 64, 64)
    perm = torch.tensor([2, 0, 3, 1])
    for arch in ("tsn", "tsm", "action"):
        torch.manual_seed(0)
        m = actionlib.build_model(arch, backbone, 5, 4, dropout=0.0)
        torch.nn.init.normal_(m.fc.weight, std=1.0)  # larger head: differences well above rounding
        # training-mode BN (batch statistics over all frames: order-blind too) keeps random-init
        # activations in a healthy range; dropout is off
        with torch.no_grad():
            a, b = m(x), m(x[:, perm])
        scale = a.abs().max()
        if arch == "tsn":
            assert (a - b).abs().max() <= 1e-5 * scale
        else:
            assert (a - b).abs().max() >= 1e-2 * scale, arch


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(arch="i3d", backbone="resnet50"), r"unknown arch 'i3d'; allowed: \['tsn', 'tsm', 'action'\]"),
        (dict(arch="tsn", backbone="vgg16"), r"unknown backbone 'vgg16'; allowed: \['resnet18'"),
        (dict(arch="action", backbone="resnet18", paths=[]), r"paths is empty; allowed"),
        (dict(arch="action", backbone="resnet18", paths=["ste", "flow"]), r"unknown ACTION path\(s\) \['flow'\]"),
        (dict(arch="tsm", backbone="resnet18", paths=["ste"]), r"paths applies to arch 'action' only"),
        (dict(arch="tsn", backbone="resnet18", num_classes=0), r"num_classes must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"num_classes": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        actionlib.build_model(**kwargs)


@pytest.mark.parametrize(
    "shape,match",
    [
        ((6, 3, 32, 32), r"batch of 6 frames is not divisible by num_segments=4"),
        ((2, 4, 1, 32, 32), r"expected a clip batch \(N, T=4, 3, H, W\), got shape \(2, 4, 1, 32, 32\)"),
        ((2, 3, 3, 32, 32), r"expected a clip batch \(N, T=4, 3, H, W\)"),
        ((8, 1, 32, 32), r"expected 3 colour channels"),
        ((3, 32, 32), r"expected input of rank 5 \(N, T, 3, H, W\) or rank 4 \(N\*T, 3, H, W\), got rank 3"),
    ],
)
def test_bad_input(shape, match):
    m = actionlib.build_model("tsm", "resnet18", 5, 4)
    with pytest.raises(ValueError, match=match):
        m(torch.randn(*shape))


def test_bninception_size_check():
    m = actionlib.build_model("tsn", "bninception", 5, 2)
    with pytest.raises(ValueError, match="multiples of 32, got 112x112"):
        m(torch.randn(1, 2, 3, 112, 112))


# --- pretrained weights ------------------------------------------------------------------------


def test_imagenet_missing_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"resnet50-0676ba61\.pth.*" + str(tmp_path / "hub" / "checkpoints")):
        actionlib.build_model("tsn", "resnet50", 5, pretrained="imagenet")
    with pytest.raises(FileNotFoundError, match=r"bn_inception-52deb4733\.pth"):
        actionlib.build_model("tsn", "bninception", 5, pretrained="imagenet")


def test_imagenet_from_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = torchvision.models.resnet18()
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(ref.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    m = actionlib.build_model("action", "resnet18", 5, 4, pretrained="imagenet")
    assert torch.equal(m.backbone.layer1[0].conv1.net.weight, ref.layer1[0].conv1.weight)
    assert torch.equal(m.backbone.conv1.weight, ref.conv1.weight)


def test_backbone_state_dict_file(tmp_path):
    ref = torchvision.models.mobilenet_v2()
    torch.save({"state_dict": {"module." + k: v for k, v in ref.state_dict().items()}}, tmp_path / "w.pth")
    m = actionlib.build_model("tsm", "mobilenetv2", 5, 4, pretrained=tmp_path / "w.pth")
    assert torch.equal(m.backbone.features[5].conv[0].net[0].weight, ref.features[5].conv[0][0].weight)


def test_bninception_port_file_with_squeezed_bn(tmp_path):
    """The TSN port's file stores BN parameters as (1, C) and has no batch counters."""
    ref = BNInception(num_classes=1000)
    state = {k: (v.unsqueeze(0) if k.endswith("_bn.weight") else v) for k, v in ref.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # fmt: skip
    torch.save(state, tmp_path / "bn_inception.pth")
    m = actionlib.build_model("action", "bninception", 5, 4, pretrained=tmp_path / "bn_inception.pth")
    assert torch.equal(m.backbone.inception_4e_double_3x3_2_bn.weight, ref.inception_4e_double_3x3_2_bn.weight)


def test_whole_model_file_roundtrip_and_mismatch(tmp_path):
    a = actionlib.build_model("action", "resnet18", 5, 4)
    torch.save(a.state_dict(), tmp_path / "model.pth")
    b = actionlib.build_model("action", "resnet18", 5, 4, pretrained=tmp_path / "model.pth")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(ValueError, match=r"shape mismatches \[.*'fc.weight: file \(5, 512\) vs model \(7, 512\)'"):
        actionlib.build_model("action", "resnet18", 7, 4, pretrained=tmp_path / "model.pth")
    with pytest.raises(ValueError, match=r"unexpected keys \['backbone.layer1.0.conv1.net.weight'"):
        actionlib.build_model("tsn", "resnet18", 5, 4, pretrained=tmp_path / "model.pth")


def test_pretrained_file_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        actionlib.build_model("tsn", "resnet18", 5, pretrained=tmp_path / "nope.pth")
