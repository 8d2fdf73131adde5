// Fused CPU selective scan (Mamba-1): forward and backward.
//
// Layout (channel-last, the last dimension contiguous; batch and time strides are free):
//   u, delta, z, y : [Bt, T, I]      A : [I, N]      B, C : [Bt, T, N]
//   D, delta_bias  : [I]             h0, hT : [Bt, I, N]
//
// Work is split over (batch, block of W channels); W is one SIMD vector of the GCC/Clang vector
// extension (16 floats or 8 doubles), so every step of the recurrence is a vector operation over
// W channels and reductions over the state dimension N need no horizontal sums.  The state of a
// block, N vectors, lives in a small local array.  Discretisation, scan, readout, the D skip and
// the SiLU gate are fused in one pass over time.
//
// Backward: the forward pass stores the state at the start of every chunk of K steps
// ("checkpoints", [Bt, blocks, T/K, N, W], K = `chunk`).  The backward pass walks the chunks in
// reverse; for each chunk it recomputes the chunk's states and decay factors into a local buffer
// and runs the reverse recurrence.  Nothing of size [Bt, T, I, N] is ever allocated.
// Gradients of B and C are sums over channels: every task accumulates them lane-wise over all its
// blocks for one chunk, then reduces the lanes once; tasks that split a batch row's channels write
// separate partial sums, added up at the end (as are dA, dD and d(delta_bias) over batch rows).
//
// Also here: the causal depthwise convolution (+ SiLU) of the Mamba mixer, channel-last, forward
// and backward ("conv_fwd", "conv_bwd"), and one decoding step of the scan ("step").  Calls with
// little work run on the calling thread only (see grain_for).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>
#include <tuple>
#include <vector>

namespace {

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

// Grain for at::parallel_for over `tasks` tasks of `work` elementary updates in all: small calls
// run on the calling thread only.  (A parallel region costs a few microseconds, and much more when
// a worker thread is descheduled on a busy machine; a decoding step must not pay that.)
constexpr int64_t kMinParallelWork = int64_t(1) << 16;

inline int64_t grain_for(int64_t tasks, int64_t work) {
  return work < kMinParallelWork ? std::max<int64_t>(tasks, 1) : 1;
}

// exp(x): Cody-Waite range reduction x = k ln2 + r, a Taylor polynomial in r (coefficients
// doubled), times 2^(k-1) built in the exponent field, so that k = 128 (1024 for double) still
// rounds correctly into the overflow range.  Results below 2^-125 (2^-1021), i.e. near the
// smallest normal number, are flushed to 0 (no denormals in the recurrence); above ln(MAX) +inf;
// NaN stays NaN.
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
  for (int j = S::kLogTerms - 2; j >= 0; --j) p = p * s2 + static_cast<T>(1) / static_cast<T>(2 * j + 1);
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

// Raw pointers and strides of one call.  Strides are in elements; the last dimension of every
// tensor is contiguous.
template <typename T>
struct ScanArgs {
  const T* u;
  const T* delta;
  const T* A;  // [I, N] contiguous
  const T* B;
  const T* C;
  const T* D;     // [I] or null
  const T* z;     // or null
  const T* bias;  // [I] or null
  const T* h0;    // [Bt, I, N] contiguous or null
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

template <typename T>
inline VecT<T> load_h_block(const T* h, int64_t i0, int nv, int64_t N, int64_t n) {
  VecT<T> v{};
  for (int l = 0; l < nv; ++l) v[l] = h[(i0 + l) * N + n];
  return v;
}

// Channel groups per batch row: tasks = Bt * G, enough to give every thread equal work.
inline int64_t channel_groups(int64_t Bt, int64_t nblk) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  return std::max<int64_t>(1, std::min<int64_t>(nblk, threads / std::gcd(Bt > 0 ? Bt : 1, threads)));
}

// Tasks are (batch row, group of consecutive channel blocks).  A task walks time once and, at each
// step, updates every block of its group: memory is then read and written row by row
// (sequential, prefetch- and TLB-friendly) while the group's states stay in L1/L2.
template <typename T>
void forward_kernel(const ScanArgs<T>& a, T* y, T* hT, T* ck) {
  using V = VecT<T>;
  constexpr int W = Simd<T>::W;
  const int64_t N = a.N;
  const int64_t G = channel_groups(a.Bt, a.nblk);
  const int64_t per_group = (a.nblk + G - 1) / G;
  const int64_t tasks = a.Bt * G;
  const int64_t grain = grain_for(tasks, a.Bt * a.nblk * a.T_ * W * N);
  at::parallel_for(0, tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / G;
      const int64_t blk0 = std::min(a.nblk, (task % G) * per_group);
      const int64_t nb = std::min(a.nblk, blk0 + per_group) - blk0;
      std::vector<V> Av(nb * N), h(nb * N), Dv(nb), biasv(nb);
      std::vector<int> nvs(nb);
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t i0 = (blk0 + j) * W;
        nvs[j] = static_cast<int>(std::min<int64_t>(W, a.I_ - i0));
        load_block_consts<T>(a, i0, nvs[j], Av.data() + j * N, Dv[j], biasv[j]);
        for (int64_t n = 0; n < N; ++n)
          h[j * N + n] = a.h0 ? load_h_block<T>(a.h0 + b * a.I_ * N, i0, nvs[j], N, n) : V{};
      }
      for (int64_t t = 0; t < a.T_; ++t) {
        const T* up = a.u + b * a.u_sb + t * a.u_st;
        const T* dp = a.delta + b * a.d_sb + t * a.d_st;
        const T* zp = a.z ? a.z + b * a.z_sb + t * a.z_st : nullptr;
        const T* Bt = a.B + b * a.b_sb + t * a.b_st;
        const T* Ct = a.C + b * a.c_sb + t * a.c_st;
        T* yp = y + (b * a.T_ + t) * a.I_;
        const bool save = ck && t % a.chunk == 0;
        for (int64_t j = 0; j < nb; ++j) {
          const int64_t i0 = (blk0 + j) * W;
          const int nv = nvs[j];
          V* hj = h.data() + j * N;
          const V* Aj = Av.data() + j * N;
          if (save) {
            T* dst = ck + (((b * a.nblk + blk0 + j) * a.nchunk) + t / a.chunk) * N * W;
            std::memcpy(dst, hj, sizeof(V) * N);
          }
          V x = load_vec<T>(dp + i0, nv) + biasv[j];
          V dt = a.softplus ? vsoftplus<T>(x) : x;
          V uv = load_vec<T>(up + i0, nv);
          V du = dt * uv;
          V acc = Dv[j] * uv;
          for (int64_t n = 0; n < N; ++n) {
            V dA = vexp<T>(dt * Aj[n]);
            V hn = dA * hj[n] + du * Bt[n];
            hj[n] = hn;
            acc += hn * Ct[n];
          }
          if (zp) {
            V zv = load_vec<T>(zp + i0, nv);
            acc *= zv * vsigmoid<T>(zv);
          }
          store_vec<T>(yp + i0, acc, nv);
        }
      }
      T* hTb = hT + b * a.I_ * N;
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t i0 = (blk0 + j) * W;
        for (int64_t n = 0; n < N; ++n)
          for (int l = 0; l < nvs[j]; ++l) hTb[(i0 + l) * N + n] = h[j * N + n][l];
      }
    }
  });
}

struct BackwardOut {
  at::Tensor du, ddelta, dA, dB, dC, dD, dz, dbias, dh0;
};

// dy: [Bt, T, I] contiguous; dhT: [Bt, I, N] contiguous or null.
// Outputs: du, ddelta, dz [Bt, T, I]; dB, dC [Bt, G, T, N] (partial over channel groups);
// dA [Bt, I, N], dD, dbias [Bt, I] (partial over batch rows); dh0 [Bt, I, N].
template <typename T>
void backward_kernel(const ScanArgs<T>& a, const T* ck, const T* dy, const T* dhT, int64_t G,
                     T* du, T* ddelta, T* dz, T* dB, T* dC, T* dA, T* dD, T* dbias, T* dh0) {
  using V = VecT<T>;
  constexpr int W = Simd<T>::W;
  const int64_t N = a.N;
  const int64_t K = a.chunk;
  const int64_t per_group = (a.nblk + G - 1) / G;
  const int64_t grain = grain_for(a.Bt * G, a.Bt * a.nblk * W * a.T_ * N);
  at::parallel_for(0, a.Bt * G, grain, [&](int64_t begin, int64_t end) {
    std::vector<V> hbuf((K + 1) * N), abuf(K * N), dtbuf(K), dBv(K * N), dCv(K * N);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / G;
      const int64_t g = task % G;
      const int64_t blk0 = std::min(a.nblk, g * per_group);
      const int64_t blk1 = std::min(a.nblk, blk0 + per_group);
      const int64_t nb = blk1 - blk0;
      // Per-block persistent state across chunks.
      std::vector<V> Av(nb * N), gh(nb * N), dAacc(nb * N), Dv(nb), biasv(nb), dDacc(nb),
          dbacc(nb);
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t i0 = (blk0 + j) * W;
        const int nv = static_cast<int>(std::min<int64_t>(W, a.I_ - i0));
        load_block_consts<T>(a, i0, nv, Av.data() + j * N, Dv[j], biasv[j]);
        for (int64_t n = 0; n < N; ++n) {
          gh[j * N + n] = dhT ? load_h_block<T>(dhT + b * a.I_ * N, i0, nv, N, n) : V{};
          dAacc[j * N + n] = V{};
        }
        dDacc[j] = V{};
        dbacc[j] = V{};
      }
      const T* Bp = a.B + b * a.b_sb;
      const T* Cp = a.C + b * a.c_sb;
      for (int64_t c = a.nchunk - 1; c >= 0; --c) {
        const int64_t t0 = c * K;
        const int64_t len = std::min(K, a.T_ - t0);
        std::fill(dBv.begin(), dBv.begin() + len * N, V{});
        std::fill(dCv.begin(), dCv.begin() + len * N, V{});
        for (int64_t j = 0; j < nb; ++j) {
          const int64_t blk = blk0 + j;
          const int64_t i0 = blk * W;
          const int nv = static_cast<int>(std::min<int64_t>(W, a.I_ - i0));
          const V* A_ = Av.data() + j * N;
          V* gh_ = gh.data() + j * N;
          V* dA_ = dAacc.data() + j * N;
          const V D_ = Dv[j];
          const V bias_ = biasv[j];
          const T* up = a.u + b * a.u_sb + i0;
          const T* dp = a.delta + b * a.d_sb + i0;
          const T* zp = a.z ? a.z + b * a.z_sb + i0 : nullptr;
          const T* ckp = ck + ((b * a.nblk + blk) * a.nchunk + c) * N * W;
          std::memcpy(hbuf.data(), ckp, sizeof(V) * N);
          // Recompute this chunk's decays and states.
          for (int64_t tt = 0; tt < len; ++tt) {
            const int64_t t = t0 + tt;
            V x = load_vec<T>(dp + t * a.d_st, nv) + bias_;
            V dt = a.softplus ? vsoftplus<T>(x) : x;
            dtbuf[tt] = dt;
            V duv = dt * load_vec<T>(up + t * a.u_st, nv);
            const T* Bt = Bp + t * a.b_st;
            const V* hp = hbuf.data() + tt * N;
            V* hn = hbuf.data() + (tt + 1) * N;
            V* ap = abuf.data() + tt * N;
            for (int64_t n = 0; n < N; ++n) {
              V dA = vexp<T>(dt * A_[n]);
              ap[n] = dA;
              hn[n] = dA * hp[n] + duv * Bt[n];
            }
          }
          // Reverse recurrence over the chunk.
          T* dup = du + b * a.T_ * a.I_ + i0;
          T* ddp = ddelta + b * a.T_ * a.I_ + i0;
          T* dzp = dz ? dz + b * a.T_ * a.I_ + i0 : nullptr;
          const T* dyp = dy + b * a.T_ * a.I_ + i0;
          for (int64_t tt = len - 1; tt >= 0; --tt) {
            const int64_t t = t0 + tt;
            const V uv = load_vec<T>(up + t * a.u_st, nv);
            const V dyv = load_vec<T>(dyp + t * a.I_, nv);
            const V dt = dtbuf[tt];
            V zv{}, sg{}, dys = dyv;
            if (zp) {
              zv = load_vec<T>(zp + t * a.z_st, nv);
              sg = vsigmoid<T>(zv);
              dys = dyv * (zv * sg);
            }
            const V duv = dt * uv;
            const T* Bt = Bp + t * a.b_st;
            const T* Ct = Cp + t * a.c_st;
            const V* hp = hbuf.data() + tt * N;
            const V* hn = hbuf.data() + (tt + 1) * N;
            const V* ap = abuf.data() + tt * N;
            V* dBt = dBv.data() + tt * N;
            V* dCt = dCv.data() + tt * N;
            V s = D_ * uv;
            V ddu{}, ddt{};
            for (int64_t n = 0; n < N; ++n) {
              const V h = hn[n];
              s += h * Ct[n];
              dCt[n] += dys * h;
              const V gn = gh_[n] + dys * Ct[n];
              dBt[n] += gn * duv;
              ddu += gn * Bt[n];
              const V dl = gn * hp[n] * ap[n];
              ddt += dl * A_[n];
              dA_[n] += dl * dt;
              gh_[n] = gn * ap[n];
            }
            ddt += ddu * uv;
            store_vec<T>(dup + t * a.I_, ddu * dt + dys * D_, nv);
            dDacc[j] += dys * uv;
            V dd = ddt;
            if (a.softplus) {
              V x = load_vec<T>(dp + t * a.d_st, nv) + bias_;
              dd = ddt * vsigmoid<T>(x);
            }
            dbacc[j] += dd;
            store_vec<T>(ddp + t * a.I_, dd, nv);
            if (zp) {
              const V dsilu = sg * (splat<T>(1) + zv * (splat<T>(1) - sg));
              store_vec<T>(dzp + t * a.I_, dyv * s * dsilu, nv);
            }
          }
        }
        // Lane reduction of this chunk's B and C gradients for this task.
        T* dBo = dB + ((b * G + g) * a.T_ + t0) * N;
        T* dCo = dC + ((b * G + g) * a.T_ + t0) * N;
        for (int64_t k = 0; k < len * N; ++k) {
          dBo[k] = hsum<T>(dBv[k]);
          dCo[k] = hsum<T>(dCv[k]);
        }
      }
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t i0 = (blk0 + j) * W;
        const int nv = static_cast<int>(std::min<int64_t>(W, a.I_ - i0));
        for (int64_t n = 0; n < N; ++n)
          for (int l = 0; l < nv; ++l) {
            dh0[(b * a.I_ + i0 + l) * N + n] = gh[j * N + n][l];
            dA[(b * a.I_ + i0 + l) * N + n] = dAacc[j * N + n][l];
          }
        store_vec<T>(dD + b * a.I_ + i0, dDacc[j], nv);
        store_vec<T>(dbias + b * a.I_ + i0, dbacc[j], nv);
      }
    }
  });
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

void check_inner(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(t.stride(-1) == 1 || t.size(-1) <= 1, name, " must be contiguous in its last dim");
}

template <typename T>
ScanArgs<T> make_args(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                      const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
                      const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& bias,
                      const std::optional<at::Tensor>& h0, bool softplus, int64_t chunk) {
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
  a.softplus = softplus;
  a.chunk = chunk;
  a.nblk = (a.I_ + Simd<T>::W - 1) / Simd<T>::W;
  a.nchunk = (a.T_ + chunk - 1) / chunk;
  return a;
}

void check_all(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
               const at::Tensor& B, const at::Tensor& C, const std::optional<at::Tensor>& D,
               const std::optional<at::Tensor>& z, const std::optional<at::Tensor>& bias,
               const std::optional<at::Tensor>& h0, int64_t chunk) {
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
  TORCH_CHECK(st == at::kFloat || st == at::kDouble, "only float32 and float64 are supported");
  for (const at::Tensor* t : {&delta, &A, &B, &C})
    TORCH_CHECK(t->scalar_type() == st, "all inputs must have the same dtype");
  if (D) TORCH_CHECK(D->dim() == 1 && D->size(0) == u.size(2) && D->is_contiguous() &&
                         D->scalar_type() == st, "D must be [I] contiguous");
  if (bias) TORCH_CHECK(bias->dim() == 1 && bias->size(0) == u.size(2) &&
                            bias->is_contiguous() && bias->scalar_type() == st,
                        "delta_bias must be [I] contiguous");
  if (z) {
    TORCH_CHECK(z->sizes() == u.sizes() && z->scalar_type() == st, "z must be [Bt, T, I]");
    check_inner(*z, "z");
  }
  if (h0) TORCH_CHECK(h0->dim() == 3 && h0->size(0) == u.size(0) && h0->size(1) == u.size(2) &&
                          h0->size(2) == N && h0->is_contiguous() && h0->scalar_type() == st,
                      "initial state must be [Bt, I, N] contiguous");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
    const std::optional<at::Tensor>& delta_bias, const std::optional<at::Tensor>& h0,
    bool softplus, bool save_checkpoints, int64_t chunk) {
  check_all(u, delta, A, B, C, D, z, delta_bias, h0, chunk);
  const auto opts = u.options();
  const int64_t Bt = u.size(0), T_ = u.size(1), I_ = u.size(2), N = A.size(1);
  at::Tensor y = at::empty({Bt, T_, I_}, opts);
  at::Tensor hT = at::empty({Bt, I_, N}, opts);
  at::Tensor ck;
  dispatch_float(u.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    auto a = make_args<scalar_t>(u, delta, A, B, C, D, z, delta_bias, h0, softplus, chunk);
    constexpr int W = Simd<scalar_t>::W;
    ck = save_checkpoints ? at::empty({Bt, a.nblk, a.nchunk, N, W}, opts) : at::empty({0}, opts);
    forward_kernel<scalar_t>(a, y.data_ptr<scalar_t>(), hT.data_ptr<scalar_t>(),
                             save_checkpoints ? ck.data_ptr<scalar_t>() : nullptr);
  });
  return {y, hT, ck};
}

std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C,
                                 const std::optional<at::Tensor>& D,
                                 const std::optional<at::Tensor>& z,
                                 const std::optional<at::Tensor>& delta_bias,
                                 const at::Tensor& checkpoints, const at::Tensor& dy,
                                 const std::optional<at::Tensor>& dhT, bool softplus,
                                 int64_t chunk) {
  check_all(u, delta, A, B, C, D, z, delta_bias, dhT, chunk);
  TORCH_CHECK(dy.sizes() == u.sizes() && dy.is_contiguous() &&
                  dy.scalar_type() == u.scalar_type(),
              "dy must be [Bt, T, I] contiguous");
  const auto opts = u.options();
  const int64_t Bt = u.size(0), T_ = u.size(1), I_ = u.size(2), N = A.size(1);
  std::vector<at::Tensor> out;
  dispatch_float(u.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    auto a = make_args<scalar_t>(u, delta, A, B, C, D, z, delta_bias, std::nullopt, softplus,
                                 chunk);
    constexpr int W = Simd<scalar_t>::W;
    TORCH_CHECK(checkpoints.is_contiguous() && checkpoints.dim() == 5 &&
                    checkpoints.size(0) == Bt && checkpoints.size(1) == a.nblk &&
                    checkpoints.size(2) == a.nchunk && checkpoints.size(3) == N &&
                    checkpoints.size(4) == W,
                "checkpoints do not match the inputs");
    const int64_t G = channel_groups(Bt, a.nblk);
    at::Tensor du = at::empty({Bt, T_, I_}, opts);
    at::Tensor ddelta = at::empty({Bt, T_, I_}, opts);
    at::Tensor dz = z ? at::empty({Bt, T_, I_}, opts) : at::empty({0}, opts);
    at::Tensor dB = at::empty({Bt, G, T_, N}, opts);
    at::Tensor dC = at::empty({Bt, G, T_, N}, opts);
    at::Tensor dA = at::empty({Bt, I_, N}, opts);
    at::Tensor dD = at::empty({Bt, I_}, opts);
    at::Tensor dbias = at::empty({Bt, I_}, opts);
    at::Tensor dh0 = at::empty({Bt, I_, N}, opts);
    backward_kernel<scalar_t>(
        a, checkpoints.const_data_ptr<scalar_t>(), dy.const_data_ptr<scalar_t>(),
        dhT ? dhT->const_data_ptr<scalar_t>() : nullptr, G, du.data_ptr<scalar_t>(),
        ddelta.data_ptr<scalar_t>(), z ? dz.data_ptr<scalar_t>() : nullptr,
        dB.data_ptr<scalar_t>(), dC.data_ptr<scalar_t>(), dA.data_ptr<scalar_t>(),
        dD.data_ptr<scalar_t>(), dbias.data_ptr<scalar_t>(), dh0.data_ptr<scalar_t>());
    // Sum the partial results here, serially: small, and no thread-pool round trip.
    out = {du,
           ddelta,
           sum_leading<scalar_t>(dA, Bt, I_ * N).view({I_, N}),
           sum_groups<scalar_t>(dB, Bt, G, T_ * N).view({Bt, T_, N}),
           sum_groups<scalar_t>(dC, Bt, G, T_ * N).view({Bt, T_, N}),
           sum_leading<scalar_t>(dD, Bt, I_),
           dz,
           sum_leading<scalar_t>(dbias, Bt, I_),
           dh0};
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Causal depthwise convolution over time (Mamba's conv1d), channel-last, with an optional
// initial window (the K-1 inputs before t = 0) and a fused SiLU:
//   pre[b, t, i] = bias[i] + sum_k w[i, k] * x[b, t - (K-1) + k, i]     (x[b, s<0] = window)
//   out = silu(pre) (or pre).
// x: [Bt, T, I] with free batch/time strides; w: [I, K]; window: [Bt, I, K-1].
// Work is split over (batch, time chunk); a time step is W channels per vector operation.

struct ConvArgs {
  int64_t Bt, T_, I_, K, x_sb, x_st;
  int64_t ntc;    // time chunks per batch row
  int64_t tc;     // steps per time chunk
  int64_t Ipad;   // I rounded up to a multiple of W
};

template <typename T>
std::vector<T> transpose_weight(const T* w, int64_t I_, int64_t K, int64_t Ipad) {
  std::vector<T> wt(K * Ipad, T(0));  // [K][Ipad]
  for (int64_t i = 0; i < I_; ++i)
    for (int64_t k = 0; k < K; ++k) wt[k * Ipad + i] = w[i * K + k];
  return wt;
}

// The input row at time s for channels [i0, i0+nv), reading the initial window for s < 0.
template <typename T>
inline VecT<T> conv_input(const ConvArgs& c, const T* x, const T* win, int64_t b, int64_t s,
                          int64_t i0, int nv) {
  if (s >= 0) return load_vec<T>(x + b * c.x_sb + s * c.x_st + i0, nv);
  VecT<T> v{};
  if (win) {
    const int64_t km1 = c.K - 1;
    for (int l = 0; l < nv; ++l) v[l] = win[(b * c.I_ + i0 + l) * km1 + km1 + s];
  }
  return v;
}

template <typename T>
inline VecT<T> conv_pre(const ConvArgs& c, const T* x, const T* win, const T* wt, const T* bias,
                        int64_t b, int64_t t, int64_t i0, int nv) {
  VecT<T> acc = bias ? load_vec<T>(bias + i0, nv) : VecT<T>{};
  for (int64_t k = 0; k < c.K; ++k) {
    VecT<T> wk;
    std::memcpy(&wk, wt + k * c.Ipad + i0, sizeof(wk));
    acc += wk * conv_input<T>(c, x, win, b, t - (c.K - 1) + k, i0, nv);
  }
  return acc;
}

ConvArgs make_conv_args(const at::Tensor& x, const at::Tensor& w, int64_t W) {
  ConvArgs c{};
  c.Bt = x.size(0);
  c.T_ = x.size(1);
  c.I_ = x.size(2);
  c.K = w.size(1);
  c.x_sb = x.stride(0);
  c.x_st = x.stride(1);
  c.Ipad = (c.I_ + W - 1) / W * W;
  // Enough time chunks per row for every thread to get several, none shorter than 64 steps.
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t want = std::max<int64_t>(1, (8 * threads + c.Bt - 1) / std::max<int64_t>(1, c.Bt));
  c.ntc = std::max<int64_t>(1, std::min<int64_t>(want, (c.T_ + 63) / 64));
  c.tc = c.T_ > 0 ? (c.T_ + c.ntc - 1) / c.ntc : 1;
  return c;
}

void check_conv(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                const std::optional<at::Tensor>& win) {
  TORCH_CHECK(x.dim() == 3 && x.device().is_cpu(), "x must be a CPU tensor [Bt, T, I]");
  TORCH_CHECK(x.stride(2) == 1 || x.size(2) <= 1, "x must be contiguous in its last dim");
  const auto st = x.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble, "only float32 and float64 are supported");
  TORCH_CHECK(w.dim() == 2 && w.size(0) == x.size(2) && w.size(1) >= 1 && w.is_contiguous() &&
                  w.scalar_type() == st, "weight must be [I, K] contiguous");
  if (bias) TORCH_CHECK(bias->dim() == 1 && bias->size(0) == x.size(2) && bias->is_contiguous() &&
                            bias->scalar_type() == st, "bias must be [I] contiguous");
  if (win) TORCH_CHECK(win->dim() == 3 && win->size(0) == x.size(0) && win->size(1) == x.size(2) &&
                           win->size(2) == w.size(1) - 1 && win->is_contiguous() &&
                           win->scalar_type() == st, "window must be [Bt, I, K-1] contiguous");
}

at::Tensor conv_fwd(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& bias,
                    const std::optional<at::Tensor>& win, bool silu) {
  check_conv(x, w, bias, win);
  at::Tensor out = at::empty({x.size(0), x.size(1), x.size(2)}, x.options());
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    using V = VecT<scalar_t>;
    constexpr int W = Simd<scalar_t>::W;
    const ConvArgs c = make_conv_args(x, w, W);
    const std::vector<scalar_t> wt = transpose_weight<scalar_t>(w.const_data_ptr<scalar_t>(),
                                                                c.I_, c.K, c.Ipad);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* bp = bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* wp = win ? win->const_data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t grain = grain_for(c.Bt * c.ntc, c.Bt * c.T_ * c.Ipad * c.K);
    at::parallel_for(0, c.Bt * c.ntc, grain, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / c.ntc;
        const int64_t t0 = (task % c.ntc) * c.tc;
        const int64_t t1 = std::min(c.T_, t0 + c.tc);
        for (int64_t t = t0; t < t1; ++t) {
          for (int64_t i0 = 0; i0 < c.I_; i0 += W) {
            const int nv = static_cast<int>(std::min<int64_t>(W, c.I_ - i0));
            V pre = conv_pre<scalar_t>(c, xp, wp, wt.data(), bp, b, t, i0, nv);
            if (silu) pre = pre * vsigmoid<scalar_t>(pre);
            store_vec<scalar_t>(op + (b * c.T_ + t) * c.I_ + i0, pre, nv);
          }
        }
      }
    });
  });
  return out;
}

// Returns dx [Bt, T, I], dw [I, K], dbias [I] and dwindow [Bt, I, K-1].
std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& w,
                                 const std::optional<at::Tensor>& bias,
                                 const std::optional<at::Tensor>& win, const at::Tensor& dout,
                                 bool silu) {
  check_conv(x, w, bias, win);
  TORCH_CHECK(dout.sizes() == x.sizes() && dout.is_contiguous() &&
                  dout.scalar_type() == x.scalar_type(),
              "dout must be [Bt, T, I] contiguous");
  std::vector<at::Tensor> result;
  dispatch_float(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    using V = VecT<scalar_t>;
    constexpr int W = Simd<scalar_t>::W;
    const ConvArgs c = make_conv_args(x, w, W);
    const int64_t P = c.Bt * c.ntc;
    const auto opts = x.options();
    at::Tensor g = silu ? at::empty({c.Bt, c.T_, c.I_}, opts) : dout;  // grad of pre
    at::Tensor dx = at::empty({c.Bt, c.T_, c.I_}, opts);
    at::Tensor dw = at::empty({P, c.I_, c.K}, opts);
    at::Tensor db = at::empty({P, c.I_}, opts);
    at::Tensor dwin = at::zeros({c.Bt, c.I_, c.K - 1}, opts);
    const std::vector<scalar_t> wt = transpose_weight<scalar_t>(w.const_data_ptr<scalar_t>(),
                                                                c.I_, c.K, c.Ipad);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* bp = bias ? bias->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* wp = win ? win->const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* dop = dout.const_data_ptr<scalar_t>();
    scalar_t* gp = g.data_ptr<scalar_t>();
    // Pass 1: g = dout * silu'(pre); partial sums of dw and dbias per task.
    const int64_t grain = grain_for(P, c.Bt * c.T_ * c.Ipad * c.K);
    at::parallel_for(0, P, grain, [&](int64_t begin, int64_t end) {
      const int64_t nblk = c.Ipad / W;
      std::vector<V> dwv(nblk * c.K), dbv(nblk);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / c.ntc;
        const int64_t t0 = (task % c.ntc) * c.tc;
        const int64_t t1 = std::min(c.T_, t0 + c.tc);
        std::fill(dwv.begin(), dwv.end(), V{});
        std::fill(dbv.begin(), dbv.end(), V{});
        for (int64_t t = t0; t < t1; ++t) {
          for (int64_t blk = 0; blk < nblk; ++blk) {
            const int64_t i0 = blk * W;
            const int nv = static_cast<int>(std::min<int64_t>(W, c.I_ - i0));
            const int64_t row = (b * c.T_ + t) * c.I_ + i0;
            V gv = load_vec<scalar_t>(dop + row, nv);
            if (silu) {
              const V pre = conv_pre<scalar_t>(c, xp, wp, wt.data(), bp, b, t, i0, nv);
              const V sg = vsigmoid<scalar_t>(pre);
              gv = gv * sg * (splat<scalar_t>(1) + pre * (splat<scalar_t>(1) - sg));
              store_vec<scalar_t>(gp + row, gv, nv);
            }
            dbv[blk] += gv;
            for (int64_t k = 0; k < c.K; ++k)
              dwv[blk * c.K + k] += gv * conv_input<scalar_t>(c, xp, wp, b, t - (c.K - 1) + k, i0, nv);
          }
        }
        scalar_t* dwo = dw.data_ptr<scalar_t>() + task * c.I_ * c.K;
        scalar_t* dbo = db.data_ptr<scalar_t>() + task * c.I_;
        for (int64_t blk = 0; blk < nblk; ++blk) {
          const int64_t i0 = blk * W;
          const int nv = static_cast<int>(std::min<int64_t>(W, c.I_ - i0));
          for (int l = 0; l < nv; ++l) {
            dbo[i0 + l] = dbv[blk][l];
            for (int64_t k = 0; k < c.K; ++k) dwo[(i0 + l) * c.K + k] = dwv[blk * c.K + k][l];
          }
        }
      }
    });
    // Pass 2: dx[s] = sum_k w[k] g[s + K-1-k]; the window's gradient from the first steps.
    const scalar_t* gq = g.const_data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    scalar_t* dwinp = dwin.data_ptr<scalar_t>();
    at::parallel_for(0, P, grain, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / c.ntc;
        const int64_t t0 = (task % c.ntc) * c.tc;
        const int64_t t1 = std::min(c.T_, t0 + c.tc);
        const int64_t s0 = (t0 == 0) ? -(c.K - 1) : t0;  // the first chunk also does s < 0
        for (int64_t s = s0; s < t1; ++s) {
          for (int64_t i0 = 0; i0 < c.I_; i0 += W) {
            const int nv = static_cast<int>(std::min<int64_t>(W, c.I_ - i0));
            V acc{};
            for (int64_t k = 0; k < c.K; ++k) {
              const int64_t t = s + (c.K - 1) - k;
              if (t < 0 || t >= c.T_) continue;
              V wk;
              std::memcpy(&wk, wt.data() + k * c.Ipad + i0, sizeof(wk));
              acc += wk * load_vec<scalar_t>(gq + (b * c.T_ + t) * c.I_ + i0, nv);
            }
            if (s >= 0) {
              store_vec<scalar_t>(dxp + (b * c.T_ + s) * c.I_ + i0, acc, nv);
            } else {
              const int64_t km1 = c.K - 1;
              for (int l = 0; l < nv; ++l) dwinp[(b * c.I_ + i0 + l) * km1 + km1 + s] = acc[l];
            }
          }
        }
      }
    });
    result = {dx, sum_leading<scalar_t>(dw, P, c.I_ * c.K).view({c.I_, c.K}),
              sum_leading<scalar_t>(db, P, c.I_), dwin};
  });
  return result;
}

// ---------------------------------------------------------------------------------------------
// One step of the recurrence (decoding), updating the state in place:
//   h [Bt, I, N] (contiguous, in/out); u, delta, z [Bt, I]; B, C [Bt, N] (row strides free);
//   returns y [Bt, I].  Vectorised over the state dimension N (contiguous in h).

at::Tensor scan_step(at::Tensor h, const at::Tensor& u, const at::Tensor& delta,
                     const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
                     const std::optional<at::Tensor>& D, const std::optional<at::Tensor>& z,
                     const std::optional<at::Tensor>& bias, bool softplus) {
  const auto st = u.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble, "only float32 and float64 are supported");
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
  if (D) TORCH_CHECK(D->dim() == 1 && D->size(0) == I_ && D->is_contiguous() &&
                         D->scalar_type() == st, "D must be [I] contiguous");
  if (bias) TORCH_CHECK(bias->dim() == 1 && bias->size(0) == I_ && bias->is_contiguous() &&
                            bias->scalar_type() == st, "delta_bias must be [I] contiguous");
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

}  // namespace

TORCH_LIBRARY(hybridzoo_selective_scan, m) {
  m.def(
      "fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, Tensor? h0, bool softplus, bool save_checkpoints, int chunk) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "bwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, "
      "Tensor? delta_bias, Tensor checkpoints, Tensor dy, Tensor? dhT, bool softplus, int chunk) "
      "-> Tensor[]");
  m.def(
      "step(Tensor(a!) h, Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, "
      "Tensor? z, Tensor? delta_bias, bool softplus) -> Tensor");
  m.def("conv_fwd(Tensor x, Tensor w, Tensor? bias, Tensor? window, bool silu) -> Tensor");
  m.def(
      "conv_bwd(Tensor x, Tensor w, Tensor? bias, Tensor? window, Tensor dout, bool silu) "
      "-> Tensor[]");
}

TORCH_LIBRARY_IMPL(hybridzoo_selective_scan, CPU, m) {
  m.impl("fwd", &scan_fwd);
  m.impl("bwd", &scan_bwd);
  m.impl("step", &scan_step);
  m.impl("conv_fwd", &conv_fwd);
  m.impl("conv_bwd", &conv_bwd);
}
