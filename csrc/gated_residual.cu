// adaLN-Zero gated residual in CUDA: out = x + gate * y (one pass, 16-byte accesses), and its
// backward dy = gate * dout, dgate = sum over tokens of dout * y (per-chunk partial sums).
#include "common.cuh"
#include "ops.h"

namespace flowtok {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlockBwd = 16;

template <typename scalar_t, int VEC>
__global__ void gated_residual_fwd_kernel(const scalar_t* __restrict__ x,
                                          const scalar_t* __restrict__ gate,
                                          const scalar_t* __restrict__ y,
                                          scalar_t* __restrict__ out, int64_t n_vec,
                                          int64_t row_len, int64_t tokens_x_len,
                                          int64_t gate_stride) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n_vec;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t e = i * VEC;  // VEC divides the row length: a vector never crosses rows
    const int64_t b = e / tokens_x_len;
    const int64_t col = e % row_len;
    float xv[VEC], yv[VEC], gv[VEC];
    load_vec<scalar_t, VEC>(x + e, xv);
    load_vec<scalar_t, VEC>(y + e, yv);
    load_vec<scalar_t, VEC>(gate + b * gate_stride + col, gv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) xv[j] += gv[j] * yv[j];
    store_vec<scalar_t, VEC>(out + e, xv);
  }
}

// Block = (sample b, chunk of rows); threads stride over columns.
template <typename scalar_t>
__global__ void gated_residual_bwd_kernel(const scalar_t* __restrict__ dout,
                                          const scalar_t* __restrict__ gate,
                                          const scalar_t* __restrict__ y,
                                          scalar_t* __restrict__ dy, float* __restrict__ part,
                                          int64_t n_tokens, int d, int64_t gate_stride,
                                          int rows_per_block) {
  const int64_t chunks = (n_tokens + rows_per_block - 1) / rows_per_block;
  const int64_t b = blockIdx.x / chunks;
  const int64_t first = (blockIdx.x % chunks) * rows_per_block;
  const int64_t last = first + rows_per_block < n_tokens ? first + rows_per_block : n_tokens;
  for (int col = threadIdx.x; col < d; col += blockDim.x) {
    const float g = static_cast<float>(gate[b * gate_stride + col]);
    float acc = 0.f;
    for (int64_t n = first; n < last; ++n) {
      const int64_t e = (b * n_tokens + n) * d + col;
      const float go = static_cast<float>(dout[e]);
      acc += go * static_cast<float>(y[e]);
      dy[e] = static_cast<scalar_t>(g * go);
    }
    part[static_cast<int64_t>(blockIdx.x) * d + col] = acc;
  }
}

at::Tensor gate_rows(const at::Tensor& gate, const at::Tensor& x) {
  FLOWTOK_CHECK_CUDA(gate, "gate");
  TORCH_CHECK(gate.dim() == 2 && gate.size(0) == x.size(0) && gate.size(1) == x.size(2),
              "flowtok: gate must be (B, D) = (", x.size(0), ", ", x.size(2), "), got ",
              gate.sizes());
  at::Tensor g = gate.scalar_type() == x.scalar_type() ? gate : gate.to(x.scalar_type());
  return g.stride(1) == 1 ? g : g.contiguous();
}

void check_pair(const at::Tensor& x, const at::Tensor& y, const char* xn, const char* yn) {
  FLOWTOK_CHECK_CUDA(x, xn);
  FLOWTOK_CHECK_FLOAT(x, xn);
  TORCH_CHECK(x.dim() == 3, "flowtok: ", xn, " must be (B, N, D), got ", x.sizes());
  TORCH_CHECK(y.sizes() == x.sizes(), "flowtok: ", yn, " must match ", xn, " ", x.sizes(),
              ", got ", y.sizes());
}

}  // namespace

at::Tensor gated_residual_fwd(const at::Tensor& x_in, const at::Tensor& gate_in,
                              const at::Tensor& y_in) {
  check_pair(x_in, y_in, "x", "y");
  const at::cuda::OptionalCUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor y = y_in.to(x.scalar_type()).contiguous();
  const at::Tensor gate = gate_rows(gate_in, x);
  at::Tensor out = at::empty_like(x);
  if (x.numel() == 0) return out;
  const int64_t N = x.size(1), D = x.size(2);
  auto stream = c10::cuda::getCurrentCUDAStream();
  FLOWTOK_DISPATCH_FLOAT(x.scalar_type(), "gated_res_fwd", [&] {
    constexpr int kVec = 16 / sizeof(scalar_t);
    const int vec = vector_width<scalar_t>(
        D, {x.data_ptr(), y.data_ptr(), gate.data_ptr(), out.data_ptr()}, {gate.stride(0)});
    const int64_t n_vec = x.numel() / vec;
    const int blocks = static_cast<int>(std::min<int64_t>((n_vec + kThreads - 1) / kThreads, 65535));
    if (vec == kVec) {
      gated_residual_fwd_kernel<scalar_t, kVec><<<blocks, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), gate.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
          out.data_ptr<scalar_t>(), n_vec, D, N * D, gate.stride(0));
    } else {
      gated_residual_fwd_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), gate.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
          out.data_ptr<scalar_t>(), n_vec, D, N * D, gate.stride(0));
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> gated_residual_bwd(const at::Tensor& dout_in,
                                                      const at::Tensor& gate_in,
                                                      const at::Tensor& y_in) {
  check_pair(y_in, dout_in, "y", "dout");
  const at::cuda::OptionalCUDAGuard guard(y_in.device());
  const at::Tensor y = y_in.contiguous();
  const at::Tensor dout = dout_in.to(y.scalar_type()).contiguous();
  const at::Tensor gate = gate_rows(gate_in, y);
  const int64_t B = y.size(0), N = y.size(1), D = y.size(2);
  const int rows = static_cast<int>(N < kRowsPerBlockBwd ? (N > 0 ? N : 1) : kRowsPerBlockBwd);
  const int64_t chunks = (N + rows - 1) / rows;
  at::Tensor part = at::empty({B * chunks, D}, y.options().dtype(at::kFloat));
  at::Tensor dy = at::empty_like(y);
  if (y.numel() > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    const int threads = std::min(kThreads, round_up_warps(D));
    FLOWTOK_DISPATCH_FLOAT(y.scalar_type(), "gated_res_bwd", [&] {
      gated_residual_bwd_kernel<scalar_t><<<grid_size(B * chunks), threads, 0, stream>>>(
          dout.data_ptr<scalar_t>(), gate.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(),
          dy.data_ptr<scalar_t>(), part.data_ptr<float>(), N, static_cast<int>(D),
          gate.stride(0), rows);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {part.view({B, chunks, D}).sum(1).to(gate_in.scalar_type()), dy};
}

}  // namespace flowtok
