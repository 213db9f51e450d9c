"""Is the working tree's ACTION kernel bitwise the one at a git revision? (for speed-only changes)

Builds ``actionlib/ops/action_cpu.cpp`` as it is at ``--rev`` (``git show``) and as it is in the
tree, then runs one ``ActionModule`` through each: evaluation output, training output, input
gradient and every parameter gradient, for every path subset, in NCHW and channels_last, over
map sizes around the kernel's special cases (ResNet-50's four stages at 112 x 112, short rows,
a single pixel, channel counts that are not multiples of 8 or 16). Prints each tensor that
differs and exits 1 if any does.

A change that only reorders work (loop order, blocking, prefetching, vectorising the same
operations) must leave every number as it was: then the notebooks' results stand without a rerun.

    python benchmarks/kernel_bitwise.py [--rev HEAD]
"""

from __future__ import annotations

import argparse
import itertools
import sys

import torch

from actionlib.ops import _kernel
from actionlib.ops.action import PATHS, ActionModule
from kernel_ab import kernel_at  # this script's folder is on sys.path

# (C, H, W): ResNet-50's stages at 112 x 112, then odd sizes (tails of every vector loop and block)
SHAPES = [(256, 28, 28), (512, 14, 14), (1024, 7, 7), (2048, 4, 4), (48, 5, 3), (40, 1, 1), (33, 2, 9),
          (64, 8, 8), (160, 3, 17), (32, 9, 7)]  # fmt: skip
SUBSETS = [p for k in (3, 1) for p in itertools.combinations(PATHS, k)]


def outputs(module: ActionModule, x: torch.Tensor) -> list[torch.Tensor]:
    """Evaluation output, then training output, input gradient and parameter gradients."""
    module.__dict__.pop("_kernel_plan", None)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.eval()
    with torch.no_grad():
        out = [module(x)]
    module.train()
    xr = x.clone().requires_grad_(True)
    y = module(xr)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    out += [y.detach(), xr.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    module.load_state_dict(state)  # the training call moved BatchNorm's running statistics
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", default="HEAD", help="git revision to compare with (default HEAD)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    new = _kernel.kernels()
    if new is None:
        sys.exit("the kernel cannot be built here (no C++ compiler, or ACTIONLIB_NO_CPP=1)")
    old = kernel_at(args.rev, "action_module_rev")
    torch.set_num_threads(args.threads)
    compared = differ = 0
    for (c, h, w), paths, channels_last in itertools.product(SHAPES, SUBSETS, (False, True)):
        torch.manual_seed(c * 100 + h)
        module = ActionModule(c, 4, paths=paths)
        with torch.no_grad():
            for q in module.parameters():
                q.normal_(0, 0.3)
            if "me" in paths:
                module.me_bn.running_mean.normal_()
                module.me_bn.running_var.uniform_(0.5, 2)
        x = torch.randn(8, c, h, w)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        results = []
        for mod in (old, new):
            _kernel.kernels = lambda mod=mod: mod  # noqa: B023 (bound per iteration)
            results.append(outputs(module, x))
        for i, (a, b) in enumerate(zip(*results)):
            compared += 1
            if not torch.equal(a, b):
                differ += 1
                print(f"differs: C={c} {h}x{w} {'+'.join(paths)} {'NHWC' if channels_last else 'NCHW'} "
                      f"tensor {i}: max |diff| {(a - b).abs().max().item():.3e}")  # fmt: skip
    print(f"{compared} tensors compared with {args.rev}'s kernel: {differ} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
