// Causal depthwise convolution over time (Mamba's conv1d), channel-last, with an optional
// initial window (the K-1 inputs before t = 0) and a fused SiLU, forward and backward:
//   pre[b, t, i] = bias[i] + sum_k w[i, k] * x[b, t - (K-1) + k, i]     (x[b, s<0] = window)
//   out = silu(pre) (or pre).
// x: [Bt, T, I] with free batch/time strides; w: [I, K]; window: [Bt, I, K-1].
// Work is split over (batch, time chunk); a time step is W channels per vector operation.
// Packing: position t reads no input before its document's start (doc_lows); the window belongs
// to the row's first document.  Taps that are not read are skipped, never multiplied by zero.

#include <type_traits>

#include "common.h"

namespace hzss {
namespace {

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

ConvArgs make_conv_args(const at::Tensor& x, const at::Tensor& w, int64_t W) {
  const int64_t Bt = x.size(0), T_ = x.size(1), I_ = x.size(2);
  // Enough time chunks per row for every thread to get several, none shorter than 64 steps.
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t want = std::max<int64_t>(1, (8 * threads + Bt - 1) / std::max<int64_t>(1, Bt));
  const int64_t ntc = std::max<int64_t>(1, std::min<int64_t>(want, (T_ + 63) / 64));
  const int64_t tc = T_ > 0 ? (T_ + ntc - 1) / ntc : 1;
  return {Bt, T_, I_, w.size(1), x.stride(0), x.stride(1), ntc, tc, (I_ + W - 1) / W * W};
}

void check_conv(const at::Tensor& x, const at::Tensor& w, const OptTensor& bias,
                const OptTensor& win) {
  TORCH_CHECK(x.dim() == 3 && x.device().is_cpu(), "x must be a CPU tensor [Bt, T, I]");
  TORCH_CHECK(x.stride(2) == 1 || x.size(2) <= 1, "x must be contiguous in its last dim");
  const auto st = x.scalar_type();
  check_float(st);
  TORCH_CHECK(w.dim() == 2 && w.size(0) == x.size(2) && w.size(1) >= 1 && w.is_contiguous() &&
                  w.scalar_type() == st,
              "weight must be [I, K] contiguous");
  check_vector(bias, x.size(2), st, "bias must be [I] contiguous");
  if (win)
    TORCH_CHECK(win->dim() == 3 && win->size(0) == x.size(0) && win->size(1) == x.size(2) &&
                    win->size(2) == w.size(1) - 1 && win->is_contiguous() &&
                    win->scalar_type() == st,
                "window must be [Bt, I, K-1] contiguous");
}

// Everything a conv call reads, and how its work is split.
template <typename T>
struct ConvPlan {
  using Scalar = T;
  ConvArgs c;
  std::vector<int64_t> lo;  // [Bt * T]: the first position each output may read (doc_lows)
  std::vector<T> wt;        // the weight transposed, [K][Ipad]
  const T* x;
  const T* bias;  // or null
  const T* win;   // or null
  int64_t grain;

  ConvPlan(const at::Tensor& xt, const at::Tensor& w, const OptTensor& b, const OptTensor& window,
           const OptTensor& seq_idx)
      : c(make_conv_args(xt, w, Simd<T>::W)),
        lo(doc_lows(seq_ptr(seq_idx, c.Bt, c.T_), c.Bt, c.T_, c.K)),
        wt(transpose_weight<T>(w.const_data_ptr<T>(), c.I_, c.K, c.Ipad)),
        x(xt.const_data_ptr<T>()),
        bias(b ? b->const_data_ptr<T>() : nullptr),
        win(window ? window->const_data_ptr<T>() : nullptr),
        grain(grain_for(c.Bt * c.ntc, c.Bt * c.T_ * c.Ipad * c.K)) {}

  // The input row at time s for channels [i0, i0+nv), reading the initial window for s < 0.
  VecT<T> input(int64_t b, int64_t s, int64_t i0, int nv) const {
    if (s >= 0) return load_vec<T>(x + b * c.x_sb + s * c.x_st + i0, nv);
    VecT<T> v{};
    if (win) {
      const int64_t km1 = c.K - 1;
      for (int l = 0; l < nv; ++l) v[l] = win[(b * c.I_ + i0 + l) * km1 + km1 + s];
    }
    return v;
  }

  VecT<T> tap(int64_t k, int64_t i0) const {
    VecT<T> wk;
    std::memcpy(&wk, wt.data() + k * c.Ipad + i0, sizeof(wk));
    return wk;
  }

  // The first tap that output t reads (inputs before its document's start are not read).
  int64_t first_tap(int64_t b, int64_t t) const {
    return std::max<int64_t>(0, lo[b * c.T_ + t] - (t - (c.K - 1)));
  }

  VecT<T> pre(int64_t b, int64_t t, int64_t i0, int nv) const {
    VecT<T> acc = bias ? load_vec<T>(bias + i0, nv) : VecT<T>{};
    for (int64_t k = first_tap(b, t); k < c.K; ++k)
      acc += tap(k, i0) * input(b, t - (c.K - 1) + k, i0, nv);
    return acc;
  }
};

// Checks the arguments, then runs f(plan) with the plan of the call, in its dtype.
template <typename F>
void with_plan(const at::Tensor& x, const at::Tensor& w, const OptTensor& bias,
               const OptTensor& win, const OptTensor& seq_idx, F&& f) {
  check_conv(x, w, bias, win);
  dispatch_float(x.scalar_type(), [&](auto tag) {
    f(ConvPlan<decltype(tag)>(x, w, bias, win, seq_idx));
  });
}

}  // namespace

at::Tensor conv_fwd(const at::Tensor& x, const at::Tensor& w, const OptTensor& bias,
                    const OptTensor& win, const OptTensor& seq_idx, bool silu) {
  at::Tensor out = at::empty({x.size(0), x.size(1), x.size(2)}, x.options());
  with_plan(x, w, bias, win, seq_idx, [&](const auto& p) {
    using scalar_t = typename std::decay_t<decltype(p)>::Scalar;
    using V = VecT<scalar_t>;
    constexpr int W = Simd<scalar_t>::W;
    const ConvArgs& c = p.c;
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, c.Bt * c.ntc, p.grain, [&](int64_t begin, int64_t end) {
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / c.ntc;
        const int64_t t0 = (task % c.ntc) * c.tc;
        const int64_t t1 = std::min(c.T_, t0 + c.tc);
        for (int64_t t = t0; t < t1; ++t) {
          for (int64_t i0 = 0; i0 < c.I_; i0 += W) {
            const int nv = static_cast<int>(std::min<int64_t>(W, c.I_ - i0));
            V pre = p.pre(b, t, i0, nv);
            if (silu) pre = vsilu<scalar_t>(pre);
            store_vec<scalar_t>(op + (b * c.T_ + t) * c.I_ + i0, pre, nv);
          }
        }
      }
    });
  });
  return out;
}

// Returns dx [Bt, T, I], dw [I, K], dbias [I] and dwindow [Bt, I, K-1].
std::vector<at::Tensor> conv_bwd(const at::Tensor& x, const at::Tensor& w, const OptTensor& bias,
                                 const OptTensor& win, const OptTensor& seq_idx,
                                 const at::Tensor& dout, bool silu) {
  std::vector<at::Tensor> result;
  with_plan(x, w, bias, win, seq_idx, [&](const auto& p) {
    TORCH_CHECK(dout.sizes() == x.sizes() && dout.is_contiguous() &&
                    dout.scalar_type() == x.scalar_type(),
                "dout must be [Bt, T, I] contiguous");
    using scalar_t = typename std::decay_t<decltype(p)>::Scalar;
    using V = VecT<scalar_t>;
    constexpr int W = Simd<scalar_t>::W;
    const ConvArgs& c = p.c;
    const int64_t P = c.Bt * c.ntc;
    const auto opts = x.options();
    at::Tensor g = silu ? at::empty({c.Bt, c.T_, c.I_}, opts) : dout;  // grad of pre
    at::Tensor dx = at::empty({c.Bt, c.T_, c.I_}, opts);
    at::Tensor dw = at::empty({P, c.I_, c.K}, opts);
    at::Tensor db = at::empty({P, c.I_}, opts);
    at::Tensor dwin = at::zeros({c.Bt, c.I_, c.K - 1}, opts);
    const scalar_t* dop = dout.const_data_ptr<scalar_t>();
    scalar_t* gp = g.data_ptr<scalar_t>();
    // Pass 1: g = dout * silu'(pre); partial sums of dw and dbias per task.
    at::parallel_for(0, P, p.grain, [&](int64_t begin, int64_t end) {
      const int64_t nblk = c.Ipad / W;
      std::vector<V> dwv(nblk * c.K), dbv(nblk);
      for (int64_t task = begin; task < end; ++task) {
        const int64_t b = task / c.ntc;
        const int64_t t0 = (task % c.ntc) * c.tc;
        const int64_t t1 = std::min(c.T_, t0 + c.tc);
        std::fill(dwv.begin(), dwv.end(), V{});
        std::fill(dbv.begin(), dbv.end(), V{});
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t k0 = p.first_tap(b, t);
          for (int64_t blk = 0; blk < nblk; ++blk) {
            const int64_t i0 = blk * W;
            const int nv = static_cast<int>(std::min<int64_t>(W, c.I_ - i0));
            const int64_t row = (b * c.T_ + t) * c.I_ + i0;
            V gv = load_vec<scalar_t>(dop + row, nv);
            if (silu) {
              const V pre = p.pre(b, t, i0, nv);
              gv = gv * vsilu_grad<scalar_t>(pre, vsigmoid<scalar_t>(pre));
              store_vec<scalar_t>(gp + row, gv, nv);
            }
            dbv[blk] += gv;
            for (int64_t k = k0; k < c.K; ++k)
              dwv[blk * c.K + k] += gv * p.input(b, t - (c.K - 1) + k, i0, nv);
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
    // Pass 2: dx[s] = sum_k w[k] g[s + K-1-k] over the outputs t that read s (t in s's
    // document); the window's gradient from the first steps.
    const scalar_t* gq = g.const_data_ptr<scalar_t>();
    scalar_t* dxp = dx.data_ptr<scalar_t>();
    scalar_t* dwinp = dwin.data_ptr<scalar_t>();
    at::parallel_for(0, P, p.grain, [&](int64_t begin, int64_t end) {
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
              if (t < 0 || t >= c.T_ || p.lo[b * c.T_ + t] > s) continue;
              acc += p.tap(k, i0) * load_vec<scalar_t>(gq + (b * c.T_ + t) * c.I_ + i0, nv);
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

}  // namespace hzss
