"""The ACTION module and the TSM shift against spec sections 0-2, computed literally."""

import itertools

import pytest
import torch

import actionlib
from actionlib.ops import PATHS, ActionModule, LearnableShift, TemporalShift, temporal_shift
from reference_action import params_of, reference_action

ALL_SUBSETS = [c for k in (1, 2, 3) for c in itertools.combinations(PATHS, k)]


def randomise(module):
    """Random weights everywhere (the TSM-like initial shift would hide shift bugs)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("paths", ALL_SUBSETS, ids=lambda p: "+".join(p))
def test_action_matches_reference_float64(paths, layout):
    """The PyTorch path (float64 does not take the CPU kernel) against the spec; channels_last
    input gives channels_last output and input gradient (no conversions on GPUs)."""
    T, N, C, H, W = 4, 2, 32, 5, 6
    m = ActionModule(C, T, paths=paths).double()
    randomise(m)
    x = torch.randn(N * T, C, H, W, dtype=torch.float64)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = x.contiguous(memory_format=fmt).requires_grad_(True)
    x_ref = x.detach().contiguous().requires_grad_(True)
    out = m(x)
    ref = reference_action(x_ref, T, params_of(m), paths)
    assert out.shape == (N * T, C, H, W)
    assert out.is_contiguous(memory_format=fmt)
    assert rel_err(out, ref) <= 1e-5

    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, [x, *m.parameters()], g)
    grads_ref = torch.autograd.grad(ref, [x_ref, *m.parameters()], g)
    names = ["input"] + [n for n, _ in m.named_parameters()]
    for name, a, b in zip(names, grads, grads_ref):
        assert rel_err(a, b) <= 1e-5, name
    assert grads[0].is_contiguous(memory_format=fmt)


def test_action_matches_reference_float32():
    T, N, C, H, W = 8, 2, 64, 7, 7
    m = ActionModule(C, T)
    randomise(m)
    x = torch.randn(N * T, C, H, W, requires_grad=True)
    out = m(x)
    ref = reference_action(x, T, params_of(m))
    assert rel_err(out, ref) <= 1e-4
    g = torch.randn_like(out)
    ga = torch.autograd.grad(out, [x, m.shift.weight, m.me_squeeze.weight], g)
    gb = torch.autograd.grad(ref, [x, m.shift.weight, m.me_squeeze.weight], g)
    for a, b in zip(ga, gb):
        assert rel_err(a, b) <= 1e-4


def test_action_gradcheck():
    """Numerical gradients of the hand-written backward passes."""
    T, C = 3, 16
    m = ActionModule(C, T).double()
    randomise(m)
    x = torch.randn(2 * T, C, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: m(inp), (x,))


def test_shift_initialised_as_tsm_and_trainable():
    C, T = 32, 4
    m = ActionModule(C, T)
    k = m.shift.weight.detach().reshape(C, 3)
    fold = C // 8
    assert torch.equal(k[:fold], torch.tensor([[0.0, 0.0, 1.0]]).expand(fold, 3))
    assert torch.equal(k[fold : 2 * fold], torch.tensor([[1.0, 0.0, 0.0]]).expand(fold, 3))
    assert torch.equal(k[2 * fold :], torch.tensor([[0.0, 1.0, 0.0]]).expand(C - 2 * fold, 3))
    # the initial learnable shift is exactly the fixed TSM shift
    x = torch.randn(2 * T, C, 3, 3)
    assert torch.allclose(m.shift(x), temporal_shift(x, T, 8))
    # and it stays trainable
    assert m.shift.weight.requires_grad
    before = m.shift.weight.detach().clone()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    m(torch.randn(2 * T, C, 3, 3)).square().mean().backward()
    opt.step()
    assert not torch.equal(before, m.shift.weight.detach())


def test_learnable_shift_equals_depthwise_conv1d():
    C, T, N, H, W = 12, 5, 2, 3, 4
    m = LearnableShift(C, T)
    with torch.no_grad():
        m.weight.normal_()
    x = torch.randn(N * T, C, H, W)
    # the release's formulation: (N*H*W, C, T) through Conv1d(C, C, 3, padding=1, groups=C)
    seq = x.view(N, T, C, H, W).permute(0, 3, 4, 2, 1).reshape(N * H * W, C, T)
    ref = torch.nn.functional.conv1d(seq, m.weight, padding=1, groups=C)
    ref = ref.view(N, H, W, C, T).permute(0, 4, 3, 1, 2).reshape(N * T, C, H, W)
    assert torch.allclose(m(x), ref, atol=1e-6)


def test_tsm_shift_values():
    T, C = 4, 16
    x = torch.arange(2 * T, dtype=torch.float32).view(2 * T, 1, 1, 1).expand(2 * T, C, 2, 2).contiguous()
    out = temporal_shift(x, T, 8).view(2, T, C, 2, 2)[..., 0, 0]  # (N, T, C) frame numbers
    frames = torch.arange(2 * T, dtype=torch.float32).view(2, T)
    # channels [0, 2): next frame, zero at the end
    assert torch.equal(out[:, :-1, 0], frames[:, 1:]) and torch.all(out[:, -1, :2] == 0)
    # channels [2, 4): previous frame, zero at the start
    assert torch.equal(out[:, 1:, 2], frames[:, :-1]) and torch.all(out[:, 0, 2:4] == 0)
    # the rest untouched
    assert torch.equal(out[:, :, 4:], frames.unsqueeze(-1).expand(2, T, C - 4))


def release_tsm_shift(x, t, shift_div=8):
    """The TSM release's shift (``ops/temporal_shift.py``: zeros, then slice copies), autograd's
    backward."""
    nt, c, h, w = x.shape
    fold = c // shift_div
    x5 = x.view(nt // t, t, c, h, w)
    out = torch.zeros_like(x5)
    out[:, :-1, :fold] = x5[:, 1:, :fold]
    out[:, 1:, fold : 2 * fold] = x5[:, :-1, fold : 2 * fold]
    out[:, :, 2 * fold :] = x5[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_tsm_shift_equals_release_with_gradient(layout):
    """Our shift (its backward the reverse copies) gives the release's output and input gradient
    exactly, in the input's layout; gradcheck in float64."""
    T, C = 4, 24
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    x = torch.randn(2 * T, C, 3, 5).contiguous(memory_format=fmt)
    g = torch.randn(2 * T, C, 3, 5)
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    out, ref = temporal_shift(xs[0], T, 8), release_tsm_shift(xs[1], T, 8)
    assert torch.equal(out, ref) and out.is_contiguous(memory_format=fmt)
    out.backward(g)
    ref.backward(g)
    assert torch.equal(xs[0].grad, xs[1].grad) and xs[0].grad.is_contiguous(memory_format=fmt)
    x64 = torch.randn(2 * T, 16, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: temporal_shift(a, T, 8), (x64,))
    with pytest.raises(ValueError, match="T=4"):
        temporal_shift(torch.randn(6, C, 3, 3), T)


def test_tsm_shift_is_fixed():
    assert list(TemporalShift(64, 8).parameters()) == []


@pytest.mark.parametrize("bad", [[], ["ste", "motion"], ["xx"]])
def test_bad_paths(bad):
    with pytest.raises(ValueError, match="allowed"):
        ActionModule(32, 4, paths=bad)


def test_module_rejects_batch_not_divisible():
    with pytest.raises(ValueError, match="T=4"):
        ActionModule(32, 4)(torch.randn(6, 32, 3, 3))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("paths", [("me",), PATHS], ids=["me", "all"])
def test_backward_under_autocast(paths, layout):
    """Under bf16 autocast (the training engine's default on GPUs) ME's squeeze runs in bf16 and
    the rest in float32: the backward pass mixed the two in one in-place product and failed. The
    gradients now have their parameters' dtypes and follow the float32 ones to bf16 precision."""
    torch.manual_seed(0)
    m = ActionModule(32, 4, paths=paths)
    x = torch.randn(8, 32, 6, 6)
    if layout == "channels_last":  # the training engine's default on GPUs: bf16 + channels_last
        x = x.contiguous(memory_format=torch.channels_last)
    grads = {}
    for mode in ("fp32", "bf16"):
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "bf16"):
            out = m(x)
        out.float().square().sum().backward()
        grads[mode] = {n: p.grad.clone() for n, p in m.named_parameters()}
    for name, p in m.named_parameters():
        g16, g32 = grads["bf16"][name], grads["fp32"][name]
        assert g16.dtype == p.dtype and torch.isfinite(g16).all(), name
        cos = torch.nn.functional.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)
        assert cos > 0.98, (name, cos.item())


def test_action_resnet_compiles_without_graph_breaks():
    """A whole ACTION ResNet (its blocks closing with the modules' ``relu_input_``) traces in one
    graph in inference and in training."""
    import torch._dynamo

    m = actionlib.build_model("action", "resnet18", 5, 4).eval()
    x = torch.randn(1, 4, 3, 32, 32)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            explained = torch._dynamo.explain(m)(x)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_compiles_without_graph_breaks(layout):
    """``torch.compile`` traces the module in one graph, in training and in inference (a query of
    the dispatch-mode stack before the is-compiling check split every model at each module), and
    the traced module computes what the eager one does, gradients included."""
    import torch._dynamo

    torch.manual_seed(0)
    m = ActionModule(16, 4)
    randomise(m)
    x = torch.randn(8, 16, 5, 6)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    for train in (True, False):
        m.train(train)
        with torch.set_grad_enabled(train):
            explained = torch._dynamo.explain(m)(x)
        assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    torch._dynamo.reset()
    m.eval()  # BatchNorm on running statistics: the same numbers in both runs
    compiled = torch.compile(m, backend="aot_eager")  # autograd traced; no code generation
    xs = [x.clone().requires_grad_(True) for _ in range(2)]
    outs = [m(xs[0]), compiled(xs[1])]
    g = torch.randn_like(outs[0])
    grads = [torch.autograd.grad(o, [xi, *m.parameters()], g) for o, xi in zip(outs, xs)]
    assert rel_err(outs[1], outs[0]) <= 1e-5
    for a, b in zip(grads[1], grads[0]):
        assert rel_err(a, b) <= 1e-5
    torch._dynamo.reset()
