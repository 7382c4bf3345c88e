"""The 1D image tokenizer (TA-TiTok style, continuous): image <-> K x C Gaussian latent tokens.

Reads top to bottom: RoPE -> attention -> SwiGLU -> block -> encoder -> decoder -> Tokenizer.
Encoder sequence = [patch tokens ; K latent tokens]; decoder sequence = [one mask token per
patch ; K projected latents (; K projected text tokens)]. Only image/mask positions get the 2D
axial rotary embedding; latent and text tokens carry learned position embeddings instead.

Departures from the paper, each measured on shapes (benchmarks/RESULTS.md, Tokenizer):
- a linear token-mixing shortcut on each side: latent token k starts as a learned weighting of
  the patch embeddings, mask token n as a learned weighting of the projected latents (K x N and
  N x K parameters). Without it training sat on the all-background image for hundreds of steps:
  attention starts near uniform, so the latent tokens receive a position-free average of the
  patches, the decoder learns to ignore them, and the encoder's gradient vanishes;
- learned absolute position embeddings on patches and mask tokens next to RoPE, and a LayerNorm
  before the first block (as TiTok / CLIP);
- ``conv_refine`` builds ``LightRefine`` (3x3 conv, GELU, 3x3 conv, residual) rather than the
  paper's single 3x3 conv, so the refinement can sharpen edges, not only smooth patch seams.

Images enter as float (B, 3, H, W) in [-1, 1] (``encode`` also accepts uint8 (B, H, W, 3)) and
leave ``decode`` as float (B, 3, H, W) in [-1, 1]; ``to_uint8_images`` turns those into uint8
(B, H, W, 3) arrays (the one place that conversion is written).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

import flowtok_kernels
from flowtok.atomic import replace_folder
from flowtok.config import (
    CONFIG_VERSION,
    TokenizerConfig,
    config_from_dict,
    from_dict,
    to_dict,
)
from flowtok.errors import CheckpointError, ConfigError
from flowtok.tokenizer.linear_basis import LinearBasis

if TYPE_CHECKING:
    import numpy as np

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INIT_STD = 0.02  # ViT-style truncated-normal init for embeddings and linears
# Initial posterior log-variance (std ~0.018). With the usual logvar ~0 at init, the sampled
# latent is unit noise over a ~0.2-scale mean: the decoder learns to ignore z and the KL term
# then collapses the posterior (measured: no progress past the all-background image for
# hundreds of CPU steps). Starting nearly deterministic lets reconstruction drive z from step 0.
LOGVAR_INIT = -8.0


# ----------------------------------------------------------------------------- 2D axial RoPE


def rope_2d_angles(grid: int, head_dim: int, theta: float) -> torch.Tensor:
    """Rotation angles for a grid x grid image, row-major: (grid*grid, head_dim / 2).

    The first half of each head's rotation pairs turns with the row index, the second half with
    the column index (axial RoPE); frequencies theta^(-i / (head_dim / 4)).
    """
    if head_dim % 4:
        raise ConfigError(f"tokenizer head dim {head_dim} must be a multiple of 4 for 2D RoPE")
    quarter = head_dim // 4
    freqs = theta ** (-torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")  # (g, g)
    ang_r = rows.reshape(-1, 1) * freqs  # (N, D/4)
    ang_c = cols.reshape(-1, 1) * freqs  # (N, D/4)
    return torch.cat([ang_r, ang_c], dim=-1).float()  # (N, D/2)


def rope_tables(angles: torch.Tensor, n_extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos / sin tables (N + n_extra, D) in the rotate-half layout; the ``n_extra`` trailing
    (latent / text) tokens get angle 0, i.e. no rotation, so one fused expression covers the
    whole sequence without slicing."""
    full = torch.cat([angles, angles.new_zeros(n_extra, angles.shape[1])], dim=0)  # (N+E, D/2)
    full = torch.cat([full, full], dim=-1)  # (N+E, D)
    return full.cos(), full.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: x * cos + rotate_half(x) * sin. x: (B, H, N, D); cos, sin: (N, D)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


# ----------------------------------------------------------------------------- layers


class RopeAttention(nn.Module):
    """Multi-head self-attention with RoPE on the leading image tokens (flowtok.layers.Attention
    is the same without RoPE); fused kernels plug in through ``flowtok_kernels.attention``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ConfigError(f"tokenizer width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, N, W = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, W // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (B, H, N, D)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = flowtok_kernels.attention(q, k, v)  # (B, H, N, D)
        return self.proj(y.transpose(1, 2).reshape(B, N, W))


class SwiGLU(nn.Module):
    """SwiGLU MLP; hidden = 2/3 * mlp_ratio * width keeps the FLOPs of a ratio-4 GELU MLP."""

    def __init__(self, width: int, mlp_ratio: float):
        super().__init__()
        hidden = int(2 * mlp_ratio * width / 3)
        self.gate_up = nn.Linear(width, 2 * hidden)
        self.down = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class RopeBlock(nn.Module):
    """Pre-norm transformer block with RoPE attention and a SwiGLU MLP (the tokenizer's; the
    text side's plain GELU block is flowtok.layers.Block)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = RopeAttention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = SwiGLU(width, mlp_ratio)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


def _rope_buffers(cfg: TokenizerConfig, width: int, heads: int, n_extra: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    angles = rope_2d_angles(cfg.image_size // cfg.patch_size, width // heads, cfg.rope_theta)
    return rope_tables(angles, n_extra)  # (N + n_extra, D) each


# ----------------------------------------------------------------------------- encoder / decoder


class Encoder(nn.Module):
    """Patches + K learnable latent tokens -> (mean, logvar) of the posterior, each (B, K, C)."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        p, w = cfg.patch_size, cfg.enc_width
        self.patch_embed = nn.Linear(3 * p * p, w)
        n = (cfg.image_size // p) ** 2
        # learned absolute positions on top of RoPE (see Decoder.mask_pos)
        self.patch_pos = nn.Parameter(torch.randn(n, w) * w**-0.5) if cfg.abs_pos else None
        self.latent_tokens = nn.Parameter(torch.randn(cfg.num_latent_tokens, w) * INIT_STD)
        self.latent_pos = nn.Parameter(torch.randn(cfg.num_latent_tokens, w) * INIT_STD)
        self.blocks = nn.ModuleList(
            RopeBlock(w, cfg.enc_heads, cfg.mlp_ratio) for _ in range(cfg.enc_depth)
        )
        self.norm_pre = nn.LayerNorm(w)
        # Token-mixing shortcut (K x N): each latent token starts as its own learned weighting
        # of the patch embeddings. See the module docstring for why.
        self.pool = (nn.Parameter(torch.randn(cfg.num_latent_tokens, n) * n**-0.5)
                     if cfg.token_mixing else None)
        self.norm = nn.LayerNorm(w)
        self.to_moments = nn.Linear(w, 2 * cfg.token_channels)
        cos, sin = _rope_buffers(cfg, w, cfg.enc_heads, cfg.num_latent_tokens)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = images.shape[0]
        x = self.patch_embed(patchify(images, self.cfg.patch_size))  # (B, N, W)
        if self.patch_pos is not None:
            x = x + self.patch_pos
        lat = (self.latent_tokens + self.latent_pos).expand(B, -1, -1)  # (B, K, W)
        if self.pool is not None:
            lat = lat + torch.einsum("kn,bnw->bkw", self.pool, x)
        x = self.norm_pre(torch.cat([x, lat], dim=1))
        for blk in self.blocks:
            x = blk(x, self.rope_cos, self.rope_sin)
        moments = self.to_moments(self.norm(x[:, -self.cfg.num_latent_tokens:]))  # (B, K, 2C)
        mean, logvar = moments.float().chunk(2, dim=-1)
        lo, hi = self.cfg.logvar_clamp
        return mean, logvar.clamp(lo, hi)


REFINE_HIDDEN = 32  # channels of LightRefine's hidden layer


class LightRefine(nn.Module):
    """A light convolutional refinement: 3x3 conv to ``hidden`` channels, GELU, 3x3 conv back to
    RGB, added residually (last conv zero-initialised, so it starts as the identity). Unlike the single linear conv it can
    sharpen: it sees each pixel's neighbourhood across patch borders and thresholds nonlinearly.
    """

    def __init__(self, hidden: int = REFINE_HIDDEN):
        super().__init__()
        self.conv_in = nn.Conv2d(3, hidden, 3, padding=1)
        self.conv_out = nn.Conv2d(hidden, 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_out(F.gelu(self.conv_in(x)))


class UpsampleHead(nn.Module):
    """Decoder tokens on the patch grid -> RGB through x2 (nearest upsample, 3x3 conv, GELU)
    stages, added to the linear pixel head. A linear head must emit each p x p patch from one
    token on its own; the convolutions see neighbouring patches and could build detail coarse to
    fine. Measured on 64 px emoji it did not help at equal CPU time (benchmarks/RESULTS.md), so
    every preset leaves it off. The last conv is zero-initialised: the head starts as a no-op."""

    def __init__(self, width: int, patch_size: int, channels: tuple[int, ...]):
        super().__init__()
        stages = patch_size.bit_length() - 1
        if 2**stages != patch_size or len(channels) != stages:
            raise ConfigError(
                f"tokenizer.head_channels needs one entry per x2 stage of patch_size "
                f"{patch_size} (a power of 2): got {list(channels)}")
        self.proj = nn.Linear(width, channels[0])
        layers: list[nn.Module] = []
        c_in = channels[0]
        for c in channels:
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(c_in, c, 3, padding=1), nn.GELU()]
            c_in = c
        self.stages = nn.Sequential(*layers)
        self.out = nn.Conv2d(c_in, 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: torch.Tensor, grid: int) -> torch.Tensor:
        """tokens (B, grid*grid, W) -> (B, 3, grid p, grid p)."""
        B = tokens.shape[0]
        x = self.proj(tokens).transpose(1, 2).reshape(B, -1, grid, grid)
        return self.out(self.stages(x))


class Decoder(nn.Module):
    """Mask tokens + latents (+ text tokens) -> RGB (B, 3, H, W) in about [-1, 1]."""

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        self.cfg = cfg
        p, w, K = cfg.patch_size, cfg.dec_width, cfg.num_latent_tokens
        self.grid = cfg.image_size // p
        self.mask_token = nn.Parameter(torch.randn(1, 1, w) * INIT_STD)
        # Learned absolute positions for the mask tokens (TiTok-style init). With RoPE alone
        # every mask token enters identical and can locate itself only through rotated queries
        # against unrotated latent keys; an absolute embedding says where it is from layer 1.
        self.mask_pos = (nn.Parameter(torch.randn(self.grid * self.grid, w) * w**-0.5)
                         if cfg.abs_pos else None)
        # Token-mixing shortcut (N x K): each mask token also starts from its own learned
        # weighting of the projected latents (the decoder-side twin of Encoder.pool).
        self.unpool = (nn.Parameter(torch.randn(self.grid * self.grid, K) * K**-0.5)
                       if cfg.token_mixing else None)
        self.latent_in = nn.Linear(cfg.token_channels, w)
        self.latent_pos = nn.Parameter(torch.randn(K, w) * INIT_STD)
        if cfg.text_guidance:
            self.text_in = nn.Linear(cfg.text_dim, w)
            self.text_pos = nn.Parameter(torch.randn(K, w) * INIT_STD)
        self.blocks = nn.ModuleList(
            RopeBlock(w, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth)
        )
        self.norm_pre = nn.LayerNorm(w)
        self.norm = nn.LayerNorm(w)
        self.to_pixels = nn.Linear(w, 3 * p * p)
        self.head = UpsampleHead(w, p, tuple(cfg.head_channels)) if cfg.head_channels else None
        self.refine = LightRefine() if cfg.conv_refine else nn.Identity()
        n_extra = K * (2 if cfg.text_guidance else 1)
        cos, sin = _rope_buffers(cfg, w, cfg.dec_heads, n_extra)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, z: torch.Tensor, text: torch.Tensor | None = None,
                base: torch.Tensor | None = None) -> torch.Tensor:
        """z: (B, K, C) unscaled latents; text: (B, K, text_dim) or None; base: an image
        (B, 3, H, W) the pixel heads add to (the linear basis's reconstruction)."""
        B, n = z.shape[0], self.grid * self.grid
        mask = self.mask_token if self.mask_pos is None else self.mask_token + self.mask_pos
        mask = mask.expand(B, n, -1)
        lat = self.latent_in(z)  # (B, K, W)
        if self.unpool is not None:
            mask = mask + torch.einsum("nk,bkw->bnw", self.unpool, lat)
        parts = [mask, lat + self.latent_pos]
        if self.cfg.text_guidance:
            if text is not None:  # without text the text tokens are simply absent
                parts.append(self.text_in(text[:, : self.cfg.num_latent_tokens]) + self.text_pos)
        elif text is not None:
            raise ConfigError("decode(text=...) needs a tokenizer built with text_guidance: true")
        x = self.norm_pre(torch.cat(parts, dim=1))
        cos, sin = self.rope_cos[: x.shape[1]], self.rope_sin[: x.shape[1]]
        for blk in self.blocks:
            x = blk(x, cos, sin)
        tokens = self.norm(x[:, :n])
        pixels = unpatchify(self.to_pixels(tokens).float(), self.cfg.patch_size, self.grid)
        if self.head is not None:
            pixels = pixels + self.head(tokens, self.grid).float()
        if base is not None:
            pixels = pixels + base
        return self.refine(pixels)


def patchify(images: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 3, H, W) -> (B, (H/p)(W/p), 3 p p), row-major patches."""
    B, C, H, W = images.shape
    x = images.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def unpatchify(patches: torch.Tensor, p: int, grid: int) -> torch.Tensor:
    """(B, grid*grid, 3 p p) -> (B, 3, grid p, grid p); inverse of ``patchify``."""
    B = patches.shape[0]
    x = patches.reshape(B, grid, grid, 3, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(B, 3, grid * p, grid * p)


# ----------------------------------------------------------------------------- uint8 pixels


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]: what the encoder takes."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8_tensor(images: torch.Tensor) -> torch.Tensor:
    """Float images (..., 3, H, W) in [-1, 1] (what ``decode`` returns) -> uint8 (..., H, W, 3)
    on their device: computed in float32, clamped to [-1, 1], scaled to [0, 255], rounded (half
    to even). The inverse of ``prepare_images``' uint8 -> float. One image (3, H, W) or a batch."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1)


def to_uint8_images(images: torch.Tensor) -> np.ndarray:
    """``to_uint8_tensor`` as a numpy array on the CPU: float (B, 3, H, W) or (3, H, W) in
    [-1, 1] -> uint8 (B, H, W, 3) or (H, W, 3)."""
    return to_uint8_tensor(images).cpu().numpy()


# ----------------------------------------------------------------------------- the tokenizer


@dataclass
class Posterior:
    """Diagonal Gaussian over the K x C latent tokens; mean and logvar are (B, K, C) fp32."""

    mean: torch.Tensor
    logvar: torch.Tensor

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return self.mean + torch.exp(0.5 * self.logvar) * eps

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over K and C: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).sum(dim=(1, 2))


class Tokenizer(nn.Module):
    """Image <-> latent tokens. ``encode`` -> Posterior; ``decode`` -> images in [-1, 1].

    ``scale_factor`` is for the flow model (z_flow = scale * z); ``encode``/``decode`` work on
    unscaled latents.
    """

    def __init__(self, cfg: TokenizerConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ConfigError(
                f"tokenizer.image_size {cfg.image_size} is not a multiple of patch_size "
                f"{cfg.patch_size}"
            )
        bg = cfg.background
        if len(bg) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in bg):
            raise ConfigError(f"tokenizer.background must be three integers 0-255 (RGB), got {bg!r}")
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.basis = (LinearBasis(cfg.image_size, cfg.num_latent_tokens, cfg.token_channels)
                      if cfg.linear_basis else None)
        self.apply(_init_linear)
        with torch.no_grad():
            self.encoder.to_moments.bias[cfg.token_channels:] = LOGVAR_INIT
            if self.basis is not None:  # transformers start as a zero residual on the basis
                self.encoder.to_moments.weight[:cfg.token_channels].zero_()
                self.decoder.to_pixels.weight.zero_()

    @property
    def scale_factor(self) -> float:
        return self.cfg.scale_factor

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare_images(self, images) -> torch.Tensor:
        """uint8 (B, H, W, 3) or float (B, 3, H, W) in [-1, 1] -> float (B, 3, H, W) on device.
        Also a PIL image, a uint8 (H, W, 3) numpy array, or a list of either, at the tokenizer's
        size (transparency composited over ``tokenizer.background``)."""
        images = self._as_tensor(images)
        if images.dtype == torch.uint8:
            if images.ndim != 4 or images.shape[-1] != 3:
                raise ConfigError(f"uint8 images must be (B, H, W, 3), got {tuple(images.shape)}")
            images = uint8_to_float(images)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"float images must be (B, 3, H, W), got {tuple(images.shape)}")
        s = self.cfg.image_size
        if images.shape[-2:] != (s, s):
            raise ConfigError(
                f"images are {images.shape[-2]}x{images.shape[-1]} but this tokenizer takes "
                f"{s}x{s}; resize first (flowtok.data.imagefolder.load_image does)"
            )
        return images.to(self._device(), torch.float32)

    def _as_tensor(self, images) -> torch.Tensor:
        """PIL images and numpy arrays (one or a list) -> a uint8 (B, H, W, 3) tensor."""
        import numpy as np
        from PIL import Image

        if isinstance(images, torch.Tensor):
            return images
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        if isinstance(images, np.ndarray) and images.ndim == 4:
            items = list(images)
        if not items:
            raise ConfigError("no images to encode (an empty list)")
        arrays = []
        for im in items:
            if isinstance(im, Image.Image):
                rgba = im.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (*self.cfg.background, 255))
                im = np.asarray(Image.alpha_composite(canvas, rgba).convert("RGB"))
            if not isinstance(im, np.ndarray) or im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3:
                what = f"{im.dtype} {im.shape}" if isinstance(im, np.ndarray) else type(im).__name__
                raise ConfigError(f"Tokenizer.encode takes PIL images, uint8 (H, W, 3) arrays or a "
                                  f"torch tensor, got {what}")
            arrays.append(im)
        if len({a.shape for a in arrays}) > 1:
            raise ConfigError("images to encode differ in size; resize them to "
                              f"{self.cfg.image_size}x{self.cfg.image_size} first")
        return torch.from_numpy(np.stack(arrays))

    @torch.no_grad()
    def encode(self, images) -> Posterior:
        """Images (see ``prepare_images``) -> Posterior with mean, logvar (B, K, C).
        Inference: no autograd graph (training runs ``forward``)."""
        return Posterior(*self._moments(self.prepare_images(images)))

    def _moments(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.encoder(images)
        if self.basis is not None:
            mean = mean + self.basis.encode(images)
        return mean, logvar

    def _decode(self, z: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
        base = None if self.basis is None else self.basis.decode(z, self.cfg.image_size)
        return self.decoder(z, text, base)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        """Unscaled latents (B, K, C) (+ text tokens (B, K, text_dim)) -> images (B, 3, H, W).
        Inference: no autograd graph (training runs ``forward``)."""
        K, C = self.cfg.num_latent_tokens, self.cfg.token_channels
        if latents.ndim != 3 or latents.shape[1:] != (K, C):
            raise ConfigError(f"latents must be (B, {K}, {C}), got {tuple(latents.shape)}")
        return self._decode(latents.to(self._device(), torch.float32), text)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None,
                text: torch.Tensor | None = None) -> tuple[torch.Tensor, Posterior]:
        """Training pass: reconstruct from a posterior sample. Returns (recon, posterior)."""
        post = Posterior(*self._moments(images))
        return self._decode(post.sample(generator), text), post

    # ------------------------------------------------------------------ model folders

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write config.json + model.safetensors into ``path`` atomically (temp folder, rename)."""
        from safetensors.torch import save_file

        path = Path(path)
        with replace_folder(path) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            cfg_text = json.dumps({"version": CONFIG_VERSION, "tokenizer": to_dict(self.cfg)},
                                  indent=2) + "\n"
            (tmp / CONFIG_NAME).write_text(cfg_text)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu"
                        ) -> Tokenizer:
        """Rebuild from a folder written by ``save_pretrained`` (or a pipeline's tokenizer/).
        Pickle files are refused; damaged or mismatched files raise CheckpointError."""
        from flowtok.safe_load import load_safetensors, refuse_pickle

        path = Path(path)
        refuse_pickle(path)
        if (path / "tokenizer" / CONFIG_NAME).is_file():
            path = path / "tokenizer"
        cfg_file, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
        if not cfg_file.is_file() or not path.is_dir():
            raise CheckpointError(
                f"{path}: not a tokenizer folder (needs {CONFIG_NAME} and {WEIGHTS_NAME}); "
                "train one with `flowtok train tokenizer`"
            )
        cfg = read_tokenizer_config(cfg_file)
        state = load_safetensors(weights)
        model = cls(cfg)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"{weights}: does not match {cfg_file} ({first[:200]})") from e
        return model.to(device).eval()


def read_tokenizer_config(cfg_file: Path) -> TokenizerConfig:
    """A tokenizer folder's config.json: {"tokenizer": {...}} or a full FlowTokConfig."""
    try:
        data = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_file}: not valid JSON ({e.__class__.__name__})") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg_file}: expected a JSON object")
    try:
        if "name" in data and "version" in data:
            return config_from_dict(data, str(cfg_file)).tokenizer
        if "tokenizer" not in data:
            raise CheckpointError(f"{cfg_file}: has no 'tokenizer' section")
        version = data.get("version", CONFIG_VERSION)
        if isinstance(version, int) and version > CONFIG_VERSION:
            raise ConfigError(f"{cfg_file}: written by a newer flowtok (config version {version} "
                              f"> {CONFIG_VERSION}); upgrade flowtok to read it")
        return from_dict(TokenizerConfig, data["tokenizer"], f"{cfg_file}:tokenizer")
    except ConfigError as e:  # a model folder problem, not a usage error
        raise CheckpointError(str(e)) from e


def _init_linear(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=INIT_STD)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
