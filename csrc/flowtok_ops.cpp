// Declares flowtok's ops with schema strings (`Tensor!` marks in-place) and binds the CUDA
// implementations: they appear as torch.ops.flowtok.* and compose with torch.compile (fake
// implementations are registered from Python, flowtok_kernels/cuda.py) and CUDA graphs.
#include <torch/library.h>

#include "ops.h"

TORCH_LIBRARY(flowtok, m) {
  m.def("attention_fwd(Tensor q, Tensor k, Tensor v, float scale) -> (Tensor, Tensor)");
  m.def(
      "attention_bwd(Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "float scale) -> (Tensor, Tensor, Tensor)");
  m.def(
      "layernorm_modulate_fwd(Tensor x, Tensor shift, Tensor scale, float eps) "
      "-> (Tensor, Tensor, Tensor)");
  m.def(
      "layernorm_modulate_bwd(Tensor dout, Tensor x, Tensor shift, Tensor scale, Tensor mean, "
      "Tensor rstd) -> (Tensor, Tensor, Tensor)");
  m.def(
      "residual_layernorm_modulate_fwd(Tensor x, Tensor gate, Tensor y, Tensor shift, "
      "Tensor scale, float eps) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "residual_layernorm_modulate_bwd(Tensor dout, Tensor? dx_new, Tensor x_new, Tensor gate, "
      "Tensor y, Tensor scale, Tensor mean, Tensor rstd) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("gated_residual_fwd(Tensor x, Tensor gate, Tensor y) -> Tensor");
  m.def("gated_residual_bwd(Tensor dout, Tensor gate, Tensor y) -> (Tensor, Tensor)");
  m.def("euler_cfg_step_(Tensor(a!) x, Tensor v_u, Tensor v_c, Tensor dt, Tensor s) -> ()");
}

TORCH_LIBRARY_IMPL(flowtok, CUDA, m) {
  m.impl("attention_fwd", &flowtok::attention_fwd);
  m.impl("attention_bwd", &flowtok::attention_bwd);
  m.impl("layernorm_modulate_fwd", &flowtok::layernorm_modulate_fwd);
  m.impl("layernorm_modulate_bwd", &flowtok::layernorm_modulate_bwd);
  m.impl("residual_layernorm_modulate_fwd", &flowtok::residual_layernorm_modulate_fwd);
  m.impl("residual_layernorm_modulate_bwd", &flowtok::residual_layernorm_modulate_bwd);
  m.impl("gated_residual_fwd", &flowtok::gated_residual_fwd);
  m.impl("gated_residual_bwd", &flowtok::gated_residual_bwd);
  m.impl("euler_cfg_step_", &flowtok::euler_cfg_step_);
}
