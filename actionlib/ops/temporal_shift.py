"""The fixed temporal shift of TSM (Lin, Gan, Han, ICCV 2019).

A feature map of a clip arrives as ``(N*T, C, H, W)``: the backbone sees frames, not clips.
1/``shift_div`` of the channels take the next frame's values, another 1/``shift_div`` the
previous frame's, the rest stay; zeros enter at the clip ends. No parameters, no arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn

from ._fused import dense, layout


def _shift_copy(x: torch.Tensor, num_segments: int, fold: int, ahead: slice, behind: slice) -> torch.Tensor:
    """The copies of the shift: channels ``ahead`` take the next frame, channels ``behind`` the
    previous one, zeros at the clip ends, the rest stay. ``x`` is ``(N*T, C, H, W)``, NCHW or
    channels_last (kept)."""
    nt, c, h, w = x.shape
    x5 = x.view(nt // num_segments, num_segments, c, h, w)  # (N, T, C, H, W)
    out = torch.empty_like(x)
    o5 = out.view(x5.shape)
    o5[:, :-1, ahead] = x5[:, 1:, ahead]  # frame t takes frame t+1; the last frame gets zeros
    o5[:, -1:, ahead] = 0
    o5[:, 1:, behind] = x5[:, :-1, behind]  # frame t takes frame t-1; the first frame gets zeros
    o5[:, :1, behind] = 0
    o5[:, :, 2 * fold :] = x5[:, :, 2 * fold :]  # the remaining channels stay where they are
    return out


class _Shift(torch.autograd.Function):
    """The shift with its adjoint as the backward pass: the same copies in the other direction
    (a channel that took the next frame hands its gradient back to the next frame). Autograd's
    own backward of the five slice assignments cloned the full gradient once per assignment and
    summed three zero-padded slices."""

    @staticmethod
    def forward(ctx, x, num_segments: int, fold: int):
        ctx.num_segments, ctx.fold = num_segments, fold
        ctx.layout = layout(x)
        return _shift_copy(x, num_segments, fold, slice(0, fold), slice(fold, 2 * fold))

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous(memory_format=ctx.layout)  # x's layout (g may arrive expanded)
        t, fold = ctx.num_segments, ctx.fold  # the two folds' directions swapped
        return _shift_copy(g, t, fold, slice(fold, 2 * fold), slice(0, fold)), None, None


def temporal_shift(x: torch.Tensor, num_segments: int, shift_div: int = 8) -> torch.Tensor:
    """Shift ``x`` of shape ``(N*T, C, H, W)`` along time; returns a new tensor of the same shape
    (and memory format). Channels ``[0, C/shift_div)`` take the next frame's values,
    ``[C/shift_div, 2C/shift_div)`` the previous frame's, zeros at the clip ends (TSM's)."""
    if x.dim() != 4 or x.shape[0] % num_segments:
        raise ValueError(f"temporal_shift expects (N*T, C, H, W) with T={num_segments}, got {tuple(x.shape)}")
    return _Shift.apply(dense(x), num_segments, x.shape[1] // shift_div)


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
