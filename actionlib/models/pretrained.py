"""ImageNet weights for the backbones, from a local file or the torch hub cache only."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
import torchvision
from torch import nn

log = logging.getLogger(__name__)

# torchvision weights used by the TSM / ACTION releases (ImageNet-1k, V1)
TORCHVISION_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet34": torchvision.models.ResNet34_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
    "resnet101": torchvision.models.ResNet101_Weights.IMAGENET1K_V1,
    "mobilenetv2": torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1,
}
# file names of the BN-Inception port's ImageNet weights (Cadene's, then TSN's)
BNINCEPTION_FILES = ("bn_inception-52deb4733.pth", "bn_inception-9f5701afb96c8044.pth")
CLASSIFIER_PREFIXES = ("fc.", "last_linear.", "classifier.")


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_file(backbone: str) -> Path:
    """The cached ImageNet weight file of ``backbone``; a clear error when it is not there."""
    if backbone in TORCHVISION_WEIGHTS:
        names = (os.path.basename(TORCHVISION_WEIGHTS[backbone].url),)
    elif backbone == "bninception":
        names = BNINCEPTION_FILES
    else:
        raise ValueError(f"no ImageNet weights known for backbone {backbone!r}")
    for name in names:
        path = hub_checkpoint_dir() / name
        if path.is_file():
            return path
    where = hub_checkpoint_dir()
    raise FileNotFoundError(
        f"ImageNet weights for {backbone} are not in the torch cache. This project never downloads "
        f"weights: put the file {' or '.join(names)} into {where} (or set TORCH_HOME), or pass "
        "pretrained='/path/to/state_dict.pth'."
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a state dict saved by ``torch.save`` (bare, or under a ``state_dict``/``model`` key)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_backbone_state(features: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ImageNet classifier-network weights into a feature extractor (classifier dropped).

    Keys may carry the torchvision prefix ``features.`` (MobileNetV2) or none (ResNet,
    BN-Inception); BN parameters stored as ``(1, C)`` (TSN's BN-Inception file) are squeezed.
    """
    own = features.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    fixed = {}
    for k, v in state.items():
        if k in own and v.shape != own[k].shape and v.numel() == own[k].numel():
            v = v.reshape(own[k].shape)
        fixed[k] = v
    for k in own:  # files saved before PyTorch 0.4.1 have no BN batch counters
        if k.endswith("num_batches_tracked") and k not in fixed:
            fixed[k] = own[k]
    missing = sorted(set(own) - set(fixed))
    unexpected = sorted(set(fixed) - set(own))
    shapes = sorted(k for k in set(own) & set(fixed) if own[k].shape != fixed[k].shape)
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source} does not match the backbone: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    features.load_state_dict(fixed)
    log.info("loaded backbone weights from %s", source)
