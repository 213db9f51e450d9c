"""The whole ACTION module as one compiled CPU kernel (forward and backward), float32.

``action_cpu.cpp`` computes what :class:`~actionlib.ops.action.ActionModule` computes with
PyTorch ops, in a few fused passes over the full-size tensors: one pass for the shift and the
two means (and ME's 1x1 squeeze, frame by frame), one for the excitation (in place), and in the
backward pass one for the gate gradients and one that forms the input gradient of the shifted
map (ME's data gradient included, block by block) and applies the shift's transpose while summing
the shift weights' gradient. The gate networks (STE's 3x3x3 conv, CE's MLP, ME's BatchNorm and
depthwise conv) run inside the kernel on small tensors, without per-op autograd nodes. Every
matrix product runs in the kernel's own register-tiled AVX-512 loops. In evaluation (BatchNorm
on running statistics) ME needs only nine region sums of the squeezed map, which are the squeeze
of the region sums of the shifted map: the full-size squeeze is skipped. In inference the
statistics are taken of x itself (they are linear in it); inside a ResNet they come with x from
the ReLU that closes the block before the module (:func:`relu_stats`,
``ActionModule.relu_input_``), taken in the pass that writes x, and the module skips its own read
of x. The input gradient, and the output where autograd keeps it, come from a cache of blocks
(:func:`clear_buffer_cache`).
Channels_last input has its own passes (pixels as rows of C channels; output and input gradient
channels_last, nothing converted), sharing the gate networks with the NCHW ones. Same numbers as
the PyTorch path up to float rounding (tests compare outputs, every gradient and the BatchNorm
running statistics, in training and evaluation, in both layouts).

Used by ``ActionModule.forward`` when :func:`usable` says so: float32 on the CPU, the extension
built (``actionlib._cpp``; ``ACTIONLIB_NO_CPP=1`` turns it off), no ``TorchDispatchMode`` active
(FLOP counters see the PyTorch path's operators) and not inside ``torch.compile`` (which traces the
PyTorch path). Where autograd records the call, it is one node made in C++ (``action_train``,
backward ``action_backward``): a Python ``autograd.Function`` around the kernel cost ~1% of
ACTION-ResNet-50's train step (benchmarks/RESULTS.md). That node is differentiable once: its
backward refuses ``create_graph=True`` (the PyTorch path, ``ACTIONLIB_NO_CPP=1``, allows it).
"""

from __future__ import annotations

import functools
from importlib import resources
from types import ModuleType
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from .. import _cpp

_FUNCTIONS = ("action_forward", "action_infer", "action_backward", "action_train", "clear_buffer_cache", "relu_stats")


@functools.cache
def _source() -> str:
    return resources.files(__package__).joinpath("action_cpu.cpp").read_text()


def kernels() -> ModuleType | None:
    """The compiled module kernels, or ``None`` (no compiler here, or ``ACTIONLIB_NO_CPP=1``)."""
    return _cpp.load_extension("action_module", _source(), _FUNCTIONS)


def clear_buffer_cache() -> None:
    """Free the kernel's cached output blocks that no tensor uses.

    The module's input gradients, and its outputs where autograd keeps them for the backward
    pass, are allocated from a cache kept by the kernel (``ACTIONLIB_BUFFER_CACHE_MB``, default
    2048, ``0`` to turn it off): blocks of a size freed by one step are reused by the next instead
    of being faulted in again page by page. Outputs nothing keeps (inference) come from the
    system allocator, which reuses a block freed a moment ago."""
    mod = kernels()
    if mod is not None:
        mod.clear_buffer_cache()


def usable(module: torch.nn.Module, x: torch.Tensor) -> bool:
    """True when ``module`` (an ActionModule) can run on ``x`` through the compiled kernel."""
    return _kernels_for(x) is not None and _kept(module) is not None


def _kernels_for(x: torch.Tensor) -> ModuleType | None:
    """:func:`kernels` where ``x`` can go through them now, else ``None`` (the module's own
    conditions are its plan's, :func:`_kept`)."""
    if torch.compiler.is_compiling():  # compile traces the PyTorch path's operators (first:
        return None  # the dispatch-mode query below would break its graph)
    if not (x.is_cpu and x.dtype == torch.float32):
        return None
    if _get_current_dispatch_mode() is not None or torch.is_autocast_enabled("cpu"):
        return None
    return kernels()


class _Plan(NamedTuple):
    """What a module keeps of itself for the kernel (:func:`_kept`)."""

    weights: tuple[torch.Tensor, ...]  # the kernel's parameters, :func:`_weights`
    flags: tuple[bool, bool, bool]  # ste, ce, me
    owners: tuple  # (dictionary, name, object) of each parameter and of ME's running statistics
    bn: torch.nn.BatchNorm2d | None  # ME's (None without ME)
    eps: float  # its eps when the plan was made
    infer_args: tuple | None  # the kernel's arguments after x on running statistics (inference)
    no_sums: torch.Tensor  # action_infer's last argument where no first sums are given


def _kept(module) -> _Plan | None:
    """The module's plan, kept on it (``_kernel_plan``): what the kernel's call needs of the module,
    found once instead of at every call. Inside a model each call finds the Python objects it reads
    cold in the CPU's caches: looking up ten parameters and building the call's arguments cost ~1%
    of ACTION-ResNet-50's inference step, and as much of its train step (paired in one process;
    benchmarks/RESULTS.md). The plan is checked at every call (each parameter and running statistic
    the same object, float32 on the CPU; BatchNorm's eps as it was) and made again when it no
    longer holds. ``None`` where the module's tensors do not suit the kernel."""
    plan = module.__dict__.get("_kernel_plan")
    if plan is not None and _plan_holds(plan):
        return plan
    plan = _make_plan(module)
    if plan is None:
        module.__dict__.pop("_kernel_plan", None)
    else:
        module.__dict__["_kernel_plan"] = plan
    return plan


def _make_plan(module) -> _Plan | None:
    weights = _weights(module)
    if any(not (w.is_cpu and w.dtype == torch.float32) for w in weights):
        return None
    flags = tuple(p in module.paths for p in ("ste", "ce", "me"))
    subs = module._modules
    owners = [(subs["shift"]._parameters, "weight")]
    owners += [(subs[m]._parameters, n) for path, params in _PARAMS.items() if path in module.paths for m, n in params]
    bn, eps, infer_args = None, 1e-5, None
    rm = rv = weights[0].new_empty(0)
    if flags[2]:
        bn = subs["me_bn"]
        eps = bn.eps
        owners += [(bn._buffers, "running_mean"), (bn._buffers, "running_var")]
        running = [b for b in (bn.running_mean, bn.running_var) if b is not None]
        if any(not (b.is_cpu and b.dtype == torch.float32) for b in running):  # the kernel updates them
            return None
        if len(running) == 2:
            rm, rv = running
    if bn is None or rm.numel():  # BatchNorm with running statistics, or none
        k, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, me_dw, me_ex = weights
        infer_args = (k, module.num_segments, *flags, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, rm, rv,
                      False, 0.0, eps, me_dw, me_ex)  # fmt: skip
    owners = tuple((d, n, d.get(n)) for d, n in owners)
    return _Plan(weights, flags, owners, bn, eps, infer_args, weights[0].new_empty(0))


def _plan_holds(plan: _Plan) -> bool:
    """True while the module still has the objects ``plan`` was made from, as it found them."""
    for d, n, obj in plan.owners:
        if d.get(n) is not obj or (obj is not None and (obj.dtype != torch.float32 or not obj.is_cpu)):
            return False
    return plan.bn is None or plan.bn.eps == plan.eps


def _bn_update_factor(bn: torch.nn.BatchNorm2d) -> float:
    """The running-statistics factor ``BatchNorm2d.forward`` would use (0: no update)."""
    if not (bn.training and bn.track_running_stats):
        return 0.0
    if bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
    if bn.momentum is None:
        return 1.0 / float(bn.num_batches_tracked)
    return float(bn.momentum)


# The kernel's parameters of each path as (submodule, parameter) names, in the kernel's order.
_PARAMS = {
    "ste": (("ste_conv", "weight"),),
    "ce": (("ce_squeeze", "weight"), ("ce_temporal", "weight"), ("ce_expand", "weight")),
    "me": (("me_squeeze", "weight"), ("me_bn", "weight"), ("me_bn", "bias"), ("me_conv", "weight"), ("me_expand", "weight")),
}


def _weights(module) -> tuple[torch.Tensor, ...]:
    """The module's parameters in the kernel's order; an absent path gives empty tensors. Read
    from the modules' own dictionaries: ``module.ce_squeeze.weight`` goes through
    ``nn.Module.__getattr__`` twice, which inside a model costs microseconds a time."""
    subs = module._modules
    shift = subs["shift"]._parameters["weight"]
    weights, empty = [shift], None
    for path, params in _PARAMS.items():
        if path in module.paths:
            weights.extend(subs[m]._parameters[n] for m, n in params)
        else:
            empty = shift.new_empty(0) if empty is None else empty
            weights.extend([empty] * len(params))
    return tuple(weights)


def _infer_plan(module, x: torch.Tensor) -> tuple[ModuleType, _Plan] | None:
    """The kernels and ``module``'s plan where its inference call on ``x`` goes through the kernel:
    grad mode off, ME's BatchNorm (if any) in evaluation with running statistics, and what
    :func:`usable` asks for; else ``None``."""
    if torch.is_grad_enabled() or x.dim() != 4:
        return None
    mod = _kernels_for(x)
    plan = _kept(module) if mod is not None else None
    if plan is None or plan.infer_args is None or (plan.bn is not None and plan.bn.training):
        return None
    if x.shape[0] % module.num_segments:
        return None
    return mod, plan


def infer(module, x: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor | None:
    """``module(x)`` in inference through the compiled kernel, with the arguments its plan keeps
    (:func:`_kept`); ``None`` where this does not apply (:func:`_infer_plan`). ``first``: what
    :func:`relu_stats` took of this ``x`` for ``module`` (the module's first pass is skipped)."""
    found = _infer_plan(module, x)
    if found is None:
        return None
    mod, plan = found
    if x.is_contiguous() or (first is None and x.is_contiguous(memory_format=torch.channels_last)):
        # the output alone: nothing else is allocated as a tensor
        return mod.action_infer(x, *plan.infer_args, plan.no_sums if first is None else first)
    return None


def relu_stats(module, z: torch.Tensor) -> torch.Tensor | None:
    """``torch.relu_(z)`` and, in the same pass over ``z``, the sums that ``module``'s inference
    call on the result reads first (give them to :func:`infer` as ``first``). ``None``, and ``z``
    untouched, where the kernel does not run that call or ``z`` is not NCHW-contiguous."""
    found = _infer_plan(module, z)
    if found is None or not z.is_contiguous() or z.shape[1] != module.channels:
        return None
    mod, plan = found
    ste, ce, me = plan.flags
    return mod.relu_stats(z, plan.weights[0], module.num_segments, ste, ce, me)


def action(module, x: torch.Tensor) -> torch.Tensor | None:
    """``module(x)`` through the compiled kernel, or ``None`` where it does not apply
    (:func:`usable`); ``x`` is ``(N*T, C, H, W)``, contiguous or channels_last (then so are the
    output and the input gradient)."""
    mod = _kernels_for(x)
    plan = _kept(module) if mod is not None else None
    if plan is None:
        return None
    flags, bn = plan.flags, plan.bn
    rm = rv = None
    batch_stats, factor, eps = True, 0.0, 1e-5
    if bn is not None:
        batch_stats = bn.training or bn.running_mean is None
        factor = _bn_update_factor(bn)
        eps = bn.eps
        if bn.running_mean is not None:
            rm, rv = bn.running_mean, bn.running_var
    if rm is None:
        rm = rv = x.new_empty(0)
    k, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, me_dw, me_ex = plan.weights
    args = (k, module.num_segments, *flags, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, rm, rv, batch_stats,
            factor, eps, me_dw, me_ex)  # fmt: skip
    if torch.is_grad_enabled() and (x.requires_grad or any(w.requires_grad for w in plan.weights)):
        return mod.action_train(x, *args)  # one autograd node, made in C++ (its backward: action_backward)
    with torch.no_grad():  # inference: nothing saved (x is NCHW-contiguous or channels_last)
        return mod.action_infer(x, *args, plan.no_sums)
