"""Analytic FLOP counts of every stage of FlowTok sampling and flow training, for any preset.

Why analytic: achieved FLOP/s and MFU need a count that does not depend on which kernels ran,
and the count must be checkable by hand (tests/test_bench.py writes the sums out).

Convention: one multiply-add = 2 FLOPs. Only matrix products are counted: linear layers
(2 * tokens * fan_in * fan_out), the two attention products QK^T and PV (2 * 2 * N_q * N_k * width
over all heads) and convolutions. Element-wise work (LayerNorm, softmax, GELU/SiLU, residuals,
biases, RoPE, embedding lookups) is left out: well under 1% at these widths. A causal mask (the
CLIP text tower) is counted as the full N x N square, which is what SDPA computes with a mask.
Every count is per image (per sample) unless its name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from flowtok.config import FlowConfig, FlowTokConfig, TextConfig, TokenizerConfig
from flowtok.flow.transformer import FREQ_DIM
from flowtok.tokenizer.model import REFINE_HIDDEN


@dataclass(frozen=True)
class TextTower:
    """Sizes of a frozen text encoder (a plain pre-LN Transformer with a GELU MLP)."""

    name: str
    layers: int
    width: int
    heads: int
    mlp_hidden: int
    vocab: int  # only to draw random token ids in benchmarks


# The paper's text encoder (B/XL/H): CLIP ViT-L/14 text tower, 77 tokens.
CLIP_L14_TEXT = TextTower("CLIP ViT-L/14 text tower", layers=12, width=768, heads=12,
                          mlp_hidden=3072, vocab=49408)
# The default offline encoder of the small presets: all-MiniLM-L6 (BERT, 6 layers).
MINILM_L6 = TextTower("MiniLM-L6", layers=6, width=384, heads=12, mlp_hidden=1536, vocab=30522)
TEXT_TOWERS = {"clip": CLIP_L14_TEXT, "minilm": MINILM_L6}


# ----------------------------------------------------------------------------- building blocks


def linear(tokens: int, fan_in: int, fan_out: int) -> int:
    """A linear layer applied to ``tokens`` vectors."""
    return 2 * tokens * fan_in * fan_out


def attention_products(q_tokens: int, k_tokens: int, width: int) -> int:
    """QK^T and PV over all heads: 2 products of 2 * N_q * N_k * head_dim, times heads."""
    return 2 * (2 * q_tokens * k_tokens * width)


def gelu_block(tokens: int, width: int, mlp_hidden: int) -> int:
    """A self-attention + two-layer-MLP block: qkv, QK^T, PV, out projection, fc1, fc2."""
    return (linear(tokens, width, 3 * width) + attention_products(tokens, tokens, width)
            + linear(tokens, width, width) + linear(tokens, width, mlp_hidden)
            + linear(tokens, mlp_hidden, width))


def swiglu_hidden(width: int, mlp_ratio: float) -> int:
    """Hidden size of the tokenizer's SwiGLU MLP (as built in flowtok.tokenizer.model)."""
    return int(2 * mlp_ratio * width / 3)


def swiglu_block(tokens: int, width: int, mlp_ratio: float) -> int:
    """Self-attention + SwiGLU block: qkv, QK^T, PV, out projection, gate_up (2h), down."""
    h = swiglu_hidden(width, mlp_ratio)
    return (linear(tokens, width, 3 * width) + attention_products(tokens, tokens, width)
            + linear(tokens, width, width) + linear(tokens, width, 2 * h) + linear(tokens, h, width))


# ----------------------------------------------------------------------------- stages


def text_encoder_flops(kind: str, tokens: int, dim: int) -> int:
    """One prompt through the text encoder: ``clip`` (CLIP-L/14 tower), ``minilm`` or ``tiny``
    (the test encoder: one dim x dim linear). ``dim`` is used by ``tiny`` only."""
    if kind == "tiny":
        return linear(tokens, dim, dim)
    if kind not in TEXT_TOWERS:
        raise ValueError(f"unknown text encoder {kind!r}; choose clip, minilm or tiny")
    tower = TEXT_TOWERS[kind]
    return tower.layers * gelu_block(tokens, tower.width, tower.mlp_hidden)


def projector_flops(text: TextConfig, K: int, C: int) -> int:
    """Text projector at inference: input linear, blocks, output linear to (mean, logvar)."""
    w = text.proj_width
    return (linear(K, text.feature_dim, w) + text.proj_depth * gelu_block(K, w, text.proj_ffn)
            + linear(K, w, 2 * C))


def alignment_head_flops(text: TextConfig, K: int, C: int) -> int:
    """The contrastive-alignment MLP D -> h -> h -> C per token (training only)."""
    h = text.align_hidden
    return linear(K, text.feature_dim, h) + linear(K, h, h) + linear(K, h, C)


def flow_block_flops(tokens: int, width: int, mlp_ratio: float) -> dict[str, int]:
    """One DiT block of the flow transformer, by GEMM (its adaLN vectors come from the shared
    modulation GEMM, counted in ``flow_forward_flops``)."""
    hidden = int(width * mlp_ratio)
    parts = {
        "qkv": linear(tokens, width, 3 * width),
        "attn_qk": 2 * tokens * tokens * width,
        "attn_pv": 2 * tokens * tokens * width,
        "proj": linear(tokens, width, width),
        "mlp": linear(tokens, width, hidden) + linear(tokens, hidden, width),
    }
    parts["total"] = sum(parts.values())
    return parts


def flow_forward_flops(flow: FlowConfig, K: int, C: int) -> dict[str, int]:
    """One forward of FlowTransformer for one sample: K tokens in, K velocities out.

    ``adaln``: the single modulation GEMM W -> (6 depth + 2) W, applied once per sample (not per
    token: c depends only on t and the CFG indicator). ``t_embed``: 256 -> W -> W.
    """
    w, d = flow.width, flow.depth
    block = flow_block_flops(K, w, flow.mlp_ratio)
    parts = {
        "embed": linear(K, C, w),
        "t_embed": linear(1, FREQ_DIM, w) + linear(1, w, w),
        "adaln": linear(1, w, (6 * d + 2) * w),
        "blocks": d * block["total"],
        "out": linear(K, w, C),
    }
    parts["total"] = sum(parts.values())
    parts["per_block"] = block
    return parts


def flow_passes(steps: int, guidance: float) -> int:
    """Network passes of the Euler sampler: one per step, two with CFG (guidance != 1)."""
    return steps * (1 if guidance == 1.0 else 2)


def decoder_flops(tok: TokenizerConfig, with_text: bool | None = None) -> dict[str, int]:
    """Tokenizer decoder for one image: mask tokens (one per patch) + K latents (+ K text tokens
    when the decoder is text-aware and given text) through the ViT blocks, then pixels + conv."""
    if with_text is None:
        with_text = tok.text_guidance
    with_text = with_text and tok.text_guidance
    w, K = tok.dec_width, tok.num_latent_tokens
    grid = tok.image_size // tok.patch_size
    n_patches = grid * grid
    seq = n_patches + K + (K if with_text else 0)
    parts = {
        "latent_in": linear(K, tok.token_channels, w),
        # token-mixing shortcut: each mask token += a learned weighting of the K latents
        "unpool": 2 * n_patches * K * w if tok.token_mixing else 0,
        "text_in": linear(K, tok.text_dim, w) if with_text else 0,
        "blocks": tok.dec_depth * swiglu_block(seq, w, tok.mlp_ratio),
        "to_pixels": linear(n_patches, w, 3 * tok.patch_size ** 2),
        # LightRefine: 3x3 convs 3 -> hidden -> 3 over every output pixel
        "refine": 2 * 2 * 9 * 3 * REFINE_HIDDEN * tok.image_size ** 2 if tok.conv_refine else 0,
    }
    parts["total"] = sum(parts.values())
    parts["sequence"] = seq
    return parts


def sample_flops(cfg: FlowTokConfig, steps: int, guidance: float,
                 text_encoder: str | None = None) -> dict[str, int]:
    """End-to-end text-to-image FLOPs per image, by stage.

    Stages: ``text_encoder`` (once per prompt; its output also guides the decoder),
    ``projector``, ``flow`` (``flow_passes`` forwards), ``decoder``. ``text_encoder`` defaults
    to the preset's encoder.
    """
    K, C = cfg.K, cfg.C
    kind = text_encoder or cfg.text.encoder
    fwd = flow_forward_flops(cfg.flow, K, C)["total"]
    out = {
        "text_encoder": text_encoder_flops(kind, K, cfg.text.feature_dim),
        "projector": projector_flops(cfg.text, K, C),
        "flow": flow_passes(steps, guidance) * fwd,
        "decoder": decoder_flops(cfg.tokenizer)["total"],
    }
    out["total"] = sum(out.values())
    out["flow_forward"] = fwd
    out["flow_passes"] = flow_passes(steps, guidance)
    return out


def train_flops_per_sample(cfg: FlowTokConfig) -> dict[str, int]:
    """Model FLOPs of one t2i flow training sample: 3 x forward (forward + backward = 2 x forward)
    of projector + alignment head + flow. The frozen text encoder is not included (features come
    from the text-feature cache), nor the optimizer or EMA (element-wise)."""
    K, C = cfg.K, cfg.C
    fwd = (projector_flops(cfg.text, K, C) + alignment_head_flops(cfg.text, K, C)
           + flow_forward_flops(cfg.flow, K, C)["total"])
    return {"forward": fwd, "total": 3 * fwd}


# ----------------------------------------------------------------------------- 2D baseline


def baseline_2d_forward_flops(flow: FlowConfig, tokens: int, patch_dim: int, text_tokens: int,
                              text_dim: int) -> dict[str, int]:
    """One forward of flowtok.bench.baseline_2d.Baseline2D for one sample: ``tokens`` latent
    patches of ``patch_dim`` values, cross-attention to ``text_tokens`` of ``text_dim``."""
    w, d = flow.width, flow.depth
    hidden = int(w * flow.mlp_ratio)
    per_block = (
        linear(tokens, w, 3 * w) + attention_products(tokens, tokens, w) + linear(tokens, w, w)
        + linear(tokens, w, w) + linear(text_tokens, w, 2 * w)  # cross-attn q, kv
        + attention_products(tokens, text_tokens, w) + linear(tokens, w, w)  # products, out
        + linear(tokens, w, hidden) + linear(tokens, hidden, w)
    )
    parts = {
        "embed": linear(tokens, patch_dim, w),
        "text_embed": linear(text_tokens, text_dim, w),
        "t_embed": linear(1, FREQ_DIM, w) + linear(1, w, w),
        "adaln": linear(1, w, (6 * d + 2) * w),
        "blocks": d * per_block,
        "out": linear(tokens, w, patch_dim),
    }
    parts["total"] = sum(parts.values())
    return parts
