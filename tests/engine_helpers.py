"""Tiny in-memory datasets and configs for the engine tests (also run in subprocesses)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class TinyClips(Dataset):
    """``n`` clips of T frames 3 x size x size: a class-dependent pattern plus random noise drawn
    from the global torch RNG (so per-item seeding matters), labels ``i % num_classes``."""

    def __init__(self, n: int = 24, num_segments: int = 2, size: int = 16, num_classes: int = 3, offset: int = 0):
        self.n, self.t, self.size, self.k, self.offset = n, num_segments, size, num_classes, offset
        self.classes = [f"class{i}" for i in range(num_classes)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        label = (i + self.offset) % self.k
        g = torch.Generator().manual_seed(1000 + i + self.offset)
        base = torch.randn(self.t, 3, self.size, self.size, generator=g) * 0.5
        base[:, label % 3] += 1.0
        return base + 0.1 * torch.randn(self.t, 3, self.size, self.size), label


def tiny_config(tmp, **overrides):
    from actionlib.engine import TrainConfig

    base = dict(
        arch="tsm", backbone="resnet18", num_segments=2, image_size=16, dataset="tiny", dropout=0.0,
        lr=0.05, lr_reference_batch=0, batch_size=4, epochs=2, schedule="step", lr_steps=[1],
        workers=0, threads=1, deterministic=True, output_root=str(tmp), progress=False,
        tensorboard=False, seed=3, fc_lr_mult=1.0, fc_bias_lr_mult=1.0,
    )  # fmt: skip
    base.update(overrides)
    return TrainConfig(**base)


def tiny_data(n_train: int = 24, n_val: int = 9):
    return TinyClips(n_train), TinyClips(n_val, offset=1)


def run_tiny(out: str, result_file: str, overrides_json: str = "{}") -> None:
    """Entry point for subprocess runs (plain or under torchrun): fit the tiny config, write the
    result as JSON."""
    import json
    import os

    from actionlib.engine import fit

    train, val = tiny_data()
    r = fit(tiny_config(out, **json.loads(overrides_json)), train_dataset=train, val_dataset=val)
    if int(os.environ.get("RANK", "0")) == 0:
        with open(result_file, "w") as f:
            json.dump({k: r[k] for k in ("metrics", "best_top1", "final_top1", "run_dir", "cached")}, f)


if __name__ == "__main__":
    import sys

    run_tiny(*sys.argv[1:])
