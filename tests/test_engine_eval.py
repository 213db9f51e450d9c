"""actionlib train / eval on a tiny synthetic set: multi-clip x multi-crop evaluation, reports."""

import json

import pandas as pd
import pytest
import torch

from actionlib.cli import main as cli_main
from actionlib.engine import evaluate
from actionlib.engine.evaluate import MultiCrop


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("synth")
    data = dict(clips=24, frames=8, size=32, num_classes=4, workers=1, progress=False)
    args = ["train", "--recipe", "smoke", "--data-root", str(tmp / "data"), "--data-options", json.dumps(data),
            "--image-size", "32", "--num-segments", "2", "--epochs", "1", "--max-steps-per-epoch", "2",
            "--batch-size", "4", "--output-root", str(tmp / "runs"), "--no-progress", "--threads", "1",
            "--transform-options", '{"scale_size": 32}']  # fmt: skip
    assert cli_main(args) == 0
    (run,) = (tmp / "runs").iterdir()
    return run


def test_multicrop_views():
    clip = torch.randint(0, 255, (2, 3, 36, 48), dtype=torch.uint8)
    views = MultiCrop(32, "resnet18", scale_size=36, crops=3)(clip)
    assert views.shape == (3, 2, 3, 32, 32) and views.dtype == torch.float32
    # left and right crops differ, centre one sits in the middle of the long side
    assert not torch.equal(views[0], views[2])
    one = MultiCrop(32, "resnet18", scale_size=36, crops=1)(clip)
    torch.testing.assert_close(one[0], views[1])
    whole = MultiCrop(32, "resnet18", scale_size=None, crops=1, whole_frame=True)(clip)
    assert whole.shape == (1, 2, 3, 32, 32)
    with pytest.raises(ValueError, match="num_crops"):
        MultiCrop(32, "resnet18", scale_size=36, crops=0)


def test_eval_cli_multi_clip_multi_crop(run_dir, capsys):
    capsys.readouterr()
    assert cli_main(["eval", "--checkpoint", str(run_dir / "best.pt"), "--clips", "2", "--crops", "3",
                     "--no-progress", "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert '"num_clips": 2' in out and "per-class accuracy" in out
    ev = run_dir / "eval"
    for name in ("predictions_2clip_3crop.csv", "confusion_2clip_3crop.csv", "confusion_2clip_3crop.png",
                 "per_class_2clip_3crop.csv", "metrics_2clip_3crop.json"):  # fmt: skip
        assert (ev / name).is_file(), name
    preds = pd.read_csv(ev / "predictions_2clip_3crop.csv")
    conf = pd.read_csv(ev / "confusion_2clip_3crop.csv", index_col=0)
    assert conf.values.sum() == len(preds) == 5  # 24 clips, 20% validation
    assert conf.shape == (4, 4)


def test_evaluate_api_single_clip(run_dir):
    r = evaluate(run_dir, progress=False)
    r2 = evaluate(run_dir, progress=False)
    assert r["num_videos"] == 5 and r["num_clips"] == 1 and r["num_crops"] == 1
    assert 0 <= r["top1"] <= r["top5"] <= 100 and r["top1"] == r2["top1"]
    assert len(r["per_class"]) == 4 and sum(c["count"] for c in r["per_class"]) == 5
    assert sum(map(sum, r["confusion"])) == 5 and "files" not in r
    # the same numbers with the trained model object and an explicit dataset
    from actionlib.engine import load_trained

    model, cfg = load_trained(run_dir)
    r3 = evaluate(model, dataset=cfg.dataset, data_root=cfg.data_root, split="val", image_size=32, scale_size=32,
                  data_options=cfg.data_options, progress=False)  # fmt: skip
    assert r3["top1"] == r["top1"] and r3["loss"] == pytest.approx(r["loss"])
