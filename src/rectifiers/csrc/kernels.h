// The fused FReLU and PReLU kernels as seen from outside their translation unit
// (pointwise.cpp, which holds them): what operators.cpp calls directly, without the dispatcher.
// Each call is counted (counts(): the tests check that the C++ path really ran).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <cstdint>
#include <vector>

namespace rectifiers_kernels {

// The arguments of every kernel: memory as (outer, C, inner) in order, the work block and the
// loop mode (0 segments, 1 rows), as rectifiers.ops.cpp.pointwise.plan and operators.cpp's
// plan() choose them.
struct Plan {
  int64_t outer, C, inner, mode;
};

// Elements per work block (fixed: the parameter-gradient summation order does not depend on
// the thread count).
constexpr int64_t BLOCK = int64_t{1} << 15;

void frelu_forward(const at::Tensor& x, const at::Tensor& b, at::Tensor y, c10::optional<at::Tensor> mask,
                   const Plan& p);
void frelu_backward(const at::Tensor& g, const at::Tensor& mask, c10::optional<at::Tensor> dx,
                    c10::optional<at::Tensor> db, const Plan& p);
bool prelu_forward(const at::Tensor& x, const at::Tensor& a, at::Tensor y, const Plan& p, bool detect);
void prelu_backward(const at::Tensor& g, const at::Tensor& s, const at::Tensor& a, c10::optional<at::Tensor> dx,
                    c10::optional<at::Tensor> da, const Plan& p);

// Calls so far: frelu forward, frelu backward, prelu forward, prelu backward.
std::vector<int64_t> counts();

}  // namespace rectifiers_kernels
