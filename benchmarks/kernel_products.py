"""ME's three full-size matrix products, timed alone at ACTION-ResNet-50's shapes.

In training, ME costs three products of r x C x (N*T*H*W) multiply-adds per module (r = C / 16):
its squeeze sq[f] = W xs[f] in the forward pass (F1), its weight gradient dW = sum_f dsq[f] xs[f]^T
and its data gradient E[f] = W^T dsq[f] in the backward pass (ME's gate backward and B23). Together
they are ~2.4 G multiply-adds per train step at 2 x 8 x 112 x 112, ~5% of TSN-ResNet-50's step. This
script builds ``actionlib/ops/action_cpu.cpp`` with a timing function appended that calls the
kernel's own ``gemm`` / ``gemm_long_a`` the way the passes do (the squeeze by blocks of
``xs_block_rows`` channels with frames in parallel, dW by blocks of 32 rows, E by blocks of
channels and frames), on synthetic data, and prints ms per module and GMAC/s for each stage's
shape. The data are not the model's (xs is not fresh from F1's rows, nor E's output read by G),
so the figures bound what the products cost inside the model (benchmarks/kernel_timers.py) from
below; use them to compare tilings. For reference it prints a square float32 ``torch.mm`` rate.

    python benchmarks/kernel_products.py [--threads 2] [--repeats 20]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time

import torch

from actionlib import _cpp
from actionlib.ops import _kernel

TIMING = r"""
#include <chrono>
#include <functional>
// ms per call of each product {squeeze, dW, E} over all n * t frames, mean of `reps` after one
std::vector<double> kernel_products_time(int64_t n, int64_t t, int64_t c, int64_t h, int64_t w, int64_t reps) {
  const Shape s{n * t, n, t, c, h, w, h * w};
  const int64_t r = std::max<int64_t>(1, c / 16), frame = c * s.p;
  std::vector<float> xs(s.nt * frame), wm(r * c), sq(s.nt * r * s.p), dsq(s.nt * r * s.p), dsqt(s.nt * s.p * r),
      gw(c * r);
  for (size_t i = 0; i < xs.size(); ++i) xs[i] = float((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  for (size_t i = 0; i < wm.size(); ++i) wm[i] = float((i * 40503u) % 1000) * 1e-3f - 0.5f;
  for (size_t i = 0; i < dsq.size(); ++i) dsq[i] = dsqt[i] = float((i * 69069u) % 1000) * 1e-3f - 0.5f;
  const int64_t rows = xs_block_rows(s), block = std::max<int64_t>(8, std::min<int64_t>(c, 8192 / s.p) / 8 * 8);
  const View w_me{wm.data(), 0, c, 1}, wt{wm.data(), 0, 1, c};
  auto squeeze = [&] {
    at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
      for (int64_t f = b; f < e; ++f)
        for (int64_t c0 = 0; c0 < c; c0 += rows)
          gemm(w_me.at(0, c0), {xs.data() + f * frame + c0 * s.p, 0, s.p, 1}, sq.data() + f * r * s.p, s.p, 1,
               std::min(rows, c - c0), s.p, 0, r, c0 > 0);
    });
  };
  auto weight_grad = [&] {
    at::parallel_for(0, (c + 31) / 32, 1, [&](int64_t b, int64_t e) {
      gemm_long_a({xs.data(), frame, s.p, 1}, {dsqt.data(), s.p * r, r, 1}, gw.data(), -c, s.nt, s.p, r, b * 32,
                  std::min(c, e * 32));
    });
  };
  auto data_grad = [&] {
    at::parallel_for(0, (c + block - 1) / block, 1, [&](int64_t b, int64_t e) {
      std::vector<float> ebuf(block * s.p);
      for (int64_t c0 = b * block; c0 < std::min(c, e * block); c0 += block)
        for (int64_t f = 0; f < s.nt; ++f) {
          const int64_t nc = std::min(block, c - c0);
          if (s.p >= 64)
            gemm(wt.at(c0, 0), {dsq.data() + f * r * s.p, 0, s.p, 1}, ebuf.data(), s.p, 1, r, s.p, 0, nc);
          else
            gemm({dsqt.data() + f * s.p * r, 0, r, 1}, {wt.p + c0, 0, c, 1}, ebuf.data(), -s.p, 1, r, nc, 0, s.p);
        }
    });
  };
  const std::function<void()> fns[3] = {squeeze, weight_grad, data_grad};
  std::vector<double> ms(3, 0.0);
  for (int64_t i = 0; i <= reps; ++i)
    for (int j = 0; j < 3; ++j) {
      const auto t0 = std::chrono::steady_clock::now();
      fns[j]();
      if (i > 0) ms[j] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
  for (auto& v : ms) v /= reps;
  return ms;
}
"""

# ResNet-50's modules at 112 x 112 input: (C, H = W, count)
STAGES = [(64, 28, 1), (256, 28, 3), (512, 14, 4), (1024, 7, 6), (2048, 4, 2)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()

    src = _kernel._source() + TIMING
    name = "action_products_" + hashlib.sha1(src.encode()).hexdigest()[:8]
    mod = _cpp.load_extension(name, src, ("kernel_products_time",))
    if mod is None:
        sys.exit("kernel_products: the kernel did not build (see the warning above)")
    torch.set_num_threads(args.threads)
    nt = args.clips * args.frames
    print(f"ME's products, {args.clips} x {args.frames} frames (ResNet-50 at 112 x 112), {args.threads} threads, "
          f"mean of {args.repeats}")  # fmt: skip
    print(f"{'C':>5}{'HxW':>7}{'modules':>8} | ms per module:{'squeeze':>8}{'dW':>8}{'E':>8} | GMAC/s:"
          f"{'squeeze':>8}{'dW':>8}{'E':>8}")  # fmt: skip
    total = [0.0, 0.0, 0.0]
    for c, hw, count in STAGES:
        ms = mod.kernel_products_time(args.clips, args.frames, c, hw, hw, args.repeats)
        gmac = max(1, c // 16) * c * hw * hw * nt / 1e9
        rates = "".join(f"{gmac / v * 1e3:>8.1f}" for v in ms)
        times = "".join(f"{v:>8.3f}" for v in ms)
        print(f"{c:>5}{f'{hw}x{hw}':>7}{count:>8} | {'':>14}{times} | {'':>7}{rates}")
        total = [a + count * v for a, v in zip(total, ms)]
    print(f"per train step (all modules): squeeze {total[0]:.2f} ms, dW {total[1]:.2f} ms, E {total[2]:.2f} ms")
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    print(f"reference: torch.mm 1024^3 float32 at {1024**3 / ((time.perf_counter() - t0) / 10) / 1e9:.1f} GMAC/s")


if __name__ == "__main__":
    main()
