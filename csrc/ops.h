// Host entry points of flowtok's CUDA ops; schemas and registration in flowtok_ops.cpp.
// Shapes: B batch, H heads, N tokens, D head dim or width. Every op computes in fp32 and
// rounds each output once; modulation vectors (gate, shift, scale) are (B, D) rows.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <tuple>

namespace flowtok {

// q (B, H, Nq, D), k, v (B, H, Nk, D), any strides -> out (B, H, Nq, D) stored as (B, Nq, H, D),
// lse (B, H, Nq) fp32 (natural log). CUDA cores, one warp per query row: any length, D <= 256.
std::tuple<at::Tensor, at::Tensor> attention_fwd(const at::Tensor& q, const at::Tensor& k,
                                                 const at::Tensor& v, double scale);
// -> dq, dk, dv shaped like q, k, v.
std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_bwd(
    const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& out, const at::Tensor& lse, double scale);

// x (B, N, D), shift, scale (B, D) -> LN(x) * (1 + scale) + shift, mean, rstd (B, N) fp32.
std::tuple<at::Tensor, at::Tensor, at::Tensor> layernorm_modulate_fwd(
    const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale, double eps);
// -> dx, dshift, dscale.
std::tuple<at::Tensor, at::Tensor, at::Tensor> layernorm_modulate_bwd(
    const at::Tensor& dout, const at::Tensor& x, const at::Tensor& shift, const at::Tensor& scale,
    const at::Tensor& mean, const at::Tensor& rstd);

// x_new = x + gate * y; out = LN(x_new) * (1 + scale) + shift -> x_new, out, mean, rstd.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> residual_layernorm_modulate_fwd(
    const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y, const at::Tensor& shift,
    const at::Tensor& scale, double eps);
// dout = dL/dout, dx_new = dL/dx_new from later uses (or none) -> dx, dgate, dy, dshift, dscale.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
residual_layernorm_modulate_bwd(const at::Tensor& dout, const std::optional<at::Tensor>& dx_new,
                                const at::Tensor& x_new, const at::Tensor& gate,
                                const at::Tensor& y, const at::Tensor& scale,
                                const at::Tensor& mean, const at::Tensor& rstd);

// x, y (B, N, D), gate (B, D) -> x + gate * y.
at::Tensor gated_residual_fwd(const at::Tensor& x, const at::Tensor& gate, const at::Tensor& y);
// -> dgate, dy (dx is dout).
std::tuple<at::Tensor, at::Tensor> gated_residual_bwd(const at::Tensor& dout,
                                                      const at::Tensor& gate,
                                                      const at::Tensor& y);

// In place: x <- x + dt * (v_u + s * (v_c - v_u)); dt, s read on the device (one value, or
// one per sample), so a captured CUDA graph replays with new values.
void euler_cfg_step_(at::Tensor& x, const at::Tensor& v_u, const at::Tensor& v_c,
                     const at::Tensor& dt, const at::Tensor& s);

}  // namespace flowtok
