// One Euler step with classifier-free guidance, in place: x <- x + dt * (v_u + s * (v_c - v_u)).
// dt and s are read from device memory inside the kernel, so a captured CUDA graph replays
// with whatever values were last written into those two tensors.
#include "common.cuh"
#include "ops.h"

namespace flowtok {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t, int VEC>
__global__ void euler_cfg_kernel(scalar_t* __restrict__ x, const scalar_t* __restrict__ v_u,
                                 const scalar_t* __restrict__ v_c, const float* __restrict__ dt,
                                 const float* __restrict__ s, int64_t n_vec, int64_t per_sample,
                                 bool dt_per_sample, bool s_per_sample) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n_vec;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t e = i * VEC;
    float xv[VEC], uv[VEC], cv[VEC];
    load_vec<scalar_t, VEC>(x + e, xv);
    load_vec<scalar_t, VEC>(v_u + e, uv);
    load_vec<scalar_t, VEC>(v_c + e, cv);
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      const int64_t sample = (e + j) / per_sample;
      const float step = dt[dt_per_sample ? sample : 0];
      const float guide = s[s_per_sample ? sample : 0];
      xv[j] += step * (uv[j] + guide * (cv[j] - uv[j]));
    }
    store_vec<scalar_t, VEC>(x + e, xv);
  }
}

// True for one value per sample ((B, 1, ..., 1)), false for one value; anything else throws.
bool per_sample(const at::Tensor& t, const at::Tensor& x, const char* name) {
  FLOWTOK_CHECK_CUDA(t, name);
  if (t.numel() == 1) return false;
  TORCH_CHECK(t.dim() == x.dim() && t.size(0) == x.size(0) && t.numel() == x.size(0),
              "flowtok: ", name, " must hold one value or one per sample (shape (", x.size(0),
              ", 1, ...)), got ", t.sizes());
  return true;
}

}  // namespace

void euler_cfg_step_(at::Tensor& x, const at::Tensor& v_u_in, const at::Tensor& v_c_in,
                     const at::Tensor& dt_in, const at::Tensor& s_in) {
  FLOWTOK_CHECK_CUDA(x, "x");
  FLOWTOK_CHECK_FLOAT(x, "x");
  TORCH_CHECK(x.is_contiguous(), "flowtok: euler_cfg_step_ updates x in place and needs it "
              "contiguous; pass x.contiguous() and keep that tensor");
  TORCH_CHECK(v_u_in.sizes() == x.sizes() && v_c_in.sizes() == x.sizes(),
              "flowtok: v_u and v_c must match x ", x.sizes(), ", got ", v_u_in.sizes(), " and ",
              v_c_in.sizes());
  if (x.numel() == 0) return;
  const bool dt_ps = per_sample(dt_in, x, "dt");
  const bool s_ps = per_sample(s_in, x, "s");
  const at::cuda::OptionalCUDAGuard guard(x.device());
  // Conversions (when needed) are device kernels reading dt / s, so graph replay still sees
  // new values; fp32 tensors pass through untouched.
  const at::Tensor dt = dt_in.to(at::kFloat).contiguous();
  const at::Tensor s = s_in.to(at::kFloat).contiguous();
  const at::Tensor v_u = v_u_in.to(x.scalar_type()).contiguous();
  const at::Tensor v_c = v_c_in.to(x.scalar_type()).contiguous();
  const int64_t per = x.dim() > 0 ? x.numel() / x.size(0) : x.numel();
  auto stream = c10::cuda::getCurrentCUDAStream();
  FLOWTOK_DISPATCH_FLOAT(x.scalar_type(), "euler_cfg", [&] {
    constexpr int kVec = 16 / sizeof(scalar_t);
    const int vec = vector_width<scalar_t>(x.numel(),
                                           {x.data_ptr(), v_u.data_ptr(), v_c.data_ptr()});
    const int64_t n_vec = x.numel() / vec;
    const int blocks = static_cast<int>(std::min<int64_t>((n_vec + kThreads - 1) / kThreads, 65535));
    if (vec == kVec) {
      euler_cfg_kernel<scalar_t, kVec><<<blocks, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), v_u.data_ptr<scalar_t>(), v_c.data_ptr<scalar_t>(),
          dt.data_ptr<float>(), s.data_ptr<float>(), n_vec, per, dt_ps, s_ps);
    } else {
      euler_cfg_kernel<scalar_t, 1><<<blocks, kThreads, 0, stream>>>(
          x.data_ptr<scalar_t>(), v_u.data_ptr<scalar_t>(), v_c.data_ptr<scalar_t>(),
          dt.data_ptr<float>(), s.data_ptr<float>(), n_vec, per, dt_ps, s_ps);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace flowtok
