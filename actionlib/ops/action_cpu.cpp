// The whole ACTION module (spec section 2) on CPU, float32: forward and backward.
//
// Shapes: x (NT, C, H, W) contiguous, N clips of T frames, P = H*W, r = C/16.
// The full-size tensors are touched in a few fused passes; everything else is small:
//   forward   F1  x -> xs (in the output's buffer), channel mean cm (NT, P), spatial mean sm (NT, C)
//             ME squeeze sq = W xs (per-frame matrix products, or oneDNN on small maps)
//             gates from cm, sm, sq (small loops and matrix products, no autograd nodes)
//             F2  out = xs * (gate_c[nt, c] + gate_s[nt, p])          (in place)
//   backward  B1  g, x -> d gate_c (NT, C), d gate_s (NT, P) [and xs for ME's weight gradient]
//             gate backward (small); ME: dW = dsq xs^T, E = W^T dsq    (as the squeeze)
//             B23 G = E + g * (gate_c + gate_s) + d cm / C + d sm / P, and in the same pass
//                 dx = shift^T(G) (written over E or into a fresh buffer) and dk
// Only x is kept for the backward pass (xs is recomputed), plus the small gate tensors.
// ME only ever uses spatial means of its maps, so its BatchNorm and depthwise 3x3 conv act on
// the nine "region sums" of the squeezed map (tap (a, b) of a zero-padded 3x3 conv reads all
// rows but the last / all / all but the first, likewise for columns).
// With BatchNorm on running statistics (evaluation) the region sums of the squeezed map are W
// times the region sums of xs (the squeeze is linear), so the full-size squeeze is skipped: F1
// takes the nine sums of every map of xs, one (NT*9, C) @ (C, r) product maps them through W,
// and F1 does not store xs at all (F2 recomputes it from x while writing the output).
// Every reduction of the loops here runs in a fixed order on one thread (deterministic).
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

using at::Tensor;

namespace {

struct Shape {
  int64_t nt, n, t, c, h, w, p;
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

// The rows of xs = shift(x) frame by frame (frames in parallel, channels in order inside a frame):
// row (f, c) is written into `keep` (a full-size tensor) or, when that is null, into a per-thread
// buffer, then handed to row_fn(f, c, row); frame_done(f) follows each frame's last channel.
template <class RowFn, class FrameFn>
void for_each_xs_row(const float* x, const float* k, const Shape& s, float* keep, RowFn&& row_fn,
                     FrameFn&& frame_done) {
  at::parallel_for(0, s.nt, 1, [&](int64_t b, int64_t e) {
    std::vector<float> buf(keep ? 0 : s.p);
    for (int64_t f = b; f < e; ++f) {
      for (int64_t c = 0; c < s.c; ++c) {
        const float *prev, *cur, *next;
        neighbours(x, s, f, c, &prev, &cur, &next);
        float* o = keep ? keep + (f * s.c + c) * s.p : buf.data();
        shift_row(prev, cur, next, k + 3 * c, o, s.p);
        row_fn(f, c, static_cast<const float*>(o));
      }
      frame_done(f);
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

// CE's temporal conv as one matrix product: windows (NT, r*3), [f, i*3 + j] = z[f + j - 1, i].
Tensor windows(const Tensor& z, const Shape& s) {
  const int64_t r = z.size(1);
  Tensor out = at::zeros({s.nt, r * 3}, z.options());
  const float* zp = z.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t f = 0; f < s.nt; ++f)
    for (int64_t j = 0; j < 3; ++j) {
      const int64_t ts = f % s.t + j - 1;
      if (ts < 0 || ts >= s.t) continue;
      const float* src = zp + (f + j - 1) * r;
      for (int64_t i = 0; i < r; ++i) o[f * r * 3 + i * 3 + j] = src[i];
    }
  return out;
}

// Adjoint of windows(): dz[f + j - 1, i] += dwin[f, i*3 + j].
Tensor fold_windows(const Tensor& dwin, const Shape& s, int64_t r) {
  Tensor out = at::zeros({s.nt, r}, dwin.options());
  const float* d = dwin.data_ptr<float>();
  float* o = out.data_ptr<float>();
  for (int64_t f = 0; f < s.nt; ++f)
    for (int64_t j = 0; j < 3; ++j) {
      const int64_t ts = f % s.t + j - 1;
      if (ts < 0 || ts >= s.t) continue;
      float* dst = o + (f + j - 1) * r;
      for (int64_t i = 0; i < r; ++i) dst[i] += d[f * r * 3 + i * 3 + j];
    }
  return out;
}

// Region sizes |R_a| * |C_b| of the nine taps.
inline void region_sizes(const Shape& s, double* area) {
  const double rows[3] = {double(s.h - 1), double(s.h), double(s.h - 1)};
  const double cols[3] = {double(s.w - 1), double(s.w), double(s.w - 1)};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) area[a * 3 + b] = rows[a] * cols[b];
}

// Nine region sums of one H x W map, given the sum of all of it: only the edges are read.
inline void region_sums_from(const float* m, const Shape& s, double total, double* v) {
  const float first_row = sum_row(m, s.w), last_row = sum_row(m + (s.h - 1) * s.w, s.w);
  float first_col = 0.f, last_col = 0.f;  // two independent chains
  for (int64_t y = 0; y < s.h; ++y) {
    first_col += m[y * s.w];
    last_col += m[y * s.w + s.w - 1];
  }
  const double row_out[3] = {last_row, 0.0, first_row};  // what tap a leaves out
  const double col_out[3] = {last_col, 0.0, first_col};
  const double corner[3][3] = {{m[s.p - 1], 0.0, m[(s.h - 1) * s.w]}, {0, 0, 0}, {m[s.w - 1], 0.0, m[0]}};
  for (int a = 0; a < 3; ++a)
    for (int b = 0; b < 3; ++b) v[a * 3 + b] = total - row_out[a] - col_out[b] + corner[a][b];
}

// Nine region sums of one H x W map.
inline void region_sums(const float* m, const Shape& s, double* v) {
  region_sums_from(m, s, sum_row(m, s.p), v);
}

Tensor mat(const Tensor& w, int64_t rows) { return w.reshape({rows, -1}); }


// How ME's 1x1 squeeze (C -> r channels) and its gradients are computed, by map size P: oneDNN
// is the fastest for small maps, but reorders a large NCHW input into a fresh buffer (page
// faults) and its data gradient is slow for few output channels on large maps; batched matrix
// products (one per frame) have neither problem.
inline bool batched_forward(const Shape& s) { return s.p >= 400; }      // else oneDNN conv
inline bool batched_weight_grad(const Shape& s) { return s.p >= 400; }  // else oneDNN
inline bool batched_input_grad(const Shape& s) { return s.p >= 100; }   // else oneDNN

}  // namespace

// Returns {out, saved...}; see action_backward for the saved list.
std::vector<Tensor> action_forward(Tensor x, Tensor k, int64_t t, bool ste, bool ce, bool me, Tensor ste_w,
                                   Tensor ce_sq, Tensor ce_t, Tensor ce_ex, Tensor me_sq, Tensor bn_w,
                                   Tensor bn_b, Tensor bn_rm, Tensor bn_rv, bool batch_stats, double factor,
                                   double eps, Tensor me_dw, Tensor me_ex) {
  const Shape s = shape_of(x, t);
  const auto opt = x.options();
  const float* xp = x.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  // With BatchNorm on running statistics (evaluation), ME needs only the nine region sums of its
  // squeezed map; the squeeze is linear, so they are W times the region sums of xs and the
  // full-size squeeze is skipped. xs is then kept only when the squeeze reads it: otherwise F1
  // just reduces it row by row and F2 recomputes it from x while writing the output.
  const bool squeeze = me && batch_stats;
  Tensor xs = at::empty_like(x);  // the output; holds xs between F1 and F2 when `squeeze`
  Tensor cm = ste ? at::zeros({s.nt, s.p}, opt) : at::empty({0}, opt);
  Tensor sm = ce ? at::empty({s.nt, s.c}, opt) : at::empty({0}, opt);
  Tensor rsx = me && !squeeze ? at::empty({s.nt, 9, s.c}, opt) : at::empty({0}, opt);  // region sums of xs
  float* xsp = xs.data_ptr<float>();
  float* cmp = ste ? cm.data_ptr<float>() : nullptr;
  float* smp = ce ? sm.data_ptr<float>() : nullptr;
  float* rsxp = me && !squeeze ? rsx.data_ptr<float>() : nullptr;
  // F1: shift, channel mean, spatial mean [and region sums], frame by frame
  for_each_xs_row(
      xp, kp, s, squeeze ? xsp : nullptr,
      [&](int64_t f, int64_t c, const float* o) {
        if (smp || rsxp) {
          const float acc = sum_row(o, s.p);
          if (smp) smp[f * s.c + c] = acc / s.p;
          if (rsxp) {
            double v[9];
            region_sums_from(o, s, acc, v);
            for (int ab = 0; ab < 9; ++ab) rsxp[(f * 9 + ab) * s.c + c] = float(v[ab]);
          }
        }
        if (cmp) {
          float* cmf = cmp + f * s.p;
#pragma omp simd
          for (int64_t i = 0; i < s.p; ++i) cmf[i] += o[i];
        }
      },
      [&](int64_t f) {
        if (cmp)
          for (int64_t i = 0; i < s.p; ++i) cmp[f * s.p + i] /= s.c;
      });
  const double npaths = double(ste) + double(ce) + double(me);
  Tensor gate_c = at::full({s.nt, s.c}, npaths, opt);
  Tensor empty = at::empty({0}, opt);
  Tensor g1 = empty, z1 = empty, z2 = empty, g2 = empty, sq = empty, mu = empty, invstd = empty, vsq = empty,
         d = empty, g3 = empty;
  if (ste) {
    g1 = at::empty({s.nt, s.p}, opt);
    conv333(cmp, ste_w.data_ptr<float>(), g1.data_ptr<float>(), s);
    g1.sigmoid_();
  }
  if (ce) {
    const int64_t r = ce_sq.size(0);
    z1 = at::mm(sm, mat(ce_sq, r).t());                            // (NT, r)
    z2 = at::mm(windows(z1, s), mat(ce_t, r).t());                 // (NT, r)
    g2 = at::mm(at::relu(z2), mat(ce_ex, s.c).t()).sigmoid_();      // (NT, C)
    gate_c.add_(g2);
  }
  if (me) {
    const int64_t r = me_sq.size(0);
    mu = at::empty({r}, opt);
    invstd = at::empty({r}, opt);
    float* mup = mu.data_ptr<float>();
    float* isp = invstd.data_ptr<float>();
    if (squeeze) {
      if (batched_forward(s))  // (r, C) @ (NT, C, P), frame by frame
        sq = at::bmm(mat(me_sq, r).expand({s.nt, r, s.c}), xs.view({s.nt, s.c, s.p})).view({s.nt, r, s.h, s.w});
      else
        sq = at::conv2d(xs, me_sq).contiguous();  // (NT, r, H, W)
      const float* sqp = sq.data_ptr<float>();
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
      vsq = at::empty({s.nt, r, 9}, opt.dtype(at::kDouble));
      double* vp = vsq.data_ptr<double>();
      at::parallel_for(0, s.nt * r, 16, [&](int64_t b, int64_t e) {
        for (int64_t q = b; q < e; ++q) region_sums(sqp + q * s.p, s, vp + q * 9);
      });
    } else {  // running statistics; region sums of W xs = W (region sums of xs)
      for (int64_t i = 0; i < r; ++i) {
        mup[i] = bn_rm.data_ptr<float>()[i];
        isp[i] = float(1.0 / std::sqrt(double(bn_rv.data_ptr<float>()[i]) + eps));
      }
      vsq = at::mm(rsx.view({s.nt * 9, s.c}), mat(me_sq, r).t())  // one product: (NT*9, C) @ (C, r)
                .view({s.nt, 9, r}).transpose(1, 2).to(at::kDouble).contiguous();  // (NT, r, 9)
    }
    d = at::zeros({s.nt, r}, opt);
    double area[9];
    region_sizes(s, area);
    const double* vp = vsq.data_ptr<double>();
    const float *gm = bn_w.data_ptr<float>(), *bt = bn_b.data_ptr<float>(), *dw = me_dw.data_ptr<float>();
    float* dp = d.data_ptr<float>();
    for (int64_t f = 0; f < s.nt; ++f) {
      if (f % s.t == s.t - 1) continue;  // d[T-1] = 0
      for (int64_t i = 0; i < r; ++i) {
        const double scale = double(gm[i]) * isp[i];
        const double* vf = vp + (f * r + i) * 9;          // frame t: f's mean
        const double* vg = vp + ((f + 1) * r + i) * 9;    // frame t+1: conv(f)'s mean
        const double f_mean = scale * (vf[4] - mup[i] * area[4]) + bt[i] * area[4];
        double g_mean = 0;
        for (int ab = 0; ab < 9; ++ab) g_mean += dw[i * 9 + ab] * (scale * (vg[ab] - mup[i] * area[ab]) + bt[i] * area[ab]);
        dp[f * r + i] = float((g_mean - f_mean) / s.p);
      }
    }
    g3 = at::mm(d, mat(me_ex, s.c).t()).sigmoid_();  // (NT, C)
    gate_c.add_(g3);
  }
  // F2: out = xs * (gate_c + gate_s), in place [xs recomputed from x]
  const float* gc = gate_c.data_ptr<float>();
  const float* gs = ste ? g1.data_ptr<float>() : nullptr;
  at::parallel_for(0, s.nt * s.c, 64, [&](int64_t b, int64_t e) {
    for (int64_t q = b; q < e; ++q) {
      float* o = xsp + q * s.p;
      const float* gsf = gs ? gs + (q / s.c) * s.p : nullptr;
      static constexpr float kKept[3] = {0.f, 1.f, 0.f};  // xs kept in o: its row times 1, exact
      const float *prev = nullptr, *cur = o, *next = nullptr, *kq = kKept;
      if (!squeeze) {  // xs was not kept: recompute the row from x
        neighbours(xp, s, q / s.c, q % s.c, &prev, &cur, &next);
        kq = kp + 3 * (q % s.c);
      }
      shift_scale_row(prev, cur, next, kq, gc[q], gsf, o, s.p);
    }
  });
  return {xs, cm, g1, sm, z1, z2, g2, sq, mu, invstd, vsq, d, g3};
}

// Gradients {dx, dk, d ste_w, d ce_sq, d ce_t, d ce_ex, d me_sq, d bn_w, d bn_b, d me_dw, d me_ex}
// (empty where a path is off), from grad_out g and the forward's saved tensors.
std::vector<Tensor> action_backward(Tensor g, Tensor x, Tensor k, int64_t t, bool ste, bool ce, bool me,
                                    Tensor ste_w, Tensor ce_sq, Tensor ce_t, Tensor ce_ex, Tensor me_sq,
                                    Tensor bn_w, Tensor bn_b, bool batch_stats, Tensor me_dw, Tensor me_ex, Tensor cm,
                                    Tensor g1, Tensor sm, Tensor z1, Tensor z2, Tensor g2, Tensor sq, Tensor mu,
                                    Tensor invstd, Tensor vsq, Tensor d, Tensor g3) {
  g = g.contiguous();
  const Shape s = shape_of(x, t);
  const auto opt = x.options();
  const float* xp = x.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  const double npaths = double(ste) + double(ce) + double(me);
  Tensor gate_c = at::full({s.nt, s.c}, npaths, opt);
  if (ce) gate_c.add_(g2);
  if (me) gate_c.add_(g3);
  Tensor empty = at::empty({0}, opt);
  // xs for ME's weight gradient; with batched products it is written into the buffer that later
  // holds G and then dx (one full-size allocation less), with oneDNN into a scratch tensor
  Tensor big = me && batched_input_grad(s) ? at::empty_like(x) : Tensor();
  Tensor xs = me ? (big.defined() ? big : at::empty_like(x)) : empty;
  Tensor d_gc = (ce || me) ? at::empty({s.nt, s.c}, opt) : empty;
  Tensor d_gs = ste ? at::zeros({s.nt, s.p}, opt) : empty;
  float* xsp = me ? xs.data_ptr<float>() : nullptr;
  float* dgc = (ce || me) ? d_gc.data_ptr<float>() : nullptr;
  float* dgs = ste ? d_gs.data_ptr<float>() : nullptr;
  // B1: recompute xs; d gate_c = sum_p g * xs, d gate_s = sum_c g * xs
  for_each_xs_row(
      xp, kp, s, xsp,
      [&](int64_t f, int64_t c, const float* o) {
        const float* gr = gp + (f * s.c + c) * s.p;
        if (dgc) dgc[f * s.c + c] = dot_row(gr, o, s.p);
        if (dgs) {
          float* dgsf = dgs + f * s.p;
#pragma omp simd
          for (int64_t i = 0; i < s.p; ++i) dgsf[i] += gr[i] * o[i];
        }
      },
      [](int64_t) {});
  Tensor gw_ste = empty, gw_cs = empty, gw_ct = empty, gw_ce = empty, gw_ms = empty, g_bnw = empty, g_bnb = empty,
         gw_dw = empty, gw_me = empty;
  Tensor d_cm = empty, d_sm = empty, dsq_kept;  // big: (xs, then) G, then dx
  bool input_grad_later = false, accumulate = false;
  if (ste) {
    Tensor ds = d_gs * g1 * (1 - g1);
    d_cm = at::empty({s.nt, s.p}, opt);
    gw_ste = at::empty({27}, opt);
    conv333_backward(cm.data_ptr<float>(), ste_w.data_ptr<float>(), ds.data_ptr<float>(), d_cm.data_ptr<float>(),
                     gw_ste.data_ptr<float>(), s);
  }
  if (ce) {
    const int64_t r = ce_sq.size(0);
    Tensor dpre = d_gc * g2 * (1 - g2);                        // (NT, C)
    Tensor a = at::relu(z2);
    gw_ce = at::mm(dpre.t(), a);                                // (C, r)
    Tensor dz2 = at::mm(dpre, mat(ce_ex, s.c)) * (z2 > 0);      // (NT, r)
    gw_ct = at::mm(dz2.t(), windows(z1, s));                    // (r, 3r)
    Tensor dz1 = fold_windows(at::mm(dz2, mat(ce_t, r)), s, r);  // (NT, r)
    gw_cs = at::mm(dz1.t(), sm);                                // (r, C)
    d_sm = at::mm(dz1, mat(ce_sq, r));                          // (NT, C)
  }
  if (me) {
    const int64_t r = me_sq.size(0);
    Tensor dpre = d_gc * g3 * (1 - g3);
    gw_me = at::mm(dpre.t(), d);                                // (C, r)
    Tensor dd = at::mm(dpre, mat(me_ex, s.c)).contiguous();     // (NT, r)
    const float* ddp = dd.data_ptr<float>();
    const double* vp = vsq.data_ptr<double>();
    const float *gm = bn_w.data_ptr<float>(), *bt = bn_b.data_ptr<float>(), *dw = me_dw.data_ptr<float>();
    const float *mup = mu.data_ptr<float>(), *isp = invstd.data_ptr<float>();
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
    for (int64_t i = 0; i < r; ++i) {
      g_bnw.data_ptr<float>()[i] = float(dgamma[i]);
      g_bnb.data_ptr<float>()[i] = float(dbeta[i]);
    }
    // d sq = gamma * invstd * (df - mean df - xhat * mean(df * xhat)); eval: gamma * invstd * df
    Tensor dsq = at::empty({s.nt, r, s.h, s.w}, opt);  // (sq itself is not kept in evaluation)
    const float* sqp = batch_stats ? sq.data_ptr<float>() : nullptr;
    float* dsqp = dsq.data_ptr<float>();
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
    input_grad_later = batched_input_grad(s);  // then G += W^T dsq after B2
    if (batched_weight_grad(s)) {
      gw_ms = at::bmm(dsq.view({s.nt, r, s.p}), xs.view({s.nt, s.c, s.p}).transpose(1, 2)).sum(0);
    } else {
      auto grads = at::convolution_backward(dsq, xs, me_sq, c10::nullopt, {1, 1}, {0, 0}, {1, 1}, false, {0, 0}, 1,
                                            {!input_grad_later, true, false});
      if (!input_grad_later) {
        big = std::get<0>(grads).contiguous();  // W^T dsq; G is added to it
        accumulate = true;
      }
      gw_ms = std::get<1>(grads);
    }
    dsq_kept = dsq;
    for (int64_t i = 0; i < r; ++i)
      for (int ab = 0; ab < 9; ++ab) gw_dw.data_ptr<float>()[i * 9 + ab] = float(ddw[i * 9 + ab]);
  }
  if (input_grad_later) {  // E = W^T dsq, frame by frame: (NT, C, P) = (C, r) @ (NT, r, P)
    const int64_t r = me_sq.size(0);
    Tensor e = big.view({s.nt, s.c, s.p});
    at::bmm_out(e, mat(me_sq, r).t().expand({s.nt, s.c, r}), dsq_kept.view({s.nt, r, s.p}));
    accumulate = true;
  }
  if (!big.defined()) big = at::empty_like(x);
  // B2+B3 in one pass: G = [E +] g * (gate_c + gate_s) + d cm / C + d sm / P, then
  // dx[t] = k0 G[t+1] + k1 G[t] + k2 G[t-1] written over E[t], dk[j] = sum G[t] * x[t + j - 1].
  // Blocks of channels in parallel; inside a block the frames of a clip in order, with G of
  // frames t-1, t, t+1 of the block in three small buffers.
  Tensor dk = at::empty({s.c, 3}, opt);
  {
    float* bp = big.data_ptr<float>();
    float* dkp = dk.data_ptr<float>();
    const float* gc = gate_c.data_ptr<float>();
    const float* gs = ste ? g1.data_ptr<float>() : nullptr;
    const float* dcm = ste ? d_cm.data_ptr<float>() : nullptr;
    const float* dsm = ce ? d_sm.data_ptr<float>() : nullptr;
    const float inv_c = 1.f / s.c, inv_p = 1.f / s.p;
    const int64_t frame = s.c * s.p;
    const int64_t block = std::max<int64_t>(1, std::min<int64_t>(s.c, 8192 / s.p));
    const int64_t nblocks = (s.c + block - 1) / block;
    at::parallel_for(0, nblocks, 1, [&](int64_t bb, int64_t be) {
      std::vector<float> bufs(3 * block * s.p);
      std::vector<double> acc(3 * block);
      for (int64_t blk = bb; blk < be; ++blk) {
        const int64_t c0 = blk * block, c1 = std::min(s.c, c0 + block), nc = c1 - c0;
        std::fill(acc.begin(), acc.end(), 0.0);
        // G rows of frame f, channels c0..c1, into out (nc x P)
        auto make_g = [&](int64_t f, float* out) {
          const float* gsf = gs ? gs + f * s.p : nullptr;
          const float* dcmf = dcm ? dcm + f * s.p : nullptr;
          for (int64_t c = c0; c < c1; ++c) {
            const int64_t q = f * s.c + c;
            const float* gr = gp + q * s.p;
            const float* er = bp + q * s.p;
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
            if (accumulate) {
#pragma omp simd
              for (int64_t i = 0; i < s.p; ++i) o[i] += er[i];
            }
          }
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
