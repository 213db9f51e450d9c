"""Hand-written autograd for the full-size, element-wise part of the ACTION module.

Everything that touches a full ``(N*T, C, H, W)`` tensor lives in two functions with their own
backward passes; the small gate networks (STE's 3-D conv, CE's MLP, ME's BN and depthwise conv)
stay in ordinary autograd. Why: left to autograd, the module writes a dozen full-size temporaries
per training step (broadcast products, expanded mean gradients, copies for in-place slices), and
keeps ``xs`` alive for the backward pass. Here the backward pass recomputes ``xs`` from ``x``
(three multiply-adds), reuses one scratch buffer, and only ``x`` is saved.

- ``ShiftPoolSqueeze(x, k, w_me)``: ``xs = shift(x; k)`` and what the gates need from it:
  its channel mean ``(N*T, 1, H, W)`` (STE), its spatial mean ``(N*T, C, 1, 1)`` (CE) and the
  1x1 convolution ``w_me * xs`` ``(N*T, r, H, W)`` (ME).
- ``Excite(xs, gate_c, gate_s, x, k)``: ``out = xs * gate_c + xs * gate_s`` with ``gate_c``
  ``(N*T, C, 1, 1)`` and ``gate_s`` ``(N*T, 1, H, W)``.

Both take NCHW or channels_last tensors and keep the layout (outputs and gradients): the
full-size passes work on the contiguous clip view of either (``clips``), so a channels_last
model (the training engine's default on GPUs) converts nothing here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def is_nhwc(x: torch.Tensor) -> bool:
    """``x`` ``(N*T, C, H, W)`` is channels_last (and not also plain contiguous)."""
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def dense(x: torch.Tensor) -> torch.Tensor:
    """``x`` as it is when NCHW-contiguous or channels_last, else made NCHW-contiguous: the two
    layouts the passes here (and the CPU kernel) read."""
    return x if x.is_contiguous(memory_format=torch.channels_last) else x.contiguous()


def layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format the passes below keep for ``x``'s outputs and gradients."""
    return torch.channels_last if is_nhwc(x) else torch.contiguous_format


def clips(a: torch.Tensor, t: int) -> torch.Tensor:
    """The contiguous 5-D view of a full-size tensor in either layout: ``(N, T, C, H, W)`` for
    NCHW, ``(N, T, H, W, C)`` for channels_last (its memory order). The per-channel weight then
    broadcasts as ``channel_shape(a)``; the full-size passes below work on these views, so a
    channels_last module stays channels_last without converting anything."""
    nt, c, h, w = a.shape
    if is_nhwc(a):
        return a.permute(0, 2, 3, 1).view(nt // t, t, h, w, c)
    return a.view(nt // t, t, c, h, w)


def channel_shape(a: torch.Tensor) -> tuple[int, ...]:
    """How a per-channel vector broadcasts against ``clips(a, t)``."""
    c = a.shape[1]
    return (1, 1, 1, 1, c) if is_nhwc(a) else (1, 1, c, 1, 1)


def _centre(src: torch.Tensor, k: torch.Tensor, t: int):
    """``k1 * src`` in a new tensor of ``src``'s layout, with the clip views of ``src`` and of it
    and ``k`` ``(C, 3)`` as ``(3, <broadcast shape>)``: the start of ``shift`` and its adjoint."""
    nt, c, h, w = src.shape
    kc = k.t().reshape(3, *channel_shape(src))
    src5 = clips(src, t)  # (N, T, C, H, W) or (N, T, H, W, C)
    out5 = torch.mul(src5, kc[1])  # contiguous, like src5
    if is_nhwc(src):
        return out5.view(nt, h, w, c).permute(0, 3, 1, 2), out5, src5, kc
    return out5.view(nt, c, h, w), out5, src5, kc


def shift(x: torch.Tensor, k: torch.Tensor, t: int) -> torch.Tensor:
    """``xs[t] = k0 * x[t-1] + k1 * x[t] + k2 * x[t+1]`` per channel; ``k`` is ``(C, 3)``."""
    out, out5, x5, kc = _centre(x, k, t)
    out5[:, 1:].addcmul_(x5[:, :-1], kc[0])  # + k0 * x[t-1]
    out5[:, :-1].addcmul_(x5[:, 1:], kc[2])  # + k2 * x[t+1]
    return out


def shift_transpose(g: torch.Tensor, k: torch.Tensor, t: int) -> torch.Tensor:
    """The adjoint of ``shift``: ``gx[s] = k1 * g[s] + k0 * g[s+1] + k2 * g[s-1]``."""
    gx, gx5, g5, kc = _centre(g, k, t)
    gx5[:, :-1].addcmul_(g5[:, 1:], kc[0])  # x[s] fed xs[s+1] through k0
    gx5[:, 1:].addcmul_(g5[:, :-1], kc[2])  # x[s] fed xs[s-1] through k2
    return gx


def shift_weight_grad(g: torch.Tensor, x: torch.Tensor, t: int, buf: torch.Tensor) -> torch.Tensor:
    """Gradient of ``shift`` w.r.t. ``k`` ``(C, 3)``; ``buf`` is full-size scratch space (all
    three in one layout)."""
    g5, x5, b5 = clips(g, t), clips(x, t), clips(buf, t)
    n, _, *rest = x5.shape
    part = b5.view(-1)[: b5[:, 1:].numel()].view(n, t - 1, *rest)  # contiguous out= (compile)
    dims = (0, 1, 2, 3) if is_nhwc(x) else (0, 1, 3, 4)  # all but the channel axis
    k0 = torch.mul(g5[:, 1:], x5[:, :-1], out=part).sum(dims)
    k1 = torch.mul(g5, x5, out=b5).sum(dims)
    k2 = torch.mul(g5[:, :-1], x5[:, 1:], out=part).sum(dims)
    return torch.stack((k0, k1, k2), dim=1)


class ShiftPoolSqueeze(torch.autograd.Function):
    """``(x, k, w_me) -> (xs, channel mean, spatial mean, w_me * xs)``; unused outputs are empty."""

    @staticmethod
    def forward(ctx, x, k, w_me, t: int, want_cmean: bool, want_smean: bool):
        xs = shift(x, k, t)
        empty = x.new_empty(0)
        cmean = xs.mean(dim=1, keepdim=True) if want_cmean else empty  # (N*T, 1, H, W)
        smean = xs.mean(dim=(2, 3), keepdim=True) if want_smean else empty  # (N*T, C, 1, 1)
        squeezed = F.conv2d(xs, w_me) if w_me is not None else empty  # (N*T, r, H, W)
        ctx.save_for_backward(x, k, w_me)
        ctx.t = t
        ctx.set_materialize_grads(False)
        return xs, cmean, smean, squeezed

    @staticmethod
    def backward(ctx, g_xs, g_cmean, g_smean, g_squeezed):
        x, k, w_me = ctx.saved_tensors
        t = ctx.t
        nt, c, h, w = x.shape
        nhwc, fmt = is_nhwc(x), layout(x)
        # total gradient w.r.t. xs, accumulated in one new buffer of x's layout (the incoming
        # one is not ours)
        g = torch.zeros_like(x) if g_xs is None else g_xs.contiguous(memory_format=fmt)
        owned = g is not g_xs
        for part, scale in ((g_cmean, 1.0 / c), (g_smean, 1.0 / (h * w))):  # means over C, over H*W
            if part is not None:
                g = g.add_(part, alpha=scale) if owned else torch.add(g, part, alpha=scale)
                owned = True
        if not owned:
            g = g.clone(memory_format=fmt)
        grad_w = None
        scratch = None  # a full-size buffer, reused for the shift-weight products
        if g_squeezed is not None and w_me is not None:
            r = w_me.shape[0]
            # under autocast the squeeze ran in lower precision: its gradient and weight are cast
            # to the dtype of xs's gradient, and the weight's gradient back to the weight's
            w2 = w_me.view(r, c).to(g.dtype)
            if ctx.needs_input_grad[2]:
                scratch = shift(x, k, t)  # xs, recomputed
            if nhwc:  # pixel-major matrices: g (N*T*H*W, C), the squeeze's gradient (N*T*H*W, r)
                gs = g_squeezed.permute(0, 2, 3, 1).reshape(-1, r).to(g.dtype)
                clips(g, t).view(-1, c).addmm_(gs, w2)  # 1x1 conv, input grad
                if scratch is not None:
                    grad_w = gs.t().mm(clips(scratch, t).view(-1, c).to(g.dtype))
            else:  # per frame: g (C, H*W), the squeeze's gradient (r, H*W)
                gs = g_squeezed.reshape(nt, r, h * w).to(g.dtype)
                g.view(nt, c, h * w).baddbmm_(w2.t().expand(nt, c, r), gs)  # 1x1 conv, input grad
                if scratch is not None:
                    grad_w = torch.bmm(gs, scratch.view(nt, c, h * w).transpose(1, 2).to(g.dtype)).sum(0)
            if grad_w is not None:
                grad_w = grad_w.view_as(w_me).to(w_me.dtype)
        grad_x = shift_transpose(g, k, t) if ctx.needs_input_grad[0] else None
        grad_k = None
        if ctx.needs_input_grad[1]:
            grad_k = shift_weight_grad(g, x, t, torch.empty_like(x) if scratch is None else scratch)
        return grad_x, grad_k, grad_w, None, None, None


class Excite(torch.autograd.Function):
    """``out = xs * gate_c + xs * gate_s``; the backward pass recomputes ``xs`` from ``x``."""

    @staticmethod
    def forward(ctx, xs, gate_c, gate_s, x, k, t: int):
        out = torch.mul(xs, gate_c)
        if gate_s is not None:
            out.addcmul_(xs, gate_s)
        ctx.save_for_backward(gate_c, gate_s, x, k)
        ctx.t = t
        return out

    @staticmethod
    def backward(ctx, g):
        gate_c, gate_s, x, k = ctx.saved_tensors
        g = g.contiguous(memory_format=layout(x))
        grad_xs = torch.mul(g, gate_c)
        if gate_s is not None:
            grad_xs.addcmul_(g, gate_s)
        grad_c = grad_s = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            prod = shift(x, k, ctx.t).mul_(g)  # g * xs, in the buffer of xs
            if ctx.needs_input_grad[1]:  # gate_c (N*T, C, 1, 1); a constant gate needs no grad
                grad_c = prod.sum(dim=(2, 3), keepdim=True)
            if gate_s is not None and ctx.needs_input_grad[2]:
                grad_s = prod.sum(dim=1, keepdim=True)
        return grad_xs, grad_c, grad_s, None, None, None
