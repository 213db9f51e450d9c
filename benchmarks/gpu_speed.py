"""TSN / TSM / ACTION (and release-style ACTION) on a CUDA GPU: step time, throughput, memory.

For each backbone, precision (fp32, bf16 autocast) and memory layout (NCHW, channels_last) the
models are built with the same seed, moved to the GPU, warmed up (cuDNN autotuning on, as the
training engine has it), then timed side by side: in each round every model runs ``--iters``
train steps (forward + cross-entropy + backward + SGD-momentum step), then ``--iters`` inference
forwards under ``torch.no_grad()``, each block timed with CUDA events. Figures are medians over
rounds, per step. "peak MiB" is ``torch.cuda.max_memory_allocated`` during one train step (weights,
gradients, momentum, activations, workspace). Ratios are against TSN in the same setting.

``--check`` first compares the models on the GPU with the CPU: ACTION's output and gradients in
float64 (relative error; the same function on either device), and the fp32 / bf16-autocast GPU
outputs against the float64 ones (what the precision costs).

    python benchmarks/gpu_speed.py [--backbones resnet50,mobilenetv2,bninception]
        [--archs tsn,tsm,action,release] [--clips 8 --frames 8 --size 224]
        [--precisions fp32,bf16] [--layouts nchw,channels_last] [--rounds 7 --iters 10]
        [--check] [--compile] [--json FILE]

Nothing here runs in the tests: it needs a GPU (``--device cpu`` exists only to try the script).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from module_speed import build  # noqa: E402


def timer(device: torch.device):
    """``start()`` / ``stop() -> ms``: CUDA events on a GPU, the wall clock on the CPU."""
    if device.type == "cuda":
        def start():
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev

        def stop(ev):
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            end.synchronize()
            return ev.elapsed_time(end)
    else:
        def start():
            return time.perf_counter()

        def stop(t0):
            return (time.perf_counter() - t0) * 1e3
    return start, stop


def autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def check(device: torch.device, backbone: str, frames: int, size: int) -> dict:
    """ACTION on ``device`` against the CPU (float64), and the fp32 / bf16 outputs against float64."""
    torch.manual_seed(0)
    ref = build("action", frames, backbone=backbone).double().eval()
    x = torch.randn(2, frames, 3, size, size, dtype=torch.float64)

    def run(model, inp):
        model.zero_grad(set_to_none=True)
        inp = inp.clone().requires_grad_(True)
        out = model(inp)
        (out * torch.linspace(-1, 1, out.shape[1], dtype=out.dtype, device=out.device)).sum().backward()
        grads = {n: p.grad.detach().double().cpu() for n, p in model.named_parameters() if p.grad is not None}
        return out.detach().double().cpu(), inp.grad.double().cpu(), grads

    def rel(a, b):
        return float((a - b).norm() / b.norm())

    out_c, gx_c, gw_c = run(ref, x)
    gpu = build("action", frames, backbone=backbone).double().eval()
    gpu.load_state_dict(ref.state_dict())
    gpu.to(device)
    out_g, gx_g, gw_g = run(gpu, x.to(device))
    result = {
        "float64 output": rel(out_g, out_c),
        "float64 input grad": rel(gx_g, gx_c),
        "float64 weight grads (max)": max(rel(gw_g[n], gw_c[n]) for n in gw_c),
    }
    gpu.float()
    for precision in ("fp32", "bf16"):
        with torch.no_grad(), autocast(device, precision):
            out = gpu(x.float().to(device)).double().cpu()
        result[f"{precision} output vs float64"] = rel(out, out_c)
    return result


def bench(args, device, backbone: str, precision: str, layout: str) -> dict:
    torch.manual_seed(0)
    cl = layout == "channels_last"
    models = {a: build(a, args.frames, cl, backbone).to(device) for a in args.archs}
    opts = {a: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for a, m in models.items()}
    if args.compile:  # compiled in the warm-up below (train and eval graphs)
        models = {a: torch.compile(m) for a, m in models.items()}
    x = torch.randn(args.clips, args.frames, 3, args.size, args.size, device=device)
    y = torch.randint(0, 174, (args.clips,), device=device)
    start, stop = timer(device)

    def train(a):
        m, opt = models[a], opts[a]
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            loss = nn.functional.cross_entropy(m(x), y)
        loss.backward()
        opt.step()

    def infer(a):
        with torch.no_grad(), autocast(device, precision):
            models[a](x)

    for a, m in models.items():  # warm-up (autotuning, allocator, compiling) and the peak memory
        t0 = time.perf_counter()
        m.train()
        for _ in range(args.warmup):
            train(a)
        m.eval()
        for _ in range(args.warmup):
            infer(a)
        print(f"  {a}: warm-up {time.perf_counter() - t0:.0f} s", flush=True)
    peak = {}
    for a, m in models.items():
        m.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        train(a)
        peak[a] = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else float("nan")
    times = {(a, mode): [] for a in models for mode in ("train", "infer")}
    for r in range(args.rounds):
        order = list(models)[r % len(models):] + list(models)[: r % len(models)]  # rotate the order
        for a in order:
            models[a].train()
            t0 = start()
            for _ in range(args.iters):
                train(a)
            times[a, "train"].append(stop(t0) / args.iters)
            models[a].eval()
            t0 = start()
            for _ in range(args.iters):
                infer(a)
            times[a, "infer"].append(stop(t0) / args.iters)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = {}
    for a in models:
        rows[a] = {
            "train_ms": round(med[a, "train"], 2),
            "infer_ms": round(med[a, "infer"], 2),
            "train_clips_per_s": round(args.clips * 1e3 / med[a, "train"], 1),
            "infer_clips_per_s": round(args.clips * 1e3 / med[a, "infer"], 1),
            "peak_mib": round(peak[a], 1),
            "train_spread_ms": round(max(times[a, "train"]) - min(times[a, "train"]), 2),
        }
        if "tsn" in models:
            rows[a]["train_vs_tsn"] = round(med[a, "train"] / med["tsn", "train"], 3)
            rows[a]["infer_vs_tsn"] = round(med[a, "infer"] / med["tsn", "infer"], 3)
            rows[a]["peak_vs_tsn"] = round(peak[a] / peak["tsn"], 3)
    del models, opts
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", default="resnet50", help="comma-separated (default resnet50)")
    p.add_argument("--archs", default="tsn,tsm,action,release",
                   help="comma-separated from tsn, tsm, action, release (default all four)")  # fmt: skip
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--precisions", default="fp32,bf16", help="from fp32, bf16, fp16 (autocast)")
    p.add_argument("--layouts", default="nchw,channels_last")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds; medians over them")
    p.add_argument("--iters", type=int, default=10, help="steps per timed block")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    p.add_argument("--check", action="store_true", help="first compare with the CPU (see above)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile each model (default mode); compiling is part of the warm-up")  # fmt: skip
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", help="write the results to this file (rewritten after each setting)")
    args = p.parse_args()
    args.archs = args.archs.split(",")
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: this benchmark needs a GPU (--device cpu only tries the script)")
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    result = {
        "device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
        "input": f"{args.clips} clips x {args.frames} frames x {args.size}x{args.size}",
        "compiled": args.compile,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "check": {}, "settings": {},
    }  # fmt: skip
    print(f"{name}, torch {torch.__version__}, {result['input']}", flush=True)

    def save():
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2))

    for backbone in args.backbones.split(","):
        if args.check:
            result["check"][backbone] = c = check(device, backbone, args.frames, 128)  # BN-Inception: a multiple of 32
            print(f"check {backbone}: " + ", ".join(f"{k} {v:.2e}" for k, v in c.items()), flush=True)
            save()
        for precision in args.precisions.split(","):
            for layout in args.layouts.split(","):
                key = f"{backbone}/{precision}/{layout}" + ("/compiled" if args.compile else "")
                rows = bench(args, device, backbone, precision, layout)
                result["settings"][key] = rows
                save()
                print(f"\n{key}")
                print(f"{'model':<9}{'train ms':>10}{'infer ms':>10}{'train clip/s':>13}{'infer clip/s':>13}"
                      f"{'peak MiB':>10}{'train/tsn':>10}{'infer/tsn':>10}{'peak/tsn':>9}")  # fmt: skip
                for a, r in rows.items():
                    print(f"{a:<9}{r['train_ms']:>10.2f}{r['infer_ms']:>10.2f}{r['train_clips_per_s']:>13.1f}"
                          f"{r['infer_clips_per_s']:>13.1f}{r['peak_mib']:>10.0f}{r.get('train_vs_tsn', 1):>10.3f}"
                          f"{r.get('infer_vs_tsn', 1):>10.3f}{r.get('peak_vs_tsn', 1):>9.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
