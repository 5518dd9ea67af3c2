// What the FReLU and PReLU kernels (frelu.h, prelu.h; one extension, pointwise.cpp) share.
#pragma once

#include "common.h"

namespace {

// Lanes of the fixed-order sums (see sum_of in frelu.h, prelu_bwd_run in prelu.h).
constexpr int LANES = 16;
constexpr int64_t CHUNK = 256;

}  // namespace
