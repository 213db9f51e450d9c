"""The compiled CPU kernel of the ACTION module (``actionlib.ops._kernel``) against the PyTorch-ops
path (itself checked against the spec in test_ops.py): outputs, every gradient and the BatchNorm
statistics, for every path subset, in training and evaluation, on map sizes that take each of the
kernel's matrix-product routes; and the conditions under which the PyTorch path is used."""

import copy
import itertools
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import actionlib
from actionlib import _cpp
from actionlib.ops import PATHS, ActionModule, _kernel
from reference_action import params_of, reference_action

ALL_SUBSETS = [c for k in (1, 2, 3) for c in itertools.combinations(PATHS, k)]
# (N, T, C, H, W): maps smaller and larger than the row length (64) where the input gradient's
# product turns around, a single row, one frame per clip, and C = 200 (r = 12): row blocks and
# 48-column strips of the matrix products with remainders, rows of 143 floats (8 full vectors + 15);
# and a single column
SHAPES = [
    (2, 4, 32, 5, 7),
    (1, 3, 48, 10, 12),
    (1, 2, 32, 20, 21),
    (2, 3, 16, 1, 6),
    (3, 1, 32, 3, 3),
    (1, 3, 200, 13, 11),
    (2, 3, 24, 6, 1),
]


@pytest.fixture
def kernel(monkeypatch):
    monkeypatch.setenv("ACTIONLIB_NO_CPP", "0")
    if _kernel.kernels() is None:
        pytest.skip("the ACTION kernel cannot be built here (no C++ compiler)")
    return _kernel


@pytest.fixture(scope="module")
def portable_build():
    """The kernel built without AVX-512 (``-mno-avx512f``): its plain loops, which a CPU without
    AVX-512 runs, are otherwise never executed on this project's machines."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACTIONLIB_NO_CPP", "0")
        mod = _cpp.load_extension("action_module_portable", _kernel._source(), _kernel._FUNCTIONS,
                                  extra_cflags=["-mno-avx512f"])  # fmt: skip
    if mod is None:
        pytest.skip("the ACTION kernel cannot be built here (no C++ compiler)")
    return mod


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def randomised(c, t, paths, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = ActionModule(c, t, paths=paths)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        if "me" in paths:
            m.me_bn.running_mean.normal_(generator=g)
            m.me_bn.running_var.uniform_(0.5, 2.0, generator=g)
    return m


def run(module, x, g, compiled, monkeypatch):
    """Forward + backward through one path; returns output, input grad, param grads, buffers."""
    monkeypatch.setenv("ACTIONLIB_NO_CPP", "0" if compiled else "1")
    assert _kernel.usable(module, x) == compiled
    x = x.clone().requires_grad_(True)
    out = module(x)
    out.backward(g)
    grads = {n: p.grad for n, p in module.named_parameters()}
    return out.detach(), x.grad, grads, {n: b.clone() for n, b in module.named_buffers()}


def assert_paths_agree(module, ref_module, x, g, monkeypatch):
    """``module`` through the kernel and its twin ``ref_module`` through the PyTorch path agree:
    output, input gradient, every parameter gradient and the buffers."""
    ref = run(ref_module, x, g, False, monkeypatch)
    got = run(module, x, g, True, monkeypatch)
    assert rel_err(got[0], ref[0]) < 1e-5
    assert rel_err(got[1], ref[1]) < 1e-5
    assert got[2].keys() == ref[2].keys()
    for name in ref[2]:
        assert (got[2][name] is None) == (ref[2][name] is None), name
        if ref[2][name] is not None:
            assert rel_err(got[2][name], ref[2][name]) < 1e-4, name
    for name in ref[3]:  # running statistics and the batch counter move alike
        assert torch.allclose(got[3][name].double(), ref[3][name].double(), rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("paths", ALL_SUBSETS, ids=lambda p: "+".join(p))
def test_kernel_equals_pytorch_path(kernel, monkeypatch, paths, shape, training, layout):
    """NCHW input, and channels_last input (the kernel's NHWC passes; the PyTorch path converts)."""
    assert_random_module_agrees(paths, shape, training, layout, monkeypatch)


def assert_random_module_agrees(paths, shape, training, layout, monkeypatch):
    """A randomised module with ``paths`` agrees on both paths for a random ``(N, T, C, H, W)``
    input in ``layout`` ("nchw" or "nhwc")."""
    n, t, c, h, w = shape
    ref_module = randomised(c, t, paths).train(training)
    module = copy.deepcopy(ref_module)
    x, g = torch.randn(n * t, c, h, w), torch.randn(n * t, c, h, w)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    assert_paths_agree(module, ref_module, x, g, monkeypatch)
    if not training:
        assert_inference_agrees(module, ref_module, x, monkeypatch)


def assert_inference_agrees(module, ref_module, x, monkeypatch):
    """In inference (no autograd; F1 then takes its statistics from x in both layouts) ``module``
    through the kernel and ``ref_module`` through the PyTorch path agree up to rounding."""
    with torch.no_grad():
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "0")
        out = module(x)
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "1")
        assert rel_err(out, ref_module(x)) < 1e-5


def test_channels_last_in_channels_last_out(kernel):
    """The NHWC forward returns NHWC, and its input gradient comes back NHWC as well."""
    module = randomised(32, 4, PATHS)
    x = torch.randn(8, 32, 5, 7).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    out = module(x)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    out.sum().backward()
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[2], SHAPES[5]], ids=lambda s: "x".join(map(str, s)))
def test_portable_kernel_equals_pytorch_path(kernel, portable_build, monkeypatch, shape, training, layout):
    """The same agreement for the build without AVX-512 (row reductions and matrix products in
    plain loops), all three paths on the shapes with remainders in every tiling."""
    monkeypatch.setattr(_kernel, "kernels", lambda: portable_build if _cpp.enabled() else None)
    assert_random_module_agrees(PATHS, shape, training, layout, monkeypatch)


def test_kernel_matches_spec_reference(kernel):
    """The compiled path against the spec, computed literally (float32)."""
    t, c = 4, 32
    m = randomised(c, t, PATHS)
    x = torch.randn(2 * t, c, 6, 5, requires_grad=True)
    assert _kernel.usable(m, x)
    out = m(x)
    ref = reference_action(x, t, params_of(m))
    assert rel_err(out, ref) <= 1e-4
    g = torch.randn_like(out)
    params = list(m.parameters())
    for a, b in zip(torch.autograd.grad(out, [x, *params], g), torch.autograd.grad(ref, [x, *params], g)):
        assert rel_err(a, b) <= 1e-4


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_kernel_is_deterministic(kernel, layout):
    """Reruns give the same numbers bitwise, and so do one and two threads (every reduction runs
    in an order that does not depend on how the work is split)."""
    m = randomised(64, 4, PATHS)
    x = torch.randn(8, 64, 20, 20)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (threads, threads, 1, 2):
            torch.set_num_threads(n)
            xi = x.clone().requires_grad_(True)
            out = m(xi)
            out.square().sum().backward()
            results.append((out.detach(), xi.grad, [p.grad.clone() for p in m.parameters()]))
            m.zero_grad()
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert torch.equal(results[0][0], other[0])
        assert torch.equal(results[0][1], other[1])
        assert all(torch.equal(a, b) for a, b in zip(results[0][2], other[2]))


def test_inference_saves_nothing_and_keeps_running_stats(kernel):
    m = randomised(32, 4, PATHS).eval()
    before = m.me_bn.running_mean.clone()
    with torch.no_grad():
        out = m(torch.randn(8, 32, 5, 5))
    assert out.grad_fn is None
    assert torch.equal(m.me_bn.running_mean, before)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("hw", [(28, 28), (7, 7), (4, 4)], ids=lambda s: "x".join(map(str, s)))
def test_evaluation_shortcut_on_offset_data(kernel, monkeypatch, hw, layout):
    """In evaluation ME is computed from the region sums of xs mapped through the squeeze, with
    BatchNorm's running mean subtracted after summing (and in NHWC the sums of xs are formed from
    sums of x): data far from zero mean and a running mean to match must not lose precision
    there (ResNet-like map sizes)."""
    c, t = 64, 4
    ref_module = randomised(c, t, ("me",)).eval()
    x = torch.randn(2 * t, c, *hw) + 4.0
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref_module.me_bn.running_mean.copy_(ref_module.me_squeeze(x).mean(dim=(0, 2, 3)))
    module = copy.deepcopy(ref_module)
    assert_paths_agree(module, ref_module, x, torch.randn_like(x), monkeypatch)
    assert_inference_agrees(module, ref_module, x, monkeypatch)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_saturated_gates(kernel, monkeypatch, training, layout):
    """CE's and ME's expand weights scaled up so that gate pre-activations reach several hundred
    (~20% of CE's beyond +-89 in training), where exp(-a) is subnormal or overflows: the kernel's
    sigmoid bounds exp's argument there (an untrained ResNet-50's deep gates are mostly such).
    Outputs and gradients as on the PyTorch path, all finite, and the gates really saturated."""
    t, c = 4, 48
    ref_module = randomised(c, t, PATHS).train(training)
    with torch.no_grad():
        for conv in (ref_module.ce_expand, ref_module.me_expand):
            conv.weight.mul_(100.0)
    module = copy.deepcopy(ref_module)
    x = torch.randn(2 * t, c, 6, 5) * 3.0
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        gates = ref_module.ce_gate(ref_module.shift(x).mean(dim=(2, 3), keepdim=True))
    assert (gates == 0).float().mean() > 0.2 and (gates == 1).float().mean() > 0.2
    assert_paths_agree(module, ref_module, x, torch.randn_like(x), monkeypatch)
    out = run(module, x, torch.randn_like(x), True, monkeypatch)
    assert all(torch.isfinite(v).all() for v in (out[0], out[1], *out[2].values()))
    if not training:
        assert_inference_agrees(module, ref_module, x, monkeypatch)


def test_pytorch_path_where_the_kernel_does_not_apply(kernel, monkeypatch):
    m = ActionModule(16, 2)
    x = torch.randn(4, 16, 3, 3)
    assert _kernel.usable(m, x)
    assert not _kernel.usable(m.double(), x.double())  # float64: the PyTorch path
    m.float()
    with FlopCounterMode(display=False):  # counters must see the PyTorch path's operators
        assert not _kernel.usable(m, x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _kernel.usable(m, x)
    with monkeypatch.context() as patch:  # inside torch.compile, which traces the PyTorch ops
        patch.setattr(torch.compiler, "is_compiling", lambda: True)
        assert not _kernel.usable(m, x)
    assert _kernel.usable(m, x)
    twin = copy.deepcopy(m)
    twin.me_bn.running_var = twin.me_bn.running_var.double()  # a buffer the kernel cannot take
    assert not _kernel.usable(twin, x)
    monkeypatch.setenv("ACTIONLIB_NO_CPP", "1")
    assert not _kernel.usable(m, x)
    assert _kernel.action(m, x) is None  # the module then takes the PyTorch path


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("paths", ALL_SUBSETS, ids=lambda p: "+".join(p))
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3], SHAPES[5], SHAPES[6]], ids=lambda s: "x".join(map(str, s)))
def test_inference_call_equals_general_path(kernel, monkeypatch, paths, layout, shape):
    """In inference the module calls the kernel with the arguments it kept (``_kernel.infer``):
    the same numbers, bitwise, as the general call (``_kernel.action``); and the PyTorch path's up
    to rounding (in inference, F1 takes its statistics from x in both layouts)."""
    n, t, c, h, w = shape
    m = randomised(c, t, paths).eval()
    x = torch.randn(n * t, c, h, w)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast = m(x)
        assert "_kernel_plan" in m.__dict__  # the kept arguments were used
        assert torch.equal(fast, _kernel.action(m, x))
        assert fast.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "1")
        assert rel_err(fast, m(x)) < 1e-5


def test_inference_call_follows_the_module(kernel, monkeypatch):
    """The kept arguments give way when the module changes: a replaced parameter or buffer, a
    changed dtype, BatchNorm in training or with another eps; and a deep copy uses its own."""
    torch.manual_seed(0)
    m = randomised(32, 4, PATHS).eval()
    x = torch.randn(8, 32, 5, 5)
    general = _kernel.action  # the call that looks everything up anew
    with torch.no_grad():
        before = m(x)
        m.ce_expand.weight = torch.nn.Parameter(torch.randn_like(m.ce_expand.weight))  # replaced
        after = m(x)
        assert not torch.equal(after, before) and torch.equal(after, general(m, x))
        m.me_squeeze.weight.mul_(0.5)  # in place: the same object, new values
        assert torch.equal(m(x), general(m, x))
        m.me_bn.eps = 0.1
        assert torch.equal(m(x), general(m, x))
        twin = copy.deepcopy(m)  # its kept arguments are its own parameters'
        twin.ste_conv.weight.mul_(2.0)
        assert torch.equal(twin(x), general(twin, x)) and torch.equal(m(x), general(m, x))
        assert not torch.equal(twin(x), m(x))
        m.double()  # float64: the PyTorch path
        assert _kernel.infer(m, x.double()) is None
        ref = m(x.double())
        m.float()
        assert torch.allclose(m(x).double(), ref, rtol=1e-4, atol=1e-5)
        m.me_bn.running_var = m.me_bn.running_var.double()  # a buffer the kernel cannot take
        assert _kernel.infer(m, x) is None and "_kernel_plan" not in m.__dict__
        m.me_bn.running_var = m.me_bn.running_var.float()
        m.train()  # BatchNorm on batch statistics, running statistics updated: the general path
        assert _kernel.infer(m, x) is None
        counted = m.me_bn.num_batches_tracked.item()
        m(x)
        assert m.me_bn.num_batches_tracked.item() == counted + 1
        m.eval()
        with FlopCounterMode(display=False):  # counters see the PyTorch path's operators
            assert _kernel.infer(m, x) is None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert _kernel.infer(m, x) is None
        with monkeypatch.context() as patch:
            patch.setattr(torch.compiler, "is_compiling", lambda: True)
            assert _kernel.infer(m, x) is None
        assert _kernel.infer(m, torch.randn(6, 32, 5, 5)) is None  # 6 frames, T = 4: the error path's
        with pytest.raises(ValueError, match="T=4"):
            m(torch.randn(6, 32, 5, 5))
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "1")
        assert _kernel.infer(m, x) is None
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "0")
        assert _kernel.infer(m, x) is not None
    assert _kernel.infer(m, x) is None and _kernel.usable(m, x)  # grad mode on: the general path


def test_training_call_follows_replaced_parameters(kernel, monkeypatch):
    """The module's kept plan (``_kernel._kept``) serves the training path too: a parameter replaced
    between steps is the one the kernel reads and the one that gets the gradient."""
    torch.manual_seed(0)
    m = randomised(32, 4, PATHS).train()
    twin = copy.deepcopy(m)
    x = torch.randn(8, 32, 5, 5)
    m(x).sum().backward()
    old = m.me_expand.weight
    new = torch.nn.Parameter(torch.randn_like(old))
    m.me_expand.weight = new
    twin.me_expand.weight = torch.nn.Parameter(new.detach().clone())
    out = m(x)
    out.sum().backward()
    assert new.grad is not None and old.grad is not None
    monkeypatch.setenv("ACTIONLIB_NO_CPP", "1")
    ref = twin(x)
    ref.sum().backward()
    assert rel_err(out.detach(), ref.detach()) < 1e-5
    assert rel_err(new.grad, twin.me_expand.weight.grad) < 1e-4


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_training_node_gives_only_the_gradients_asked_for(kernel, layout):
    """The kernel's autograd node (made in C++, ``action_train``): frozen parameters and an input
    that needs no gradient get none, the others the same numbers as with everything trainable;
    differentiating its backward again (``create_graph=True``) is refused with a message."""
    torch.manual_seed(0)
    m = randomised(32, 4, PATHS).train()
    x = torch.randn(8, 32, 5, 5)
    if layout == "nhwc":
        x = x.contiguous(memory_format=torch.channels_last)
    state = copy.deepcopy(m.state_dict())
    xr = x.clone().requires_grad_(True)
    out = m(xr)
    assert "ActionNode" in out.grad_fn.name()
    out.sum().backward()
    full = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    m.load_state_dict(state)  # the step moved BatchNorm's running statistics
    frozen = {"shift.weight", "ce_temporal.weight", "me_bn.bias"}
    for n, p in m.named_parameters():
        p.requires_grad_(n not in frozen)
    m(x).sum().backward()
    for n, p in m.named_parameters():
        assert (p.grad is None) if n in frozen else torch.equal(p.grad, full[n]), n
    out = m(xr)
    with pytest.raises(RuntimeError, match="differentiable once"):
        torch.autograd.grad(out.sum(), xr, create_graph=True)


def test_model_training_step_same_on_both_paths(kernel, monkeypatch):
    """A whole ACTION-ResNet-18 step: loss and every gradient agree between the paths."""
    torch.manual_seed(0)
    model = actionlib.build_model("action", "resnet18", 5, 4, dropout=0.0)
    twin = copy.deepcopy(model)
    x, y = torch.randn(2, 4, 3, 32, 32), torch.tensor([1, 3])
    losses = []
    for m, compiled in ((model, True), (twin, False)):
        monkeypatch.setenv("ACTIONLIB_NO_CPP", "0" if compiled else "1")
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, a), b in zip(model.named_parameters(), twin.parameters()):
        assert rel_err(a.grad, b.grad) < 1e-3, name


def bits(t):
    return t.contiguous().view(torch.int32)


@pytest.mark.parametrize("paths", ALL_SUBSETS, ids=lambda p: "+".join(p))
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3], SHAPES[5], (2, 4, 32, 8, 8)],
                         ids=lambda s: "x".join(map(str, s)))
def test_relu_input_hands_the_first_sums_on(kernel, paths, shape):
    """``relu_input_`` (the ReLU that closes the residual block before an ACTION module) is
    ``torch.relu_`` in place, and in inference takes the module's first sums in the same pass: the
    module's output is then bitwise the one it computes from the rectified input itself."""
    n, t, c, h, w = shape
    m = randomised(c, t, paths).eval()
    z = torch.randn(n * t, c, h, w)
    z[0, 0, 0, :2] = torch.tensor([-0.0, 0.0])
    with torch.no_grad():
        x_ref = torch.relu_(z.clone())
        out_ref = m(x_ref)
        x = z.clone()
        assert m.relu_input_(x) is x
        assert torch.equal(bits(x), bits(x_ref))
        owner, _, first, *_ = x._action_first_sums
        assert owner is m and first.numel() > 0
        assert torch.equal(bits(m(x)), bits(out_ref))


def test_relu_input_handles_special_values_like_relu(kernel, portable_build, monkeypatch):
    """NaN, infinities and signed zeros come out of ``relu_input_`` as out of ``torch.relu_``, with
    and without AVX-512."""
    m = randomised(16, 2, PATHS).eval()
    z = torch.randn(4, 16, 3, 5)
    z.view(-1)[:6] = torch.tensor([float("nan"), -0.0, 0.0, float("inf"), -float("inf"), -1e-40])
    for build in (_kernel.kernels(), portable_build):
        monkeypatch.setattr(_kernel, "kernels", lambda b=build: b)
        with torch.no_grad():
            x = m.relu_input_(z.clone())
        assert hasattr(x, "_action_first_sums")
        assert torch.equal(bits(x), bits(torch.relu_(z.clone())))


def test_handed_sums_give_way(kernel):
    """The sums go only to the module they were taken for, and only while its input is as
    ``relu_input_`` left it: changed in place, or in training, the module takes its own."""
    torch.manual_seed(0)
    m, other = randomised(32, 4, PATHS).eval(), randomised(32, 4, PATHS, seed=1).eval()
    z = torch.randn(8, 32, 5, 5)
    with torch.no_grad():
        x = m.relu_input_(z.clone())
        assert torch.equal(other(x), other(torch.relu(z)))  # not its sums
        x.mul_(2)  # after the sums were taken
        assert torch.equal(m(x), m(torch.relu(z) * 2))
        # the shift's weights changed between the ReLU and the module (as a hook might): its dots
        # in the sums are stale, so the module takes its own; replaced, or changed in place
        x = m.relu_input_(z.clone())
        m.shift.weight = torch.nn.Parameter(m.shift.weight.flip(-1))
        assert torch.equal(m(x), m(torch.relu(z)))
        x = m.relu_input_(z.clone())
        m.shift.weight.mul_(0.5)
        assert torch.equal(m(x), m(torch.relu(z)))
    x = m.relu_input_(z.clone())  # grad mode: the plain ReLU, nothing handed on
    assert not hasattr(x, "_action_first_sums") and torch.equal(x, torch.relu(z))
    with torch.inference_mode():  # inference tensors keep no version counter: nothing handed on
        x = m.relu_input_(z.clone())
        assert not hasattr(x, "_action_first_sums") and torch.equal(x, torch.relu(z))


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_blocks_before_action_modules_hand_on_bitwise(kernel, backbone):
    """In ACTION ResNets each residual block followed by an ACTION module closes with the module's
    ``relu_input_``: the model's output is bitwise that of torchvision's blocks, the parameters and
    their names are theirs, and a deep copy links its own modules."""
    torch.manual_seed(0)
    model = actionlib.build_model("action", backbone, 5, 4).eval()
    stock = copy.deepcopy(model)
    feats = [model.backbone, stock.backbone]
    blocks = [[b for name in ("layer1", "layer2", "layer3", "layer4") for b in getattr(f, name)] for f in feats]
    linked = [b for b in blocks[0] if "next_temporal" in b.__dict__]
    assert len(linked) == len(blocks[0]) - 1  # all but the last block feed a module
    for block, following, twin in zip(blocks[0], blocks[0][1:], blocks[1]):
        assert block.next_temporal is following.conv1.temporal
        assert isinstance(block, type(block).__mro__[1])  # a torchvision block still
        twin.__class__ = type(block).__mro__[1]  # the copy: torchvision's forward
        assert twin.next_temporal is not block.next_temporal  # the copy's own module
    assert model.state_dict().keys() == stock.state_dict().keys()
    x = torch.randn(1, 4, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), stock(x))
    for arch in ("tsn", "tsm"):
        other = actionlib.build_model(arch, backbone, 5, 4).backbone
        assert not any("next_temporal" in b.__dict__ for b in other.modules())


def test_outputs_reuse_freed_blocks(kernel):
    """Outputs autograd keeps come from the kernel's block cache: a freed output's block serves the
    next such call of that size, a live one is never handed out again, and clear_buffer_cache()
    empties it. Outputs nothing keeps (inference) come from the system allocator, never from it."""
    torch.manual_seed(0)
    module = randomised(32, 4, PATHS).eval()
    x = torch.randn(8, 32, 6, 6, requires_grad=True)
    first = module(x)
    expected, ptr = first.detach().clone(), first.data_ptr()
    del first
    again = module(x)
    assert again.data_ptr() == ptr  # the freed block, reused
    other = module(x)  # `again` is alive: a different block
    assert other.data_ptr() != again.data_ptr()
    assert torch.equal(again, expected) and torch.equal(other, expected)
    del again  # its block goes back to the cache, which keeps it from the system allocator
    with torch.no_grad():
        plain = module(x)
    assert plain.data_ptr() != ptr and rel_err(plain, expected) < 1e-5  # inference: F1 from sums of x
    assert module(x).data_ptr() == ptr  # kept again: the cached block
    del other, plain
    _kernel.clear_buffer_cache()


def test_buffer_cache_off_gives_the_same_numbers(kernel, tmp_path):
    """``ACTIONLIB_BUFFER_CACHE_MB=0`` (read once per process, hence a subprocess) allocates the
    outputs from the system instead of the block cache: same outputs and gradients, bitwise."""
    script = textwrap.dedent(
        """
        import sys, torch
        from actionlib.ops import PATHS, ActionModule, _kernel
        torch.manual_seed(0)
        m = ActionModule(32, 4, paths=PATHS)
        x = torch.randn(8, 32, 6, 6, requires_grad=True)
        assert _kernel.usable(m, x)
        results = []
        for _ in range(2):  # the second call would reuse freed blocks if the cache were on
            x.grad = None
            out = m(x)
            out.backward(torch.ones_like(out))
            results += [out.detach(), x.grad.clone()]
        torch.save(results, sys.argv[1])
        """
    )
    outputs = {}
    for limit in ("0", "64"):
        path = tmp_path / f"cache{limit}.pt"
        env = {**os.environ, "ACTIONLIB_BUFFER_CACHE_MB": limit, "ACTIONLIB_NO_CPP": "0"}
        proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs[limit] = torch.load(path)
    for off, on in zip(outputs["0"], outputs["64"]):
        assert torch.equal(off, on)
    assert torch.equal(outputs["0"][0], outputs["0"][2])  # and the repeated call agrees with itself
