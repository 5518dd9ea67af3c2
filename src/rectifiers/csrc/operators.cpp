// rectifiers' activations as PyTorch operators, with their autograd in C++: the per-call
// machinery of the eager backend (rectifiers.ops.eager), with no Python between the module and
// the kernels, forward or backward. The second translation unit of the extension built by
// rectifiers.ops.cpp.pointwise; it calls the fused CPU kernels of pointwise.cpp (kernels.h)
// directly and ATen's own ops for everything else, so the same operators serve CUDA tensors
// (no CUDA headers or nvcc needed).
//
//   rectifiers::leaky_relu(Tensor x, float negative_slope) -> Tensor
//   rectifiers::prelu(Tensor x, Tensor weight, int? dim) -> Tensor
//   rectifiers::flexible_relu(Tensor x, Tensor bias, int? dim) -> Tensor
//
// The arguments are those rectifiers.functional has checked (dim normalised, or None when the
// input has no channel dimension). What each keeps for backward is the table of
// rectifiers.ops.eager (docs/DESIGN.md), kept exactly:
//   leaky_relu, slope >= 0: the output (leaky_relu_backward(..., self_is_result=true));
//               slope < 0: a 1-byte mask x > 0;
//   prelu (CPU): the output when every slope is in (0, 1] and no a*x underflowed, else the input;
//               the fused kernels forward and backward; elsewhere torch's own prelu;
//   flexible_relu: a bit-packed mask (the fused CPU kernels) or a bool mask (ATen ops).
// Tensors that are not plain (fake or functional tensors while torch.compile / torch.export
// trace, torch.func wrappers, batched tensors) run the plain differentiable formulas, which
// every tracer and transform understands; so does a backward that builds a graph
// (create_graph) or runs under vmap (batched gradients).

#include <torch/extension.h>  // the Python entry points at the end (pybind11)

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/library.h>

#include <array>
#include <optional>
#include <vector>

#include "kernels.h"

namespace {

using at::Tensor;
namespace K = rectifiers_kernels;

// A channel run at least this long is one vector loop with a constant parameter ("segment"
// mode 0); shorter runs go row by row with an expanded parameter row (mode 1) up to this row
// length. The same choice as rectifiers.ops.cpp.pointwise.plan.
constexpr int64_t SEGMENT_MIN = 256;
constexpr int64_t ROW_MAX = int64_t{1} << 16;

// ---------------------------------------------------------------------------------------------
// Layouts and tensor kinds

bool is_dense(const Tensor& t) { return t.numel() <= 1 || t.is_non_overlapping_and_dense(); }

// x, or a dense copy of it (x's order of strides) when it has gaps: torch's element-wise kernels
// walk a strided view several times slower than one copy and a dense pass. At the autograd
// level, so the copy is recorded (the gradient passes straight through it).
Tensor packed(const Tensor& x) { return is_dense(x) ? x : x.clone(at::MemoryFormat::Preserve); }

// Whether t is an ordinary tensor: not a fake, functional, batched or torch.func-wrapped one,
// nor a Python subclass. Only those run the fused kernels (they read and write memory).
bool plain_tensor(const Tensor& t) {
  static const c10::DispatchKeySet special({c10::DispatchKey::Python, c10::DispatchKey::Functionalize,
                                            c10::DispatchKey::FuncTorchBatched, c10::DispatchKey::Batched,
                                            c10::DispatchKey::FuncTorchGradWrapper});
  return !t.key_set().has_any(special) && !t.is_meta();
}

// Whether this backward runs under a vmap (autograd's is_grads_batched, jacobian(vectorize=True),
// torch.func.vmap): the fused kernels and in-place passes have no batching rules there.
bool batched(const Tensor& g) {
  const auto inc = c10::impl::tls_local_dispatch_key_set().included_;
  return inc.has(c10::DispatchKey::VmapMode) || inc.has(c10::DispatchKey::FuncTorchVmapMode) || !plain_tensor(g);
}

bool is_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

at::ScalarType opmath(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// (outer, C, inner) when x's memory is that array in order (any dense layout, the channel at
// any dim), as rectifiers.ops._common.channel_runs.
std::optional<std::array<int64_t, 3>> channel_runs(const Tensor& x, std::optional<int64_t> cdim) {
  const int64_t n = x.numel();
  if (x.is_contiguous()) {
    if (!cdim) return std::array<int64_t, 3>{1, 1, n};
    const int64_t c = x.size(*cdim);
    int64_t inner = 1;
    for (int64_t d = *cdim + 1; d < x.dim(); ++d) inner *= x.size(d);
    return std::array<int64_t, 3>{c * inner ? n / (c * inner) : 0, c, inner};
  }
  if (!is_dense(x)) return std::nullopt;
  if (!cdim || x.size(*cdim) == 1) return std::array<int64_t, 3>{1, 1, n};
  const int64_t c = x.size(*cdim), st = x.stride(*cdim);
  int64_t inner = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != *cdim && x.size(d) > 1 && x.stride(d) < st) inner *= x.size(d);
  if (inner != st) return std::nullopt;
  return std::array<int64_t, 3>{n / (c * inner), c, inner};
}

// The fused kernels' plan for x, or nullopt where they do not apply (not CPU, not a float
// dtype, empty, a view with gaps, a layout neither loop mode takes).
std::optional<K::Plan> plan(const Tensor& x, std::optional<int64_t> cdim) {
  if (!x.device().is_cpu() || !is_float(x.scalar_type()) || x.numel() == 0) return std::nullopt;
  const auto v = channel_runs(x, cdim);
  if (!v) return std::nullopt;
  const int64_t outer = (*v)[0], c = (*v)[1], inner = (*v)[2];
  int64_t mode;
  if (c == 1 || inner >= SEGMENT_MIN) mode = 0;
  else if (c * inner <= ROW_MAX) mode = 1;
  else if (inner >= 16) mode = 0;
  else return std::nullopt;
  return K::Plan{outer, c, inner, mode};
}

// Whether t has this shape and lies in memory with these strides (where the size is > 1).
bool laid_out_as(const Tensor& t, at::IntArrayRef size, at::IntArrayRef stride) {
  if (t.sizes() != size) return false;
  for (size_t d = 0; d < size.size(); ++d)
    if (size[d] != 1 && t.stride(d) != stride[d]) return false;
  return true;
}

// Every dim but the channel dim (all of them for a shared parameter).
std::vector<int64_t> reduce_dims(int64_t nd, int64_t cdim) {
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < nd; ++d)
    if (d != cdim) dims.push_back(d);
  return dims;
}

// A 1-element or per-channel parameter shaped to broadcast against x along cdim (-1: shared).
Tensor channel_view(const Tensor& p, const Tensor& x, int64_t cdim) {
  if (p.numel() == 1 || cdim < 0) return p.reshape({});
  std::vector<int64_t> shape(x.dim(), 1);
  shape[cdim] = p.numel();
  return p.reshape(shape);
}

// A parameter gradient from the kernels' float64 sums (one per channel): divided by the
// parameter's own values when `divisor` is defined (PReLU keeping its output), then
// rounded once to the parameter's dtype, in its shape. One small loop, no torch ops but the
// output's allocation.
Tensor param_grad_from_sums(const Tensor& sums, at::IntArrayRef shape, at::ScalarType dtype, const Tensor& divisor) {
  Tensor out = at::empty(shape, sums.options().dtype(dtype));
  const bool divide = divisor.defined();
  const Tensor pc = divide ? divisor.detach().contiguous() : Tensor();
  const double* s = sums.const_data_ptr<double>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "param_grad", [&] {
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    const scalar_t* w = divide ? pc.const_data_ptr<scalar_t>() : nullptr;
    for (int64_t c = 0; c < out.numel(); ++c)
      o[c] = static_cast<scalar_t>(divide ? s[c] / static_cast<double>(w[c]) : s[c]);
  });
  return out;
}

// The sum of g over every dim but the channel's, in float32 or better, as the parameter.
Tensor param_grad(const Tensor& g, int64_t cdim, at::IntArrayRef shape, at::ScalarType dtype) {
  const auto acc = at::promote_types(g.scalar_type(), at::kFloat);
  const auto dims = reduce_dims(g.dim(), cdim);
  const Tensor s = dims.empty() ? g.to(acc) : g.sum(dims, false, acc);
  return s.reshape(shape).to(dtype);
}

// ---------------------------------------------------------------------------------------------
// Autograd nodes
//
// Each activation records one node of its own, as torch's generated code records its ops: the
// forward runs below autograd, the node keeps what backward needs (SavedVariable: version
// checks, saved-tensor hooks, "backward through the graph a second time" errors, no reference
// cycle through a kept output) and its apply() is the backward. Cheaper per call than a
// torch::autograd::Function, whose context stores its state in a string-keyed map.

using torch::autograd::Node;
using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

template <class T>
c10::intrusive_ptr<T> new_node() {
  return c10::make_intrusive<T>();
}

// A backward that builds a graph (create_graph), or runs under vmap: plain differentiable ops.
bool plain_backward(const Tensor& g) { return at::GradMode::is_enabled() || batched(g); }

// ---------------------------------------------------------------------------------------------
// LeakyReLU

// Slope >= 0: y > 0 exactly where x > 0 (NaN and -0.0 included), so the output, which the next
// layer keeps anyway, gives the gradient: leaky_relu_backward(g, y, a, self_is_result=true).
// Slope < 0: the output's sign no longer tells; a 1-byte mask x > 0 is kept instead (as 1.0 /
// 0.0 in g's dtype it has the sign of x for the strict x > 0 test).
struct LeakyReLUBackward : public Node {
  SavedVariable kept_;
  double slope_ = 0;
  bool is_output_ = true;
  std::string name() const override { return is_output_ ? "LeakyReLUKeepOutputBackward" : "LeakyReLUKeepMaskBackward"; }
  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    kept_.reset_data();
  }
  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor s = kept_.unpack(is_output_ ? getptr() : nullptr);
    const Tensor& g = grads[0];
    if (!g.defined() || !task_should_compute_output(0)) return {Tensor()};
    if (is_output_) return {at::leaky_relu_backward(g, s, slope_, true)};
    return {at::leaky_relu_backward(g, s.to(g.scalar_type()), slope_, false)};
  }
};

Tensor leaky_relu_op(const Tensor& input, double slope) {
  if (!plain_tensor(input) || torch::autograd::isFwGradDefined(input)) return at::leaky_relu(input, slope);
  const Tensor x = packed(input);
  if (!torch::autograd::compute_requires_grad(x)) return at::leaky_relu(x, slope);
  auto node = new_node<LeakyReLUBackward>();
  node->set_next_edges(torch::autograd::collect_next_edges(x));
  node->slope_ = slope;
  node->is_output_ = slope >= 0;
  Tensor y, mask;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    if (slope < 0) mask = x.gt(0);
    y = at::leaky_relu(x, slope);
  }
  torch::autograd::set_history(y, node);
  node->kept_ = slope >= 0 ? SavedVariable(y, true) : SavedVariable(mask, false);
  return y;
}

// ---------------------------------------------------------------------------------------------
// PReLU

// torch.prelu with the channels at any dim (bitwise the reference formula): the plain path.
Tensor plain_prelu(const Tensor& x, const Tensor& weight, std::optional<int64_t> dim) {
  const Tensor w = weight.to(x.scalar_type());
  if (w.numel() == 1 || !dim || *dim == 1) return at::prelu(x, w.reshape({-1}));
  if (x.dim() == 1) return at::prelu(x.unsqueeze(0), w).squeeze(0);
  return at::prelu(x.movedim(*dim, 1), w).movedim(1, *dim);  // y follows x's layout
}

// The parameter rounded to x's dtype, in the kernels' op-math type, flat and contiguous.
Tensor opmath_param(const Tensor& p, at::ScalarType dtype) {
  if (p.scalar_type() == dtype && dtype == opmath(dtype) && p.dim() == 1 && p.is_contiguous()) return p;  // as is
  return p.detach().to(dtype).reshape({-1}).to(opmath(dtype)).contiguous();
}

// PReLU on the fused CPU kernels, keeping the output (every slope in (0, 1]) or the input.
// dx = g if s > 0 else a*g with s the kept tensor (same sign as x either way); dL/da = sum over
// x <= 0 of g*x, that is sum(g * min(y, 0)) / a with the output kept (exact up to rounding for
// 0 < a <= 1 while a*x stays normal, which the forward tests).
struct PReLUBackward : public Node {
  SavedVariable kept_, weight_;
  K::Plan p_{};
  int64_t cdim_ = -1;
  bool keep_output_ = false;
  std::string name() const override { return "PReLUBackward"; }
  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    kept_.reset_data();
    weight_.reset_data();
  }
  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor s = kept_.unpack(keep_output_ ? getptr() : nullptr);
    const Tensor w = weight_.unpack();
    Tensor g = grads[0];
    const bool need_x = task_should_compute_output(0), need_w = task_should_compute_output(1);
    Tensor dx, dw;
    if (!g.defined() || !(need_x || need_w)) return {dx, dw};
    if (!plain_backward(g) && g.scalar_type() == s.scalar_type()) {
      // The fused kernel: dx and the slope gradient's float64 sums in one pass over (g, s). It
      // reads g in s's memory order: a g laid out otherwise (the expanded gradient of a sum,
      // a channels-last one) is copied so first (one pass).
      if (!laid_out_as(g, s.sizes(), s.strides())) g = at::empty_like(s).copy_(g);
      if (need_x) dx = at::empty_like(s);
      Tensor da = need_w ? at::empty({p_.C}, s.options().dtype(at::kDouble)) : Tensor();
      K::prelu_backward(g, s, opmath_param(w, s.scalar_type()), need_x ? std::optional<Tensor>(dx) : std::nullopt,
                        need_w ? std::optional<Tensor>(da) : std::nullopt, p_);
      // sum(g*y)/a = sum(g*x) with the output kept
      if (need_w) dw = param_grad_from_sums(da, w.sizes(), w.scalar_type(), keep_output_ ? w : Tensor());
      return {dx, dw};
    }
    // create_graph (double backward), vmap, or a gradient of another dtype: plain formulas,
    // differentiable and with batching rules.
    const Tensor av = channel_view(w.to(s.scalar_type()), s, cdim_);
    if (need_x) dx = at::where(s > 0, g, av * g);
    if (need_w) {
      const auto dims = reduce_dims(s.dim(), cdim_);
      if (plain_backward(g)) {
        Tensor t = g * s.clamp_max(0);
        if (keep_output_) t = t / av;
        dw = (dims.empty() ? t : t.sum(dims)).reshape(w.sizes()).to(w.scalar_type());
      } else {  // sums in float32 or better, as the fused kernel's
        const auto acc = at::promote_types(s.scalar_type(), at::kFloat);
        const Tensor t = s.clamp_max(0).mul_(g);
        Tensor sum = dims.empty() ? t.to(acc) : t.sum(dims, false, acc);
        if (keep_output_) sum = sum / channel_view(w.to(acc), sum, sum.dim() ? 0 : -1);
        dw = sum.reshape(w.sizes()).to(w.scalar_type());
      }
    }
    return {dx, dw};
  }
};

Tensor prelu_op(const Tensor& input, const Tensor& weight, std::optional<int64_t> dim) {
  // CUDA and other devices: torch's own prelu (the Triton kernels take the large tensors).
  if (!plain_tensor(input) || !plain_tensor(weight) || !input.device().is_cpu() || !weight.device().is_cpu() ||
      torch::autograd::isFwGradDefined(input) || torch::autograd::isFwGradDefined(weight))
    return plain_prelu(input, weight, dim);
  const Tensor x = packed(input);
  if (!torch::autograd::compute_requires_grad(x, weight)) return plain_prelu(x, weight, dim);
  const std::optional<int64_t> cdim = weight.numel() > 1 ? dim : std::nullopt;
  const auto p = plan(x, cdim);
  if (!p || !is_float(weight.scalar_type())) return plain_prelu(x, weight, dim);
  const Tensor ao = opmath_param(weight, x.scalar_type());
  // Keep the output when every slope (in x's dtype) is in (0, 1]: y / a recovers x exactly.
  bool keep_output = true;
  AT_DISPATCH_FLOATING_TYPES(ao.scalar_type(), "rectifiers::prelu", [&] {
    const scalar_t* v = ao.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < ao.numel(); ++i) keep_output = keep_output && v[i] > 0 && v[i] <= 1;
  });
  auto node = new_node<PReLUBackward>();
  node->set_next_edges(torch::autograd::collect_next_edges(x, weight));
  node->p_ = *p;
  node->cdim_ = cdim.value_or(-1);
  Tensor y;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    y = at::empty_like(x);
    // With the output kept and the slope learnt: keep the input instead where some a*x
    // underflowed (subnormal or zero), as torch does; the kernel tells in the same pass.
    if (K::prelu_forward(x, ao, y, *p, keep_output && weight.requires_grad())) keep_output = false;
  }
  node->keep_output_ = keep_output;
  torch::autograd::set_history(y, node);
  node->kept_ = keep_output ? SavedVariable(y, true) : SavedVariable(x, false);
  node->weight_ = SavedVariable(weight, false);
  return y;
}

// ---------------------------------------------------------------------------------------------
// FReLU (flexible ReLU)

// relu(x) + b with b broadcast along cdim (bitwise the reference formula): the plain path.
Tensor plain_frelu(const Tensor& x, const Tensor& bias, std::optional<int64_t> dim) {
  return at::relu(x) + channel_view(bias.to(x.scalar_type()), x, dim.value_or(0));
}

// max(0, x) + b keeping a mask of relu(x) != 0 (x > 0, or NaN, where torch's ReLU passes the
// gradient too; y > b is not exact for tiny x): bit-packed with the fused kernels (1 bit per
// element in x's memory order), a bool tensor otherwise; none when x needs no gradient (the
// bias gradient is the sum of g).
struct FReLUBackward : public Node {
  SavedVariable mask_;
  std::optional<K::Plan> p_;
  int64_t cdim_ = -1;
  std::vector<int64_t> size_, stride_, bias_shape_;
  at::ScalarType bias_dtype_ = at::kFloat;
  std::string name() const override { return "FlexibleReLUBackward"; }
  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    mask_.reset_data();
  }
  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const Tensor mask = mask_.unpack();
    Tensor g = grads[0];
    const bool need_x = task_should_compute_output(0), need_b = task_should_compute_output(1);
    Tensor dx, db;
    if (!g.defined() || !(need_x || need_b)) return {dx, db};  // y unused: nothing flows back
    if (p_ && (mask.defined() || !need_x) && !plain_backward(g)) {
      if (mask.defined()) {
        // The fused kernel: dx and the per-channel sum of g in one pass (float64 sums). It
        // reads g in x's memory order: a g laid out otherwise is copied so first (one pass).
        if (!laid_out_as(g, size_, stride_)) g = at::empty_strided(size_, stride_, g.options()).copy_(g);
        if (need_x) dx = at::empty_like(g);
        if (need_b) db = at::empty({p_->C}, g.options().dtype(at::kDouble));
        K::frelu_backward(g, mask, need_x ? std::optional<Tensor>(dx) : std::nullopt,
                          need_b ? std::optional<Tensor>(db) : std::nullopt, *p_);
        if (need_b) db = param_grad_from_sums(db, bias_shape_, bias_dtype_, Tensor());
        return {dx, db};
      }
    }
    if (need_x) {
      Tensor m = mask;
      if (p_) {  // the bit-packed mask as a bool tensor of x's shape and strides
        int64_t n = 1;
        for (auto v : size_) n *= v;
        const Tensor bits = at::tensor({1, 2, 4, 8, 16, 32, 64, 128}, mask.options());
        m = mask.unsqueeze(-1).bitwise_and(bits).ne(0).reshape({-1}).slice(0, 0, n).as_strided(size_, stride_);
      }
      // threshold_backward(g, m, 0) = g where m else 0 (g * m would give NaN for an infinite g).
      dx = at::threshold_backward(g, m.to(g.scalar_type()), 0);
    }
    if (need_b) db = param_grad(g, cdim_, bias_shape_, bias_dtype_);
    return {dx, db};
  }
};

Tensor flexible_relu_op(const Tensor& input, const Tensor& bias, std::optional<int64_t> dim) {
  const std::optional<int64_t> cdim = bias.numel() > 1 ? dim : std::nullopt;
  if (!plain_tensor(input) || !plain_tensor(bias) || input.device() != bias.device() ||
      !is_float(input.scalar_type()) || torch::autograd::isFwGradDefined(input) ||
      torch::autograd::isFwGradDefined(bias))
    return plain_frelu(input, bias, dim);
  const bool need = torch::autograd::compute_requires_grad(input, bias);
  Tensor x = input;
  auto p = plan(x, cdim);
  if (!p && need && input.requires_grad() && x.device().is_cpu() && !x.is_contiguous()) {
    // A view with gaps: one dense copy (autograd passes the gradient straight through it) costs
    // less than the plain passes. It keeps the view's order of strides; a dense layout the
    // kernel declined is made contiguous.
    const Tensor xc = is_dense(x) ? x.contiguous() : x.clone(at::MemoryFormat::Preserve);
    const auto pc = plan(xc, cdim);
    if (pc) {
      x = xc;
      p = pc;
    }
  }
  if (!need) {  // nothing to keep: the fused kernel's single pass (relu, then + b, takes two)
    if (!p) return plain_frelu(x, bias, dim);
    Tensor y = at::empty_like(x);
    K::frelu_forward(x, opmath_param(bias, x.scalar_type()), y, std::nullopt, *p);
    return y;
  }
  const bool keep_mask = x.requires_grad();
  auto node = new_node<FReLUBackward>();
  node->set_next_edges(torch::autograd::collect_next_edges(x, bias));
  node->p_ = p;
  node->cdim_ = cdim.value_or(-1);
  node->size_ = x.sizes().vec();
  node->stride_ = x.strides().vec();
  node->bias_shape_ = bias.sizes().vec();
  node->bias_dtype_ = bias.scalar_type();
  Tensor y, mask;
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    y = at::empty_like(x);
    if (p) {  // the fused kernel: y and the bit-packed mask in one pass
      if (keep_mask) mask = at::empty({(x.numel() + 7) / 8}, x.options().dtype(at::kByte));
      K::frelu_forward(x, opmath_param(bias, x.scalar_type()), y,
                       keep_mask ? std::optional<Tensor>(mask) : std::nullopt, *p);
    } else {  // ATen: relu, the mask, + b
      at::clamp_min_out(y, x, 0);
      if (keep_mask) mask = y.ne(0);
      y.add_(channel_view(bias.to(x.scalar_type()), x, cdim.value_or(0)));
    }
  }
  torch::autograd::set_history(y, node);
  node->mask_ = SavedVariable(mask, false);
  return y;
}

}  // namespace

TORCH_LIBRARY(rectifiers, m) {
  m.def("leaky_relu(Tensor x, float negative_slope) -> Tensor");
  m.def("prelu(Tensor x, Tensor weight, int? dim) -> Tensor");
  m.def("flexible_relu(Tensor x, Tensor bias, int? dim) -> Tensor");
}

// Autograd: the Functions above. CompositeExplicitAutograd: what runs below autograd (inference
// mode, a tracer's fake tensors): the same code, whose no-gradient branches are the plain
// formulas or the fused forward.
TORCH_LIBRARY_IMPL(rectifiers, Autograd, m) {
  m.impl("leaky_relu", leaky_relu_op);
  m.impl("prelu", prelu_op);
  m.impl("flexible_relu", flexible_relu_op);
}

TORCH_LIBRARY_IMPL(rectifiers, CompositeExplicitAutograd, m) {
  m.impl("leaky_relu", leaky_relu_op);
  m.impl("prelu", prelu_op);
  m.impl("flexible_relu", flexible_relu_op);
}

// The Python entry points of the same functions, for the fast paths of rectifiers.functional and
// the modules (plain CPU tensors, no Dynamo tracing): a pybind11 call, about 2 us cheaper than the
// dispatcher's boxed call that torch.ops.rectifiers.* makes from Python. Each records its
// operator's name for the profiler, as the dispatcher would, and releases the GIL while it runs,
// as torch's own bindings do. Under torch.jit.trace they call the operator through the
// dispatcher instead, so that the trace records it.
namespace {

template <class Sig, class F, class... Args>
Tensor entry(const char* name, F f, const Args&... args) {
  if (torch::jit::tracer::isTracing()) {
    // torch.jit.trace records what goes through the dispatcher: the registered operator, then,
    // not the ops inside it (a fused kernel's empty_like alone, which would replay as garbage).
    return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>().call(args...);
  }
  RECORD_FUNCTION(name, std::vector<c10::IValue>());
  pybind11::gil_scoped_release no_gil;
  return f(args...);
}

using ParamSig = Tensor(const Tensor&, const Tensor&, std::optional<int64_t>);

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("leaky_relu", [](const Tensor& x, double slope) { return entry<Tensor(const Tensor&, double)>("rectifiers::leaky_relu", leaky_relu_op, x, slope); });
  m.def("prelu", [](const Tensor& x, const Tensor& w, std::optional<int64_t> dim) {
    return entry<ParamSig>("rectifiers::prelu", prelu_op, x, w, dim);
  });
  m.def("flexible_relu", [](const Tensor& x, const Tensor& b, std::optional<int64_t> dim) {
    return entry<ParamSig>("rectifiers::flexible_relu", flexible_relu_op, x, b, dim);
  });
}
