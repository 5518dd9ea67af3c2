// The funnel activation, y = max(x, BN(depthwise conv(x))): the fused training step (op
// namespace rectifiers_funnel_cpp), built at first use by rectifiers.ops.cpp.funnel with
// -ffp-contract=off (the forward and the recomputation in backward round T identically).

#include "common.h"

namespace {

struct Geo {
  int64_t N, C, D, H, W, kd, kh, kw, pd, ph, pw, Dp, Hp, Wp, S, Sp, K, rows;
};

Geo make_geo(at::IntArrayRef d) {
  Geo g;
  g.N = d[0]; g.C = d[1]; g.D = d[2]; g.H = d[3]; g.W = d[4];
  g.kd = d[5]; g.kh = d[6]; g.kw = d[7];
  g.pd = g.kd / 2; g.ph = g.kh / 2; g.pw = g.kw / 2;
  g.Dp = g.D + 2 * g.pd; g.Hp = g.H + 2 * g.ph; g.Wp = g.W + 2 * g.pw;
  g.S = g.D * g.H * g.W; g.Sp = g.Dp * g.Hp * g.Wp; g.K = g.kd * g.kh * g.kw;
  g.rows = g.D * g.H;
  return g;
}

// Row sums: W float lanes, each summing at most FLUSH rows, then added into a float64 total
// (through 16 float lanes: vectorised, about float64's accuracy, a fixed order).
constexpr int64_t FLUSH = 64;
constexpr int LANES = 16;

template <typename T>
RECT_INLINE double lane_total(T* acc, int64_t n) {
  T lane[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; ++j) lane[j] += acc[i + j];
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(acc[i]);
  for (int j = 0; j < LANES; ++j) s += static_cast<double>(lane[j]);
  std::fill(acc, acc + n, T(0));
  return s;
}

// Accumulators: `q` quantities, each `len` lanes wide (len = W, or K * W for the weight
// gradient), with float64 totals.
template <typename T>
struct Acc {
  std::vector<T> a;
  std::vector<double> tot;
  int64_t q, len, rows = 0;
  Acc(int64_t q_, int64_t len_) : a(q_ * len_, T(0)), tot(q_, 0.0), q(q_), len(len_) {}
  T* row(int64_t i) { return a.data() + i * len; }
  void tick() {
    if (++rows >= FLUSH) flush();
  }
  void flush() {
    for (int64_t i = 0; i < q; ++i) tot[i] += lane_total(row(i), len);
    rows = 0;
  }
  void reset() {
    std::fill(a.begin(), a.end(), T(0));
    std::fill(tot.begin(), tot.end(), 0.0);
    rows = 0;
  }
};

// The interior of the zero-padded plane P (borders stay zero once cleared).
template <typename scalar_t, typename T = typename IO<scalar_t>::opmath_t>
RECT_INLINE void pad_plane(const typename IO<scalar_t>::raw_t* __restrict__ src, T* __restrict__ P, const Geo& g) {
  for (int64_t d = 0; d < g.D; ++d)
    for (int64_t h = 0; h < g.H; ++h) {
      const auto* s = src + (d * g.H + h) * g.W;
      T* p = P + ((d + g.pd) * g.Hp + (h + g.ph)) * g.Wp + g.pw;
      for (int64_t w = 0; w < g.W; ++w) p[w] = IO<scalar_t>::load(s[w]);
    }
}

// The conv runs over the padded plane as one flat array: output j (= d * Hp * Wp + h * Wp + w)
// reads P[j + a * Hp * Wp + b * Wp + c] for tap (a, b, c), so each kernel row is one long
// vector loop whatever W is (short rows, 7 x 7 planes, vectorise as well as long ones); the
// outputs at j's pad columns are computed and thrown away. L = the last valid j + 1.
RECT_INLINE int64_t flat_len(const Geo& g) {
  return (g.D - 1) * g.Hp * g.Wp + (g.H - 1) * g.Wp + g.W;
}

// o[0, n) += the taps of one kernel row (KW known at compile time, or 0: any).
template <int KW, typename T>
RECT_INLINE void taps_run(T* __restrict__ o, const T* __restrict__ p, const T* __restrict__ wr, int64_t n, int64_t kw) {
  if (KW > 0) {
    T wv[KW > 0 ? KW : 1];
    for (int c = 0; c < KW; ++c) wv[c] = wr[c];
    for (int64_t i = 0; i < n; ++i) {
      T s = o[i];
      for (int c = 0; c < KW; ++c) s += wv[c] * p[i + c];
      o[i] = s;
    }
  } else {
    for (int64_t c = 0; c < kw; ++c) {
      const T wc = wr[c];
      const T* pc = p + c;
      for (int64_t i = 0; i < n; ++i) o[i] += wc * pc[i];
    }
  }
}

// F (flat, L) = bias + the depthwise conv of the padded plane P with the kernel w (K).
template <int KW, typename T>
RECT_INLINE void conv_flat_k(const T* __restrict__ P, const T* __restrict__ w, T bias, T* __restrict__ F, const Geo& g) {
  const int64_t L = flat_len(g), HW = g.Hp * g.Wp;
  for (int64_t i = 0; i < L; ++i) F[i] = bias;
  for (int64_t a = 0; a < g.kd; ++a)
    for (int64_t b = 0; b < g.kh; ++b)
      taps_run<KW>(F, P + a * HW + b * g.Wp, w + (a * g.kh + b) * g.kw, L, g.kw);
}

// out (D, H, W) = bias + the depthwise conv of the padded plane P; F is scratch (Sp).
template <typename T>
RECT_INLINE void conv_plane(const T* P, const T* w, T bias, T* out, T* F, const Geo& g) {
  switch (g.kw) {
    case 1: conv_flat_k<1>(P, w, bias, F, g); break;
    case 3: conv_flat_k<3>(P, w, bias, F, g); break;
    case 5: conv_flat_k<5>(P, w, bias, F, g); break;
    case 7: conv_flat_k<7>(P, w, bias, F, g); break;
    default: conv_flat_k<0>(P, w, bias, F, g); break;
  }
  for (int64_t d = 0; d < g.D; ++d)
    for (int64_t h = 0; h < g.H; ++h) {
      const T* f = F + (d * g.Hp + h) * g.Wp;
      T* o = out + (d * g.H + h) * g.W;
      for (int64_t i = 0; i < g.W; ++i) o[i] = f[i];
    }
}

// The weight gradient of one plane: tot[tap] += sum_j Z[j] * P[j + offset(tap)], Z the flat
// dt (zero at the pad columns: the padded dt plane seen from its first interior element).
// LANES partial sums per tap and plane (lane j takes j, j + LANES, ... in order), then float64.
//
// Masked (any plane; the only path without GCC vector extensions): `valid` (flat, L) is 1 at
// real outputs, 0 at pad columns, and those are skipped, not multiplied by 0 (x may be inf or
// NaN there). The compiler does not vectorise it well.
template <typename T>
RECT_INLINE void wgrad_tap_masked(const T* __restrict__ Z, const T* __restrict__ p, const T* __restrict__ valid,
                                  double* __restrict__ tot, int64_t L) {
  T lane[LANES] = {0};
  int64_t i = 0;
  for (; i + LANES <= L; i += LANES)
    for (int j = 0; j < LANES; ++j) lane[j] += valid[i + j] != T(0) ? Z[i + j] * p[i + j] : T(0);
  double s = 0;
  for (; i < L; ++i) s += valid[i] != T(0) ? static_cast<double>(Z[i] * p[i]) : 0.0;
  for (int j = 0; j < LANES; ++j) s += static_cast<double>(lane[j]);
  *tot += s;
}

#if defined(__GNUC__)
// Unmasked, for a plane of finite x, in explicit 32-byte vectors (a ymm register under AVX2),
// the KW taps of a kernel row sharing each load of Z. Each product at a pad column is then 0
// times a finite value, a signed zero, and adding it leaves a partial sum as it was (none is
// ever -0: each starts at +0, and v + (+-0) == v for every other v), so the bits are the
// masked path's: same products, same order.
template <int KW, typename T>
RECT_INLINE void wgrad_row_vec(const T* __restrict__ Z, const T* __restrict__ p, double* __restrict__ tot, int64_t L) {
  constexpr int VL = 32 / sizeof(T);  // lanes per vector
  constexpr int NV = LANES / VL;      // vectors per LANES partial sums
  typedef T V __attribute__((vector_size(32)));
  V acc[KW][NV];
  for (int c = 0; c < KW; ++c)
    for (int v = 0; v < NV; ++v) acc[c][v] = V{};
  int64_t i = 0;
  for (; i + LANES <= L; i += LANES)
    for (int v = 0; v < NV; ++v) {
      V z;
      std::memcpy(&z, Z + i + v * VL, sizeof z);
      for (int c = 0; c < KW; ++c) {
        V pv;
        std::memcpy(&pv, p + c + i + v * VL, sizeof pv);
        acc[c][v] += z * pv;
      }
    }
  for (int c = 0; c < KW; ++c) {
    double s = 0;
    for (int64_t k = i; k < L; ++k) s += static_cast<double>(Z[k] * p[c + k]);
    for (int v = 0; v < NV; ++v)
      for (int j = 0; j < VL; ++j) s += static_cast<double>(acc[c][v][j]);
    tot[c] += s;
  }
}

template <int KW, typename T>
RECT_INLINE void wgrad_plane_vec(const T* Z, const T* P, double* tot, const Geo& g) {
  const int64_t L = flat_len(g), HW = g.Hp * g.Wp;
  for (int64_t a = 0; a < g.kd; ++a)
    for (int64_t b = 0; b < g.kh; ++b) {
      const T* p = P + a * HW + b * g.Wp;
      double* t = tot + (a * g.kh + b) * g.kw;
      if (KW > 0)
        wgrad_row_vec<(KW > 0 ? KW : 1)>(Z, p, t, L);
      else
        for (int64_t c = 0; c < g.kw; ++c) wgrad_row_vec<1>(Z, p + c, t + c, L);
    }
}
#endif

// Whether every value of the padded plane P (n values) is finite (v - v is NaN for inf and
// NaN, 0 otherwise; an OR without branches, so the loop vectorises).
template <typename T>
RECT_INLINE bool plane_finite(const T* __restrict__ P, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; ++i) bad |= (P[i] - P[i]) != T(0);
  return !bad;
}

template <typename T>
RECT_INLINE void wgrad_plane(const T* Z, const T* P, const T* valid, double* tot, const Geo& g) {
#if defined(__GNUC__)
  if (plane_finite(P, g.Sp)) {
    switch (g.kw) {
      case 1: wgrad_plane_vec<1>(Z, P, tot, g); return;
      case 3: wgrad_plane_vec<3>(Z, P, tot, g); return;
      case 5: wgrad_plane_vec<5>(Z, P, tot, g); return;
      case 7: wgrad_plane_vec<7>(Z, P, tot, g); return;
      default: wgrad_plane_vec<0>(Z, P, tot, g); return;
    }
  }
#endif
  const int64_t L = flat_len(g), HW = g.Hp * g.Wp;
  for (int64_t a = 0; a < g.kd; ++a)
    for (int64_t b = 0; b < g.kh; ++b)
      for (int64_t c = 0; c < g.kw; ++c)
        wgrad_tap_masked(Z, P + a * HW + b * g.Wp + c, valid, tot + (a * g.kh + b) * g.kw + c, L);
}

// The BatchNorm's affine map, the same arithmetic in forward and backward.
template <typename T>
struct Affine {
  T mean, invstd, scale, shift;
};

template <typename T>
RECT_INLINE Affine<T> affine(double mean, double invstd, double bw, double bb) {
  const double sc = bw * invstd;
  return {static_cast<T>(mean), static_cast<T>(invstd), static_cast<T>(sc), static_cast<T>(bb - mean * sc)};
}

// T rounded to the input's dtype, as the plain formula's conv output is.
template <typename scalar_t, typename T = typename IO<scalar_t>::opmath_t>
RECT_INLINE T t_of(T t, const Affine<T>& af) {
  return IO<scalar_t>::load(IO<scalar_t>::store(t * af.scale + af.shift));
}

// y = torch.maximum(x, T): NaN on either side gives NaN.
template <typename T>
RECT_INLINE T max_of(T xv, T tv) {
  return (xv < tv || tv != tv) ? tv : xv;
}

// One row of backward's pass A: the gradient's split at the maximum (dx where x won, gt where T
// won, halves at ties, both at NaN), x_hat, and the BatchNorm sums of gt and gt * x_hat.
// dx is always written, into a scratch row where it is not needed: GCC if-converts and
// vectorises the loop only with that store (without it the loop stayed scalar, and a backward
// for the BatchNorm's parameters alone took 1.5x a full one).
template <bool KEEP, typename scalar_t, typename T = typename IO<scalar_t>::opmath_t>
RECT_INLINE void split_row(const typename IO<scalar_t>::raw_t* __restrict__ xs, const typename IO<scalar_t>::raw_t* __restrict__ gs,
                         const T* __restrict__ t, const Affine<T>& af, typename IO<scalar_t>::raw_t* __restrict__ dx,
                         T* __restrict__ gt_out, T* __restrict__ xh_out, T* __restrict__ sg, T* __restrict__ sgx, int64_t W) {
  for (int64_t i = 0; i < W; ++i) {
    const T xv = IO<scalar_t>::load(xs[i]);
    const T gv = IO<scalar_t>::load(gs[i]);
    const T tv = t_of<scalar_t>(t[i], af);
    const T xh = (t[i] - af.mean) * af.invstd;
    const bool eq = xv == tv;
    const T half = gv * T(0.5);
    const T gt = xv > tv ? T(0) : (eq ? half : gv);
    dx[i] = IO<scalar_t>::store(xv < tv ? T(0) : (eq ? half : gv));
    if (KEEP) {
      gt_out[i] = gt;
      xh_out[i] = xh;
    }
    sg[i] += gt;
    sgx[i] += gt * xh;
  }
}

template <typename scalar_t>
struct FwdArgs {
  using raw = typename IO<scalar_t>::raw_t;
  using T = typename IO<scalar_t>::opmath_t;
  const raw* x;
  raw* y;
  const T* w;
  const T* cb;          // or nullptr
  const double* bnw;
  const double* bnb;
  double* stats;        // (C, 3): mean, invstd, biased var (eval: mean, var in; mean, invstd, var out)
  bool use_batch;
  double eps;
  Geo g;
};

template <typename scalar_t>
RECT_INLINE void fwd_channels(const FwdArgs<scalar_t>& A, int64_t c0, int64_t c1) {
  using T = typename IO<scalar_t>::opmath_t;
  const Geo& g = A.g;
  const int64_t S = g.S, W = g.W, M = g.N * S;
  std::vector<T> P(g.Sp, T(0)), F(g.Sp);
  std::vector<T> buf(A.use_batch ? M : S);
  Acc<T> acc(1, W);
  for (int64_t c = c0; c < c1; ++c) {
    const T* wc = A.w + c * g.K;
    const T bias = A.cb ? A.cb[c] : T(0);
    double* st = A.stats + 3 * c;
    double mean, invstd, var;
    if (A.use_batch) {
      acc.reset();
      for (int64_t n = 0; n < g.N; ++n) {
        pad_plane<scalar_t>(A.x + (n * g.C + c) * S, P.data(), g);
        T* t = buf.data() + n * S;
        conv_plane(P.data(), wc, bias, t, F.data(), g);
        for (int64_t r = 0; r < g.rows; ++r) {
          T* a = acc.row(0);
          const T* tr = t + r * W;
          for (int64_t i = 0; i < W; ++i) a[i] += tr[i];
          acc.tick();
        }
      }
      acc.flush();
      mean = acc.tot[0] / static_cast<double>(M);
      acc.reset();
      const T m = static_cast<T>(mean);
      for (int64_t r = 0; r < g.N * g.rows; ++r) {
        T* a = acc.row(0);
        const T* tr = buf.data() + r * W;
        for (int64_t i = 0; i < W; ++i) {
          const T dv = tr[i] - m;
          a[i] += dv * dv;
        }
        acc.tick();
      }
      acc.flush();
      // sum((t - m)^2) with m the rounded mean: remove the rounding's share exactly.
      const double dm = mean - static_cast<double>(m);
      var = acc.tot[0] / static_cast<double>(M) - dm * dm;
      if (var < 0) var = 0;
      invstd = 1.0 / std::sqrt(var + A.eps);
      const Affine<T> af = affine<T>(mean, invstd, A.bnw[c], A.bnb[c]);
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t o = (n * g.C + c) * S;
        const auto* xs = A.x + o;
        auto* ys = A.y + o;
        const T* t = buf.data() + n * S;
        for (int64_t i = 0; i < S; ++i)
          ys[i] = IO<scalar_t>::store(max_of(IO<scalar_t>::load(xs[i]), t_of<scalar_t>(t[i], af)));
      }
    } else {
      mean = st[0];
      var = st[1];
      invstd = 1.0 / std::sqrt(var + A.eps);
      const Affine<T> af = affine<T>(mean, invstd, A.bnw[c], A.bnb[c]);
      for (int64_t n = 0; n < g.N; ++n) {
        const int64_t o = (n * g.C + c) * S;
        pad_plane<scalar_t>(A.x + o, P.data(), g);
        T* t = buf.data();
        conv_plane(P.data(), wc, bias, t, F.data(), g);
        const auto* xs = A.x + o;
        auto* ys = A.y + o;
        for (int64_t i = 0; i < S; ++i)
          ys[i] = IO<scalar_t>::store(max_of(IO<scalar_t>::load(xs[i]), t_of<scalar_t>(t[i], af)));
      }
    }
    st[0] = mean;
    st[1] = invstd;
    st[2] = var;
  }
}

template <typename scalar_t>
struct BwdArgs {
  using raw = typename IO<scalar_t>::raw_t;
  using T = typename IO<scalar_t>::opmath_t;
  const raw* x;
  const raw* gy;
  const T* w;
  const T* wflip;
  const T* cb;          // or nullptr
  const double* bnw;
  const double* bnb;
  const double* stats;  // (C, 3): mean, invstd, var
  raw* dx;              // or nullptr
  double* dw;           // (C, K) or nullptr
  double* dcb;          // (C) or nullptr
  double* dbn;          // (C, 2): d bn_weight, d bn_bias
  bool use_batch;
  Geo g;
};

template <typename scalar_t>
RECT_INLINE void bwd_channels(const BwdArgs<scalar_t>& A, int64_t c0, int64_t c1) {
  using T = typename IO<scalar_t>::opmath_t;
  const Geo& g = A.g;
  const int64_t S = g.S, W = g.W, M = g.N * S;
  const bool conv_side = A.dx || A.dw || A.dcb;
  std::vector<T> P(g.Sp, T(0)), Q(conv_side ? g.Sp : 0, T(0)), F(g.Sp), t(S), dt(conv_side ? S : 0);
  std::vector<double> wtot(g.K);
  std::vector<T> valid(A.dw ? flat_len(g) : 0, T(0));
  for (int64_t j = 0; j < static_cast<int64_t>(valid.size()); ++j)
    valid[j] = ((j % g.Wp) < W && ((j / g.Wp) % g.Hp) < g.H) ? T(1) : T(0);
  std::vector<T> gtb(conv_side ? M : 0), xhb(conv_side ? M : 0);
  std::vector<typename IO<scalar_t>::raw_t> dx_scratch(A.dx ? 0 : W);  // see split_row
  Acc<T> acc(3, W);
  for (int64_t c = c0; c < c1; ++c) {
    const T* wc = A.w + c * g.K;
    const T* wf = A.wflip + c * g.K;
    const T bias = A.cb ? A.cb[c] : T(0);
    const double* st = A.stats + 3 * c;
    const Affine<T> af = affine<T>(st[0], st[1], A.bnw[c], A.bnb[c]);
    acc.reset();
    // Pass A: T again; the gradient's split at the maximum; x_hat; the BatchNorm sums.
    for (int64_t n = 0; n < g.N; ++n) {
      const int64_t o = (n * g.C + c) * S;
      pad_plane<scalar_t>(A.x + o, P.data(), g);
      conv_plane(P.data(), wc, bias, t.data(), F.data(), g);
      const auto* xs = A.x + o;
      const auto* gs = A.gy + o;
      T* gt_n = conv_side ? gtb.data() + n * S : nullptr;
      T* xh_n = conv_side ? xhb.data() + n * S : nullptr;
      auto* dxs = A.dx ? A.dx + o : nullptr;
      for (int64_t r = 0; r < g.rows; ++r) {
        const int64_t b = r * W;
        auto* dxr = dxs ? dxs + b : dx_scratch.data();
        if (gt_n)
          split_row<true, scalar_t>(xs + b, gs + b, t.data() + b, af, dxr, gt_n + b, xh_n + b, acc.row(0), acc.row(1), W);
        else
          split_row<false, scalar_t>(xs + b, gs + b, t.data() + b, af, dxr, (T*)nullptr, (T*)nullptr, acc.row(0), acc.row(1), W);
        acc.tick();
      }
    }
    acc.flush();
    const double sum_g = acc.tot[0], sum_gx = acc.tot[1];
    A.dbn[2 * c] = sum_gx;
    A.dbn[2 * c + 1] = sum_g;
    if (!conv_side) continue;
    // Pass B: the gradient reaching the conv output; the conv's gradients.
    const double k1 = A.bnw[c] * st[1];
    const T ka = static_cast<T>(k1);
    const T kb = static_cast<T>(A.use_batch ? sum_g / static_cast<double>(M) : 0.0);
    const T kc = static_cast<T>(A.use_batch ? sum_gx / static_cast<double>(M) : 0.0);
    acc.reset();
    std::fill(wtot.begin(), wtot.end(), 0.0);
    for (int64_t n = 0; n < g.N; ++n) {
      const int64_t o = (n * g.C + c) * S;
      const T* gt_n = gtb.data() + n * S;
      const T* xh_n = xhb.data() + n * S;
      for (int64_t r = 0; r < g.rows; ++r) {
        const int64_t b = r * W;
        T* d = dt.data() + b;
        T* sd = acc.row(2);
        if (A.use_batch) {
          for (int64_t i = 0; i < W; ++i) {
            const T v = ka * (gt_n[b + i] - kb - xh_n[b + i] * kc);
            d[i] = v;
            sd[i] += v;
          }
        } else {  // eval: the statistics are constants (and x_hat never multiplies a NaN in)
          for (int64_t i = 0; i < W; ++i) {
            const T v = ka * gt_n[b + i];
            d[i] = v;
            sd[i] += v;
          }
        }
        acc.tick();
      }
      // dt into the padded plane Q (borders stay zero).
      for (int64_t dd = 0; dd < g.D; ++dd)
        for (int64_t h = 0; h < g.H; ++h) {
          const T* s = dt.data() + (dd * g.H + h) * W;
          T* q = Q.data() + ((dd + g.pd) * g.Hp + (h + g.ph)) * g.Wp + g.pw;
          for (int64_t i = 0; i < W; ++i) q[i] = s[i];
        }
      if (A.dw) {
        pad_plane<scalar_t>(A.x + o, P.data(), g);
        wgrad_plane(Q.data() + (g.pd * g.Hp + g.ph) * g.Wp + g.pw, P.data(), valid.data(), wtot.data(), g);
      }
      if (A.dx) {
        // The transposed depthwise conv: dt padded, correlated with the flipped kernel.
        conv_plane(Q.data(), wf, T(0), t.data(), F.data(), g);
        auto* dxs = A.dx + o;
        for (int64_t i = 0; i < S; ++i) dxs[i] = IO<scalar_t>::store(IO<scalar_t>::load(dxs[i]) + t[i]);
      }
    }
    acc.flush();
    if (A.dcb) A.dcb[c] = acc.tot[2];
    if (A.dw) {
      for (int64_t k = 0; k < g.K; ++k) A.dw[c * g.K + k] = wtot[k];
    }
  }
}

RECT_ISA_DISPATCH(fwd_channels)
RECT_ISA_DISPATCH(bwd_channels)

template <typename T>
const T* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->const_data_ptr<T>() : nullptr;
}

void check_args(const at::Tensor& x, const Geo& g, const at::Tensor& w, const at::Tensor& bnw,
                const at::Tensor& bnb, const at::Tensor& stats, const char* fn) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous(), fn, ": x must be a contiguous CPU tensor");
  TORCH_CHECK(g.N * g.C * g.S == x.numel(), fn, ": dims do not match x");
  TORCH_CHECK(w.is_contiguous() && w.numel() == g.C * g.K, fn, ": w must be (C, K)");
  TORCH_CHECK(bnw.scalar_type() == at::kDouble && bnw.numel() == g.C && bnb.numel() == g.C, fn, ": bn");
  TORCH_CHECK(stats.scalar_type() == at::kDouble && stats.numel() == 3 * g.C && stats.is_contiguous(), fn, ": stats");
}

void funnel_fwd(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& cb,
                const at::Tensor& bnw, const at::Tensor& bnb, at::Tensor stats, at::Tensor y,
                at::IntArrayRef dims, bool use_batch, double eps) {
  const Geo g = make_geo(dims);
  check_args(x, g, w, bnw, bnb, stats, "funnel_fwd");
  TORCH_CHECK(y.is_contiguous() && y.numel() == x.numel() && y.scalar_type() == x.scalar_type(), "funnel_fwd: y");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "funnel_fwd", [&] {
    using raw = typename IO<scalar_t>::raw_t;
    using T = typename IO<scalar_t>::opmath_t;
    FwdArgs<scalar_t> a{reinterpret_cast<const raw*>(x.const_data_ptr<scalar_t>()),
                        reinterpret_cast<raw*>(y.mutable_data_ptr<scalar_t>()),
                        w.const_data_ptr<T>(), opt_ptr<T>(cb), bnw.const_data_ptr<double>(),
                        bnb.const_data_ptr<double>(), stats.mutable_data_ptr<double>(), use_batch, eps, g};
    at::parallel_for(0, g.C, 1, [&](int64_t c0, int64_t c1) { fwd_channels_any<scalar_t>(a, c0, c1); });
  });
}

void funnel_bwd(const at::Tensor& x, const at::Tensor& gy, const at::Tensor& w, const at::Tensor& wflip,
                const c10::optional<at::Tensor>& cb, const at::Tensor& bnw, const at::Tensor& bnb,
                const at::Tensor& stats, c10::optional<at::Tensor> dx, c10::optional<at::Tensor> dw,
                c10::optional<at::Tensor> dcb, at::Tensor dbn, at::IntArrayRef dims, bool use_batch) {
  const Geo g = make_geo(dims);
  check_args(x, g, w, bnw, bnb, stats, "funnel_bwd");
  TORCH_CHECK(gy.is_contiguous() && gy.numel() == x.numel() && gy.scalar_type() == x.scalar_type(), "funnel_bwd: g");
  TORCH_CHECK(wflip.is_contiguous() && wflip.numel() == w.numel(), "funnel_bwd: wflip");
  TORCH_CHECK(!dx.has_value() || (dx->is_contiguous() && dx->numel() == x.numel() && dx->scalar_type() == x.scalar_type()), "funnel_bwd: dx");
  TORCH_CHECK(!dw.has_value() || (dw->scalar_type() == at::kDouble && dw->numel() == g.C * g.K), "funnel_bwd: dw");
  TORCH_CHECK(!dcb.has_value() || (dcb->scalar_type() == at::kDouble && dcb->numel() == g.C), "funnel_bwd: dcb");
  TORCH_CHECK(dbn.scalar_type() == at::kDouble && dbn.numel() == 2 * g.C, "funnel_bwd: dbn");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "funnel_bwd", [&] {
    using raw = typename IO<scalar_t>::raw_t;
    using T = typename IO<scalar_t>::opmath_t;
    BwdArgs<scalar_t> a{reinterpret_cast<const raw*>(x.const_data_ptr<scalar_t>()),
                        reinterpret_cast<const raw*>(gy.const_data_ptr<scalar_t>()),
                        w.const_data_ptr<T>(), wflip.const_data_ptr<T>(), opt_ptr<T>(cb),
                        bnw.const_data_ptr<double>(), bnb.const_data_ptr<double>(), stats.const_data_ptr<double>(),
                        dx.has_value() ? reinterpret_cast<raw*>(dx->mutable_data_ptr<scalar_t>()) : nullptr,
                        dw.has_value() ? dw->mutable_data_ptr<double>() : nullptr,
                        dcb.has_value() ? dcb->mutable_data_ptr<double>() : nullptr,
                        dbn.mutable_data_ptr<double>(), use_batch, g};
    at::parallel_for(0, g.C, 1, [&](int64_t c0, int64_t c1) { bwd_channels_any<scalar_t>(a, c0, c1); });
  });
}

}  // namespace

TORCH_LIBRARY(rectifiers_funnel_cpp, m) {
  m.def("set_isa(int level) -> int", &set_isa);
  m.def("funnel_fwd(Tensor x, Tensor w, Tensor? cb, Tensor bnw, Tensor bnb, Tensor(a!) stats, Tensor(b!) y, int[] dims, bool use_batch, float eps) -> ()");
  m.def("funnel_bwd(Tensor x, Tensor gy, Tensor w, Tensor wflip, Tensor? cb, Tensor bnw, Tensor bnb, Tensor stats, Tensor(a!)? dx, Tensor(b!)? dw, Tensor(c!)? dcb, Tensor(d!) dbn, int[] dims, bool use_batch) -> ()");
}

TORCH_LIBRARY_IMPL(rectifiers_funnel_cpp, CPU, m) {
  m.impl("funnel_fwd", funnel_fwd);
  m.impl("funnel_bwd", funnel_bwd);
}
