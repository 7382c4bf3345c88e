"""Image -> text on emoji: is the flow's endpoint or the caption decoder the weak link?

Loads the EMA model of one checkpoint and, on 300 training images, reports the RMS error of the
flow endpoint against the true z_text (posterior mean), the nearest-caption retrieval of that
endpoint among every training caption's z_text (top 1 / 5: what a perfect decoder could reach),
and the decoder's exact-caption rate on the true z_text, on z_text plus noise, and on the endpoint.

    python benchmarks/flow/diagnose_i2t_emoji.py runs/i2t_emoji 1000 --tokenizer runs/tok_pca/model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from flowtok.config import load_config
from flowtok.data.latents import latents_from_folder
from flowtok.pipeline import load_direction
from flowtok.text.encoders import build_text_encoder
from flowtok.tokenizer.model import Tokenizer
from flowtok.train.flow_task import TextCache

N = 300


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("step", type=int)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--train", default="data/emoji64/train")
    ap.add_argument("--steps", type=int, default=20)
    a = ap.parse_args()
    cfg = load_config(a.run / "config.json")
    model = load_direction(cfg, a.run / "checkpoints" / f"step_{a.step}" / "ema_model.safetensors",
                           "i2t")
    tok = Tokenizer.from_pretrained(a.tokenizer)
    train = latents_from_folder(tok, a.train)
    enc = build_text_encoder(cfg.text.encoder, cfg.K, cfg.text.feature_dim, cfg.text.encoder_path)
    text = TextCache(enc, train.captions, torch.device("cpu"))
    names = list(text.index)
    zt = model.projector(text.feats.float())[0]  # (U, K, C) posterior means
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(train.captions), generator=g)[:N]
    truth = torch.tensor([text.index[train.captions[i]] for i in idx.tolist()])
    end = model.latent_to_text_latent(train.mean[idx], a.steps)
    err = (end - zt[truth]).pow(2).mean().sqrt()
    d = torch.cdist(end.flatten(1), zt.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    rank = (d < d.gather(1, truth[:, None])).sum(1)
    nn_other = torch.cdist(zt[truth].flatten(1), zt.flatten(1)).topk(2, largest=False).values[:, 1]

    def exact(z: torch.Tensor) -> float:
        out = enc.tokenizer.decode_ids(model.decoder.decode(z))
        return sum(o == names[t] for o, t in zip(out, truth.tolist())) / len(out)

    noise = torch.randn(zt[truth].shape, generator=g)
    row = {"run": str(a.run), "step": a.step, "endpoint_rms_error": float(err),
           "z_text_rms": float(zt.pow(2).mean().sqrt()),
           "nearest_other_caption_rms": float((nn_other / (cfg.K * cfg.C) ** 0.5).mean()),
           "endpoint_retrieval_top1": float((rank < 1).float().mean()),
           "endpoint_retrieval_top5": float((rank < 5).float().mean()),
           "decoder_exact_true": exact(zt[truth]),
           "decoder_exact_noise_0.25": exact(zt[truth] + 0.25 * noise),
           "decoder_exact_noise_0.5": exact(zt[truth] + 0.5 * noise),
           "endpoint_rms": float(end.pow(2).mean().sqrt()),
           "decoder_exact_endpoint": exact(end),
           # z_text is RMS-normalised per sample: put the endpoint back on that sphere
           "decoder_exact_endpoint_rms_normalised": exact(
               end / end.pow(2).mean(dim=(1, 2), keepdim=True).sqrt())}
    print(json.dumps(row))


if __name__ == "__main__":
    main()
