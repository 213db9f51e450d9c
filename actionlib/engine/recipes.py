"""Named training recipes.

- ``paper-ssv2``, ``paper-jester``, ``paper-egogesture``: the authors' recipe (spec section 5):
  SGD momentum 0.9, lr 0.01 per 64 clips scaled linearly with the global batch, weight decay 5e-4
  (none on biases and BatchNorm), classifier weight x5 / bias x10 lr, gradient-norm clip 20,
  dropout 0.5, step decay x0.1 at the listed epochs, ImageNet-pretrained ResNet-50, 8 x 224.
- ``quick``: the synthetic benchmark on a 2-core CPU, a few minutes per model; TSN stays near
  chance on the time-mirrored class pairs while TSM and ACTION learn them.
- ``fast``: a cheaper ``quick`` (about a minute per model) for notebook suites with many models.
- ``smoke``: trains a model in seconds (pipelines, notebooks under nbval).
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig

_PAPER = dict(
    arch="action", backbone="resnet50", num_segments=8, dropout=0.5, pretrained="imagenet",
    image_size=224, optimizer="sgd", lr=0.01, lr_reference_batch=64, momentum=0.9,
    weight_decay=5e-4, fc_lr_mult=5.0, fc_bias_lr_mult=10.0, clip_grad_norm=20.0,
    schedule="step", lr_gamma=0.1, batch_size=64, workers=8, prefetch_factor=4, precision="auto",
    log_every=20, checkpoint_every_steps=1000,
)  # fmt: skip

# the synthetic benchmark for the CPU recipes (actionlib.data "synthetic", generated on first use)
_SYNTH = dict(dataset="synthetic", data_root=None, pretrained=None, workers=0, threads=2)

# the quick CPU recipe; ``fast`` is the same with half the epochs
_QUICK: dict[str, Any] = {
    **_SYNTH, "arch": "action", "backbone": "resnet18", "num_segments": 4, "image_size": 32,
    "transform_options": {"scale_size": 32}, "dropout": 0.0, "optimizer": "adamw", "lr": 0.001,
    "weight_decay": 0.05, "lr_reference_batch": 0, "batch_size": 16, "fc_lr_mult": 1.0,
    "fc_bias_lr_mult": 1.0, "clip_grad_norm": 20.0, "epochs": 12, "schedule": "cosine",
    "warmup_epochs": 0.5,
}  # fmt: skip

RECIPES: dict[str, dict[str, Any]] = {
    "paper-ssv2": {**_PAPER, "dataset": "ssv2", "data_root": "data/ssv2", "epochs": 50, "lr_steps": [30, 40, 45]},
    "paper-jester": {**_PAPER, "dataset": "jester", "data_root": "data/jester", "epochs": 25, "lr_steps": [5, 10, 15]},
    "paper-egogesture": {
        **_PAPER, "dataset": "egogesture", "data_root": "data/egogesture", "epochs": 20, "lr_steps": [5, 10, 15],
        "transform_options": {"test_crop": "resize"},  # EgoGesture: test frames resized to 224x224
    },  # fmt: skip
    "quick": _QUICK,
    "fast": {**_QUICK, "epochs": 6},
    "smoke": {
        **_SYNTH, "arch": "action", "backbone": "resnet18", "num_segments": 4, "image_size": 32,
        "data_options": {"clips": 200, "frames": 8, "size": 32}, "transform_options": {"scale_size": 32},
        "dropout": 0.0, "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.01, "lr_reference_batch": 0,
        "batch_size": 8, "fc_lr_mult": 1.0, "fc_bias_lr_mult": 1.0, "clip_grad_norm": 20.0,
        "epochs": 2, "schedule": "cosine", "max_steps_per_epoch": 8, "tensorboard": False,
    },  # fmt: skip
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str, **overrides: Any) -> TrainConfig:
    """The named recipe as a ``TrainConfig``, with ``overrides`` applied (unknown keys raise).

        >>> cfg = get_recipe("quick", arch="tsm")
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; allowed: {recipe_names()}")
    return TrainConfig.from_dict({**RECIPES[name], **overrides}, f"recipe {name!r}")
