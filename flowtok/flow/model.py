"""One direction of FlowTok: text projector + flow transformer (+ caption decoder for image-to-text).

text-to-image (t2i): x0 = z_text ~ projector(text features), x1 = normalised image latent.
image-to-text (i2t): x0 = normalised image latent, x1 = z_text; a caption decoder reads z_text.
Image latents are normalised per channel, (z - mean) / std, with statistics measured on the
training latents and stored as buffers (the paper's single scale factor is the special case
mean = 0, std = 1 / scale).
"""

from __future__ import annotations

import torch
from torch import nn

from flowtok.config import FlowTokConfig
from flowtok.errors import ConfigError
from flowtok.flow.objective import cfg_indicator, flow_loss, sample_timesteps, stratified_noise
from flowtok.flow.sampler import euler_sample
from flowtok.flow.transformer import FlowTransformer
from flowtok.text.decoder import CaptionDecoder
from flowtok.text.projector import TextProjector, gaussian_kl, perturb_features

DIRECTIONS = ("t2i", "i2t")
LATENT_STATS = ("channel", "element")


class TextImageFlow(nn.Module):
    def __init__(self, cfg: FlowTokConfig, direction: str = "t2i", vocab_ids: torch.Tensor | None = None):
        super().__init__()
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if cfg.text.align_target not in ("text", "image"):
            raise ConfigError(f"text.align_target must be text or image, got {cfg.text.align_target!r}")
        if direction == "i2t" and cfg.flow.styles:
            raise ConfigError("flow.styles is for text -> image; an image -> text model has none")
        self.cfg, self.direction = cfg, direction
        K, C = cfg.K, cfg.C
        self.projector = TextProjector(cfg.text, K, C)
        self.flow = FlowTransformer(cfg.flow, K, C)
        if cfg.flow.latent_stats not in LATENT_STATS:
            raise ConfigError(f"flow.latent_stats must be one of {LATENT_STATS}, got "
                              f"{cfg.flow.latent_stats!r}")
        shape = (C,) if cfg.flow.latent_stats == "channel" else (K, C)
        self.register_buffer("latent_mean", torch.zeros(shape))
        self.register_buffer("latent_std", torch.full(shape, 1.0 / cfg.tokenizer.scale_factor))
        self.decoder = None
        if direction == "i2t":
            if vocab_ids is None:
                raise ValueError("an image-to-text model needs the caption vocabulary (vocab_ids)")
            self.decoder = CaptionDecoder(cfg.text, K, C, vocab_ids)

    # ----------------------------------------------------------------------- latent normalisation
    def set_latent_stats(self, latents: torch.Tensor) -> None:
        """Measure per-channel (or per-element) statistics on training latents (n, K, C); or
        keep the scale factor."""
        if self.cfg.flow.normalize_latents:
            flat = latents.float().reshape(-1, *self.latent_mean.shape)  # (n or n K, C or K C)
            self.latent_mean.copy_(flat.mean(0))
            self.latent_std.copy_(flat.std(0).clamp(min=1e-4))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latent_mean) / self.latent_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.latent_std + self.latent_mean

    # ----------------------------------------------------------------------- training
    def loss(self, feats: torch.Tensor, z_img: torch.Tensor, ids: torch.Tensor | None = None,
             generator: torch.Generator | None = None,
             source_bins: tuple[torch.Tensor, torch.Tensor] | None = None,
             styles: torch.Tensor | None = None, anchor: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
        """feats (B, K, D) text features, z_img (B, K, C) image latents (a posterior sample),
        ids (B, K) caption token ids (i2t only), source_bins (lo, hi) (B,) quantile bins of the
        source noise's first coordinate (``train_flow.stratified_source``), styles (B,) each
        image's style index (models with ``flow.styles``), anchor (B, K, D) the features of the
        data's own caption where ``feats`` are another wording of it (``text.wording_weight``).
        Returns (total loss, logged parts)."""
        tc, fc = self.cfg.text, self.cfg.flow
        B, dev = feats.shape[0], feats.device
        if tc.feature_noise > 0 and self.direction == "t2i":
            feats = perturb_features(feats, tc.feature_noise, generator)
        mean, logvar = self.projector(feats)
        if source_bins is None:
            noise = torch.randn(mean.shape, generator=generator, device=dev)
        else:
            noise = stratified_noise(tuple(mean.shape), *source_bins, generator=generator, device=dev)
        z_text = TextProjector.sample(mean, logvar, noise, self.source_min_std)
        x_img = self.normalize(z_img)
        indicator, perm = cfg_indicator(B, fc.null_prob, generator, dev)
        t = sample_timesteps(B, fc.timestep_sampling, generator, dev, fc.timestep_loc, fc.timestep_scale)
        if self.direction == "t2i":
            x0, x1 = z_text, x_img[perm]
        else:
            x0, x1 = x_img, z_text[perm]
        # a style belongs to its image: a null sample's target is another image, so is its style
        lf = flow_loss(self.velocity(None if styles is None else styles[perm]), x0, x1, t,
                       indicator, fc.sigma_min)
        kl = gaussian_kl(mean, logvar)
        total = lf + tc.kl_weight * kl
        logs = {"flow": lf.item(), "kl": kl.item()}
        # the paper aligns only text -> image (gamma_2 = 0 for captions); aligning z_text with
        # its image latent also serves image -> text, where it shortens the flow's path
        if tc.align_weight > 0 and (self.direction == "t2i" or tc.align_target == "image"):
            image = x_img if tc.align_target == "image" else None
            la = self.projector.alignment_loss(feats, z_text, image)
            total = total + tc.align_weight * la
            logs["align"] = la.item()
        if tc.align_mse_weight > 0 and self.direction == "t2i":
            lm = (mean - x_img.detach()).pow(2).mean()
            total = total + tc.align_mse_weight * lm
            logs["align_mse"] = lm.item()
        if anchor is not None and tc.wording_weight > 0 and self.direction == "t2i":
            with torch.no_grad():  # the caption's own mean is the target, not pulled towards wordings
                target = self.projector(anchor)[0]
            lw = (mean - target).pow(2).mean()
            total = total + tc.wording_weight * lw
            logs["wording"] = lw.item()
        if self.direction == "i2t":
            z_dec = z_text
            if tc.decoder_noise > 0:  # the decoder will read the flow's output, not the true z_text
                z_dec = z_text + tc.decoder_noise * torch.randn(z_text.shape, generator=generator, device=dev)
            ce = self.decoder.loss(z_dec, ids)
            total = total + tc.caption_weight * ce
            logs["ce"] = ce.item()
        logs["loss"] = total.item()
        return total, logs

    # ----------------------------------------------------------------------- styles
    @property
    def num_styles(self) -> int:
        return len(self.cfg.flow.styles)

    def velocity(self, styles: torch.Tensor | None):
        """The flow as a function of (x, t, indicator), with each sample's style bound; a batch
        twice as long (conditional and null passes side by side) repeats the styles."""
        if self.flow.style is None:
            if styles is not None:
                raise ValueError("this flow model has no styles (flow.styles is empty)")
            return self.flow
        if styles is None:
            raise ValueError(f"this flow model has styles {list(self.cfg.flow.styles)}: pass one "
                             "index per sample")

        def v(x: torch.Tensor, t: torch.Tensor, indicator: torch.Tensor) -> torch.Tensor:
            s = styles.to(x.device)
            return self.flow(x, t, indicator, s.repeat(len(x) // len(s)))

        return v

    # ----------------------------------------------------------------------- inference
    def text_latent(self, feats: torch.Tensor, noise: torch.Tensor | None,
                    temperature: float | None = None) -> torch.Tensor:
        """z_text (B, K, C): a posterior sample (noise given, scaled by ``temperature``, default
        flow.temperature) or the posterior mean (noise None)."""
        mean, logvar = self.projector(feats)
        if noise is None:
            return mean
        scale = self.cfg.flow.temperature if temperature is None else temperature
        return TextProjector.sample(mean, logvar, noise * scale, self.source_min_std)

    @property
    def source_min_std(self) -> float:
        """Std floor of z_text: only where z_text is the flow's source (text -> image)."""
        return self.cfg.text.min_std if self.direction == "t2i" else 0.0

    @torch.no_grad()
    def text_to_latent(self, feats: torch.Tensor, noise: torch.Tensor | None, steps: int,
                       guidance: float, progress=None, temperature: float | None = None,
                       styles: torch.Tensor | None = None) -> torch.Tensor:
        """Text features (B, K, D) -> image latent (B, K, C) for the tokenizer's decoder.
        ``styles`` (B,): style indices (models with styles; None: sample i takes style i mod
        the number of styles)."""
        if self.num_styles and styles is None:
            styles = torch.arange(len(feats), device=feats.device) % self.num_styles
        x1 = euler_sample(self.velocity(styles), self.text_latent(feats, noise, temperature),
                          steps, guidance, progress)
        return self.denormalize(x1)

    @torch.no_grad()
    def latent_to_text_latent(self, z_img: torch.Tensor, steps: int,
                              guidance: float = 1.0) -> torch.Tensor:
        """Image latent (B, K, C) -> the flow's z_text estimate (B, K, C), the caption decoder's
        input."""
        return euler_sample(self.flow, self.normalize(z_img), steps, guidance)

    @torch.no_grad()
    def latent_to_ids(self, z_img: torch.Tensor, steps: int, guidance: float = 1.0) -> torch.Tensor:
        """Image latent (B, K, C) -> caption token ids (B, K) of the text encoder."""
        return self.decoder.decode(self.latent_to_text_latent(z_img, steps, guidance))
