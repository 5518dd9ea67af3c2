// FReLU (flexible ReLU, y = relu(x) + b): the fused forward (y and a bit-packed mask in one
// pass) and backward (dx and the per-channel sums of g in one pass). Part of pointwise.cpp.
#pragma once

#include "pointwise.h"

namespace {

// relu as torch.relu: x < 0 gives +0, anything else (-0.0 and NaN included) is kept.
template <typename T>
RECT_INLINE T relu_of(T v) { return v < T(0) ? T(0) : v; }

// ------------------------------------------------------------------------------------------
// FReLU: y = relu(x) + b[c], and a bit-packed mask: bit i % 8 of byte i / 8 is relu(x_i) != 0
// (x > 0 or NaN), i the element's position in memory order; the bits past the last element
// are 0. Backward: dx = bit ? g : 0 and the float64 per-channel sums of g.
//
// Work items are flat ranges of memory order, [w*B, (w+1)*B), B a multiple of 64 (no two items
// share a mask byte), each done in sub-blocks of SUB elements whose passes (mask bits, then y;
// dx, then the sums) run from L1. Bias: "segment" mode (0) walks the runs of `inner` elements
// with one bias each (a broadcast constant in the loop); "row" mode (1), for short runs, reads
// the bias from a periodic expansion of the row of C * inner biases, and then B is a whole
// number of rows.

constexpr int64_t SUB = 4096;

struct FPlan {
  int64_t n, C, inner, row, B, items, mode;
};

FPlan make_fplan(int64_t outer, int64_t C, int64_t inner, int64_t block, int64_t mode) {
  FPlan p{outer * C * inner, C, inner, C * inner, block, 0, C == 1 ? 0 : mode};
  if (p.mode == 1) {
    int64_t a = p.row, b = 64;  // rows per item: a multiple of 64 / gcd(row, 64)
    while (b) { const int64_t t = a % b; a = b; b = t; }
    const int64_t q = 64 / a;
    int64_t r = std::max<int64_t>(1, block / p.row);
    r = (r + q - 1) / q * q;
    p.B = r * p.row;
  }
  p.items = p.n > 0 ? (p.n + p.B - 1) / p.B : 0;
  return p;
}

// y = relu(x) + b over n elements: a bias per element (ROWB, bs) or one bias (bc).
template <bool ROWB, typename scalar_t>
RECT_INLINE void fwd_loop(const typename IO<scalar_t>::raw_t* xs, typename IO<scalar_t>::raw_t* ys,
                          const typename IO<scalar_t>::opmath_t* bs,
                          typename IO<scalar_t>::opmath_t bc, int64_t n) {
  using opmath_t = typename IO<scalar_t>::opmath_t;
  for (int64_t i = 0; i < n; ++i)
    ys[i] = IO<scalar_t>::store(relu_of(IO<scalar_t>::load(xs[i])) + (ROWB ? bs[i] : bc));
}

// The sum of n values: LANES running sums in the op-math type (float for float, bf16, half)
// over chunks of CHUNK elements (16 terms per lane), each chunk's lanes then added in float64.
// Vectorises like a float loop, with about float64's accuracy; a fixed order.
template <typename scalar_t>
RECT_INLINE double sum_of(const typename IO<scalar_t>::raw_t* g, int64_t n) {
  using opmath_t = typename IO<scalar_t>::opmath_t;
  double total[LANES] = {0};
  int64_t i = 0;
  for (; i + CHUNK <= n; i += CHUNK) {
    opmath_t lane[LANES] = {0};
    for (int64_t k = 0; k < CHUNK; k += LANES)
      for (int j = 0; j < LANES; ++j) lane[j] += IO<scalar_t>::load(g[i + k + j]);
    for (int j = 0; j < LANES; ++j) total[j] += static_cast<double>(lane[j]);
  }
  double s = 0;
  for (; i < n; ++i) s += static_cast<double>(IO<scalar_t>::load(g[i]));
  for (int j = 0; j < LANES; ++j) s += total[j];
  return s;
}

// A run [i0, i1) of the forward, i0 and i1 absolute element indices (x, y, m are the bases):
// a byte's first element (i % 8 == 0) writes the byte, its later ones OR into it (a run that
// starts inside a byte follows, in the same item, the run that started it). bs[i - i0] is the
// bias of element i (ROWB), else bc.
template <bool ROWB, typename scalar_t>
RECT_INLINE void fwd_run_portable(const typename IO<scalar_t>::raw_t* x, typename IO<scalar_t>::raw_t* y,
                                  uint8_t* m, const typename IO<scalar_t>::opmath_t* bs,
                                  typename IO<scalar_t>::opmath_t bc, int64_t i0, int64_t i1) {
  using opmath_t = typename IO<scalar_t>::opmath_t;
  if (m) {  // the bits first: with y == x (in place) the y loop overwrites x
    for (int64_t i = i0; i < i1; ++i) {
      const unsigned bit = !(IO<scalar_t>::load(x[i]) <= opmath_t(0));
      if ((i & 7) == 0) m[i >> 3] = static_cast<uint8_t>(bit);
      else m[i >> 3] |= static_cast<uint8_t>(bit << (i & 7));
    }
  }
  fwd_loop<ROWB, scalar_t>(x + i0, y + i0, bs, bc, i1 - i0);
}

// dx = bit ? g : 0 (g's bits AND'ed with all ones or zeros: -0.0, NaN, inf kept) over the run
// [i0, i1), and the sum of g over it (DB).
template <bool DX, bool DB, typename scalar_t>
RECT_INLINE double bwd_run_portable(const typename IO<scalar_t>::raw_t* g, const uint8_t* m,
                                    typename IO<scalar_t>::raw_t* d, int64_t i0, int64_t i1) {
  using raw_t = typename IO<scalar_t>::raw_t;
  using bits_t = std::conditional_t<sizeof(raw_t) == 8, uint64_t,
                 std::conditional_t<sizeof(raw_t) == 4, uint32_t, uint16_t>>;
  static_assert(sizeof(bits_t) == sizeof(raw_t), "bwd_run_portable: size");
  if (DX) {
    const bits_t* gb = reinterpret_cast<const bits_t*>(g);
    bits_t* db = reinterpret_cast<bits_t*>(d);
    for (int64_t i = i0; i < i1; ++i)
      db[i] = gb[i] & static_cast<bits_t>(bits_t(0) - bits_t((m[i >> 3] >> (i & 7)) & 1u));
  }
  return DB ? sum_of<scalar_t>(g + i0, i1 - i0) : 0.0;
}

// acc += fa in float64, and fa = 0.
template <typename T>
RECT_INLINE void flush_row(double* acc, T* fa, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    acc[k] += static_cast<double>(fa[k]);
    fa[k] = T(0);
  }
}

#if RECT_X86
// AVX2, float32 and bfloat16: 8 elements (one mask byte) per step, in the op-math type float.
#define RECT_AVX2 inline __attribute__((target("avx2"), always_inline))

RECT_AVX2 __m256 ld8(const float* p) { return _mm256_loadu_ps(p); }
RECT_AVX2 __m256 ld8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
RECT_AVX2 void st8(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
RECT_AVX2 void st8(uint16_t* p, __m256 v) {  // as IO<BFloat16>::store: nearest even, NaN 0x7FC0
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
  const __m256i q = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(q));
}
// The 8 lanes of mask byte b as all ones / all zeros, for 32-bit and 16-bit elements.
RECT_AVX2 __m256i lanes32(uint8_t b) {
  const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(b), sel), sel);
}
RECT_AVX2 __m128i lanes16(uint8_t b) {
  const __m128i sel = _mm_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm_cmpeq_epi16(_mm_and_si128(_mm_set1_epi16(b), sel), sel);
}
// dx = bit ? g : 0 for 8 elements at p (mask byte b); returns g in float for the sum.
template <bool DX>
RECT_AVX2 __m256 dx8(const float* g, float* d, uint8_t b) {
  const __m256 gv = _mm256_loadu_ps(g);
  if (DX) _mm256_storeu_ps(d, _mm256_and_ps(gv, _mm256_castsi256_ps(lanes32(b))));
  return gv;
}
template <bool DX>
RECT_AVX2 __m256 dx8(const uint16_t* g, uint16_t* d, uint8_t b) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g));
  if (DX) _mm_storeu_si128(reinterpret_cast<__m128i*>(d), _mm_and_si128(h, lanes16(b)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

#ifndef RECT_PF
#define RECT_PF 1024
#endif
template <bool ROWB, typename raw_t, typename scalar_t>
__attribute__((target("avx2"))) void fwd_run_avx2(const raw_t* x, raw_t* y, uint8_t* m, const float* bs,
                                                  float bc, int64_t i0, int64_t i1) {
  // The head up to the next byte and the tail past the last whole byte: portable.
  const int64_t h = std::min(i1, (i0 + 7) & ~int64_t(7));
  if (h > i0) fwd_run_portable<ROWB, scalar_t>(x, y, m, bs, bc, i0, h);
  const __m256 zero = _mm256_setzero_ps(), bv = _mm256_set1_ps(bc);
  int64_t i = h;
  // 64 elements per step where whole: the mask's 8 bytes in one store.
  for (; i + 64 <= i1; i += 64) {
    uint64_t bits = 0;
    for (int k = 0; k < 8; ++k) {
      const int64_t j = i + 8 * k;
      if ((k * 8 * sizeof(raw_t)) % 64 == 0)  // each line RECT_PF elements ahead, once
        _mm_prefetch(reinterpret_cast<const char*>(x + j + RECT_PF), _MM_HINT_T0);
      const __m256 v = ld8(x + j);
      bits |= static_cast<uint64_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NLE_UQ))) << (8 * k);
      st8(y + j, _mm256_add_ps(_mm256_max_ps(zero, v), ROWB ? _mm256_loadu_ps(bs + (j - i0)) : bv));
    }
    if (m) std::memcpy(m + (i >> 3), &bits, 8);
  }
  for (; i + 8 <= i1; i += 8) {
    const __m256 v = ld8(x + i);
    if (m) m[i >> 3] = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NLE_UQ)));
    // max(0, v): v for -0.0 and NaN (the second operand wins ties and NaN), as relu_of.
    st8(y + i, _mm256_add_ps(_mm256_max_ps(zero, v), ROWB ? _mm256_loadu_ps(bs + (i - i0)) : bv));
  }
  if (i < i1) fwd_run_portable<ROWB, scalar_t>(x, y, m, ROWB ? bs + (i - i0) : bs, bc, i, i1);
}

template <bool DX, bool DB, typename raw_t, typename scalar_t>
__attribute__((target("avx2"))) double bwd_run_avx2(const raw_t* g, const uint8_t* m, raw_t* d,
                                                    int64_t i0, int64_t i1) {
  const int64_t h = std::min(i1, (i0 + 7) & ~int64_t(7));
  double s = h > i0 ? bwd_run_portable<DX, DB, scalar_t>(g, m, d, i0, h) : 0.0;
  __m256d t0 = _mm256_setzero_pd(), t1 = _mm256_setzero_pd();
  int64_t i = h;
  while (i + 8 <= i1) {  // chunks of CHUNK elements: four float sums, then float64
    const int64_t ce = std::min(i1, i + CHUNK);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; i + 32 <= ce; i += 32) {
      for (int64_t q = 0; q < 32 * int64_t(sizeof(raw_t)); q += 64)  // the lines RECT_PF ahead
        _mm_prefetch(reinterpret_cast<const char*>(g + i + RECT_PF) + q, _MM_HINT_T0);
      a0 = _mm256_add_ps(a0, dx8<DX>(g + i, d + i, m[i >> 3]));
      a1 = _mm256_add_ps(a1, dx8<DX>(g + i + 8, d + i + 8, m[(i >> 3) + 1]));
      a2 = _mm256_add_ps(a2, dx8<DX>(g + i + 16, d + i + 16, m[(i >> 3) + 2]));
      a3 = _mm256_add_ps(a3, dx8<DX>(g + i + 24, d + i + 24, m[(i >> 3) + 3]));
    }
    for (; i + 8 <= ce; i += 8) a0 = _mm256_add_ps(a0, dx8<DX>(g + i, d + i, m[i >> 3]));
    if (DB) {
      const __m256 a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
      t0 = _mm256_add_pd(t0, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
      t1 = _mm256_add_pd(t1, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
    }
  }
  if (i < i1) s += bwd_run_portable<DX, DB, scalar_t>(g, m, d, i, i1);
  if (DB) {
    alignas(32) double v[4];
    _mm256_store_pd(v, _mm256_add_pd(t0, t1));
    s += (v[0] + v[1]) + (v[2] + v[3]);
  }
  return s;
}

// Row mode where a row is a whole number of vectors (row % 8 == 0 here, % 16 for AVX-512), so
// that no vector crosses a row's end: o, the place in the row, advances by the width and
// wraps. Forward: the bias of element i is brow[o] (one row of biases, in L1). Backward: g is
// added into fa[o] in the same loop as dx; every 16 whole rows fa goes into acc (float64).
// [i0, i1) starts on a mask byte; i1 - i0 is a whole number of vectors except at the end.
template <typename raw_t, typename scalar_t>
__attribute__((target("avx2"))) void fwd_rows_avx2(const raw_t* x, raw_t* y, uint8_t* m, const float* brow,
                                                   int64_t row, int64_t i0, int64_t i1) {
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = i0, o = i0 % row;
  for (; i + 8 <= i1; i += 8) {
    if ((i * int64_t(sizeof(raw_t))) % 64 == 0)
      _mm_prefetch(reinterpret_cast<const char*>(x + i + RECT_PF), _MM_HINT_T0);
    const __m256 v = ld8(x + i);
    if (m) m[i >> 3] = static_cast<uint8_t>(_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_NLE_UQ)));
    st8(y + i, _mm256_add_ps(_mm256_max_ps(zero, v), _mm256_loadu_ps(brow + o)));
    o += 8;
    if (o == row) o = 0;
  }
  if (i < i1) fwd_run_portable<true, scalar_t>(x, y, m, brow + o, 0, i, i1);  // o + (i1 - i) < row
}

template <bool DX, typename raw_t, typename scalar_t>
__attribute__((target("avx2"))) void bwd_rows_avx2(const raw_t* g, const uint8_t* m, raw_t* d, int64_t i0,
                                                   int64_t i1, float* fa, double* acc, int64_t row,
                                                   int64_t& rows) {
  int64_t i = i0, o = i0 % row;
  for (; i + 8 <= i1; i += 8) {
    if ((i * int64_t(sizeof(raw_t))) % 64 == 0)
      _mm_prefetch(reinterpret_cast<const char*>(g + i + RECT_PF), _MM_HINT_T0);
    const __m256 gv = dx8<DX>(g + i, d + i, m[i >> 3]);
    _mm256_storeu_ps(fa + o, _mm256_add_ps(_mm256_loadu_ps(fa + o), gv));
    o += 8;
    if (o == row) {
      o = 0;
      if (++rows % 16 == 0) flush_row(acc, fa, row);
    }
  }
  if (i < i1) {  // the tensor's last few elements (o + (i1 - i) < row: no row ends here)
    if (DX) bwd_run_portable<true, false, scalar_t>(g, m, d, i, i1);
    for (; i < i1; ++i) fa[o++] += IO<scalar_t>::load(g[i]);
  }
}
#undef RECT_AVX2

// AVX-512 (F, BW, VL), float32 and bfloat16: 16 elements (two mask bytes, one k-register) per
// step; what is left after the last whole step goes to the AVX2 loop above.
#define RECT_AVX512_T __attribute__((target("avx512f,avx512bw,avx512vl")))
#define RECT_AVX512 inline RECT_AVX512_T __attribute__((always_inline))

RECT_AVX512 __m512 ld16(const float* p) { return _mm512_loadu_ps(p); }
RECT_AVX512 __m512 ld16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
RECT_AVX512 void st16(float* p, __m512 v) { _mm512_storeu_ps(p, v); }
RECT_AVX512 void st16(uint16_t* p, __m512 v) {  // as IO<BFloat16>::store: nearest even, NaN 0x7FC0
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}
template <bool DX>
RECT_AVX512 __m512 dx16(const float* g, float* d, __mmask16 k) {
  const __m512 gv = _mm512_loadu_ps(g);
  if (DX) _mm512_storeu_ps(d, _mm512_maskz_mov_ps(k, gv));
  return gv;
}
template <bool DX>
RECT_AVX512 __m512 dx16(const uint16_t* g, uint16_t* d, __mmask16 k) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g));
  if (DX) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d), _mm256_maskz_mov_epi16(k, h));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
RECT_AVX512 __mmask16 bits16(const uint8_t* m) {
  uint16_t v;
  std::memcpy(&v, m, 2);
  return static_cast<__mmask16>(v);
}

template <bool ROWB, typename raw_t, typename scalar_t>
RECT_AVX512_T void fwd_run_avx512(const raw_t* x, raw_t* y, uint8_t* m, const float* bs, float bc,
                                  int64_t i0, int64_t i1) {
  const int64_t h = std::min(i1, (i0 + 7) & ~int64_t(7));
  if (h > i0) fwd_run_portable<ROWB, scalar_t>(x, y, m, bs, bc, i0, h);
  const __m512 zero = _mm512_setzero_ps(), bv = _mm512_set1_ps(bc);
  int64_t i = h;
  for (; i + 64 <= i1; i += 64) {  // the mask's 8 bytes in one store
    uint64_t bits = 0;
    for (int k = 0; k < 4; ++k) {
      const int64_t j = i + 16 * k;
      if ((k * 16 * sizeof(raw_t)) % 64 == 0)
        _mm_prefetch(reinterpret_cast<const char*>(x + j + RECT_PF), _MM_HINT_T0);
      const __m512 v = ld16(x + j);
      bits |= static_cast<uint64_t>(_mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ)) << (16 * k);
      st16(y + j, _mm512_add_ps(_mm512_max_ps(zero, v), ROWB ? _mm512_loadu_ps(bs + (j - i0)) : bv));
    }
    if (m) std::memcpy(m + (i >> 3), &bits, 8);
  }
  if (i < i1) fwd_run_avx2<ROWB, raw_t, scalar_t>(x, y, m, ROWB ? bs + (i - i0) : bs, bc, i, i1);
}

template <bool DX, bool DB, typename raw_t, typename scalar_t>
RECT_AVX512_T double bwd_run_avx512(const raw_t* g, const uint8_t* m, raw_t* d, int64_t i0, int64_t i1) {
  const int64_t h = std::min(i1, (i0 + 7) & ~int64_t(7));
  double s = h > i0 ? bwd_run_portable<DX, DB, scalar_t>(g, m, d, i0, h) : 0.0;
  __m512d t0 = _mm512_setzero_pd(), t1 = _mm512_setzero_pd();
  int64_t i = h;
  while (i + 16 <= i1) {  // chunks of CHUNK elements: two float sums, then float64
    const int64_t ce = std::min(i1, i + CHUNK);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; i + 32 <= ce; i += 32) {
      for (int64_t q = 0; q < 32 * int64_t(sizeof(raw_t)); q += 64)
        _mm_prefetch(reinterpret_cast<const char*>(g + i + RECT_PF) + q, _MM_HINT_T0);
      a0 = _mm512_add_ps(a0, dx16<DX>(g + i, d + i, bits16(m + (i >> 3))));
      a1 = _mm512_add_ps(a1, dx16<DX>(g + i + 16, d + i + 16, bits16(m + (i >> 3) + 2)));
    }
    for (; i + 16 <= ce; i += 16) a0 = _mm512_add_ps(a0, dx16<DX>(g + i, d + i, bits16(m + (i >> 3))));
    if (DB) {
      const __m512 a = _mm512_add_ps(a0, a1);
      t0 = _mm512_add_pd(t0, _mm512_cvtps_pd(_mm512_castps512_ps256(a)));
      t1 = _mm512_add_pd(t1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))));
    }
  }
  if (i < i1) s += bwd_run_avx2<DX, DB, raw_t, scalar_t>(g, m, d, i, i1);
  if (DB) {
    alignas(64) double v[8];
    _mm512_store_pd(v, _mm512_add_pd(t0, t1));
    s += ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
  }
  return s;
}

template <typename raw_t, typename scalar_t>
RECT_AVX512_T void fwd_rows_avx512(const raw_t* x, raw_t* y, uint8_t* m, const float* brow, int64_t row,
                                   int64_t i0, int64_t i1) {
  const __m512 zero = _mm512_setzero_ps();
  int64_t i = i0, o = i0 % row;
  for (; i + 16 <= i1; i += 16) {
    if ((i * int64_t(sizeof(raw_t))) % 64 == 0)
      _mm_prefetch(reinterpret_cast<const char*>(x + i + RECT_PF), _MM_HINT_T0);
    const __m512 v = ld16(x + i);
    if (m) {
      const uint16_t k = static_cast<uint16_t>(_mm512_cmp_ps_mask(v, zero, _CMP_NLE_UQ));
      std::memcpy(m + (i >> 3), &k, 2);
    }
    st16(y + i, _mm512_add_ps(_mm512_max_ps(zero, v), _mm512_loadu_ps(brow + o)));
    o += 16;
    if (o == row) o = 0;
  }
  if (i < i1) fwd_run_portable<true, scalar_t>(x, y, m, brow + o, 0, i, i1);
}

template <bool DX, typename raw_t, typename scalar_t>
RECT_AVX512_T void bwd_rows_avx512(const raw_t* g, const uint8_t* m, raw_t* d, int64_t i0, int64_t i1,
                                   float* fa, double* acc, int64_t row, int64_t& rows) {
  int64_t i = i0, o = i0 % row;
  for (; i + 16 <= i1; i += 16) {
    if ((i * int64_t(sizeof(raw_t))) % 64 == 0)
      _mm_prefetch(reinterpret_cast<const char*>(g + i + RECT_PF), _MM_HINT_T0);
    const __m512 gv = dx16<DX>(g + i, d + i, bits16(m + (i >> 3)));
    _mm512_storeu_ps(fa + o, _mm512_add_ps(_mm512_loadu_ps(fa + o), gv));
    o += 16;
    if (o == row) {
      o = 0;
      if (++rows % 16 == 0) flush_row(acc, fa, row);
    }
  }
  if (i < i1) {
    if (DX) bwd_run_portable<true, false, scalar_t>(g, m, d, i, i1);
    for (; i < i1; ++i) fa[o++] += IO<scalar_t>::load(g[i]);
  }
}
#undef RECT_AVX512
#undef RECT_AVX512_T
#endif

template <bool ROWB, typename scalar_t>
RECT_INLINE void fwd_run(const typename IO<scalar_t>::raw_t* x, typename IO<scalar_t>::raw_t* y, uint8_t* m,
                         const typename IO<scalar_t>::opmath_t* bs, typename IO<scalar_t>::opmath_t bc,
                         int64_t i0, int64_t i1) {
#if RECT_X86
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>) {
    if (cpu_has_avx512()) return fwd_run_avx512<ROWB, typename IO<scalar_t>::raw_t, scalar_t>(x, y, m, bs, bc, i0, i1);
    if (cpu_has_avx2()) return fwd_run_avx2<ROWB, typename IO<scalar_t>::raw_t, scalar_t>(x, y, m, bs, bc, i0, i1);
  }
#endif
  fwd_run_portable<ROWB, scalar_t>(x, y, m, bs, bc, i0, i1);
}

template <bool DX, bool DB, typename scalar_t>
RECT_INLINE double bwd_run(const typename IO<scalar_t>::raw_t* g, const uint8_t* m,
                           typename IO<scalar_t>::raw_t* d, int64_t i0, int64_t i1) {
#if RECT_X86
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>) {
    if (cpu_has_avx512()) return bwd_run_avx512<DX, DB, typename IO<scalar_t>::raw_t, scalar_t>(g, m, d, i0, i1);
    if (cpu_has_avx2()) return bwd_run_avx2<DX, DB, typename IO<scalar_t>::raw_t, scalar_t>(g, m, d, i0, i1);
  }
#endif
  return bwd_run_portable<DX, DB, scalar_t>(g, m, d, i0, i1);
}

// The row-mode loops above when the CPU, the dtype and the row allow; false otherwise.
template <typename scalar_t>
RECT_INLINE bool fwd_rows(const typename IO<scalar_t>::raw_t* x, typename IO<scalar_t>::raw_t* y, uint8_t* m,
                          const typename IO<scalar_t>::opmath_t* brow, int64_t row, int64_t i0, int64_t i1) {
#if RECT_X86
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>) {
    using raw_t = typename IO<scalar_t>::raw_t;
    if (cpu_has_avx512() && row % 16 == 0) return fwd_rows_avx512<raw_t, scalar_t>(x, y, m, brow, row, i0, i1), true;
    if (cpu_has_avx2() && row % 8 == 0) return fwd_rows_avx2<raw_t, scalar_t>(x, y, m, brow, row, i0, i1), true;
  }
#endif
  return false;
}

template <bool DX, typename scalar_t>
RECT_INLINE bool bwd_rows(const typename IO<scalar_t>::raw_t* g, const uint8_t* m, typename IO<scalar_t>::raw_t* d,
                          int64_t i0, int64_t i1, typename IO<scalar_t>::opmath_t* fa, double* acc, int64_t row,
                          int64_t& rows) {
#if RECT_X86
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, c10::BFloat16>) {
    using raw_t = typename IO<scalar_t>::raw_t;
    if (cpu_has_avx512() && row % 16 == 0)
      return bwd_rows_avx512<DX, raw_t, scalar_t>(g, m, d, i0, i1, fa, acc, row, rows), true;
    if (cpu_has_avx2() && row % 8 == 0)
      return bwd_rows_avx2<DX, raw_t, scalar_t>(g, m, d, i0, i1, fa, acc, row, rows), true;
  }
#endif
  return false;
}

template <typename scalar_t>
struct FFwdArgs {
  using raw_t = typename IO<scalar_t>::raw_t;
  using opmath_t = typename IO<scalar_t>::opmath_t;
  const raw_t* x;
  raw_t* y;
  uint8_t* m;             // or nullptr
  const opmath_t* b;      // per channel
  const opmath_t* bext;   // row mode: the bias expanded periodically over row + SUB elements
  FPlan p;
};

template <typename scalar_t>
RECT_INLINE void frelu_fwd_items(const FFwdArgs<scalar_t>& a, int64_t w0, int64_t w1) {
  const FPlan& p = a.p;
  for (int64_t w = w0; w < w1; ++w) {
    const int64_t s = w * p.B, e = std::min(p.n, s + p.B);
    if (p.mode == 1) {
      for (int64_t ss = s; ss < e; ss += SUB) {
        const int64_t se = std::min(e, ss + SUB);
        if (!fwd_rows<scalar_t>(a.x, a.y, a.m, a.bext, p.row, ss, se))
          fwd_run<true, scalar_t>(a.x, a.y, a.m, a.bext + ss % p.row, 0, ss, se);
      }
    } else {
      for (int64_t i = s; i < e;) {  // runs of one bias, in order
        const int64_t seg = i / p.inner, re = std::min(e, (seg + 1) * p.inner);
        fwd_run<false, scalar_t>(a.x, a.y, a.m, nullptr, a.b[seg % p.C], i, re);
        i = re;
      }
    }
  }
}

template <typename scalar_t>
struct FBwdArgs {
  using raw_t = typename IO<scalar_t>::raw_t;
  const raw_t* g;
  const uint8_t* m;
  raw_t* dx;     // or nullptr
  double* part;  // or nullptr: segment mode, one sum per (item w, run seg) at w + seg; row
                 // mode, one per item and channel at w * C + c
  FPlan p;
};

template <bool DX, bool DB, typename scalar_t>
RECT_INLINE void frelu_bwd_items_t(const FBwdArgs<scalar_t>& a, double* acc, int64_t w0, int64_t w1) {
  using opmath_t = typename IO<scalar_t>::opmath_t;
  const FPlan& p = a.p;
  for (int64_t w = w0; w < w1; ++w) {
    const int64_t s = w * p.B, e = std::min(p.n, s + p.B);
    if (p.mode == 0) {
      for (int64_t i = s; i < e;) {  // runs of one channel, cut in pieces of at most SUB
        const int64_t seg = i / p.inner, re = std::min({e, (seg + 1) * p.inner, i + SUB});
        const double r = bwd_run<DX, DB, scalar_t>(a.g, a.m, a.dx, i, re);
        if (DB) a.part[w + seg] += r;
        i = re;
      }
      continue;
    }
    // Row mode: dx by sub-blocks; the sums per place in the row, in the op-math type over 16
    // rows at a time (fa), each such partial then added in float64 (acc); then per channel.
    opmath_t* fa = reinterpret_cast<opmath_t*>(acc + p.row);
    if (DB) {
      std::fill(acc, acc + p.row, 0.0);
      std::fill(fa, fa + p.row, opmath_t(0));
    }
    int64_t rows = 0;
    for (int64_t ss = s; ss < e; ss += SUB) {
      const int64_t se = std::min(e, ss + SUB);
      if (DB && bwd_rows<DX, scalar_t>(a.g, a.m, a.dx, ss, se, fa, acc, p.row, rows)) continue;
      if (DX) bwd_run<true, false, scalar_t>(a.g, a.m, a.dx, ss, se);
      if (!DB) continue;
      for (int64_t i = ss; i < se;) {  // the items start on a row: o is i's place in its row
        const int64_t o = i % p.row, n = std::min(se - i, p.row - o);
        const auto* gs = a.g + i;
        opmath_t* f = fa + o;
        for (int64_t k = 0; k < n; ++k) f[k] += IO<scalar_t>::load(gs[k]);
        i += n;
        if (o + n == p.row && ++rows % 16 == 0) flush_row(acc, fa, p.row);
      }
    }
    if (DB) {
      flush_row(acc, fa, p.row);
      for (int64_t c = 0; c < p.C; ++c) {
        double t = 0;
        for (int64_t k = 0; k < p.inner; ++k) t += acc[c * p.inner + k];
        a.part[w * p.C + c] = t;
      }
    }
  }
}

template <typename scalar_t>
RECT_INLINE void frelu_bwd_items(const FBwdArgs<scalar_t>& a, double* acc, int64_t w0, int64_t w1) {
  if (a.dx && a.part) frelu_bwd_items_t<true, true, scalar_t>(a, acc, w0, w1);
  else if (a.dx) frelu_bwd_items_t<true, false, scalar_t>(a, acc, w0, w1);
  else if (a.part) frelu_bwd_items_t<false, true, scalar_t>(a, acc, w0, w1);
}

RECT_ISA_DISPATCH(frelu_fwd_items)
RECT_ISA_DISPATCH(frelu_bwd_items)

void frelu_fwd(const at::Tensor& x, const at::Tensor& b, at::Tensor y, c10::optional<at::Tensor> mask,
               int64_t outer, int64_t C, int64_t inner, int64_t block, int64_t mode) {
  TORCH_CHECK(x.device().is_cpu(), "frelu_fwd: CPU tensors only");
  TORCH_CHECK(outer * C * inner == x.numel() && y.numel() == x.numel() && b.numel() == C, "frelu_fwd: bad view");
  TORCH_CHECK(block > 0 && block % 64 == 0, "frelu_fwd: block must be a positive multiple of 64");
  const int64_t n = x.numel();
  uint8_t* mp = nullptr;
  if (mask.has_value()) {
    TORCH_CHECK(mask->scalar_type() == at::kByte && mask->numel() == (n + 7) / 8 && mask->is_contiguous(),
                "frelu_fwd: mask must be a contiguous uint8 tensor of (numel + 7) // 8 bytes");
    mp = mask->mutable_data_ptr<uint8_t>();
  }
  const FPlan p = make_fplan(outer, C, inner, block, mode);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "frelu_fwd", [&] {
    using raw_t = typename IO<scalar_t>::raw_t;
    using opmath_t = typename IO<scalar_t>::opmath_t;
    const opmath_t* bp = b.const_data_ptr<opmath_t>();
    std::vector<opmath_t> bext;
    if (p.mode == 1) {  // periodic: the sub-block starting at place o of a row reads bext[o:]
      const int64_t len = p.row + std::min(SUB, p.n);
      bext.resize(len);
      for (int64_t k = 0, c = 0; k < len; k += p.inner, c = c + 1 == p.C ? 0 : c + 1)
        std::fill(bext.begin() + k, bext.begin() + std::min(len, k + p.inner), bp[c]);
    }
    FFwdArgs<scalar_t> a{reinterpret_cast<const raw_t*>(x.const_data_ptr<scalar_t>()),
                         reinterpret_cast<raw_t*>(y.mutable_data_ptr<scalar_t>()), mp, bp, bext.data(), p};
    at::parallel_for(0, p.items, 1, [&](int64_t w0, int64_t w1) { frelu_fwd_items_any<scalar_t>(a, w0, w1); });
  });
}

void frelu_bwd(const at::Tensor& g, const at::Tensor& mask, c10::optional<at::Tensor> dx,
               c10::optional<at::Tensor> db, int64_t outer, int64_t C, int64_t inner, int64_t block,
               int64_t mode) {
  TORCH_CHECK(g.device().is_cpu(), "frelu_bwd: CPU tensors only");
  const int64_t n = g.numel();
  TORCH_CHECK(outer * C * inner == n, "frelu_bwd: bad view");
  TORCH_CHECK(block > 0 && block % 64 == 0, "frelu_bwd: block must be a positive multiple of 64");
  TORCH_CHECK(mask.scalar_type() == at::kByte && mask.numel() == (n + 7) / 8 && mask.is_contiguous(),
              "frelu_bwd: mask must be a contiguous uint8 tensor of (numel + 7) // 8 bytes");
  at::Tensor d = dx.has_value() ? *dx : at::Tensor();
  at::Tensor s = db.has_value() ? *db : at::Tensor();
  TORCH_CHECK(!d.defined() || (d.numel() == n && d.scalar_type() == g.scalar_type()), "frelu_bwd: dx");
  TORCH_CHECK(!s.defined() || (s.scalar_type() == at::kDouble && s.numel() == C), "frelu_bwd: db");
  const FPlan p = make_fplan(outer, C, inner, block, mode);
  const bool want_db = s.defined();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, g.scalar_type(), "frelu_bwd", [&] {
    using raw_t = typename IO<scalar_t>::raw_t;
    std::vector<double> part(want_db ? (p.mode == 1 ? p.items * C : p.items + outer * C) : 0, 0.0);
    FBwdArgs<scalar_t> a{reinterpret_cast<const raw_t*>(g.const_data_ptr<scalar_t>()),
                         mask.const_data_ptr<uint8_t>(),
                         d.defined() ? reinterpret_cast<raw_t*>(d.mutable_data_ptr<scalar_t>()) : nullptr,
                         want_db ? part.data() : nullptr, p};
    at::parallel_for(0, p.items, 1, [&](int64_t w0, int64_t w1) {
      std::vector<double> acc(want_db && p.mode == 1 ? 2 * p.row : 0);  // float64 sums, then op-math ones
      frelu_bwd_items_any<scalar_t>(a, acc.data(), w0, w1);
    });
    if (want_db) {  // the partial sums in item order: the same whatever the thread count
      double* out = s.mutable_data_ptr<double>();
      for (int64_t c = 0; c < C; ++c) out[c] = 0;
      for (int64_t w = 0; w < p.items; ++w) {
        if (p.mode == 1) {
          for (int64_t c = 0; c < C; ++c) out[c] += part[w * C + c];
        } else {
          const int64_t s0 = w * p.B / p.inner, s1 = (std::min(p.n, (w + 1) * p.B) - 1) / p.inner;
          for (int64_t seg = s0; seg <= s1; ++seg) out[seg % C] += part[w + seg];
        }
      }
    }
  });
}

}  // namespace
