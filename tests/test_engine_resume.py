"""Fault test: a run killed with SIGKILL mid-epoch and resumed ends with exactly the metrics of an
uninterrupted run (deterministic mode); plus resume bookkeeping."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from actionlib.engine import fit
from engine_helpers import tiny_config, tiny_data

HERE = Path(__file__).resolve().parent
# 3 epochs x 6 steps; last.pt every 4 steps: the first one is written mid-epoch (epoch 1, step 4)
OVERRIDES = {"epochs": 3, "checkpoint_every_steps": 4, "lr_steps": [2], "dropout": 0.3}


def _start(out: Path, result: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(HERE / "engine_helpers.py"), str(out), str(result), json.dumps(OVERRIDES)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def _strip_times(rows):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in rows]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    train, val = tiny_data()
    reference = fit(tiny_config(tmp_path / "ref", **OVERRIDES), train_dataset=train, val_dataset=val)

    out, result = tmp_path / "killed", tmp_path / "result.json"
    proc = _start(out, result)
    deadline = time.time() + 120
    last = None
    while time.time() < deadline and proc.poll() is None:
        found = list(out.glob("*/last.pt"))
        if found:
            proc.send_signal(signal.SIGKILL)
            last = found[0]
            break
        time.sleep(0.002)
    proc.wait(timeout=60)
    log = proc.stdout.read().decode()
    assert last is not None and proc.returncode == -signal.SIGKILL, log
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert not (last.parent / "summary.json").exists()
    assert (ckpt["epoch"], ckpt["batch_in_epoch"]) in ((0, 4), (1, 0), (1, 2), (1, 4), (2, 0), (2, 2), (2, 4), (3, 0))

    # resume: same config, same key -> picks up last.pt automatically
    proc = _start(out, result)
    assert proc.wait(timeout=120) == 0, proc.stdout.read().decode()
    resumed = json.loads(result.read_text())
    assert resumed["cached"] is False and resumed["run_dir"].endswith(Path(reference["run_dir"]).name)
    assert _strip_times(resumed["metrics"]) == _strip_times(reference["metrics"])  # to the last digit
    assert resumed["best_top1"] == reference["best_top1"]
    a = torch.load(Path(resumed["run_dir"]) / "last.pt", weights_only=True)["model"]
    b = torch.load(Path(reference["run_dir"]) / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_true_without_checkpoint_fails(tmp_path):
    train, val = tiny_data()
    import pytest

    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        fit(tiny_config(tmp_path, epochs=1), resume=True, train_dataset=train, val_dataset=val)


def test_reruns_are_identical_and_fresh_start_ignores_cache(tmp_path):
    train, val = tiny_data()
    a = fit(tiny_config(tmp_path / "a", epochs=1, dropout=0.3), train_dataset=train, val_dataset=val)
    b = fit(tiny_config(tmp_path / "b", epochs=1, dropout=0.3), train_dataset=train, val_dataset=val)
    assert _strip_times(a["metrics"]) == _strip_times(b["metrics"])
    c = fit(tiny_config(tmp_path / "a", epochs=1, dropout=0.3, use_cache=False), resume=False,
            train_dataset=train, val_dataset=val)  # fmt: skip
    assert c["cached"] is False and _strip_times(c["metrics"]) == _strip_times(a["metrics"])
