"""The fixed temporal shift of TSM (Lin, Gan, Han, ICCV 2019).

A feature map of a clip arrives as ``(N*T, C, H, W)``: the backbone sees frames, not clips.
1/``shift_div`` of the channels take the next frame's values, another 1/``shift_div`` the
previous frame's, the rest stay; zeros enter at the clip ends. No parameters, no arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn


def temporal_shift(x: torch.Tensor, num_segments: int, shift_div: int = 8) -> torch.Tensor:
    """Shift ``x`` of shape ``(N*T, C, H, W)`` along time; returns a new tensor of the same shape."""
    nt, c, h, w = x.shape
    n = nt // num_segments
    fold = c // shift_div
    x = x.view(n, num_segments, c, h, w)  # (N, T, C, H, W)
    out = torch.empty_like(x)
    # channels [0, fold): frame t takes frame t+1; the last frame gets zeros
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, -1:, :fold] = 0
    # channels [fold, 2*fold): frame t takes frame t-1; the first frame gets zeros
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]
    out[:, :1, fold : 2 * fold] = 0
    # the remaining channels stay where they are
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


class TemporalShift(nn.Module):
    """TSM's fixed shift as a module (no parameters)."""

    def __init__(self, channels: int, num_segments: int, shift_div: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.num_segments = num_segments
        self.shift_div = shift_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.num_segments, self.shift_div)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, shift_div={self.shift_div}"
