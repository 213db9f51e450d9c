import hashlib
import json

import numpy as np
import pytest
import torch

from actionlib.cli import main as cli_main
from actionlib.data import build_dataset, build_transform, class_names, generate_synthetic
from actionlib.data.synthetic import draw_params, make_clip, render_clip


def _tree_digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".lock":
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_deterministic_per_seed_any_worker_count(tmp_path):
    a = generate_synthetic(tmp_path / "a", clips=10, frames=4, size=24, seed=3, workers=1, progress=False)
    b = generate_synthetic(tmp_path / "b", clips=10, frames=4, size=24, seed=3, workers=2, progress=False)
    c = generate_synthetic(tmp_path / "c", clips=10, frames=4, size=24, seed=4, workers=1, progress=False)
    assert _tree_digest(a) == _tree_digest(b)
    assert _tree_digest(a) != _tree_digest(c)
    f1, m1 = make_clip(7, 5, 3, 6, 32)
    f2, m2 = make_clip(7, 5, 3, 6, 32)
    assert np.array_equal(f1, f2) and np.array_equal(m1, m2)
    assert f1.dtype == np.uint8 and f1.shape == (6, 32, 32, 3) and m1.shape == (6, 32, 32)


@pytest.mark.parametrize("pair", range(7))
def test_mirrored_pair_is_time_reversed(pair):
    p = draw_params(np.random.default_rng([1, pair]), 32)
    fwd, mf = render_clip(p, 2 * pair, 8, 32)
    bwd, mb = render_clip(p, 2 * pair + 1, 8, 32)
    assert np.array_equal(fwd, bwd[::-1]) and np.array_equal(mf, mb[::-1])
    assert not np.array_equal(fwd, bwd)  # the clip does change over time
    assert mf.any(axis=(1, 2)).all()  # the object is present in every frame


def _centroids(masks):
    ys, xs = np.mgrid[: masks.shape[1], : masks.shape[2]]
    area = masks.sum(axis=(1, 2))
    return (masks * xs).sum(axis=(1, 2)) / area, (masks * ys).sum(axis=(1, 2)) / area, area


def test_motion_directions_in_masks():
    names = class_names(10)
    for seed in range(5):
        p = draw_params(np.random.default_rng([9, seed]), 64)
        x, _, _ = _centroids(render_clip(p, names.index("Move right"), 8, 64)[1])
        assert np.all(np.diff(x) > 0)
        _, y, _ = _centroids(render_clip(p, names.index("Move up"), 8, 64)[1])
        assert np.all(np.diff(y) < 0)
        _, _, area = _centroids(render_clip(p, names.index("Grow"), 8, 64)[1])
        assert area[-1] > 2 * area[0]


def test_jester_layout_masks_and_synthetic_wrapper(tmp_path):
    root = tmp_path / "syn"
    ds = build_dataset("synthetic", root, "val", num_segments=4, clips=10, frames=8, size=32, progress=False)
    meta = json.loads((root / "synthetic.json").read_text())
    assert meta["clips"] == 10 and ds.classes == class_names(10) == meta["classes"]
    assert len(ds) == 2 and (root / "masks" / "9" / "00008.png").is_file()
    # the same folder read unchanged as Jester
    jes = build_dataset("jester", root, "train", num_segments=4)
    assert len(jes) == 8 and jes.classes == ds.classes
    assert sorted(jes.labels + ds.labels) != []
    item = ds.get(0, with_masks=True)
    assert item["indices"].tolist() == [1, 3, 5, 7]
    assert item["frames"].shape == (4, 3, 32, 32) and item["frames"].dtype == torch.uint8
    assert item["masks"].shape == (4, 32, 32) and item["masks"].dtype == torch.bool
    assert torch.equal(item["masks"], ds.masks(0))
    # masks match the generator's ground truth at the sampled frames
    _, truth = make_clip(0, int(ds.ids[0]) - 1, ds.labels[0], 8, 32)
    assert np.array_equal(item["masks"].numpy(), truth[item["indices"]])
    # second use: no regeneration; other parameters in the same root: clear error
    mtime = (root / "synthetic.json").stat().st_mtime_ns
    build_dataset("synthetic", root, "train", clips=10, frames=8, size=32)
    assert (root / "synthetic.json").stat().st_mtime_ns == mtime
    with pytest.raises(ValueError, match="synthetic.json describes a synthetic dataset"):
        build_dataset("synthetic", root, "train", clips=12, frames=8, size=32)
    # with a transform, masks follow the crop
    tr = build_transform(False, size=24, scale_size=32)
    clip, m = tr(item["frames"], masks=item["masks"])
    assert clip.shape == (4, 3, 24, 24) and m.shape == (4, 24, 24)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = cli_main(["synth", "--out", str(out), "--clips", "6", "--frames", "4", "--size", "16", "--workers", "1",
                   "--classes", "4"])  # fmt: skip
    assert rc == 0
    assert "wrote 6 clips" in capsys.readouterr().out
    assert (out / "jester-v1-labels.csv").read_text().splitlines() == class_names(4)
    lines = (out / "jester-v1-train.csv").read_text().splitlines() + (out / "jester-v1-validation.csv").read_text().splitlines()
    assert len(lines) == 6 and all(";" in ln for ln in lines)
    assert len(list((out / "frames" / "6").glob("*.jpg"))) == 4


def test_bad_class_count():
    with pytest.raises(ValueError, match="num_classes must be even"):
        class_names(5)
