// Fused CPU selective scan (Mamba-1), forward: discretisation, scan, readout, the D skip and the
// SiLU gate in one pass over time (layout in scan.h).
//
// For the backward pass the forward stores the state at the start of every chunk of K steps
// ("checkpoints", [Bt, blocks, T/K, N, W], K = `chunk`); nothing of size [Bt, T, I, N] is ever
// allocated.  Packing: where seq_idx starts a new document the state restarts from zero (it is
// replaced, never multiplied by 0, so that a non-finite value cannot leak into the next document).

#include "scan.h"

namespace hzss {
namespace {

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
        if (doc_start(a.seq, a.T_, b, t)) std::fill(h.begin(), h.end(), V{});
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
          if (zp) acc *= vsilu<T>(load_vec<T>(zp + i0, nv));
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

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
    const at::Tensor& C, const OptTensor& D, const OptTensor& z, const OptTensor& delta_bias,
    const OptTensor& h0, const OptTensor& seq_idx, bool softplus, bool save_checkpoints,
    int64_t chunk) {
  check_all(u, delta, A, B, C, D, z, delta_bias, h0, chunk);
  const auto opts = u.options();
  const int64_t Bt = u.size(0), T_ = u.size(1), I_ = u.size(2), N = A.size(1);
  at::Tensor y = at::empty({Bt, T_, I_}, opts);
  at::Tensor hT = at::empty({Bt, I_, N}, opts);
  at::Tensor ck;
  dispatch_float(u.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    auto a = make_args<scalar_t>(u, delta, A, B, C, D, z, delta_bias, h0, seq_idx, softplus,
                                 chunk);
    constexpr int W = Simd<scalar_t>::W;
    ck = save_checkpoints ? at::empty({Bt, a.nblk, a.nchunk, N, W}, opts) : at::empty({0}, opts);
    forward_kernel<scalar_t>(a, y.data_ptr<scalar_t>(), hT.data_ptr<scalar_t>(),
                             save_checkpoints ? ck.data_ptr<scalar_t>() : nullptr);
  });
  return {y, hT, ck};
}

}  // namespace hzss
