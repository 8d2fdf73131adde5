// One step of the selective scan (decoding), updating the state in place:
//   h [Bt, I, N] (contiguous, in/out); u, delta, z [Bt, I]; B, C [Bt, N] (row strides free);
//   returns y [Bt, I].  Vectorised over the state dimension N (contiguous in h).

#include "common.h"

namespace hzss {

at::Tensor scan_step(at::Tensor h, const at::Tensor& u, const at::Tensor& delta,
                     const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                     const OptTensor& D, const OptTensor& z, const OptTensor& bias,
                     bool softplus) {
  const auto st = u.scalar_type();
  check_float(st);
  TORCH_CHECK(u.dim() == 2 && delta.sizes() == u.sizes(), "u, delta must be [Bt, I]");
  const int64_t Bt = u.size(0), I_ = u.size(1);
  TORCH_CHECK(A.dim() == 2 && A.size(0) == I_ && A.is_contiguous(), "A must be [I, N]");
  const int64_t N = A.size(1);
  TORCH_CHECK(h.dim() == 3 && h.size(0) == Bt && h.size(1) == I_ && h.size(2) == N &&
                  h.is_contiguous(), "state must be [Bt, I, N] contiguous");
  TORCH_CHECK(B.dim() == 2 && B.size(0) == Bt && B.size(1) == N && C.sizes() == B.sizes(),
              "B, C must be [Bt, N]");
  for (const at::Tensor* t : {&u, &delta, &B, &C})
    TORCH_CHECK(t->stride(1) == 1 || t->size(1) <= 1, "inputs must be contiguous in the last dim");
  const at::Tensor& hc = h;
  for (const at::Tensor* t : {&hc, &delta, &A, &B, &C})
    TORCH_CHECK(t->scalar_type() == st && t->device().is_cpu(), "all inputs: one dtype, CPU");
  check_vector(D, I_, st, "D must be [I] contiguous");
  check_vector(bias, I_, st, "delta_bias must be [I] contiguous");
  if (z) TORCH_CHECK(z->sizes() == u.sizes() && z->scalar_type() == st &&
                         (z->stride(1) == 1 || I_ <= 1), "z must be [Bt, I]");
  at::Tensor y = at::empty({Bt, I_}, u.options());
  dispatch_float(st, [&](auto tag) {
    using T = decltype(tag);
    using V = VecT<T>;
    constexpr int W = Simd<T>::W;
    T* hp = h.data_ptr<T>();
    const T* up = u.const_data_ptr<T>();
    const T* dp = delta.const_data_ptr<T>();
    const T* Ap = A.const_data_ptr<T>();
    const T* Bp = B.const_data_ptr<T>();
    const T* Cp = C.const_data_ptr<T>();
    const T* Dp = D ? D->const_data_ptr<T>() : nullptr;
    const T* zp = z ? z->const_data_ptr<T>() : nullptr;
    const T* bp = bias ? bias->const_data_ptr<T>() : nullptr;
    T* yp = y.data_ptr<T>();
    const int64_t rows = Bt * I_;
    at::parallel_for(0, rows, grain_for(rows, rows * N), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const int64_t b = r / I_, i = r % I_;
        T x = dp[b * delta.stride(0) + i] + (bp ? bp[i] : T(0));
        const V dtv = softplus ? vsoftplus<T>(splat<T>(x)) : splat<T>(x);
        const T uv = up[b * u.stride(0) + i];
        const V du = dtv * uv;
        V acc{};
        T* hr = hp + r * N;
        for (int64_t n0 = 0; n0 < N; n0 += W) {
          const int nv = static_cast<int>(std::min<int64_t>(W, N - n0));
          const V a = vexp<T>(dtv * load_vec<T>(Ap + i * N + n0, nv));
          const V hn = a * load_vec<T>(hr + n0, nv) +
                       du * load_vec<T>(Bp + b * B.stride(0) + n0, nv);
          store_vec<T>(hr + n0, hn, nv);
          acc += hn * load_vec<T>(Cp + b * C.stride(0) + n0, nv);  // padded lanes are 0
        }
        T out = hsum<T>(acc) + (Dp ? Dp[i] * uv : T(0));
        if (zp) {
          const T zv = zp[b * z->stride(0) + i];
          out *= zv / (T(1) + std::exp(-zv));
        }
        yp[r] = out;
      }
    });
  });
  return y;
}

}  // namespace hzss
