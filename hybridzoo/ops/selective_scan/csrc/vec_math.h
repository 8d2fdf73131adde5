// Vector maths of the selective-scan kernels: one SIMD vector type per scalar type (the GCC/Clang
// vector extension, lowered by the compiler to AVX-512, AVX2, SSE or NEON as the flags allow),
// loads and stores of partial vectors, and the transcendental functions the kernels use.
//
// Accuracy, against float64 / 80-bit references over the whole range (tests/ops/test_vec_math.py,
// through the test-only op `vec_math`), float32 and float64: exp <= 1.5 ulp (0.9 measured), log1p
// <= 4 (2.9), softplus <= 5 (4.4), sigmoid <= 3 (2.4), silu <= 3.5 (2.7) wherever the result is
// above the flush threshold: exp results below 2^-125 (float) / 2^-1021 (double) are flushed to
// 0 (no denormals enter the recurrence), and so is silu(x) where sigmoid(x) is; exp overflows to
// +inf above ln(max); NaN stays NaN.
//
// Why not at::vec::Vectorized (benchmarks/bench_vec_math.py, AVX-512 Xeon, one thread): its exp
// (Sleef, 1 ulp) is an out-of-line call that makes the scan's inner loop 1.35x slower in float32
// and 1.19x in float64; its log1p makes softplus 4.8x / 2.1x slower; its inline exp_u20 ties in
// float32 (1.02x) at 5.3 ulp and has no float64 form.  The vector extension here compiles to
// whatever the flags allow (AVX-512, AVX2, SSE, NEON) without CPU_CAPABILITY macros.

#pragma once

#include <cstdint>
#include <cstring>
#include <limits>

namespace hzss {

template <typename T>
struct Simd;

template <>
struct Simd<float> {
  static constexpr int W = 16;
  typedef float V __attribute__((vector_size(64)));
  typedef int32_t I __attribute__((vector_size(64)));
  static constexpr int kMantissa = 23;
  static constexpr int kExpBias = 127;
  // exp(x) is flushed to 0 below -125 ln2 (results < 2^-125) and overflows above ln(FLT_MAX).
  static constexpr float kExpLo = -86.64339757f;
  static constexpr float kExpHi = 88.72283905f;
  static constexpr float kLn2Hi = 0.693359375f;
  static constexpr float kLn2Lo = -2.12194440e-4f;
  static constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  static constexpr int kExpTerms = 8;             // Taylor degree 7 on |r| <= ln2/2: error < 1e-8
  static constexpr int kLogTerms = 6;
};

template <>
struct Simd<double> {
  static constexpr int W = 8;
  typedef double V __attribute__((vector_size(64)));
  typedef int64_t I __attribute__((vector_size(64)));
  static constexpr int kMantissa = 52;
  static constexpr int kExpBias = 1023;
  static constexpr double kExpLo = -707.7032713517042;  // -1021 ln2
  static constexpr double kExpHi = 709.782712893384;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kRound = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr int kExpTerms = 14;                     // Taylor degree 13: error < 1e-17
  static constexpr int kLogTerms = 12;
};

template <typename T>
using VecT = typename Simd<T>::V;

template <typename T>
inline VecT<T> splat(T s) {
  return VecT<T>{} + s;
}

// Loads nv <= W lanes (the others are 0).
template <typename T>
inline VecT<T> load_vec(const T* p, int nv) {
  VecT<T> v{};
  if (nv == Simd<T>::W) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    for (int l = 0; l < nv; ++l) v[l] = p[l];
  }
  return v;
}

// Stores the first nv <= W lanes.
template <typename T>
inline void store_vec(T* p, VecT<T> v, int nv) {
  if (nv == Simd<T>::W) {
    std::memcpy(p, &v, sizeof(v));
  } else {
    for (int l = 0; l < nv; ++l) p[l] = v[l];
  }
}

template <typename T>
inline T hsum(VecT<T> v) {
  T s = 0;
  for (int l = 0; l < Simd<T>::W; ++l) s += v[l];
  return s;
}

// exp(x): Cody-Waite range reduction x = k ln2 + r, a Taylor polynomial in r (coefficients
// doubled), times 2^(k-1) built in the exponent field, so that k = 128 (1024 for double) still
// rounds correctly into the overflow range.
template <typename T>
inline VecT<T> vexp(VecT<T> x) {
  using S = Simd<T>;
  using V = typename S::V;
  using I = typename S::I;
  const V lo = splat<T>(S::kExpLo);
  const V hi = splat<T>(S::kExpHi);
  V xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const V big = splat<T>(S::kRound);
  V kf = (xc * static_cast<T>(1.4426950408889634) + big) - big;
  V r = xc - kf * static_cast<T>(S::kLn2Hi);
  r = r - kf * static_cast<T>(S::kLn2Lo);
  // Horner on 2 * sum_j r^j / j!
  T coef[S::kExpTerms];
  coef[0] = 2;
  for (int j = 1; j < S::kExpTerms; ++j) coef[j] = coef[j - 1] / static_cast<T>(j);
  V p = splat<T>(coef[S::kExpTerms - 1]);
  for (int j = S::kExpTerms - 2; j >= 0; --j) p = p * r + coef[j];
  const I k = __builtin_convertvector(kf, I);
  const V scale = (V)((k + (S::kExpBias - 1)) << S::kMantissa);  // 2^(k-1)
  V res = p * scale;
  res = x < lo ? V{} : res;
  res = x > hi ? splat<T>(std::numeric_limits<T>::infinity()) : res;
  return res;
}

// log1p(e) for e in [0, 1]: log(m) with m = 1 + e (reduced to [sqrt(1/2), sqrt(2)], then
// 2 atanh((m-1)/(m+1)) as a series), corrected by e / (m - 1) for the rounding of 1 + e.
template <typename T>
inline VecT<T> vlog1p_unit(VecT<T> e) {
  using S = Simd<T>;
  using V = typename S::V;
  const V one = splat<T>(1);
  V m = one + e;
  const V sqrt2 = splat<T>(static_cast<T>(1.4142135623730951));
  auto over = m > sqrt2;
  V mm = over ? m * static_cast<T>(0.5) : m;
  V add = over ? splat<T>(static_cast<T>(0.6931471805599453)) : V{};
  V s = (mm - one) / (mm + one);
  V s2 = s * s;
  V p = splat<T>(static_cast<T>(1) / static_cast<T>(2 * S::kLogTerms - 1));
  for (int j = S::kLogTerms - 2; j >= 0; --j)
    p = p * s2 + static_cast<T>(1) / static_cast<T>(2 * j + 1);
  V lg = static_cast<T>(2) * s * p + add;
  V den = m - one;
  V safe_den = den == V{} ? one : den;
  return den == V{} ? e : lg * (e / safe_den);
}

// softplus(x) = max(x, 0) + log1p(exp(-|x|)), exact for every x (no threshold).
template <typename T>
inline VecT<T> vsoftplus(VecT<T> x) {
  using V = VecT<T>;
  V ax = x < V{} ? -x : x;
  V pos = x > V{} ? x : V{};
  return pos + vlog1p_unit<T>(vexp<T>(-ax));
}

template <typename T>
inline VecT<T> vsigmoid(VecT<T> x) {
  return splat<T>(1) / (splat<T>(1) + vexp<T>(-x));
}

// silu(x) = x sigmoid(x).
template <typename T>
inline VecT<T> vsilu(VecT<T> x) {
  return x * vsigmoid<T>(x);
}

// d silu / dx from x and sg = sigmoid(x): sg (1 + x (1 - sg)).
template <typename T>
inline VecT<T> vsilu_grad(VecT<T> x, VecT<T> sg) {
  return sg * (splat<T>(1) + x * (splat<T>(1) - sg));
}

}  // namespace hzss
