// Fused CPU selective scan (Mamba-1), backward (layout in scan.h).
//
// The backward pass walks the chunks of K steps in reverse; for each chunk it recomputes the
// chunk's states and decay factors from the forward's checkpoint into a local buffer and runs the
// reverse recurrence.  Gradients of B and C are sums over channels: every task accumulates them
// lane-wise over all its blocks for one chunk, then reduces the lanes once; tasks that split a
// batch row's channels write separate partial sums, added up at the end (as are dA, dD and
// d(delta_bias) over batch rows).  At a document start (seq_idx) the previous state counts as
// zero and no gradient flows back into the previous document.

#include "scan.h"

namespace hzss {
namespace {

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
            const bool restart = doc_start(a.seq, a.T_, b, t);
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
              hn[n] = restart ? duv * Bt[n] : dA * hp[n] + duv * Bt[n];
            }
          }
          // Reverse recurrence over the chunk.
          T* dup = du + b * a.T_ * a.I_ + i0;
          T* ddp = ddelta + b * a.T_ * a.I_ + i0;
          T* dzp = dz ? dz + b * a.T_ * a.I_ + i0 : nullptr;
          const T* dyp = dy + b * a.T_ * a.I_ + i0;
          for (int64_t tt = len - 1; tt >= 0; --tt) {
            const int64_t t = t0 + tt;
            const bool restart = doc_start(a.seq, a.T_, b, t);
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
              if (restart) {  // h_t = du B_t: nothing flows back into the previous document
                gh_[n] = V{};
                continue;
              }
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
            if (zp) store_vec<T>(dzp + t * a.I_, dyv * s * vsilu_grad<T>(zv, sg), nv);
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

}  // namespace

std::vector<at::Tensor> scan_bwd(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A,
                                 const at::Tensor& B, const at::Tensor& C, const OptTensor& D,
                                 const OptTensor& z, const OptTensor& delta_bias,
                                 const OptTensor& seq_idx, const at::Tensor& checkpoints,
                                 const at::Tensor& dy, const OptTensor& dhT, bool softplus,
                                 int64_t chunk) {
  check_all(u, delta, A, B, C, D, z, delta_bias, dhT, chunk);
  TORCH_CHECK(dy.sizes() == u.sizes() && dy.is_contiguous() && dy.scalar_type() == u.scalar_type(),
              "dy must be [Bt, T, I] contiguous");
  const auto opts = u.options();
  const int64_t Bt = u.size(0), T_ = u.size(1), I_ = u.size(2), N = A.size(1);
  std::vector<at::Tensor> out;
  dispatch_float(u.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    auto a = make_args<scalar_t>(u, delta, A, B, C, D, z, delta_bias, std::nullopt, seq_idx,
                                 softplus, chunk);
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

}  // namespace hzss
