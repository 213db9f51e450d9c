"""The ACTION module written the way the authors' release computes it, for side-by-side timing.

Same math as ``actionlib.ops.ActionModule`` (spec section 2), but: the learnable shift permutes the
whole tensor to ``(N*H*W, C, T)``, runs ``nn.Conv1d`` and permutes back; each path writes its own
full-size ``xs * gate + xs``; ME takes the temporal difference at full resolution; autograd does
the backward pass. ``ReleaseStyleTSM`` is TSM's shift the TSM release's way. Used only by
``module_speed.py``.
"""

import torch
import torch.nn.functional as F
from torch import nn


class ReleaseStyleAction(nn.Module):
    def __init__(self, channels: int, num_segments: int, shift_div: int = 8) -> None:
        super().__init__()
        c, r, self.t = channels, channels // 16, num_segments
        self.shift = nn.Conv1d(c, c, 3, padding=1, groups=c, bias=False)
        fold = c // shift_div
        with torch.no_grad():
            self.shift.weight.zero_()
            self.shift.weight[:fold, 0, 2] = 1
            self.shift.weight[fold : 2 * fold, 0, 0] = 1
            self.shift.weight[2 * fold :, 0, 1] = 1
        self.p1_conv1 = nn.Conv3d(1, 1, 3, padding=1, bias=False)
        self.p2_squeeze = nn.Conv2d(c, r, 1, bias=False)
        self.p2_conv1 = nn.Conv1d(r, r, 3, padding=1, bias=False)
        self.p2_expand = nn.Conv2d(r, c, 1, bias=False)
        self.p3_squeeze = nn.Conv2d(c, r, 1, bias=False)
        self.p3_bn1 = nn.BatchNorm2d(r)
        self.p3_conv1 = nn.Conv2d(r, r, 3, padding=1, groups=r, bias=False)
        self.p3_expand = nn.Conv2d(r, c, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        t, n = self.t, nt // self.t
        # shift: (N, T, C, H, W) -> (N*H*W, C, T) -> conv1d -> back
        xs = x.view(n, t, c, h, w).permute(0, 3, 4, 2, 1).contiguous().view(n * h * w, c, t)
        xs = self.shift(xs)
        xs = xs.view(n, h, w, c, t).permute(0, 4, 3, 1, 2).contiguous().view(nt, c, h, w)
        # STE
        p1 = xs.mean(1, keepdim=True).view(n, t, 1, h, w).transpose(2, 1).contiguous()
        p1 = self.p1_conv1(p1).transpose(2, 1).contiguous().view(nt, 1, h, w)
        y1 = xs * torch.sigmoid(p1) + xs
        # CE
        p2 = self.p2_squeeze(F.adaptive_avg_pool2d(xs, 1))
        r = p2.shape[1]
        p2 = p2.view(n, t, r).transpose(2, 1).contiguous()
        p2 = F.relu(self.p2_conv1(p2)).transpose(2, 1).contiguous().view(nt, r, 1, 1)
        y2 = xs * torch.sigmoid(self.p2_expand(p2)) + xs
        # ME
        f = self.p3_bn1(self.p3_squeeze(xs))
        f5 = f.view(n, t, r, h, w)
        g5 = self.p3_conv1(f).view(n, t, r, h, w)
        d = F.pad(g5[:, 1:] - f5[:, :-1], (0, 0, 0, 0, 0, 0, 0, 1))
        p3 = F.adaptive_avg_pool2d(d.view(nt, r, h, w), 1)
        y3 = xs * torch.sigmoid(self.p3_expand(p3)) + xs
        return y1 + y2 + y3


class ReleaseStyleTSM(nn.Module):
    """TSM's shift as the TSM release writes it (zeros, then slice copies; autograd's backward)."""

    def __init__(self, channels: int, num_segments: int, shift_div: int = 8) -> None:
        super().__init__()
        self.t, self.fold = num_segments, channels // shift_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nt, c, h, w = x.shape
        fold, x5 = self.fold, x.view(nt // self.t, self.t, c, h, w)
        out = torch.zeros_like(x5)
        out[:, :-1, :fold] = x5[:, 1:, :fold]  # frame t takes t+1
        out[:, 1:, fold : 2 * fold] = x5[:, :-1, fold : 2 * fold]  # frame t takes t-1
        out[:, :, 2 * fold :] = x5[:, :, 2 * fold :]
        return out.view(nt, c, h, w)
