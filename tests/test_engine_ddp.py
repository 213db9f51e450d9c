"""torchrun with 2 CPU processes (gloo) agrees with a single-process run of the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actionlib.engine import fit
from actionlib.engine.distributed import DistInfo, ShardSampler
from engine_helpers import tiny_config, tiny_data

HERE = Path(__file__).resolve().parent
# BatchNorm in eval mode (SyncBN needs CUDA) and no dropout: the only differences left are the
# order of floating-point sums
OVERRIDES = {"epochs": 2, "frozen_bn": True, "dropout": 0.0, "lr": 0.02, "batch_size": 4}


def test_shard_sampler_global_batches_match_single_process():
    single = [i for i, _ in ShardSampler(10, DistInfo(), shuffle=True, seed=5)]
    ranks = [[i for i, _ in ShardSampler(10, DistInfo(r, 2), shuffle=True, seed=5)] for r in range(2)]
    for b in range(2):  # global batch of 4 = two local batches of 2
        assert sorted(single[4 * b : 4 * b + 4]) == sorted(ranks[0][2 * b : 2 * b + 2] + ranks[1][2 * b : 2 * b + 2])
    s = ShardSampler(10, DistInfo(), shuffle=True, seed=5)
    s.set_epoch(0, skip=3)
    assert [i for i, _ in s] == single[3:] and len(s) == 7
    s.set_epoch(1)
    assert [i for i, _ in s] != single and {e for _, e in s} == {1}


def test_torchrun_two_processes_agree_with_single_process(tmp_path):
    train, val = tiny_data()
    single = fit(tiny_config(tmp_path / "single", **OVERRIDES), train_dataset=train, val_dataset=val)
    result = tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(HERE / "engine_helpers.py"), str(tmp_path / "ddp"), str(result), json.dumps(OVERRIDES)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ddp = json.loads(result.read_text())
    assert len(ddp["metrics"]) == len(single["metrics"]) == 2
    for a, b in zip(ddp["metrics"], single["metrics"]):
        for key in ("train_loss", "val_loss", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
        for key in ("train_top1", "val_top1", "val_top5"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key
    wa = torch.load(Path(ddp["run_dir"]) / "last.pt", weights_only=True)
    wb = torch.load(Path(single["run_dir"]) / "last.pt", weights_only=True)
    assert wa["world_size"] == 2 and len(wa["rng"]) == 2
    for k, v in wb["model"].items():
        torch.testing.assert_close(wa["model"][k], v, rtol=1e-4, atol=1e-5)
    # rank 0 alone wrote the run folder
    assert sorted(p.name for p in Path(ddp["run_dir"]).iterdir()) == ["best.pt", "config.yaml", "identity.json", "last.pt", "metrics.csv", "summary.json"]
