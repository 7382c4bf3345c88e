// Non-causal softmax attention on CUDA cores, forward and backward: one warp per query row
// (dQ) or key row (dK, dV), lanes splitting the head dim, tiles of the other side staged in
// shared memory as fp32. Exact for any length and head dim <= 256 with any strides, and
// deterministic (no atomics); slower than tensor-core kernels, so `auto` never picks it.
// The backward is two launches: dQ (which also writes delta = rowsum(dO * O)), then dK, dV.
#include <cmath>

#include "common.cuh"
#include "ops.h"

namespace flowtok {
namespace {

constexpr int kWarps = 4;  // rows per block
constexpr int kMaxHeadDim = 256;

struct Strides {
  int64_t b, h, n, d;
};

Strides strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

int tile_rows(int64_t d) { return d <= 128 ? 32 : 16; }  // 2 tiles of fp32 stay under 48 KB

template <typename scalar_t, int DPL>
__device__ __forceinline__ void load_row(const scalar_t* base, Strides s, int64_t row, int d,
                                         bool active, float (&out)[DPL]) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int dd = lane + 32 * i;
    out[i] = (active && dd < d) ? static_cast<float>(base[row * s.n + dd * s.d]) : 0.f;
  }
}

template <typename scalar_t, int DPL>
__device__ __forceinline__ void store_row(scalar_t* base, Strides s, int64_t row, int d,
                                          const float (&in)[DPL], float mul) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int dd = lane + 32 * i;
    if (dd < d) base[row * s.n + dd * s.d] = static_cast<scalar_t>(in[i] * mul);
  }
}

// Stage rows [start, start + count) of a (N, d) slice into shared memory as fp32.
template <typename scalar_t>
__device__ __forceinline__ void stage(float* dst, const scalar_t* base, Strides s, int64_t start,
                                      int count, int d) {
  for (int idx = threadIdx.x; idx < count * d; idx += blockDim.x) {
    const int j = idx / d;
    const int dd = idx - j * d;
    dst[idx] = static_cast<float>(base[(start + j) * s.n + dd * s.d]);
  }
}

template <int DPL>
__device__ __forceinline__ float dot_row(const float (&r)[DPL], const float* tile_row, int d) {
  const int lane = threadIdx.x & 31;
  float part = 0.f;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int dd = lane + 32 * i;
    if (dd < d) part += r[i] * tile_row[dd];
  }
  return warp_sum(part);
}

template <int DPL>
__device__ __forceinline__ void axpy_row(float (&acc)[DPL], float a, const float* tile_row, int d) {
  const int lane = threadIdx.x & 31;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    const int dd = lane + 32 * i;
    if (dd < d) acc[i] += a * tile_row[dd];
  }
}

template <typename scalar_t, int DPL>
__global__ void attn_fwd_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                                const scalar_t* __restrict__ v, scalar_t* __restrict__ o,
                                float* __restrict__ lse, Strides sq, Strides sk, Strides sv,
                                Strides so, int heads, int64_t n_q, int64_t n_k, int d, int tile,
                                float scale) {
  extern __shared__ float smem[];
  float* ks = smem;
  float* vs = smem + tile * d;
  const int64_t row_blocks = (n_q + kWarps - 1) / kWarps;
  const int64_t bh = blockIdx.x / row_blocks;
  const int64_t row = (blockIdx.x % row_blocks) * kWarps + (threadIdx.x >> 5);
  const int64_t b = bh / heads, h = bh % heads;
  const bool active = row < n_q;
  const scalar_t* kb = k + b * sk.b + h * sk.h;
  const scalar_t* vb = v + b * sv.b + h * sv.h;
  float qr[DPL], acc[DPL];
  load_row<scalar_t, DPL>(q + b * sq.b + h * sq.h, sq, row, d, active, qr);
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    qr[i] *= scale;
    acc[i] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int64_t start = 0; start < n_k; start += tile) {
    const int count = static_cast<int>(n_k - start < tile ? n_k - start : tile);
    __syncthreads();
    stage(ks, kb, sk, start, count, d);
    stage(vs, vb, sv, start, count, d);
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < count; ++j) {
      const float s = dot_row(qr, ks + j * d, d);
      const float m_new = fmaxf(m, s);
      const float alpha = expf(m - m_new);
      const float p = expf(s - m_new);
      l = l * alpha + p;
#pragma unroll
      for (int i = 0; i < DPL; ++i) acc[i] *= alpha;
      axpy_row(acc, p, vs + j * d, d);
      m = m_new;
    }
  }
  if (active) {
    store_row<scalar_t, DPL>(o + b * so.b + h * so.h, so, row, d, acc, 1.f / l);
    if ((threadIdx.x & 31) == 0) lse[bh * n_q + row] = m + logf(l);
  }
}

template <typename scalar_t, int DPL>
__global__ void attn_bwd_dq_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                                   const scalar_t* __restrict__ v, const scalar_t* __restrict__ o,
                                   const scalar_t* __restrict__ dout,
                                   const float* __restrict__ lse, scalar_t* __restrict__ dq,
                                   float* __restrict__ delta, Strides sq, Strides sk, Strides sv,
                                   Strides so, Strides sdo, Strides sdq, int heads, int64_t n_q,
                                   int64_t n_k, int d, int tile, float scale) {
  extern __shared__ float smem[];
  float* ks = smem;
  float* vs = smem + tile * d;
  const int64_t row_blocks = (n_q + kWarps - 1) / kWarps;
  const int64_t bh = blockIdx.x / row_blocks;
  const int64_t row = (blockIdx.x % row_blocks) * kWarps + (threadIdx.x >> 5);
  const int64_t b = bh / heads, h = bh % heads;
  const bool active = row < n_q;
  const scalar_t* kb = k + b * sk.b + h * sk.h;
  const scalar_t* vb = v + b * sv.b + h * sv.h;
  float qr[DPL], dor[DPL], orow[DPL], acc[DPL];
  load_row<scalar_t, DPL>(q + b * sq.b + h * sq.h, sq, row, d, active, qr);
  load_row<scalar_t, DPL>(dout + b * sdo.b + h * sdo.h, sdo, row, d, active, dor);
  load_row<scalar_t, DPL>(o + b * so.b + h * so.h, so, row, d, active, orow);
  float part = 0.f;
#pragma unroll
  for (int i = 0; i < DPL; ++i) {
    part += dor[i] * orow[i];
    acc[i] = 0.f;
  }
  const float dl = warp_sum(part);
  const float lse_r = active ? lse[bh * n_q + row] : 0.f;
  if (active && (threadIdx.x & 31) == 0) delta[bh * n_q + row] = dl;
  for (int64_t start = 0; start < n_k; start += tile) {
    const int count = static_cast<int>(n_k - start < tile ? n_k - start : tile);
    __syncthreads();
    stage(ks, kb, sk, start, count, d);
    stage(vs, vb, sv, start, count, d);
    __syncthreads();
    if (!active) continue;
    for (int j = 0; j < count; ++j) {
      const float p = expf(dot_row(qr, ks + j * d, d) * scale - lse_r);
      const float ds = p * (dot_row(dor, vs + j * d, d) - dl);
      axpy_row(acc, ds, ks + j * d, d);
    }
  }
  if (active) store_row<scalar_t, DPL>(dq + b * sdq.b + h * sdq.h, sdq, row, d, acc, scale);
}

template <typename scalar_t, int DPL>
__global__ void attn_bwd_dkdv_kernel(
    const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
    const scalar_t* __restrict__ v, const scalar_t* __restrict__ dout,
    const float* __restrict__ lse, const float* __restrict__ delta, scalar_t* __restrict__ dk,
    scalar_t* __restrict__ dv, Strides sq, Strides sk, Strides sv, Strides sdo, Strides sdk,
    Strides sdv, int heads, int64_t n_q, int64_t n_k, int d, int tile, float scale) {
  extern __shared__ float smem[];
  float* qs = smem;
  float* dos = smem + tile * d;
  float* lse_s = smem + 2 * tile * d;
  float* delta_s = lse_s + tile;
  const int64_t row_blocks = (n_k + kWarps - 1) / kWarps;
  const int64_t bh = blockIdx.x / row_blocks;
  const int64_t key = (blockIdx.x % row_blocks) * kWarps + (threadIdx.x >> 5);
  const int64_t b = bh / heads, h = bh % heads;
  const bool active = key < n_k;
  const scalar_t* qb = q + b * sq.b + h * sq.h;
  const scalar_t* dob = dout + b * sdo.b + h * sdo.h;
  float kr[DPL], vr[DPL], dk_acc[DPL], dv_acc[DPL];
  load_row<scalar_t, DPL>(k + b * sk.b + h * sk.h, sk, key, d, active, kr);
  load_row<scalar_t, DPL>(v + b * sv.b + h * sv.h, sv, key, d, active, vr);
#pragma unroll
  for (int i = 0; i < DPL; ++i) dk_acc[i] = dv_acc[i] = 0.f;
  for (int64_t start = 0; start < n_q; start += tile) {
    const int count = static_cast<int>(n_q - start < tile ? n_q - start : tile);
    __syncthreads();
    stage(qs, qb, sq, start, count, d);
    stage(dos, dob, sdo, start, count, d);
    for (int i = threadIdx.x; i < count; i += blockDim.x) {
      lse_s[i] = lse[bh * n_q + start + i];
      delta_s[i] = delta[bh * n_q + start + i];
    }
    __syncthreads();
    if (!active) continue;
    for (int i = 0; i < count; ++i) {
      const float p = expf(dot_row(kr, qs + i * d, d) * scale - lse_s[i]);
      axpy_row(dv_acc, p, dos + i * d, d);
      const float ds = p * (dot_row(vr, dos + i * d, d) - delta_s[i]);
      axpy_row(dk_acc, ds, qs + i * d, d);
    }
  }
  if (active) {
    store_row<scalar_t, DPL>(dk + b * sdk.b + h * sdk.h, sdk, key, d, dk_acc, scale);
    store_row<scalar_t, DPL>(dv + b * sdv.b + h * sdv.h, sdv, key, d, dv_acc, 1.f);
  }
}

template <typename F>
void with_dims_per_lane(int64_t d, F&& f) {
  switch ((d + 31) / 32) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    default: f(std::integral_constant<int, 8>{}); break;
  }
}

void check_qkv(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  FLOWTOK_CHECK_CUDA(q, "q");
  FLOWTOK_CHECK_FLOAT(q, "q");
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4,
              "flowtok: attention expects (B, H, N, D) tensors, got q ", q.sizes(), ", k ",
              k.sizes(), ", v ", v.sizes());
  TORCH_CHECK(k.sizes() == v.sizes() && q.size(0) == k.size(0) && q.size(1) == k.size(1) &&
                  q.size(3) == k.size(3),
              "flowtok: attention needs the same B, H, D for q, k, v and the same N for k, v; got q ",
              q.sizes(), ", k ", k.sizes(), ", v ", v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "flowtok: q, k, v must share a dtype, got ", q.scalar_type(), ", ",
              k.scalar_type(), ", ", v.scalar_type());
  TORCH_CHECK(k.device() == q.device() && v.device() == q.device(),
              "flowtok: q, k, v must be on one device");
  TORCH_CHECK(q.size(3) <= kMaxHeadDim, "flowtok: attention supports head dim <= ", kMaxHeadDim,
              ", got ", q.size(3));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> attention_fwd(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v, double scale) {
  check_qkv(q, k, v);
  const at::cuda::OptionalCUDAGuard guard(q.device());
  const int64_t B = q.size(0), H = q.size(1), Nq = q.size(2), Nk = k.size(2), D = q.size(3);
  // (B, H, N, D) stored as (B, N, H, D), like flowtok_kernels.shapes.attention_out.
  at::Tensor out = at::empty({B, Nq, H, D}, q.options()).transpose(1, 2);
  at::Tensor lse = at::empty({B, H, Nq}, q.options().dtype(at::kFloat));
  if (out.numel() == 0) return {out, lse};
  TORCH_CHECK(Nk > 0, "flowtok: attention needs at least one key");
  const int tile = tile_rows(D);
  const int64_t blocks = B * H * ((Nq + kWarps - 1) / kWarps);
  const size_t smem = 2 * tile * D * sizeof(float);
  auto stream = c10::cuda::getCurrentCUDAStream();
  FLOWTOK_DISPATCH_FLOAT(q.scalar_type(), "attn_fwd", [&] {
    with_dims_per_lane(D, [&](auto dpl) {
      attn_fwd_kernel<scalar_t, decltype(dpl)::value><<<grid_size(blocks), kWarps * 32, smem, stream>>>(
          q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
          out.data_ptr<scalar_t>(), lse.data_ptr<float>(), strides_of(q), strides_of(k),
          strides_of(v), strides_of(out), static_cast<int>(H), Nq, Nk, static_cast<int>(D), tile,
          static_cast<float>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_bwd(
    const at::Tensor& dout_in, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, double scale) {
  check_qkv(q, k, v);
  TORCH_CHECK(out.sizes() == q.sizes() && dout_in.sizes() == q.sizes(),
              "flowtok: out and dout must match q ", q.sizes());
  TORCH_CHECK(lse.scalar_type() == at::kFloat && lse.is_contiguous(),
              "flowtok: lse must be the forward's contiguous fp32 (B, H, N) tensor");
  const at::cuda::OptionalCUDAGuard guard(q.device());
  const at::Tensor dout = dout_in.to(q.scalar_type());
  const int64_t B = q.size(0), H = q.size(1), Nq = q.size(2), Nk = k.size(2), D = q.size(3);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
  at::Tensor delta = at::empty({B, H, Nq}, q.options().dtype(at::kFloat));
  if (q.numel() == 0 || k.numel() == 0) return {dq.zero_(), dk.zero_(), dv.zero_()};
  const int tile = tile_rows(D);
  const size_t smem = 2 * tile * D * sizeof(float);
  auto stream = c10::cuda::getCurrentCUDAStream();
  FLOWTOK_DISPATCH_FLOAT(q.scalar_type(), "attn_bwd", [&] {
    with_dims_per_lane(D, [&](auto dpl) {
      constexpr int kDpl = decltype(dpl)::value;
      attn_bwd_dq_kernel<scalar_t, kDpl>
          <<<grid_size(B * H * ((Nq + kWarps - 1) / kWarps)), kWarps * 32, smem, stream>>>(
              q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
              out.data_ptr<scalar_t>(), dout.data_ptr<scalar_t>(), lse.data_ptr<float>(),
              dq.data_ptr<scalar_t>(), delta.data_ptr<float>(), strides_of(q), strides_of(k),
              strides_of(v), strides_of(out), strides_of(dout), strides_of(dq),
              static_cast<int>(H), Nq, Nk, static_cast<int>(D), tile, static_cast<float>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      attn_bwd_dkdv_kernel<scalar_t, kDpl>
          <<<grid_size(B * H * ((Nk + kWarps - 1) / kWarps)), kWarps * 32,
             smem + 2 * tile * sizeof(float), stream>>>(
              q.data_ptr<scalar_t>(), k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
              dout.data_ptr<scalar_t>(), lse.data_ptr<float>(), delta.data_ptr<float>(),
              dk.data_ptr<scalar_t>(), dv.data_ptr<scalar_t>(), strides_of(q), strides_of(k),
              strides_of(v), strides_of(dout), strides_of(dk), strides_of(dv),
              static_cast<int>(H), Nq, Nk, static_cast<int>(D), tile, static_cast<float>(scale));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {dq, dk, dv};
}

}  // namespace flowtok
