"""Where the ACTION kernel's time goes inside ACTION-ResNet-50: its passes timed in the model.

Builds ``actionlib/ops/action_cpu.cpp`` with a clock read inserted before a few anchor lines of
one function (a "profile" below), runs the model's steps on that build, and prints the time
between consecutive anchors per step, split by the modules' channel count (C < 512: layer 1 and
layer 2's first block; < 1024: the rest of layer 2 and layer 3's first block; < 2048: the rest of
layer 3 and layer 4's first block; 2048: the rest of layer 4). The clock is read on the calling
thread between the kernel's parallel regions (~25 ns a read), so the passes add up to the
function's time. NCHW only: the channels_last passes have other anchors.

Profiles:
  forward   forward_nchw: call memory, F1 (statistics [and ME's squeeze]), gates, F2 (output)
  gates     forward_gates: STE, CE's products and sigmoid, ME's product [or batch statistics],
            its depthwise-conv head, its expand product and sigmoid, gate_c
  backward  action_backward: setup, B1 (gate gradients), STE / CE / ME gate backward, B23 (dx, dk)

    python benchmarks/kernel_timers.py [--profile forward] [--mode infer|train] [--repeats 20]
                                       [--rev REV]

Numbers move with the host's load like every timing here; compare passes within one run. With
``--rev`` the kernel as committed at REV is built with the same clock reads and the two builds
take turns step by step in one process (their order swapped every round, as in ``kernel_ab.py``):
both tables are printed and their difference, pass by pass (paired).
"""

from __future__ import annotations

import argparse
import hashlib
import sys

import torch

import actionlib
from actionlib import _cpp, _heap
from actionlib.ops import _kernel
from kernel_ab import source_at, step  # this script's folder is on sys.path

TIMERS = """
#include <chrono>
#include <cstring>
namespace kernel_timers {
double acc[4][16];
int stage = 0;
std::chrono::steady_clock::time_point last;
inline void start(int64_t c) {
  stage = c >= 2048 ? 3 : c >= 1024 ? 2 : c >= 512 ? 1 : 0;
  last = std::chrono::steady_clock::now();
}
inline void mark(int i) {
  const auto now = std::chrono::steady_clock::now();
  acc[stage][i] += std::chrono::duration<double>(now - last).count();
  last = now;
}
}  // namespace kernel_timers
"""
READ = """
at::Tensor kernel_timers_read() {  // seconds [stage][pass] since the last read, then reset
  at::Tensor t = at::empty({4, 16}, at::kDouble);
  std::memcpy(t.data_ptr<double>(), kernel_timers::acc, sizeof kernel_timers::acc);
  std::memset(kernel_timers::acc, 0, sizeof kernel_timers::acc);
  return t;
}
"""
# profile: (function's first line, line after which the clock starts, [(anchor, pass ending there)])
PROFILES = {
    "forward": ("std::vector<Tensor> forward_nchw(", "const Shape s = shape_of(x, t);", [
        ("  const Stats st = stats_buffers(", "call memory"),
        ("  const float* gc = forward_gates(", "F1"),
        ("  const float* gs = mem.v.g1;", "gates"),
        ("  if (!keep) return {st.out};", "F2"),
    ]),
    "gates": ("float* forward_gates(", "const bool squeeze = st.squeeze;", [
        ("  if (ce) {", "STE"),
        ("    float* win_t = scratch.floats(", "CE squeeze product"),
        ("    // g2 = W_ex (C, r)", "CE temporal conv, relu"),
        ("    sigmoid_inplace(g2p, s.nt * s.c);", "CE expand product"),
        ("  if (me) {", "CE sigmoid"),
        ("    float* dp = v.d;", "ME product or batch stats"),
        ("    // g3 = W_ex", "ME head"),
        ("    sigmoid_inplace(g3p, s.nt * s.c);", "ME expand product"),
        ("  float* gate_c = scratch.floats", "ME sigmoid"),
        ("  return gate_c;", "gate_c"),
    ]),
    "backward": ("std::vector<Tensor> action_backward(Tensor g", "const Shape s = shape_of(x, t);", [
        ("  // B1: recompute xs;", "setup"),
        ("  float *d_cm = nullptr, *d_sm = nullptr, *dsqp", "B1"),
        ("  if (ce) {", "STE backward"),
        ("  if (me) {", "CE backward"),
        ("  // B2+B3 in one pass", "ME backward"),
        ("  return {big, dk, gw_ste, gw_cs, gw_ct, gw_ce, gw_ms, g_bnw, g_bnb, gw_dw, gw_me};\n}", "B23"),
    ]),
}


def instrumented_source(profile: str, src: str) -> str:
    """The kernel source ``src`` with the profile's clock reads; a missing anchor is an error."""
    head, first, marks = PROFILES[profile]
    src = src.replace("namespace {", TIMERS + "\nnamespace {", 1)
    pos = src.index(head)
    pos = src.index(first, pos) + len(first)
    src = src[:pos] + " kernel_timers::start(s.c);" + src[pos:]
    for i, (anchor, name) in enumerate(marks):
        at = src.find(anchor, pos)
        if at < 0:
            sys.exit(f"kernel_timers: profile {profile!r}: anchor for {name!r} not found: {anchor!r}")
        read = f"kernel_timers::mark({i});\n"
        src = src[:at] + read + src[at:]
        pos = at + len(read) + len(anchor)
    return src + READ


def build(profile: str, src: str, what: str):
    """The instrumented kernel module built from ``src`` (``what`` names it in errors)."""
    src = instrumented_source(profile, src)
    name = "action_timers_" + hashlib.sha1(src.encode()).hexdigest()[:8]
    mod = _cpp.load_extension(name, src, (*_kernel._FUNCTIONS, "kernel_timers_read"))
    if mod is None:
        sys.exit(f"kernel_timers: the instrumented kernel of {what} did not build (see the warning above)")
    return mod


def table(title: str, names: list[str], ms: torch.Tensor) -> None:
    """One table: a row per pass, a column per channel-count stage, then the total."""
    print(title)
    print(f"{'pass':<28}{'C<512':>8}{'<1024':>8}{'<2048':>8}{'2048':>8}{'all':>8}")
    for i, n in enumerate(names):
        row = ms[:, i].tolist()
        print(f"{n:<28}" + "".join(f"{v:>8.3f}" for v in row) + f"{sum(row):>8.3f}")
    total = ms[:, : len(names)]
    print(f"{'total':<28}" + "".join(f"{v:>8.3f}" for v in total.sum(1).tolist()) + f"{total.sum().item():>8.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="forward")
    p.add_argument("--mode", choices=("infer", "train"), default="infer",
                   help="the steps run: inference (eval, no_grad) or training (forward + backward)")  # fmt: skip
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rev", help="also time the kernel at this git revision, its steps alternating with the "
                   "tree's, and print both and their difference (paired)")  # fmt: skip
    args = p.parse_args()
    if args.profile == "backward" and args.mode != "train":
        p.error("--profile backward needs --mode train")

    mods = {"tree": build(args.profile, _kernel._source(), "this tree")}
    if args.rev:
        mods["rev"] = build(args.profile, source_at(args.rev), args.rev)
    _heap.keep_heap()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = actionlib.build_model("action", "resnet50", 174, args.frames)
    x = torch.randn(args.clips, args.frames, 3, args.size, args.size)
    y = torch.zeros(args.clips, dtype=torch.long)

    loader = _kernel.kernels
    order = list(mods)
    try:
        for i in range(args.warmup + args.repeats):
            if i == args.warmup:
                for mod in mods.values():
                    mod.kernel_timers_read()
            # each side's step in turn, the order swapped every round (the second finds memory warm)
            for side in order if i % 2 else order[::-1]:
                _kernel.kernels = lambda m=mods[side]: m  # this process's modules run that build
                step(model, x, y, args.mode)
    finally:
        _kernel.kernels = loader
    ms = {side: mod.kernel_timers_read() * 1e3 / args.repeats for side, mod in mods.items()}
    names = [name for _, name in PROFILES[args.profile][2]]
    head = (f"ACTION-ResNet-50, {args.clips} x {args.frames} x {args.size}x{args.size}, {args.mode}, "
            f"{args.threads} threads, profile {args.profile}: ms per step, mean of {args.repeats}")  # fmt: skip
    if not args.rev:
        return table(head, names, ms["tree"])
    table(f"{head}; the kernel at {args.rev}", names, ms["rev"])
    table("this tree's kernel (its steps alternating with those above)", names, ms["tree"])
    table(f"this tree - {args.rev}", names, ms["tree"] - ms["rev"])


if __name__ == "__main__":
    main()
