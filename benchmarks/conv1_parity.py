"""How much of ACTION's inference ratio comes from the kernel's matrix product, not from ACTION.

In channels_last inference each ACTION module and the 1x1 ``conv1`` after it run as one kernel
call (``actionlib.ops._kernel.action_then_conv``): the convolution is then the kernel's own
AVX-512 matrix product, not oneDNN's. Where that product is faster than oneDNN's convolution
(on this CPU: layer 4's shapes), ACTION/TSN understates what ACTION itself costs. This script
measures, side by side in one run (interleaved rounds, medians):

- TSN as built (its ``conv1`` layers run by oneDNN),
- "TSN, kernel conv1": the same TSN with each of the 16 ``conv1`` layers run by the kernel's
  product, blocked and packed exactly as in the fused call (the pack copies ``x`` instead of
  forming ACTION's output),
- ACTION (fused).

and prints ACTION/TSN, ACTION/"TSN, kernel conv1" (ACTION's cost with the convolution's speed
the same on both sides), and "TSN, kernel conv1"/TSN (the product's own gain or loss). Inference
only (``eval`` + ``no_grad``), ResNet-50, channels_last.

    python benchmarks/conv1_parity.py [--repeats 21] [--threads 2] [--clips 2 --frames 8 --size 112]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch import nn

import actionlib
from actionlib import _cpp
from actionlib.models import to_channels_last
from actionlib.ops import _kernel

# The fused call's pass with ACTION taken out: the same blocks, chunks and product; the pack
# copies x (the fused call forms the module's output there).
PLAIN = r"""
Tensor plain_conv1x1_nhwc(Tensor x, Tensor w_t) {
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast) && w_t.size(0) == x.size(1), "bad input");
  const int64_t c = x.size(1), o = w_t.size(1), rows = x.size(0) * x.size(2) * x.size(3);
  Tensor y = at::empty({x.size(0), o, x.size(2), x.size(3)}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t kc = std::min(c, std::max<int64_t>(64, (int64_t(1) << 16) / o / 16 * 16));
  const int64_t ld = kc % 256 ? kc : kc + 16;
  const int64_t most = std::clamp<int64_t>((int64_t(1) << 16) / kc / 6 * 6, 6, 240);
  const int64_t nblocks = std::max((rows + most - 1) / most, int64_t(at::get_num_threads()));
  const int64_t block = ((rows + nblocks - 1) / nblocks + 5) / 6 * 6;
  at::parallel_for(0, (rows + block - 1) / block, 1, [&](int64_t b, int64_t e) {
    std::unique_ptr<float[]> buf(new float[block * ld]);
    for (int64_t i = b; i < e; ++i) {
      const int64_t q0 = i * block, q1 = std::min(rows, q0 + block);
      for (int64_t c0 = 0; c0 < c; c0 += kc) {
        const int64_t nc = std::min(kc, c - c0);
        for (int64_t q = q0; q < q1; ++q) std::copy(xp + q * c + c0, xp + q * c + c0 + nc, buf.get() + (q - q0) * ld);
        gemm({buf.get(), 0, ld, 1}, {w_t.data_ptr<float>() + c0 * o, 0, o, 1}, yp + q0 * o, o, 1, nc, o, 0, q1 - q0,
             c0 > 0);
      }
    }
  });
  return y;
}
"""


class KernelConv1x1(nn.Module):
    """A bias-free 1x1 convolution run by the kernel's product (channels_last input)."""

    def __init__(self, conv: nn.Conv2d, ext) -> None:
        super().__init__()
        self.ext = ext
        self.register_buffer("w_t", conv.weight.detach().reshape(conv.out_channels, -1).t().contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ext.plain_conv1x1_nhwc(x.contiguous(memory_format=torch.channels_last), self.w_t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=21, help="timed rounds after 2 warm-up rounds (default 21)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if _kernel.kernels() is None:
        raise SystemExit("conv1_parity: the ACTION kernel did not build (or ACTIONLIB_NO_CPP is set)")
    ext = _cpp.load_extension("action_conv1_parity", _kernel._source() + PLAIN, ("plain_conv1x1_nhwc",))
    if ext is None:
        raise SystemExit("conv1_parity: the benchmark's extension did not build")

    torch.manual_seed(0)
    tsn = to_channels_last(actionlib.build_model("tsn", "resnet50", 174, args.frames)).eval()
    tsn_k = copy.deepcopy(tsn)
    swapped = 0
    for name in ("layer1", "layer2", "layer3", "layer4"):
        for block in tsn_k.backbone.get_submodule(name):
            block.conv1 = KernelConv1x1(block.conv1, ext)
            swapped += 1
    action = to_channels_last(actionlib.build_model("action", "resnet50", 174, args.frames)).eval()
    x = torch.randn(args.clips, args.frames, 3, args.size, args.size)
    with torch.no_grad():  # the swap changes the numbers only by float rounding
        err = ((tsn_k(x) - tsn(x)).abs().max() / tsn(x).abs().max()).item()
    if err > 1e-4:
        raise SystemExit(f"conv1_parity: the kernel's conv1 disagrees with oneDNN's (relative error {err:.2e})")

    models = {"tsn": tsn, "tsn_k": tsn_k, "action": action}
    times: dict[str, list[float]] = {k: [] for k in models}
    order = list(models)
    for i in range(2 + args.repeats):
        for name in order if i % 2 else order[::-1]:
            t0 = time.perf_counter()
            with torch.no_grad():
                models[name](x)
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"ResNet-50 (channels_last), inference, {args.clips} clips x {args.frames} frames x {args.size}x{args.size}, "
          f"{args.threads} threads, medians of {args.repeats} rounds; {swapped} conv1 layers swapped")  # fmt: skip
    print(f"TSN {med['tsn']:.1f} ms | TSN, kernel conv1 {med['tsn_k']:.1f} ms | ACTION (fused) {med['action']:.1f} ms")
    print(f"ACTION / TSN {med['action'] / med['tsn']:.3f} | ACTION / TSN-kernel-conv1 {med['action'] / med['tsn_k']:.3f}"
          f" | TSN-kernel-conv1 / TSN {med['tsn_k'] / med['tsn']:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
