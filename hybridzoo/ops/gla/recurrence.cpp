// Fused CPU kernel of the gated linear recurrence (GLA, RWKV-6's bonus form, and the scalar-decay
// form under simple GLA and Mamba-2's SSD): forward and backward, one (batch row, head) per task.
//
//   S_t = diag(w_t) S_{t-1} + k_tᵀ v_t,   o_t = scale · q_t S_t                      (inclusive)
//   o_t = scale · q_t (S_{t-1} + diag(u) k_tᵀ v_t),   then the same update           (bonus)
//
// Layout (the last dimension contiguous, other strides free):
//   q, k : [B, T, G, K]  (value head h reads query/key head h / (H / G))
//   v    : [B, T, H, V]      w : [B, T, H, Kw]  the decay factors exp(g), Kw = K or 1 (scalar)
//   u    : [H, K] or empty   starts : [B, T] bool or empty (document starts: S is zeroed first)
//   s0   : [B, H, K, V] or empty      state S per (b, h): [K, V], row i for key channel i.
//
// The state lives in a local [K, V] buffer (in L1/L2 for the usual sizes) and the recurrence runs
// position by position: exact for any decay (one multiplication per step, as the step mode), and
// causal by construction (no output reads a later input). Work: ~3 vector operations per state
// element and step forward.
//
// Backward: the forward pass stores the state entering every block of `chunk` positions
// ("checkpoints", [B, H, ceil(T/chunk), K, V]); the backward pass walks the blocks in reverse,
// recomputes a block's states into a local buffer and runs the reverse recurrence for dS:
//   inclusive: dS ← dS + scale qᵀ do;  dq = scale S_t do;  dk = dS v;  dv = dSᵀ k;
//              dw_i = Σ_j dS_ij S_{t-1,ij};  dS ← diag(w) dS
//   bonus:     dk = dS v + scale (q ⊙ u) (do · v);  dv = dSᵀ k + scale (q · (u ⊙ k)) do;
//              dw as above;  dS ← diag(w) dS + scale qᵀ do;  dq = scale (S_{t-1} do + u ⊙ k (do · v))
// and at a document start dS ← 0. dq and dk are summed over a group's value heads
// (qk_grad_buffer), du comes per batch row, dw per channel (Kw = 1: summed over the channels).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "recurrence.h"

namespace {

Dims kernel_dims(const at::Tensor& q, const at::Tensor& v, const at::Tensor& w, const at::Tensor& u,
                 const at::Tensor& starts, int64_t chunk) {
  return dims_of(q, v, w, u, starts, chunk);
}

template <typename T>
void forward_impl(const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& w, const at::Tensor& u, const at::Tensor& s0,
                  const at::Tensor& starts, double scale_d, at::Tensor& o, at::Tensor& s_end,
                  at::Tensor* ckpt) {
  Seq<T> Q(q), Kt(k), Vt(v), W(w), O(o);
  const T* U = d.bonus ? u.data_ptr<T>() : nullptr;
  const bool* st = d.has_starts ? starts.data_ptr<bool>() : nullptr;
  const RunningStates<T> states(d, s0, s_end, ckpt);
  const T scale = static_cast<T>(scale_d);
  const int64_t KV = d.K * d.V;
  at::parallel_for(0, d.B * d.H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) states.start(task);
    // block by block of `chunk` positions, every head of this thread in turn: the query and key
    // rows of a block stay in cache for all the heads that share them
    for (int64_t c = 0; c < d.nc; ++c) {
      const int64_t t0 = c * d.chunk, t1 = std::min(d.T, t0 + d.chunk);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / d.H, h = task % d.H, g = h / d.R;
        T* S = states.of(task);
        const T* u = U ? U + h * d.K : nullptr;
        for (int64_t t = t0; t < t1; ++t) {
          if (is_start(d, st, b, t)) std::fill(S, S + KV, T(0));
          if (t == t0) states.save(task, c, S);
          if (t + kAhead < d.T) {
            prefetch_row(Q.at(b, t + kAhead, g), d.K);
            prefetch_row(Kt.at(b, t + kAhead, g), d.K);
            prefetch_row(Vt.at(b, t + kAhead, h), d.V);
            prefetch_row(W.at(b, t + kAhead, h), d.Kw);
          }
          step_forward<T>(d, S, Q.at(b, t, g), Kt.at(b, t, g), Vt.at(b, t, h), W.at(b, t, h), u,
                          scale, O.at(b, t, h));
        }
      }
    }
  });
}

// What one reverse step reads and writes (pointers at position t; states transposed: [V, K]).
template <typename T>
struct StepGrad {
  const T *q, *k, *v, *w, *u, *dout, *prev, *post;
  T *dST, *dq, *dk, *dw, *du, *dv_part;
  T scale, dov;
};

// The reverse step for the key channels [i0, i0 + NB·L): vectorised over channels, the sums over
// value columns become vector accumulations; only dv needs a horizontal sum per column.
template <typename T, typename Vec, int NB>
inline void grad_block(const Dims& d, const StepGrad<T>& a, int64_t i0, T* dw_sum) {
  constexpr int L = sizeof(Vec) / sizeof(T);
  const int64_t K = d.K;
  Vec w[NB], k[NB], sq[NB], dk[NB], dw[NB], dq[NB];
  for (int n = 0; n < NB; ++n) {
    const int64_t i = i0 + n * L;
    w[n] = d.Kw == 1 ? Vec{} + a.w[0] : load<Vec>(a.w + i);
    k[n] = load<Vec>(a.k + i);
    sq[n] = a.scale * load<Vec>(a.q + i);
    dk[n] = dw[n] = dq[n] = Vec{};
  }
  const T* rd = d.bonus ? a.prev : a.post;  // the state the output read
  auto column = [&](int64_t j) -> Vec {  // one value column j: updates dST, returns dv's lanes
    const T doj = a.dout[j], vj = a.v[j];
    T* ds = a.dST + j * K + i0;
    const T* sp = a.prev + j * K + i0;
    const T* sr = rd + j * K + i0;
    Vec dvp{};
    for (int n = 0; n < NB; ++n) {
      Vec x = load<Vec>(ds + n * L);
      if (!d.bonus) x += doj * sq[n];
      dk[n] += vj * x;
      dw[n] += x * load<Vec>(sp + n * L);
      dq[n] += doj * load<Vec>(sr + n * L);
      dvp += k[n] * x;
      store(ds + n * L, d.bonus ? w[n] * x + doj * sq[n] : w[n] * x);
    }
    return dvp;
  };
  add_row_sums<T, Vec>(d.V, column, a.dv_part);
  for (int n = 0; n < NB; ++n) {
    const int64_t i = i0 + n * L;
    if (d.bonus) {
      const Vec uk = load<Vec>(a.u + i) * k[n];
      put(a.dq + i, a.scale * dq[n] + (a.scale * a.dov) * uk, d.R > 1);
      put(a.dk + i, dk[n] + a.dov * sq[n] * load<Vec>(a.u + i), d.R > 1);
      store(a.du + i, load<Vec>(a.du + i) + a.dov * sq[n] * k[n]);
    } else {
      put(a.dq + i, a.scale * dq[n], d.R > 1);
      put(a.dk + i, dk[n], d.R > 1);
    }
    if (d.Kw == 1) *dw_sum += hsum<T>(dw[n]);
    else store(a.dw + i, dw[n]);
  }
}

template <typename T>
void grad_step(const Dims& d, const StepGrad<T>& a) {
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  std::fill(a.dv_part, a.dv_part + d.V, T(0));
  T dw_sum = 0;
  int64_t i0 = 0;
  for (; i0 + 4 * W <= d.K; i0 += 4 * W) grad_block<T, Vec, 4>(d, a, i0, &dw_sum);
  for (; i0 + W <= d.K; i0 += W) grad_block<T, Vec, 1>(d, a, i0, &dw_sum);
  for (; i0 < d.K; ++i0) grad_block<T, T, 1>(d, a, i0, &dw_sum);
  if (d.Kw == 1) a.dw[0] = dw_sum;
}

template <typename T>
void backward_impl(const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& w, const at::Tensor& u, const at::Tensor& starts,
                   const at::Tensor& ckpt, const at::Tensor& dout, const at::Tensor& ds_end,
                   double scale_d, std::vector<at::Tensor>& grads) {
  at::Tensor &dq = grads[0], &dk = grads[1], &dv = grads[2], &dw = grads[3], &du = grads[4],
             &ds0 = grads[5];
  Seq<T> Q(q), Kt(k), Vt(v), W(w), DO(dout), DV(dv), DW(dw);
  const T* U = d.bonus ? u.data_ptr<T>() : nullptr;
  const bool* st = d.has_starts ? starts.data_ptr<bool>() : nullptr;
  const T* CK = ckpt.data_ptr<T>();
  const T* DSE = ds_end.numel() ? ds_end.data_ptr<T>() : nullptr;
  T* DU = d.bonus ? du.data_ptr<T>() : nullptr;
  T* DS0 = ds0.data_ptr<T>();
  const T scale = static_cast<T>(scale_d);
  const int64_t KV = d.K * d.V, K = d.K, V = d.V;
  at::parallel_for(0, d.B * d.H, 1, [&](int64_t begin, int64_t end) {
    // states and their gradient transposed ([V, K]): the reverse step vectorises over channels
    BlockStates<T> states(d, st);
    std::vector<T> dST(KV), dv_part(V);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / d.H, h = task % d.H, g = h / d.R;
      transpose_or_zero(DSE ? DSE + task * KV : nullptr, dST.data(), K, V);
      T* du_row = DU ? DU + task * K : nullptr;
      if (du_row) std::fill(du_row, du_row + K, T(0));
      for (int64_t c = d.nc - 1; c >= 0; --c) {
        const int64_t t0 = c * d.chunk, t1 = std::min(d.T, t0 + d.chunk);
        // recompute: buf[0] = the state entering t0 (after a reset there), buf[s + 1] = the
        // state after position t0 + s; a reset makes the state before a position the zeros
        states.enter(CK + (task * d.nc + c) * KV);
        for (int64_t t = t0; t < t1; ++t) {
          const T* cur = states.before(b, t, t0);
          T* nxt = states.after(t, t0);
          if (t + kAhead < t1) {
            prefetch_row(Kt.at(b, t + kAhead, g), K);
            prefetch_row(Vt.at(b, t + kAhead, h), V);
            prefetch_row(W.at(b, t + kAhead, h), d.Kw);
          }
          const T *kt = Kt.at(b, t, g), *vt = Vt.at(b, t, h), *wt = W.at(b, t, h);
          for (int64_t j = 0; j < V; ++j) advance_row(d, cur + j * K, nxt + j * K, wt, kt, vt[j]);
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          if (t - kAhead >= t0) {
            const int64_t p = t - kAhead;
            for (const T* row : {Q.at(b, p, g), Kt.at(b, p, g), W.at(b, p, h)})
              prefetch_row(row, row == W.at(b, p, h) ? d.Kw : K);
            prefetch_row(Vt.at(b, p, h), V);
            prefetch_row(DO.at(b, p, h), V);
          }
          StepGrad<T> a;
          a.q = Q.at(b, t, g), a.k = Kt.at(b, t, g), a.v = Vt.at(b, t, h), a.w = W.at(b, t, h);
          a.u = U ? U + h * K : nullptr, a.dout = DO.at(b, t, h);
          a.prev = states.before(b, t, t0), a.post = states.after(t, t0);
          a.dST = dST.data(), a.dq = qk_grad_row<T>(d, dq, b, t, h),
          a.dk = qk_grad_row<T>(d, dk, b, t, h), a.dw = DW.at(b, t, h);
          a.du = du_row, a.dv_part = dv_part.data(), a.scale = scale;
          const T qk = d.bonus ? dot3(a.q, a.u, a.k, K) : T(0);
          a.dov = dot3<T>(a.dout, a.v, nullptr, V);
          grad_step(d, a);
          T* dvt = DV.at(b, t, h);
          for (int64_t j = 0; j < V; ++j) dvt[j] = dv_part[j] + scale * qk * a.dout[j];
          if (is_start(d, st, b, t)) std::fill(dST.begin(), dST.end(), T(0));
        }
      }
      transpose(dST.data(), DS0 + task * KV, V, K);
    }
  });
}

std::vector<at::Tensor> extra_grads(const Dims& d, const at::TensorOptions& opts) {
  return {at::empty({d.B, d.T, d.H, d.Kw}, opts), at::empty({d.bonus ? d.B : 0, d.H, d.K}, opts)};
}

}  // namespace

HYBRIDZOO_RECURRENCE_LIBRARY(hybridzoo_linear_recurrence, "u")
