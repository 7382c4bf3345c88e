"""The text-encoder interface: ``TextTokenizer`` (prompts <-> K token ids) and ``TextEncoder``
(ids -> (B, K, D) features), which every encoder in encoders.py and minilm.py implements."""

from __future__ import annotations

import torch
from torch import nn

from flowtok.errors import ConfigError


class TextTokenizer:
    """Prompts <-> K token ids, with no model weights (captioning decodes ids with this alone)."""

    def __init__(self, hf_tokenizer, length: int):
        self.tok, self.length = hf_tokenizer, length

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> ids, attention mask, each (B, K) long: padded / truncated to K."""
        enc = self.tok(list(prompts), padding="max_length", truncation=True, max_length=self.length,
                       return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        """(B, K) token ids -> strings, special and padding tokens dropped."""
        return [s.strip() for s in self.tok.batch_decode(ids.tolist(), skip_special_tokens=True)]

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    @property
    def special_ids(self) -> list[int]:
        return sorted(set(self.tok.all_special_ids))

    def truncated(self, prompt: str) -> bool:
        """True when ``prompt`` does not fit into K tokens (the CLI warns about it)."""
        return len(self.tok(prompt)["input_ids"]) > self.length


class TextEncoder(nn.Module):
    """Interface: ``tokenizer`` (a TextTokenizer); ``forward(ids, mask)`` -> features (B, K, D)."""

    dim: int
    length: int
    tokenizer: TextTokenizer
    pooled_token: bool = False  # slot 0 carries the sentence embedding (TextConfig.pooled_token)
    feature_layers: tuple[int, ...] = ()  # layers joined along features; () = last (TextConfig)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's output [(B, K, width)], first layer first (encoders that can pick layers)."""
        raise self._cannot_pick_layers()

    def use_layers(self, layers: tuple[int, ...]) -> None:
        """Read the outputs of ``layers`` (1 = first), joined along features: ``dim`` grows to
        width x len(layers). Checked against the encoder's depth here, not at the first prompt."""
        if not layers:
            return
        depth = self.num_layers()
        bad = [i for i in layers if not 1 <= i <= depth]
        if bad or len(set(layers)) != len(layers):
            raise ConfigError(f"text.feature_layers={list(layers)}: pick distinct layers from 1 to "
                              f"{depth} (the encoder's depth)")
        self.feature_layers = tuple(layers)
        self.dim = self.dim * len(layers)

    def num_layers(self) -> int:
        """How many layers ``hidden_states`` returns."""
        raise self._cannot_pick_layers()

    def _cannot_pick_layers(self) -> ConfigError:
        return ConfigError(f"the {type(self).__name__} text encoder cannot pick layers "
                           "(text.feature_layers); leave it empty")

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, K, dim): the last layer, or the chosen layers side by side."""
        if not self.feature_layers:
            return self(ids, mask)
        states = self.hidden_states(ids, mask)
        return torch.cat([states[i - 1] for i in self.feature_layers], -1)

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokenizer.tokenize(prompts)

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        return self.tokenizer.decode_ids(ids)

    def truncated(self, prompt: str) -> bool:
        return self.tokenizer.truncated(prompt)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> (B, K, D) float32 features on the encoder's device."""
        ids, mask = self.tokenize(prompts)
        dev = next(self.parameters()).device
        feats = self.features(ids.to(dev), mask.to(dev)).float()
        if not self.pooled_token:
            return feats
        parts = feats.split(feats.shape[-1] // max(len(self.feature_layers), 1), -1)
        return torch.cat([with_pooled_token(p, mask.to(dev)) for p in parts], -1)  # one per layer


def with_pooled_token(feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Put the masked mean of the token features (B, K, D), L2-normalised to rms 1, in slot 0.

    Mean pooling is how all-MiniLM-L6-v2 was trained to embed sentences, so paraphrases land near
    each other there even where their tokens differ; the tokens keep the exact words.
    """
    m = mask.to(feats.dtype)[..., None]  # (B, K, 1)
    pooled = (feats * m).sum(1) / m.sum(1).clamp(min=1.0)
    out = feats.clone()
    out[:, 0] = torch.nn.functional.normalize(pooled, dim=-1) * feats.shape[-1] ** 0.5
    return out
