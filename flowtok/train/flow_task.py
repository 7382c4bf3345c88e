"""The flow model as a TrainTask: text -> image (t2i) or image -> text (i2t) on image latents.

Data: image latents as tokenizer posteriors (mean, logvar; a fresh sample every step, as the
reference code does) plus captions. Text features are computed once per distinct caption and
cached (the encoder is frozen), so a step costs only the projector and flow model.
Evaluation: for shapes data, ShapesEval on generated images (t2i) and caption accuracy on held-out
images (i2t); for any data, the flow loss on held-out latents.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flowtok.config import FlowTokConfig
from flowtok.data.latents import LatentSet, stream_head
from flowtok.flow.model import TextImageFlow
from flowtok.tokenizer.model import Tokenizer, to_uint8_images
from flowtok.train.tokenizer_task import epoch_indices

GRID_PROMPTS = 16  # prompts in the periodic sample grid
GRID_ZOOM = 2
TEXT_BATCH = 256  # captions encoded per text-encoder call when filling the cache
RECALL_SAMPLES = 200  # training captions/latents scored by the recall metrics (non-shapes data)


class TextCache:
    """Frozen text features and token ids for every distinct caption, looked up by index."""

    def __init__(self, encoder, captions: list[str], device: torch.device):
        self.index = {c: i for i, c in enumerate(dict.fromkeys(captions))}
        unique = list(self.index)
        feats, ids = [], []
        for i in range(0, len(unique), TEXT_BATCH):
            chunk = unique[i:i + TEXT_BATCH]
            feats.append(encoder.encode(chunk).half().cpu())
            ids.append(encoder.tokenize(chunk)[0])
        self.feats = torch.cat(feats).to(device)  # (U, K, D) fp16
        self.ids = torch.cat(ids).to(device)  # (U, K) long

    def lookup(self, captions: list[str]) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in captions], dtype=torch.long)


def caption_vocabulary(ids: torch.Tensor, special_ids: list[int]) -> torch.Tensor:
    """Sorted token ids the caption decoder can emit: those in the training captions + specials."""
    return torch.unique(torch.cat([ids.flatten().cpu(), torch.tensor(special_ids, dtype=torch.long)]))


def caption_bins(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) per image: image j (in data order) of the k sharing its caption gets the
    quantile bin [j / k, (j + 1) / k) (``train_flow.stratified_source``)."""
    count = Counter(captions)
    seen: Counter[str] = Counter()
    lo, hi = [], []
    for c in captions:
        j, k = seen[c], count[c]
        seen[c] += 1
        lo.append(j / k)
        hi.append((j + 1) / k)
    return torch.tensor(lo, dtype=torch.float32), torch.tensor(hi, dtype=torch.float32)


class FlowTask:
    """Trains one direction of FlowTok (``t2i`` or ``i2t``) on a LatentSet."""

    def __init__(self, cfg: FlowTokConfig, direction: str, tokenizer: Tokenizer, text_encoder,
                 train: LatentSet, val: LatentSet | None = None,
                 eval_prompts: list[str] | None = None, device: torch.device | str = "cpu",
                 init: TextImageFlow | None = None):
        """``train``: a LatentSet in memory, or a webdataset ``SlotStreams`` of latents
        (decoding to webdataset.latent_sample tuples), streamed with captions encoded per batch
        (statistics and the i2t vocabulary then come from its first samples; caption tokens
        outside that vocabulary are ignored by the caption loss).

        ``init``: start from this model's weights. With ``train_flow.decoder_only`` (i2t, needs
        ``init``) the projector and flow are frozen and the caption decoder trains on the flow's
        own Euler endpoints of the training latents (half of each batch) and on noisy true z_text
        (the other half): the endpoint's error is not isotropic noise, and a decoder that has
        only seen z_text + noise misreads it (benchmarks/RESULTS.md, emoji image -> text)."""
        self.cfg, self.tcfg, self.direction = cfg, cfg.train_flow, direction
        self.device = torch.device(device)
        self.tokenizer = tokenizer.eval().requires_grad_(False).to(self.device)
        self.encoder = text_encoder.to(self.device)
        self.stream = None if isinstance(train, LatentSet) else train
        if self.stream is not None:
            train = stream_head(self.stream)
        self.train, self.val, self.eval_prompts = train, val, eval_prompts
        self.templates = tuple(self.tcfg.caption_templates)
        self.paraphrases = self.tcfg.caption_paraphrases
        if self.templates or self.paraphrases:
            from flowtok.errors import ConfigError
            from flowtok.text.templates import check_templates

            check_templates(self.templates)
            if direction != "t2i":
                raise ConfigError("train_flow.caption_templates / caption_paraphrases are for "
                                  "--task t2i (an image -> text model would learn to write them)")
            if self.templates and self.paraphrases:
                raise ConfigError("train_flow.caption_templates and caption_paraphrases are "
                                  "two ways to vary captions: set one")
        self.n_variants = len(self.templates) or max(self.paraphrases, 1)
        self.style = None
        if self.paraphrases:
            from flowtok.data.shapes_wordings import training_style
            from flowtok.errors import ConfigError

            try:
                self.style = training_style(self.tcfg.caption_style)
            except ValueError as e:  # an unknown name: say which setting holds it
                raise ConfigError(f"train_flow.caption_style: {e}") from None
        share = self.tcfg.caption_share
        if share is not None and (self.paraphrases < 2 or not 0.0 <= share <= 1.0):
            from flowtok.errors import ConfigError

            raise ConfigError(f"train_flow.caption_share={share} needs caption_paraphrases >= 2 "
                              "and a share in [0, 1]")
        self.source_bins = None
        if self.tcfg.stratified_source:
            from flowtok.errors import ConfigError

            if direction != "t2i" or self.stream is not None:
                raise ConfigError("train_flow.stratified_source is for --task t2i on an image "
                                  "folder (not streamed shards): it ranks the images of a caption")
            self.source_bins = caption_bins(train.captions)
        per_caption = {c: self.variants(c) for c in dict.fromkeys(train.captions)}  # once each
        variants = [per_caption[c] for c in train.captions]  # (n, T) captions
        all_caps = ([v for vs in variants for v in vs] + train.captions + (val.captions if val else [])
                    + (eval_prompts or []))
        self.text = TextCache(self.encoder, all_caps, self.device)
        # (n, T) cache rows: column j = template j of the training caption
        self.train_text = torch.stack([self.text.lookup(vs) for vs in variants]) if variants \
            else torch.zeros(0, 1, dtype=torch.long)
        vocab = None
        if direction == "i2t":
            vocab = caption_vocabulary(self.text.ids, self.encoder.tokenizer.special_ids)
        with torch.random.fork_rng(devices=[]):  # initial weights depend on the seed alone
            torch.manual_seed(self.tcfg.seed)
            self.model = TextImageFlow(cfg, direction, vocab_ids=vocab)
        self.model.set_latent_stats(train.mean)
        if self.model.num_styles and (train.styles is None or (val is not None and val.styles is None)):
            from flowtok.errors import ConfigError

            raise ConfigError("flow.styles is set but the data carry no style per image: set "
                              "flow.style_key to their metadata.jsonl field")
        if init is not None:
            self.load_init(init)
        self.endpoints = None
        if self.tcfg.decoder_only:
            from flowtok.errors import ConfigError

            if direction != "i2t" or init is None or self.stream is not None:
                raise ConfigError("train_flow.decoder_only needs --task i2t, --init MODEL and "
                                  "an image folder (not streamed shards)")
            self.model.projector.requires_grad_(False)
            self.model.flow.requires_grad_(False)
            self.endpoints = self.flow_endpoints(self.model, self.train.mean)

    def load_init(self, init: TextImageFlow) -> None:
        """Start from ``init``'s weights; a model without styles may start one with styles (the
        new style embedding stays zero: at first every style draws what ``init`` drew)."""
        from flowtok.errors import CheckpointError

        state = init.state_dict()
        try:
            missing, unexpected = self.model.load_state_dict(state, strict=False)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise CheckpointError(f"--init model does not match this config/data ({first})")
        allowed = {"flow.style.weight"} if init.flow.style is None else set()
        if set(missing) - allowed or unexpected:
            raise CheckpointError("--init model does not match this config/data (missing "
                                  f"{sorted(set(missing) - allowed)[:3]}, unexpected {unexpected[:3]})")

    def variants(self, caption: str) -> list[str]:
        """The caption's training wordings: every template, or the caption and its
        ``caption_paraphrases - 1`` paraphrases, or just the caption."""
        if self.paraphrases:
            from flowtok.data.shapes_wordings import training_variants

            return training_variants(caption, self.paraphrases, self.tcfg.seed, self.style)
        from flowtok.text.templates import apply_template

        return [apply_template(t, caption) for t in self.templates] or [caption]

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def batch(self, step: int, generator: torch.Generator, slot: int = 0, slots: int = 1
              ) -> dict[str, Any]:
        """Slot ``slot`` of ``slots`` (ranks x micro-batches) of the step's global batch; the
        noise is drawn for the whole global batch, so a sample's draw does not depend on slots."""
        B = self.tcfg.batch_size
        if self.stream is not None:
            rows = self.stream.take(step, B, slot, slots)
            mean, logvar = torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])
            eps = torch.randn((B * slots, *mean.shape[1:]), generator=generator)
            z = mean + torch.exp(0.5 * logvar) * eps[slot * B:(slot + 1) * B]
            pick = self.pick_templates(B * slots, generator)[slot * B:(slot + 1) * B]
            captions = [self.variants(r[2])[j] for r, j in zip(rows, pick.tolist())]
            return {"z": z, "captions": captions,
                    "seed": int(torch.randint(0, 2**62, (1,), generator=generator)) + slot}
        idx = epoch_indices(len(self.train.mean), B * slots, step, self.tcfg.seed)
        eps = torch.randn(self.train.mean[idx].shape, generator=generator)
        pick = self.pick_templates(B * slots, generator)
        idx, eps, pick = (idx[slot * B:(slot + 1) * B], eps[slot * B:(slot + 1) * B],
                          pick[slot * B:(slot + 1) * B])
        z = self.train.mean[idx] + torch.exp(0.5 * self.train.logvar[idx]) * eps
        out = {"z": z, "text": self.train_text[idx, pick],
               "anchor": self.train_text[idx, 0],
               "seed": int(torch.randint(0, 2**62, (1,), generator=generator)) + slot}
        if self.endpoints is not None:
            out["end"] = self.endpoints[idx]
        if self.source_bins is not None:
            out["bins"] = (self.source_bins[0][idx], self.source_bins[1][idx])
        if self.train.styles is not None and self.model.num_styles:
            out["styles"] = self.train.styles[idx]
        return out

    def pick_templates(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n,) wording columns for a global batch; no draw at all with one wording, so
        runs without templates or paraphrases keep their random stream. Column 0 is the data's
        own caption: drawn with probability ``caption_share`` when that is set."""
        if self.n_variants == 1:
            return torch.zeros(n, dtype=torch.long)
        share = self.tcfg.caption_share
        if share is None:
            return torch.randint(0, self.n_variants, (n,), generator=generator)
        own = torch.rand(n, generator=generator) < share
        other = torch.randint(1, self.n_variants, (n,), generator=generator)
        return torch.where(own, torch.zeros_like(other), other)

    def loss(self, batch: dict[str, Any], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if "captions" in batch:  # streamed: the frozen encoder runs on this batch's captions
            with torch.no_grad():
                feats = self.encoder.encode(batch["captions"]).half().float()  # as TextCache
                ids = self.encoder.tokenize(batch["captions"])[0].to(self.device)
        else:
            feats, ids = self.text.feats[batch["text"]].float(), self.text.ids[batch["text"]]
        g = torch.Generator(device=self.device).manual_seed(batch["seed"])
        if "end" in batch:
            return self.endpoint_decoder_loss(feats, batch["end"], ids, g)
        styles = batch.get("styles")
        anchor = None
        if "anchor" in batch and self.cfg.text.wording_weight > 0 and self.n_variants > 1:
            anchor = self.text.feats[batch["anchor"]].float()
        return self.model.loss(feats, batch["z"], ids, g, source_bins=batch.get("bins"),
                               styles=None if styles is None else styles.to(self.device),
                               anchor=anchor)

    def endpoint_decoder_loss(self, feats: torch.Tensor, end: torch.Tensor, ids: torch.Tensor,
                              g: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Caption loss of the decoder alone: half the batch reads the flow's endpoints, half
        the true z_text (posterior mean) plus the usual decoder noise."""
        dec, h = self.model.decoder, len(end) // 2
        with torch.no_grad():
            z_true = self.model.projector(feats[h:])[0]
        noise = torch.randn(z_true.shape, generator=g, device=z_true.device)
        ce_end = dec.loss(end[:h], ids[:h])
        ce_true = dec.loss(z_true + self.cfg.text.decoder_noise * noise, ids[h:])
        total = 0.5 * (ce_end + ce_true)
        return total, {"loss": total.item(), "ce_endpoint": ce_end.item(),
                       "ce_true": ce_true.item()}

    @torch.no_grad()
    def flow_endpoints(self, model: TextImageFlow, mean: torch.Tensor) -> torch.Tensor:
        """The frozen i2t flow's Euler endpoints (z_text estimates) of image latents, as the
        captioner computes them (the model's steps and caption guidance)."""
        fc, out = self.cfg.flow, []
        for i in range(0, len(mean), 256):
            out.append(model.latent_to_text_latent(mean[i:i + 256].to(self.device), fc.steps,
                                                   fc.caption_guidance).cpu())
        return torch.cat(out)

    # ----------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def generate(self, model: TextImageFlow, prompts: list[str], seed: int = 0,
                 steps: int | None = None, guidance: float | None = None) -> np.ndarray:
        """Prompts -> uint8 images (n, S, S, 3) with the given (EMA) model."""
        fc = self.cfg.flow
        out = []
        for i in range(0, len(prompts), 128):
            chunk = prompts[i:i + 128]
            feats = self.text.feats[self.text.lookup(chunk)].float()
            K, C = self.cfg.K, self.cfg.C
            noise = torch.stack([torch.randn(K, C, generator=torch.Generator().manual_seed(seed + i + j))
                                 for j in range(len(chunk))]).to(self.device)
            lat = model.text_to_latent(feats, noise, steps or fc.steps,
                                       fc.guidance if guidance is None else guidance)
            out.append(to_uint8_images(self.tokenizer.decode(lat)))
        return np.concatenate(out)

    @torch.no_grad()
    def caption_latents(self, model: TextImageFlow, mean: torch.Tensor, steps: int | None = None) -> list[str]:
        ids = []
        for i in range(0, len(mean), 256):
            ids.append(model.latent_to_ids(mean[i:i + 256].to(self.device), steps or self.cfg.flow.steps,
                                           self.cfg.flow.caption_guidance).cpu())
        return self.encoder.tokenizer.decode_ids(torch.cat(ids))

    @torch.no_grad()
    def evaluate(self, ema_modules: dict[str, nn.Module], step: int) -> dict[str, float]:
        from flowtok.eval import shapes_eval

        model = ema_modules["model"].eval()
        metrics: dict[str, float] = {}
        if self.val is not None:
            g = torch.Generator(device=self.device).manual_seed(0)
            n = min(len(self.val.mean), 512)
            text = self.text.lookup(self.val.captions[:n])
            z = self.val.mean[:n].to(self.device)
            styles = self.val.styles[:n].to(self.device) if model.num_styles else None
            _, logs = model.loss(self.text.feats[text].float(), z, self.text.ids[text], g,
                                 styles=styles)
            metrics["val_flow"] = logs["flow"]
        if self.direction == "t2i" and self.eval_prompts:
            images = self.generate(model, self.eval_prompts)
            scores = shapes_eval.score_images(list(images), self.eval_prompts)
            metrics.update({f"shapes_{k}": float(v) for k, v in scores.items()
                            if isinstance(v, float)})
        if self.stream is None and not self.eval_prompts:
            metrics.update(self.training_recall(model))
        if self.direction == "i2t" and self.val is not None:
            n = min(len(self.val.mean), 300)
            caps = self.caption_latents(model, self.val.mean[:n])
            truth = self.val.captions[:n]
            metrics["caption_exact"] = float(np.mean([c == t for c, t in zip(caps, truth)]))
            if shapes_eval.parse_caption(truth[0]) is not None:
                metrics["caption_all_correct"] = float(np.mean(
                    [shapes_eval.caption_matches(c, t) for c, t in zip(caps, truth)]))
        model.train()
        return metrics

    @torch.no_grad()
    def training_recall(self, model: TextImageFlow) -> dict[str, float]:
        """How well the model reproduces its own training pairs, in latent space (no decoding):
        t2i: is a caption's generated latent nearest (top 1 / 5) to that caption's real latents;
        i2t: is a training latent's caption exactly its own. On data without a compositional
        judge (emoji: one name per emoji) this is the cheap stand-in for `flowtok eval emoji`."""
        g = torch.Generator().manual_seed(0)
        caps = self.train.captions
        if self.direction == "i2t":
            idx = torch.randperm(len(caps), generator=g)[:RECALL_SAMPLES]
            out = self.caption_latents(model, self.train.mean[idx])
            return {"train_caption_exact": float(np.mean(
                [o == caps[i] for o, i in zip(out, idx.tolist())]))}
        from flowtok.eval.emoji_eval import nearest_emoji_scores, topk_ranks

        names = list(dict.fromkeys(caps))
        index = {c: i for i, c in enumerate(names)}
        chosen = [names[i] for i in torch.randperm(len(names), generator=g)[:RECALL_SAMPLES]]
        feats = self.text.feats[self.text.lookup(chosen)].float()
        K, C, fc = self.cfg.K, self.cfg.C, self.cfg.flow
        noise = torch.randn(len(chosen), K, C, generator=g).to(self.device)
        lat = model.text_to_latent(feats, noise, fc.steps, fc.guidance).flatten(1).float().cpu()
        real_idx = torch.tensor([index[c] for c in caps])
        scores = nearest_emoji_scores(lat, self.train.mean.flatten(1), real_idx, len(names))
        own = torch.tensor([index[c] for c in chosen])
        ranks = topk_ranks(scores, own)
        # how far the sample lands from its nearest own latent, relative to the norm of the
        # caption's first latent: retrieval can be right while the picture is still a blur
        nearest = -scores.gather(1, own[:, None]).squeeze(1)
        first = {c: i for i, c in reversed(list(enumerate(caps)))}
        norm = self.train.mean.flatten(1)[[first[c] for c in chosen]].norm(dim=1)
        return {"train_latent_top1": float((ranks < 1).float().mean()),
                "train_latent_top5": float((ranks < 5).float().mean()),
                "train_latent_rel_err": float((nearest / norm).median())}

    def samples(self, ema_modules: dict[str, nn.Module], step: int) -> Any:
        if self.direction != "t2i":
            return None
        from PIL import Image

        prompts = (self.eval_prompts or self.train.captions)[:GRID_PROMPTS]
        model = ema_modules["model"].eval()
        images = self.generate(model, prompts)
        model.train()
        cols = 8
        rows = [np.concatenate(list(images[r:r + cols]), axis=1) for r in range(0, len(images), cols)]
        if len(rows) > 1 and rows[-1].shape != rows[0].shape:
            pad = np.zeros_like(rows[0])
            pad[:, : rows[-1].shape[1]] = rows[-1]
            rows[-1] = pad
        grid = Image.fromarray(np.concatenate(rows, axis=0))
        return grid.resize((grid.width * GRID_ZOOM, grid.height * GRID_ZOOM), Image.NEAREST)

    def export(self, ema_modules: dict[str, nn.Module], out_dir: Path) -> None:
        """Write a pipeline folder (tokenizer + this direction) to out_dir/model."""
        from flowtok.pipeline import FlowTokPipeline

        m = ema_modules["model"]
        pipe = FlowTokPipeline(self.cfg, self.tokenizer, t2i=m if self.direction == "t2i" else None,
                               i2t=m if self.direction == "i2t" else None, text_encoder=self.encoder,
                               device=self.device)
        pipe.save_pretrained(Path(out_dir) / "model")
