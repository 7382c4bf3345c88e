"""Caption decoder: z_text (B, K, C) -> the text encoder's token ids, one per position.

The paper gives no code for this part; we predict all K positions in parallel with per-position
cross-entropy (inferred). The output layer covers only the vocabulary seen in training (stored as
``vocab_ids``), which keeps a 30k-word tokenizer from dominating a small model's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from flowtok.config import TextConfig
from flowtok.layers import Block, sincos_1d


class CaptionDecoder(nn.Module):
    def __init__(self, cfg: TextConfig, length: int, channels: int, vocab_ids: torch.Tensor):
        super().__init__()
        w = cfg.decoder_width
        self.register_buffer("vocab_ids", vocab_ids.long().clone())  # (V,) encoder ids, sorted
        self.inp = nn.Linear(channels, w)
        self.register_buffer("pos", sincos_1d(length, w)[None], persistent=False)
        self.blocks = nn.ModuleList(
            Block(w, cfg.decoder_heads, 4 * w, 0.0) for _ in range(cfg.decoder_depth)
        )
        self.norm = nn.LayerNorm(w)
        self.head = nn.Linear(w, len(vocab_ids))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, K, C) -> logits (B, K, V) over ``vocab_ids``."""
        x = self.inp(z) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))

    def to_subset(self, ids: torch.Tensor) -> torch.Tensor:
        """Encoder ids (B, K) -> indices into ``vocab_ids``; unseen ids map to -100 (ignored)."""
        idx = torch.searchsorted(self.vocab_ids, ids.clamp(min=0))
        idx = idx.clamp(max=len(self.vocab_ids) - 1)
        return torch.where(self.vocab_ids[idx] == ids, idx, torch.full_like(idx, -100))

    def loss(self, z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        logits = self(z)
        return F.cross_entropy(logits.flatten(0, 1), self.to_subset(ids).flatten(), ignore_index=-100)

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, K, C) -> encoder token ids (B, K) by per-position argmax."""
        return self.vocab_ids[self(z).argmax(-1)]
