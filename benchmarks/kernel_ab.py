"""The compiled ACTION kernel at a git revision against the working tree's, side by side in one run.

Both sources are built: the revision's is read with ``git show REV:actionlib/ops/action_cpu.cpp``.
Then the models step in turn: TSN-ResNet-50, ACTION-ResNet-50 on the revision's kernel, the same
ACTION model on this tree's kernel, TSN again, and so on. Each step is timed in training (forward,
cross-entropy, backward) and in inference (``eval`` + ``no_grad``). The script prints the medians
and each ACTION/TSN ratio.

This is the A/B behind kernel changes. Whole-run ratios on this 2-core VM move by ~0.03 from run
to run, so a single ``module_speed.py`` run cannot resolve a change of a few percent. Here both
kernels see the same machine state, and they take turns at going first within a round. Only the
C++ differs: the Python wrapper is this tree's (unless ``--wrapper``, below; a revision before the
C++ autograd node, b6d9a74, gets that node appended to its source, as it was at ``NODE_REV``, and
one before ``action_infer`` gets it in Python). With ``--rev`` at the tree's own kernel, the
"tree / rev" figure shows the noise left.

    python benchmarks/kernel_ab.py [--rev HEAD] [--repeats 11] [--threads 2] [--modes train,infer]
                                   [--channels-last] [--keep-heap] [--wrapper] [--module-time]

With ``--wrapper`` the revision's Python wrapper (``actionlib/ops/_kernel.py`` at ``--rev``) drives
its kernel, so that a change to the wrapper (or to how the kernel is called) is in the comparison
too; each wrapper keeps its own plan on the modules (``_kernel_plan``), swapped between turns.

With ``--channels-last`` both models run NHWC (``actionlib.models.to_channels_last``); the
revision's kernel must have the NHWC passes then (a79b469 or later).

With ``--keep-heap`` glibc keeps freed memory instead of handing it back to the system
(``actionlib._heap``). Without it, inference-only rounds page-fault ~26k times per ResNet-50
step for either model (~30 ms of TSN's ~115 ms on the project's VM): the ratios are then
diluted, and kernel changes that move memory traffic read as gains that vanish once the faults
are gone (RESULTS.md, 2026-11-25). Use it for inference A/Bs.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

import actionlib
from actionlib import _cpp, _heap
from actionlib.models import to_channels_last
from actionlib.ops import _kernel
from actionlib.ops import action as action_ops

SOURCE = "actionlib/ops/action_cpu.cpp"
WRAPPER = "actionlib/ops/_kernel.py"
ROOT = Path(__file__).resolve().parent.parent
NODE = "// The module's training call as one autograd node"  # where the C++ autograd node begins
NODE_REV = "de74b5f"  # the last revision whose node saves the forward's twelve small tensors one by one


def file_at(rev: str, path: str) -> str:
    """The file ``path`` of this repository as committed at ``rev``."""
    try:
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as err:
        sys.exit(f"kernel_ab: cannot read {path} at {rev!r}: {err.stderr.strip()}")


def source_at(rev: str) -> str:
    """``SOURCE`` as committed at ``rev``. Revisions older than the C++ autograd node
    (``action_train``, which this tree's wrapper calls in training) get the node appended as it
    was at ``NODE_REV``: it calls their ``action_forward`` / ``action_backward``, whose interface
    it shares (later revisions save one block of small tensors instead of twelve)."""
    src = file_at(rev, SOURCE)
    if "action_train(" not in src:
        node = file_at(NODE_REV, SOURCE)
        src += "\n" + node[node.index(NODE) :]
    return src


def kernel_at(rev: str, name: str = "action_module_ab"):
    """The kernel module built from ``SOURCE`` as committed at ``rev`` (:func:`source_at`)."""
    src = source_at(rev)
    # (before action_infer, NHWC had a forward of its own, action_forward_nhwc)
    functions = (*_kernel._FUNCTIONS, "action_forward_nhwc")
    mod = _cpp.load_extension(name, src, tuple(f for f in functions if f"{f}(" in src))
    if mod is None:
        sys.exit(f"kernel_ab: the kernel at {rev} did not build (see the warning above)")
    if not hasattr(mod, "action_infer"):  # before 2026-11-25's inference entry, which this tree's wrapper calls
        mod.action_infer = functools.partial(_infer_by_forward, mod)
    elif not hasattr(mod, "relu_stats"):  # before 2026-11-26's first sums (action_infer's last argument)
        mod.action_infer = functools.partial(_infer_without_sums, mod.action_infer)
    if not hasattr(mod, "relu_stats"):
        mod.relu_stats = _no_relu_stats
    return mod


# action_infer's arguments after x before 2026-11-26's first sums (its last argument since)
ARGS_BEFORE_SUMS = 19


def _infer_without_sums(infer, x: torch.Tensor, *args):
    """``action_infer`` of a kernel that takes no first sums (:func:`_no_relu_stats` gives none):
    its arguments after ``x`` without them (a revision's own wrapper, ``--wrapper``, passes no more)."""
    return infer(x, *args[:ARGS_BEFORE_SUMS])


def _no_relu_stats(*args) -> None:
    """``relu_stats`` for a kernel without it: no sums (the wrapper then runs ``torch.relu_``)."""
    return None


def _infer_by_forward(mod, x: torch.Tensor, *args):
    """``action_infer`` for a kernel without it: its forward without the cache, output only (one
    Python call more per module than the revision's own wrapper made: ``--wrapper`` avoids it)."""
    forward = mod.action_forward if x.is_contiguous() else mod.action_forward_nhwc
    return forward(x, *args[:ARGS_BEFORE_SUMS], False)[0]


def wrapper_at(rev: str, kern: ModuleType) -> ModuleType:
    """``WRAPPER`` as committed at ``rev``, loaded as a module of this tree's package (its relative
    imports resolve here), its ``kernels()`` returning ``kern``."""
    src = file_at(rev, WRAPPER)
    mod = ModuleType("actionlib.ops._kernel_at_rev")
    mod.__package__ = "actionlib.ops"
    exec(compile(src, f"{rev}:{WRAPPER}", "exec"), mod.__dict__)
    mod.kernels = lambda: kern
    return mod


def timed(forward, total: list[float]):
    """``forward`` that adds its wall time to ``total[0]`` (``--module-time``)."""

    def call(x):
        t0 = time.perf_counter()
        out = forward(x)
        total[0] += time.perf_counter() - t0
        return out

    return call


def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str) -> float:
    t0 = time.perf_counter()
    if mode == "train":
        model.train()
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
    else:
        model.eval()
        with torch.no_grad():
            model(x)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", default="HEAD", help="git revision whose kernel is the baseline (default HEAD)")
    p.add_argument("--repeats", type=int, default=11, help="timed rounds after 2 warm-up rounds (default 11)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--modes", default="train,infer", help="comma-separated: train, infer (default both)")
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--channels-last", action="store_true", help="both models NHWC (to_channels_last)")
    p.add_argument("--keep-heap", action="store_true", help="glibc keeps freed memory: no page faults per step")
    p.add_argument("--wrapper", action="store_true", help="the revision's Python wrapper drives its kernel")
    p.add_argument("--module-time", action="store_true",
                   help="also the time inside the ACTION modules' forward calls per step (training: the forward "
                        "only); less noisy than whole steps for changes to the forward")  # fmt: skip
    args = p.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not modes or any(m not in ("train", "infer") for m in modes):
        p.error(f"--modes takes train and/or infer, got {args.modes!r}")

    if args.keep_heap and not _heap.keep_heap():
        sys.exit("--keep-heap: glibc did not take the settings (ACTIONLIB_KEEP_HEAP=0, or not glibc)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    here = _kernel.kernels()
    if here is None:
        sys.exit("kernel_ab: this tree's kernel did not build (or ACTIONLIB_NO_CPP is set)")
    kernels = {"rev": kernel_at(args.rev), "tree": here}
    x = torch.randn(args.clips, args.frames, 3, args.size, args.size)
    y = torch.zeros(args.clips, dtype=torch.long)
    tsn = actionlib.build_model("tsn", "resnet50", 174, args.frames)
    action = actionlib.build_model("action", "resnet50", 174, args.frames)
    if args.channels_last:
        if not any(hasattr(kernels["rev"], f) for f in ("action_forward_nhwc", "action_infer")):
            sys.exit(f"kernel_ab: the kernel at {args.rev} has no NHWC passes (--channels-last)")
        to_channels_last(tsn)
        to_channels_last(action)
    times: dict[tuple[str, str], list[float]] = {}
    loader = _kernel.kernels
    wrappers = {"rev": wrapper_at(args.rev, kernels["rev"]) if args.wrapper else _kernel, "tree": _kernel}
    modules = [m for m in action.modules() if isinstance(m, action_ops.ActionModule)]
    plans: dict[str, list] = {"rev": [None] * len(modules), "tree": [None] * len(modules)}
    inside, module_times = [0.0], {}  # --module-time
    if args.module_time:
        for m in modules:
            m.forward = timed(m.forward, inside)
    try:
        for i in range(2 + args.repeats):
            for mode in modes:
                pair = [("rev", action, kernels["rev"]), ("tree", action, kernels["tree"])]
                # the second ACTION step of a round finds the model's memory warm: swap the order
                runs = [("tsn", tsn, None), *(pair if i % 2 else pair[::-1])]
                for name, model, kern in runs:
                    _kernel.kernels = (lambda k=kern: k) if kern is not None else loader
                    if kern is not None:  # this side's wrapper, and the plans it made on the modules
                        action_ops._kernel = wrappers[name]
                        for m, plan in zip(modules, plans[name]):
                            m.__dict__["_kernel_plan"] = plan
                    inside[0] = 0.0
                    elapsed = step(model, x, y, mode)
                    if kern is not None:
                        plans[name] = [m.__dict__.get("_kernel_plan") for m in modules]
                    if i >= 2:
                        times.setdefault((name, mode), []).append(elapsed)
                        module_times.setdefault((name, mode), []).append(inside[0])
    except TypeError as err:  # the wrapper passes this tree's arguments to the revision's kernel
        sys.exit(f"kernel_ab: the kernel's interface differs between {args.rev} and this tree ({err}); "
                 "--wrapper runs the revision's own wrapper")  # fmt: skip
    finally:
        _kernel.kernels = loader
        action_ops._kernel = _kernel

    layout = "channels_last" if args.channels_last else "NCHW"
    notes = ", heap kept (--keep-heap)" if args.keep_heap else ""
    notes += f", {args.rev}'s wrapper on its side (--wrapper)" if args.wrapper else ""
    print(f"ResNet-50 ({layout}), {args.clips} clips x {args.frames} frames x {args.size}x{args.size}, "
          f"{args.threads} threads, medians of {args.repeats} rounds{notes}")  # fmt: skip
    for mode in modes:
        med = {name: statistics.median(times[name, mode]) * 1e3 for name in ("tsn", "rev", "tree")}
        print(f"{mode:<6} TSN {med['tsn']:7.1f} ms | ACTION at {args.rev}: {med['rev']:7.1f} ms "
              f"(x{med['rev'] / med['tsn']:.3f}) | ACTION, this tree: {med['tree']:7.1f} ms "
              f"(x{med['tree'] / med['tsn']:.3f}) | tree / rev {med['tree'] / med['rev']:.3f}")  # fmt: skip
        if args.module_time:
            fwd = {name: statistics.median(module_times[name, mode]) * 1e3 for name in ("rev", "tree")}
            print(f"{'':<6} inside the ACTION modules' forward calls: at {args.rev} {fwd['rev']:.2f} ms, "
                  f"this tree {fwd['tree']:.2f} ms per step ({fwd['tree'] - fwd['rev']:+.2f} ms)")  # fmt: skip


if __name__ == "__main__":
    main()
