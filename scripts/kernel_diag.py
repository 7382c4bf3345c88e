"""Every fused op against its reference at FlowTok-XL's shapes, each case in its own process.

A CUDA error such as an illegal memory access is sticky: once one kernel makes it, every later
call in that process fails, and the bench that hit it cannot say which kernel did. This runs
each (op, backend, variant) alone under CUDA_LAUNCH_BLOCKING=1 and prints one JSON line per case
(max abs error against the fp32 reference, or the error), so one short GPU call names the kernel.

    python scripts/kernel_diag.py              # all cases, writes JSON lines to stdout
    python scripts/kernel_diag.py --case attention:triton:fwd   # one case, in this process

Inputs are bf16; DIAG_FP16=1 makes them fp16 (the Triton CPU interpreter computes bf16 dots
wrongly, so a CPU rehearsal of the Triton cases needs it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

# attention variants, joined by "+": fwd / bwd; qkv (q, k, v strided views of one qkv tensor);
# d96 (the XL text projector's 8 heads of 96, batch 256); one / loop (the one-tile kernels or the
# key loop, whatever the defaults are); align1 (no 16-byte alignment claims); b2 (batch 2)
CASES = [
    "attention:triton:fwd", "attention:triton:fwd+one", "attention:triton:fwd+loop",
    "attention:triton:fwd+one+align1", "attention:triton:fwd+qkv", "attention:triton:fwd+qkv+d96",
    "attention:triton:bwd", "attention:triton:bwd+one", "attention:triton:bwd+qkv+d96",
    "attention:cuda:fwd+qkv", "attention:cuda:bwd+qkv+d96", "attention:sdpa:bwd+qkv+d96",
    "layernorm_modulate:triton:fwd", "layernorm_modulate:cuda:fwd",
    "residual_layernorm_modulate:triton:fwd", "residual_layernorm_modulate:cuda:fwd",
    "gated_residual:triton:fwd", "gated_residual:cuda:fwd", "euler_cfg_step:triton:fwd",
    "euler_cfg_step:cuda:fwd",
]
ATTN = (128, 16, 77, 72)  # B, H, N, D at XL's sampling shape
ATTN_D96 = (256, 8, 77, 96)  # the XL text projector at bench train's batch
ROWS = (64, 77, 1152)  # B, N, width


def run_case(case: str, device: str, small: bool) -> dict:
    import torch

    import flowtok_kernels as fk
    from flowtok_kernels import reference

    op, backend, variant = case.split(":")
    g = torch.Generator(device=device).manual_seed(0)
    low = torch.float16 if os.environ.get("DIAG_FP16") else torch.bfloat16

    def rnd(*shape):
        return torch.randn(*shape, device=device, generator=g, dtype=torch.float32).to(low)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    if op == "attention":
        return attention_case(backend, variant.split("+"), small, rnd, sync)
    b, n, w = (2, 77, 128) if small else ROWS
    x, y = rnd(b, n, w), rnd(b, n, w)
    gate, shift, scale = (0.5 * rnd(b, w) for _ in range(3))
    if op == "layernorm_modulate":
        out = fk.layernorm_modulate(x, shift, scale, backend=backend)
        ref = reference.layernorm_modulate(x.float(), shift.float(), scale.float())
    elif op == "residual_layernorm_modulate":
        out = fk.residual_layernorm_modulate(x, gate, y, shift, scale, backend=backend)[1]
        ref = reference.residual_layernorm_modulate(x.float(), gate.float(), y.float(),
                                                    shift.float(), scale.float())[1]
    elif op == "gated_residual":
        out = fk.gated_residual(x, gate, y, backend=backend)
        ref = reference.gated_residual(x.float(), gate.float(), y.float())
    else:
        xf = x.float()
        dt, s = torch.tensor(0.05, device=device), torch.tensor(1.5, device=device)
        out = fk.euler_cfg_step_(xf.clone(), y.float(), x.float() * 0.3, dt, s, backend=backend)
        ref = reference.euler_cfg_step_(xf.clone(), y.float(), x.float() * 0.3, dt, s)
    sync()
    return {"err": float((out.float() - ref.float()).abs().max()),
            "ref_scale": float(ref.float().abs().max())}


def attention_case(backend: str, flags: list[str], small: bool, rnd, sync) -> dict:
    """Max abs error of attention (and its gradients for bwd) against the fp32 reference."""
    import torch

    import flowtok_kernels as fk
    from flowtok_kernels import reference
    from flowtok_kernels.triton_ops import attention as tri

    b, h, n, d = ATTN_D96 if "d96" in flags else ATTN
    if small:
        b, h = 2, 2
    if "b2" in flags:
        b = 2
    if "align1" in flags:
        tri.alignment = lambda *t: 1
    if "one" in flags or "loop" in flags:
        one = "one" in flags
        d0, d1 = tri.split_head_dim(d)
        tri.forward_blocks = lambda *a, **k: tri.AttentionBlocks(
            d0, d1, 64, 128 if one else 64, one, 4, 1)
        tri.backward_blocks = lambda *a, **k: tri.AttentionBlocks(
            d0, d1, 16 if one and d0 + d1 > 80 else 64, 128 if one else 64, one, 8, 1)
    if "qkv" in flags:
        qkv = rnd(b, n, 3, h, d)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))
    else:
        q, k, v = (rnd(b, h, n, d) for _ in range(3))
    if "bwd" not in flags:
        out = fk.attention(q, k, v, backend=backend)
        ref = reference.attention(q.float(), k.float(), v.float())
        sync()
        return {"err": float((out.float() - ref).abs().max()), "ref_scale": float(ref.abs().max())}
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    do = rnd(b, h, n, d)
    out = fk.attention(q, k, v, backend=backend)
    got = torch.autograd.grad(out, (q, k, v), do)
    q32, k32, v32 = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref_out = reference.attention(q32, k32, v32)
    ref = torch.autograd.grad(ref_out, (q32, k32, v32), do.float())
    sync()
    return {"err": float((out.float() - ref_out).abs().max()),
            "grad_err": [float((a.float() - r).abs().max()) for a, r in zip(got, ref)],
            "grad_scale": [float(r.abs().max()) for r in ref]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=None)
    ap.add_argument("--device", default="cuda", help="cpu: a rehearsal (TRITON_INTERPRET=1, --small)")
    ap.add_argument("--small", action="store_true", help="small shapes instead of XL's")
    ap.add_argument("--timeout", type=float, default=90)
    ap.add_argument("--backend", default=None, help="only the cases of this backend")
    ap.add_argument("--jobs", type=int, default=6, help="cases run side by side")
    a = ap.parse_args()
    if a.case:
        print(json.dumps({"case": a.case, **run_case(a.case, a.device, a.small)}))
        return
    env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1")
    cases = [c for c in CASES if a.backend is None or c.split(":")[1] == a.backend]
    with ThreadPoolExecutor(a.jobs) as pool:
        extra = ["--device", a.device] + (["--small"] if a.small else [])
        for row in pool.map(lambda c: one(c, extra, env, a.timeout), cases):
            print(json.dumps(row), flush=True)


def one(case: str, extra: list[str], env: dict, timeout: float) -> dict:
    """Run one case in a fresh process; its JSON line, or its exit code and last error lines."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run([sys.executable, __file__, "--case", case, *extra], env=env,
                           capture_output=True, text=True, timeout=timeout, check=False)
        ok = p.returncode == 0 and p.stdout.strip()
        row = json.loads(p.stdout.strip().splitlines()[-1]) if ok else \
            {"case": case, "rc": p.returncode, "error": p.stderr.strip().splitlines()[-3:]}
    except subprocess.TimeoutExpired:
        row = {"case": case, "error": "timeout"}
    row["s"] = round(time.perf_counter() - t0, 1)
    return row


if __name__ == "__main__":
    main()
