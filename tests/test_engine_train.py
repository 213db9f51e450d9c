"""fit(): run folder contents, run cache, checkpoints (weights_only, atomic, mismatch errors)."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from actionlib.engine import fit, load_checkpoint, load_trained, save_atomic
from actionlib.engine.loop import METRIC_COLUMNS
from engine_helpers import tiny_config, tiny_data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train, val = tiny_data()
    cfg = tiny_config(root, tensorboard=True)
    return cfg, fit(cfg, train_dataset=train, val_dataset=val)


def test_fit_writes_run_folder(trained):
    cfg, r = trained
    run = r["run_dir"]
    for name in ("best.pt", "last.pt", "metrics.csv", "summary.json", "config.yaml"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert not [f for f in os.listdir(run) if f.endswith(".tmp")]
    with open(os.path.join(run, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == cfg.epochs and tuple(rows[0]) == METRIC_COLUMNS
    assert float(rows[1]["lr"]) == pytest.approx(0.05 * 0.1)  # step decay after epoch 1
    with open(os.path.join(run, "summary.json")) as f:
        s = json.load(f)
    assert s["status"] == "finished" and s["config"]["arch"] == "tsm"
    assert {"best_epoch", "best_top1", "wall_time_s", "versions", "git_commit", "history"} <= set(s)
    for key in ("run_dir", "best_top1", "best_top5", "final_top1", "best_epoch", "wall_time_s", "checkpoint", "cached"):
        assert key in r
    assert r["cached"] is False and 0 <= r["best_top1"] <= 100 and r["checkpoint"].endswith("best.pt")
    if any(os.scandir(run)) and os.path.isdir(os.path.join(run, "tb")):
        assert os.listdir(os.path.join(run, "tb"))


def test_run_cache_returns_without_training(trained, monkeypatch):
    cfg, r = trained
    train, val = tiny_data()
    import actionlib.engine.loop as loop

    monkeypatch.setattr(loop, "build_from_model_config", lambda *a, **k: pytest.fail("trained again"))
    again = fit(cfg.replace(progress=True, workers=0, log_every=3), train_dataset=train, val_dataset=val)
    assert again["cached"] is True and again["run_dir"] == r["run_dir"]
    assert again["best_top1"] == r["best_top1"] and again["metrics"] == r["metrics"]


def test_run_key_depends_on_result_fields_only(trained):
    cfg, _ = trained
    assert cfg.run_key("d") == cfg.replace(workers=3, progress=True, output_root="/x", threads=2).run_key("d")
    assert cfg.run_key("d") != cfg.replace(lr=0.1).run_key("d")
    assert cfg.run_key("d") != cfg.run_key("other data")


def test_checkpoints_load_weights_only_and_resume_state(trained):
    _, r = trained
    best = torch.load(r["checkpoint"], map_location="cpu", weights_only=True)
    last = torch.load(r["last_checkpoint"], map_location="cpu", weights_only=True)
    assert isinstance(best["config"], dict) and best["model_config"]["num_classes"] == 3
    for key in ("model", "optimizer", "scheduler", "scaler", "epoch", "global_step", "rng", "history", "meters"):
        assert key in last
    assert last["epoch"] == 2 and last["batch_in_epoch"] == 0 and last["global_step"] == 12
    model, cfg = load_trained(r["run_dir"])
    assert cfg.arch == "tsm" and model.classes == ["class0", "class1", "class2"] and not model.training
    assert model(torch.zeros(1, 2, 3, 16, 16)).shape == (1, 3)


def test_checkpoint_of_other_model_names_differences(trained, tmp_path):
    _, r = trained
    ckpt = load_checkpoint(r["checkpoint"])
    ckpt["model_config"] = {**ckpt["model_config"], "num_classes": 5}
    save_atomic(ckpt, tmp_path / "five.pt")
    with pytest.raises(ValueError, match=r"fc\.weight.*\(3, 512\).*\(5, 512\)"):
        load_trained(tmp_path / "five.pt")
    import actionlib
    from actionlib.engine.checkpoint import load_model_weights

    action = actionlib.build_model("action", "resnet18", 3, 2)
    with pytest.raises(ValueError, match=r"\(tsm/resnet18.*missing keys \['backbone\.layer1\.0\.conv1\.temporal"):
        load_model_weights(action, load_checkpoint(r["checkpoint"]), r["checkpoint"])


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an actionlib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_save_atomic_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    save_atomic({"a": torch.ones(2)}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_atomic({"a": torch.zeros(2)}, path)
    assert torch.load(path, weights_only=True)["a"].tolist() == [1.0, 1.0]
    assert os.listdir(tmp_path) == ["x.pt"]


def test_uint8_loader_normalised_per_batch_trains_identically(tmp_path):
    """fit ships uint8 clips and normalises each batch on the device; the numbers must be those of
    float clips normalised in the dataset (transform_options normalize=True)."""
    from actionlib.engine.data import build_datasets
    from actionlib.engine.recipes import get_recipe

    histories = []
    for options in ({}, {"normalize": True}):
        cfg = get_recipe("smoke")
        cfg.output_root, cfg.data_root, cfg.progress, cfg.workers = str(tmp_path / "runs"), str(tmp_path / "data"), False, 0
        cfg.epochs, cfg.data_options = 1, {**cfg.data_options, "clips": 40}
        cfg.transform_options = {**cfg.transform_options, **options}
        if not options:
            assert build_datasets(cfg, uint8=True)[0][0][0].dtype == torch.uint8
        r = fit(cfg, resume=False)
        history = json.loads((Path(r["run_dir"]) / "summary.json").read_text())["history"]
        histories.append([{k: v for k, v in e.items() if not k.endswith("time_s")} for e in history])
    assert histories[0] == histories[1]
