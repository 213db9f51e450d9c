"""Efficiency profile of a video model: parameters, GMACs, forward and train-step latency.

GMACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
products; one multiply-add = 2 FLOPs), as the reference numbers of spec section 4 were. Modules
that do a convolution's arithmetic with element-wise ops (``ActionModule``'s learnable shift)
declare it through ``uncounted_macs(input)`` and are added, so that the count is the one a
``Conv1d`` would give.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``x`` (eval mode, no grad)."""
    extra = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        extra[0] += module.uncounted_macs(inputs[0])

    handles = [m.register_forward_hook(hook) for m in model.modules() if hasattr(m, "uncounted_macs")]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return counter.get_total_flops() // 2 + extra[0]


def median_time(fn: Callable[[], object], repeats: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in seconds over ``repeats`` calls after ``warmup`` calls."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One SGD step (forward, cross-entropy, backward, update) on a fixed batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(x), y).backward()
        optimizer.step()

    return step


def profile_model(
    arch: str = "action",
    backbone: str = "resnet50",
    num_segments: int = 8,
    size: int = 224,
    num_classes: int = 174,
    *,
    batch: int = 1,
    repeats: int = 5,
    warmup: int = 2,
    latency: bool = True,
    device: str = "cpu",
    **model_kwargs,
) -> dict:
    """Profile ``build_model(arch, backbone, ...)`` on ``batch`` clips of ``num_segments x size x size``.

    Returns a dict with ``params``, ``gmacs`` (per clip batch of ``batch``, counted at batch 1
    and scaled), and when ``latency`` is true ``forward_ms`` and ``train_step_ms`` (medians).
    """
    from .models import build_model

    dev = torch.device(device)
    model = build_model(arch, backbone, num_classes, num_segments, **model_kwargs)
    one_clip = torch.randn(1, num_segments, 3, size, size)
    result = {
        "arch": arch,
        "backbone": backbone,
        "segments": num_segments,
        "size": size,
        "num_classes": num_classes,
        "params": count_params(model),
        "params_m": round(count_params(model) / 1e6, 3),
        "gmacs": round(count_macs(model, one_clip) * batch / 1e9, 3),
        "temporal_modules": len(model.temporal_modules()),
    }
    if latency:
        model.to(dev)
        x = torch.randn(batch, num_segments, 3, size, size, device=dev)
        y = torch.zeros(batch, dtype=torch.long, device=dev)
        model.eval()
        with torch.no_grad():
            fwd = median_time(lambda: model(x), repeats, warmup, dev)
        model.train()
        train = median_time(make_train_step(model, x, y), repeats, warmup, dev)
        result.update(
            batch=batch,
            device=str(dev),
            threads=torch.get_num_threads(),
            forward_ms=round(fwd * 1e3, 2),
            train_step_ms=round(train * 1e3, 2),
        )
    return result


def format_table(rows: list[dict]) -> str:
    """A plain-text table of profile results."""
    cols = [c for c in ("arch", "backbone", "segments", "size", "params_m", "gmacs",
                        "temporal_modules", "forward_ms", "train_step_ms") if any(c in r for r in rows)]  # fmt: skip
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines.append("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        lines.append("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
    return "\n".join(lines)


# --- command line -----------------------------------------------------------------------------

HELP = "parameters, GMACs and forward / train-step latency of a model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .models import ARCHS, BACKBONES

    parser.add_argument("--arch", choices=ARCHS, nargs="+", default=["action"],
                        help="model family or families to profile (default: action)")
    parser.add_argument("--backbone", choices=BACKBONES, nargs="+", default=["resnet50"],
                        help="backbone(s) (default: resnet50)")
    parser.add_argument("--segments", type=int, default=8, help="frames per clip T (default: 8)")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default: 224)")
    parser.add_argument("--num-classes", type=int, default=174, help="output classes (default: 174, SSv2)")
    parser.add_argument("--batch", type=int, default=1, help="clips per batch for the latency runs (default: 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is reported (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up runs (default: 2)")
    parser.add_argument("--no-latency", action="store_true", help="count parameters and GMACs only")
    parser.add_argument("--device", default="cpu", help="torch device for the latency runs (default: cpu)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE ('-' for stdout only)")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    rows = []
    for backbone in args.backbone:
        for arch in args.arch:
            rows.append(
                profile_model(
                    arch, backbone, args.segments, args.size, args.num_classes,
                    batch=args.batch, repeats=args.repeats, warmup=args.warmup,
                    latency=not args.no_latency, device=args.device,
                )  # fmt: skip
            )
    if args.json == "-":
        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0
