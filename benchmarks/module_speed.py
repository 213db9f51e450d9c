"""ACTION-ResNet-50 vs TSN-ResNet-50 on CPU: train-step and inference time, peak memory.

Side by side in one run: the models' steps are interleaved (TSN, ACTION, release-style ACTION,
TSN, ...) so that machine noise hits all alike; each figure is the median over repeats. Memory:
each model trains two SGD steps (momentum 0.9) in a fresh subprocess; "step peak" is the peak
resident memory above the process right after start-up (VmHWM, reset through
/proc/self/clear_refs): weights, gradients, momentum, activations and workspace. "saved" is the
bytes of the distinct storages autograd keeps for the backward pass of one step. The memory
subprocesses hold glibc's thresholds at their initial 128 KiB (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``): every block from 128 KiB up is mapped for itself and handed back when
freed, so the peak is that of the memory in use. Left to itself glibc raises the thresholds as
blocks are freed and then keeps freed blocks in its heap, by amounts that vary from process to
process (the ratio read 1.15-1.28 that way; held fixed, 1.240 +- 0.001, 2026-11-26).

    python benchmarks/module_speed.py [--clips 2 --frames 8 --size 112 --repeats 25 --threads 2]
                                      [--channels-last] [--backbone resnet50] [--keep-heap]
                                      [--models tsn,action,release]

``--keep-heap``: glibc keeps freed memory (``actionlib._heap``) in the timed process, so that
no step faults its buffers in again page by page (train steps otherwise do, ~32k minor faults
per TSN step). The memory subprocesses run without it: their peaks would count the kept blocks.

Each time ratio comes with a 95% interval: the ratio of medians over rounds drawn with replacement
(2000 draws, seed 0; a round is one step of every model, so the pairs stay together). On a shared
host single steps move by 5-10% (2026-11-26, 03:05 UTC: TSN's train step 660-753 ms within 15
rounds), and with 9 repeats the time ratios read up to +-0.045 from run to run; the interval says
how far a reading can be trusted, and ``--repeats 100`` narrows it to about +-0.015. It treats the
rounds as independent: drifts of the host's load over minutes are not in it.

Targets (issue 2): train-step ratio ACTION/TSN <= 1.15, inference <= 1.10, memory <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import actionlib  # noqa: E402
from actionlib import _heap  # noqa: E402
from actionlib.models import to_channels_last  # noqa: E402
from actionlib.models.backbones import insert_temporal, insertion_points  # noqa: E402

MODELS = ("tsn", "action", "release")  # the default; also "tsm" and "tsm-release"
RELEASE = {"release": "ReleaseStyleAction", "tsm-release": "ReleaseStyleTSM"}  # in release_style.py


def build(kind: str, frames: int, channels_last: bool = False, backbone: str = "resnet50") -> nn.Module:
    if kind not in RELEASE:
        model = actionlib.build_model(kind, backbone, 174, frames)
    else:
        import release_style

        module = getattr(release_style, RELEASE[kind])
        model = actionlib.build_model("tsn", backbone, 174, frames)
        points = insertion_points(backbone, model.backbone)
        insert_temporal(model.backbone, lambda c: module(c, frames), points)
    if channels_last:  # 2-D conv weights NHWC: the convolutions then run on (and return) NHWC
        to_channels_last(model)
    return model


def train_step(model, x, y, opt):
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()


def status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, from /proc (Linux)."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_child(kind: str, args: argparse.Namespace, queue) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    before = status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident size
    model = build(kind, args.frames, args.channels_last, args.backbone)
    x = torch.randn(args.clips, args.frames, 3, args.size, args.size)
    y = torch.zeros(args.clips, dtype=torch.long)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    saved = {}

    def pack(t):  # count each storage once, however many nodes save it
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    for _ in range(2):  # the second step runs with momentum buffers in place
        saved.clear()
        opt.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    queue.put({"peak_step_mb": status_mb("VmHWM") - before, "saved_mb": sum(saved.values()) / 2**20})


# glibc's initial thresholds, held fixed in the memory subprocesses (the module docstring)
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 << 10), "MALLOC_TRIM_THRESHOLD_": str(128 << 10)}


def measure_memory(kind: str, args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=memory_child, args=(kind, args, queue))
    with mock.patch.dict(os.environ, MEMORY_ENV):  # glibc reads them as the child starts
        proc.start()
    out = queue.get()
    proc.join()
    return out


def ratio_interval(num: list[float], den: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of median(num) / median(den), the rounds (index i pairs num[i] with
    den[i]) drawn with replacement."""
    rng = random.Random(seed)
    n = len(num)
    ratios = []
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        ratios.append(statistics.median(num[i] for i in idx) / statistics.median(den[i] for i in idx))
    ratios.sort()
    return ratios[int(0.025 * draws)], ratios[int(0.975 * draws) - 1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet50", help="a ResNet (default resnet50)")
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--repeats", type=int, default=25, help="timed rounds (default %(default)s)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels-last", action="store_true",
                   help="the models' 2-D conv weights in channels_last memory format, so that the "
                        "activations are NHWC (the ACTION kernel has NHWC passes)")  # fmt: skip
    p.add_argument("--keep-heap", action="store_true",
                   help="glibc keeps freed memory in the timed process: no page faults per step")  # fmt: skip
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated, tsn first: tsn, tsm, action, release (ACTION the release's "
                        "way), tsm-release (TSM's shift the TSM release's way); default %(default)s")  # fmt: skip
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args()
    names = args.models.split(",")
    if names[0] != "tsn" or not set(names) <= {"tsn", "tsm", "action", *RELEASE}:
        p.error(f"--models {args.models!r}: tsn first, then any of tsm, action, {', '.join(RELEASE)}")

    if args.keep_heap and not _heap.keep_heap():
        sys.exit("--keep-heap: glibc did not take the settings (ACTIONLIB_KEEP_HEAP=0, or not glibc)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.clips, args.frames, 3, args.size, args.size)
    y = torch.zeros(args.clips, dtype=torch.long)
    models = {k: build(k, args.frames, args.channels_last, args.backbone) for k in names}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.01) for k, m in models.items()}
    times = {(k, mode): [] for k in names for mode in ("train", "infer")}
    for i in range(args.warmup + args.repeats):
        for k, m in models.items():
            m.train()
            t0 = time.perf_counter()
            train_step(m, x, y, opts[k])
            t1 = time.perf_counter()
            m.eval()
            with torch.no_grad():
                m(x)
            t2 = time.perf_counter()
            if i >= args.warmup:
                times[k, "train"].append(t1 - t0)
                times[k, "infer"].append(t2 - t1)
    med = {key: statistics.median(v) * 1e3 for key, v in times.items()}
    mem = {k: measure_memory(k, args) for k in names}

    result = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "backbone": args.backbone,
        "input": f"{args.clips} clips x {args.frames} frames x {args.size}x{args.size}"
        + (", channels_last" if args.channels_last else "")
        + (", heap kept" if args.keep_heap else ""),
        "median_ms": {f"{k}/{mode}": round(v, 1) for (k, mode), v in med.items()},
        "memory_mb": {k: {n: round(v, 1) for n, v in d.items()} for k, d in mem.items()},
    }
    for k in names[1:]:
        result[f"{k}_vs_tsn"] = {
            "train_step": round(med[k, "train"] / med["tsn", "train"], 3),
            "inference": round(med[k, "infer"] / med["tsn", "infer"], 3),
            "train_step_95": [round(v, 3) for v in ratio_interval(times[k, "train"], times["tsn", "train"])],
            "inference_95": [round(v, 3) for v in ratio_interval(times[k, "infer"], times["tsn", "infer"])],
            "peak_step_memory": round(mem[k]["peak_step_mb"] / mem["tsn"]["peak_step_mb"], 3),
            "saved_for_backward": round(mem[k]["saved_mb"] / mem["tsn"]["saved_mb"], 3),
        }
    print(f"{args.backbone}, {result['input']}, CPU {result['machine']}, torch {result['torch']}")
    print(f"{'model':<12}{'train ms':>10}{'infer ms':>10}{'step peak MB':>14}{'saved MB':>10}")
    for k in names:
        print(f"{k:<12}{med[k, 'train']:>10.1f}{med[k, 'infer']:>10.1f}"
              f"{mem[k]['peak_step_mb']:>14.1f}{mem[k]['saved_mb']:>10.1f}")  # fmt: skip
    for k in names[1:]:
        r = result[f"{k}_vs_tsn"]
        (tl, th), (il, ih) = r["train_step_95"], r["inference_95"]
        print(f"{k}/tsn ratio: train step {r['train_step']:.3f} (95%: {tl:.3f}-{th:.3f}), "
              f"inference {r['inference']:.3f} ({il:.3f}-{ih:.3f}), step peak memory {r['peak_step_memory']:.3f}, "
              f"saved for backward {r['saved_for_backward']:.3f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
