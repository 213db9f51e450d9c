"""BN-Inception (Ioffe & Szegedy, 2015), with the layer names of the common PyTorch port.

The port (TSN's ``tf_model_zoo`` / Cadene's ``pretrainedmodels``) is a flat module whose
parameters are named ``conv1_7x7_s2``, ``inception_3a_1x1_bn`` and so on; we keep exactly those
names so that its ImageNet state dict loads unchanged. The forward pass is spelled out block
by block from the table below. Expected input: BGR in [0, 255] minus mean (104, 117, 128),
height and width multiples of 32.

Temporal modules go *between* blocks on the main path (spec section 3): ``self.temporal`` maps
an insertion point (``"conv2"``, ``"3a"`` ... ``"5a"``) to a module applied to that block's output.
"""

from __future__ import annotations

import torch
from torch import nn

# name: (in_channels, 1x1, 3x3 reduce, 3x3, double 3x3 reduce, double 3x3, pool kind, pool proj)
# A block with stride 2 has no 1x1 branch and no pool projection (1x1 = 0, proj = 0).
INCEPTION_BLOCKS: dict[str, tuple[int, int, int, int, int, int, str, int]] = {
    "3a": (192, 64, 64, 64, 64, 96, "avg", 32),
    "3b": (256, 64, 64, 96, 64, 96, "avg", 64),
    "3c": (320, 0, 128, 160, 64, 96, "max", 0),
    "4a": (576, 224, 64, 96, 96, 128, "avg", 128),
    "4b": (576, 192, 96, 128, 96, 128, "avg", 128),
    "4c": (576, 160, 128, 160, 128, 160, "avg", 128),
    "4d": (608, 96, 128, 192, 160, 192, "avg", 128),
    "4e": (608, 0, 128, 192, 192, 256, "max", 0),
    "5a": (1056, 352, 192, 320, 160, 224, "avg", 128),
    "5b": (1024, 352, 192, 320, 192, 224, "max", 128),
}

# insertion points between blocks and the channels of the feature map there (spec section 3)
INSERTION_POINTS: dict[str, int] = {
    "conv2": 192,
    "3a": 256,
    "3b": 320,
    "3c": 576,
    "4a": 576,
    "4b": 576,
    "4c": 608,
    "4d": 608,
    "4e": 1056,
    "5a": 1024,
}

# stage (by output stride: 8 -> 2, 16 -> 3, 32 -> 4) of each insertion point
INSERTION_STAGES: dict[str, int] = {
    "conv2": 2, "3a": 2, "3b": 2,
    "3c": 3, "4a": 3, "4b": 3, "4c": 3, "4d": 3,
    "4e": 4, "5a": 4,
}  # fmt: skip

FEATURE_DIM = 1024


class BNInception(nn.Module):
    """BN-Inception feature extractor: ``(B, 3, H, W) -> (B, 1024, H/32, W/32)``.

    ``num_classes`` > 0 adds the port's ``last_linear`` classifier (global pool + linear);
    the video models use the features only.
    """

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self.conv1_7x7_s2 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(64)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2_3x3_reduce = nn.Conv2d(64, 64, kernel_size=1)
        self.conv2_3x3_reduce_bn = nn.BatchNorm2d(64)
        self.conv2_3x3 = nn.Conv2d(64, 192, kernel_size=3, padding=1)
        self.conv2_3x3_bn = nn.BatchNorm2d(192)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, (cin, c1, c3r, c3, cdr, cd, pool, proj) in INCEPTION_BLOCKS.items():
            stride = 2 if proj == 0 else 1
            p = f"inception_{name}_"
            if c1:
                self._conv_bn(p + "1x1", cin, c1, 1)
            self._conv_bn(p + "3x3_reduce", cin, c3r, 1)
            self._conv_bn(p + "3x3", c3r, c3, 3, stride)
            self._conv_bn(p + "double_3x3_reduce", cin, cdr, 1)
            self._conv_bn(p + "double_3x3_1", cdr, cd, 3)
            self._conv_bn(p + "double_3x3_2", cd, cd, 3, stride)
            if pool == "avg":
                setattr(self, p + "pool", nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True))
            elif stride == 2:
                setattr(self, p + "pool", nn.MaxPool2d(3, stride=2, ceil_mode=True))
            else:
                setattr(self, p + "pool", nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True))
            if proj:
                self._conv_bn(p + "pool_proj", cin, proj, 1)
        self.relu = nn.ReLU(inplace=True)
        self.temporal = nn.ModuleDict()
        self.last_linear = nn.Linear(FEATURE_DIM, num_classes) if num_classes > 0 else None

    def _conv_bn(self, name: str, cin: int, cout: int, k: int, stride: int = 1) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=k // 2))
        setattr(self, name + "_bn", nn.BatchNorm2d(cout))

    def _cbr(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """conv -> BN -> ReLU of the layer called ``name``."""
        return self.relu(getattr(self, name + "_bn")(getattr(self, name)(x)))

    def _temporal(self, point: str, x: torch.Tensor) -> torch.Tensor:
        return self.temporal[point](x) if point in self.temporal else x

    def _inception(self, name: str, x: torch.Tensor) -> torch.Tensor:
        p = f"inception_{name}_"
        branches = []
        if hasattr(self, p + "1x1"):
            branches.append(self._cbr(p + "1x1", x))
        branches.append(self._cbr(p + "3x3", self._cbr(p + "3x3_reduce", x)))
        d = self._cbr(p + "double_3x3_reduce", x)
        branches.append(self._cbr(p + "double_3x3_2", self._cbr(p + "double_3x3_1", d)))
        pooled = getattr(self, p + "pool")(x)
        branches.append(self._cbr(p + "pool_proj", pooled) if hasattr(self, p + "pool_proj") else pooled)
        return torch.cat(branches, dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"BN-Inception needs height and width that are multiples of 32, got {h}x{w}")
        x = self.pool1_3x3_s2(self._cbr("conv1_7x7_s2", x))  # (B, 64, H/4, W/4)
        x = self._cbr("conv2_3x3", self._cbr("conv2_3x3_reduce", x))  # (B, 192, H/4, W/4)
        x = self.pool2_3x3_s2(x)  # (B, 192, H/8, W/8)
        x = self._temporal("conv2", x)
        for name in INCEPTION_BLOCKS:
            x = self._temporal(name, self._inception(name, x))
        return x  # (B, 1024, H/32, W/32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        if self.last_linear is None:
            return x
        return self.last_linear(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
