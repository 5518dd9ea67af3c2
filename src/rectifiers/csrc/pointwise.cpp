// The extension of the FReLU and PReLU kernels, built at first use by
// rectifiers.ops.cpp.pointwise: this translation unit holds the kernels (frelu.h, prelu.h) and
// registers them as the ops of namespace rectifiers_cpp; operators.cpp, the other translation
// unit of the same extension, calls them through kernels.h.

#include <atomic>

#include "frelu.h"
#include "kernels.h"
#include "prelu.h"

namespace {

std::atomic<int64_t> n_calls[4];

void counted_frelu_fwd(const at::Tensor& x, const at::Tensor& b, at::Tensor y, c10::optional<at::Tensor> mask,
                       int64_t outer, int64_t C, int64_t inner, int64_t block, int64_t mode) {
  frelu_fwd(x, b, std::move(y), std::move(mask), outer, C, inner, block, mode);
  n_calls[0]++;
}

void counted_frelu_bwd(const at::Tensor& g, const at::Tensor& mask, c10::optional<at::Tensor> dx,
                       c10::optional<at::Tensor> db, int64_t outer, int64_t C, int64_t inner, int64_t block,
                       int64_t mode) {
  frelu_bwd(g, mask, std::move(dx), std::move(db), outer, C, inner, block, mode);
  n_calls[1]++;
}

bool counted_prelu_fwd(const at::Tensor& x, const at::Tensor& a, at::Tensor y, int64_t outer, int64_t C,
                       int64_t inner, int64_t block, int64_t mode, bool detect) {
  const bool lost = prelu_fwd(x, a, std::move(y), outer, C, inner, block, mode, detect);
  n_calls[2]++;
  return lost;
}

void counted_prelu_bwd(const at::Tensor& g, const at::Tensor& s, const at::Tensor& a, c10::optional<at::Tensor> dx,
                       c10::optional<at::Tensor> da, int64_t outer, int64_t C, int64_t inner, int64_t block,
                       int64_t mode) {
  prelu_bwd(g, s, a, std::move(dx), std::move(da), outer, C, inner, block, mode);
  n_calls[3]++;
}

std::vector<int64_t> call_counts() { return rectifiers_kernels::counts(); }

}  // namespace

namespace rectifiers_kernels {

void frelu_forward(const at::Tensor& x, const at::Tensor& b, at::Tensor y, c10::optional<at::Tensor> mask,
                   const Plan& p) {
  counted_frelu_fwd(x, b, std::move(y), std::move(mask), p.outer, p.C, p.inner, BLOCK, p.mode);
}

void frelu_backward(const at::Tensor& g, const at::Tensor& mask, c10::optional<at::Tensor> dx,
                    c10::optional<at::Tensor> db, const Plan& p) {
  counted_frelu_bwd(g, mask, std::move(dx), std::move(db), p.outer, p.C, p.inner, BLOCK, p.mode);
}

bool prelu_forward(const at::Tensor& x, const at::Tensor& a, at::Tensor y, const Plan& p, bool detect) {
  return counted_prelu_fwd(x, a, std::move(y), p.outer, p.C, p.inner, BLOCK, p.mode, detect);
}

void prelu_backward(const at::Tensor& g, const at::Tensor& s, const at::Tensor& a, c10::optional<at::Tensor> dx,
                    c10::optional<at::Tensor> da, const Plan& p) {
  counted_prelu_bwd(g, s, a, std::move(dx), std::move(da), p.outer, p.C, p.inner, BLOCK, p.mode);
}

std::vector<int64_t> counts() { return {n_calls[0].load(), n_calls[1].load(), n_calls[2].load(), n_calls[3].load()}; }

}  // namespace rectifiers_kernels

TORCH_LIBRARY(rectifiers_cpp, m) {
  m.def("set_isa(int level) -> int", &set_isa);
  m.def("calls() -> int[]", &call_counts);
  m.def("frelu_fwd(Tensor x, Tensor b, Tensor(a!) y, Tensor(b!)? mask, int outer, int C, int inner, int block, int mode) -> ()");
  m.def("frelu_bwd(Tensor g, Tensor mask, Tensor(a!)? dx, Tensor(b!)? db, int outer, int C, int inner, int block, int mode) -> ()");
  m.def("prelu_fwd(Tensor x, Tensor a, Tensor(a!) y, int outer, int C, int inner, int block, int mode, bool detect) -> bool");
  m.def("prelu_bwd(Tensor g, Tensor s, Tensor a, Tensor(a!)? dx, Tensor(b!)? da, int outer, int C, int inner, int block, int mode) -> ()");
}

TORCH_LIBRARY_IMPL(rectifiers_cpp, CPU, m) {
  m.impl("frelu_fwd", counted_frelu_fwd);
  m.impl("frelu_bwd", counted_frelu_bwd);
  m.impl("prelu_fwd", counted_prelu_fwd);
  m.impl("prelu_bwd", counted_prelu_bwd);
}
