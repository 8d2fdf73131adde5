// Shared helpers of the selective-scan kernels: dtype dispatch, threading grain, partial-sum
// reductions, input checks, document boundaries (packing), and the declarations of the ops that
// ops.cpp registers.

#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <tuple>
#include <vector>

#include "vec_math.h"

namespace hzss {

using OptTensor = std::optional<at::Tensor>;

// Grain for at::parallel_for over `tasks` tasks of `work` elementary updates in all: small calls
// run on the calling thread only.  (A parallel region costs a few microseconds, and much more when
// a worker thread is descheduled on a busy machine; a decoding step must not pay that.)
constexpr int64_t kMinParallelWork = int64_t(1) << 16;

inline int64_t grain_for(int64_t tasks, int64_t work) {
  return work < kMinParallelWork ? std::max<int64_t>(tasks, 1) : 1;
}

// Calls f(float{}) or f(double{}) by dtype (checked before).
template <typename F>
void dispatch_float(at::ScalarType st, F&& f) {
  if (st == at::kFloat) {
    f(float{});
  } else {
    f(double{});
  }
}

inline void check_float(at::ScalarType st) {
  TORCH_CHECK(st == at::kFloat || st == at::kDouble, "only float32 and float64 are supported");
}

// Sum of a contiguous [P, M] tensor over its first dimension: [M].
template <typename T>
at::Tensor sum_leading(const at::Tensor& t, int64_t P, int64_t M) {
  at::Tensor out = at::zeros({M}, t.options());
  T* o = out.data_ptr<T>();
  const T* p = t.const_data_ptr<T>();
  for (int64_t i = 0; i < P; ++i)
    for (int64_t m = 0; m < M; ++m) o[m] += p[i * M + m];
  return out;
}

// [Bt, G, M] -> [Bt, M] summed over G (returned as is when G == 1).
template <typename T>
at::Tensor sum_groups(const at::Tensor& t, int64_t Bt, int64_t G, int64_t M) {
  if (G == 1) return t.view({Bt, M});
  at::Tensor out = at::zeros({Bt, M}, t.options());
  T* o = out.data_ptr<T>();
  const T* p = t.const_data_ptr<T>();
  for (int64_t b = 0; b < Bt; ++b)
    for (int64_t g = 0; g < G; ++g)
      for (int64_t m = 0; m < M; ++m) o[b * M + m] += p[(b * G + g) * M + m];
  return out;
}

inline void check_inner(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.stride(-1) == 1 || t.size(-1) <= 1, name, " must be contiguous in its last dim");
}

// A [C] contiguous tensor of dtype st (D, delta_bias, a conv bias), if given.
inline void check_vector(const OptTensor& t, int64_t C, at::ScalarType st, const char* what) {
  if (t)
    TORCH_CHECK(t->dim() == 1 && t->size(0) == C && t->is_contiguous() && t->scalar_type() == st,
                what);
}

// seq_idx (packing): int64 [Bt, T] contiguous, the document number of every position.
inline const int64_t* seq_ptr(const OptTensor& seq, int64_t Bt, int64_t T_) {
  if (!seq) return nullptr;
  TORCH_CHECK(seq->scalar_type() == at::kLong && seq->is_contiguous() && seq->dim() == 2 &&
                  seq->size(0) == Bt && seq->size(1) == T_,
              "seq_idx must be an int64 [Bt, T] contiguous tensor");
  return seq->const_data_ptr<int64_t>();
}

// True where a new document starts at t > 0 of row b (the state restarts from zero there).
inline bool doc_start(const int64_t* seq, int64_t T_, int64_t b, int64_t t) {
  return seq && t > 0 && seq[b * T_ + t] != seq[b * T_ + t - 1];
}

// For every (b, t): the first position that t may read, -(K-1) in a row's first document (the
// initial window belongs to it) and the document's start in the others.  [Bt * T].
inline std::vector<int64_t> doc_lows(const int64_t* seq, int64_t Bt, int64_t T_, int64_t K) {
  std::vector<int64_t> lo(Bt * T_, -(K - 1));
  if (!seq) return lo;
  for (int64_t b = 0; b < Bt; ++b) {
    int64_t low = -(K - 1);
    for (int64_t t = 1; t < T_; ++t) {
      if (doc_start(seq, T_, b, t)) low = t;
      lo[b * T_ + t] = low;
    }
  }
  return lo;
}

// The ops (see ops.cpp for their schemas).
std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
    const OptTensor& h0, const OptTensor& seq_idx, bool softplus, bool save_checkpoints,
    int64_t chunk);

std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                 const OptTensor& z, const OptTensor& delta_bias,
                                 const OptTensor& seq_idx, const at::Tensor& checkpoints,
                                 const at::Tensor& dy, const OptTensor& dhT, bool softplus,
                                 int64_t chunk);

at::Tensor scan_step(at::Tensor h, const at::Tensor& u, const at::Tensor& delta,
                     const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                     const OptTensor& D, const OptTensor& z, const OptTensor& bias, bool softplus);

at::Tensor conv_fwd(const at::Tensor& x, const at::Tensor& w, const OptTensor& bias,
                    const OptTensor& win, const OptTensor& seq_idx, bool silu);

std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& w, const OptTensor& bias,
                                 const OptTensor& win, const OptTensor& seq_idx,
                                 const at::Tensor& dout, bool silu);

}  // namespace hzss
