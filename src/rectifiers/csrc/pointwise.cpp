// The extension of the FReLU and PReLU kernels (op namespace rectifiers_cpp), built at first
// use by rectifiers.ops.cpp.pointwise: one translation unit of frelu.h and prelu.h.

#include "frelu.h"
#include "prelu.h"

TORCH_LIBRARY(rectifiers_cpp, m) {
  m.def("set_isa(int level) -> int", &set_isa);
  m.def("frelu_fwd(Tensor x, Tensor b, Tensor(a!) y, Tensor(b!)? mask, int outer, int C, int inner, int block, int mode) -> ()");
  m.def("frelu_bwd(Tensor g, Tensor mask, Tensor(a!)? dx, Tensor(b!)? db, int outer, int C, int inner, int block, int mode) -> ()");
  m.def("prelu_fwd(Tensor x, Tensor a, Tensor(a!) y, int outer, int C, int inner, int block, int mode, bool detect) -> bool");
  m.def("prelu_bwd(Tensor g, Tensor s, Tensor a, Tensor(a!)? dx, Tensor(b!)? da, int outer, int C, int inner, int block, int mode) -> ()");
}

TORCH_LIBRARY_IMPL(rectifiers_cpp, CPU, m) {
  m.impl("frelu_fwd", frelu_fwd);
  m.impl("frelu_bwd", frelu_bwd);
  m.impl("prelu_fwd", prelu_fwd);
  m.impl("prelu_bwd", prelu_bwd);
}
