// adaLN in CUDA: LayerNorm without affine, then x * (1 + scale) + shift, forward and backward,
// optionally preceded by the gated residual x_new = x + gate * y (one pass over memory).
// One block per row in the forward (16-byte accesses, statistics from registers); the
// backward gives each block a chunk of rows of one sample and writes per-chunk partial sums
// of dshift / dscale / dgate, summed afterwards (deterministic, no atomics).
#include <type_traits>
#include <vector>

#include "common.cuh"
#include "ops.h"

namespace flowtok {
namespace {

constexpr int kRowsPerBlockBwd = 16;
constexpr int kMaxThreads = 1024;

template <typename scalar_t, int VEC, int VPT>
__global__ void ln_mod_fwd_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,
                                  const scalar_t* __restrict__ gate,
                                  const scalar_t* __restrict__ shift,
                                  const scalar_t* __restrict__ scale, scalar_t* __restrict__ x_new,
                                  scalar_t* __restrict__ out, float* __restrict__ mean_out,
                                  float* __restrict__ rstd_out, int64_t n_tokens, int d,
                                  int64_t gate_stride, int64_t shift_stride,
                                  int64_t scale_stride, float eps, bool residual) {
  __shared__ float smem[64];
  const int64_t row = blockIdx.x;
  const int64_t b = row / n_tokens;
  const int64_t base = row * d;
  float v[VPT][VEC];
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int col = (threadIdx.x + i * blockDim.x) * VEC;
    if (col < d) {
      load_vec<scalar_t, VEC>(x + base + col, v[i]);
      if (residual) {
        float yv[VEC], gv[VEC];
        load_vec<scalar_t, VEC>(y + base + col, yv);
        load_vec<scalar_t, VEC>(gate + b * gate_stride + col, gv);
#pragma unroll
        for (int j = 0; j < VEC; ++j)  // normalize the rounded x_new the next layer reads back
          v[i][j] = static_cast<float>(static_cast<scalar_t>(v[i][j] + gv[j] * yv[j]));
        store_vec<scalar_t, VEC>(x_new + base + col, v[i]);
      }
#pragma unroll
      for (int j = 0; j < VEC; ++j) sum += v[i][j];
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) v[i][j] = 0.f;
    }
  }
  const float mean = block_sum(sum, smem) / d;
  float sq = 0.f;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    if ((threadIdx.x + i * blockDim.x) * VEC < d) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) sq += (v[i][j] - mean) * (v[i][j] - mean);
    }
  }
  const float rstd = rsqrtf(block_sum(sq, smem) / d + eps);
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int col = (threadIdx.x + i * blockDim.x) * VEC;
    if (col < d) {
      float sh[VEC], sc[VEC], o[VEC];
      load_vec<scalar_t, VEC>(shift + b * shift_stride + col, sh);
      load_vec<scalar_t, VEC>(scale + b * scale_stride + col, sc);
#pragma unroll
      for (int j = 0; j < VEC; ++j) o[j] = (v[i][j] - mean) * rstd * (1.f + sc[j]) + sh[j];
      store_vec<scalar_t, VEC>(out + base + col, o);
    }
  }
  if (threadIdx.x == 0) {
    mean_out[row] = mean;
    rstd_out[row] = rstd;
  }
}

template <typename scalar_t, int VEC, int VPT>
__global__ void ln_mod_bwd_kernel(
    const scalar_t* __restrict__ dout, const scalar_t* __restrict__ dx_new,
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ y,
    const scalar_t* __restrict__ gate, const scalar_t* __restrict__ scale,
    const float* __restrict__ mean, const float* __restrict__ rstd, scalar_t* __restrict__ dx,
    scalar_t* __restrict__ dy, float* __restrict__ dshift_part, float* __restrict__ dscale_part,
    float* __restrict__ dgate_part, int64_t n_tokens, int d, int64_t gate_stride,
    int64_t scale_stride, int rows_per_block, bool residual) {
  __shared__ float smem[64];
  const int64_t chunks = (n_tokens + rows_per_block - 1) / rows_per_block;
  const int64_t b = blockIdx.x / chunks;
  const int64_t first = (blockIdx.x % chunks) * rows_per_block;
  const int64_t last = first + rows_per_block < n_tokens ? first + rows_per_block : n_tokens;
  float sc[VPT][VEC], g[VPT][VEC], acc_shift[VPT][VEC], acc_scale[VPT][VEC], acc_gate[VPT][VEC];
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int col = (threadIdx.x + i * blockDim.x) * VEC;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      sc[i][j] = g[i][j] = acc_shift[i][j] = acc_scale[i][j] = acc_gate[i][j] = 0.f;
    }
    if (col < d) {
      load_vec<scalar_t, VEC>(scale + b * scale_stride + col, sc[i]);
      if (residual) load_vec<scalar_t, VEC>(gate + b * gate_stride + col, g[i]);
    }
  }
  for (int64_t n = first; n < last; ++n) {
    const int64_t row = b * n_tokens + n;
    const int64_t base = row * d;
    const float mu = mean[row];
    const float rs = rstd[row];
    float xh[VPT][VEC], dxh[VPT][VEC];
    float s1 = 0.f, s2 = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      const int col = (threadIdx.x + i * blockDim.x) * VEC;
      if (col < d) {
        float xv[VEC], dh[VEC];
        load_vec<scalar_t, VEC>(x + base + col, xv);
        load_vec<scalar_t, VEC>(dout + base + col, dh);
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          xh[i][j] = (xv[j] - mu) * rs;
          acc_shift[i][j] += dh[j];
          acc_scale[i][j] += dh[j] * xh[i][j];
          dxh[i][j] = dh[j] * (1.f + sc[i][j]);
          s1 += dxh[i][j] * xh[i][j];
          s2 += dxh[i][j];
        }
      }
    }
    const float2 s = block_sum2(s1, s2, smem);
    const float c1 = s.x / d;
    const float c2 = s.y / d;
#pragma unroll
    for (int i = 0; i < VPT; ++i) {
      const int col = (threadIdx.x + i * blockDim.x) * VEC;
      if (col < d) {
        float dxv[VEC];
#pragma unroll
        for (int j = 0; j < VEC; ++j) dxv[j] = (dxh[i][j] - xh[i][j] * c1 - c2) * rs;
        if (dx_new != nullptr) {
          float extra[VEC];
          load_vec<scalar_t, VEC>(dx_new + base + col, extra);
#pragma unroll
          for (int j = 0; j < VEC; ++j) dxv[j] += extra[j];
        }
        if (residual) {
          float yv[VEC], dyv[VEC];
          load_vec<scalar_t, VEC>(y + base + col, yv);
#pragma unroll
          for (int j = 0; j < VEC; ++j) {
            acc_gate[i][j] += dxv[j] * yv[j];
            dyv[j] = g[i][j] * dxv[j];
          }
          store_vec<scalar_t, VEC>(dy + base + col, dyv);
        }
        store_vec<scalar_t, VEC>(dx + base + col, dxv);
      }
    }
  }
  const int64_t part = static_cast<int64_t>(blockIdx.x) * d;
#pragma unroll
  for (int i = 0; i < VPT; ++i) {
    const int col = (threadIdx.x + i * blockDim.x) * VEC;
    if (col < d) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        dshift_part[part + col + j] = acc_shift[i][j];
        dscale_part[part + col + j] = acc_scale[i][j];
        if (residual) dgate_part[part + col + j] = acc_gate[i][j];
      }
    }
  }
}

// Calls f(VEC, VPT) with compile-time constants: 16-byte or scalar accesses, 1 or 4 vectors
// per thread (4 only for rows too wide for 1024 threads).
template <int kVec, typename F>
void with_layout(int vec, int vpt, F&& f) {
  using one = std::integral_constant<int, 1>;
  using four = std::integral_constant<int, 4>;
  using wide = std::integral_constant<int, kVec>;
  if (vec == 1) {
    if (vpt == 1) f(one{}, one{}); else f(one{}, four{});
  } else {
    if (vpt == 1) f(wide{}, one{}); else f(wide{}, four{});
  }
}

struct RowLayout {
  int vec, vpt, threads;
};

RowLayout row_layout(int64_t d, int vec) {
  const int64_t nvec = d / vec;
  const int vpt = nvec <= kMaxThreads ? 1 : 4;
  TORCH_CHECK(nvec <= int64_t{kMaxThreads} * vpt, "flowtok: layernorm_modulate supports rows of at most ",
              int64_t{kMaxThreads} * 4 * vec, " elements here, got ", d);
  return {vec, vpt, round_up_warps((nvec + vpt - 1) / vpt)};
}

at::Tensor modulation(const at::Tensor& v, const at::Tensor& x, const char* name) {
  FLOWTOK_CHECK_CUDA(v, name);
  TORCH_CHECK(v.dim() == 2 && v.size(0) == x.size(0) && v.size(1) == x.size(2), "flowtok: ", name,
              " must be (B, D) = (", x.size(0), ", ", x.size(2), "), got ", v.sizes());
  at::Tensor out = v.scalar_type() == x.scalar_type() ? v : v.to(x.scalar_type());
  return out.stride(1) == 1 ? out : out.contiguous();
}

void check_x(const at::Tensor& x, const char* name) {
  FLOWTOK_CHECK_CUDA(x, name);
  FLOWTOK_CHECK_FLOAT(x, name);
  TORCH_CHECK(x.dim() == 3, "flowtok: ", name, " must be (B, N, D), got ", x.sizes());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fwd(
    const at::Tensor& x_in, const at::Tensor* y_in, const at::Tensor* gate_in,
    const at::Tensor& shift_in, const at::Tensor& scale_in, double eps) {
  check_x(x_in, "x");
  const bool residual = y_in != nullptr;
  const at::cuda::OptionalCUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor shift = modulation(shift_in, x, "shift");
  const at::Tensor scale = modulation(scale_in, x, "scale");
  at::Tensor y, gate;
  if (residual) {
    TORCH_CHECK(y_in->sizes() == x.sizes(), "flowtok: y must match x ", x.sizes(), ", got ",
                y_in->sizes());
    y = y_in->to(x.scalar_type()).contiguous();
    gate = modulation(*gate_in, x, "gate");
  }
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  at::Tensor out = at::empty_like(x);
  at::Tensor x_new = residual ? at::empty_like(x) : at::Tensor();
  at::Tensor mean = at::empty({B, N}, x.options().dtype(at::kFloat));
  at::Tensor rstd = at::empty({B, N}, x.options().dtype(at::kFloat));
  if (x.numel() == 0) return {x_new, out, mean, rstd};
  auto stream = c10::cuda::getCurrentCUDAStream();
  FLOWTOK_DISPATCH_FLOAT(x.scalar_type(), "ln_mod_fwd", [&] {
    constexpr int kVec = 16 / sizeof(scalar_t);
    const scalar_t* yp = residual ? y.data_ptr<scalar_t>() : nullptr;
    const scalar_t* gp = residual ? gate.data_ptr<scalar_t>() : nullptr;
    scalar_t* xn = residual ? x_new.data_ptr<scalar_t>() : nullptr;
    const int vec = vector_width<scalar_t>(
        D, {x.data_ptr(), out.data_ptr(), shift.data_ptr(), scale.data_ptr(), yp, gp, xn},
        {shift.stride(0), scale.stride(0), residual ? gate.stride(0) : 0});
    const RowLayout layout = row_layout(D, vec);
    with_layout<kVec>(layout.vec, layout.vpt, [&](auto V, auto P) {
      ln_mod_fwd_kernel<scalar_t, decltype(V)::value, decltype(P)::value>
          <<<grid_size(B * N), layout.threads, 0, stream>>>(
              x.data_ptr<scalar_t>(), yp, gp, shift.data_ptr<scalar_t>(),
              scale.data_ptr<scalar_t>(), xn, out.data_ptr<scalar_t>(), mean.data_ptr<float>(),
              rstd.data_ptr<float>(), N, static_cast<int>(D), residual ? gate.stride(0) : 0,
              shift.stride(0), scale.stride(0), static_cast<float>(eps), residual);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {x_new, out, mean, rstd};
}

// -> dx, dy (undefined without residual), [dshift, dscale(, dgate)] as separate (B, D) fp32
// tensors (an op's outputs must not alias each other).
std::tuple<at::Tensor, at::Tensor, std::vector<at::Tensor>> bwd(
    const at::Tensor& dout_in, const std::optional<at::Tensor>& dx_new_in, const at::Tensor& x_in,
    const at::Tensor* y_in, const at::Tensor* gate_in, const at::Tensor& scale_in,
    const at::Tensor& mean, const at::Tensor& rstd) {
  check_x(x_in, "x");
  const bool residual = y_in != nullptr;
  const at::cuda::OptionalCUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  TORCH_CHECK(dout_in.sizes() == x.sizes(), "flowtok: dout must match x ", x.sizes(), ", got ",
              dout_in.sizes());
  TORCH_CHECK(mean.scalar_type() == at::kFloat && rstd.scalar_type() == at::kFloat &&
                  mean.is_contiguous() && rstd.is_contiguous(),
              "flowtok: mean and rstd must be the contiguous fp32 (B, N) tensors of the forward");
  const at::Tensor dout = dout_in.to(x.scalar_type()).contiguous();
  const at::Tensor scale = modulation(scale_in, x, "scale");
  at::Tensor y, gate, dx_new;
  if (residual) {
    y = y_in->to(x.scalar_type()).contiguous();
    gate = modulation(*gate_in, x, "gate");
  }
  if (dx_new_in.has_value() && dx_new_in->defined()) dx_new = dx_new_in->to(x.scalar_type()).contiguous();
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2);
  const int rows = static_cast<int>(N < kRowsPerBlockBwd ? (N > 0 ? N : 1) : kRowsPerBlockBwd);
  const int64_t chunks = (N + rows - 1) / rows;
  at::Tensor parts = at::empty({residual ? 3 : 2, B * chunks, D}, x.options().dtype(at::kFloat));
  at::Tensor dx = at::empty_like(x);
  at::Tensor dy = residual ? at::empty_like(x) : at::Tensor();
  if (x.numel() > 0) {
    auto stream = c10::cuda::getCurrentCUDAStream();
    FLOWTOK_DISPATCH_FLOAT(x.scalar_type(), "ln_mod_bwd", [&] {
      constexpr int kVec = 16 / sizeof(scalar_t);
      const scalar_t* yp = residual ? y.data_ptr<scalar_t>() : nullptr;
      const scalar_t* gp = residual ? gate.data_ptr<scalar_t>() : nullptr;
      const scalar_t* dxn = dx_new.defined() ? dx_new.data_ptr<scalar_t>() : nullptr;
      scalar_t* dyp = residual ? dy.data_ptr<scalar_t>() : nullptr;
      const int vec = vector_width<scalar_t>(
          D, {x.data_ptr(), dout.data_ptr(), dx.data_ptr(), scale.data_ptr(), yp, gp, dxn, dyp},
          {scale.stride(0), residual ? gate.stride(0) : 0});
      const RowLayout layout = row_layout(D, vec);
      with_layout<kVec>(layout.vec, layout.vpt, [&](auto V, auto P) {
        ln_mod_bwd_kernel<scalar_t, decltype(V)::value, decltype(P)::value>
            <<<grid_size(B * chunks), layout.threads, 0, stream>>>(
                dout.data_ptr<scalar_t>(), dxn, x.data_ptr<scalar_t>(), yp, gp,
                scale.data_ptr<scalar_t>(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
                dx.data_ptr<scalar_t>(), dyp, parts[0].data_ptr<float>(),
                parts[1].data_ptr<float>(), parts[residual ? 2 : 1].data_ptr<float>(), N,
                static_cast<int>(D), residual ? gate.stride(0) : 0, scale.stride(0), rows,
                residual);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }
  std::vector<at::Tensor> sums;
  for (int64_t i = 0; i < parts.size(0); ++i) sums.push_back(parts[i].view({B, chunks, D}).sum(1));
  return {dx, dy, sums};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> layernorm_modulate_fwd(
    const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale, double eps) {
  auto [x_new, out, mean, rstd] = fwd(x, nullptr, nullptr, shift, scale, eps);
  return {out, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> layernorm_modulate_bwd(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale,
    const at::Tensor& mean, const at::Tensor& rstd) {
  auto [dx, dy, sums] = bwd(dout, std::nullopt, x, nullptr, nullptr, scale, mean, rstd);
  return {dx, sums[0].to(shift.scalar_type()), sums[1].to(scale.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> residual_layernorm_modulate_fwd(
    const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y, const at::Tensor& shift,
    const at::Tensor& scale, double eps) {
  return fwd(x, &y, &gate, shift, scale, eps);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
residual_layernorm_modulate_bwd(const at::Tensor& dout, const std::optional<at::Tensor>& dx_new,
                                const at::Tensor& x_new, const at::Tensor& gate,
                                const at::Tensor& y, const at::Tensor& scale,
                                const at::Tensor& mean, const at::Tensor& rstd) {
  auto [dx, dy, sums] = bwd(dout, dx_new, x_new, &y, &gate, scale, mean, rstd);
  return {dx, sums[2].to(gate.scalar_type()), dy.to(y.scalar_type()),
          sums[0].to(scale.scalar_type()), sums[1].to(scale.scalar_type())};
}

}  // namespace flowtok
