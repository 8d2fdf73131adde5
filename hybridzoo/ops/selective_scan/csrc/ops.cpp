// The ops of the selective-scan extension (namespace hybridzoo_selective_scan):
//   fwd, bwd            the fused selective scan (scan_fwd.cpp, scan_bwd.cpp)
//   step                one decoding step, in place (step.cpp)
//   conv_fwd, conv_bwd  the causal depthwise conv1d + SiLU (conv.cpp)
//   vec_math            test-only: one of the vector functions of vec_math.h, elementwise
//   min_parallel_work   test-only: the work below which a call runs on one thread

#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <string>

#include "common.h"

namespace hzss {
namespace {

template <typename T>
void apply_vec(const std::string& fn, const T* x, T* y, int64_t n) {
  constexpr int W = Simd<T>::W;
  for (int64_t i = 0; i < n; i += W) {
    const int nv = static_cast<int>(std::min<int64_t>(W, n - i));
    const VecT<T> v = load_vec<T>(x + i, nv);
    VecT<T> r;
    if (fn == "exp") {
      r = vexp<T>(v);
    } else if (fn == "log1p") {  // defined on [0, 1]
      r = vlog1p_unit<T>(v);
    } else if (fn == "softplus") {
      r = vsoftplus<T>(v);
    } else if (fn == "sigmoid") {
      r = vsigmoid<T>(v);
    } else {
      r = vsilu<T>(v);
    }
    store_vec<T>(y + i, r, nv);
  }
}

at::Tensor vec_math(const at::Tensor& x, const std::string& fn) {
  TORCH_CHECK(fn == "exp" || fn == "log1p" || fn == "softplus" || fn == "sigmoid" ||
                  fn == "silu",
              "vec_math: fn must be exp, log1p, softplus, sigmoid or silu, got ", fn);
  check_float(x.scalar_type());
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc);
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    apply_vec<T>(fn, xc.const_data_ptr<T>(), y.data_ptr<T>(), xc.numel());
  });
  return y;
}

int64_t min_parallel_work() { return kMinParallelWork; }

}  // namespace
}  // namespace hzss

TORCH_LIBRARY(hybridzoo_selective_scan, m) {
  m.def(
      "fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, Tensor? h0, Tensor? seq_idx, bool softplus, bool save_checkpoints, "
      "int chunk) -> (Tensor, Tensor, Tensor)");
  m.def(
      "bwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, Tensor? seq_idx, Tensor checkpoints, Tensor dy, Tensor? dhT, "
      "bool softplus, int chunk) -> Tensor[]");
  m.def(
      "step(Tensor(a!) h, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor? z, Tensor? delta_bias, bool softplus) -> Tensor");
  m.def(
      "conv_fwd(Tensor x, Tensor w, Tensor? bias, Tensor? window, Tensor? seq_idx, bool silu) "
      "-> Tensor");
  m.def(
      "conv_bwd(Tensor x, Tensor w, Tensor? bias, Tensor? window, Tensor? seq_idx, Tensor dout, "
      "bool silu) -> Tensor[]");
  m.def("vec_math(Tensor x, str fn) -> Tensor");
  m.def("min_parallel_work() -> int", &hzss::min_parallel_work);
}

TORCH_LIBRARY_IMPL(hybridzoo_selective_scan, CPU, m) {
  m.impl("fwd", &hzss::scan_fwd);
  m.impl("bwd", &hzss::scan_bwd);
  m.impl("step", &hzss::scan_step);
  m.impl("conv_fwd", &hzss::conv_fwd);
  m.impl("conv_bwd", &hzss::conv_bwd);
  m.impl("vec_math", &hzss::vec_math);
}
