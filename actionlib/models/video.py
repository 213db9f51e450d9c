"""The video model frame shared by TSN, TSM and ACTION (spec section 1), and ``build_model``.

    clip (N, T, 3, H, W) -> frames (N*T, 3, H, W) -> backbone -> (N*T, F, h, w)
        -> global average pool -> dropout -> linear -> (N*T, K) -> mean over T -> (N, K)

TSN, TSM and ACTION differ only in the temporal block put into the backbone (``TEMPORAL_BLOCKS``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import nn

from ..ops import PATHS, ActionModule, TemporalShift
from ..ops.action import check_paths
from .backbones import BACKBONES, create_backbone, insert_temporal, insertion_points, select_points
from .pretrained import imagenet_file, load_backbone_state, read_state_dict

ARCHS = ("tsn", "tsm", "action")


def _tsm_block(channels: int, num_segments: int, shift_div: int, paths: tuple[str, ...]) -> nn.Module:
    return TemporalShift(channels, num_segments, shift_div)


def _action_block(channels: int, num_segments: int, shift_div: int, paths: tuple[str, ...]) -> nn.Module:
    return ActionModule(channels, num_segments, shift_div, paths)


# arch -> factory of its temporal block (None: nothing inserted)
TEMPORAL_BLOCKS = {"tsn": None, "tsm": _tsm_block, "action": _action_block}


class VideoNet(nn.Module):
    """TSN-style frame: a 2-D backbone on every frame, a linear head, average consensus."""

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        num_segments: int,
        dropout: float = 0.5,
        *,
        arch: str = "tsn",
        backbone_name: str = "",
        temporal_names: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.arch = arch
        self.backbone_name = backbone_name
        self.num_classes = num_classes
        self.num_segments = num_segments
        self.temporal_names = tuple(temporal_names)
        self.backbone = backbone
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(feature_dim, num_classes)
        nn.init.normal_(self.fc.weight, 0.0, 0.001)
        nn.init.zeros_(self.fc.bias)

    def temporal_modules(self) -> list[tuple[str, nn.Module]]:
        """The inserted temporal blocks, as ``(name inside the backbone, module)``."""
        return [(name, self.backbone.get_submodule(name)) for name in self.temporal_names]

    def _frames(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Check the input and return it as frames ``(N*T, 3, H, W)`` with ``N``."""
        t = self.num_segments
        if x.dim() == 5:
            if x.shape[1] != t or x.shape[2] != 3:
                raise ValueError(
                    f"expected a clip batch (N, T={t}, 3, H, W), got shape {tuple(x.shape)}"
                )
            return x.flatten(0, 1), x.shape[0]
        if x.dim() == 4:
            if x.shape[1] != 3:
                raise ValueError(f"expected 3 colour channels, got shape {tuple(x.shape)}")
            if x.shape[0] % t:
                raise ValueError(
                    f"batch of {x.shape[0]} frames is not divisible by num_segments={t}; "
                    "pass (N, T, 3, H, W) or (N*T, 3, H, W)"
                )
            return x, x.shape[0] // t
        raise ValueError(
            f"expected input of rank 5 (N, T, 3, H, W) or rank 4 (N*T, 3, H, W), "
            f"got rank {x.dim()} with shape {tuple(x.shape)}"
        )

    def frame_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Per-frame logits ``(N, T, K)`` before the consensus."""
        frames, n = self._frames(x)
        features = self.backbone(frames)  # (N*T, F, h, w)
        logits = self.fc(self.dropout(torch.flatten(self.pool(features), 1)))  # (N*T, K)
        return logits.view(n, self.num_segments, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frame_logits(x).mean(dim=1)  # average consensus: (N, K)


def build_model(
    arch: str,
    backbone: str,
    num_classes: int,
    num_segments: int = 8,
    *,
    paths: Iterable[str] | None = None,
    shift_div: int = 8,
    dropout: float = 0.5,
    pretrained: str | os.PathLike | None = None,
    stages: Iterable[int] | None = None,
    every: int | None = None,
) -> VideoNet:
    """Build a TSN, TSM or ACTION video classifier.

    Args:
        arch: ``"tsn"`` (nothing inserted), ``"tsm"`` (fixed temporal shift) or ``"action"``.
        backbone: ``"resnet50"``, ``"mobilenetv2"``, ``"bninception"`` (also ``"resnet18"``,
            ``"resnet34"``, ``"resnet101"``).
        num_classes: size of the output layer.
        num_segments: frames per clip, T (8 in the paper).
        paths: ACTION only: a non-empty subset of ``("ste", "ce", "me")``; default all three.
        shift_div: 1/shift_div of the channels shift each way (TSM and ACTION's initial shift).
        dropout: dropout before the linear head (0.5 in the paper).
        pretrained: ``None`` (random init), ``"imagenet"`` (backbone weights from the torch hub
            cache; never downloaded), or the path of a state-dict file: ImageNet weights of the
            backbone (classifier keys are dropped) or a whole model of this configuration.
        stages: insert temporal blocks only in these stages (1..4); default all.
        every: insert at every ``every``-th point of a stage; default 1 (on top of the spec's
            every-second-block rule for ResNet-101).

    Returns:
        a ``VideoNet`` mapping ``(N, T, 3, H, W)`` to logits ``(N, num_classes)``.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; allowed: {list(ARCHS)}")
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; allowed: {list(BACKBONES)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if not isinstance(num_segments, int) or num_segments < 1:
        raise ValueError(f"num_segments must be a positive integer, got {num_segments!r}")
    if paths is None:
        paths = PATHS
    elif arch != "action":
        raise ValueError(f"paths applies to arch 'action' only, got arch {arch!r} with paths {paths!r}")
    paths = check_paths(paths)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")

    features, feature_dim = create_backbone(backbone)
    full_model_file = None
    if pretrained == "imagenet":
        load_backbone_state(features, read_state_dict(imagenet_file(backbone)), f"ImageNet ({backbone})")
    elif pretrained is not None:
        state = read_state_dict(pretrained)
        if any(k.startswith("backbone.") for k in state):
            full_model_file = state  # a whole video model: loaded after assembly
        else:
            load_backbone_state(features, state, str(pretrained))

    names: list[str] = []
    factory = TEMPORAL_BLOCKS[arch]
    if factory is not None:
        points = insertion_points(backbone, features)  # ResNet-101: every second block already
        chosen = select_points(points, stages, 1 if every is None else every)
        names = insert_temporal(features, lambda c: factory(c, num_segments, shift_div, paths), chosen)

    model = VideoNet(
        features, feature_dim, num_classes, num_segments, dropout,
        arch=arch, backbone_name=backbone, temporal_names=names,
    )  # fmt: skip
    if full_model_file is not None:
        load_model_state(model, full_model_file, str(pretrained))
    return model


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its 4-D parameters and buffers (the 2-D convolutions' weights) in
    ``torch.channels_last`` memory format, in place; returns ``model``.

    What ``model.to(memory_format=torch.channels_last)`` does for TSN and TSM. That call fails on
    ACTION models ("required rank 4 tensor to use channels_last format"): it also converts 5-D
    tensors, and STE's ``Conv3d`` weight is one. Here tensors of other ranks are left as they are.
    """

    def convert(t: torch.Tensor) -> torch.Tensor:
        return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

    return model._apply(convert)


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a whole-model state dict; a mismatch names the keys and shapes that differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if own[k].shape != state[k].shape
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source} was saved from a different model: {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    model.load_state_dict(state)
