// What the C++ CPU kernels of rectifiers share (included first by every extension's source):
// loads and stores in the op-math type (bfloat16 by its bits), the run-time instruction-set
// choice (RECT_ISA_DISPATCH, cpu_has_avx2/avx512, set_isa) and the common headers.
// Built lazily by rectifiers.ops.cpp (torch.utils.cpp_extension.load).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#endif

namespace {

#if defined(__GNUC__)
#define RECT_INLINE inline __attribute__((always_inline))
#else
#define RECT_INLINE inline
#endif

// Loads and stores in the op-math type. bfloat16 by its bits, exactly as c10::BFloat16 does
// (round to nearest even, NaN to the quiet NaN 0x7FC0), branch-free so that loops vectorise.
template <typename scalar_t>
struct IO {
  using opmath_t = at::opmath_type<scalar_t>;
  using raw_t = scalar_t;
  static RECT_INLINE opmath_t load(raw_t v) { return static_cast<opmath_t>(v); }
  static RECT_INLINE raw_t store(opmath_t v) { return static_cast<raw_t>(v); }
};
template <>
struct IO<c10::BFloat16> {
  using opmath_t = float;
  using raw_t = uint16_t;
  static RECT_INLINE float load(uint16_t h) {
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static RECT_INLINE uint16_t store(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    const uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = 0u - static_cast<uint32_t>(f != f);  // all ones for NaN
    return static_cast<uint16_t>((r & ~nan) | (0x7FC0u & nan));
  }
};

// The same loops compiled for AVX2 too, picked at run time (the build stays portable):
// RECT_ISA_DISPATCH(f) defines f_any<scalar_t>(args...), which runs f compiled for AVX2 when the
// CPU has it, and the portable build of f otherwise.
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define RECT_X86 1
// The highest instruction set the kernels may use: 2 AVX-512, 1 AVX2, 0 portable code only
// (set_isa lowers it, so that the tests run every path on one machine).
inline int& isa_cap() {
  static int v = 2;
  return v;
}
inline bool cpu_has_avx2() {
  static const bool v = __builtin_cpu_supports("avx2");
  return v && isa_cap() >= 1;
}
inline bool cpu_has_avx512() {
  static const bool v = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512vl");
  return v && isa_cap() >= 2;
}
#define RECT_ISA_DISPATCH(NAME)                                                    \
  template <typename scalar_t, typename... Args>                                   \
  __attribute__((target("avx2"))) void NAME##_avx2(const Args&... args) {          \
    NAME<scalar_t>(args...);                                                       \
  }                                                                                \
  template <typename scalar_t, typename... Args>                                   \
  void NAME##_any(const Args&... args) {                                           \
    if (cpu_has_avx2()) return NAME##_avx2<scalar_t>(args...);                     \
    NAME<scalar_t>(args...);                                                       \
  }
#else
#define RECT_X86 0
inline int& isa_cap() {
  static int v = 0;
  return v;
}
inline bool cpu_has_avx2() { return false; }
inline bool cpu_has_avx512() { return false; }
#define RECT_ISA_DISPATCH(NAME)                                                    \
  template <typename scalar_t, typename... Args>                                   \
  void NAME##_any(const Args&... args) {                                           \
    NAME<scalar_t>(args...);                                                       \
  }
#endif

// Caps the instruction set of this extension's loops (2 AVX-512, 1 AVX2, 0 portable);
// returns the cap before. The CPU's own support still applies.
inline int64_t set_isa(int64_t level) {
  const int64_t before = isa_cap();
  isa_cap() = static_cast<int>(level);
  return before;
}

}  // namespace
