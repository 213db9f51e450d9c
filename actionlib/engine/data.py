"""Glue between the engine and ``actionlib.data``: datasets for a config, per-item seeding,
data identity for the run cache, loaders."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from .config import TrainConfig
from .distributed import DistInfo, ShardSampler


def build_datasets(cfg: TrainConfig, *, uint8: bool = False) -> tuple[Dataset, Dataset]:
    """Training and validation datasets of ``cfg`` (train / test transforms).

    ``uint8=True`` (what :func:`~actionlib.engine.fit` uses) leaves the normalisation out of the
    transform unless ``cfg.transform_options`` sets ``normalize``: the loader then ships uint8
    clips (4x less to collate and pass between processes) and the training loop normalises each
    batch on the device with ``ClipNormalize(cfg.backbone)``, the same arithmetic, the same numbers.
    """
    from .. import data

    options = dict(cfg.data_options)
    if cfg.dataset == "synthetic":
        options.setdefault("progress", cfg.progress)  # generation progress bar
    transform_options = {"normalize": False, **cfg.transform_options} if uint8 else cfg.transform_options

    def one(split: str, train: bool) -> Dataset:
        transform = data.build_transform(train, cfg.image_size, cfg.backbone, **transform_options)
        return data.build_dataset(cfg.dataset, cfg.data_root, split, num_segments=cfg.num_segments,
                                  transform=transform, **options)  # fmt: skip

    return one(cfg.train_split, True), one(cfg.val_split, False)


def class_names(ds: Dataset) -> list[str]:
    classes = getattr(ds, "classes", None)
    if classes is None:
        raise ValueError(f"dataset {type(ds).__name__} has no 'classes' attribute (list of class names)")
    return [str(c) for c in classes]


def data_identity(cfg: TrainConfig, train: Dataset, val: Dataset) -> str:
    """What identifies the data of a run: reader, folder, split sizes, classes, and the contents
    of the small files at the top of the dataset folder (annotation lists, manifests)."""
    parts: dict[str, Any] = {
        "train": [type(train).__name__, len(train)],
        "val": [type(val).__name__, len(val)],
        "classes": hashlib.sha256("\n".join(class_names(train)).encode()).hexdigest()[:16],
    }
    for name, ds in (("train_fp", train), ("val_fp", val)):
        fp = getattr(ds, "fingerprint", None)
        if fp is not None:
            parts[name] = str(fp() if callable(fp) else fp)
    root = Path(cfg.data_root) if cfg.data_root else None
    if root is not None and root.is_dir():
        files = {}
        for p in sorted(root.iterdir()):
            if p.is_file() and p.stat().st_size <= 4 << 20:
                files[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
        parts["files"] = files
    return json.dumps(parts, sort_keys=True)


class SeededDataset(Dataset):
    """Wraps a dataset indexed by ``(index, epoch)``: seeds Python, NumPy and torch from
    ``(seed, epoch, index)`` before each item, so random sampling and augmentation of an item do
    not depend on worker count, rank, or where a resumed run picked up. The caller's RNG states
    are restored afterwards."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, -1)
        item_seed = int(np.random.SeedSequence([self.seed, epoch + 1, index]).generate_state(1)[0])
        in_worker = get_worker_info() is not None
        if not in_worker:
            saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        try:
            random.seed(item_seed)
            np.random.seed(item_seed)
            torch.manual_seed(item_seed)
            return self.dataset[index]
        finally:
            if not in_worker:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                torch.set_rng_state(saved[2])


def _worker_init(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # distinct per worker and per loader (torch sets it)
    random.seed(seed)
    np.random.seed(seed)


def make_loader(ds: Dataset, cfg: TrainConfig, info: DistInfo, *, train: bool, batch_size: int,
                pin_memory: bool, workers: int | None = None) -> tuple[DataLoader, ShardSampler]:  # fmt: skip
    sampler = ShardSampler(len(ds), info, shuffle=train, seed=cfg.seed, pad=train)
    workers = cfg.workers if workers is None else workers
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, prefetch_factor=cfg.prefetch_factor, worker_init_fn=_worker_init)
    g = torch.Generator()
    g.manual_seed(cfg.seed)
    loader = DataLoader(
        SeededDataset(ds, cfg.seed), batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=pin_memory, drop_last=train, generator=g, **kwargs,
    )  # fmt: skip
    return loader, sampler
