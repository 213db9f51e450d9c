"""Where a model's GPU train step and inference forward spend their time: ``torch.profiler`` tables.

Prints the wall time per train step (after warm-up), then the operators sorted by their own CUDA
time and by their own CPU time (a step whose CPU time exceeds its CUDA time waits on kernel
launches, not on the GPU), then the inference forward's operators by CUDA time.

    python benchmarks/gpu_profile.py [--arch action] [--backbone resnet50] [--precision fp32|bf16]
        [--channels-last] [--clips 8 --frames 8 --size 224] [--rows 30]

Needs a CUDA GPU (``--device cpu`` only tries the script).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gpu_speed import autocast  # noqa: E402
from module_speed import build  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="action", help="tsn, tsm, action or release (default action)")
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (autocast)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--steps", type=int, default=2, help="profiled steps")
    p.add_argument("--rows", type=int, default=30, help="operators per table")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: this profile needs a GPU (--device cpu only tries the script)")
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"

    torch.manual_seed(0)
    model = build(args.arch, args.frames, args.channels_last, args.backbone).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(args.clips, args.frames, 3, args.size, args.size, device=device)
    y = torch.randint(0, 174, (args.clips,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(device, args.precision):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(5):
        step()
    sync()
    print(f"{args.arch}-{args.backbone} {args.precision}{' channels_last' if args.channels_last else ''}: "
          f"{(time.perf_counter() - t0) / 5 * 1e3:.1f} ms per train step (wall)")  # fmt: skip
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        sync()
    table = prof.key_averages()
    own = "CUDA" if device.type == "cuda" else "CPU"
    print(f"\ntrain, {args.steps} steps, by own {own} time\n" + table.table(sort_by=key, row_limit=args.rows))
    print(f"\ntrain, {args.steps} steps, by own CPU time\n" + table.table(sort_by="self_cpu_time_total", row_limit=12))
    model.eval()
    with torch.no_grad(), autocast(device, args.precision), profile(activities=activities) as prof:
        for _ in range(args.steps):
            model(x)
        sync()
    print(f"\ninference, {args.steps} forwards\n" + prof.key_averages().table(sort_by=key, row_limit=args.rows))


if __name__ == "__main__":
    main()
