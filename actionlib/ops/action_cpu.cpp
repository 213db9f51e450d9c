// The whole ACTION module (spec section 2) on CPU, float32: forward and backward.
//
// Shapes: x (NT, C, H, W) contiguous, N clips of T frames, P = H*W, r = C/16.
// The full-size tensors are touched in a few fused passes; everything else is small:
//   forward   F1  x -> [xs (in the output's buffer)], channel mean cm (NT, P), spatial mean sm
//                 [and ME's squeeze sq[f] = W xs[f], summed block by block of channels as xs is written]
//             gates from cm, sm, sq (small loops and matrix products, no autograd nodes)
//             F2  out = xs * (gate_c[nt, c] + gate_s[nt, p])          (in place)
//   backward  B1  g, x -> d gate_c (NT, C), d gate_s (NT, P) [and xs for ME's weight gradient]
//             gate backward (small); ME: dW = sum_f dsq[f] xs[f]^T
//             B23 G = g * (gate_c + gate_s) + d cm / C + d sm / P [+ E = W^T dsq, formed block
//                 by block], and in the same pass dx = shift^T(G) and dk
// Only x is kept for the backward pass (xs is recomputed), plus one block of small tensors (the
// statistics and gates, Smalls); temporaries come from a per-call Scratch.
// In training the two are one autograd node made here (ActionNode, action_train, at the end).
// All matrix products, the squeeze's and the gate networks', run in gemm() below (register-tiled
// AVX-512); dx, and the output where autograd keeps it, come from a cache of blocks (BufferCache).
// ME only ever uses spatial means of its maps, so its BatchNorm and depthwise 3x3 conv act on
// the nine "region sums" of the squeezed map (tap (a, b) of a zero-padded 3x3 conv reads all
// rows but the last / all / all but the first, likewise for columns).
// With BatchNorm on running statistics (evaluation) the region sums of the squeezed map are W
// times the region sums of xs (the squeeze is linear), so the full-size squeeze is skipped: F1
// takes the nine sums of every map of xs, one (r, C) @ (C, NT*9) product maps them through W,
// and F1 does not store xs at all (F2 forms it from x while writing the output).
// Where xs is not kept (evaluation, or no ME path), F1 reads x once, unshifted: the statistics are
// linear in x (stats_from_sums_of_x). NCHW does so in inference only (F1 of forward_nchw), on
// maps of <= 64 pixels 16 maps at a time (a lane per map, base_sums_16), and F2 then walks blocks
// of channels of a clip frame by frame, so that x is read from memory once.
// Channels_last input (memory (NT, H, W, C)) has passes of its own (forward_nhwc, and in
// action_backward B1, ME's weight gradient and B23): they walk pixels, rows of C channels, and
// share the gate networks and the saved tensors with the NCHW passes.
// Every reduction of the loops here runs in a fixed order on one thread (deterministic).
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
// SLEEF's exp of 16 floats (max. error 1 ulp), which ATen's AVX-512 kernels use; libtorch_cpu
// exports it.
extern "C" __m512 Sleef_expf16_u10(__m512);
#endif

using at::Tensor;

namespace {

struct Shape {
  int64_t nt, n, t, c, h, w, p;
};

// Memory for one call's temporaries (gate_c, CE's windows, ME's products, the backward's small
// gradients, ...): slices of a block from the CPU allocator, freed with the call. Inside the model
// an at::empty costs ~2.5-5 us (its code and the allocator's data cold after a convolution); the
// kernel made 336 of them per inference step of ACTION-ResNet-50 and 720 per train step, now 16
// (the outputs) and 192 (benchmarks/RESULTS.md). Slices are 64-byte aligned; a first block of
// `first` bytes (callers size it to hold everything), then blocks that at least double.
class Scratch {
 public:
  explicit Scratch(int64_t first) : next_size_(std::max<int64_t>(first, 4096)) {}
  float* floats(int64_t n) { return static_cast<float*>(take(n * int64_t(sizeof(float)))); }

 private:
  void* take(int64_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    if (bytes > left_) {
      const int64_t size = std::max(bytes, next_size_);
      blocks_.push_back(c10::GetCPUAllocator()->allocate(size));
      next_ = static_cast<char*>(blocks_.back().get());
      left_ = size;
      next_size_ = 2 * size;
    }
    void* p = next_;
    next_ += bytes;
    left_ -= bytes;
    return p;
  }

  std::vector<c10::DataPtr> blocks_;
  char* next_ = nullptr;
  int64_t left_ = 0, next_size_;
};

Shape shape_of(const Tensor& x, int64_t t) {
  Shape s{x.size(0), x.size(0) / t, t, x.size(1), x.size(2), x.size(3), x.size(2) * x.size(3)};
  return s;
}

// Row reductions (sum, dot product, sum of squared deviations) of n floats. GCC ends an
// `omp simd reduction` loop with a sequential sum of the vector lanes through memory (~16
// dependent additions); on the short rows of layers 3-4 (16-49 values, ~200k rows per pass) that
// tail dominated the passes. With AVX-512 the lanes stay in registers (two accumulators, masked
// tail) and are summed by a shuffle tree; elsewhere the plain loops below.
#if defined(__AVX512F__)
template <int kOp>  // 0: sum a, 1: sum a * b, 2: sum (a - m)^2
inline float reduce_row(const float* a, const float* b, float m, int64_t n) {
  const __m512 vm = _mm512_set1_ps(m);
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  auto term = [&](__m512 acc, __m512 va, __m512 vb) {
    if (kOp == 0) return _mm512_add_ps(acc, va);
    if (kOp == 1) return _mm512_fmadd_ps(va, vb, acc);
    const __m512 d = _mm512_sub_ps(va, vm);
    return _mm512_fmadd_ps(d, d, acc);
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = term(s0, _mm512_loadu_ps(a + i), kOp == 1 ? _mm512_loadu_ps(b + i) : vm);
    s1 = term(s1, _mm512_loadu_ps(a + i + 16), kOp == 1 ? _mm512_loadu_ps(b + i + 16) : vm);
  }
  for (; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u);
    const __m512 va = _mm512_maskz_loadu_ps(k, a + i);
    s0 = _mm512_mask_mov_ps(s0, k, term(s0, va, kOp == 1 ? _mm512_maskz_loadu_ps(k, b + i) : vm));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
inline float sum_row(const float* a, int64_t n) { return reduce_row<0>(a, nullptr, 0.f, n); }
inline float dot_row(const float* a, const float* b, int64_t n) { return reduce_row<1>(a, b, 0.f, n); }
inline float sqdev_row(const float* a, float m, int64_t n) { return reduce_row<2>(a, nullptr, m, n); }
#else
inline float sum_row(const float* a, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i];
  return acc;
}
inline float dot_row(const float* a, const float* b, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
inline float sqdev_row(const float* a, float m, int64_t n) {
  float acc = 0.f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += (a[i] - m) * (a[i] - m);
  return acc;
}
#endif

// acc += row, element by element.
inline void add_to(float* acc, const float* row, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) acc[i] += row[i];
}

// One row (P values) of xs = k0 * x[t-1] + k1 * x[t] + k2 * x[t+1] (prev / next null at the ends of
// the clip), times (a + g[i]) (g null: times a): shift and excitation in one loop (pass F2).
template <bool kPrev, bool kNext>
inline void shift_scale_row(const float* prev, const float* cur, const float* next, const float* k, float a,
                            const float* g, float* out, int64_t p) {
  const float k0 = k[0], k1 = k[1], k2 = k[2];
  auto xs = [&](int64_t i) {
    if (kPrev && kNext) return k0 * prev[i] + k1 * cur[i] + k2 * next[i];
    if (kPrev) return k0 * prev[i] + k1 * cur[i];
    if (kNext) return k1 * cur[i] + k2 * next[i];
    return k1 * cur[i];
  };
  if (g) {
#pragma omp simd
    for (int64_t i = 0; i < p; ++i) out[i] = xs(i) * (a + g[i]);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < p; ++i) out[i] = xs(i) * a;
  }
}

inline void shift_scale_row(const float* prev, const float* cur, const float* next, const float* k, float a,
                            const float* g, float* out, int64_t p) {
  if (prev && next) shift_scale_row<true, true>(prev, cur, next, k, a, g, out, p);
  else if (prev) shift_scale_row<true, false>(prev, cur, next, k, a, g, out, p);
  else if (next) shift_scale_row<false, true>(prev, cur, next, k, a, g, out, p);
  else shift_scale_row<false, false>(prev, cur, next, k, a, g, out, p);
}

// One row of xs alone (the scaling by 1 is exact).
inline void shift_row(const float* prev, const float* cur, const float* next, const float* k, float* out,
                      int64_t p) {
  shift_scale_row(prev, cur, next, k, 1.f, nullptr, out, p);
}

// Pointers to row (frame f, channel c) and its temporal neighbours inside the clip.
inline void neighbours(const float* x, const Shape& s, int64_t f, int64_t c, const float** prev,
                       const float** cur, const float** next) {
  const int64_t frame = s.c * s.p, tt = f % s.t;
  *cur = x + f * frame + c * s.p;
  *prev = tt > 0 ? *cur - frame : nullptr;
  *next = tt + 1 < s.t ? *cur + frame : nullptr;
}

// Rows of channels per block of for_each_xs_row: the block's rows of three frames of x stay in a
// core's L2 (~50 KB a frame on large maps), and so does the block's part of ME's squeeze weight
// (r x rows) across the frames of a run: on small maps W is larger than a frame of x (r / P times:
// 8x at layer 4), and blocks of all channels read all of it for every frame (~-0.3 ms a train step
// with 128 rows there, benchmarks/kernel_timers.py --rev).
inline int64_t xs_block_rows(const Shape& s) { return s.p >= 512 ? 16 : s.p >= 128 ? 64 : 128; }

// The rows of xs = shift(x): row (f, c) is written into `keep` (a full-size tensor) or, when that is
// null, into a per-thread buffer, then handed to row_fn(f, c, row); block_done(f, c0, c1) follows
// the rows c0..c1 of frame f. Each clip's frames are cut into as many runs as the threads need
// (one run a clip when there are as many clips as threads), the runs in parallel; inside a run,
// blocks of xs_block_rows channels, and in each block the run's frames in order: row (t, c) of x
// is read as frame t+1's previous, frame t's own and frame t-1's next row within a block's time,
// from the cache (frame by frame, a layer-1 map's three frames of x overflowed L2). Each frame's
// channels are still visited in increasing order.
template <class RowFn, class BlockFn>
void for_each_xs_row(const float* x, const float* k, const Shape& s, int64_t rows, float* keep, RowFn&& row_fn,
                     BlockFn&& block_done) {
  const int64_t runs = std::min(s.t, (at::get_num_threads() + s.n - 1) / s.n);  // per clip
  at::parallel_for(0, s.n * runs, 1, [&](int64_t b, int64_t e) {
    std::vector<float> buf(keep ? 0 : s.p);
    for (int64_t u = b; u < e; ++u) {
      const int64_t n = u / runs, j = u % runs;
      const int64_t f0 = n * s.t + j * s.t / runs, f1 = n * s.t + (j + 1) * s.t / runs;
      for (int64_t c0 = 0; c0 < s.c; c0 += rows) {
        const int64_t c1 = std::min(s.c, c0 + rows);
        for (int64_t f = f0; f < f1; ++f) {
          for (int64_t c = c0; c < c1; ++c) {
            const float *prev, *cur, *next;
            neighbours(x, s, f, c, &prev, &cur, &next);
            float* o = keep ? keep + (f * s.c + c) * s.p : buf.data();
            shift_row(prev, cur, next, k + 3 * c, o, s.p);
            row_fn(f, c, static_cast<const float*>(o));
          }
          block_done(f, c0, c1);
        }
      }
    }
  });
}

// STE's 3x3x3 conv, 1 -> 1 channel, zero padding 1, on (N, T, H, W): out = conv(in). With
// `adjoint`, its adjoint w.r.t. the input: the kernel mirrored in all three dimensions, the taps
// visited in reverse order (the order a scatter-add of the forward would sum them in).
void conv333(const float* in, const float* wt, float* out, const Shape& s, bool adjoint = false) {
  at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t f = b; f < e; ++f) {
      const int64_t tt = f % s.t;
      float* o = out + f * s.p;
#if defined(__AVX512F__)
      // 16 outputs of a row at a time, summed in a register: each output's taps in the order of
      // the loops below (the same multiply-adds in the same order), without reading and writing
      // the output row back for each of the 27 taps
      for (int64_t y = 0; y < s.h; ++y)
        for (int64_t x0 = 0; x0 < s.w; x0 += 16) {
          const int64_t nx = std::min<int64_t>(16, s.w - x0);
          const __mmask16 row = __mmask16((1u << nx) - 1u);
          __m512 acc = _mm512_setzero_ps();
          for (int64_t ia = 0; ia < 3; ++ia) {
            const int64_t a = adjoint ? 2 - ia : ia;
            const int64_t ts = tt + a - 1;
            if (ts < 0 || ts >= s.t) continue;
            const float* src = in + (f + a - 1) * s.p;
            for (int64_t iy = 0; iy < 3; ++iy) {
              const int64_t dy = adjoint ? 2 - iy : iy;
              const int64_t ys = y + dy - 1;
              if (ys < 0 || ys >= s.h) continue;
              for (int64_t ix = 0; ix < 3; ++ix) {
                const int64_t dx = adjoint ? 2 - ix : ix;
                const int64_t tap = a * 9 + dy * 3 + dx;
                const __m512 wv = _mm512_set1_ps(wt[adjoint ? 26 - tap : tap]);
                __mmask16 k = row;  // the columns this tap reads inside the map
                if (dx == 0 && x0 == 0) k &= __mmask16(~1u);
                if (dx == 2 && x0 + nx == s.w) k &= __mmask16(~(1u << (nx - 1)));
                const __m512 sv = _mm512_maskz_loadu_ps(k, src + ys * s.w + x0 + dx - 1);
                acc = _mm512_mask3_fmadd_ps(wv, sv, acc, k);
              }
            }
          }
          _mm512_mask_storeu_ps(o + y * s.w + x0, row, acc);
        }
#else
      for (int64_t i = 0; i < s.p; ++i) o[i] = 0.f;
      for (int64_t ia = 0; ia < 3; ++ia) {
        const int64_t a = adjoint ? 2 - ia : ia;
        const int64_t ts = tt + a - 1;
        if (ts < 0 || ts >= s.t) continue;
        const float* src = in + (f + a - 1) * s.p;
        for (int64_t iy = 0; iy < 3; ++iy)
          for (int64_t ix = 0; ix < 3; ++ix) {
            const int64_t dy = adjoint ? 2 - iy : iy, dx = adjoint ? 2 - ix : ix;
            const int64_t tap = a * 9 + dy * 3 + dx;
            const float wv = wt[adjoint ? 26 - tap : tap];
            for (int64_t y = 0; y < s.h; ++y) {
              const int64_t ys = y + dy - 1;
              if (ys < 0 || ys >= s.h) continue;
              const int64_t x0 = dx == 0 ? 1 : 0, x1 = dx == 2 ? s.w - 1 : s.w;
              const float* srow = src + ys * s.w + dx - 1;
              float* orow = o + y * s.w;
              for (int64_t xx = x0; xx < x1; ++xx) orow[xx] += wv * srow[xx];
            }
          }
      }
#endif
    }
  });
}

// Adjoint of conv333 w.r.t. its input (d_in) and weight (d_w, 27 values).
void conv333_backward(const float* in, const float* wt, const float* dout, float* din, float* dw,
                      const Shape& s) {
  conv333(dout, wt, din, s, true);
  at::parallel_for(0, 27, 1, [&](int64_t tb, int64_t te) {  // the 27 taps are independent
    for (int64_t tap = tb; tap < te; ++tap) {
      const int64_t a = tap / 9, dy = tap / 3 % 3, dx = tap % 3;
      double acc = 0.0;
      for (int64_t f = 0; f < s.nt; ++f) {
        const int64_t ts = f % s.t + a - 1;
        if (ts < 0 || ts >= s.t) continue;
        const float* src = in + (f + a - 1) * s.p;
        const float* g = dout + f * s.p;
        for (int64_t y = 0; y < s.h; ++y) {
          const int64_t ys = y + dy - 1;
          if (ys < 0 || ys >= s.h) continue;
          const int64_t x0 = dx == 0 ? 1 : 0, x1 = dx == 2 ? s.w - 1 : s.w;
          const float* srow = src + ys * s.w + dx - 1;
          const float* grow = g + y * s.w;
          acc += dot_row(grow + x0, srow + x0, x1 - x0);
        }
      }
      dw[tap] = static_cast<float>(acc);
    }
  });
}

// CE's temporal conv as one matrix product, its windows transposed: o (r*3, NT),
// [i*3 + j, f] = z[f + j - 1, i] (zero outside the clip), from z (NT, r).
void windows_t(const float* zp, int64_t r, const Shape& s, float* o) {
  std::fill_n(o, r * 3 * s.nt, 0.f);
  for (int64_t f = 0; f < s.nt; ++f)
    for (int64_t j = 0; j < 3; ++j) {
      const int64_t ts = f % s.t + j - 1;
      if (ts < 0 || ts >= s.t) continue;
      const float* src = zp + (f + j - 1) * r;
      for (int64_t i = 0; i < r; ++i) o[(i * 3 + j) * s.nt + f] = src[i];
    }
}

// Adjoint of the windows: o = dz (NT, r), dz[f + j - 1, i] += dwin[f, i*3 + j].
void fold_windows(const float* d, const Shape& s, int64_t r, float* o) {
  std::fill_n(o, s.nt * r, 0.f);
  for (int64_t f = 0; f < s.nt; ++f)
    for (int64_t j = 0; j < 3; ++j) {
      const int64_t ts = f % s.t + j - 1;
      if (ts < 0 || ts >= s.t) continue;
      float* dst = o + (f + j - 1) * r;
      for (int64_t i = 0; i < r; ++i) dst[i] += d[f * r * 3 + i * 3 + j];
    }
}

// Region sizes |R_a| * |C_b| of the nine taps.
inline void region_sizes(const Shape& s, double* area) {
  const double rows[3] = {double(s.h - 1), double(s.h), double(s.h - 1)};
  const double cols[3] = {double(s.w - 1), double(s.w), double(s.w - 1)};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) area[a * 3 + b] = rows[a] * cols[b];
}

// Nine region sums of a map from its total, the sums of its first / last row and column, and its
// corners (0, 0), (0, W-1), (H-1, 0), (H-1, W-1): tap (a, b) leaves out a row and a column at the
// edge (or none), and the corner where both meet is added back.
inline void region_sums_of_edges(double total, double first_row, double last_row, double first_col,
                                 double last_col, const double* corners, double* v) {
  const double row_out[3] = {last_row, 0.0, first_row};  // what tap a leaves out
  const double col_out[3] = {last_col, 0.0, first_col};
  const double corner[3][3] = {{corners[3], 0.0, corners[2]}, {0, 0, 0}, {corners[1], 0.0, corners[0]}};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) v[a * 3 + b] = total - row_out[a] - col_out[b] + corner[a][b];
}

// The sums of one H x W map's first / last row and first / last column, then its corners (0, 0),
// (0, W-1), (H-1, 0), (H-1, W-1): e[0..7].
inline void edge_sums(const float* m, const Shape& s, float* e) {
  float first_col = 0.f, last_col = 0.f;  // two independent chains
  for (int64_t y = 0; y < s.h; ++y) {
    first_col += m[y * s.w];
    last_col += m[y * s.w + s.w - 1];
  }
  const float sums[8] = {sum_row(m, s.w), sum_row(m + (s.h - 1) * s.w, s.w), first_col, last_col,
                         m[0], m[s.w - 1], m[(s.h - 1) * s.w], m[s.p - 1]};
  std::copy(sums, sums + 8, e);
}

// Nine region sums of one H x W map, given the sum of all of it: only the edges are read.
inline void region_sums_from(const float* m, const Shape& s, double total, double* v) {
  float e[8];
  edge_sums(m, s, e);
  const double corners[4] = {e[4], e[5], e[6], e[7]};
  region_sums_of_edges(total, e[0], e[1], e[2], e[3], corners, v);
}

// Nine region sums of one H x W map.
inline void region_sums(const float* m, const Shape& s, double* v) {
  region_sums_from(m, s, sum_row(m, s.p), v);
}


// Matrix products for ME's 1x1 squeeze (C -> r channels) and its gradients. On this class of
// CPU MKL runs these skinny shapes at its AVX2 rate (~90 GMAC/s on two cores), and oneDNN
// reorders large NCHW maps and is slow for the data gradient with few output channels; the
// register-tiled AVX-512 loops below run them at 150-220 GMAC/s. Operands are strided views,
// A(f, m, k) = a[f*fs + m*rs + k*cs] and B(f, k, n) = b[f*fs + k*rs + n] (rows contiguous), and
// rows m0..m1 of C(m, n) = sum over f < nf, k < K of A(f, m, k) B(f, k, n) are written to
// c[m*ldc + n], or with ldc < 0 (C column-major) to c[n*(-ldc) + m]. Each element is summed in the order (f, k) by one accumulator: deterministic,
// whatever the split of the rows over threads.
struct View {
  const float* p;
  int64_t fs, rs, cs;
  View at(int64_t row, int64_t col) const { return {p + row * rs + col * cs, fs, rs, cs}; }
};

#if defined(__AVX512F__)
// One MR x (16*NV) tile of C in registers; the last vector of each row is masked by `last`.
// kAhead: A's rows are long streams (contiguous along k, frames a.fs apart), each tile prefetches
// its own rows 64 floats ahead (into the next frame near a frame's end); else the next tile's.
template <int MR, int NV, bool kAhead = false>
inline void gemm_tile(View a, View b, float* c, int64_t ldc, int64_t nf, int64_t k_len, __mmask16 last, bool add,
                      bool stream, bool add_after = false) {
  __m512 acc[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      acc[i][v] = add ? _mm512_maskz_loadu_ps(v + 1 < NV ? __mmask16(0xFFFF) : last, c + i * ldc + 16 * v)
                      : _mm512_setzero_ps();
  for (int64_t f = 0; f < nf; ++f) {
    const float* af = a.p + f * a.fs;
    const float* bf = b.p + f * b.fs;
    for (int64_t k = 0; k < k_len; ++k) {
      __m512 bv[NV];
      const float* brow = bf + k * b.rs;
      // B's row 8 ahead: the rows of a strip lie a whole row of B apart (3 KB for ME's squeeze at
      // layer 1), beyond what the hardware's stride prefetcher follows (prefetches never fault)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) _mm_prefetch(reinterpret_cast<const char*>(brow + 8 * b.rs + 16 * v), _MM_HINT_T0);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        bv[v] = v + 1 < NV ? _mm512_loadu_ps(brow + 16 * v) : _mm512_maskz_loadu_ps(last, brow + 16 * v);
      const float* ak = af + k * a.cs;
      if ((k & 15) == 0) {
        // kAhead: this tile's rows 4 lines ahead; else the next tile's rows, a line ahead of their use
        const float* ahead = !kAhead ? ak + MR * a.rs : k + 64 < k_len ? ak + 64 : af + a.fs + (k + 64 - k_len);
#pragma GCC unroll 32
        for (int i = 0; i < MR; ++i) _mm_prefetch(reinterpret_cast<const char*>(ahead + i * a.rs), _MM_HINT_T0);
      }
#pragma GCC unroll 32
      for (int i = 0; i < MR; ++i) {
        const __m512 ai = _mm512_set1_ps(ak[i * a.rs]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(ai, bv[v], acc[i][v]);
      }
    }
  }
  if (ldc > 0) {  // C row-major
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        float* out = c + i * ldc + 16 * v;
        const __mmask16 k = v + 1 < NV ? __mmask16(0xFFFF) : last;
        if (add_after)  // C += the product, summed apart
          _mm512_mask_storeu_ps(out, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, out), acc[i][v]));
        else if (stream && k == __mmask16(0xFFFF) && (reinterpret_cast<uintptr_t>(out) & 63) == 0)
          _mm512_stream_ps(out, acc[i][v]);  // a whole cache line, past the caches
        else
          _mm512_mask_storeu_ps(out, k, acc[i][v]);
      }
  } else if constexpr (MR == 8) {  // C column-major: column n's eight rows, c[n * -ldc + 0..7], one store
    const int cols = 16 * (NV - 1) + _mm_popcnt_u32(last);
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      __m512 t[8], u[8];
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {  // rows 2q and 2q + 1 interleaved within each 128-bit lane
        t[2 * q] = _mm512_unpacklo_ps(acc[2 * q][v], acc[2 * q + 1][v]);
        t[2 * q + 1] = _mm512_unpackhi_ps(acc[2 * q][v], acc[2 * q + 1][v]);
      }
      // lane L of u[m]: rows 0..3 of column 16v + 4L + m; of u[4 + m]: its rows 4..7
      u[0] = _mm512_shuffle_ps(t[0], t[2], 0x44);
      u[1] = _mm512_shuffle_ps(t[0], t[2], 0xEE);
      u[2] = _mm512_shuffle_ps(t[1], t[3], 0x44);
      u[3] = _mm512_shuffle_ps(t[1], t[3], 0xEE);
      u[4] = _mm512_shuffle_ps(t[4], t[6], 0x44);
      u[5] = _mm512_shuffle_ps(t[4], t[6], 0xEE);
      u[6] = _mm512_shuffle_ps(t[5], t[7], 0x44);
      u[7] = _mm512_shuffle_ps(t[5], t[7], 0xEE);
#pragma GCC unroll 4
      for (int m = 0; m < 4; ++m) {
        // lanes (u[m] 0, u[4+m] 0, u[m] 1, u[4+m] 1): columns m and 4 + m, all eight rows each;
        // likewise lanes 2 and 3: columns 8 + m and 12 + m
        const __m512 lo = _mm512_shuffle_f32x4(u[m], u[4 + m], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512 hi = _mm512_shuffle_f32x4(u[m], u[4 + m], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512 w[2] = {_mm512_shuffle_f32x4(lo, lo, _MM_SHUFFLE(3, 1, 2, 0)),
                             _mm512_shuffle_f32x4(hi, hi, _MM_SHUFFLE(3, 1, 2, 0))};
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const int j0 = 16 * v + 8 * h + m, j1 = j0 + 4;
          if (j0 < cols) _mm256_storeu_ps(c + j0 * -ldc, _mm512_castps512_ps256(w[h]));
          if (j1 < cols)  // the upper half (AVX-512F only: no DQ extract)
            _mm256_storeu_ps(c + j1 * -ldc, _mm512_castps512_ps256(_mm512_shuffle_f32x4(w[h], w[h], 0xEE)));
        }
      }
    }
  } else {  // C column-major: element (m, n) at c[n * -ldc + m]
    alignas(64) float tile[MR][16 * NV];
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) _mm512_store_ps(&tile[i][16 * v], acc[i][v]);
    const int cols = 16 * (NV - 1) + _mm_popcnt_u32(last);
    for (int j = 0; j < cols; ++j)
      for (int i = 0; i < MR; ++i) c[j * -ldc + i] = tile[i][j];
  }
}

// Rows m0..m1 of one column strip (16*NV columns), MR rows at a time.
template <int MR, int NV, bool kAhead = false>
void gemm_strip(View a, View b, float* c, int64_t ldc, int64_t nf, int64_t k_len, int64_t m0, int64_t m1,
                __mmask16 last, bool add, bool stream, bool add_after = false) {
  const int64_t step = ldc > 0 ? ldc : 1;  // from row m to row m + 1 of C
  int64_t m = m0;
  for (; m + MR <= m1; m += MR)
    gemm_tile<MR, NV, kAhead>(a.at(m, 0), b, c + m * step, ldc, nf, k_len, last, add, stream, add_after);
  if constexpr (MR > 3)  // the rest three rows at a time where it can: B is read a third as often
    for (; m + 3 <= m1; m += 3)
      gemm_tile<3, NV, kAhead>(a.at(m, 0), b, c + m * step, ldc, nf, k_len, last, add, stream, add_after);
  for (; m < m1; ++m)
    gemm_tile<1, NV, kAhead>(a.at(m, 0), b, c + m * step, ldc, nf, k_len, last, add, stream, add_after);
}

// The column strips of gemm() and gemm_long_a(): 48 columns at a time, then one strip of 1-3
// vectors; one-vector strips take kOneRows rows at a time.
template <bool kAhead, int kOneRows>
void gemm_strips(View a, View b, float* c, int64_t ldc, int64_t nf, int64_t k_len, int64_t n, int64_t m0, int64_t m1,
                 bool add, bool stream, bool add_after) {
  const int64_t col = ldc > 0 ? 1 : -ldc;  // from column j to column j + 1 of C
  int64_t j = 0;
  for (; j + 48 <= n; j += 48)
    gemm_strip<8, 3, kAhead>(a, b.at(0, j), c + j * col, ldc, nf, k_len, m0, m1, 0xFFFF, add, stream, add_after);
  const int64_t rest = n - j;  // 0..47 columns left: one strip of 1-3 vectors
  const __mmask16 last = rest % 16 ? __mmask16((1u << (rest % 16)) - 1u) : __mmask16(0xFFFF);
  if (rest > 32)
    gemm_strip<8, 3, kAhead>(a, b.at(0, j), c + j * col, ldc, nf, k_len, m0, m1, last, add, stream, add_after);
  else if (rest > 16)
    gemm_strip<12, 2, kAhead>(a, b.at(0, j), c + j * col, ldc, nf, k_len, m0, m1, last, add, stream, add_after);
  else if (rest > 0)
    gemm_strip<kOneRows, 1, kAhead>(a, b.at(0, j), c + j * col, ldc, nf, k_len, m0, m1, last, add, stream,
                                    add_after);
}

// `add`: C (row-major) += the product, each element's sum continued from its stored value (a
// product over K = K1 + K2 in two calls sums exactly as one call). `stream`: C (row-major) written
// with non-temporal stores where whole aligned lines are, for results nothing reads soon (the
// weight gradients); the caller orders them (_mm_sfence) before C is read. `add_after`: C
// (row-major) += the product summed on its own, c = c + (sum), as a product stored and then added.
void gemm(View a, View b, float* c, int64_t ldc, int64_t nf, int64_t k_len, int64_t n, int64_t m0, int64_t m1,
          bool add = false, bool stream = false, bool add_after = false) {
  gemm_strips<false, 8>(a, b, c, ldc, nf, k_len, n, m0, m1, add, stream, add_after);
}

// gemm() where A's rows are long streams, contiguous along k (a.cs = 1), over many frames: ME's
// weight gradient, A = xs (C, NT*P) from memory. Each tile prefetches its own rows ahead, and
// one-vector strips take 16 rows at a time (at r = 16 the whole product is one such strip).
// Isolated at layer 1 (xs from memory, one core): 52 -> 64 GMAC/s. The same sums in the same order.
void gemm_long_a(View a, View b, float* c, int64_t ldc, int64_t nf, int64_t k_len, int64_t n, int64_t m0,
                 int64_t m1) {
  gemm_strips<true, 16>(a, b, c, ldc, nf, k_len, n, m0, m1, false, false, false);
}
#else
void gemm(View a, View b, float* c, int64_t ldc, int64_t nf, int64_t k_len, int64_t n, int64_t m0, int64_t m1,
          bool add = false, bool /*stream*/ = false, bool add_after = false) {
  std::vector<float> row(n);
  for (int64_t m = m0; m < m1; ++m) {
    if (add) for (int64_t j = 0; j < n; ++j) row[j] = c[m * ldc + j];
    else std::fill(row.begin(), row.end(), 0.f);
    for (int64_t f = 0; f < nf; ++f)
      for (int64_t k = 0; k < k_len; ++k) {
        const float av = a.p[f * a.fs + m * a.rs + k * a.cs];
        const float* brow = b.p + f * b.fs + k * b.rs;
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) row[j] += av * brow[j];
      }
    if (add_after) for (int64_t j = 0; j < n; ++j) row[j] = c[m * ldc + j] + row[j];
    for (int64_t j = 0; j < n; ++j) c[ldc > 0 ? m * ldc + j : j * -ldc + m] = row[j];
  }
}
void gemm_long_a(View a, View b, float* c, int64_t ldc, int64_t nf, int64_t k_len, int64_t n, int64_t m0,
                 int64_t m1) {
  gemm(a, b, c, ldc, nf, k_len, n, m0, m1);
}
#endif

// C = A B, one (M x K) by (K x N) product with gemm() (nf = 1), on both threads: by blocks of
// rows where there are many, else by strips of columns; small products on the calling thread.
// `stream`: gemm()'s non-temporal stores, fenced before return.
void matmul(View a, View b, float* c, int64_t ldc, int64_t m, int64_t k, int64_t n, bool stream = false) {
  auto fence = [stream] {
#if defined(__AVX512F__)
    if (stream) _mm_sfence();
#endif
  };
  if (m * n * k < (1 << 16)) {
    gemm(a, b, c, ldc, 1, k, n, 0, m, false, stream);
    return fence();
  }
  if (m >= 64) {
    constexpr int64_t kRows = 32;
    at::parallel_for(0, (m + kRows - 1) / kRows, 1, [&](int64_t b0, int64_t b1) {
      gemm(a, b, c, ldc, 1, k, n, b0 * kRows, std::min(m, b1 * kRows), false, stream);
      fence();
    });
  } else {
    constexpr int64_t kCols = 48;
    const int64_t col = ldc > 0 ? 1 : -ldc;
    at::parallel_for(0, (n + kCols - 1) / kCols, 1, [&](int64_t b0, int64_t b1) {
      const int64_t j0 = b0 * kCols, j1 = std::min(n, b1 * kCols);
      gemm(a, b.at(0, j0), c + j0 * col, ldc, 1, k, j1 - j0, 0, m, false, stream);
      fence();
    });
  }
}

inline float* fp(const Tensor& t) { return t.data_ptr<float>(); }

// y = sigmoid(y) in place. With AVX-512, the numbers of ATen's AVX-512 kernel (torch.sigmoid_):
// the same chunks per thread (grain 32768, at::parallel_for), in each chunk pairs of vectors
// 1 / (1 + exp(0 - a)) by SLEEF's exp, the rest of the chunk by std::exp. But exp's argument is
// kept in [-20, 89], which changes no result: for a > 17, 1 + exp(-a) rounds to 1 either way, and
// for a < -88.8 exp(-a) is inf either way. Outside that range SLEEF works with subnormal floats
// (exp(-a) for a > 87; 2^q built from an overflowed exponent for a < -100 or so), each a slow
// microcode assist. The gates at layers 3-4 saturate often enough (in an untrained ResNet-50, most
// pre-activations lie beyond +-87) that ATen's sigmoid took ~1 ms per inference step there.
void sigmoid_inplace(float* a, int64_t n) {
#if defined(__AVX512F__)
  at::parallel_for(0, n, 32768, [&](int64_t b, int64_t e) {
    const __m512 one = _mm512_set1_ps(1.f), zero = _mm512_setzero_ps(), lo = _mm512_set1_ps(-20.f),
                 hi = _mm512_set1_ps(89.f);
    int64_t i = b;
    for (; i + 32 <= e; i += 32)
      for (int64_t j = i; j < i + 32; j += 16) {  // max / min (bound, NaN) is NaN: NaN stays NaN
        const __m512 u = _mm512_min_ps(hi, _mm512_max_ps(lo, _mm512_sub_ps(zero, _mm512_loadu_ps(a + j))));
        const __m512 v = Sleef_expf16_u10(u);
        _mm512_storeu_ps(a + j, _mm512_div_ps(one, _mm512_add_ps(v, one)));
      }
    for (; i < e; ++i) a[i] = 1.f / (1.f + std::exp(-a[i]));
  });
#else
  at::from_blob(a, {n}, at::TensorOptions().dtype(at::kFloat)).sigmoid_();
#endif
}

// o = d (pre-activation) of y = sigmoid(pre), from d y: dy * y * (1 - y)
void sigmoid_grad(const float* dp, const float* yp, int64_t n, float* o) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) o[i] = dp[i] * yp[i] * (1.f - yp[i]);
}

// The full-size tensors this kernel returns (the module's output, its input gradient) come from
// a cache of blocks kept by size, not from the system allocator. Blocks of megabytes are mapped
// fresh by glibc, and given back to the system when freed at the top of its heap; every step then
// faulted them in again, page by page and zeroed (tens of thousands of faults per training step of
// ACTION-ResNet-50, ~20 ms). A freed block goes back to the cache, up to `limit` bytes in all
// (ACTIONLIB_BUFFER_CACHE_MB, default 2048; 0 turns the cache off); clear_buffer_cache() frees
// the blocks not in use.
class BufferCache {
 public:
  static BufferCache& get() {
    static BufferCache* cache = new BufferCache;  // never destroyed: tensors may outlive exit
    return *cache;
  }

  // A float tensor of `sizes` (4-D with `channels_last`: NHWC strides); with `cached` false, or the
  // cache off, from the system allocator.
  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opt, bool channels_last = false, bool cached = true) {
    int64_t numel = 1;
    for (const int64_t n : sizes) numel *= n;
    const size_t bytes = (size_t(numel) * sizeof(float) + 63) / 64 * 64;
    const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    if (!cached || limit_ == 0 || bytes == 0) return at::empty(sizes, opt.memory_format(format));
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
      }
    }
    if (!p) p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    auto deleter = [this, bytes](void* q) { release(q, bytes); };
    if (channels_last)
      return at::from_blob(p, sizes, {sizes[1] * sizes[2] * sizes[3], 1, sizes[3] * sizes[1], sizes[1]}, deleter, opt);
    return at::from_blob(p, sizes, deleter, opt);
  }

  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& kv : free_)
      for (void* p : kv.second) std::free(p);
    free_.clear();
    cached_ = 0;
  }

 private:
  BufferCache() {
    const char* env = std::getenv("ACTIONLIB_BUFFER_CACHE_MB");
    limit_ = size_t(env ? std::max(0L, std::atol(env)) : 2048L) << 20;
  }

  void release(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= limit_) {
        free_[bytes].push_back(p);
        cached_ += bytes;
        return;
      }
    }
    std::free(p);
  }

  std::mutex mutex_;
  std::unordered_map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0, limit_ = 0;
};

}  // namespace

// Frees the cached blocks of the kernel's outputs that no tensor uses (see BufferCache).
void clear_buffer_cache() { BufferCache::get().clear(); }

// The small tensors the backward pass needs of the forward's (statistics, gates, ME's squeeze on
// batch statistics), laid out in one block: in training one tensor kept for autograd instead of
// twelve, each an allocation (~2.5-5 us inside the model, its code and the allocator's data cold
// after a convolution) and a saved variable; in inference a slice of the call's Scratch. Null
// where no path uses them. Shapes: cm, g1 (NT, P); sm (C, NT); z1, z2, d (NT, r); g2, g3 (NT, C);
// sq (NT, r, H, W); mu, invstd (r); vsq (NT, r, 9) doubles.
struct Smalls {
  float *cm, *g1, *sm, *z1, *z2, *g2, *sq, *mu, *invstd, *d, *g3;
  double* vsq;
};

// The block's size in floats; with `base`, the pointers into it (64-byte aligned slices). The
// forward and the backward pass lay it out alike from the same arguments.
int64_t small_layout(const Shape& s, bool ste, bool ce, bool me, int64_t r_ce, int64_t r_me, bool squeeze,
                     float* base, Smalls* v) {
  int64_t n = 0;
  auto take = [&](bool on, int64_t count) -> float* {
    if (!on) return nullptr;
    float* p = base ? base + n : nullptr;
    n += (count + 15) / 16 * 16;
    return p;
  };
  Smalls o;
  o.cm = take(ste, s.nt * s.p);
  o.g1 = take(ste, s.nt * s.p);
  o.sm = take(ce, s.c * s.nt);
  o.z1 = take(ce, s.nt * r_ce);
  o.z2 = take(ce, s.nt * r_ce);
  o.g2 = take(ce, s.nt * s.c);
  o.sq = take(squeeze, s.nt * r_me * s.p);
  o.mu = take(me, r_me);
  o.invstd = take(me, r_me);
  o.vsq = reinterpret_cast<double*>(take(me, 2 * s.nt * r_me * 9));
  o.d = take(me, s.nt * r_me);
  o.g3 = take(me, s.nt * s.c);
  if (v) *v = o;
  return n;
}

// What F1 produces for the gates, in both memory layouts: the output buffer (it holds xs between F1
// and F2 when `squeeze`), and in the call's Smalls the channel mean cm (NT, P), the spatial mean
// sm (C, NT) and ME's squeeze sq (NT, r, H, W) on batch statistics; ME's region sums of xs rsx
// (C, NT*9) on running statistics in the Scratch. The output comes from the block cache when
// `cache_out` (autograd keeps it until the backward pass); else from the system allocator: in
// inference the output dies within its block, and the allocator hands out a block freed a moment
// ago, still in the cache, where BufferCache's block was last written a whole residual block
// earlier (channels_last inference ~2% faster with the heap kept, NCHW level; benchmarks/RESULTS.md).
struct Stats {
  Tensor out;
  float* rsxp;  // null where not needed (cm, sm and sq are in the Smalls)
  bool squeeze;
};

Stats stats_buffers(const Tensor& x, const Shape& s, bool me, bool batch_stats, bool channels_last, bool cache_out,
                    const Smalls& v, Scratch& scratch) {
  const bool squeeze = me && batch_stats;
  float* rsx = me && !squeeze ? scratch.floats(s.c * s.nt * 9) : nullptr;  // [c, f*9 + ab]
  if (v.cm) std::fill_n(v.cm, s.nt * s.p, 0.f);
  return {BufferCache::get().empty(x.sizes(), x.options(), channels_last, cache_out), rsx, squeeze};
}

// gate_c (NT, C) = the number of paths + CE's gate g2 + ME's gate g3 (a null one left out): the
// forward pass forms it, and the backward pass again (it is not saved).
void channel_gate(const Shape& s, double npaths, const float* g2, const float* g3, float* gate_c) {
  std::fill_n(gate_c, s.nt * s.c, float(npaths));
  if (g2) add_to(gate_c, g2, s.nt * s.c);
  if (g3) add_to(gate_c, g3, s.nt * s.c);
}

// The gate networks on F1's statistics (both layouts), into v: STE's sigmoid gate g1 (NT, P), CE's
// and ME's sigmoid gates g2, g3 (NT, C) and what the backward pass needs of their networks; returns
// gate_c (NT, C) = the number of paths + g2 + g3, in the Scratch.
float* forward_gates(const Shape& s, const Stats& st, bool ste, bool ce, bool me, const Tensor& ste_w,
                     const Tensor& ce_sq, const Tensor& ce_t, const Tensor& ce_ex, const Tensor& me_sq,
                     const Tensor& bn_w, const Tensor& bn_b, const Tensor& bn_rm, const Tensor& bn_rv, double factor,
                     double eps, const Tensor& me_dw, const Tensor& me_ex, const Smalls& v, Scratch& scratch) {
  const bool squeeze = st.squeeze;
  const float *cmp = v.cm, *smp = v.sm, *rsxp = st.rsxp, *sqw = v.sq;
  float *g2p = v.g2, *g3p = v.g3;
  if (ste) {
    conv333(cmp, ste_w.data_ptr<float>(), v.g1, s);
    sigmoid_inplace(v.g1, s.nt * s.p);
  }
  if (ce) {
    const int64_t r = ce_sq.size(0);
    // each product formed transposed, A^T B^T, and stored column-major: (NT, ...) row-major
    float* z1p = v.z1;  // W_sq (r, C) @ sm^T (C, NT)
    matmul({fp(ce_sq), 0, s.c, 1}, {smp, 0, s.nt, 1}, z1p, -r, r, s.c, s.nt);
    float* win_t = scratch.floats(r * 3 * s.nt);
    windows_t(z1p, r, s, win_t);
    float* z2p = v.z2;  // W_t (r, 3r) @ windows^T (3r, NT)
    matmul({fp(ce_t), 0, 3 * r, 1}, {win_t, 0, s.nt, 1}, z2p, -r, r, 3 * r, s.nt);
    float* atp = scratch.floats(r * s.nt);  // relu(z2)^T (r, NT)
    for (int64_t f = 0; f < s.nt; ++f)
      for (int64_t i = 0; i < r; ++i) atp[i * s.nt + f] = std::max(z2p[f * r + i], 0.f);
    // g2 = W_ex (C, r) @ relu(z2)^T (r, NT)
    matmul({fp(ce_ex), 0, r, 1}, {atp, 0, s.nt, 1}, g2p, -s.c, s.c, r, s.nt);
    sigmoid_inplace(g2p, s.nt * s.c);
  }
  if (me) {
    const int64_t r = me_sq.size(0);
    float *mup = v.mu, *isp = v.invstd;
    double* vp = v.vsq;  // ME's region sums (NT, r, 9)
    if (squeeze) {
      const float* sqp = sqw;
      const int64_t m = s.nt * s.p;
      float* rm = bn_rm.numel() ? bn_rm.data_ptr<float>() : nullptr;
      float* rv = bn_rv.numel() ? bn_rv.data_ptr<float>() : nullptr;
      // batch statistics per channel (two passes; rows summed in float lanes, in double across rows)
      at::parallel_for(0, r, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          double s1 = 0, s2 = 0;
          for (int64_t f = 0; f < s.nt; ++f) s1 += sum_row(sqp + (f * r + i) * s.p, s.p);
          const double mean = s1 / m;
          const float meanf = float(mean);
          for (int64_t f = 0; f < s.nt; ++f) {
            s2 += sqdev_row(sqp + (f * r + i) * s.p, meanf, s.p);
          }
          const double var = s2 / m;
          if (factor > 0 && rm) {
            rm[i] = float((1 - factor) * rm[i] + factor * mean);
            rv[i] = float((1 - factor) * rv[i] + factor * (m > 1 ? s2 / (m - 1) : var));
          }
          mup[i] = meanf;
          isp[i] = float(1.0 / std::sqrt(var + eps));
        }
      });
      at::parallel_for(0, s.nt * r, 16, [&](int64_t b, int64_t e) {
        for (int64_t q = b; q < e; ++q) region_sums(sqp + q * s.p, s, vp + q * 9);
      });
    } else {  // running statistics; region sums of W xs = W (region sums of xs)
      const float *rmp = fp(bn_rm), *rvp = fp(bn_rv);
      for (int64_t i = 0; i < r; ++i) {
        mup[i] = rmp[i];
        isp[i] = float(1.0 / std::sqrt(double(rvp[i]) + eps));
      }
      float* pp = scratch.floats(r * s.nt * 9);  // one product: W (r, C) @ rsx (C, NT*9)
      matmul({fp(me_sq), 0, s.c, 1}, {rsxp, 0, s.nt * 9, 1}, pp, s.nt * 9, r, s.c, s.nt * 9);
      for (int64_t i = 0; i < r; ++i)
        for (int64_t f = 0; f < s.nt; ++f)
          for (int ab = 0; ab < 9; ++ab) vp[(f * r + i) * 9 + ab] = pp[(i * s.nt + f) * 9 + ab];
    }
    float* dp = v.d;
    float* dtp = scratch.floats(r * s.nt);  // d transposed, for the expand product
    double area[9];
    region_sizes(s, area);
    const float *gm = bn_w.data_ptr<float>(), *bt = bn_b.data_ptr<float>(), *dw = me_dw.data_ptr<float>();
    for (int64_t f = 0; f < s.nt; ++f) {
      if (f % s.t == s.t - 1) {  // d[T-1] = 0
        for (int64_t i = 0; i < r; ++i) dp[f * r + i] = dtp[i * s.nt + f] = 0.f;
        continue;
      }
      for (int64_t i = 0; i < r; ++i) {
        const double scale = double(gm[i]) * isp[i];
        const double* vf = vp + (f * r + i) * 9;          // frame t: f's mean
        const double* vg = vp + ((f + 1) * r + i) * 9;    // frame t+1: conv(f)'s mean
        const double f_mean = scale * (vf[4] - mup[i] * area[4]) + bt[i] * area[4];
        double g_mean = 0;
        for (int ab = 0; ab < 9; ++ab) g_mean += dw[i * 9 + ab] * (scale * (vg[ab] - mup[i] * area[ab]) + bt[i] * area[ab]);
        dp[f * r + i] = dtp[i * s.nt + f] = float((g_mean - f_mean) / s.p);
      }
    }
    // g3 = W_ex (C, r) @ d^T (r, NT), stored column-major
    matmul({fp(me_ex), 0, r, 1}, {dtp, 0, s.nt, 1}, g3p, -s.c, s.c, r, s.nt);
    sigmoid_inplace(g3p, s.nt * s.c);
  }
  float* gate_c = scratch.floats(s.nt * s.c);
  channel_gate(s, double(ste) + double(ce) + double(me), g2p, g3p, gate_c);
  return gate_c;
}

// A forward call's small tensors: the Smalls block (a tensor where the forward returns it, `keep`;
// else in the Scratch) and the Scratch for its temporaries, whose first block holds all the call
// takes of it: gate_c, the shift rows, ME's region sums (running statistics), the r-sized pieces
// (CE's windows and relu(z2)^T, ME's product and d^T) [and the Smalls].
struct CallMemory {
  int64_t n_small;  // floats in the Smalls block
  Tensor block;
  Scratch scratch;
  Smalls v;

  CallMemory(const Tensor& x, const Shape& s, bool ste, bool ce, bool me, int64_t r_ce, int64_t r_me,
             bool batch_stats, bool keep)
      : n_small(small_layout(s, ste, ce, me, r_ce, r_me, me && batch_stats, nullptr, nullptr)),
        block(keep ? at::empty({n_small}, x.options()) : Tensor()),
        scratch(int64_t(sizeof(float)) * (s.nt * s.c + 3 * s.c + (me && !batch_stats ? 9 * s.nt * s.c : 0) +
                                          14 * std::max(r_ce, r_me) * s.nt + 1024 + (keep ? 0 : n_small))) {
    float* base = keep ? block.data_ptr<float>() : scratch.floats(n_small);
    small_layout(s, ste, ce, me, r_ce, r_me, me && batch_stats, base, &v);
  }
};

// One pixel (C values, channels_last memory) of xs = k0 * x[t-1] + k1 * x[t] + k2 * x[t+1], the shift
// weights as three rows of C (prev / next null at the ends of the clip), times (a[c] + g) (a null:
// xs alone): passes F1 and F2 of forward_nhwc.
template <bool kPrev, bool kNext>
inline void shift_scale_pixel(const float* prev, const float* cur, const float* next, const float* k0,
                              const float* k1, const float* k2, const float* a, float g, float* out, int64_t c) {
  auto xs = [&](int64_t i) {
    if (kPrev && kNext) return k0[i] * prev[i] + k1[i] * cur[i] + k2[i] * next[i];
    if (kPrev) return k0[i] * prev[i] + k1[i] * cur[i];
    if (kNext) return k1[i] * cur[i] + k2[i] * next[i];
    return k1[i] * cur[i];
  };
  if (a) {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) out[i] = xs(i) * (a[i] + g);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < c; ++i) out[i] = xs(i);
  }
}

inline void shift_scale_pixel(const float* prev, const float* cur, const float* next, const float* k0,
                              const float* k1, const float* k2, const float* a, float g, float* out, int64_t c) {
  if (prev && next) shift_scale_pixel<true, true>(prev, cur, next, k0, k1, k2, a, g, out, c);
  else if (prev) shift_scale_pixel<true, false>(prev, cur, next, k0, k1, k2, a, g, out, c);
  else if (next) shift_scale_pixel<false, true>(prev, cur, next, k0, k1, k2, a, g, out, c);
  else shift_scale_pixel<false, false>(prev, cur, next, k0, k1, k2, a, g, out, c);
}

// One pixel (C values) of x for F1 where xs is not kept: d[j] = dot(k_j, x) for the shift weights'
// three rows, and sum += x (sum null: skipped).
#if defined(__AVX512F__)
inline void pixel_dots(const float* x, const float* k0, const float* k1, const float* k2, float* sum, float* d,
                       int64_t n) {
  __m512 a[2][3];  // two accumulators per weight row (an FMA's latency covered)
  for (auto& h : a)
    for (auto& v : h) v = _mm512_setzero_ps();
  auto step = [&](int h, int64_t i, __mmask16 m) {
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    if (sum) _mm512_mask_storeu_ps(sum + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, sum + i), v));
    a[h][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, k0 + i), v, a[h][0]);
    a[h][1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, k1 + i), v, a[h][1]);
    a[h][2] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, k2 + i), v, a[h][2]);
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    step(0, i, 0xFFFF);
    step(1, i + 16, 0xFFFF);
  }
  for (; i < n; i += 16) step(0, i, n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1u));
  for (int j = 0; j < 3; ++j) d[j] = _mm512_reduce_add_ps(_mm512_add_ps(a[0][j], a[1][j]));
}
#else
inline void pixel_dots(const float* x, const float* k0, const float* k1, const float* k2, float* sum, float* d,
                       int64_t n) {
  if (sum) add_to(sum, x, n);
  d[0] = dot_row(k0, x, n);
  d[1] = dot_row(k1, x, n);
  d[2] = dot_row(k2, x, n);
}
#endif

// The shift weights k (C, 3) as three rows of C, k0 / k1 / k2: rp[j * C + c] (no ATen views).
const float* shift_rows(const Tensor& k, int64_t c, float* rp) {
  const float* kp = k.data_ptr<float>();
  for (int64_t i = 0; i < c; ++i)
    for (int j = 0; j < 3; ++j) rp[j * c + i] = kp[i * 3 + j];
  return rp;
}

// for_each_xs_row for channels_last x: the pixels of xs = shift(x), frame by frame (frames in
// parallel, pixels in order inside a frame), each a row of C written into `keep` or a per-thread
// buffer and handed to pixel_fn(f, p, row); frame_done(f) follows each frame's last pixel.
template <class PixelFn, class FrameFn>
void for_each_xs_pixel(const float* x, const float* rows, const Shape& s, float* keep, PixelFn&& pixel_fn,
                       FrameFn&& frame_done) {
  const float *k0 = rows, *k1 = k0 + s.c, *k2 = k1 + s.c;
  const int64_t frame = s.p * s.c;
  at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
    std::vector<float> buf(keep ? 0 : s.c);
    for (int64_t f = b; f < e; ++f) {
      const int64_t tt = f % s.t;
      for (int64_t p = 0; p < s.p; ++p) {
        const float* cur = x + f * frame + p * s.c;
        float* o = keep ? keep + f * frame + p * s.c : buf.data();
        shift_scale_pixel(tt > 0 ? cur - frame : nullptr, cur, tt + 1 < s.t ? cur + frame : nullptr, k0, k1, k2,
                          nullptr, 0.f, o, s.c);
        pixel_fn(f, p, static_cast<const float*>(o));
      }
      frame_done(f);
    }
  });
}

#if defined(__AVX512F__)
// region_sums_of_edges for 8 maps at once, bitwise: e[q * ld_e + j] holds base sum q (total, first /
// last row, first / last column, corners (0, 0), (0, W-1), (H-1, 0), (H-1, W-1)) of map j; the
// nine region sums of map j go to out[j * ld + 0..8]. The same double operations in the same order
// (a lane per map), rounded to float as float(v) does, and stored eight at a time after an 8 x 8
// transpose in registers instead of one float per store.
inline void region_sums_8(const float* e, int64_t ld_e, float* out, int64_t ld) {
  __m512d q[9];
  for (int i = 0; i < 9; ++i) q[i] = _mm512_cvtps_pd(_mm256_loadu_ps(e + i * ld_e));
  const __m512d zero = _mm512_setzero_pd();
  const __m512d row_out[3] = {q[2], zero, q[1]}, col_out[3] = {q[4], zero, q[3]};
  const __m512d corner[3][3] = {{q[8], zero, q[7]}, {zero, zero, zero}, {q[6], zero, q[5]}};
  __m256 v[9];
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b)
      v[a * 3 + b] = _mm512_cvtpd_ps(
          _mm512_add_pd(_mm512_sub_pd(_mm512_sub_pd(q[0], row_out[a]), col_out[b]), corner[a][b]));
  __m256 t[8], u[8];  // v[0..7] transposed: u[j] = map j's sums 0..7
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // h: sums 0..3, then 4..7
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
  }
  alignas(32) float last[8];
  _mm256_store_ps(last, v[8]);
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_ps(out + j * ld, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
    _mm256_storeu_ps(out + (4 + j) * ld, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
  }
  for (int j = 0; j < 8; ++j) out[j * ld + 8] = last[j];
}
#endif

// F1 where xs is not kept (NHWC: evaluation, or no ME path; NCHW: inference), both layouts: the
// statistics of xs are linear in x, so they come from sums of x read once, unshifted. Per frame f
// of x: the three dot products of each pixel with the shift weights' rows,
// D_j(f, p) = k_j . x[f, :, p], at dots[f * 3P + p * dp + j * dj]; and per channel the nine "base"
// sums of the map x[f, c] at base[(f * 9 + q) * C + c]: q = 0 all of it, 1 / 2 its first / last
// row, 3 / 4 its first / last column, 5..8 its corners (0, 0), (0, W-1), (H-1, 0), (H-1, W-1).
// Then the channel mean is cm[f, p] = (D_0(f-1, p) + D_1(f, p) + D_2(f+1, p)) / C, and each base
// sum S of xs is k0 S(x[f-1]) + k1 S(x[f]) + k2 S(x[f+1]) (terms outside the clip left out), from
// which the spatial mean and ME's nine region sums follow.
void stats_from_sums_of_x(const float* dots, int64_t dp, int64_t dj, const float* base, const float* k0,
                          const float* k1, const float* k2, const Shape& s, float* cmp, float* smp, float* rsxp) {
  const int64_t nb = 9 * s.c;  // base sums per frame
  if (cmp)
    at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
      for (int64_t f = b; f < e; ++f) {
        const int64_t tt = f % s.t;
        const bool prev = tt > 0, next = tt + 1 < s.t;
        const float* d = dots + f * 3 * s.p;
        for (int64_t p = 0; p < s.p; ++p) {
          float v = d[p * dp + dj];
          if (prev) v = d[p * dp - 3 * s.p] + v;
          if (next) v += d[p * dp + 2 * dj + 3 * s.p];
          cmp[f * s.p + p] = v / s.c;
        }
      }
    });
  if (!smp && !rsxp) return;
  // Per channel, k0 a[f-1] + k1 a[f] + k2 a[f+1] of the frames' base sums q (rows of channels),
  // then the spatial mean and the nine region sums. By blocks of channels, each block's frames in
  // order: a channel's row of rsx (C, NT*9) is written from start to end, not 36 bytes per frame.
  const int64_t nq = rsxp ? 9 : 1;
  constexpr int64_t kBlock = 64;
  at::parallel_for(0, (s.c + kBlock - 1) / kBlock, 1, [&](int64_t b, int64_t e) {
    std::vector<float> rows(nq * kBlock);
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t c0 = blk * kBlock, nc = std::min(kBlock, s.c - c0);
      for (int64_t f = 0; f < s.nt; ++f) {
        const int64_t tt = f % s.t;
        const bool prev = tt > 0, next = tt + 1 < s.t;
        for (int64_t q = 0; q < nq; ++q) {
          const float* cur = base + f * nb + q * s.c + c0;
          shift_scale_pixel(prev ? cur - nb : nullptr, cur, next ? cur + nb : nullptr, k0 + c0, k1 + c0, k2 + c0,
                            nullptr, 0.f, rows.data() + q * nc, nc);
        }
        const float* sums_xs = rows.data();  // sum q of channel c0 + j at [q * nc + j]
        if (smp)
          for (int64_t j = 0; j < nc; ++j) smp[(c0 + j) * s.nt + f] = sums_xs[j] / s.p;
        if (!rsxp) continue;
        int64_t j = 0;
#if defined(__AVX512F__)
        for (; j + 8 <= nc; j += 8) region_sums_8(sums_xs + j, nc, rsxp + (c0 + j) * s.nt * 9 + f * 9, s.nt * 9);
#endif
        for (; j < nc; ++j) {
          const float* r = sums_xs + j;
          const double corners[4] = {r[5 * nc], r[6 * nc], r[7 * nc], r[8 * nc]};
          double v[9];
          region_sums_of_edges(r[0], r[nc], r[2 * nc], r[3 * nc], r[4 * nc], corners, v);
          for (int ab = 0; ab < 9; ++ab) rsxp[(c0 + j) * s.nt * 9 + f * 9 + ab] = float(v[ab]);
        }
      }
    }
  });
}

// stats_from_sums_of_x for channels_last x: per frame, the pixels (rows of C) in order, each dotted
// with the shift rows and added to the frame's base sums it belongs to.
void nhwc_stats_of_x(const float* xp, const float* k0, const float* k1, const float* k2, const Shape& s, float* cmp,
                     float* smp, float* rsxp) {
  const int64_t frame = s.p * s.c;
  const bool sums = smp || rsxp;
  const int64_t nq = rsxp ? 9 : 1;
  std::unique_ptr<float[]> dots(new float[cmp ? s.nt * s.p * 3 : 0]), base(new float[sums ? s.nt * 9 * s.c : 0]);
  const int64_t corner_px[4] = {0, s.w - 1, (s.h - 1) * s.w, s.h * s.w - 1};
  at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t f = b; f < e; ++f) {
      float* tf = sums ? base.get() + f * 9 * s.c : nullptr;
      float* ed = rsxp ? tf + s.c : nullptr;  // the four edges
      if (tf) std::fill(tf, tf + 5 * s.c, 0.f);
      for (int64_t p = 0; p < s.p; ++p) {
        const float* xr = xp + f * frame + p * s.c;
        if (cmp) pixel_dots(xr, k0, k1, k2, tf, dots.get() + (f * s.p + p) * 3, s.c);
        else add_to(tf, xr, s.c);
        if (ed) {
          const int64_t y = p / s.w, xx = p % s.w;
          if (y == 0) add_to(ed, xr, s.c);
          if (y == s.h - 1) add_to(ed + s.c, xr, s.c);
          if (xx == 0) add_to(ed + 2 * s.c, xr, s.c);
          if (xx == s.w - 1) add_to(ed + 3 * s.c, xr, s.c);
        }
      }
      for (int64_t q = 5; q < nq; ++q) {
        const float* xr = xp + f * frame + corner_px[q - 5] * s.c;
        std::copy(xr, xr + s.c, tf + q * s.c);
      }
    }
  });
  stats_from_sums_of_x(dots.get(), 3, 1, base.get(), k0, k1, k2, s, cmp, smp, rsxp);
}

#if defined(__AVX512F__)
// reduce_row<0> of 16 rows of n values at once, bitwise: v[i] holds value i of each row (a lane
// per row). The same additions in the same pairing: two partial sums per position j < 16 (the
// masked tail into the first), then _mm512_reduce_add_ps's tree (j with j + 8, j + 4, j + 2, j + 1).
inline __m512 lanes_sum(const __m512* v, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 s0[16], s1[16];
  for (int j = 0; j < 16; ++j) s0[j] = s1[j] = zero;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 16; ++j) {
      s0[j] = _mm512_add_ps(s0[j], v[i + j]);
      s1[j] = _mm512_add_ps(s1[j], v[i + 16 + j]);
    }
  for (; i < n; i += 16)
    for (int64_t j = 0; j < 16 && i + j < n; ++j) s0[j] = _mm512_add_ps(s0[j], v[i + j]);
  for (int j = 0; j < 16; ++j) s0[j] = _mm512_add_ps(s0[j], s1[j]);
  for (int j = 0; j < 8; ++j) s0[j] = _mm512_add_ps(s0[j + 8], s0[j]);
  for (int j = 0; j < 4; ++j) s0[j] = _mm512_add_ps(s0[j + 4], s0[j]);
  return _mm512_add_ps(_mm512_add_ps(s0[0], s0[2]), _mm512_add_ps(s0[1], s0[3]));
}

// Transposes the 16 x 16 matrix r[row] (lane = column) in place: four butterfly stages, stage b
// swapping bit b of the row and the column index.
template <int B>
inline void transpose16_stage(__m512* r) {
  const __m512i lo = _mm512_setr_epi32(  // new row i: (i, j) or (i + B, j - B)
      (0 & B) ? 16 + 0 - B : 0, (1 & B) ? 16 + 1 - B : 1, (2 & B) ? 16 + 2 - B : 2, (3 & B) ? 16 + 3 - B : 3,
      (4 & B) ? 16 + 4 - B : 4, (5 & B) ? 16 + 5 - B : 5, (6 & B) ? 16 + 6 - B : 6, (7 & B) ? 16 + 7 - B : 7,
      (8 & B) ? 16 + 8 - B : 8, (9 & B) ? 16 + 9 - B : 9, (10 & B) ? 16 + 10 - B : 10, (11 & B) ? 16 + 11 - B : 11,
      (12 & B) ? 16 + 12 - B : 12, (13 & B) ? 16 + 13 - B : 13, (14 & B) ? 16 + 14 - B : 14,
      (15 & B) ? 16 + 15 - B : 15);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(B));  // new row i + B: (i, j + B) or (i + B, j)
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i)
    if (!(i & B)) {
      const __m512 a = r[i], c = r[i + B];
      r[i] = _mm512_permutex2var_ps(a, lo, c);
      r[i + B] = _mm512_permutex2var_ps(a, hi, c);
    }
}
inline void transpose16(__m512* r) {
  transpose16_stage<8>(r);
  transpose16_stage<4>(r);
  transpose16_stage<2>(r);
  transpose16_stage<1>(r);
}

// The base sums of nchw_stats_of_x for 16 maps m[16 * P] of P <= 64 values at once (the map's
// sum at out[0..16), with `edges` its edge sums e[j] at out[(1 + j) * ld ..]), bitwise those of
// sum_row and edge_sums map by map. Short rows waste most of a reduction tree each; here the
// maps' pixels are transposed into vectors, a lane per map, and the sums are vertical additions.
constexpr int64_t kLanesMaxP = 64;
void base_sums_16(const float* m, const Shape& s, bool edges, float* out, int64_t ld) {
  __m512 v[kLanesMaxP];
  for (int64_t p0 = 0; p0 < s.p; p0 += 16) {  // 16 x 16 blocks, transposed
    const __mmask16 k = s.p - p0 >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (s.p - p0)) - 1u);
    __m512 r[16];
    for (int l = 0; l < 16; ++l) r[l] = _mm512_maskz_loadu_ps(k, m + l * s.p + p0);
    transpose16(r);
    for (int64_t j = 0; j < 16 && p0 + j < s.p; ++j) v[p0 + j] = r[j];
  }
  _mm512_storeu_ps(out, lanes_sum(v, s.p));
  if (!edges) return;
  __m512 first_col = _mm512_setzero_ps(), last_col = first_col;
  for (int64_t y = 0; y < s.h; ++y) {
    first_col = _mm512_add_ps(first_col, v[y * s.w]);
    last_col = _mm512_add_ps(last_col, v[y * s.w + s.w - 1]);
  }
  const __m512 e[8] = {lanes_sum(v, s.w), lanes_sum(v + (s.h - 1) * s.w, s.w), first_col, last_col,
                       v[0], v[s.w - 1], v[(s.h - 1) * s.w], v[s.p - 1]};
  for (int j = 0; j < 8; ++j) _mm512_storeu_ps(out + (1 + j) * ld, e[j]);
}
#endif

// dst (cols x rows) = src (rows x cols)^T, both row-major: 16 x 16 blocks transposed in registers
// where there are 16 rows (ME's d sq, (r, P) per frame, read back as (P, r)).
void transpose_matrix(const float* src, int64_t rows, int64_t cols, float* dst) {
  int64_t i0 = 0;
#if defined(__AVX512F__)
  for (; i0 + 16 <= rows; i0 += 16)
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t nj = std::min<int64_t>(16, cols - j0);
      const __mmask16 k = nj == 16 ? __mmask16(0xFFFF) : __mmask16((1u << nj) - 1u);
      __m512 r[16];
      for (int l = 0; l < 16; ++l) r[l] = _mm512_maskz_loadu_ps(k, src + (i0 + l) * cols + j0);
      transpose16(r);
      for (int64_t j = 0; j < nj; ++j) _mm512_storeu_ps(dst + (j0 + j) * rows + i0, r[j]);
    }
#endif
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t i = i0; i < rows; ++i) dst[j * rows + i] = src[i * cols + j];
}

// a = max(0, a) in place, the numbers of torch.relu_ (NaN and -0 kept: MAXPS returns its second
// operand where either is NaN and where both are zeros).
void relu_inplace(float* a, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 zero = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(a + i, _mm512_max_ps(zero, _mm512_loadu_ps(a + i)));
  if (i < n) {
    const __mmask16 k = __mmask16((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(a + i, k, _mm512_max_ps(zero, _mm512_maskz_loadu_ps(k, a + i)));
  }
#endif
  for (; i < n; ++i) a[i] = a[i] < 0.f ? 0.f : a[i];
}

// The statistics nchw_stats_of_x takes of one frame xf (C, P), by blocks of channels (whole
// multiples of 16 maps, ~128 KB): each block's base sums into bf (the maps' sums at bf[c], with
// `edges` the edge sums e[j] at bf[(1 + j) * C + c]; bf null: none), and its part of the dots
// df (3, P) = [k0; k1; k2] (3, C) @ xf (C, P) (df null: none), the product continued from block to
// block (the same sums as one product). The sums go first: they read the block row by row, a
// stream the hardware prefetches, and the dots' column strips then find it in the cache. With
// `relu`, each block is first rectified in place (relu_inplace): the statistics of the block
// just written, read while its rows are still in the cache.
void nchw_frame_stats(float* xf, View k_t, const Shape& s, bool relu, float* bf, bool edges, float* df) {
  const int64_t block = std::max<int64_t>(16, (32768 / s.p) / 16 * 16);
  for (int64_t c0 = 0; c0 < s.c; c0 += block) {
    const int64_t c1 = std::min(s.c, c0 + block);
    float* xb = xf + c0 * s.p;
    if (relu) relu_inplace(xb, (c1 - c0) * s.p);
    if (bf) {
      int64_t c = c0;
#if defined(__AVX512F__)
      if (s.p <= kLanesMaxP)  // short rows: 16 maps at a time
        for (; c + 16 <= c1; c += 16) base_sums_16(xf + c * s.p, s, edges, bf + c, s.c);
#endif
      for (; c < c1; ++c) {
        const float* m = xf + c * s.p;
        bf[c] = sum_row(m, s.p);
        if (!edges) continue;
        float e[8];
        edge_sums(m, s, e);
        for (int j = 0; j < 8; ++j) bf[(1 + j) * s.c + c] = e[j];
      }
    }
    if (df) gemm(k_t.at(0, c0), {xb, 0, s.p, 1}, df, s.p, 1, c1 - c0, s.p, 0, 3, c0 > 0);
  }
}

// What nchw_stats_of_x takes of x before stats_from_sums_of_x, in one block of floats: the dots
// (NT, 3, P) where the channel mean is wanted (`dots`), then the base sums (NT, 9, C) where the
// spatial mean or ME's region sums are (`sums`).
struct FirstSums {
  int64_t dots_len, base_len;
  FirstSums(const Shape& s, bool dots, bool sums)
      : dots_len(dots ? s.nt * 3 * s.p : 0), base_len(sums ? s.nt * 9 * s.c : 0) {}
  int64_t size() const { return dots_len + base_len; }
};

// nchw_frame_stats of every frame, in parallel, into `out` (FirstSums' layout); `relu`: x is
// rectified in place on the way.
void nchw_first_sums(float* xp, const float* kp, const Shape& s, bool relu, bool dots, bool sums, bool edges,
                     float* out) {
  const FirstSums fs(s, dots, sums);
  const View k_t{kp, 0, 1, 3};  // A (3, C): A(j, c) = k[c * 3 + j]
  at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
    for (int64_t f = b; f < e; ++f)
      nchw_frame_stats(xp + f * s.c * s.p, k_t, s, relu, sums ? out + fs.dots_len + f * 9 * s.c : nullptr, edges,
                       dots ? out + f * 3 * s.p : nullptr);
  });
}

// stats_from_sums_of_x for NCHW x: per frame, D (3, P) = [k0; k1; k2] (3, C) @ x[f] (C, P) and the
// base sums of each row (nchw_first_sums), or `first`, those sums taken already (relu_stats).
void nchw_stats_of_x(const float* xp, const float* kp, const float* k0, const float* k1, const float* k2,
                     const Shape& s, float* cmp, float* smp, float* rsxp, const float* first = nullptr) {
  const bool sums = smp || rsxp;
  const FirstSums fs(s, cmp != nullptr, sums);
  std::unique_ptr<float[]> own;
  if (!first) {
    own.reset(new float[fs.size()]);
    // x is only read (relu false)
    nchw_first_sums(const_cast<float*>(xp), kp, s, false, cmp != nullptr, sums, rsxp != nullptr, own.get());
    first = own.get();
  }
  stats_from_sums_of_x(first, 1, s.p, first + fs.dots_len, k0, k1, k2, s, cmp, smp, rsxp);
}

// Returns {out, the Smalls block} (see action_backward), or without `keep` {out}.
std::vector<Tensor> forward_nchw(const Tensor& x, const Tensor& k, int64_t t, bool ste, bool ce, bool me,
                                 const Tensor& ste_w, const Tensor& ce_sq, const Tensor& ce_t, const Tensor& ce_ex,
                                 const Tensor& me_sq, const Tensor& bn_w, const Tensor& bn_b, const Tensor& bn_rm,
                                 const Tensor& bn_rv, bool batch_stats, double factor, double eps,
                                 const Tensor& me_dw, const Tensor& me_ex, bool cache_out, bool keep,
                                 const Tensor& first = Tensor()) {
  const Shape s = shape_of(x, t);
  CallMemory mem(x, s, ste, ce, me, ce ? ce_sq.size(0) : 0, me ? me_sq.size(0) : 0, batch_stats, keep);
  Scratch& scratch = mem.scratch;
  const float* xp = x.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  // With BatchNorm on running statistics (evaluation), ME needs only the nine region sums of its
  // squeezed map; the squeeze is linear, so they are W times the region sums of xs and the
  // full-size squeeze is skipped. xs is then kept only when the squeeze reads it: otherwise F1
  // reduces it row by row, or in inference takes the statistics from x itself (nchw_stats_of_x;
  // or `first`, what relu_stats took of x as it wrote it), and F2 forms xs from x while writing
  // the output.
  const Stats st = stats_buffers(x, s, me, batch_stats, false, cache_out, mem.v, scratch);
  const bool squeeze = st.squeeze;
  float* xsp = fp(st.out);  // the output; holds xs between F1 and F2 when `squeeze`
  float *cmp = mem.v.cm, *smp = mem.v.sm, *rsxp = st.rsxp, *sqw = mem.v.sq;
  // ME's squeeze sq[f] = W (r, C) @ xs[f] (C, P), summed over each block of channels as soon as F1
  // has written the block's rows of xs[f] (then still in this core's cache)
  const int64_t r_me = me ? me_sq.size(0) : 0;
  const View w_me{me ? me_sq.data_ptr<float>() : nullptr, 0, s.c, 1};
  // F1: the channel mean, the spatial mean [and ME's region sums] [and ME's squeeze]. In inference
  // (nothing keeps the output) from x directly: the statistics are linear in x. Where autograd
  // records (training, CAMs), row by row of xs: the numbers results/ were computed with.
  if (!squeeze && !cache_out) {
    const float* kt = shift_rows(k, s.c, scratch.floats(3 * s.c));
    const bool given = first.defined() && first.numel();
    TORCH_CHECK(!given || first.numel() == FirstSums(s, cmp != nullptr, smp || rsxp).size(),
                "action_infer: the first sums do not fit this call (", first.numel(), " floats)");
    nchw_stats_of_x(xp, kp, kt, kt + s.c, kt + 2 * s.c, s, cmp, smp, rsxp, given ? fp(first) : nullptr);
  } else {  // xs row by row [into the output's buffer, the squeeze summed block by block]
    for_each_xs_row(
        xp, kp, s, xs_block_rows(s), squeeze ? xsp : nullptr,
        [&](int64_t f, int64_t c, const float* o) {
          if (smp || rsxp) {
            const float acc = sum_row(o, s.p);
            if (smp) smp[c * s.nt + f] = acc / s.p;
            if (rsxp) {
              double v[9];
              region_sums_from(o, s, acc, v);
              for (int ab = 0; ab < 9; ++ab) rsxp[c * s.nt * 9 + f * 9 + ab] = float(v[ab]);
            }
          }
          if (cmp) {
            float* cmf = cmp + f * s.p;
#pragma omp simd
            for (int64_t i = 0; i < s.p; ++i) cmf[i] += o[i];
          }
        },
        [&](int64_t f, int64_t c0, int64_t c1) {
          // the squeeze summed over the block's channels, its rows still in the cache; a product
          // over K = K1 + K2 in two calls sums exactly as one call
          if (sqw)
            gemm(w_me.at(0, c0), {xsp + (f * s.c + c0) * s.p, 0, s.p, 1}, sqw + f * r_me * s.p, s.p, 1, c1 - c0,
                 s.p, 0, r_me, c0 > 0);
          if (cmp && c1 == s.c)
            for (int64_t i = 0; i < s.p; ++i) cmp[f * s.p + i] /= s.c;
        });
  }
  const float* gc = forward_gates(s, st, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm, bn_rv,
                                  factor, eps, me_dw, me_ex, mem.v, scratch);
  // F2: out = xs * (gate_c + gate_s), in place [xs recomputed from x]
  const float* gs = mem.v.g1;
  auto row = [&](int64_t f, int64_t c) {
    const int64_t q = f * s.c + c;
    float* o = xsp + q * s.p;
    static constexpr float kKept[3] = {0.f, 1.f, 0.f};  // xs kept in o: its row times 1, exact
    const float *prev = nullptr, *cur = o, *next = nullptr, *kq = kKept;
    if (!squeeze) {  // xs was not kept: recompute the row from x
      neighbours(xp, s, f, c, &prev, &cur, &next);
      kq = kp + 3 * c;
    }
    shift_scale_row(prev, cur, next, kq, gc[q], gs ? gs + f * s.p : nullptr, o, s.p);
  };
  if (squeeze) {  // in place, row by row
    at::parallel_for(0, s.nt * s.c, 64, [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q) row(q / s.c, q % s.c);
    });
  } else {  // by blocks of channels of a clip, the frames in order: row (t, c) of x is read as the
            // next frame's, the current and the previous one within a few rows' time
    const int64_t block = std::min(s.c, std::max<int64_t>(16, 4096 / s.p));
    const int64_t nblocks = (s.c + block - 1) / block;
    at::parallel_for(0, s.n * nblocks, 1, [&](int64_t b, int64_t e) {
      for (int64_t u = b; u < e; ++u) {
        const int64_t n = u / nblocks, c0 = (u % nblocks) * block, c1 = std::min(s.c, c0 + block);
        for (int64_t f = n * s.t; f < (n + 1) * s.t; ++f)
          for (int64_t c = c0; c < c1; ++c) row(f, c);
      }
    });
  }
  if (!keep) return {st.out};
  return {st.out, mem.block};
}

// forward_nchw on channels_last x (memory (NT, H, W, C)); the output is channels_last too. F1 and
// F2 walk the pixels of a frame, each a row of C channels: the channel mean is a row sum, the
// spatial mean and ME's region sums are sums of rows (all of them; the first and last row and
// column of the map; the four corners), taken of x itself where xs is not kept (nhwc_stats_of_x).
// The statistics, the gates and the saved tensors are the NCHW forward's (ME's squeeze is formed
// as sq[f]^T (P, r) = xs[f] (P, C) @ W^T (C, r) and stored column-major, i.e. (r, P) like the NCHW
// one), so the backward pass is shared.
std::vector<Tensor> forward_nhwc(const Tensor& x, const Tensor& k, int64_t t, bool ste, bool ce, bool me,
                                 const Tensor& ste_w, const Tensor& ce_sq, const Tensor& ce_t, const Tensor& ce_ex,
                                 const Tensor& me_sq, const Tensor& bn_w, const Tensor& bn_b, const Tensor& bn_rm,
                                 const Tensor& bn_rv, bool batch_stats, double factor, double eps,
                                 const Tensor& me_dw, const Tensor& me_ex, bool cache_out, bool keep) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast), "x must be channels_last (N*T, C, H, W)");
  const Shape s = shape_of(x, t);
  CallMemory mem(x, s, ste, ce, me, ce ? ce_sq.size(0) : 0, me ? me_sq.size(0) : 0, batch_stats, keep);
  Scratch& scratch = mem.scratch;
  const float* xp = x.data_ptr<float>();
  const Stats st = stats_buffers(x, s, me, batch_stats, true, cache_out, mem.v, scratch);
  const bool squeeze = st.squeeze;
  float* outp = fp(st.out);  // holds xs between F1 and F2 when `squeeze`
  float *cmp = mem.v.cm, *smp = mem.v.sm, *rsxp = st.rsxp, *sqw = mem.v.sq;
  const int64_t r_me = me ? me_sq.size(0) : 0;
  const float* kt = shift_rows(k, s.c, scratch.floats(3 * s.c));
  const float *k0 = kt, *k1 = k0 + s.c, *k2 = k1 + s.c;
  const Tensor w_t = squeeze ? me_sq.reshape({r_me, s.c}).t().contiguous() : Tensor();  // W^T (C, r)
  const int64_t frame = s.p * s.c;
  // F1: the channel mean, the spatial mean [and ME's region sums] [and ME's squeeze]
  if (!squeeze) {  // from x directly (the statistics are linear in x)
    nhwc_stats_of_x(xp, k0, k1, k2, s, cmp, smp, rsxp);
  } else {
    // xs frame by frame into the output's buffer; per frame, the sum of its pixels and ME's squeeze
    // (formed while the frame's xs is still in this core's cache)
    std::unique_ptr<float[]> all(new float[smp ? s.nt * s.c : 0]);
    for_each_xs_pixel(
        xp, kt, s, outp,
        [&](int64_t f, int64_t p, const float* o) {
          if (cmp) cmp[f * s.p + p] = sum_row(o, s.c) / s.c;
          if (smp) {
            if (p == 0) std::fill(all.get() + f * s.c, all.get() + (f + 1) * s.c, 0.f);
            add_to(all.get() + f * s.c, o, s.c);
          }
        },
        [&](int64_t f) {
          if (smp)
            for (int64_t c = 0; c < s.c; ++c) smp[c * s.nt + f] = all[f * s.c + c] / s.p;
          // sq[f]^T (P, r) = xs[f] (P, C) @ W^T (C, r), stored column-major: (r, P)
          gemm({outp + f * frame, 0, s.c, 1}, {fp(w_t), 0, r_me, 1}, sqw + f * r_me * s.p, -s.p, 1, s.c, r_me, 0, s.p);
        });
  }
  const float* gc = forward_gates(s, st, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm, bn_rv,
                                  factor, eps, me_dw, me_ex, mem.v, scratch);
  // F2: out = xs * (gate_c + gate_s), pixel by pixel [in place on xs, or xs recomputed from x]
  const float* gs = mem.v.g1;
  at::parallel_for(0, s.nt * s.p, 16, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {  // q = f * P + p
      const int64_t f = q / s.p, tt = f % s.t;
      float* o = outp + q * s.c;
      const float* a = gc + f * s.c;
      const float g = gs ? gs[q] : 0.f;
      if (squeeze) {  // xs kept in o
#pragma omp simd
        for (int64_t i = 0; i < s.c; ++i) o[i] = o[i] * (a[i] + g);
      } else {
        const float* cur = xp + q * s.c;
        shift_scale_pixel(tt > 0 ? cur - frame : nullptr, cur, tt + 1 < s.t ? cur + frame : nullptr, k0, k1, k2, a,
                          g, o, s.c);
      }
    }
  });
  if (!keep) return {st.out};
  return {st.out, mem.block};
}

// The forward pass where autograd records (training; the kernel's node below): {out, the Smalls
// block} (see action_backward). x contiguous or channels_last (then so is the output).
std::vector<Tensor> action_forward(Tensor x, Tensor k, int64_t t, bool ste, bool ce, bool me, Tensor ste_w,
                                   Tensor ce_sq, Tensor ce_t, Tensor ce_ex, Tensor me_sq, Tensor bn_w,
                                   Tensor bn_b, Tensor bn_rm, Tensor bn_rv, bool batch_stats, double factor,
                                   double eps, Tensor me_dw, Tensor me_ex, bool cache_out) {
  if (!x.is_contiguous())
    return forward_nhwc(x, k, t, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm, bn_rv, batch_stats,
                        factor, eps, me_dw, me_ex, cache_out, /*keep=*/true);
  return forward_nchw(x, k, t, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm, bn_rv, batch_stats,
                      factor, eps, me_dw, me_ex, cache_out, /*keep=*/true);
}

// The module's output where nothing keeps anything of the call (inference), x contiguous or
// channels_last (then so is the output): only the output is allocated as a tensor and returned.
// `first` (empty: none): relu_stats' sums of this x, NCHW only.
Tensor action_infer(Tensor x, Tensor k, int64_t t, bool ste, bool ce, bool me, Tensor ste_w, Tensor ce_sq,
                    Tensor ce_t, Tensor ce_ex, Tensor me_sq, Tensor bn_w, Tensor bn_b, Tensor bn_rm, Tensor bn_rv,
                    bool batch_stats, double factor, double eps, Tensor me_dw, Tensor me_ex, Tensor first) {
  if (!x.is_contiguous()) {
    TORCH_CHECK(!first.numel(), "action_infer: first sums are taken of NCHW-contiguous x only");
    return forward_nhwc(x, k, t, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm, bn_rv, batch_stats,
                        factor, eps, me_dw, me_ex, /*cache_out=*/false, /*keep=*/false)[0];
  }
  return forward_nchw(x, k, t, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm, bn_rv, batch_stats,
                      factor, eps, me_dw, me_ex, /*cache_out=*/false, /*keep=*/false, first)[0];
}

// torch.relu_(z) for z (NT, C, H, W) NCHW-contiguous float32, the input of an ACTION module in
// inference (ste / ce / me its paths, k its shift weights): returns, taken in the same pass, the
// sums of the rectified z that the module's first pass would take of it (action_infer's `first`).
// z is written where it is: a residual block's output, rectified, read by the block that follows
// (its shortcut and its module) as it always was. Saves the module the pass that reads x again
// from memory (pass F1 of inference).
Tensor relu_stats(Tensor z, Tensor k, int64_t t, bool ste, bool ce, bool me) {
  TORCH_CHECK(z.dim() == 4 && z.scalar_type() == at::kFloat && z.is_cpu() && z.is_contiguous(),
              "relu_stats: z must be an NCHW-contiguous float32 CPU tensor (N*T, C, H, W)");
  TORCH_CHECK(t > 0 && z.size(0) % t == 0, "relu_stats: ", z.size(0), " frames are not clips of T = ", t);
  TORCH_CHECK(k.numel() == z.size(1) * 3 && k.is_contiguous(), "relu_stats: k must be the (C, 1, 3) shift weights");
  const Shape s = shape_of(z, t);
  const FirstSums fs(s, ste, ce || me);
  Tensor out = at::empty({fs.size()}, z.options());
  nchw_first_sums(fp(z), k.data_ptr<float>(), s, /*relu=*/true, ste, ce || me, /*edges=*/me, fp(out));
  return out;
}

// B2+B3 on channels_last tensors: G = g * (gate_c + gate_s) + d cm / C + d sm / P + E, with ME's data
// gradient E[f] (P, C) = dsq[f]^T (P, r) @ W (r, C), then dx[t] = k0 G[t+1] + k1 G[t] + k2 G[t-1]
// into `big` and dk[j] = sum G[t] * x[t + j - 1]. Tiles of pixels (of a size set by C alone) x
// blocks of channels in parallel; inside one, the frames of a clip in order, G of frames t-1, t,
// t+1 in three small buffers. Each tile sums its part of dk, and the parts are added in tile
// order: the same numbers for any number of threads.
void backward_b23_nhwc(const Shape& s, const Tensor& g, const Tensor& x, const float* k0, const float* k1,
                       const float* k2, const float* gc, const float* gs, const float* dcm, const float* dsm,
                       const Tensor& me_sq, const float* dsqtp, Tensor& big, Tensor& dk) {
  const float *gp = fp(g), *xp = fp(x);
  const int64_t r_me = dsqtp ? me_sq.size(0) : 0;
  const View w_me{dsqtp ? fp(me_sq) : nullptr, 0, s.c, 1};  // W (r, C), rows contiguous
  float* bp = fp(big);
  const float inv_c = 1.f / s.c, inv_p = 1.f / s.p;
  const int64_t frame = s.c * s.p;
  // Pixels per tile: 16-64 (the product's rows), set by C alone. Channels per block: as many blocks
  // as threads, or a multiple, so that tiles x blocks keep every thread busy.
  const int64_t tile = std::min(s.p, std::clamp<int64_t>(8192 / s.c / 8 * 8, 16, 64));
  const int64_t ntiles = (s.p + tile - 1) / tile;
  const int64_t threads = at::get_num_threads();
  const int64_t nblocks = std::min<int64_t>((s.c + 15) / 16, (threads + ntiles - 1) / ntiles);
  const int64_t block = ((s.c + nblocks - 1) / nblocks + 15) / 16 * 16;
  std::vector<double> parts(ntiles * s.c * 3, 0.0);
  at::parallel_for(0, ntiles * nblocks, 1, [&](int64_t tb, int64_t te) {
    std::vector<float> bufs(3 * tile * block), ebuf(dsqtp ? tile * block : 0), sums(3 * block);
    for (int64_t task = tb; task < te; ++task) {
      const int64_t ti = task / nblocks, p0 = ti * tile, np = std::min(tile, s.p - p0);
      const int64_t c0 = (task % nblocks) * block, nc = std::min(block, s.c - c0);
      if (nc <= 0) continue;
      double* part = parts.data() + ti * s.c * 3 + c0 * 3;
      // G of frame f, pixels p0..p0+np, channels c0..c0+nc, into out (np x nc)
      auto make_g = [&](int64_t f, float* out) {
        if (dsqtp)
          gemm({dsqtp + (f * s.p + p0) * r_me, 0, r_me, 1}, w_me.at(0, c0), ebuf.data(), nc, 1, r_me, nc, 0, np);
        const float* a = gc + f * s.c + c0;
        const float* dsf = dsm ? dsm + f * s.c + c0 : nullptr;
        for (int64_t j = 0; j < np; ++j) {
          const int64_t p = p0 + j;
          const float* gr = gp + f * frame + p * s.c + c0;
          float* o = out + j * nc;
          const float gsv = gs ? gs[f * s.p + p] : 0.f;
          const float cmv = dcm ? dcm[f * s.p + p] * inv_c : 0.f;
#pragma omp simd
          for (int64_t i = 0; i < nc; ++i) o[i] = gr[i] * (a[i] + gsv) + cmv + (dsf ? dsf[i] * inv_p : 0.f);
          if (dsqtp) {
            const float* er = ebuf.data() + j * nc;
#pragma omp simd
            for (int64_t i = 0; i < nc; ++i) o[i] += er[i];
          }
        }
      };
      for (int64_t n = 0; n < s.n; ++n) {
        float* prev = bufs.data();
        float* cur = prev + tile * block;
        float* next = cur + tile * block;
        make_g(n * s.t, cur);
        for (int64_t tt = 0; tt < s.t; ++tt) {
          const int64_t f = n * s.t + tt;
          const bool has_next = tt + 1 < s.t, has_prev = tt > 0;
          if (has_next) make_g(f + 1, next);
          std::fill(sums.begin(), sums.end(), 0.f);
          float *s0 = sums.data(), *s1 = s0 + nc, *s2 = s1 + nc;
          for (int64_t j = 0; j < np; ++j) {
            const int64_t at_ = f * frame + (p0 + j) * s.c + c0;
            const float* g0 = cur + j * nc;
            const float* xr = xp + at_;
            if (has_prev) {
#pragma omp simd
              for (int64_t i = 0; i < nc; ++i) s0[i] += g0[i] * xr[i - frame];
            }
#pragma omp simd
            for (int64_t i = 0; i < nc; ++i) s1[i] += g0[i] * xr[i];
            if (has_next) {
#pragma omp simd
              for (int64_t i = 0; i < nc; ++i) s2[i] += g0[i] * xr[i + frame];
            }
            // G[t+1] fed xs[t+1] through k0, G[t-1] fed xs[t-1] through k2
            shift_scale_pixel(has_next ? next + j * nc : nullptr, g0, has_prev ? prev + j * nc : nullptr, k0 + c0,
                              k1 + c0, k2 + c0, nullptr, 0.f, bp + at_, nc);
          }
          for (int64_t i = 0; i < nc; ++i) {
            part[3 * i] += s0[i];
            part[3 * i + 1] += s1[i];
            part[3 * i + 2] += s2[i];
          }
          std::swap(prev, cur);  // prev <- G[t], cur <- G[t+1]
          std::swap(cur, next);
        }
      }
    }
  });
  float* dkp = fp(dk);
  for (int64_t i = 0; i < s.c * 3; ++i) {
    double acc = 0;
    for (int64_t ti = 0; ti < ntiles; ++ti) acc += parts[ti * s.c * 3 + i];
    dkp[i] = float(acc);
  }
}

// Pass B1 on one row (n values) of g and of xs: their dot product into *dot, their products added
// into acc (either may be null). NCHW rows are channels (dot: d gate_c, acc: d gate_s's frame);
// NHWC rows are pixels (dot: d gate_s, acc: d gate_c's frame).
inline void dot_and_accumulate(const float* g, const float* xs, int64_t n, float* dot, float* acc) {
  if (dot) *dot = dot_row(g, xs, n);
  if (acc) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) acc[i] += g[i] * xs[i];
  }
}

// Gradients {dx, dk, d ste_w, d ce_sq, d ce_t, d ce_ex, d me_sq, d bn_w, d bn_b, d me_dw, d me_ex}
// (empty where a path is off), from grad_out g, the forward's input x and its Smalls block (the
// forward's second return value; the same paths, r and batch_stats lay it out).
std::vector<Tensor> action_backward(Tensor g, Tensor x, Tensor k, int64_t t, bool ste, bool ce, bool me,
                                    Tensor ste_w, Tensor ce_sq, Tensor ce_t, Tensor ce_ex, Tensor me_sq,
                                    Tensor bn_w, Tensor bn_b, bool batch_stats, Tensor me_dw, Tensor me_ex,
                                    Tensor smalls) {
  // channels_last x (the NHWC forward's): g read in the same layout, dx returned channels_last
  const bool nhwc = !x.is_contiguous();
  TORCH_CHECK(!nhwc || x.is_contiguous(at::MemoryFormat::ChannelsLast), "x must be contiguous or channels_last");
  g = g.contiguous(nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
  const Shape s = shape_of(x, t);
  const auto opt = x.options();
  const float* xp = x.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  Tensor empty = at::empty({0}, opt);
  const int64_t r_ce = ce ? ce_sq.size(0) : 0, r_me = me ? me_sq.size(0) : 0;
  Smalls v;  // the forward's statistics and gates
  const int64_t n_small = small_layout(s, ste, ce, me, r_ce, r_me, me && batch_stats, nullptr, nullptr);
  TORCH_CHECK(smalls.numel() == n_small, "action_backward: the saved block has ", smalls.numel(), " floats, not ",
              n_small);
  small_layout(s, ste, ce, me, r_ce, r_me, me && batch_stats, fp(smalls), &v);
  // the temporaries in one block: six (NT, C) (gate_c among them), three (NT, P), ME's two
  // (NT, r, P), the shift rows and the r-sized pieces
  Scratch scratch(int64_t(sizeof(float)) * (6 * s.nt * s.c + 3 * s.nt * s.p + 2 * s.nt * r_me * s.p + 3 * s.c +
                                            10 * std::max(r_ce, r_me) * s.nt + 1024));
  float* gate_c = scratch.floats(s.nt * s.c);
  channel_gate(s, double(ste) + double(ce) + double(me), v.g2, v.g3, gate_c);
  // dx is written into `big`, which first holds xs for ME's weight gradient
  Tensor big = BufferCache::get().empty(x.sizes(), opt, nhwc);
  Tensor xs = me ? big : empty;
  float* xsp = me ? xs.data_ptr<float>() : nullptr;
  float* dgc = (ce || me) ? scratch.floats(s.nt * s.c) : nullptr;  // summed into by NHWC's B1
  float* dgs = ste ? scratch.floats(s.nt * s.p) : nullptr;
  if (dgc && nhwc) std::fill_n(dgc, s.nt * s.c, 0.f);
  if (dgs) std::fill_n(dgs, s.nt * s.p, 0.f);
  // the shift weights as three rows of C, for the NHWC passes
  const float* kt = nhwc ? shift_rows(k, s.c, scratch.floats(3 * s.c)) : nullptr;
  const float* k0 = kt;
  const float *k1 = k0 + s.c, *k2 = k1 + s.c;
  const int64_t frame = s.c * s.p;
  // B1: recompute xs; d gate_c = sum_p g * xs, d gate_s = sum_c g * xs
  if (nhwc) {
    for_each_xs_pixel(
        xp, kt, s, xsp,
        [&](int64_t f, int64_t p, const float* o) {  // a pixel: d gate_s[f, p], d gate_c[f, :] +=
          dot_and_accumulate(gp + (f * s.p + p) * s.c, o, s.c, dgs ? dgs + f * s.p + p : nullptr,
                             dgc ? dgc + f * s.c : nullptr);
        },
        [](int64_t) {});
  } else {
    // frame by frame (one block of all channels): by blocks, this pass took ~1.4 ms less per
    // train step, but B23 ~1.2 ms more (benchmarks/kernel_timers.py --rev, 24 steps)
    for_each_xs_row(
        xp, kp, s, s.c, xsp,
        [&](int64_t f, int64_t c, const float* o) {  // a channel: d gate_c[f, c], d gate_s[f, :] +=
          dot_and_accumulate(gp + (f * s.c + c) * s.p, o, s.p, dgc ? dgc + f * s.c + c : nullptr,
                             dgs ? dgs + f * s.p : nullptr);
        },
        [](int64_t, int64_t, int64_t) {});
  }
  Tensor gw_ste = empty, gw_cs = empty, gw_ct = empty, gw_ce = empty, gw_ms = empty, g_bnw = empty, g_bnb = empty,
         gw_dw = empty, gw_me = empty;
  float *d_cm = nullptr, *d_sm = nullptr, *dsqp = nullptr, *dsqtp = nullptr;  // (NT, P), (NT, C), ME's d sq
  if (ste) {
    float* ds = scratch.floats(s.nt * s.p);
    sigmoid_grad(dgs, v.g1, s.nt * s.p, ds);
    d_cm = scratch.floats(s.nt * s.p);
    gw_ste = at::empty({27}, opt);
    conv333_backward(v.cm, ste_w.data_ptr<float>(), ds, d_cm, gw_ste.data_ptr<float>(), s);
  }
  if (ce) {
    const int64_t r = r_ce;
    float* dpre = scratch.floats(s.nt * s.c);  // (NT, C)
    sigmoid_grad(dgc, v.g2, s.nt * s.c, dpre);
    float* ap = scratch.floats(s.nt * r);  // relu(z2), as the forward formed it
    const float* z2p = v.z2;
    for (int64_t i = 0; i < s.nt * r; ++i) ap[i] = std::max(z2p[i], 0.f);
    gw_ce = at::empty({s.c, r}, opt);  // dpre^T (C, NT) @ a (NT, r), streamed (gemm's `stream`)
    matmul({dpre, 0, 1, s.c}, {ap, 0, r, 1}, fp(gw_ce), r, s.c, s.nt, r, true);
    float* dz2p = scratch.floats(s.nt * r);  // dpre (NT, C) @ W_ex (C, r), then relu's gradient
    matmul({dpre, 0, s.c, 1}, {fp(ce_ex), 0, r, 1}, dz2p, r, s.nt, s.c, r);
    for (int64_t i = 0; i < s.nt * r; ++i) dz2p[i] *= float(z2p[i] > 0.f);  // relu's gradient
    float* win_t = scratch.floats(r * 3 * s.nt);
    windows_t(v.z1, r, s, win_t);
    gw_ct = at::empty({r, 3 * r}, opt);  // windows^T (3r, NT) @ dz2 (NT, r), stored column-major
    matmul({win_t, 0, s.nt, 1}, {dz2p, 0, r, 1}, fp(gw_ct), -3 * r, 3 * r, s.nt, r);
    float* dwin = scratch.floats(s.nt * 3 * r);  // dz2 (NT, r) @ W_t (r, 3r)
    matmul({dz2p, 0, r, 1}, {fp(ce_t), 0, 3 * r, 1}, dwin, 3 * r, s.nt, r, 3 * r);
    float* dz1 = scratch.floats(s.nt * r);  // (NT, r)
    fold_windows(dwin, s, r, dz1);
    float* smt = scratch.floats(s.nt * s.c);  // sm transposed, (NT, C)
    transpose_matrix(v.sm, s.c, s.nt, smt);
    gw_cs = at::empty({r, s.c}, opt);  // dz1^T (r, NT) @ sm^T (NT, C), the weight gradients streamed
    matmul({dz1, 0, 1, r}, {smt, 0, s.c, 1}, fp(gw_cs), s.c, r, s.nt, s.c, true);
    d_sm = scratch.floats(s.nt * s.c);  // dz1 (NT, r) @ W_sq (r, C)
    matmul({dz1, 0, r, 1}, {fp(ce_sq), 0, s.c, 1}, d_sm, s.c, s.nt, r, s.c);
  }
  if (me) {
    const int64_t r = r_me;
    float* dpre = scratch.floats(s.nt * s.c);
    sigmoid_grad(dgc, v.g3, s.nt * s.c, dpre);
    gw_me = at::empty({s.c, r}, opt);  // dpre^T (C, NT) @ d (NT, r), streamed
    matmul({dpre, 0, 1, s.c}, {v.d, 0, r, 1}, fp(gw_me), r, s.c, s.nt, r, true);
    float* ddp = scratch.floats(s.nt * r);  // dpre (NT, C) @ W_ex (C, r)
    matmul({dpre, 0, s.c, 1}, {fp(me_ex), 0, r, 1}, ddp, r, s.nt, s.c, r);
    const double* vp = v.vsq;
    const float *gm = bn_w.data_ptr<float>(), *bt = bn_b.data_ptr<float>(), *dw = me_dw.data_ptr<float>();
    const float *mup = v.mu, *isp = v.invstd;
    double area[9];
    region_sizes(s, area);
    // d of the nine region sums of f = BN(sq), per (frame, channel)
    std::vector<double> dv(s.nt * r * 9, 0.0), ddw(r * 9, 0.0), dbeta(r, 0.0), dgamma(r, 0.0);
    for (int64_t f = 0; f < s.nt; ++f) {
      const int64_t tt = f % s.t;
      for (int64_t i = 0; i < r; ++i) {
        const double dg = tt > 0 ? ddp[(f - 1) * r + i] / s.p : 0.0;          // d g_mean[t] (from d[t-1])
        const double df = tt + 1 < s.t ? -ddp[f * r + i] / s.p : 0.0;          // d f_mean[t]
        double* o = dv.data() + (f * r + i) * 9;
        for (int ab = 0; ab < 9; ++ab) o[ab] = dg * dw[i * 9 + ab] + (ab == 4 ? df : 0.0);
      }
    }
    // depthwise weight: d w[i, ab] = sum_f d g_mean * (region sum ab of f), f = BN(sq)
    for (int64_t f = 0; f < s.nt; ++f) {
      const int64_t tt = f % s.t;
      if (tt == 0) continue;
      for (int64_t i = 0; i < r; ++i) {
        const double dg = ddp[(f - 1) * r + i] / s.p;
        const double* v = vp + (f * r + i) * 9;
        const double scale = double(gm[i]) * isp[i];
        for (int ab = 0; ab < 9; ++ab)
          ddw[i * 9 + ab] += dg * (scale * (v[ab] - mup[i] * area[ab]) + bt[i] * area[ab]);
      }
    }
    for (int64_t i = 0; i < r; ++i)
      for (int64_t f = 0; f < s.nt; ++f) {
        const double* o = dv.data() + (f * r + i) * 9;
        const double* v = vp + (f * r + i) * 9;
        for (int ab = 0; ab < 9; ++ab) {
          dbeta[i] += o[ab] * area[ab];
          dgamma[i] += o[ab] * isp[i] * (v[ab] - mup[i] * area[ab]);
        }
      }
    gw_dw = at::empty({r, 9}, opt);
    g_bnw = at::empty({r}, opt);
    g_bnb = at::empty({r}, opt);
    float *gbw = fp(g_bnw), *gbb = fp(g_bnb);
    for (int64_t i = 0; i < r; ++i) {
      gbw[i] = float(dgamma[i]);
      gbb[i] = float(dbeta[i]);
    }
    // d sq = gamma * invstd * (df - mean df - xhat * mean(df * xhat)); eval: gamma * invstd * df
    dsqp = scratch.floats(s.nt * r * s.p);  // (NT, r, H, W); sq itself is not kept in evaluation
    const float* sqp = batch_stats ? v.sq : nullptr;
    dsqtp = scratch.floats(s.nt * s.p * r);  // the same, each frame transposed (P, r)
    const double m = double(s.nt * s.p);
    at::parallel_for(0, s.nt * r, 16, [&](int64_t b, int64_t e) {
      for (int64_t q = b; q < e; ++q) {
        const int64_t i = q % r;
        const double* o = dv.data() + q * 9;
        const float coef = float(double(gm[i]) * isp[i]);
        const float mdf = batch_stats ? float(dbeta[i] / m) : 0.f;
        const float mdx = batch_stats ? float(dgamma[i] / m) : 0.f;
        const float mean = mup[i], is = isp[i];
        for (int64_t y = 0; y < s.h; ++y) {
          // value of d f on row y, column class b: sum over the taps a whose rows contain y
          float colv[3];
          for (int bb = 0; bb < 3; ++bb) {
            double acc = o[3 + bb];
            if (y < s.h - 1) acc += o[bb];
            if (y > 0) acc += o[6 + bb];
            colv[bb] = float(acc);
          }
          // d f at column xx: the taps b whose columns contain xx (first, inner, last column)
          auto dfv = [&](int64_t xx) {
            float v = colv[1];
            if (xx < s.w - 1) v += colv[0];
            if (xx > 0) v += colv[2];
            return v;
          };
          const float d_first = dfv(0), d_inner = dfv(1), d_last = dfv(s.w - 1);
          float* dst = dsqp + q * s.p + y * s.w;
          if (sqp) {  // batch statistics: d sq also depends on sq
            const float* src = sqp + q * s.p + y * s.w;
            dst[0] = coef * (d_first - mdf - (src[0] - mean) * is * mdx);
#pragma omp simd
            for (int64_t xx = 1; xx < s.w - 1; ++xx) dst[xx] = coef * (d_inner - mdf - (src[xx] - mean) * is * mdx);
            if (s.w > 1) dst[s.w - 1] = coef * (d_last - mdf - (src[s.w - 1] - mean) * is * mdx);
          } else {
            dst[0] = coef * d_first;
#pragma omp simd
            for (int64_t xx = 1; xx < s.w - 1; ++xx) dst[xx] = coef * d_inner;
            if (s.w > 1) dst[s.w - 1] = coef * d_last;
          }
        }
      }
    });
    at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
      for (int64_t f = b; f < e; ++f) transpose_matrix(dsqp + f * r * s.p, r, s.p, dsqtp + f * s.p * r);
    });
    // d W^T (C, r) = sum_f xs[f] (C, P) @ dsq[f]^T (P, r): rows of C in parallel, frames summed
    // inside each tile
    // (NHWC: d W (r, C) = sum_f dsq[f] (r, P) @ xs[f] (P, C), xs's pixels being rows: strips of
    // columns in parallel; the same sums in the same order)
    gw_ms = at::empty({r, s.c}, opt);  // written as the column-major (C, r) product
    float* gwp = gw_ms.data_ptr<float>();
    if (nhwc) {  // K = (frame, pixel) in blocks of ~64 pixels (of one frame, or of whole small frames)
      constexpr int64_t kCols = 48, kPix = 64;
      const int64_t pb = std::min(s.p, kPix), fb = std::max<int64_t>(1, kPix / s.p);
      at::parallel_for(0, (s.c + kCols - 1) / kCols, 1, [&](int64_t b, int64_t e) {
        const int64_t j0 = b * kCols, j1 = std::min(s.c, e * kCols);
        for (int64_t f = 0; f < s.nt; f += fb)
          for (int64_t p0 = 0; p0 < s.p; p0 += pb)
            gemm({dsqp + f * r * s.p + p0, r * s.p, s.p, 1}, {xsp + (f * s.p + p0) * s.c + j0, s.p * s.c, s.c, 1},
                 gwp + j0, s.c, std::min(fb, s.nt - f), std::min(pb, s.p - p0), j1 - j0, 0, r, f > 0 || p0 > 0);
      });
    } else {
      const View xv{xsp, s.c * s.p, s.p, 1}, dv{dsqtp, s.p * r, r, 1};
      constexpr int64_t kRows = 32;
      at::parallel_for(0, (s.c + kRows - 1) / kRows, 1, [&](int64_t b, int64_t e) {
        gemm_long_a(xv, dv, gwp, -s.c, s.nt, s.p, r, b * kRows, std::min(s.c, e * kRows));
      });
    }
    float* gdw = fp(gw_dw);
    for (int64_t i = 0; i < r * 9; ++i) gdw[i] = float(ddw[i]);
  }
  // B2+B3 in one pass: G = g * (gate_c + gate_s) + d cm / C + d sm / P [+ E], then
  // dx[t] = k0 G[t+1] + k1 G[t] + k2 G[t-1] written into `big`, dk[j] = sum G[t] * x[t + j - 1].
  // E = W^T dsq, ME's data gradient, is read from `big` (oneDNN's) or, where this kernel forms
  // it, computed block by block here, into a small buffer. Blocks of channels in parallel;
  // inside a block the frames of a clip in order, with G of frames t-1, t, t+1 of the block in
  // three small buffers.
  Tensor dk = at::empty({s.c, 3}, opt);
  if (nhwc) {
    backward_b23_nhwc(s, g, x, k0, k1, k2, gate_c, v.g1, d_cm, d_sm, me_sq, dsqtp, big, dk);
    return {big, dk, gw_ste, gw_cs, gw_ct, gw_ce, gw_ms, g_bnw, g_bnb, gw_dw, gw_me};
  }
  {
    float* bp = big.data_ptr<float>();
    float* dkp = dk.data_ptr<float>();
    const float* gc = gate_c;
    const float* gs = v.g1;
    const float* dcm = d_cm;
    const float* dsm = d_sm;
    const float inv_c = 1.f / s.c, inv_p = 1.f / s.p;
    // Channels per block: G's three rows (~8k floats each) stay in L1 / L2. A multiple of 8
    // (the product's row tile) where that fits, and as many blocks as threads or a multiple.
    const int64_t threads = at::get_num_threads();
    const int64_t fit = std::max<int64_t>(1, std::min<int64_t>(s.c, 8192 / s.p));
    int64_t nblocks = (s.c + fit - 1) / fit;
    nblocks = (nblocks + threads - 1) / threads * threads;
    int64_t block = (s.c + nblocks - 1) / nblocks;
    if (block >= 8) block = block / 8 * 8;
    nblocks = (s.c + block - 1) / block;
    const View wt{me ? me_sq.data_ptr<float>() : nullptr, 0, 1, s.c};  // W^T (C, r)
    at::parallel_for(0, nblocks, 1, [&](int64_t bb, int64_t be) {
      std::vector<float> bufs(3 * block * s.p), ebuf(dsqp && s.p < 64 ? block * s.p : 0);  // E^T (small maps)
      std::vector<double> acc(3 * block);
      for (int64_t blk = bb; blk < be; ++blk) {
        const int64_t c0 = blk * block, c1 = std::min(s.c, c0 + block), nc = c1 - c0;
        std::fill(acc.begin(), acc.end(), 0.0);
        // G rows of frame f, channels c0..c1, into out (nc x P)
        auto make_g = [&](int64_t f, float* out) {
          const float* gsf = gs ? gs + f * s.p : nullptr;
          const float* dcmf = dcm ? dcm + f * s.p : nullptr;
          // E rows c0..c1 of frame f: (nc, r) @ dsq[f] (r, P), added to G's rows by the product's
          // tiles (below); on small maps (short rows, a poor fit for 16-float vectors) as E^T (P, nc)
          // = dsq[f]^T (P, r) @ W[:, c0..c1], stored column-major and added row by row. Same sums
          // in the same order either way.
          const bool e_in_tiles = dsqp && s.p >= 64;
          if (dsqp && !e_in_tiles)
            gemm({dsqtp + f * s.p * r_me, 0, r_me, 1}, {wt.p + c0, 0, s.c, 1}, ebuf.data(), -s.p, 1, r_me, c1 - c0, 0,
                 s.p);
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t q = f * s.c + c;
            const float* gr = gp + q * s.p;
            float* o = out + (c - c0) * s.p;
            const float a = gc[q];
            const float add = dsm ? dsm[q] * inv_p : 0.f;
            if (gsf) {
#pragma omp simd
              for (int64_t i = 0; i < s.p; ++i) o[i] = gr[i] * (a + gsf[i]) + dcmf[i] * inv_c + add;
            } else {
#pragma omp simd
              for (int64_t i = 0; i < s.p; ++i) o[i] = gr[i] * a + add;
            }
            if (dsqp && !e_in_tiles) {
              const float* er = ebuf.data() + (c - c0) * s.p;
#pragma omp simd
              for (int64_t i = 0; i < s.p; ++i) o[i] += er[i];
            }
          }
          if (e_in_tiles)  // G += E, each element as o[i] += E[i] above
            gemm(wt.at(c0, 0), {dsqp + f * r_me * s.p, 0, s.p, 1}, out, s.p, 1, r_me, s.p, 0, nc, false, false, true);
        };
        for (int64_t n = 0; n < s.n; ++n) {
          float* prev = bufs.data();
          float* cur = prev + block * s.p;
          float* next = cur + block * s.p;
          make_g(n * s.t, cur);
          for (int64_t tt = 0; tt < s.t; ++tt) {
            const int64_t f = n * s.t + tt;
            const bool has_next = tt + 1 < s.t, has_prev = tt > 0;
            if (has_next) make_g(f + 1, next);
            for (int64_t c = c0; c < c1; ++c) {
              const int64_t j = c - c0;
              const float* g0 = cur + j * s.p;
              const float* xr = xp + f * frame + c * s.p;
              if (has_prev) acc[3 * j] += dot_row(g0, xr - frame, s.p);
              acc[3 * j + 1] += dot_row(g0, xr, s.p);
              if (has_next) acc[3 * j + 2] += dot_row(g0, xr + frame, s.p);
              // G[t+1] fed xs[t+1] through k0, G[t-1] fed xs[t-1] through k2
              shift_row(has_next ? next + j * s.p : nullptr, g0, has_prev ? prev + j * s.p : nullptr, kp + 3 * c,
                        bp + f * frame + c * s.p, s.p);
            }
            std::swap(prev, cur);  // prev <- G[t], cur <- G[t+1]
            std::swap(cur, next);
          }
        }
        for (int64_t j = 0; j < nc; ++j)
          for (int k3 = 0; k3 < 3; ++k3) dkp[3 * (c0 + j) + k3] = float(acc[3 * j + k3]);
      }
    });
  }
  return {big, dk, gw_ste, gw_cs, gw_ct, gw_ce, gw_ms, g_bnw, g_bnb, gw_dw, gw_me};
}

// The module's training call as one autograd node made here (action_train): the same kernels as
// action_forward / action_backward, without a Python Function around them. Inside a model each
// module's Python node (eleven inputs, 23 tensors saved, a Python ctx) cost ~0.2 ms of forward
// and backward, the Python objects read cold after a convolution.
// Forward inputs, autograd's edges (tensors) in this order: x, k, ste_w, ce_sq, ce_t, ce_ex,
// me_sq, bn_w, bn_b, bn_rm, bn_rv, me_dw, me_ex.
struct ActionNode : public torch::autograd::Function<ActionNode> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, Tensor x, Tensor k, int64_t t, bool ste, bool ce,
                        bool me, Tensor ste_w, Tensor ce_sq, Tensor ce_t, Tensor ce_ex, Tensor me_sq, Tensor bn_w,
                        Tensor bn_b, Tensor bn_rm, Tensor bn_rv, bool batch_stats, double factor, double eps,
                        Tensor me_dw, Tensor me_ex) {
    std::vector<Tensor> r = action_forward(x, k, t, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm,
                                           bn_rv, batch_stats, factor, eps, me_dw, me_ex, /*cache_out=*/true);
    ctx->save_for_backward({x, k, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, me_dw, me_ex, r[1]});
    ctx->saved_data["t"] = t;
    ctx->saved_data["paths"] = int64_t(ste) | int64_t(ce) << 1 | int64_t(me) << 2;
    ctx->saved_data["batch_stats"] = batch_stats;
    return r[0];
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    TORCH_CHECK(!torch::GradMode::is_enabled(),
                "the ACTION kernel's backward is differentiable once (create_graph=True needs ACTIONLIB_NO_CPP=1)");
    const std::vector<Tensor> v = ctx->get_saved_variables();
    const int64_t paths = ctx->saved_data["paths"].toInt();
    const std::vector<Tensor> g =
        action_backward(grad_out[0], v[0], v[1], ctx->saved_data["t"].toInt(), paths & 1, paths & 2, paths & 4, v[2],
                        v[3], v[4], v[5], v[6], v[7], v[8], ctx->saved_data["batch_stats"].toBool(), v[9], v[10],
                        v[11]);
    // one entry per forward argument (undefined: none); g[i] is the gradient of v[i]
    torch::autograd::variable_list out(20);
    const int arg[11] = {0, 1, 6, 7, 8, 9, 10, 11, 12, 18, 19};  // v[i]'s forward argument
    const int edge[11] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 11, 12};    // and autograd edge
    for (int i = 0; i < 11; ++i)
      if (ctx->needs_input_grad(edge[i]) && v[i].numel()) out[arg[i]] = i ? g[i].view_as(v[i]) : g[i];
    return out;
  }
};

Tensor action_train(Tensor x, Tensor k, int64_t t, bool ste, bool ce, bool me, Tensor ste_w, Tensor ce_sq,
                    Tensor ce_t, Tensor ce_ex, Tensor me_sq, Tensor bn_w, Tensor bn_b, Tensor bn_rm, Tensor bn_rv,
                    bool batch_stats, double factor, double eps, Tensor me_dw, Tensor me_ex) {
  return ActionNode::apply(x, k, t, ste, ce, me, ste_w, ce_sq, ce_t, ce_ex, me_sq, bn_w, bn_b, bn_rm, bn_rv,
                           batch_stats, factor, eps, me_dw, me_ex);
}
