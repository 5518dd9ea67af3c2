// PReLU (y = x > 0 ? x : a*x): the fused forward and backward (dx and the slope gradient's
// sums in one pass over (g, s)). Part of pointwise.cpp.
#pragma once

#include "pointwise.h"

#include <atomic>
#include <limits>

namespace {

// Work items: mode 0 ("segment"): each (outer, channel) run of `inner` elements, cut into
// pieces of at most `block`; mode 1 ("row"): groups of `rpb` whole rows of C * inner elements.
struct Plan {
  int64_t outer, C, inner, block, mode, pieces, rpb, items;
};

Plan make_plan(int64_t outer, int64_t C, int64_t inner, int64_t block, int64_t mode) {
  Plan p{outer, C, inner, block, mode, 1, 1, 0};
  if (mode == 0) {
    p.pieces = inner > 0 ? (inner + block - 1) / block : 1;
    p.items = outer * C * p.pieces;
  } else {
    int64_t row = C * inner;
    p.rpb = row > 0 ? std::max<int64_t>(1, block / row) : 1;
    p.items = (outer + p.rpb - 1) / p.rpb;
  }
  return p;
}

// ------------------------------------------------------------------------------------------
// The arguments of PReLU's forward.
template <typename scalar_t>
struct FwdArgs {
  using raw_t = typename IO<scalar_t>::raw_t;
  using opmath_t = typename IO<scalar_t>::opmath_t;
  const raw_t* x;
  raw_t* y;
  uint8_t* m;
  const opmath_t* b;     // per channel
  const opmath_t* brow;  // row mode: the bias expanded over one row
  Plan p;
  // PReLU: set (to 1) when some x < 0 gave an a*x below the dtype's smallest normal number
  // (subnormal or zero: y / a no longer recovers x to the dtype's precision); nullptr: no test.
  std::atomic<int>* lost;
};

// ------------------------------------------------------------------------------------------
// PReLU: y = x > 0 ? x : a*x (torch.prelu's single multiply); backward from the kept tensor s
// (the input, or the output when every slope is in (0, 1]: the same sign as x either way):
// dx = s > 0 ? g : a*g, and the slope gradient's sum over s <= 0 of g*s (the caller divides
// by a when s is the output).

// p ? a : b by the bits (masks AND'ed and OR'ed): gcc keeps a float select as a branch under
// its default -ftrapping-math and then does not vectorise the loop; this form it does.
template <typename T>
RECT_INLINE T pick(bool p, T a, T b) {
  using bits_t = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;
  static_assert(sizeof(bits_t) == sizeof(T), "pick: size");
  bits_t ua, ub;
  std::memcpy(&ua, &a, sizeof(T));
  std::memcpy(&ub, &b, sizeof(T));
  const bits_t m = bits_t(0) - bits_t(p);
  const bits_t r = (ua & m) | (ub & ~m);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// LOST: also tell whether some x < 0 has |a*x| under the dtype's smallest normal number (a
// conservative test on the op-math product, before the rounding to the dtype): an OR of 0/1
// integers, which the loop keeps vectorised. Returns that flag (0 without LOST).
template <bool ROWA, bool LOST, typename scalar_t>
RECT_INLINE uint32_t prelu_fwd_loop(const typename IO<scalar_t>::raw_t* xs, typename IO<scalar_t>::raw_t* ys,
                                    const typename IO<scalar_t>::opmath_t* as,
                                    typename IO<scalar_t>::opmath_t ac, int64_t n) {
  using opmath_t = typename IO<scalar_t>::opmath_t;
  const opmath_t tiny = static_cast<opmath_t>(std::numeric_limits<scalar_t>::min());
  uint32_t lost = 0;
  for (int64_t i = 0; i < n; ++i) {
    const opmath_t v = IO<scalar_t>::load(xs[i]);
    const opmath_t av = (ROWA ? as[i] : ac) * v;
    ys[i] = IO<scalar_t>::store(pick(v > opmath_t(0), v, av));
    if (LOST) lost |= uint32_t(v < opmath_t(0)) & uint32_t(av > -tiny);
  }
  return lost;
}

template <bool LOST, typename scalar_t>
RECT_INLINE void prelu_fwd_items_t(const FwdArgs<scalar_t>& a, int64_t w0, int64_t w1) {
  const Plan& p = a.p;
  const int64_t C = p.C, inner = p.inner, row = C * inner;
  uint32_t lost = 0;
  for (int64_t w = w0; w < w1; ++w) {
    if (p.mode == 0) {
      const int64_t seg = w / p.pieces, piece = w % p.pieces;
      const int64_t start = seg * inner + piece * p.block;
      const int64_t n = std::min(p.block, inner - piece * p.block);
      lost |= prelu_fwd_loop<false, LOST, scalar_t>(a.x + start, a.y + start, nullptr, a.b[seg % C], n);
    } else {
      const int64_t r0 = w * p.rpb, r1 = std::min(p.outer, r0 + p.rpb);
      for (int64_t r = r0; r < r1; ++r)
        lost |= prelu_fwd_loop<true, LOST, scalar_t>(a.x + r * row, a.y + r * row, a.brow, 0, row);
    }
  }
  if (LOST && lost) a.lost->store(1, std::memory_order_relaxed);
}

template <typename scalar_t>
RECT_INLINE void prelu_fwd_items(const FwdArgs<scalar_t>& a, int64_t w0, int64_t w1) {
  if (a.lost) prelu_fwd_items_t<true, scalar_t>(a, w0, w1);
  else prelu_fwd_items_t<false, scalar_t>(a, w0, w1);
}

// One run with one slope: dx, and the sum over s <= 0 of g*s: LANES running sums in the
// op-math type over chunks of CHUNK elements, each chunk's lanes then added in float64.
template <bool DX, bool DA, typename scalar_t>
RECT_INLINE double prelu_bwd_run(const typename IO<scalar_t>::raw_t* s, const typename IO<scalar_t>::raw_t* g,
                                 typename IO<scalar_t>::raw_t* d, typename IO<scalar_t>::opmath_t a,
                                 int64_t n) {
  using opmath_t = typename IO<scalar_t>::opmath_t;
  double total[LANES] = {0};
  int64_t i = 0;
  for (; i + CHUNK <= n; i += CHUNK) {
    opmath_t lane[LANES] = {0};
    for (int64_t k = 0; k < CHUNK; k += LANES)
      for (int j = 0; j < LANES; ++j) {
        const int64_t q = i + k + j;
        const opmath_t sv = IO<scalar_t>::load(s[q]), gv = IO<scalar_t>::load(g[q]);
        const opmath_t ag = a * gv, gs = gv * sv;
        const bool pos = sv > opmath_t(0);
        if (DX) d[q] = IO<scalar_t>::store(pick(pos, gv, ag));
        if (DA) lane[j] += pick(pos, opmath_t(0), gs);
      }
    if (DA)
      for (int j = 0; j < LANES; ++j) total[j] += static_cast<double>(lane[j]);
  }
  double r = 0;
  for (; i < n; ++i) {
    const opmath_t sv = IO<scalar_t>::load(s[i]), gv = IO<scalar_t>::load(g[i]);
    const opmath_t ag = a * gv, gs = gv * sv;
    const bool pos = sv > opmath_t(0);
    if (DX) d[i] = IO<scalar_t>::store(pick(pos, gv, ag));
    if (DA) r += static_cast<double>(pick(pos, opmath_t(0), gs));
  }
  for (int j = 0; j < LANES; ++j) r += total[j];
  return r;
}

// One row of C * inner elements with the slopes expanded (row mode): float64 sums per element.
template <bool DX, bool DA, typename scalar_t>
RECT_INLINE void prelu_bwd_row(const typename IO<scalar_t>::raw_t* s, const typename IO<scalar_t>::raw_t* g,
                               typename IO<scalar_t>::raw_t* d, const typename IO<scalar_t>::opmath_t* as,
                               double* acc, int64_t n) {
  using opmath_t = typename IO<scalar_t>::opmath_t;
  for (int64_t i = 0; i < n; ++i) {
    const opmath_t sv = IO<scalar_t>::load(s[i]), gv = IO<scalar_t>::load(g[i]);
    const opmath_t ag = as[i] * gv, gs = gv * sv;
    const bool pos = sv > opmath_t(0);
    if (DX) d[i] = IO<scalar_t>::store(pick(pos, gv, ag));
    if (DA) acc[i] += static_cast<double>(pick(pos, opmath_t(0), gs));
  }
}

template <typename scalar_t>
struct PBwdArgs {
  using raw_t = typename IO<scalar_t>::raw_t;
  using opmath_t = typename IO<scalar_t>::opmath_t;
  const raw_t* g;
  const raw_t* s;
  const opmath_t* a;     // per channel
  const opmath_t* arow;  // row mode: the slopes expanded over one row
  raw_t* dx;             // or nullptr
  double* part;          // or nullptr: one sum per item (segment mode), per item and channel (row)
  Plan p;
};

template <bool DX, bool DA, typename scalar_t>
RECT_INLINE void prelu_bwd_items_t(const PBwdArgs<scalar_t>& a, double* acc_row, int64_t w0, int64_t w1) {
  const Plan& p = a.p;
  const int64_t C = p.C, inner = p.inner, row = C * inner;
  for (int64_t w = w0; w < w1; ++w) {
    if (p.mode == 0) {
      const int64_t seg = w / p.pieces, piece = w % p.pieces;
      const int64_t start = seg * inner + piece * p.block;
      const int64_t n = std::min(p.block, inner - piece * p.block);
      const double r = prelu_bwd_run<DX, DA, scalar_t>(a.s + start, a.g + start, DX ? a.dx + start : nullptr,
                                                      a.a[seg % C], n);
      if (DA) a.part[w] = r;
    } else {
      const int64_t r0 = w * p.rpb, r1 = std::min(p.outer, r0 + p.rpb);
      if (DA) std::fill(acc_row, acc_row + row, 0.0);
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t o = r * row;
        prelu_bwd_row<DX, DA, scalar_t>(a.s + o, a.g + o, DX ? a.dx + o : nullptr, a.arow, acc_row, row);
      }
      if (DA) {
        for (int64_t c = 0; c < C; ++c) {
          double t = 0;
          for (int64_t k = 0; k < inner; ++k) t += acc_row[c * inner + k];
          a.part[w * C + c] = t;
        }
      }
    }
  }
}

template <typename scalar_t>
RECT_INLINE void prelu_bwd_items(const PBwdArgs<scalar_t>& a, double* acc_row, int64_t w0, int64_t w1) {
  if (a.dx && a.part) prelu_bwd_items_t<true, true, scalar_t>(a, acc_row, w0, w1);
  else if (a.dx) prelu_bwd_items_t<true, false, scalar_t>(a, acc_row, w0, w1);
  else if (a.part) prelu_bwd_items_t<false, true, scalar_t>(a, acc_row, w0, w1);
}

RECT_ISA_DISPATCH(prelu_fwd_items)
RECT_ISA_DISPATCH(prelu_bwd_items)

template <typename scalar_t>
std::vector<typename IO<scalar_t>::opmath_t> expand_row(const typename IO<scalar_t>::opmath_t* v, const Plan& p) {
  std::vector<typename IO<scalar_t>::opmath_t> r;
  if (p.mode == 1) {
    r.resize(p.C * p.inner);
    for (int64_t c = 0; c < p.C; ++c)
      for (int64_t k = 0; k < p.inner; ++k) r[c * p.inner + k] = v[c];
  }
  return r;
}

// Returns whether some x < 0 gave an a*x below the dtype's smallest normal number (tested only
// with `detect`; false otherwise).
bool prelu_fwd(const at::Tensor& x, const at::Tensor& a, at::Tensor y, int64_t outer, int64_t C,
               int64_t inner, int64_t block, int64_t mode, bool detect) {
  TORCH_CHECK(x.device().is_cpu(), "prelu_fwd: CPU tensors only");
  TORCH_CHECK(outer * C * inner == x.numel() && y.numel() == x.numel() && a.numel() == C, "prelu_fwd: bad view");
  const Plan p = make_plan(outer, C, inner, block, mode);
  std::atomic<int> lost{0};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "prelu_fwd", [&] {
    using raw_t = typename IO<scalar_t>::raw_t;
    using opmath_t = typename IO<scalar_t>::opmath_t;
    const opmath_t* ap = a.const_data_ptr<opmath_t>();
    const auto arow = expand_row<scalar_t>(ap, p);
    FwdArgs<scalar_t> args{reinterpret_cast<const raw_t*>(x.const_data_ptr<scalar_t>()),
                           reinterpret_cast<raw_t*>(y.mutable_data_ptr<scalar_t>()), nullptr, ap,
                           arow.data(), p, detect ? &lost : nullptr};
    at::parallel_for(0, p.items, 1, [&](int64_t w0, int64_t w1) { prelu_fwd_items_any<scalar_t>(args, w0, w1); });
  });
  return lost.load() != 0;
}

void prelu_bwd(const at::Tensor& g, const at::Tensor& s, const at::Tensor& a, c10::optional<at::Tensor> dx,
               c10::optional<at::Tensor> da, int64_t outer, int64_t C, int64_t inner, int64_t block,
               int64_t mode) {
  TORCH_CHECK(g.device().is_cpu(), "prelu_bwd: CPU tensors only");
  TORCH_CHECK(outer * C * inner == g.numel() && s.numel() == g.numel() && a.numel() == C, "prelu_bwd: bad view");
  TORCH_CHECK(s.scalar_type() == g.scalar_type(), "prelu_bwd: dtypes");
  at::Tensor d = dx.has_value() ? *dx : at::Tensor();
  at::Tensor sa = da.has_value() ? *da : at::Tensor();
  TORCH_CHECK(!sa.defined() || (sa.scalar_type() == at::kDouble && sa.numel() == C), "prelu_bwd: da");
  const Plan p = make_plan(outer, C, inner, block, mode);
  const bool want_da = sa.defined();
  const int64_t row = C * inner;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "prelu_bwd", [&] {
    using raw_t = typename IO<scalar_t>::raw_t;
    using opmath_t = typename IO<scalar_t>::opmath_t;
    const opmath_t* ap = a.const_data_ptr<opmath_t>();
    const auto arow = expand_row<scalar_t>(ap, p);
    std::vector<double> part(want_da ? (p.mode == 0 ? p.items : p.items * C) : 0, 0.0);
    PBwdArgs<scalar_t> args{reinterpret_cast<const raw_t*>(g.const_data_ptr<scalar_t>()),
                            reinterpret_cast<const raw_t*>(s.const_data_ptr<scalar_t>()), ap, arow.data(),
                            d.defined() ? reinterpret_cast<raw_t*>(d.mutable_data_ptr<scalar_t>()) : nullptr,
                            want_da ? part.data() : nullptr, p};
    at::parallel_for(0, p.items, 1, [&](int64_t w0, int64_t w1) {
      std::vector<double> acc_row(want_da && p.mode == 1 ? row : 0);
      prelu_bwd_items_any<scalar_t>(args, acc_row.data(), w0, w1);
    });
    if (want_da) {  // the partial sums in item order: the same whatever the thread count
      double* out = sa.mutable_data_ptr<double>();
      for (int64_t c = 0; c < C; ++c) out[c] = 0;
      if (p.mode == 0) {
        for (int64_t w = 0; w < p.items; ++w) out[(w / p.pieces) % C] += part[w];
      } else {
        for (int64_t w = 0; w < p.items; ++w)
          for (int64_t c = 0; c < C; ++c) out[c] += part[w * C + c];
      }
    }
  });
}

}  // namespace
