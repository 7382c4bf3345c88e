"""Does a text -> image flow use its source noise? (../shared/docs/diversity.md, issue 24)

For each prompt, n source draws x0 = mu + sigma * eps (the model's own floor and temperature):
- ``sigma`` / ``mu_dist``: the source's spread against the distance between prompts' mu;
- ``v0_gain``: |v(x0_i, 0) - v(x0_j, 0)| / |x0_i - x0_j| over pairs. At t = 0 the image is
  independent of eps given the caption, so the flow-matching optimum is v(x0, 0) = E[x1 | caption]
  - x0: a gain of 1 (the velocity cancels the noise, the one-step endpoint x0 + v ignores it) is
  what a well-trained flow shows; variety can only come from later times;
- ``end_spread``: mean pairwise distance of the Euler endpoints (normalised image latents);
- ``data_spread``: the same among the real latents with that caption (``--data``), the
  spread the endpoints should match; ``end_to_data`` is their ratio (1 = as varied as the data).

    python benchmarks/flow/source_sensitivity.py --model flowtok/default_model \
        --data data/emoji64/train "cat" "red apple" "rocket"
"""

from __future__ import annotations

import argparse
import json

import torch

from flowtok.flow.sampler import euler_sample
from flowtok.pipeline import FlowTokPipeline


def mean_pairwise(x: torch.Tensor) -> float:
    d = torch.cdist(x.flatten(1), x.flatten(1))
    return float(d.sum() / max(len(x) * (len(x) - 1), 1))


@torch.no_grad()
def measure(pipe: FlowTokPipeline, prompts: list[str], n: int, real: dict[str, torch.Tensor],
            temperature: float | None) -> dict:
    model = pipe.t2i
    temp = pipe.config.flow.temperature if temperature is None else temperature
    feats = pipe.text_encoder.encode(prompts)
    mean, logvar = model.projector(feats)
    sigma = (logvar.exp() + model.source_min_std**2).sqrt() * temp
    mu_d = torch.cdist(mean.flatten(1), mean.flatten(1))
    rows = []
    g = torch.Generator().manual_seed(0)
    for i, p in enumerate(prompts):
        eps = torch.randn((n, *mean.shape[1:]), generator=g)
        x0 = mean[i] + sigma[i] * eps
        cond = torch.zeros(n, dtype=torch.long)
        v0 = model.flow(x0, torch.zeros(n), cond).float()
        d_src = torch.cdist(x0.flatten(1), x0.flatten(1))
        d_v = torch.cdist(v0.flatten(1), v0.flatten(1))
        off = ~torch.eye(n, dtype=torch.bool)
        end = euler_sample(model.flow, x0, pipe.config.flow.steps)
        row = {"prompt": p, "sigma": float(sigma[i].mean()),
               "v0_gain": float((d_v[off] / d_src[off].clamp(min=1e-8)).mean()),
               "source_spread": mean_pairwise(x0), "end_spread": mean_pairwise(end)}
        if p in real and len(real[p]) > 1:
            row["data_spread"] = mean_pairwise(model.normalize(real[p]))
            row["end_to_data"] = row["end_spread"] / max(row["data_spread"], 1e-8)
        rows.append(row)
    off = ~torch.eye(len(prompts), dtype=torch.bool)
    return {"temperature": temp, "mu_dist_mean": float(mu_d[off].mean()) if len(prompts) > 1
            else None, "prompts": rows}


def real_latents(pipe: FlowTokPipeline, folder: str, prompts: list[str]) -> dict[str, torch.Tensor]:
    """Posterior means of the real images whose caption is one of ``prompts``."""
    from flowtok.data.imagefolder import load_folder

    loaded = load_folder(folder, pipe.tokenizer.cfg.image_size, None, pipe.tokenizer.cfg.background)
    out = {}
    for p in prompts:
        idx = [i for i, r in enumerate(loaded.records) if r.caption == p]
        if idx:
            out[p] = pipe.tokenizer.encode(torch.from_numpy(loaded.images[idx])).mean.float()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prompts", nargs="+")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=None, help="image folder with the prompts as captions")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--temperature", type=float, default=None)
    a = ap.parse_args()
    pipe = FlowTokPipeline.from_pretrained(a.model, device="cpu")
    real = real_latents(pipe, a.data, a.prompts) if a.data else {}
    print(json.dumps(measure(pipe, a.prompts, a.n, real, a.temperature), indent=1))


if __name__ == "__main__":
    main()
