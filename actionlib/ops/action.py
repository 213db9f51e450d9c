"""The ACTION module (Wang, She, Smolic, CVPR 2021), spec section 2.

Input and output are feature maps of shape ``(N*T, C, H, W)``: the backbone runs on frames,
the module regroups them into clips of ``T = num_segments`` frames.

    xs  = LearnableShift(x)                       depthwise temporal conv, initialised as TSM
    y1  = xs * STE(xs) + xs                       spatio-temporal gate   (N*T, 1, H, W)
    y2  = xs * CE(xs)  + xs                       channel gate           (N*T, C, 1, 1)
    y3  = xs * ME(xs)  + xs                       motion gate            (N*T, C, 1, 1)
    out = y1 + y2 + y3 = xs * (3 + g1 + g2 + g3)

The sum is computed in the factored form on the right: one full-size product instead of three
full-size products and two sums, the same numbers up to float rounding. An ablation keeps a
subset of the paths: ``out = sum over chosen k of y_k = xs * (k + sum of chosen gates)``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from . import _fused, _kernel

PATHS = ("ste", "ce", "me")


def check_paths(paths: Iterable[str]) -> tuple[str, ...]:
    """Validate a subset of ``PATHS``; returns it in canonical order."""
    if isinstance(paths, str):
        paths = (paths,)
    paths = tuple(paths)
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        raise ValueError(f"unknown ACTION path(s) {unknown}; allowed: any non-empty subset of {list(PATHS)}")
    if not paths:
        raise ValueError(f"paths is empty; allowed: any non-empty subset of {list(PATHS)}")
    return tuple(p for p in PATHS if p in paths)


def _linear(z: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A bias-free 1x1 ``conv`` applied to pooled features ``(B, C_in)``, as one matrix product
    (same numbers and MACs as the convolution on ``(B, C_in, 1, 1)``, far less call overhead)."""
    return F.linear(z, conv.weight.view(conv.out_channels, conv.in_channels))


def _temporal_conv(z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``nn.Conv1d(r, r, 3, padding=1, bias=False)`` over the T axis of ``z`` ``(N, T, r)`` as one
    matrix product of the unfolded windows; returns ``(N*T, r)``."""
    n, t, r = z.shape
    windows = F.pad(z, (0, 0, 1, 1)).unfold(1, 3, 1)  # (N, T, r, 3): [n, t, i, k] = z[n, t+k-1, i]
    return F.linear(windows.reshape(n * t, r * 3), weight.reshape(weight.shape[0], r * 3))


def _tap_regions(size: int, like: torch.Tensor) -> torch.Tensor:
    """``(3, size)`` 0/1 rows: which input rows a 3-tap kernel with zero padding 1 reads at tap
    0 (offset -1: all but the last), 1 (all) and 2 (offset +1: all but the first)."""
    m = like.new_ones(3, size)
    m[0, -1] = 0
    m[2, 0] = 0
    return m


class LearnableShift(nn.Module):
    """Depthwise temporal convolution, kernel 3, zero padding 1, no bias (spec step 0).

    Holds the weight of ``nn.Conv1d(C, C, 3, groups=C)`` (shape ``(C, 1, 3)``) but computes
    ``xs[t] = k0 * x[t-1] + k1 * x[t] + k2 * x[t+1]`` with three shifted multiply-adds on the
    ``(N, T, C, H, W)`` view, instead of permuting the whole tensor to ``(N*H*W, C, T)`` and
    back as the release does (see ``_fused.shift``). Initialised as the TSM shift: channels ``[0, fold)`` get
    ``(0, 0, 1)`` (frame t takes t+1), ``[fold, 2*fold)`` get ``(1, 0, 0)`` (t takes t-1),
    the others ``(0, 1, 0)``.
    """

    def __init__(self, channels: int, num_segments: int, shift_div: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.num_segments = num_segments
        self.shift_div = shift_div
        self.weight = nn.Parameter(torch.empty(channels, 1, 3))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fold = self.channels // self.shift_div
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:fold, 0, 2] = 1.0  # frame t takes frame t+1
            self.weight[fold : 2 * fold, 0, 0] = 1.0  # frame t takes frame t-1
            self.weight[2 * fold :, 0, 1] = 1.0  # identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standalone use (``ActionModule`` fuses the shift into its own pass)."""
        return _fused.shift(x.contiguous(), self.weight.view(self.channels, 3), self.num_segments)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, shift_div={self.shift_div}"


class ActionModule(nn.Module):
    """ACTION: learnable shift, then the chosen excitation paths (STE, CE, ME), spec section 2."""

    def __init__(
        self,
        channels: int,
        num_segments: int,
        shift_div: int = 8,
        paths: Iterable[str] = PATHS,
    ) -> None:
        super().__init__()
        self.paths = check_paths(paths)
        self.channels = channels
        self.num_segments = num_segments
        r = max(1, channels // 16)
        self.reduced_channels = r
        self.shift = LearnableShift(channels, num_segments, shift_div)
        if "ste" in self.paths:
            self.ste_conv = nn.Conv3d(1, 1, kernel_size=3, padding=1, bias=False)
        if "ce" in self.paths:
            # 1x1 convolutions of pooled (N*T, C, 1, 1) maps; run as matrix products (``_linear``)
            self.ce_squeeze = nn.Conv2d(channels, r, kernel_size=1, bias=False)
            self.ce_temporal = nn.Conv1d(r, r, kernel_size=3, padding=1, bias=False)
            self.ce_expand = nn.Conv2d(r, channels, kernel_size=1, bias=False)
        if "me" in self.paths:
            self.me_squeeze = nn.Conv2d(channels, r, kernel_size=1, bias=False)
            self.me_bn = nn.BatchNorm2d(r)
            self.me_conv = nn.Conv2d(r, r, kernel_size=3, padding=1, groups=r, bias=False)
            self.me_expand = nn.Conv2d(r, channels, kernel_size=1, bias=False)

    # --- the three gates, each from what ShiftPoolSqueeze extracted from xs -------------------

    def ste_gate(self, cmean: torch.Tensor) -> torch.Tensor:
        """Spatio-temporal gate ``(N*T, 1, H, W)`` from the channel mean of xs ``(N*T, 1, H, W)``."""
        nt, _, h, w = cmean.shape
        t = self.num_segments
        # one channel: (N*T, 1, H, W) and (N, 1, T, H, W) are the same memory, no transpose needed
        s = self.ste_conv(cmean.view(nt // t, 1, t, h, w))  # 3x3x3, 1 -> 1 channel
        return torch.sigmoid(s.reshape(nt, 1, h, w))

    def ce_gate(self, smean: torch.Tensor) -> torch.Tensor:
        """Channel gate ``(N*T, C, 1, 1)`` from the spatial mean of xs ``(N*T, C, 1, 1)``."""
        nt, c = smean.shape[:2]
        t, r = self.num_segments, self.reduced_channels
        z = _linear(smean.view(nt, c), self.ce_squeeze)  # (N*T, r)
        z = _temporal_conv(z.view(nt // t, t, r), self.ce_temporal.weight)  # (N*T, r)
        return torch.sigmoid(_linear(F.relu(z), self.ce_expand)).view(nt, c, 1, 1)

    def me_gate(self, squeezed: torch.Tensor) -> torch.Tensor:
        """Motion gate ``(N*T, C, 1, 1)`` from ``me_squeeze(xs)`` ``(N*T, r, H, W)``.

        ``d[t] = g[t+1] - f[t]`` is only ever averaged over space, and the average commutes with
        the difference, so the difference is taken on the pooled ``(N, T, r)`` tensors.
        """
        nt, _, h, w = squeezed.shape
        t, r = self.num_segments, self.reduced_channels
        f = self.me_bn(squeezed)  # (N*T, r, H, W)
        # The spatial mean of the depthwise 3x3 conv (zero padding) of f, without the conv: tap
        # (a, b) reads the rows rows[a] and columns cols[b] of f, so sum_yx conv(f) =
        # sum_ab w[a, b] * V[a, b] with V = rows @ f @ cols^T, the 3 x 3 region sums of f.
        rows, cols = _tap_regions(h, f), _tap_regions(w, f)  # (3, H), (3, W)
        v = torch.matmul(torch.matmul(rows, f), cols.t()).view(nt, r, 9)  # (N*T, r, 9)
        f_mean = v[:, :, 4].view(nt // t, t, r) / (h * w)  # V[1, 1] sums all of f  (N, T, r)
        g_mean = (v * self.me_conv.weight.view(1, r, 9)).sum(2).view(nt // t, t, r) / (h * w)
        d = F.pad(g_mean[:, 1:] - f_mean[:, :-1], (0, 0, 0, 1))  # (N, T, r), d[T-1] = 0
        return torch.sigmoid(_linear(d.reshape(nt, r), self.me_expand)).view(nt, self.channels, 1, 1)

    def relu_input_(self, z: torch.Tensor) -> torch.Tensor:
        """``torch.relu_(z)``, where the result is this module's next input: the ReLU that closes
        the residual block before it (``backbones.link_blocks``). In inference through the kernel
        the same pass over ``z`` takes the sums this module's first pass would read of it (its
        statistics are linear in its input); they go with ``z`` and the module's call skips that
        pass. The same numbers either way: the call takes the sums only while ``z`` and the shift's
        weights (part of the sums) are as they were, by their version counters (a change through
        ``.data`` is not seen, as autograd does not see it)."""
        first = None
        if not (torch.is_grad_enabled() or torch.compiler.is_compiling() or z.is_inference()):
            first = _kernel.relu_stats(self, z)  # (compile traces torch.relu_; is_inference breaks its graph)
        if first is None:
            return torch.relu_(z)
        k = self.shift._parameters["weight"]  # the one relu_stats took (the module's plan held)
        z._action_first_sums = (self, z._version, first, k, k._version)
        return z

    def _handed_sums(self, x: torch.Tensor) -> torch.Tensor | None:
        """The sums :meth:`relu_input_` took of ``x`` for this module, if ``x`` and the shift's
        weights are as they were then; else ``None``."""
        handed = getattr(x, "_action_first_sums", None)
        if handed is None:
            return None
        owner, version, first, k, k_version = handed
        if owner is not self or version != x._version:
            return None
        return first if self.shift._parameters.get("weight") is k and k._version == k_version else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_grad_enabled():  # inference: the kernel's call, its arguments kept
            out = _kernel.infer(self, x, self._handed_sums(x))
            if out is not None:
                return out
        t = self.num_segments
        if x.dim() != 4 or x.shape[0] % t:
            raise ValueError(f"ActionModule expects (N*T, C, H, W) with T={t}, got {tuple(x.shape)}")
        x = _fused.dense(x)
        out = _kernel.action(self, x)  # the compiled kernel, where it applies (NCHW or NHWC)
        if out is not None:
            return out
        k = self.shift.weight.view(self.channels, 3)
        w_me = self.me_squeeze.weight if "me" in self.paths else None
        xs, cmean, smean, squeezed = _fused.ShiftPoolSqueeze.apply(
            x, k, w_me, t, "ste" in self.paths, "ce" in self.paths
        )
        gate_c = x.new_full((1, 1, 1, 1), float(len(self.paths)))  # one "+ xs" per path
        if "ce" in self.paths:
            gate_c = gate_c + self.ce_gate(smean)
        if "me" in self.paths:
            gate_c = gate_c + self.me_gate(squeezed)
        gate_s = self.ste_gate(cmean) if "ste" in self.paths else None
        return _fused.Excite.apply(xs, gate_c, gate_s, x, k, t)

    def uncounted_macs(self, x: torch.Tensor) -> int:
        """What a FLOP counter misses of the module as the release computes it, so that counts
        compare with spec section 4: the learnable shift as a ``Conv1d`` (3 multiply-adds per
        element; here element-wise ops, which counters skip), and for ME the depthwise 3x3 conv
        (9 per element of the squeezed map) less the two small region-sum products counted in
        its place (``3*H*W + 9*W`` per map)."""
        nt, _, h, w = x.shape
        me = nt * self.reduced_channels * (9 * h * w - 3 * h * w - 9 * w) if "me" in self.paths else 0
        return 3 * x.numel() + me

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_segments={self.num_segments}, paths={self.paths}"
