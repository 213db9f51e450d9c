"""actionlib.cam: video CAMs over pytorch-grad-cam, localisation scores, figure."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from torch import nn

import actionlib
from actionlib.cam import METHODS, VideoCAM, compute_cam
from actionlib.cam.score import bootstrap_ci, clip_scores, energy_in_mask, plot_scores, pointing_game, score_table, summarize
from actionlib.models import VideoNet

T = 2
GRADIENT_METHODS = ("gradcam", "gradcam++", "xgradcam", "layercam", "hirescam")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = actionlib.build_model("action", "resnet18", num_classes=5, num_segments=T)
    # a non-trivial classifier so that the maps are not all equal
    nn.init.normal_(model.fc.weight, 0.0, 0.05)
    return model


@pytest.fixture
def clips():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, T, 3, 64, 64, generator=g)


class RegionBackbone(nn.Module):
    """Frames (B, 3, 32, 32) -> (B, 4, 8, 8) feature maps that are zero outside ``region``:
    only that region of the frame can move any class score."""

    def __init__(self, region: tuple[slice, slice]):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=4, stride=4)
        nn.init.normal_(self.conv.weight, 0.0, 0.1)
        nn.init.constant_(self.conv.bias, 1.0)  # positive activations inside the region
        mask = torch.zeros(1, 1, 8, 8)
        mask[(0, 0, *region)] = 1.0
        self.register_buffer("mask", mask)

    def forward(self, x):
        return torch.relu(self.conv(x)) * self.mask


def region_model():
    model = VideoNet(RegionBackbone((slice(1, 3), slice(5, 7))), 4, num_classes=3, num_segments=T, dropout=0.0)
    with torch.no_grad():
        model.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, 0.5, 0.0, 0.2], [0.3, -0.2, 0.1, 0.0]]))
    return model


# the region in input pixels: feature rows 1..2 and columns 5..6, 4 pixels per feature cell
REGION_PX = (slice(4, 12), slice(20, 28))


@pytest.mark.parametrize("method", METHODS)
def test_shapes_and_range(tiny, clips, method):
    res = compute_cam(tiny, clips, method)
    assert res.maps.shape == (3, T, 64, 64)
    assert res.maps.dtype == np.float32
    assert res.maps.min() >= 0.0 and res.maps.max() <= 1.0
    assert res.maps.max() > 0.5  # normalised per frame, not a blank map
    assert res.logits.shape == (3, 5)
    assert res.targets.shape == (3,)


def test_default_target_is_the_clip_prediction(tiny, clips):
    res = compute_cam(tiny, clips, "gradcam")
    tiny.eval()
    with torch.no_grad():
        expected = tiny(clips)
    np.testing.assert_allclose(res.logits, expected.numpy(), rtol=1e-4, atol=1e-5)
    assert res.targets.tolist() == expected.argmax(1).tolist() == res.predictions.tolist()
    np.testing.assert_allclose(res.probs.sum(1), 1.0, rtol=1e-5)


def test_any_class_target_changes_the_map(tiny, clips):
    a = compute_cam(tiny, clips, "gradcam", targets=0)
    b = compute_cam(tiny, clips, "gradcam", targets=[1, 2, 3])
    assert a.targets.tolist() == [0, 0, 0] and b.targets.tolist() == [1, 2, 3]
    assert not np.allclose(a.maps, b.maps)
    # a pytorch_grad_cam target object is accepted too
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    c = compute_cam(tiny, clips, "gradcam", targets=[ClassifierOutputTarget(1), 2, None])
    np.testing.assert_allclose(c.maps[:2], b.maps[:2], atol=1e-6)
    assert c.targets.tolist()[:2] == [-1, 2]


def test_deterministic_and_batch_independent(tiny, clips):
    a = compute_cam(tiny, clips, "gradcam++", batch_size=3)
    b = compute_cam(tiny, clips, "gradcam++", batch_size=3)
    assert np.array_equal(a.maps, b.maps)
    c = compute_cam(tiny, clips, "gradcam++", batch_size=1)
    np.testing.assert_allclose(a.maps, c.maps, atol=1e-4)
    # each clip's maps depend on that clip only
    d = compute_cam(tiny, clips[1:2], "gradcam++")
    np.testing.assert_allclose(a.maps[1], d.maps[0], atol=1e-4)


def test_model_left_as_it_was(tiny, clips):
    tiny.train()
    flags = [p.requires_grad for p in tiny.parameters()]
    compute_cam(tiny, clips, "layercam")
    assert tiny.training
    assert [p.requires_grad for p in tiny.parameters()] == flags
    assert all(p.grad is None for p in tiny.parameters())
    assert all(not m._forward_hooks for m in tiny.modules())


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_cam_peaks_in_the_only_region_that_drives_the_score(method):
    model = region_model()
    x = torch.rand(4, T, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    res = compute_cam(model, x, method, targets=0)
    inside = np.zeros((32, 32), bool)
    inside[REGION_PX] = True
    flat = res.maps.reshape(-1, 32 * 32)
    assert inside.reshape(-1)[flat.argmax(1)].all()
    energy = energy_in_mask(res.maps, np.broadcast_to(inside, res.maps.shape))
    assert energy.min() > 0.7  # the rest is the bilinear upsampling's blur at the border
    near = np.zeros((32, 32), bool)
    near[2:14, 18:30] = True  # the region and half a feature cell around it
    assert energy_in_mask(res.maps, np.broadcast_to(near, res.maps.shape)).min() > 0.999


def test_earlier_layer_by_name():
    model = region_model()
    x = torch.rand(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    res = compute_cam(model, x, "layercam", targets=0, target_layer="backbone.conv")
    assert res.layers == ("backbone.conv",)
    inside = np.zeros((32, 32), bool)
    inside[REGION_PX] = True
    assert inside.reshape(-1)[res.maps.reshape(-1, 32 * 32).argmax(1)].all()


def test_bad_arguments(tiny, clips):
    with pytest.raises(ValueError, match="unknown CAM method 'gradcamz'.*allowed"):
        VideoCAM(tiny, "gradcamz")
    with pytest.raises(ValueError, match="unknown target layer 'backbone.layer9'"):
        VideoCAM(tiny, "gradcam", "backbone.layer9")
    with pytest.raises(ValueError, match="not a submodule"):
        VideoCAM(tiny, "gradcam", nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="target layer 'fc' gives \\(6, 5\\).*per-frame"):
        compute_cam(tiny, clips, "gradcam", target_layer="fc")
    with pytest.raises(ValueError, match="class index 5 out of range.*5 classes"):
        compute_cam(tiny, clips, "gradcam", targets=5)
    with pytest.raises(ValueError, match="class index -1 out of range"):
        compute_cam(tiny, clips, "gradcam", targets=[0, -1, 0])
    with pytest.raises(ValueError, match="got 2 targets for 3 clips"):
        compute_cam(tiny, clips, "gradcam", targets=[0, 1])
    with pytest.raises(ValueError, match="expected clips of shape \\(N, T=2, 3, H, W\\).*clip\\[None\\]"):
        compute_cam(tiny, clips[0], "gradcam")
    with pytest.raises(ValueError, match="batch_size"):
        VideoCAM(tiny, "gradcam", batch_size=0)
    assert all(not m._forward_hooks for m in tiny.modules())


def test_method_names_are_forgiving(tiny):
    assert VideoCAM(tiny, "Grad-CAM++").method == "gradcam++"
    assert VideoCAM(tiny, "grad_cam_pp").method == "gradcam++"
    assert VideoCAM(tiny, "EigenCAM").method == "eigencam"


# --- scores -----------------------------------------------------------------------------------


def test_energy_and_pointing_by_hand():
    maps = np.zeros((1, 2, 4, 4))
    maps[0, 0, 0, 0] = 1.0  # all mass inside
    maps[0, 0, 3, 3] = 0.0
    maps[0, 1, 0, 0] = 1.0  # a quarter inside, maximum outside
    maps[0, 1, 3, 3] = 3.0
    masks = np.zeros((1, 2, 4, 4), bool)
    masks[:, :, :2, :2] = True
    np.testing.assert_allclose(energy_in_mask(maps, masks), [[1.0, 0.25]])
    np.testing.assert_array_equal(pointing_game(maps, masks), [[1.0, 0.0]])
    np.testing.assert_array_equal(pointing_game(maps, masks, tolerance=3), [[1.0, 1.0]])
    df = clip_scores(maps, masks, distractor_masks=~masks)
    assert df.loc[0, "energy"] == pytest.approx(0.625)
    assert df.loc[0, "pointing"] == pytest.approx(0.5)
    assert df.loc[0, "chance"] == pytest.approx(0.25)
    assert df.loc[0, "distractor_energy"] == pytest.approx(0.375)
    with pytest.raises(ValueError, match="differ in shape"):
        energy_in_mask(maps, masks[..., :3])


def test_bootstrap_and_table():
    rng = np.random.default_rng(0)
    v = rng.uniform(size=50)
    m, lo, hi = bootstrap_ci(v, n_boot=500, seed=1)
    assert lo < m < hi and m == pytest.approx(v.mean())
    assert bootstrap_ci(v, n_boot=500, seed=1) == (m, lo, hi)
    assert bootstrap_ci([0.3]) == (0.3, 0.3, 0.3)
    import pandas as pd

    per_clip = pd.DataFrame({
        "model": ["tsn"] * 5 + ["action"] * 5, "method": "gradcam",
        "energy": rng.uniform(size=10), "pointing": rng.integers(0, 2, 10).astype(float), "chance": 0.1,
    })  # fmt: skip
    summary = summarize(per_clip, n_boot=200)
    assert list(summary["model"].unique()) == ["tsn", "action"]
    table = score_table(summary)
    assert list(table["model"]) == ["tsn", "action"] and "energy in mask" in table.columns
    fig = plot_scores(summary)
    assert len(fig.axes) == 2
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_figure(tiny, clips, tmp_path):
    import matplotlib.pyplot as plt

    from actionlib.cam.figure import compare_models, save_figure

    frames = torch.rand(T, 3, 64, 64)
    fig, results = compare_models({"tsn": tiny, "action": tiny}, clips[0], frames, class_names=list("abcde"))
    assert set(results) == {"tsn", "action"}
    assert len(fig.axes) == 3 * T  # input row + one row per model
    paths = save_figure(fig, tmp_path / "cam.png")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)
    plt.close(fig)


def test_models_table_names_run_folders(tiny, tmp_path):
    """The CAM notebook's table of models: one row per model, the run folder by its name (the
    path would carry the machine's layout into stored notebook outputs)."""
    from actionlib.cam.experiment import TrainedModel, models_table

    models = {
        "A": TrainedModel("A", tiny, run_dir=str(tmp_path / "runs" / "tsn-resnet18-synthetic-0123"), best_top1=12.345),
        "B": TrainedModel("B", tiny),
    }
    table = models_table(models)
    assert list(table["model"]) == ["A", "B"]
    assert list(table["run"]) == ["tsn-resnet18-synthetic-0123", ""]
    assert table["top1"][0] == 12.35 and table["top1"].isna()[1]
