// Fused CPU kernel of the gated delta rule, forward and backward, one (batch row, head) per task:
//
//   S_t = w_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ,   o_t = scale · S_tᵀ q_t
//
// written, with P = S_{t-1}, r = Pᵀ k and the new value u = β (v - w r), as S_t = w P + k uᵀ:
// one pass over the state for r, one for the update and the output (the gated linear step of
// recurrence.h with u as the value). Layout as recurrence.cpp's: q, k [B, T, G, K] (value head h
// reads head h / (H / G)), v [B, T, H, V], w = exp(g) and β [B, T, H, 1], starts [B, T] or empty,
// s0 [B, H, K, V] or empty; exact for any decay, causal by construction, a document start zeroes
// the state.
//
// Backward (checkpoints every `chunk` positions, one block recomputed at a time, states and their
// gradient G = ∂L/∂S_t transposed to [V, K] so that sums over value columns are vector sums):
//   G += scale q doᵀ;  dq = scale S_t do;  du = Gᵀ k;  dk = G u;  dv = β du;
//   dβ = du · (v - w r);  dr = -w β du;  dw = Σ G ⊙ P - β du · r;
//   dk += P dr;  ∂L/∂P = w G + k drᵀ   (zero at a document start).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "../gla/recurrence.h"

namespace {

// r = Σ_i k_i S[i, :] for a row-major S [K, V].
template <typename T>
void keys_times_state(const Dims& d, const T* S, const T* k, T* r) {
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  std::fill(r, r + d.V, T(0));
  for (int64_t i = 0; i < d.K; ++i) {
    const T ki = k[i];
    const T* row = S + i * d.V;
    int64_t j = 0;
    for (; j + W <= d.V; j += W) store(r + j, load<Vec>(r + j) + ki * load<Vec>(row + j));
    for (; j < d.V; ++j) r[j] += ki * row[j];
  }
}

Dims kernel_dims(const at::Tensor& q, const at::Tensor& v, const at::Tensor& w,
                 const at::Tensor& beta, const at::Tensor& starts, int64_t chunk) {
  return dims_of(q, v, w, at::empty({0}, v.options()), starts, chunk);  // Kw = 1, no bonus
}

template <typename T>
void forward_impl(const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& w, const at::Tensor& beta, const at::Tensor& s0,
                  const at::Tensor& starts, double scale_d, at::Tensor& o, at::Tensor& s_end,
                  at::Tensor* ckpt) {
  Seq<T> Q(q), Kt(k), Vt(v), Wt(w), Bt(beta), O(o);
  const bool* st = d.has_starts ? starts.data_ptr<bool>() : nullptr;
  const RunningStates<T> states(d, s0, s_end, ckpt);
  const T scale = static_cast<T>(scale_d);
  at::parallel_for(0, d.B * d.H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> u(d.V);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / d.H, h = task % d.H, g = h / d.R;
      T* S = states.start(task);
      for (int64_t t = 0; t < d.T; ++t) {
        if (is_start(d, st, b, t)) std::fill(S, S + states.KV, T(0));
        if (t % d.chunk == 0) states.save(task, t / d.chunk, S);
        if (t + kAhead < d.T) {
          prefetch_row(Q.at(b, t + kAhead, g), d.K);
          prefetch_row(Kt.at(b, t + kAhead, g), d.K);
          prefetch_row(Vt.at(b, t + kAhead, h), d.V);
        }
        const T *kt = Kt.at(b, t, g), *vt = Vt.at(b, t, h), *wt = Wt.at(b, t, h);
        const T bt = *Bt.at(b, t, h);
        keys_times_state(d, S, kt, u.data());  // r
        for (int64_t j = 0; j < d.V; ++j) u[j] = bt * (vt[j] - wt[0] * u[j]);
        step_forward<T>(d, S, Q.at(b, t, g), kt, u.data(), wt, nullptr, scale, O.at(b, t, h));
      }
    }
  });
}

// One reverse step for the channels [i0, i0 + NB·L) of every value column j (see the header).
template <typename T, typename Vec, int NB>
void grad_block(const Dims& d, int64_t i0, const T* q, const T* k, const T* prev,
                const T* post, const T* dout, const T* u, T* G, T* dq, T* dk, T* du,
                T* dwsum, T scale) {
  constexpr int L = sizeof(Vec) / sizeof(T);
  const int64_t K = d.K;
  Vec kv[NB], sq[NB], adq[NB], adk[NB], adw[NB];
  for (int n = 0; n < NB; ++n) {
    kv[n] = load<Vec>(k + i0 + n * L);
    sq[n] = scale * load<Vec>(q + i0 + n * L);
    adq[n] = adk[n] = adw[n] = Vec{};
  }
  auto column = [&](int64_t j) -> Vec {
    const T doj = dout[j], uj = u[j];
    T* gj = G + j * K + i0;
    Vec part{};
    for (int n = 0; n < NB; ++n) {
      const Vec x = load<Vec>(gj + n * L) + doj * sq[n];
      store(gj + n * L, x);
      adq[n] += doj * load<Vec>(post + j * K + i0 + n * L);
      adk[n] += uj * x;
      adw[n] += x * load<Vec>(prev + j * K + i0 + n * L);
      part += kv[n] * x;
    }
    return part;
  };
  add_row_sums<T, Vec>(d.V, column, du);
  for (int n = 0; n < NB; ++n) {
    put(dq + i0 + n * L, scale * adq[n], d.R > 1);
    put(dk + i0 + n * L, adk[n], d.R > 1);
    *dwsum += hsum<T>(adw[n]);
  }
}

// Second pass: G ← w G + k drᵀ and dk += P dr, for the channels [i0, i0 + NB·L).
template <typename T, typename Vec, int NB>
void grad_block_2(const Dims& d, int64_t i0, const T* k, const T* prev, const T* dr, T w, T* G,
                  T* dk) {
  constexpr int L = sizeof(Vec) / sizeof(T);
  Vec kv[NB], acc[NB];
  for (int n = 0; n < NB; ++n) {
    kv[n] = load<Vec>(k + i0 + n * L);
    acc[n] = Vec{};
  }
  for (int64_t j = 0; j < d.V; ++j) {
    T* gj = G + j * d.K + i0;
    const T* pj = prev + j * d.K + i0;
    for (int n = 0; n < NB; ++n) {
      store(gj + n * L, w * load<Vec>(gj + n * L) + dr[j] * kv[n]);
      acc[n] += dr[j] * load<Vec>(pj + n * L);
    }
  }
  for (int n = 0; n < NB; ++n) store(dk + i0 + n * L, load<Vec>(dk + i0 + n * L) + acc[n]);
}

template <typename T, typename F>
void over_channels(const Dims& d, F&& f) {  // f.template operator()<Vec, NB>(i0)
  using Vec = typename Lanes<T>::V;
  constexpr int W = Lanes<T>::W;
  int64_t i0 = 0;
  for (; i0 + 4 * W <= d.K; i0 += 4 * W) f.template operator()<Vec, 4>(i0);
  for (; i0 + W <= d.K; i0 += W) f.template operator()<Vec, 1>(i0);
  for (; i0 < d.K; ++i0) f.template operator()<T, 1>(i0);
}

template <typename T>
void backward_impl(const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& w, const at::Tensor& beta, const at::Tensor& starts,
                   const at::Tensor& ckpt, const at::Tensor& dout, const at::Tensor& ds_end,
                   double scale_d, std::vector<at::Tensor>& out) {
  Seq<T> Q(q), Kt(k), Vt(v), Wt(w), Bt(beta), DO(dout);
  Seq<T> DV(out[2]), DW(out[3]), DB(out[4]);
  const bool* st = d.has_starts ? starts.data_ptr<bool>() : nullptr;
  const T* CK = ckpt.data_ptr<T>();
  const T* DSE = ds_end.numel() ? ds_end.data_ptr<T>() : nullptr;
  T* DS0 = out[5].data_ptr<T>();
  const T scale = static_cast<T>(scale_d);
  const int64_t KV = d.K * d.V, K = d.K, V = d.V;
  at::parallel_for(0, d.B * d.H, 1, [&](int64_t begin, int64_t end) {
    BlockStates<T> states(d, st);
    std::vector<T> G(KV), ub(d.chunk * V), rb(d.chunk * V), du(V), dr(V);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / d.H, h = task % d.H, g = h / d.R;
      transpose_or_zero(DSE ? DSE + task * KV : nullptr, G.data(), K, V);
      for (int64_t c = d.nc - 1; c >= 0; --c) {
        const int64_t t0 = c * d.chunk, t1 = std::min(d.T, t0 + d.chunk);
        states.enter(CK + (task * d.nc + c) * KV);
        for (int64_t t = t0; t < t1; ++t) {  // recompute r, u and the states (transposed)
          const T* cur = states.before(b, t, t0);
          T* nxt = states.after(t, t0);
          const T *kt = Kt.at(b, t, g), *vt = Vt.at(b, t, h), w0 = *Wt.at(b, t, h),
                  bt = *Bt.at(b, t, h);
          T *r = rb.data() + (t - t0) * V, *u = ub.data() + (t - t0) * V;
          std::fill(r, r + V, T(0));
          add_row_sums<T, typename Lanes<T>::V>(
              V, [&](int64_t j) { return row_dot<T>(cur + j * K, kt, K); }, r);
          for (int64_t j = 0; j < V; ++j) u[j] = bt * (vt[j] - w0 * r[j]);
          for (int64_t j = 0; j < V; ++j) advance_row(d, cur + j * K, nxt + j * K, &w0, kt, u[j]);
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const T *qt = Q.at(b, t, g), *kt = Kt.at(b, t, g), *vt = Vt.at(b, t, h),
                  *dot = DO.at(b, t, h), w0 = *Wt.at(b, t, h), bt = *Bt.at(b, t, h);
          const T *prev = states.before(b, t, t0), *post = states.after(t, t0);
          const T *u = ub.data() + (t - t0) * V, *r = rb.data() + (t - t0) * V;
          T *dqt = qk_grad_row<T>(d, out[0], b, t, h), *dkt = qk_grad_row<T>(d, out[1], b, t, h);
          T* dvt = DV.at(b, t, h);
          std::fill(du.begin(), du.end(), T(0));
          T dwsum = 0;
          over_channels<T>(d, [&]<typename Vec, int NB>(int64_t i0) {
            grad_block<T, Vec, NB>(d, i0, qt, kt, prev, post, dot, u, G.data(), dqt, dkt,
                                   du.data(), &dwsum, scale);
          });
          T dbeta = 0;
          for (int64_t j = 0; j < V; ++j) {
            dvt[j] = bt * du[j];
            dbeta += du[j] * (vt[j] - w0 * r[j]);
            dwsum -= bt * du[j] * r[j];
            dr[j] = -w0 * bt * du[j];
          }
          *DB.at(b, t, h) = dbeta;
          *DW.at(b, t, h) = dwsum;
          over_channels<T>(d, [&]<typename Vec, int NB>(int64_t i0) {
            grad_block_2<T, Vec, NB>(d, i0, kt, prev, dr.data(), w0, G.data(), dkt);
          });
          if (is_start(d, st, b, t)) std::fill(G.begin(), G.end(), T(0));
        }
      }
      transpose(G.data(), DS0 + task * KV, V, K);
    }
  });
}

std::vector<at::Tensor> extra_grads(const Dims& d, const at::TensorOptions& opts) {
  return {at::empty({d.B, d.T, d.H, 1}, opts), at::empty({d.B, d.T, d.H, 1}, opts)};  // dw, dβ
}

}  // namespace

HYBRIDZOO_RECURRENCE_LIBRARY(hybridzoo_gated_delta_rule, "beta")
