"""2-D backbones and where a temporal block goes in each (spec section 3).

Each backbone is a feature extractor ``(B, 3, H, W) -> (B, F, h, w)``. An *insertion point* names
a place and the channels of the feature map there; ``insert_temporal`` puts one temporal block
(TSM shift, ACTION module, ...) at each chosen point:

- ResNet: before ``conv1`` of a residual block, on the residual branch only (the shortcut sees
  the original input). ResNets with >= 23 blocks in layer3 use every second block.
- MobileNetV2: before the expansion 1x1 conv of each inverted-residual block that has an
  expansion layer and a residual connection (10 blocks), on the residual branch only.
- BN-Inception: between blocks, on the main path (10 points), see ``bninception.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torchvision
from torch import nn

from . import bninception

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenetv2", "bninception")

TemporalFactory = Callable[[int], nn.Module]  # channels -> temporal block


class Inserted(nn.Module):
    """``net(temporal(x))``: a temporal block placed in front of an existing layer."""

    def __init__(self, temporal: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.temporal = temporal
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.temporal(x))


def _close_into_temporal(block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The end of a torchvision residual block's forward (shortcut added to the residual branch's
    ``out``, in place), with the next temporal block's ``relu_input_`` as the closing ReLU."""
    out += x if block.downsample is None else block.downsample(x)
    return block.next_temporal.relu_input_(out)


class BottleneckIntoTemporal(torchvision.models.resnet.Bottleneck):
    """torchvision's ``Bottleneck`` whose closing ReLU is ``next_temporal.relu_input_``: the
    temporal block of the next residual block, which reads this block's output, may take what it
    needs of the output in the same pass (``ActionModule.relu_input_``). torchvision's computation
    and numbers, parameters and names; made by :func:`link_blocks`."""

    next_temporal: nn.Module  # in the instance's __dict__, not a submodule (it is the next block's)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return _close_into_temporal(self, x, self.bn3(self.conv3(out)))


class BasicBlockIntoTemporal(torchvision.models.resnet.BasicBlock):
    """torchvision's ``BasicBlock`` (ResNet-18/34) as :class:`BottleneckIntoTemporal`."""

    next_temporal: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return _close_into_temporal(self, x, self.bn2(self.conv2(out)))


_INTO_TEMPORAL = {
    torchvision.models.resnet.Bottleneck: BottleneckIntoTemporal,
    torchvision.models.resnet.BasicBlock: BasicBlockIntoTemporal,
}


def link_blocks(features: "ResNetFeatures") -> int:
    """Let each residual block whose output goes into a temporal block with a ``relu_input_``
    (the ACTION module, at the next block's ``conv1``) close with that method instead of its ReLU:
    the block becomes its ``*IntoTemporal`` subclass, in place. Returns how many were linked."""
    blocks = [b for stage in (features.layer1, features.layer2, features.layer3, features.layer4) for b in stage]
    linked = 0
    for block, following in zip(blocks, blocks[1:]):
        inserted = following.conv1
        temporal = inserted.temporal if isinstance(inserted, Inserted) else None
        if hasattr(temporal, "relu_input_") and type(block) in _INTO_TEMPORAL:
            block.__class__ = _INTO_TEMPORAL[type(block)]
            block.__dict__["next_temporal"] = temporal  # not registered: it is a submodule of `following`
            linked += 1
    return linked


@dataclass(frozen=True)
class InsertionPoint:
    """One place for a temporal block: a name, the channels there, its stage (1..4) and the
    index of the point within its stage."""

    name: str
    channels: int
    stage: int
    index: int


class ResNetFeatures(nn.Module):
    """torchvision ResNet up to ``layer4`` (same parameter names, no pool or fc)."""

    def __init__(self, resnet: torchvision.models.ResNet) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(resnet, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class MobileNetV2Features(nn.Module):
    """torchvision MobileNetV2 ``features`` (same parameter names, no classifier)."""

    def __init__(self, mobilenet: torchvision.models.MobileNetV2) -> None:
        super().__init__()
        self.features = mobilenet.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


# --- builders ---------------------------------------------------------------------------------

_RESNETS = {
    "resnet18": torchvision.models.resnet18,
    "resnet34": torchvision.models.resnet34,
    "resnet50": torchvision.models.resnet50,
    "resnet101": torchvision.models.resnet101,
}


def create_backbone(name: str) -> tuple[nn.Module, int]:
    """A randomly initialised feature extractor and its output channels."""
    if name in _RESNETS:
        resnet = _RESNETS[name]()
        return ResNetFeatures(resnet), resnet.fc.in_features
    if name == "mobilenetv2":
        mobilenet = torchvision.models.mobilenet_v2()
        return MobileNetV2Features(mobilenet), mobilenet.last_channel
    if name == "bninception":
        return bninception.BNInception(), bninception.FEATURE_DIM
    raise ValueError(f"unknown backbone {name!r}; allowed: {list(BACKBONES)}")


# --- insertion points -------------------------------------------------------------------------


def _resnet_points(features: ResNetFeatures) -> list[tuple[InsertionPoint, nn.Module]]:
    every = 2 if len(features.layer3) >= 23 else 1
    points = []
    for stage in range(1, 5):
        for i, block in enumerate(getattr(features, f"layer{stage}")):
            if i % every == 0:
                point = InsertionPoint(f"layer{stage}.{i}.conv1", block.conv1.in_channels, stage, len(points))
                points.append((point, block))
    return points


def _mobilenet_stage(stride: int) -> int:
    return {4: 1, 8: 2, 16: 3, 32: 4}[stride]


def _mobilenet_points(features: MobileNetV2Features) -> list[tuple[InsertionPoint, nn.Module]]:
    points, stride = [], 1
    for i, block in enumerate(features.features):
        if isinstance(block, torchvision.models.mobilenetv2.InvertedResidual):
            stride *= block.stride
            if block.use_res_connect and len(block.conv) == 4:  # expansion layer + residual
                channels = block.conv[0][0].in_channels
                point = InsertionPoint(f"features.{i}.conv.0", channels, _mobilenet_stage(stride), len(points))
                points.append((point, block))
        else:
            stride *= block[0].stride[0]
    return points


def insertion_points(name: str, features: nn.Module) -> list[InsertionPoint]:
    """Where the spec puts a temporal block in ``features`` (a backbone of ``create_backbone``)."""
    if isinstance(features, ResNetFeatures):
        return [p for p, _ in _resnet_points(features)]
    if isinstance(features, MobileNetV2Features):
        return [p for p, _ in _mobilenet_points(features)]
    if isinstance(features, bninception.BNInception):
        return [
            InsertionPoint(point, channels, bninception.INSERTION_STAGES[point], i)
            for i, (point, channels) in enumerate(bninception.INSERTION_POINTS.items())
        ]
    raise ValueError(f"no insertion points known for backbone {name!r}")


def select_points(
    points: list[InsertionPoint], stages: Iterable[int] | None = None, every: int = 1
) -> list[InsertionPoint]:
    """Keep the points in ``stages`` (default all), then every ``every``-th point of each stage."""
    if every < 1:
        raise ValueError(f"every must be a positive integer, got {every}")
    all_stages = sorted({p.stage for p in points})
    if stages is None:
        stages = all_stages
    stages = sorted(set(stages))
    bad = [s for s in stages if s not in all_stages]
    if bad or not stages:
        raise ValueError(f"stages {stages} invalid; this backbone has insertion points in stages {all_stages}")
    chosen = []
    for s in stages:
        in_stage = [p for p in points if p.stage == s]
        chosen += in_stage[::every]
    return chosen


def insert_temporal(
    features: nn.Module, make_block: TemporalFactory, points: Iterable[InsertionPoint]
) -> list[str]:
    """Put ``make_block(channels)`` at each of ``points``; returns the module names of the blocks."""
    wanted = {p.name for p in points}
    names = []
    if isinstance(features, ResNetFeatures):
        for point, block in _resnet_points(features):
            if point.name in wanted:
                block.conv1 = Inserted(make_block(point.channels), block.conv1)
                names.append(point.name + ".temporal")
        link_blocks(features)
    elif isinstance(features, MobileNetV2Features):
        for point, block in _mobilenet_points(features):
            if point.name in wanted:
                block.conv[0] = Inserted(make_block(point.channels), block.conv[0])
                names.append(point.name + ".temporal")
    elif isinstance(features, bninception.BNInception):
        for point, channels in bninception.INSERTION_POINTS.items():
            if point in wanted:
                features.temporal[point] = make_block(channels)
                names.append(f"temporal.{point}")
    else:
        raise TypeError(f"cannot insert temporal blocks into {type(features).__name__}")
    return names
