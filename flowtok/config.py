"""Configuration: nested dataclasses, YAML presets shipped in the package, and `a.b=value` overrides.

A resolved config is plain data: it round-trips through ``to_dict`` / ``from_dict`` exactly, so a
model folder's ``config.json`` rebuilds the model that wrote it (the nanoGPT / diffusers habit).
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from flowtok.atomic import write_text_atomic
from flowtok.errors import ConfigError

CONFIG_VERSION = 1  # bump when a field changes meaning; newer files are refused with a message


@dataclass
class TokenizerConfig:
    """The 1D image tokenizer (TA-TiTok style, continuous): image <-> K x C latent tokens."""

    image_size: int = 32  # square input/output resolution in pixels
    patch_size: int = 4  # ViT patch side; the grid is (image_size / patch_size)^2 tokens
    num_latent_tokens: int = 16  # K: must equal the text side's K
    token_channels: int = 8  # C: channels per latent token
    enc_width: int = 128
    enc_depth: int = 4
    enc_heads: int = 4
    dec_width: int = 128
    dec_depth: int = 4
    dec_heads: int = 4
    mlp_ratio: float = 4.0  # SwiGLU hidden = 2/3 * mlp_ratio * width (paper)
    rope_theta: float = 10000.0  # 2D axial RoPE on image positions only
    logvar_clamp: tuple[float, float] = (-30.0, 20.0)  # posterior logvar range (exp stays finite)
    conv_refine: bool = True  # light conv refinement after unpatchify; sharpens edges, cleans seams
    # convolutional upsampling head beside the linear pixel head: channels of each x2 stage
    # (log2(patch_size) stages), empty = linear head only (paper)
    head_channels: tuple[int, ...] = ()
    # PCA shortcut: latents start as the training images' top K*C principal components and the
    # transformers learn the residual (flowtok/tokenizer/linear_basis.py)
    linear_basis: bool = False
    token_mixing: bool = True  # learned K x N / N x K token shortcuts (escape the background plateau)
    abs_pos: bool = True  # learned absolute positions on patches / mask tokens beside RoPE
    text_guidance: bool = False  # text-aware decoder (paper): decoder also sees text tokens
    text_dim: int = 384  # feature width of the guiding text encoder
    scale_factor: float = 1.0  # latents are multiplied by this before the flow model
    # RGB that transparent pixels are composited over when images are read for this tokenizer:
    # the training data's background (black shapes, white emoji)
    background: tuple[int, int, int] = (0, 0, 0)


@dataclass
class TextConfig:
    """Text side: frozen encoder -> variational projector (z_text, K x C) and caption decoder."""

    encoder: str = "minilm"  # minilm | clip | tiny
    encoder_path: str | None = None  # local folder or hub id for `clip` (never a silent download)
    feature_dim: int = 384  # D of the encoder's per-token output
    proj_depth: int = 2
    proj_width: int = 256
    proj_heads: int = 4
    proj_ffn: int = 512
    proj_dropout: float = 0.1
    # K learned latent queries read the text tokens (one sequence, self-attention) and become
    # z_text, instead of text token i becoming latent token i: what lands in a latent slot is
    # chosen by content, not by where a word sits in the sentence (issue 24, new wordings).
    # Measured on shapes from scratch: held-out wordings 83.0 / 78.7% against 80.3 / 78.7%
    # without (RESULTS "Fifth pass", K_query vs K_share), 16% slower: in no preset
    proj_queries: bool = False
    kl_weight: float = 1e-4  # gamma_1 (paper): weight of z_text's posterior KL to N(0, I)
    normalize_latent: bool = False  # RMS-normalise z_text's mean per sample (stops it shrinking to 0)
    min_std: float = 0.0  # text->image: floor on z_text's posterior std (keeps the flow's source a distribution)
    # feature slot 0 ([CLS]) carries the masked mean of the token features, L2-normalised to
    # rms 1: MiniLM's trained sentence embedding, which paraphrases share, beside the tokens
    pooled_token: bool = False
    # encoder layers (1 = first) whose outputs are joined along features, each pooled on its own
    # when pooled_token is set; () = the last layer only. A lower layer keeps more of each word
    # and less of the sentence around it, which new sentence frames scramble less: on shapes,
    # a probe of MiniLM layers (3, 6) recovered 92-93% of held-out scenes against 77-93% for
    # layer 6 alone (benchmarks/flow/text_probe.py, RESULTS "Sixth pass"), but the flow trained
    # on them (W_cat36) drew held-out wordings no better (78.5 / 75.5% vs 80.0 / 78.3%, 4 seeds),
    # so no preset sets it. feature_dim must be the encoder's width times the number of layers
    # (MiniLM: 384 each)
    feature_layers: tuple[int, ...] = ()
    align_weight: float = 1.0  # gamma_2 (paper); 0 for image-to-text
    # what z_text is contrasted with: "text" = MLP(text features) (paper), "image" = the paired
    # (normalised) image latent, which also pulls z_text towards its image: a shorter flow path
    align_target: str = "text"
    align_hidden: int = 512  # MLP 768->512->512->C in the paper
    # text -> image: weight of a mean-squared pull of z_text's mean onto its (normalised) image
    # latent, meant to shorten the flow's path; on emoji64 it did not fit faster (600-step runs,
    # benchmarks/RESULTS.md), so the presets leave it off
    align_mse_weight: float = 0.0
    # text -> image with several training wordings per caption (train_flow.caption_paraphrases or
    # caption_templates): weight of a mean-squared pull of each wording's z_text mean onto the
    # (stop-gradient) mean of the data's own caption, so the projector maps wordings of one
    # caption to one source instead of each to its own. Measured on shapes at weight 1: no
    # held-out gain over the same run without it (RESULTS "Fourth pass"), so no preset sets it
    wording_weight: float = 0.0
    # text -> image: std of Gaussian noise added to each token's text features while training,
    # relative to that token's RMS, so the projector maps features near a training wording's
    # (an unseen wording of the same scene) to sources near that wording's. Measured on shapes at
    # 0.5: no held-out gain (RESULTS "Fourth pass"), so no preset sets it
    feature_noise: float = 0.0
    caption_weight: float = 1.0  # cross-entropy weight of the caption decoder (image-to-text)
    decoder_noise: float = 0.0  # std of noise on z_text while training the decoder (robust to flow errors)
    decoder_depth: int = 2  # caption decoder blocks (paper: 6)
    decoder_width: int = 256
    decoder_heads: int = 4


@dataclass
class FlowConfig:
    """Flow transformer (DiT blocks with adaLN-Zero) and its sampler defaults."""

    depth: int = 6
    width: int = 384
    heads: int = 6
    mlp_ratio: float = 4.0
    sigma_min: float = 1e-5  # x_t = (1 - (1 - sigma) t) x0 + t x1
    timestep_sampling: str = "uniform"  # uniform (paper) | logit_normal (reference code)
    # logit_normal: t = sigmoid(loc + scale * N(0, 1)); a negative loc trains more near t = 0,
    # where text -> image reads the prompt from z_text alone (on shapes uniform t did better;
    # benchmarks/RESULTS.md)
    timestep_loc: float = 0.0
    timestep_scale: float = 1.0
    null_prob: float = 0.1  # CFG indicator: share of null (mismatched) samples
    guidance: float = 2.0  # default CFG scale s in v = v_u + s (v_c - v_u)
    caption_guidance: float = 1.0  # CFG scale for image-to-text
    # text -> image sampling: scale of the source noise around z_text relative to training
    # (1 = the trained distribution, 0 = start from the posterior mean: one image per prompt,
    # the sharpest on emoji64, where random fine-detail directions render as speckle)
    temperature: float = 1.0
    steps: int = 20  # default Euler steps
    normalize_latents: bool = False  # per-channel latent normalisation (stats stored in model)
    # what the statistics are per: "channel" (C; every token of a channel shares them) or
    # "element" (K x C). With an ordered basis (tokenizer.linear_basis) token 0 holds most of the
    # variance and per-channel statistics keep that weighting (the loss is then pixel MSE); per
    # element every (token, channel) has unit variance. On emoji64 per element learned every
    # token more slowly (700-step runs, benchmarks/RESULTS.md), so the presets keep "channel"
    latent_stats: str = "channel"
    # a discrete input besides the text (text -> image): the value of one metadata.jsonl field
    # per image, e.g. which artist drew it. Where the data hold several different pictures of one
    # caption for a known reason, conditioning on that reason and drawing it at random when a
    # prompt does not name one gives each picture whole, instead of a blend of them
    # (benchmarks/RESULTS.md, "styles"). Empty: no such input. ``styles`` (the values, in the
    # embedding's order) is filled from the data when left empty.
    style_key: str = ""
    styles: tuple[str, ...] = ()


@dataclass
class TrainConfig:
    """Optimisation settings shared by every trainer (tokenizer, flow, captioner)."""

    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW (beta1, beta2)
    warmup_steps: int = 100
    max_steps: int = 2000
    schedule: str = "cosine"  # cosine | constant
    grad_clip: float = 1.0
    ema_decay: float = 0.999  # 0 disables EMA
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 (also on a CPU)
    seed: int = 0
    log_every: int = 50
    eval_every: int = 500
    ckpt_every: int = 500
    keep_checkpoints: int = 2  # newest step_N folders kept; older ones are deleted
    gan_weight: float = 0.0  # PatchGAN hinge weight (tokenizer); 0 disables
    gan_start: int = 0  # step at which the GAN loss switches on
    # tokenizer: weight of its posterior's KL to N(0, I), ramped in over the first quarter of
    # training (not text.kl_weight, the text projector's KL, paper gamma_1)
    tokenizer_kl_weight: float = 1e-4
    edge_weight: float = 0.0  # tokenizer: L1 on image gradients (slowed the start on shapes)
    hflip: bool = False  # tokenizer: mirror half of each batch (and fit a linear basis on both)
    # train the decoder alone: tokenizer - the encoder stays as it starts (latents keep their
    # meaning); i2t flow - the caption decoder learns from the frozen flow's own endpoints
    decoder_only: bool = False
    # text -> image: each step every caption is put into one of these templates at random
    # ("{}" = the caption as is, "{a}" = "a" or "an"), so "a cat" means what "cat" means
    caption_templates: tuple[str, ...] = ()
    # text -> image on shapes captions: each caption and n - 1 paraphrases of it
    # (flowtok.data.shapes_wordings; other captions are kept as they are), one drawn per sample
    # and step, so the projector learns meaning rather than one grammar
    caption_paraphrases: int = 0
    # with caption_paraphrases: the share of samples that train on the data's own caption (the
    # rest draw one of its paraphrases uniformly); None = every wording equally (1 / n). More
    # paraphrases widen what the projector reads but, at one share each, train the caption the
    # user's grammar most likely follows less (benchmarks/RESULTS.md, issue 24 fifth pass)
    caption_share: float | None = None
    # with caption_paraphrases: which wordings paraphrase a caption (flowtok.data.shapes_wordings
    # TRAINING_STYLES): "train" (the designed training side, disjoint from the held-out sets by
    # construction), "wide" (that plus natural English written blind to every held-out set) or
    # "wider" (wide plus two more blind writers)
    caption_style: str = "train"
    # text -> image, few images per caption (emoji: two drawings of each name): image j of the k
    # training images sharing a caption takes its source noise's first coordinate from the j-th
    # of k equal-probability bins of N(0, 1). The source stays N(0, I) per caption, and which
    # image a sample becomes is read off one coordinate instead of averaged over. Experimental:
    # no gain measured at 1,000 fine-tuning steps on emoji (benchmarks/RESULTS.md); in no preset
    stratified_source: bool = False
    grad_accum: int = 1  # micro-batches per step: global batch = batch_size x world size x grad_accum
    parallel: str = "ddp"  # under torchrun: ddp (replicas) | fsdp (FSDP2 fully_shard, for the H preset)


@dataclass
class FlowTokConfig:
    """Everything a model folder needs to rebuild itself, plus how it was trained."""

    name: str = "shapes"
    version: int = CONFIG_VERSION
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    train_tokenizer: TrainConfig = field(default_factory=TrainConfig)
    train_flow: TrainConfig = field(default_factory=TrainConfig)

    @property
    def K(self) -> int:
        return self.tokenizer.num_latent_tokens

    @property
    def C(self) -> int:
        return self.tokenizer.token_channels


# Keys that config files written by an older flowtok may hold, per dataclass: a renamed key is
# read under its new name (``None``: a removed field nothing read, dropped). ``save_config``
# writes the current names.
LEGACY_KEYS: dict[str, dict[str, str | None]] = {
    "TrainConfig": {"kl_weight": "tokenizer_kl_weight", "num_workers": None},
}


# ----------------------------------------------------------------------------- dict <-> dataclass


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain dict (tuples become lists, as JSON/YAML would store them)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML/JSON value to the field's declared type, or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], where) for v in value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError as e:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from e
        if f != int(f):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from e
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def upgrade_keys(cls: type, data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """``data`` (for dataclass ``cls``, sections included) with LEGACY_KEYS under their current
    names; an old and a new name for the same field together are an error."""
    out = dict(data)
    for old, new in LEGACY_KEYS.get(cls.__name__, {}).items():
        if old not in out:
            continue
        value = out.pop(old)
        if new is None:
            continue
        if new in out:
            raise ConfigError(f"{where}: {old} is the old name of {new}; give only {new}")
        out[new] = value
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp) and isinstance(out.get(f.name), dict):
            out[f.name] = upgrade_keys(tp, out[f.name], f"{where}.{f.name}")
    return out


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass ``cls`` from a dict; unknown keys are errors, missing keys take defaults
    (old key names are read as their new ones, see LEGACY_KEYS)."""
    data = upgrade_keys(cls, data, where)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


# ----------------------------------------------------------------------------- presets and files


def preset_names() -> list[str]:
    """Names of the YAML presets shipped inside the package."""
    folder = resources.files("flowtok") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({e.__class__.__name__})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    return data


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_preset(name: str) -> FlowTokConfig:
    """Return the named preset (tiny, shapes, emoji64, B, XL, H)."""
    names = preset_names()
    if name not in names:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(names)}")
    text = (resources.files("flowtok") / "presets" / f"{name}.yaml").read_text()
    data = _read_yaml(text, f"preset {name}")
    return config_from_dict(data, f"preset {name}")


def config_from_dict(data: dict[str, Any], where: str = "config") -> FlowTokConfig:
    """Build a FlowTokConfig; a file written by a newer flowtok is refused, not misread."""
    version = data.get("version", CONFIG_VERSION)
    if isinstance(version, int) and version > CONFIG_VERSION:
        raise ConfigError(
            f"{where}: written by a newer flowtok (config version {version} > {CONFIG_VERSION}); "
            "upgrade flowtok to read it"
        )
    cfg = from_dict(FlowTokConfig, data, where)
    check_values(cfg, where)
    return cfg


# fields whose value must lie in a range, as (section, field, lowest value); a bad one read from
# a model folder's config.json would otherwise surface later as an error that names no file
AT_LEAST = (
    ("flow", "steps", 1), ("flow", "guidance", 0), ("flow", "caption_guidance", 0),
    ("flow", "temperature", 0), ("tokenizer", "image_size", 1), ("tokenizer", "patch_size", 1),
    ("tokenizer", "num_latent_tokens", 1), ("tokenizer", "token_channels", 1),
)


def check_values(cfg: FlowTokConfig, where: str) -> None:
    """Refuse values no model can run with (``flow.steps: -3``), naming the file and field."""
    import math

    for section, name, low in AT_LEAST:
        value = getattr(getattr(cfg, section), name)
        if not math.isfinite(value) or value < low:
            raise ConfigError(f"{where}: {section}.{name} is {value}; it must be a finite number "
                              f"of at least {low}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``a.b=value``; the value is read as YAML (so 1e-3, true, [1, 2] work)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key.path=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(cfg: FlowTokConfig, overrides: list[str]) -> FlowTokConfig:
    """Return a new config with each ``a.b=value`` applied and type-checked."""
    data = to_dict(cfg)
    for text in overrides:
        path, value = parse_override(text)
        path = _current_path(path, text)
        node = data
        for i, part in enumerate(path[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a section")
            node = node[part]
        if path[-1] not in node:
            raise ConfigError(
                f"override {text!r}: unknown key {'.'.join(path)}; "
                f"valid keys here: {', '.join(sorted(node))}"
            )
        if isinstance(node[path[-1]], dict):
            raise ConfigError(f"override {text!r}: {'.'.join(path)} is a section, not a value")
        node[path[-1]] = value
    return config_from_dict(data, "overrides")


def _current_path(path: list[str], text: str) -> list[str]:
    """An override's key path with old key names (LEGACY_KEYS) replaced by the current ones."""
    cls: Any = FlowTokConfig
    out = []
    for part in path:
        if cls is not None:
            legacy = LEGACY_KEYS.get(cls.__name__, {})
            if part in legacy:
                if legacy[part] is None:
                    raise ConfigError(f"override {text!r}: {part} was removed (nothing read it)")
                part = legacy[part]
            tp = typing.get_type_hints(cls).get(part)
            cls = tp if dataclasses.is_dataclass(tp) else None
        out.append(part)
    return out


def resolve_config(
    preset: str | None = None, config_file: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
) -> FlowTokConfig:
    """Preset (default ``shapes``) <- YAML file (partial, deep-merged) <- ``--set`` overrides."""
    data = to_dict(load_preset(preset or "shapes"))
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found; pass an existing YAML file")
        data = _deep_merge(data, upgrade_keys(FlowTokConfig, _read_yaml(path.read_text(), str(path)),
                                              str(path)))
    cfg = config_from_dict(data, str(config_file) if config_file else "config")
    return apply_overrides(cfg, overrides or [])


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write a config as JSON (or YAML for a .yaml path) atomically: temp file, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    text = (
        yaml.safe_dump(data, sort_keys=False)
        if path.suffix in (".yaml", ".yml")
        else json.dumps(data, indent=2) + "\n"
    )
    write_text_atomic(path, text)
    return path


def load_config(path: str | os.PathLike) -> FlowTokConfig:
    """Read a config.json / .yaml written by ``save_config``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config not found")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e.msg})") from e
    else:
        data = _read_yaml(text, str(path))
    return config_from_dict(data, str(path))
