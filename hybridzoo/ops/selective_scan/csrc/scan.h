// The selective scan's arguments, shared by its forward (scan_fwd.cpp) and backward
// (scan_bwd.cpp) kernels.
//
// Layout (channel-last, the last dimension contiguous; batch and time strides are free):
//   u, delta, z, y : [Bt, T, I]      A : [I, N]      B, C : [Bt, T, N]
//   D, delta_bias  : [I]             h0, hT : [Bt, I, N]      seq_idx : [Bt, T] int64
//
// Work is split over (batch row, group of consecutive blocks of W channels); W is one SIMD vector
// (16 floats or 8 doubles), so every step of the recurrence is a vector operation over W channels
// and reductions over the state dimension N need no horizontal sums.

#pragma once

#include <numeric>

#include "common.h"

namespace hzss {

// Raw pointers and strides of one call.  Strides are in elements.
template <typename T>
struct ScanArgs {
  const T* u;
  const T* delta;
  const T* A;  // [I, N] contiguous
  const T* B;
  const T* C;
  const T* D;       // [I] or null
  const T* z;       // or null
  const T* bias;    // [I] or null
  const T* h0;      // [Bt, I, N] contiguous or null
  const int64_t* seq;  // [Bt, T] contiguous or null
  int64_t u_sb, u_st, d_sb, d_st, z_sb, z_st, b_sb, b_st, c_sb, c_st;
  int64_t Bt, T_, I_, N;
  bool softplus;
  int64_t chunk;
  int64_t nblk;
  int64_t nchunk;
};

// Loads the per-block constants: A transposed to N vectors, D and delta_bias vectors.
template <typename T>
void load_block_consts(const ScanArgs<T>& a, int64_t i0, int nv, VecT<T>* Av, VecT<T>& Dv,
                       VecT<T>& biasv) {
  for (int64_t n = 0; n < a.N; ++n) {
    VecT<T> v{};
    for (int l = 0; l < nv; ++l) v[l] = a.A[(i0 + l) * a.N + n];
    Av[n] = v;
  }
  Dv = a.D ? load_vec<T>(a.D + i0, nv) : VecT<T>{};
  biasv = a.bias ? load_vec<T>(a.bias + i0, nv) : VecT<T>{};
}

// Column n of channels [i0, i0 + nv) of one row of a [I, N] state.
template <typename T>
inline VecT<T> load_h_block(const T* h, int64_t i0, int nv, int64_t N, int64_t n) {
  VecT<T> v{};
  for (int l = 0; l < nv; ++l) v[l] = h[(i0 + l) * N + n];
  return v;
}

// Channel groups per batch row: tasks = Bt * G, enough to give every thread equal work.
inline int64_t channel_groups(int64_t Bt, int64_t nblk) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t per_row = threads / std::gcd(Bt > 0 ? Bt : 1, threads);
  return std::max<int64_t>(1, std::min<int64_t>(nblk, per_row));
}

template <typename T>
ScanArgs<T> make_args(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                      const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                      const OptTensor& z, const OptTensor& bias, const OptTensor& h0,
                      const OptTensor& seq, bool softplus, int64_t chunk) {
  ScanArgs<T> a{};
  a.u = u.const_data_ptr<T>();
  a.delta = delta.const_data_ptr<T>();
  a.A = A.const_data_ptr<T>();
  a.B = B.const_data_ptr<T>();
  a.C = C.const_data_ptr<T>();
  a.D = D ? D->const_data_ptr<T>() : nullptr;
  a.z = z ? z->const_data_ptr<T>() : nullptr;
  a.bias = bias ? bias->const_data_ptr<T>() : nullptr;
  a.h0 = h0 ? h0->const_data_ptr<T>() : nullptr;
  a.u_sb = u.stride(0);
  a.u_st = u.stride(1);
  a.d_sb = delta.stride(0);
  a.d_st = delta.stride(1);
  a.z_sb = z ? z->stride(0) : 0;
  a.z_st = z ? z->stride(1) : 0;
  a.b_sb = B.stride(0);
  a.b_st = B.stride(1);
  a.c_sb = C.stride(0);
  a.c_st = C.stride(1);
  a.Bt = u.size(0);
  a.T_ = u.size(1);
  a.I_ = u.size(2);
  a.N = A.size(1);
  a.seq = seq_ptr(seq, a.Bt, a.T_);
  a.softplus = softplus;
  a.chunk = chunk;
  a.nblk = (a.I_ + Simd<T>::W - 1) / Simd<T>::W;
  a.nchunk = (a.T_ + chunk - 1) / chunk;
  return a;
}

// Shapes, dtypes and layouts of one call; `state` is h0 (forward) or dhT (backward).
inline void check_all(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                      const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                      const OptTensor& z, const OptTensor& bias, const OptTensor& state,
                      int64_t chunk) {
  TORCH_CHECK(chunk >= 1, "chunk must be >= 1");
  TORCH_CHECK(u.dim() == 3 && delta.sizes() == u.sizes(), "u, delta must be [Bt, T, I]");
  TORCH_CHECK(A.dim() == 2 && A.size(0) == u.size(2) && A.is_contiguous(), "A must be [I, N]");
  const auto N = A.size(1);
  TORCH_CHECK(B.dim() == 3 && B.size(0) == u.size(0) && B.size(1) == u.size(1) && B.size(2) == N,
              "B must be [Bt, T, N]");
  TORCH_CHECK(C.sizes() == B.sizes(), "C must be [Bt, T, N]");
  check_inner(u, "u");
  check_inner(delta, "delta");
  check_inner(B, "B");
  check_inner(C, "C");
  const auto st = u.scalar_type();
  check_float(st);
  for (const at::Tensor* t : {&delta, &A, &B, &C})
    TORCH_CHECK(t->scalar_type() == st, "all inputs must have the same dtype");
  check_vector(D, u.size(2), st, "D must be [I] contiguous");
  check_vector(bias, u.size(2), st, "delta_bias must be [I] contiguous");
  if (z) {
    TORCH_CHECK(z->sizes() == u.sizes() && z->scalar_type() == st, "z must be [Bt, T, I]");
    check_inner(*z, "z");
  }
  if (state)
    TORCH_CHECK(state->dim() == 3 && state->size(0) == u.size(0) && state->size(1) == u.size(2) &&
                    state->size(2) == N && state->is_contiguous() && state->scalar_type() == st,
                "state must be [Bt, I, N] contiguous");
}

}  // namespace hzss
