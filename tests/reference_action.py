"""A slow, literal implementation of spec section 2 (ACTION module), written from the spec only.

Loops over time and kernel offsets, plain tensor ops, no reshapes borrowed from the package.
Takes the parameters as plain tensors so it can be fed the weights of any implementation.
"""

import torch


def _sigmoid(z):
    return 1.0 / (1.0 + torch.exp(-z))


def reference_action(x, T, p, paths=("ste", "ce", "me"), bn_eps=1e-5):
    """x: (N*T, C, H, W). p: dict of parameter tensors:
    shift (C, 3); ste (3, 3, 3); ce_sq (r, C); ce_t (r, r, 3); ce_ex (C, r);
    me_sq (r, C); bn_w (r,), bn_b (r,); me_dw (r, 3, 3); me_ex (C, r).
    BatchNorm uses batch statistics (training mode)."""
    NT, C, H, W = x.shape
    N = NT // T
    xv = x.reshape(N, T, C, H, W)

    # step 0: depthwise temporal conv, kernel 3, zero padding 1: xs[t] = sum_j k[c, j] * x[t + j - 1]
    xs = torch.zeros_like(xv)
    for t in range(T):
        for j in range(3):
            s = t + j - 1
            if 0 <= s < T:
                xs[:, t] = xs[:, t] + p["shift"][:, j].reshape(1, C, 1, 1) * xv[:, s]

    ys = []
    # step 1: STE
    if "ste" in paths:
        m = xs.mean(dim=2)  # (N, T, H, W) channel average
        pad = torch.zeros(N, T + 2, H + 2, W + 2, dtype=x.dtype)
        pad[:, 1:-1, 1:-1, 1:-1] = m
        conv = torch.zeros(N, T, H, W, dtype=x.dtype)
        for a in range(3):
            for b in range(3):
                for c in range(3):
                    conv = conv + p["ste"][a, b, c] * pad[:, a : a + T, b : b + H, c : c + W]
        gate1 = _sigmoid(conv).reshape(N, T, 1, H, W)
        ys.append(xs * gate1 + xs)

    # step 2: CE
    if "ce" in paths:
        pooled = xs.mean(dim=(3, 4))  # (N, T, C)
        z = pooled @ p["ce_sq"].T  # (N, T, r)
        r = z.shape[-1]
        zp = torch.zeros(N, T + 2, r, dtype=x.dtype)
        zp[:, 1:-1] = z
        z2 = torch.zeros(N, T, r, dtype=x.dtype)
        for j in range(3):  # out[t, o] = sum_i sum_j w[o, i, j] * z[t + j - 1, i]
            z2 = z2 + zp[:, j : j + T] @ p["ce_t"][:, :, j].T
        z2 = torch.clamp(z2, min=0)
        gate2 = _sigmoid(z2 @ p["ce_ex"].T).reshape(N, T, C, 1, 1)
        ys.append(xs * gate2 + xs)

    # step 3: ME
    if "me" in paths:
        f = torch.einsum("ntchw,rc->ntrhw", xs, p["me_sq"])  # (N, T, r, H, W)
        mean = f.mean(dim=(0, 1, 3, 4), keepdim=True)
        var = ((f - mean) ** 2).mean(dim=(0, 1, 3, 4), keepdim=True)
        r = f.shape[2]
        f = (f - mean) / torch.sqrt(var + bn_eps) * p["bn_w"].reshape(1, 1, r, 1, 1) + p["bn_b"].reshape(1, 1, r, 1, 1)
        fp = torch.zeros(N, T, r, H + 2, W + 2, dtype=x.dtype)
        fp[..., 1:-1, 1:-1] = f
        g = torch.zeros_like(f)
        for a in range(3):
            for b in range(3):
                g = g + p["me_dw"][:, a, b].reshape(1, 1, r, 1, 1) * fp[..., a : a + H, b : b + W]
        d = torch.zeros_like(f)
        for t in range(T - 1):
            d[:, t] = g[:, t + 1] - f[:, t]
        dm = d.mean(dim=(3, 4))  # (N, T, r)
        gate3 = _sigmoid(dm @ p["me_ex"].T).reshape(N, T, C, 1, 1)
        ys.append(xs * gate3 + xs)

    out = ys[0]
    for y in ys[1:]:
        out = out + y
    return out.reshape(NT, C, H, W)


def params_of(module):
    """The parameters of an ``actionlib.ops.ActionModule`` in the reference's layout."""
    C, r = module.channels, module.reduced_channels
    p = {"shift": module.shift.weight.reshape(C, 3)}
    if "ste" in module.paths:
        p["ste"] = module.ste_conv.weight.reshape(3, 3, 3)
    if "ce" in module.paths:
        p["ce_sq"] = module.ce_squeeze.weight.reshape(r, C)
        p["ce_t"] = module.ce_temporal.weight  # (r, r, 3)
        p["ce_ex"] = module.ce_expand.weight.reshape(C, r)
    if "me" in module.paths:
        p["me_sq"] = module.me_squeeze.weight.reshape(r, C)
        p["bn_w"], p["bn_b"] = module.me_bn.weight, module.me_bn.bias
        p["me_dw"] = module.me_conv.weight.reshape(r, 3, 3)
        p["me_ex"] = module.me_expand.weight.reshape(C, r)
    return p
