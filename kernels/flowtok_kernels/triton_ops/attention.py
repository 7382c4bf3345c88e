"""Non-causal softmax attention in Triton, forward and backward, tuned for short sequences.

FlowTok's flow transformer attends over 77 tokens with head dim 72. The kernels also hold a
one-tile variant for up to 128 keys (ONE_KV_BLOCK: no online-softmax rescaling; on Hopper a
one-launch backward), but its forward measured wrong on an H200 (``forward_blocks``), so every
length takes the usual FlashAttention-2 key loop and three backward launches (delta, dK dV,
dQ) until it is fixed.

Head dims that are not a power of two are split into a power-of-two main part and a small
tail (72 = 64 + 16 masked to 8) instead of padding to 128: 80 columns of tensor-core work
instead of 128. Inputs may be strided views (e.g. q, k, v sliced out of one qkv tensor).

16-byte vector loads and stores: Triton proves alignment only for integer arguments divisible
by 16, and the model's head stride is 72 elements (q, k, v and o are views of (B, N, H, 72)
rows), so without help every access would be a 2-byte one. The launcher checks that every
stride but the unit column stride is a multiple of ``ALIGN`` elements (16 bytes' worth; 144 B
per bf16 head) and the kernels state it with ``tl.multiple_of`` on their offsets; any other
layout gets ``ALIGN`` = 1 and the same results through narrower accesses.
Shapes: B batch, H heads, N_Q / N_K query / key length, D head dim.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch.library import wrap_triton

from flowtok_kernels import shapes
from flowtok_kernels.triton_ops import _op

MAX_HEAD_DIM = 256
LOG2E = 1.4426950408889634


# ----------------------------------------------------------------------------- kernels


@triton.jit
def _head(base, b, h, stride_b, stride_h, ALIGN: tl.constexpr):
    """Pointer to the (N, D) matrix of batch b, head h; ALIGN divides its offset (elements)."""
    return base + tl.multiple_of(b * stride_b + h * stride_h, ALIGN)


@triton.jit
def _tile_ptrs(base, rows, stride_row, stride_col, cols, ALIGN: tl.constexpr):
    row_offs = tl.multiple_of(rows[:, None] * stride_row, [ALIGN, ALIGN])
    return base + row_offs + cols[None, :] * stride_col


@triton.jit
def _load_tile(base, rows, row_ok, stride_row, stride_col, cols, D: tl.constexpr,
               ALIGN: tl.constexpr):
    """(len(rows), len(cols)) tile; rows past the end and columns >= D read as zero."""
    ptrs = _tile_ptrs(base, rows, stride_row, stride_col, cols, ALIGN)
    return tl.load(ptrs, mask=row_ok[:, None] & (cols[None, :] < D), other=0.0)


@triton.jit
def _load_split(base, rows, row_ok, stride_row, stride_col,
                D: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr, ALIGN: tl.constexpr):
    """(rows, D) as a (rows, D0) main part and a (rows, D1) tail; the tail is the main part
    again when D1 == 0 (never used then)."""
    t0 = _load_tile(base, rows, row_ok, stride_row, stride_col, tl.arange(0, D0), D, ALIGN)
    t1 = t0
    if D1 > 0:
        t1 = _load_tile(base, rows, row_ok, stride_row, stride_col, D0 + tl.arange(0, D1), D,
                        ALIGN)
    return t0, t1


@triton.jit
def _store_split(base, rows, row_ok, stride_row, stride_col, t0, t1,
                 D: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr, ALIGN: tl.constexpr):
    cols0 = tl.arange(0, D0)
    ptrs = _tile_ptrs(base, rows, stride_row, stride_col, cols0, ALIGN)
    tl.store(ptrs, t0.to(base.dtype.element_ty), mask=row_ok[:, None] & (cols0[None, :] < D))
    if D1 > 0:
        cols1 = D0 + tl.arange(0, D1)
        ptrs = _tile_ptrs(base, rows, stride_row, stride_col, cols1, ALIGN)
        tl.store(ptrs, t1.to(base.dtype.element_ty), mask=row_ok[:, None] & (cols1[None, :] < D))


@triton.jit
def _dot_head(a0, a1, b0, b1, D1: tl.constexpr, PRECISION: tl.constexpr):
    """a @ b^T contracted over the (split) head dim: (M, D) x (N, D) -> (M, N) fp32."""
    out = tl.dot(a0, tl.trans(b0), input_precision=PRECISION)
    if D1 > 0:
        out += tl.dot(a1, tl.trans(b1), input_precision=PRECISION)
    return out


@triton.jit
def _attn_fwd_kernel(
    Q, K, V, O, LSE,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    H, N_Q, N_K, qk_scale_log2,
    D: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_KV_BLOCK: tl.constexpr,
    PRECISION: tl.constexpr, ALIGN: tl.constexpr,
):
    """One program: BLOCK_M queries of one (batch, head). Writes O and the log2-domain LSE."""
    num_m = tl.cdiv(N_Q, BLOCK_M)
    pid = tl.program_id(0)
    bh = pid // num_m
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = (pid % num_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N_Q
    q_base = _head(Q, b, h, stride_qb, stride_qh, ALIGN)
    k_base = _head(K, b, h, stride_kb, stride_kh, ALIGN)
    v_base = _head(V, b, h, stride_vb, stride_vh, ALIGN)

    q0, q1 = _load_split(q_base, rows, row_ok, stride_qn, stride_qd, D, D0, D1, ALIGN)
    if ONE_KV_BLOCK:
        keys = tl.arange(0, BLOCK_N)
        key_ok = keys < N_K
        k0, k1 = _load_split(k_base, keys, key_ok, stride_kn, stride_kd, D, D0, D1, ALIGN)
        s = _dot_head(q0, q1, k0, k1, D1, PRECISION) * qk_scale_log2  # (BLOCK_M, BLOCK_N)
        s = tl.where(key_ok[None, :], s, float("-inf"))
        m_i = tl.max(s, 1)
        p = tl.math.exp2(s - m_i[:, None])
        l_i = tl.sum(p, 1)
        v0, v1 = _load_split(v_base, keys, key_ok, stride_vn, stride_vd, D, D0, D1, ALIGN)
        acc0 = tl.dot(p.to(v0.dtype), v0, input_precision=PRECISION)
        acc1 = acc0
        if D1 > 0:
            acc1 = tl.dot(p.to(v1.dtype), v1, input_precision=PRECISION)
    else:
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc0 = tl.zeros([BLOCK_M, D0], tl.float32)
        acc1 = acc0
        if D1 > 0:
            acc1 = tl.zeros([BLOCK_M, D1], tl.float32)
        for start_n in range(0, N_K, BLOCK_N):
            keys = start_n + tl.arange(0, BLOCK_N)
            key_ok = keys < N_K
            k0, k1 = _load_split(k_base, keys, key_ok, stride_kn, stride_kd, D, D0, D1, ALIGN)
            s = _dot_head(q0, q1, k0, k1, D1, PRECISION) * qk_scale_log2
            s = tl.where(key_ok[None, :], s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            v0, v1 = _load_split(v_base, keys, key_ok, stride_vn, stride_vd, D, D0, D1, ALIGN)
            acc0 = tl.dot(p.to(v0.dtype), v0, acc0 * alpha[:, None], input_precision=PRECISION)
            if D1 > 0:
                acc1 = tl.dot(p.to(v1.dtype), v1, acc1 * alpha[:, None], input_precision=PRECISION)
            m_i = m_new

    inv_l = 1.0 / l_i
    _store_split(_head(O, b, h, stride_ob, stride_oh, ALIGN), rows, row_ok, stride_on, stride_od,
                 acc0 * inv_l[:, None], acc1 * inv_l[:, None], D, D0, D1, ALIGN)
    tl.store(LSE + bh.to(tl.int64) * N_Q + rows, m_i + tl.math.log2(l_i), mask=row_ok)


@triton.jit
def _attn_bwd_delta_kernel(
    O, DO, DELTA,
    stride_ob, stride_oh, stride_on, stride_od,
    stride_dob, stride_doh, stride_don, stride_dod,
    H, N_Q,
    D: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr, BLOCK_M: tl.constexpr,
    ALIGN: tl.constexpr,
):
    """delta = rowsum(dO * O), the softmax-backward correction, for BLOCK_M rows."""
    num_m = tl.cdiv(N_Q, BLOCK_M)
    pid = tl.program_id(0)
    bh = pid // num_m
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = (pid % num_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N_Q
    o0, o1 = _load_split(_head(O, b, h, stride_ob, stride_oh, ALIGN), rows, row_ok,
                         stride_on, stride_od, D, D0, D1, ALIGN)
    do0, do1 = _load_split(_head(DO, b, h, stride_dob, stride_doh, ALIGN), rows, row_ok,
                           stride_don, stride_dod, D, D0, D1, ALIGN)
    delta = tl.sum(o0.to(tl.float32) * do0.to(tl.float32), 1)
    if D1 > 0:
        delta += tl.sum(o1.to(tl.float32) * do1.to(tl.float32), 1)
    tl.store(DELTA + bh.to(tl.int64) * N_Q + rows, delta, mask=row_ok)


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q, K, V, O, DO, LSE, DELTA, DQ, DK, DV,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_ob, stride_oh, stride_on, stride_od,
    stride_dob, stride_doh, stride_don, stride_dod,
    stride_dqb, stride_dqh, stride_dqn, stride_dqd,
    stride_dkb, stride_dkh, stride_dkn, stride_dkd,
    stride_dvb, stride_dvh, stride_dvn, stride_dvd,
    H, N_Q, N_K, sm_scale, qk_scale_log2,
    D: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, ONE_KV_BLOCK: tl.constexpr,
    PRECISION: tl.constexpr, ALIGN: tl.constexpr,
):
    """One program: dK, dV for BLOCK_N keys of one (batch, head), looping over all queries.

    Computed transposed (keys as rows: s^T = k q^T, dp^T = v dO^T), so the dK and dV products
    and both score products have BLOCK_N rows, the shape Hopper's wgmma needs (64 rows per
    warpgroup), while a query step stays BLOCK_M rows. With ONE_KV_BLOCK (all keys in this
    program) it also writes dQ and computes delta itself, so the whole backward is this one
    launch.
    """
    num_n = tl.cdiv(N_K, BLOCK_N)
    pid = tl.program_id(0)
    bh = pid // num_n
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    keys = (pid % num_n) * BLOCK_N + tl.arange(0, BLOCK_N)
    key_ok = keys < N_K
    q_base = _head(Q, b, h, stride_qb, stride_qh, ALIGN)
    o_base = _head(O, b, h, stride_ob, stride_oh, ALIGN)
    do_base = _head(DO, b, h, stride_dob, stride_doh, ALIGN)
    dq_base = _head(DQ, b, h, stride_dqb, stride_dqh, ALIGN)
    row_stats = bh.to(tl.int64) * N_Q

    k0, k1 = _load_split(_head(K, b, h, stride_kb, stride_kh, ALIGN), keys, key_ok,
                         stride_kn, stride_kd, D, D0, D1, ALIGN)
    v0, v1 = _load_split(_head(V, b, h, stride_vb, stride_vh, ALIGN), keys, key_ok,
                         stride_vn, stride_vd, D, D0, D1, ALIGN)
    dk0 = tl.zeros([BLOCK_N, D0], tl.float32)
    dv0 = tl.zeros([BLOCK_N, D0], tl.float32)
    dk1 = dk0
    dv1 = dv0
    if D1 > 0:
        dk1 = tl.zeros([BLOCK_N, D1], tl.float32)
        dv1 = tl.zeros([BLOCK_N, D1], tl.float32)

    for start_m in range(0, N_Q, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        row_ok = rows < N_Q
        q0, q1 = _load_split(q_base, rows, row_ok, stride_qn, stride_qd, D, D0, D1, ALIGN)
        do0, do1 = _load_split(do_base, rows, row_ok, stride_don, stride_dod, D, D0, D1, ALIGN)
        lse = tl.load(LSE + row_stats + rows, mask=row_ok, other=0.0)
        if ONE_KV_BLOCK:
            o0, o1 = _load_split(o_base, rows, row_ok, stride_on, stride_od, D, D0, D1, ALIGN)
            delta = tl.sum(o0.to(tl.float32) * do0.to(tl.float32), 1)
            if D1 > 0:
                delta += tl.sum(o1.to(tl.float32) * do1.to(tl.float32), 1)
        else:
            delta = tl.load(DELTA + row_stats + rows, mask=row_ok, other=0.0)

        st = _dot_head(k0, k1, q0, q1, D1, PRECISION) * qk_scale_log2  # (BLOCK_N, BLOCK_M)
        pt = tl.math.exp2(st - lse[None, :])
        pt = tl.where(key_ok[:, None] & row_ok[None, :], pt, 0.0)
        dpt = _dot_head(v0, v1, do0, do1, D1, PRECISION)
        dst = pt * (dpt - delta[None, :])  # gradient of the unscaled logits k.q, transposed
        pt = pt.to(do0.dtype)
        dst = dst.to(q0.dtype)
        dv0 = tl.dot(pt, do0, dv0, input_precision=PRECISION)
        dk0 = tl.dot(dst, q0, dk0, input_precision=PRECISION)
        if D1 > 0:
            dv1 = tl.dot(pt, do1, dv1, input_precision=PRECISION)
            dk1 = tl.dot(dst, q1, dk1, input_precision=PRECISION)
        if ONE_KV_BLOCK:
            ds = tl.trans(dst)
            dq0 = tl.dot(ds, k0, input_precision=PRECISION) * sm_scale
            dq1 = dq0
            if D1 > 0:
                dq1 = tl.dot(ds, k1, input_precision=PRECISION) * sm_scale
            _store_split(dq_base, rows, row_ok, stride_dqn, stride_dqd, dq0, dq1, D, D0, D1,
                         ALIGN)

    _store_split(_head(DK, b, h, stride_dkb, stride_dkh, ALIGN), keys, key_ok,
                 stride_dkn, stride_dkd, dk0 * sm_scale, dk1 * sm_scale, D, D0, D1, ALIGN)
    _store_split(_head(DV, b, h, stride_dvb, stride_dvh, ALIGN), keys, key_ok,
                 stride_dvn, stride_dvd, dv0, dv1, D, D0, D1, ALIGN)


@triton.jit
def _attn_bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ,
    stride_qb, stride_qh, stride_qn, stride_qd,
    stride_kb, stride_kh, stride_kn, stride_kd,
    stride_vb, stride_vh, stride_vn, stride_vd,
    stride_dob, stride_doh, stride_don, stride_dod,
    stride_dqb, stride_dqh, stride_dqn, stride_dqd,
    H, N_Q, N_K, sm_scale, qk_scale_log2,
    D: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
    ALIGN: tl.constexpr,
):
    """One program: dQ for BLOCK_M queries, looping over all keys (long sequences only)."""
    num_m = tl.cdiv(N_Q, BLOCK_M)
    pid = tl.program_id(0)
    bh = pid // num_m
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    rows = (pid % num_m) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < N_Q
    k_base = _head(K, b, h, stride_kb, stride_kh, ALIGN)
    v_base = _head(V, b, h, stride_vb, stride_vh, ALIGN)
    row_stats = bh.to(tl.int64) * N_Q
    q0, q1 = _load_split(_head(Q, b, h, stride_qb, stride_qh, ALIGN), rows, row_ok,
                         stride_qn, stride_qd, D, D0, D1, ALIGN)
    do0, do1 = _load_split(_head(DO, b, h, stride_dob, stride_doh, ALIGN), rows, row_ok,
                           stride_don, stride_dod, D, D0, D1, ALIGN)
    lse = tl.load(LSE + row_stats + rows, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + row_stats + rows, mask=row_ok, other=0.0)
    dq0 = tl.zeros([BLOCK_M, D0], tl.float32)
    dq1 = dq0
    if D1 > 0:
        dq1 = tl.zeros([BLOCK_M, D1], tl.float32)
    for start_n in range(0, N_K, BLOCK_N):
        keys = start_n + tl.arange(0, BLOCK_N)
        key_ok = keys < N_K
        k0, k1 = _load_split(k_base, keys, key_ok, stride_kn, stride_kd, D, D0, D1, ALIGN)
        v0, v1 = _load_split(v_base, keys, key_ok, stride_vn, stride_vd, D, D0, D1, ALIGN)
        s = _dot_head(q0, q1, k0, k1, D1, PRECISION) * qk_scale_log2
        p = tl.math.exp2(s - lse[:, None])
        p = tl.where(row_ok[:, None] & key_ok[None, :], p, 0.0)
        dp = _dot_head(do0, do1, v0, v1, D1, PRECISION)
        ds = (p * (dp - delta[:, None])).to(k0.dtype)
        dq0 = tl.dot(ds, k0, dq0, input_precision=PRECISION)
        if D1 > 0:
            dq1 = tl.dot(ds, k1, dq1, input_precision=PRECISION)
    _store_split(_head(DQ, b, h, stride_dqb, stride_dqh, ALIGN), rows, row_ok,
                 stride_dqn, stride_dqd, dq0 * sm_scale, dq1 * sm_scale, D, D0, D1, ALIGN)


# ----------------------------------------------------------------------------- launchers


@dataclass(frozen=True)
class AttentionBlocks:
    """Tile sizes for one launch. d0 + d1 >= head dim; d1 == 0 means no tail."""

    d0: int
    d1: int
    block_m: int
    block_n: int
    one_kv_block: bool
    num_warps: int
    num_stages: int


def split_head_dim(d: int) -> tuple[int, int]:
    """Head dim -> (main, tail) powers of two, each >= 16 (the smallest tensor-core K)."""
    full = max(16, triton.next_power_of_2(d))
    main = max(16, 1 << (d.bit_length() - 1))
    rest = d - main
    if rest <= 0:
        return main, 0
    tail = max(16, triton.next_power_of_2(rest))
    return (full, 0) if main + tail >= full else (main, tail)


@functools.cache
def _cuda_arch(index: int) -> int:
    major, minor = torch.cuda.get_device_capability(index)
    return 10 * major + minor


def device_arch(device: torch.device | None = None) -> int:
    """Compute capability of ``device`` (default: the current CUDA device) as 10 * major + minor
    (90: H100); without a CUDA device (the interpreter, meta tensors) Hopper's 90.
    tests/kernels/triton_aot_check.py replaces it to record each target's launches."""
    if device is None or device.type == "cuda":
        if not torch.cuda.is_available():
            return 90
        index = device.index if device is not None else None
        return _cuda_arch(torch.cuda.current_device() if index is None else index)
    return 90


def forward_blocks(n_q: int, n_k: int, d: int, dtype: torch.dtype,
                   arch: int = 90) -> AttentionBlocks:
    """Tiles for the forward. fp32 takes small tiles (exact fp32 dots stay out of local memory);
    fp16 / bf16 take 64 queries x 64-key steps with 4 warps, one warpgroup (wgmma's 64 rows on
    Hopper), at any length.

    The one-tile forward (all of up to 128 keys in one step, no rescaling) is not chosen: on an
    H200 (torch 2.11, Triton 3.6; scripts/kernel_diag.py, benchmarks/RESULTS.md) its output at
    FlowTok's 77 x 72 was wrong by ~2 (max abs, against values of ~2) while the same shape
    through the key loop matched the reference (6e-3, as the csrc kernel), so the key loop is
    the default until the one-tile kernel is found and fixed; only an explicit
    ``launch_forward(..., cfg)`` reaches it (scripts/kernel_diag.py's ``+one`` cases)."""
    d0, d1 = split_head_dim(d)
    if dtype == torch.float32:  # fp32 FMA dots need small tiles to stay out of local memory
        return AttentionBlocks(d0, d1, 16, 32, False, num_warps=4, num_stages=1)
    block_m = min(64, max(16, triton.next_power_of_2(n_q)))
    return AttentionBlocks(d0, d1, block_m, 64, False, num_warps=4, num_stages=1)


def backward_blocks(n_q: int, n_k: int, d: int, dtype: torch.dtype,
                    arch: int = 90) -> AttentionBlocks:
    """Three launches (delta, dK dV looping over queries, dQ looping over keys) at every length:
    on Hopper 64 x 64 tiles with 8 warps, so every product has 64 rows per warpgroup (wgmma);
    before Hopper 32 (wide heads: 16) queries x 64 keys with 4 warps, where mma.sync's 128-key
    dK, dV accumulators would spill. The one-launch backward (all of up to 128 keys in one
    program, which also writes dQ) shares the one-tile layout whose forward measured wrong on
    an H200 (see ``forward_blocks``), so only an explicit ``launch_backward(..., cfg)`` reaches
    it until it is checked there."""
    d0, d1 = split_head_dim(d)
    wide = d0 + d1 > 80
    if dtype == torch.float32:
        return AttentionBlocks(d0, d1, 16, 32, False, num_warps=4, num_stages=1)
    if arch < 90:
        return AttentionBlocks(d0, d1, 16 if wide else 32, 64, False, num_warps=4, num_stages=1)
    return AttentionBlocks(d0, d1, 64, 64, False, num_warps=8, num_stages=1)


def alignment(*tensors: torch.Tensor) -> int:
    """``ALIGN`` for a launch: the largest power of two, up to 16 bytes' worth of elements, that
    divides every stride of a dim longer than one except the unit column stride (1 when a column
    stride is not 1: vector accesses need contiguous columns). Data pointers need no check:
    Triton specialises them on 16-byte alignment itself."""
    align = 16 // tensors[0].element_size()
    for t in tensors:
        if t.shape[-1] > 1 and t.stride(-1) != 1:
            return 1
        for size, stride in zip(t.shape[:-1], t.stride()[:-1]):
            while size > 1 and stride % align:
                align //= 2
    return align


def _precision(dtype: torch.dtype) -> str:
    """fp32 inputs get exact fp32 dots (not TF32), matching the reference within 1e-5."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"attention expects (B, H, N, D) tensors, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention shapes do not match: q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)} (same B, H, D; k and v the same N)")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float32, torch.float16,
                                                              torch.bfloat16):
        raise ValueError(f"attention expects q, k, v all fp32, fp16 or bf16, got {q.dtype}, "
                         f"{k.dtype}, {v.dtype}")
    if q.shape[3] > MAX_HEAD_DIM:
        raise ValueError(f"triton attention supports head dim <= {MAX_HEAD_DIM}, got {q.shape[3]}")


def tuning_candidates(n_q: int, n_k: int, d: int, dtype: torch.dtype,
                      backward: bool) -> list[AttentionBlocks]:
    """The default tiles and a few neighbours, for ``flowtok bench kernels --tune`` on a GPU."""
    base = (backward_blocks if backward else forward_blocks)(n_q, n_k, d, dtype, device_arch())
    out = [base]
    for block_m in (16, 32, 64, 128):
        for warps in (4, 8):
            cand = AttentionBlocks(base.d0, base.d1, block_m, base.block_n, base.one_kv_block,
                                   warps, base.num_stages)
            if cand not in out and (not backward or block_m <= 64):
                out.append(cand)
    return out  # no one-tile candidate: it measured wrong on an H200 (forward_blocks)


def attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, H, N_Q, D), k, v (B, H, N_K, D) -> o (B, H, N_Q, D), lse (B, H, N_Q) fp32 (log2)."""
    return launch_forward(q, k, v, scale, None)


def launch_forward(q, k, v, scale: float, cfg: AttentionBlocks | None):
    """``attention_fwd`` with explicit tiles (None: ``forward_blocks``)."""
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    o, lse = shapes.attention_fwd(q, k, v, scale)
    cfg = cfg or forward_blocks(n_q, n_k, d, q.dtype, device_arch(q.device))
    grid = (triton.cdiv(n_q, cfg.block_m) * b * h,)
    wrap_triton(_attn_fwd_kernel)[grid](
        q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
        h, n_q, n_k, scale * LOG2E,
        D=d, D0=cfg.d0, D1=cfg.d1, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        ONE_KV_BLOCK=cfg.one_kv_block, PRECISION=_precision(q.dtype), ALIGN=alignment(q, k, v, o),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return o, lse


def attention_bwd(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                  o: torch.Tensor, lse: torch.Tensor,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """dO (B, H, N_Q, D) and the forward's tensors -> dq, dk, dv shaped like q, k, v."""
    return launch_backward(do, q, k, v, o, lse, scale, None)


def launch_backward(do, q, k, v, o, lse, scale: float, cfg: AttentionBlocks | None):
    """``attention_bwd`` with explicit tiles (None: ``backward_blocks``)."""
    b, h, n_q, d = q.shape
    n_k = k.shape[2]
    dq, dk, dv = shapes.attention_bwd(do, q, k, v, o, lse, scale)
    cfg = cfg or backward_blocks(n_q, n_k, d, q.dtype, device_arch(q.device))
    prec = _precision(q.dtype)
    align = alignment(q, k, v, o, do, dq, dk, dv)
    if cfg.one_kv_block:
        delta = lse  # unused: the one-launch kernel computes delta itself
    else:
        delta = torch.empty_like(lse)
        wrap_triton(_attn_bwd_delta_kernel)[(triton.cdiv(n_q, cfg.block_m) * b * h,)](
            o, do, delta, *o.stride(), *do.stride(), h, n_q,
            D=d, D0=cfg.d0, D1=cfg.d1, BLOCK_M=cfg.block_m, ALIGN=align, num_warps=4,
        )
    wrap_triton(_attn_bwd_dkdv_kernel)[(triton.cdiv(n_k, cfg.block_n) * b * h,)](
        q, k, v, o, do, lse, delta, dq, dk, dv,
        *q.stride(), *k.stride(), *v.stride(), *o.stride(), *do.stride(),
        *dq.stride(), *dk.stride(), *dv.stride(),
        h, n_q, n_k, scale, scale * LOG2E,
        D=d, D0=cfg.d0, D1=cfg.d1, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        ONE_KV_BLOCK=cfg.one_kv_block, PRECISION=prec, ALIGN=align,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    if not cfg.one_kv_block:
        wrap_triton(_attn_bwd_dq_kernel)[(triton.cdiv(n_q, cfg.block_m) * b * h,)](
            q, k, v, do, lse, delta, dq,
            *q.stride(), *k.stride(), *v.stride(), *do.stride(), *dq.stride(),
            h, n_q, n_k, scale, scale * LOG2E,
            D=d, D0=cfg.d0, D1=cfg.d1, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
            PRECISION=prec, ALIGN=align, num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
    return dq, dk, dv


attention_fwd_op = _op.register("attention_fwd", attention_fwd, shapes.attention_fwd,
                                kernels=[_attn_fwd_kernel])
attention_bwd_op = _op.register("attention_bwd", attention_bwd, shapes.attention_bwd,
                                kernels=[_attn_bwd_dkdv_kernel])


# ----------------------------------------------------------------------------- autograd


class AttentionFunction(torch.autograd.Function):
    """softmax(q k^T * scale) v with the Triton forward and backward."""

    @staticmethod
    def forward(ctx, q, k, v, scale: float):
        o, lse = _op.call(attention_fwd_op, attention_fwd, q, k, v, scale)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.scale = scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _op.call(attention_bwd_op, attention_bwd, do, q, k, v, o, lse, ctx.scale)
        return dq, dk, dv, None


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              scale: float | None = None) -> torch.Tensor:
    """Non-causal attention. q (B, H, N_Q, D), k, v (B, H, N_K, D) -> (B, H, N_Q, D), q.dtype."""
    _check(q, k, v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if _op.needs_grad(q, k, v):
        return AttentionFunction.apply(q, k, v, scale)
    return _op.call(attention_fwd_op, attention_fwd, q, k, v, scale)[0]
