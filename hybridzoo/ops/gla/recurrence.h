// Shared pieces of recurrence.cpp: strided views, sizes, and SIMD helpers (GCC/Clang vector
// extensions: one cache line per vector, loads and stores at any address).
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

// Strided view of a [B, T, X, D] tensor (last dimension contiguous).
template <typename T>
struct Seq {
  T* p;
  int64_t sb, st, sx;
  Seq(const at::Tensor& t) : p(t.data_ptr<T>()), sb(t.stride(0)), st(t.stride(1)), sx(t.stride(2)) {}
  T* at(int64_t b, int64_t t, int64_t x) const { return p + b * sb + t * st + x * sx; }
};

struct Dims {
  int64_t B, T, G, H, K, V, Kw, R, chunk, nc;
  bool bonus, has_starts;
};

Dims dims_of(const at::Tensor& q, const at::Tensor& v, const at::Tensor& w, const at::Tensor& u,
             const at::Tensor& starts, int64_t chunk) {
  const int64_t T = q.size(1), G = q.size(2), H = v.size(2), c = std::max<int64_t>(chunk, 1);
  // B, T, G, H, K, V, Kw, R, chunk, nc, bonus, has_starts
  return {q.size(0), T, G, H, q.size(3), v.size(3), w.size(3), H / G, c, (T + c - 1) / c,
          u.numel() > 0, starts.numel() > 0};
}

// Ask for the rows of a later position early: the recurrence reads each input row once, in
// time order, with a stride of H (or G) rows between positions.
template <typename T>
inline void prefetch_row(const T* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 64 / sizeof(T)) __builtin_prefetch(p + i);
}

inline bool is_start(const Dims& d, const bool* starts, int64_t b, int64_t t) {
  return d.has_starts && starts[b * d.T + t];
}

// SIMD vectors of one cache line (GCC/Clang vector extensions), loadable from any address.
template <typename T>
struct Lanes {
  static constexpr int W = 64 / sizeof(T);
  typedef T V __attribute__((vector_size(64), aligned(sizeof(T))));
};

// Vector loads and stores at any address; a horizontal sum. With Vec = T (one lane) the same code
// serves the channels left over after the whole vectors.
template <typename Vec, typename T>
inline Vec load(const T* p) {
  Vec x;
  __builtin_memcpy(&x, p, sizeof(Vec));
  return x;
}
template <typename Vec, typename T>
inline void store(T* p, const Vec& x) {
  __builtin_memcpy(p, &x, sizeof(Vec));
}
template <typename T, typename Vec>
inline T hsum(const Vec& x) {
  if constexpr (sizeof(Vec) == sizeof(T)) {
    return x;
  } else {
    T s = 0;
    for (size_t l = 0; l < sizeof(Vec) / sizeof(T); ++l) s += x[l];
    return s;
  }
}

// r[s] = Σ_l x[s][l] for W vectors x of W lanes: log2(W) levels of shuffles, each halving the
// number of vectors (block by block: lower halves + upper halves), instead of W horizontal sums.
template <typename T, int W, int H>
struct LaneSum {
  typedef T V __attribute__((vector_size(64), aligned(sizeof(T))));
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I
      __attribute__((vector_size(64)));
  static I mask(int half) {  // lanes from (a, b) with blocks of H lanes -> blocks of H/2
    I m;
    const int per = W / H;  // sources per input vector
    for (int l = 0; l < W; ++l) {
      const int src = l / (H / 2);
      m[l] = (src / per) * W + (src % per) * H + (l % (H / 2)) + half * (H / 2);
    }
    return m;
  }
  static void level(V* x, int count) {
    static const I lo = mask(0), hi = mask(1);
    for (int p = 0; p < count / 2; ++p)
      x[p] = __builtin_shuffle(x[2 * p], x[2 * p + 1], lo) +
             __builtin_shuffle(x[2 * p], x[2 * p + 1], hi);
    if constexpr (H > 2) LaneSum<T, W, H / 2>::level(x, count / 2);
  }
};

// Σ_i x_i y_i (z_i): vector partial sums, then one horizontal sum.
template <typename T>
inline T dot3(const T* x, const T* y, const T* z, int64_t n) {
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  Vec acc{};
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    Vec p = load<Vec>(x + i) * load<Vec>(y + i);
    acc += z ? p * load<Vec>(z + i) : p;
  }
  T s = hsum<T>(acc);
  for (; i < n; ++i) s += x[i] * y[i] * (z ? z[i] : T(1));
  return s;
}

// One row of the transposed state update: dst[i] = w_i src[i] + k_i v_j over the K channels.
template <typename T>
inline void advance_row(const Dims& d, const T* src, T* dst, const T* w, const T* k, T vj) {
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  int64_t i = 0;
  if (d.Kw == 1) {
    const T w0 = w[0];
    for (; i + W <= d.K; i += W)
      store(dst + i, w0 * load<Vec>(src + i) + vj * load<Vec>(k + i));
    for (; i < d.K; ++i) dst[i] = w0 * src[i] + vj * k[i];
  } else {
    for (; i + W <= d.K; i += W)
      store(dst + i, load<Vec>(w + i) * load<Vec>(src + i) + vj * load<Vec>(k + i));
    for (; i < d.K; ++i) dst[i] = w[i] * src[i] + vj * k[i];
  }
}

// dst [cols, rows] = src [rows, cols]ᵀ
template <typename T>
void transpose(const T* src, T* dst, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

// dst [V, K] = src [K, V]ᵀ, or zeros where there is no src.
template <typename T>
void transpose_or_zero(const T* src, T* dst, int64_t K, int64_t V) {
  if (src) transpose(src, dst, K, V);
  else std::fill(dst, dst + K * V, T(0));
}

// The states of a forward pass: each task's running state (its slice of the final states
// s_end), started from s0 (zeros where s0 is empty), and the checkpoints (where asked for).
template <typename T>
struct RunningStates {
  const T* S0;
  T* SE;
  T* CK;
  int64_t KV, nc;
  RunningStates(const Dims& d, const at::Tensor& s0, at::Tensor& s_end, at::Tensor* ckpt)
      : S0(s0.numel() ? s0.data_ptr<T>() : nullptr),
        SE(s_end.data_ptr<T>()),
        CK(ckpt ? ckpt->data_ptr<T>() : nullptr),
        KV(d.K * d.V),
        nc(d.nc) {}
  T* of(int64_t task) const { return SE + task * KV; }
  T* start(int64_t task) const {
    T* S = of(task);
    if (S0) std::copy(S0 + task * KV, S0 + (task + 1) * KV, S);
    else std::fill(S, S + KV, T(0));
    return S;
  }
  // Stores S as the checkpoint of block c, if checkpoints are kept.
  void save(int64_t task, int64_t c, const T* S) const {
    if (CK) std::copy(S, S + KV, CK + (task * nc + c) * KV);
  }
};

// The states of one block of positions t0 .. t0 + chunk - 1 that a backward task recomputes,
// transposed ([V, K]): entering t0 (from its checkpoint), then after each position. The state
// before a document start reads as zeros.
template <typename T>
struct BlockStates {
  const Dims& d;
  const bool* starts;
  int64_t KV;
  std::vector<T> buf, zeros;
  BlockStates(const Dims& dims, const bool* st)
      : d(dims), starts(st), KV(dims.K * dims.V), buf((dims.chunk + 1) * KV), zeros(KV, T(0)) {}
  void enter(const T* checkpoint) { transpose(checkpoint, buf.data(), d.K, d.V); }
  const T* before(int64_t b, int64_t t, int64_t t0) const {
    if (t > t0 && is_start(d, starts, b, t)) return zeros.data();
    return buf.data() + (t - t0) * KV;
  }
  T* after(int64_t t, int64_t t0) { return buf.data() + (t - t0 + 1) * KV; }
};

// Σ_i a_i b_i over n entries, as a vector of partial sums (the remainder added to lane 0).
template <typename T>
inline typename Lanes<T>::V row_dot(const T* a, const T* b, int64_t n) {
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  Vec acc{};
  int64_t i = 0;
  for (; i + W <= n; i += W) acc += load<Vec>(a + i) * load<Vec>(b + i);
  T tail = 0;
  for (; i < n; ++i) tail += a[i] * b[i];
  acc[0] += tail;
  return acc;
}

// out[j] += Σ_lanes f(j) for j < n, f returning a Vec of partial sums: whole groups of L rows
// through one LaneSum, the rest one horizontal sum each.
template <typename T, typename Vec, typename F>
inline void add_row_sums(int64_t n, F&& f, T* out) {
  constexpr int L = sizeof(Vec) / sizeof(T);
  int64_t j = 0;
  if constexpr (L > 1) {
    for (; j + L <= n; j += L) {
      Vec parts[L];
      for (int c = 0; c < L; ++c) parts[c] = f(j + c);
      LaneSum<T, L, L>::level(parts, L);
      store(out + j, load<Vec>(out + j) + parts[0]);
    }
  }
  for (; j < n; ++j) out[j] += hsum<T>(f(j));
}

// Gradients of the queries and keys. Heads in groups (R > 1 value heads per query/key head):
// every thread adds the gradients of its heads into its own [B, T, G, K] slice of a zeroed
// [threads, B, T, G, K] buffer, summed at the end (finish_qk_grad), never one slice per value
// head; without groups, [B, T, H, K] written once.
inline at::Tensor qk_grad_buffer(const Dims& d, const at::TensorOptions& opts) {
  if (d.R == 1) return at::empty({d.B, d.T, d.H, d.K}, opts);
  return at::zeros({at::get_num_threads(), d.B, d.T, d.G, d.K}, opts);
}
template <typename T>
inline T* qk_grad_row(const Dims& d, const at::Tensor& buf, int64_t b, int64_t t, int64_t h) {
  T* p = buf.data_ptr<T>();
  if (d.R == 1) return p + ((b * d.T + t) * d.H + h) * d.K;
  const int64_t slice = d.B * d.T * d.G * d.K;
  return p + at::get_thread_num() * slice + ((b * d.T + t) * d.G + h / d.R) * d.K;
}
inline at::Tensor finish_qk_grad(const Dims& d, const at::Tensor& buf) {
  return d.R == 1 ? buf : buf.sum(0);
}
// Store x at p, or add it to what is there (the grouped gradients accumulate).
template <typename Vec, typename T>
inline void put(T* p, const Vec& x, bool add) {
  store(p, add ? load<Vec>(p) + x : x);
}

constexpr int64_t kAhead = 4;  // positions to prefetch ahead

// One forward step on the state S [K, V] for the columns [j0, j0 + NB·W): NB vector
// accumulators kept in registers over the K rows (independent chains hide the FMA latency).
template <typename T, int NB>
inline void step_tile(const Dims& d, T* __restrict S, const T* __restrict q,
                      const T* __restrict k, const T* __restrict v, const T* __restrict w,
                      int64_t j0, typename Lanes<T>::V* acc) {
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  Vec vv[NB];
  for (int n = 0; n < NB; ++n) {
    vv[n] = *reinterpret_cast<const Vec*>(v + j0 + n * W);
    acc[n] = Vec{} ;
  }
  for (int64_t i = 0; i < d.K; ++i) {
    const T wi = w[d.Kw == 1 ? 0 : i], ki = k[i], qi = q[i];
    Vec* row = reinterpret_cast<Vec*>(S + i * d.V + j0);
    for (int n = 0; n < NB; ++n) {
      const Vec old = row[n];
      const Vec upd = wi * old + ki * vv[n];
      row[n] = upd;
      acc[n] += qi * (d.bonus ? old : upd);
    }
  }
}

// One forward step on the state S [K, V]; writes o (scaled).
template <typename T>
inline void step_forward(const Dims& d, T* __restrict S, const T* __restrict q,
                         const T* __restrict k, const T* __restrict v, const T* __restrict w,
                         const T* __restrict u, T scale, T* __restrict o) {
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  const int64_t V = d.V;
  T qk = 0;
  if (d.bonus)
    for (int64_t i = 0; i < d.K; ++i) qk += q[i] * u[i] * k[i];
  int64_t j0 = 0;
  Vec acc[4];
  for (; j0 + 4 * W <= V; j0 += 4 * W) {
    step_tile<T, 4>(d, S, q, k, v, w, j0, acc);
    for (int n = 0; n < 4; ++n) {
      Vec vv = *reinterpret_cast<const Vec*>(v + j0 + n * W);
      *reinterpret_cast<Vec*>(o + j0 + n * W) = scale * (acc[n] + qk * vv);
    }
  }
  for (; j0 + W <= V; j0 += W) {
    step_tile<T, 1>(d, S, q, k, v, w, j0, acc);
    Vec vv = *reinterpret_cast<const Vec*>(v + j0);
    *reinterpret_cast<Vec*>(o + j0) = scale * (acc[0] + qk * vv);
  }
  for (int64_t j = j0; j < V; ++j) {  // the columns left over: scalar
    T a = 0;
    for (int64_t i = 0; i < d.K; ++i) {
      T* x = S + i * V + j;
      const T old = *x, upd = w[d.Kw == 1 ? 0 : i] * old + k[i] * v[j];
      *x = upd;
      a += q[i] * (d.bonus ? old : upd);
    }
    o[j] = scale * (a + qk * v[j]);
  }
}

// What each kernel's source (recurrence.cpp, delta_rule.cpp) defines for the operators fwd and
// bwd below; `x` is its extra input (the bonus u, the delta rule's β).
Dims kernel_dims(const at::Tensor& q, const at::Tensor& v, const at::Tensor& w, const at::Tensor& x,
                 const at::Tensor& starts, int64_t chunk);
// The gradients of w and x, as bwd returns them.
std::vector<at::Tensor> extra_grads(const Dims& d, const at::TensorOptions& opts);
template <typename T>
void forward_impl(const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& w, const at::Tensor& x, const at::Tensor& s0,
                  const at::Tensor& starts, double scale_d, at::Tensor& o, at::Tensor& s_end,
                  at::Tensor* ckpt);
// grads: dq and dk (qk_grad_buffer), dv, dw, dx, ds0
template <typename T>
void backward_impl(const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& w, const at::Tensor& x, const at::Tensor& starts,
                   const at::Tensor& ckpt, const at::Tensor& dout, const at::Tensor& ds_end,
                   double scale_d, std::vector<at::Tensor>& grads);

// Returns (o [B, T, H, V], the final state [B, H, K, V], the checkpoints if `save`).
std::tuple<at::Tensor, at::Tensor, at::Tensor> fwd(const at::Tensor& q, const at::Tensor& k,
                                                   const at::Tensor& v, const at::Tensor& w,
                                                   const at::Tensor& x, const at::Tensor& s0,
                                                   const at::Tensor& starts, double scale,
                                                   int64_t chunk, bool save) {
  const Dims d = kernel_dims(q, v, w, x, starts, chunk);
  auto opts = v.options();
  at::Tensor o = at::empty({d.B, d.T, d.H, d.V}, opts);
  at::Tensor s_end = at::empty({d.B, d.H, d.K, d.V}, opts);
  at::Tensor ckpt = at::empty({save ? d.B : 0, d.H, d.nc, d.K, d.V}, opts);
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "recurrence_fwd", [&] {
    forward_impl<scalar_t>(d, q, k, v, w, x, s0, starts, scale, o, s_end, save ? &ckpt : nullptr);
  });
  return {o, s_end, ckpt};
}

// Returns dq, dk, dv, dw, dx, ds0.
std::vector<at::Tensor> bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const at::Tensor& w, const at::Tensor& x, const at::Tensor& starts,
                            const at::Tensor& ckpt, const at::Tensor& dout,
                            const at::Tensor& ds_end, double scale, int64_t chunk) {
  const Dims d = kernel_dims(q, v, w, x, starts, chunk);
  auto opts = v.options();
  const std::vector<at::Tensor> extra = extra_grads(d, opts);
  std::vector<at::Tensor> grads = {qk_grad_buffer(d, opts), qk_grad_buffer(d, opts),
                                   at::empty({d.B, d.T, d.H, d.V}, opts), extra[0], extra[1],
                                   at::empty({d.B, d.H, d.K, d.V}, opts)};
  AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "recurrence_bwd", [&] {
    backward_impl<scalar_t>(d, q, k, v, w, x, starts, ckpt, dout, ds_end, scale, grads);
  });
  grads[0] = finish_qk_grad(d, grads[0]);
  grads[1] = finish_qk_grad(d, grads[1]);
  return grads;
}

}  // namespace

// Registers fwd and bwd as the operators of `ns`; `x` names the kernel's extra input.
#define HYBRIDZOO_RECURRENCE_LIBRARY(ns, x)                                              \
  TORCH_LIBRARY(ns, m) {                                                                    \
    m.def("fwd(Tensor q, Tensor k, Tensor v, Tensor w, Tensor " x ", Tensor s0, "           \
          "Tensor starts, float scale, int chunk, bool save) -> (Tensor, Tensor, Tensor)"); \
    m.def("bwd(Tensor q, Tensor k, Tensor v, Tensor w, Tensor " x ", Tensor starts, "       \
          "Tensor ckpt, Tensor dout, Tensor ds_end, float scale, int chunk) -> Tensor[]");  \
  }                                                                                         \
  TORCH_LIBRARY_IMPL(ns, CPU, m) {                                                          \
    m.impl("fwd", &fwd);                                                                    \
    m.impl("bwd", &bwd);                                                                    \
  }
