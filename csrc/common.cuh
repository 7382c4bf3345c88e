// Small device helpers shared by the kernels: 16-byte vector access, warp / block sums,
// and argument checks that name the expected shape and dtype.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

#define FLOWTOK_CHECK_CUDA(t, name) \
  TORCH_CHECK((t).is_cuda(), "flowtok: ", name, " must be a CUDA tensor, got ", (t).device())

#define FLOWTOK_CHECK_FLOAT(t, name)                                                     \
  TORCH_CHECK((t).scalar_type() == at::kFloat || (t).scalar_type() == at::kHalf ||       \
                  (t).scalar_type() == at::kBFloat16,                                    \
              "flowtok: ", name, " must be fp32, fp16 or bf16, got ", (t).scalar_type())

// The three dtypes the ops take (fp64 is rejected up front, so it is not compiled).
#define FLOWTOK_DISPATCH_FLOAT(TYPE, NAME, ...)                \
  AT_DISPATCH_SWITCH(TYPE, NAME,                               \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

namespace flowtok {

// N elements of T loaded / stored as one aligned access (16 bytes for the vectorized paths).
template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[N]) {
  const Vec<T, N> data = *reinterpret_cast<const Vec<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = static_cast<float>(data.v[i]);
}

template <typename T, int N>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[N]) {
  Vec<T, N> data;
#pragma unroll
  for (int i = 0; i < N; ++i) data.v[i] = static_cast<T>(in[i]);
  *reinterpret_cast<Vec<T, N>*>(p) = data;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum of a and of b over the block (blockDim.x a multiple of 32, <= 1024); every thread gets
// both results. `smem` holds 64 floats.
__device__ __forceinline__ float2 block_sum2(float a, float b, float* smem) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int warps = blockDim.x >> 5;
  a = warp_sum(a);
  b = warp_sum(b);
  __syncthreads();  // the previous call's readers are done with smem
  if (lane == 0) {
    smem[warp] = a;
    smem[32 + warp] = b;
  }
  __syncthreads();
  a = lane < warps ? smem[lane] : 0.f;
  b = lane < warps ? smem[32 + lane] : 0.f;
  return make_float2(warp_sum(a), warp_sum(b));
}

__device__ __forceinline__ float block_sum(float a, float* smem) {
  return block_sum2(a, 0.f, smem).x;
}

// Elements per 16-byte access for T, or 1 when a row of `d` elements, a row stride or a base
// pointer would break the alignment.
template <typename T>
inline int vector_width(int64_t d, std::initializer_list<const void*> ptrs,
                        std::initializer_list<int64_t> strides = {}) {
  constexpr int kVec = 16 / sizeof(T);
  if (d % kVec != 0) return 1;
  for (const void* p : ptrs)
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return 1;
  for (int64_t s : strides)
    if (s % kVec != 0) return 1;
  return kVec;
}

// A 1D grid of `blocks` blocks, checked against CUDA's limit.
inline unsigned int grid_size(int64_t blocks) {
  TORCH_CHECK(blocks > 0 && blocks < (int64_t{1} << 31), "flowtok: launch of ", blocks,
              " blocks is out of range");
  return static_cast<unsigned int>(blocks);
}

inline int round_up_warps(int64_t threads) {
  const int64_t t = ((threads + 31) / 32) * 32;
  return static_cast<int>(t < 32 ? 32 : t);
}

}  // namespace flowtok
