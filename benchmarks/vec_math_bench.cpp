// Micro-benchmark behind the choice of vector maths in hybridzoo/ops/selective_scan/csrc:
// the hand-written functions of vec_math.h against ATen's at::vec::Vectorized (exp via Sleef,
// 1 ulp; exp_u20, inline; log1p via Sleef), on one thread.  Built and run by bench_vec_math.py.
//   impl 0: vec_math.h   impl 1: Vectorized exp() / log1p()   impl 2: Vectorized exp_u20()
//   fn 0: exp   fn 1: softplus = max(x, 0) + log1p(exp(-|x|))   fn 2: sigmoid

#if defined(__AVX512F__)
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#elif defined(__AVX2__)
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#endif

#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "vec_math.h"

namespace {

using namespace hzss;

template <typename T>
struct Ours {
  static VecT<T> exp(VecT<T> x) { return vexp<T>(x); }
  static VecT<T> softplus(VecT<T> x) { return vsoftplus<T>(x); }
  static VecT<T> sigmoid(VecT<T> x) { return vsigmoid<T>(x); }
};

// Applies f to our 64-byte vector in pieces of ATen's width (16 floats on AVX-512, 8 on AVX2).
template <typename T, typename F>
VecT<T> piecewise(VecT<T> x, F f) {
  using A = at::vec::Vectorized<T>;
  T buf[Simd<T>::W];
  std::memcpy(buf, &x, sizeof(x));
  for (int i = 0; i < Simd<T>::W; i += A::size()) f(A::loadu(buf + i)).store(buf + i);
  std::memcpy(&x, buf, sizeof(x));
  return x;
}

template <typename T, bool U20>
struct Aten {
  using A = at::vec::Vectorized<T>;
  static A e(A a) {
    if constexpr (U20) return a.exp_u20();
    else return a.exp();
  }
  static VecT<T> exp(VecT<T> x) { return piecewise<T>(x, [](A a) { return e(a); }); }
  static VecT<T> softplus(VecT<T> x) {
    return piecewise<T>(x, [](A a) {
      return at::vec::maximum(a, A(T(0))) + e(A(T(0)) - a.abs()).log1p();
    });
  }
  static VecT<T> sigmoid(VecT<T> x) {
    return piecewise<T>(x, [](A a) { return A(T(1)) / (A(T(1)) + e(A(T(0)) - a)); });
  }
};

template <typename T, typename F>
void apply(const T* x, T* y, int64_t n, int64_t fn) {
  constexpr int W = Simd<T>::W;
  for (int64_t i = 0; i < n; i += W) {
    const int nv = static_cast<int>(std::min<int64_t>(W, n - i));
    const VecT<T> v = load_vec<T>(x + i, nv);
    store_vec<T>(y + i, fn == 0 ? F::exp(v) : fn == 1 ? F::softplus(v) : F::sigmoid(v), nv);
  }
}

// The selective scan's inner loop: softplus of the step, then N exps, updates and readouts.
template <typename T, typename F>
void mini_scan(const T* dt, const T* A, const T* B, const T* C, T* y, int64_t steps, int64_t N) {
  using V = VecT<T>;
  constexpr int W = Simd<T>::W;
  std::vector<V> h(N), Av(N);
  for (int64_t n = 0; n < N; ++n) Av[n] = load_vec<T>(A + n * W, W);
  for (int64_t t = 0; t < steps; ++t) {
    const V d = F::softplus(load_vec<T>(dt + t * W, W));
    const V du = d * T(0.5);
    V acc{};
    for (int64_t n = 0; n < N; ++n) {
      h[n] = F::exp(d * Av[n]) * h[n] + du * B[t * N + n];
      acc += h[n] * C[t * N + n];
    }
    store_vec<T>(y + t * W, acc, W);
  }
}

template <typename T>
void dispatch(int64_t impl, const T* x, T* y, int64_t n, int64_t fn) {
  if (impl == 0) apply<T, Ours<T>>(x, y, n, fn);
  else if (impl == 1) apply<T, Aten<T, false>>(x, y, n, fn);
  else apply<T, Aten<T, true>>(x, y, n, fn);
}

template <typename T>
double scan_ns(int64_t impl, int64_t steps, int64_t N, int64_t reps) {
  constexpr int W = Simd<T>::W;
  std::vector<T> dt(steps * W), A(N * W), B(steps * N), C(steps * N), y(steps * W);
  for (size_t i = 0; i < dt.size(); ++i) dt[i] = T(((i * 2654435761u) % 1000) / 250.0 - 2.0);
  for (size_t i = 0; i < A.size(); ++i) A[i] = -T(0.05 + (i % 17) / 4.0);
  for (size_t i = 0; i < B.size(); ++i) B[i] = T((i % 7) / 7.0 - 0.5), C[i] = T((i % 5) / 5.0);
  double best = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    if (impl == 0) mini_scan<T, Ours<T>>(dt.data(), A.data(), B.data(), C.data(), y.data(), steps, N);
    else if (impl == 1)
      mini_scan<T, Aten<T, false>>(dt.data(), A.data(), B.data(), C.data(), y.data(), steps, N);
    else mini_scan<T, Aten<T, true>>(dt.data(), A.data(), B.data(), C.data(), y.data(), steps, N);
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  return best / double(steps * N * W);
}

at::Tensor vapply(const at::Tensor& x, int64_t impl, int64_t fn) {
  at::Tensor y = at::empty_like(x);
  if (x.scalar_type() == at::kFloat)
    dispatch<float>(impl, x.const_data_ptr<float>(), y.data_ptr<float>(), x.numel(), fn);
  else
    dispatch<double>(impl, x.const_data_ptr<double>(), y.data_ptr<double>(), x.numel(), fn);
  return y;
}

// Best of `reps` passes over x, in nanoseconds per element.
double vbench(const at::Tensor& x, int64_t impl, int64_t fn, int64_t reps) {
  at::Tensor y = at::empty_like(x);
  double best = 1e30;
  for (int64_t r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    vapply(x, impl, fn);
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  return best / double(x.numel());
}

// Nanoseconds per (step, state index, channel) update of the mini scan.
double scan_bench(int64_t impl, int64_t steps, int64_t N, int64_t reps, bool dbl) {
  return dbl ? scan_ns<double>(impl, steps, N, reps) : scan_ns<float>(impl, steps, N, reps);
}

}  // namespace

TORCH_LIBRARY(hybridzoo_vec_math_bench, m) {
  m.def("vapply(Tensor x, int impl, int fn) -> Tensor");
  m.def("vbench(Tensor x, int impl, int fn, int reps) -> float");
  m.def("scan_bench(int impl, int steps, int N, int reps, bool dbl) -> float", &scan_bench);
}

TORCH_LIBRARY_IMPL(hybridzoo_vec_math_bench, CPU, m) {
  m.impl("vapply", &vapply);
  m.impl("vbench", &vbench);
}
