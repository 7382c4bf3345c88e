"""Text-side probe for unseen wordings (issue 24, bar d): which text features carry a scene to
held-out wordings, measured in minutes instead of a 100-minute flow run.

The flow's source is z_text, the text projector's output (16 x 8 numbers). If a held-out
wording's z_text does not say which colour, shape, size and place it means, no flow can draw it.
This trains the same TextProjector as the `varied` preset, plus linear heads on its flattened,
RMS-normalised mean, to classify the scene (objects, colour, shape, size, cell of each) from the
training wordings the flow trains on (``training_variants(caption, P, seed=0)`` of the training
data's captions), then scores exact scene recovery on both held-out wording sets, by kind, and on
fresh training-style paraphrases (in-distribution). Feature variants:

- ``last``: MiniLM's last layer with its pooled sentence embedding in slot 0 (the preset);
- ``layerN``: the output of layer N (1-6) instead, pooled token likewise;
- ``cat36``: layers 3 and 6 side by side (768 features);
- ``tune1``: ``last`` with MiniLM's top layer trained too (lr x 0.1), from cached layer-5 states.

    python benchmarks/flow/text_probe.py --data data/shapes_p50/train --variants last layer4 tune1

Prints one JSON line per (variant, seed). A proxy: the flow's projector is trained by the flow's
loss, not by a classifier; use it to rank text features, then confirm with a flow run.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from heldout_wordings import scene_kind  # this folder's scripts (run as a script, on sys.path)
from torch import nn

from flowtok.config import TextConfig
from flowtok.data.imagefolder import read_captions
from flowtok.data.shapes import PALETTE, POSITIONS, SHAPES, SIZES, canonical_prompts, parse_caption
from flowtok.data.shapes_wordings import HELDOUT_STYLES, heldout_prompts, training_variants
from flowtok.text.base import with_pooled_token
from flowtok.text.encoders import load_minilm

LENGTH = 16  # the presets' text length (K)
CHANNELS = 8  # the presets' token channels (C)
HEADS = {  # head -> classes; index len(values) = "not stated / no such object"
    "count": ["one", "two"],
    "a_color": list(PALETTE), "a_shape": list(SHAPES), "a_size": list(SIZES), "a_pos": list(POSITIONS),
    "b_color": list(PALETTE), "b_shape": list(SHAPES),
}


def labels(caption: str) -> dict[str, int]:
    """Class index per head for a canonical caption (two objects: a = left, b = right)."""
    specs = parse_caption(caption)
    if specs is None:
        raise ValueError(f"{caption!r} is not a shapes caption")
    none = {h: len(v) for h, v in HEADS.items()}
    a = specs[0]
    out = dict(none, count=len(specs) - 1, a_color=HEADS["a_color"].index(a.color),
               a_shape=HEADS["a_shape"].index(a.shape))
    if len(specs) == 1:
        if a.size is not None:
            out["a_size"] = HEADS["a_size"].index(a.size)
        if a.position is not None:
            out["a_pos"] = HEADS["a_pos"].index(a.position)
    else:
        b = specs[1]
        out["b_color"], out["b_shape"] = HEADS["b_color"].index(b.color), HEADS["b_shape"].index(b.shape)
    return out


def label_tensor(captions: list[str]) -> torch.Tensor:
    return torch.tensor([[labels(c)[h] for h in HEADS] for c in captions], dtype=torch.long)


@torch.no_grad()
def hidden_states(encoder, prompts: list[str]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Every layer's output [(N, K, D)] * 6 (index 0 = layer 1) and the attention mask (N, K)."""
    outs: list[list[torch.Tensor]] = [[] for _ in encoder.layers]
    masks = []
    for i in range(0, len(prompts), 512):
        ids, mask = encoder.tokenize(prompts[i:i + 512])
        for j, x in enumerate(encoder.hidden_states(ids, mask)):
            outs[j].append(x)
        masks.append(mask)
    return [torch.cat(o) for o in outs], torch.cat(masks)


class Probe(nn.Module):
    """[MiniLM top layer] -> TextProjector (the preset's) -> flattened normalised mean -> heads."""

    def __init__(self, feature_dim: int, top_layer: nn.Module | None):
        super().__init__()
        from flowtok.text.projector import TextProjector

        cfg = TextConfig(feature_dim=feature_dim, normalize_latent=True)
        self.top = top_layer
        self.proj = TextProjector(cfg, LENGTH, CHANNELS)
        self.heads = nn.ModuleDict({h: nn.Linear(LENGTH * CHANNELS, len(v) + 1) for h, v in HEADS.items()})

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.top is not None:
            feats = with_pooled_token(self.top(feats, mask.bool()[:, None, None, :]), mask)
        mean, _ = self.proj(feats)
        z = mean.flatten(1)
        return {h: head(z) for h, head in self.heads.items()}


def features(variant: str, states: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """The probe's input for a variant (tune1: the raw layer-5 states; its top layer adds the rest)."""
    if variant in ("last", "tune1"):
        x = states[5 if variant == "last" else 4]
        return with_pooled_token(x, mask) if variant == "last" else x
    if variant.startswith("layer"):
        return with_pooled_token(states[int(variant[5:]) - 1], mask)
    if variant == "cat36":
        return torch.cat([with_pooled_token(states[2], mask), with_pooled_token(states[5], mask)], -1)
    raise ValueError(f"unknown variant {variant!r}")


def exact(logits: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
    """(N,) bool: every head right (heads of an absent object must say 'none' too)."""
    ok = torch.ones(len(y), dtype=torch.bool)
    for j, h in enumerate(HEADS):
        ok &= logits[h].argmax(-1) == y[:, j]
    return ok


def head_accuracy(logits: dict[str, torch.Tensor], y: torch.Tensor, kinds: np.ndarray) -> dict:
    """Per kind, each head's accuracy: which attribute a wording loses (e.g. sides swapped)."""
    out = {}
    for kd in ("full", "two", "partial"):
        sel = torch.from_numpy(kinds == kd)
        if sel.any():
            out[kd] = {h: round(float((logits[h][sel].argmax(-1) == y[sel, j]).float().mean()), 3)
                       for j, h in enumerate(HEADS)}
    two = torch.from_numpy(kinds == "two")
    if two.any():  # both objects recovered but on the wrong sides
        names = list(HEADS)
        pick = {h: logits[h][two].argmax(-1) for h in ("a_color", "a_shape", "b_color", "b_shape")}
        yt = {h: y[two, names.index(h)] for h in pick}
        swapped = ((pick["a_color"] == yt["b_color"]) & (pick["a_shape"] == yt["b_shape"])
                   & (pick["b_color"] == yt["a_color"]) & (pick["b_shape"] == yt["a_shape"]))
        same = (yt["a_color"] == yt["b_color"]) & (yt["a_shape"] == yt["b_shape"])
        out["two_swapped"] = round(float((swapped & ~same).float().mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="training images' folder (its captions)")
    ap.add_argument("--variants", nargs="+", default=["last"])
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds run: first-seed .. first-seed+seeds-1")
    ap.add_argument("--paraphrases", type=int, default=12, help="wordings per caption (the preset's)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-heldout", type=int, default=600, help="prompts per held-out set")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    encoder = load_minilm(LENGTH)
    captions = sorted(set(read_captions(Path(args.data)).values()))
    train_text = [v for c in captions for v in training_variants(c, args.paraphrases, seed=0)]
    train_y = label_tensor([c for c in captions for _ in range(args.paraphrases)])
    evals: dict[str, tuple[list[str], list[str]]] = {}
    canon = canonical_prompts(600, seed=1)
    evals["train_style"] = ([training_variants(c, 4, seed=7)[3] for c in canon], canon)
    for name, style in HELDOUT_STYLES.items():
        pairs = heldout_prompts(args.n_heldout, seed=0, style=style)
        evals[name] = ([w for w, _ in pairs], [c for _, c in pairs])
    states, mask = hidden_states(encoder, train_text)
    eval_states = {k: hidden_states(encoder, w) for k, (w, _) in evals.items()}
    print(f"# {len(train_text)} training wordings of {len(captions)} captions encoded "
          f"({time.time() - t0:.0f} s)", flush=True)
    for variant in args.variants:
        x = features(variant, states, mask)
        ex = {k: features(variant, s, m) for k, (s, m) in eval_states.items()}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            torch.manual_seed(seed)
            top = copy.deepcopy(encoder.layers[5]).requires_grad_(True) if variant == "tune1" else None
            probe = Probe(x.shape[-1], top)
            groups = [{"params": probe.proj.parameters()}, {"params": probe.heads.parameters()}]
            if top is not None:
                groups.append({"params": top.parameters(), "lr": args.lr * 0.1})
            opt = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.03)
            gen = torch.Generator().manual_seed(seed)
            t1 = time.time()
            probe.train()
            for step in range(args.steps):
                i = torch.randint(len(x), (args.batch_size,), generator=gen)
                out = probe(x[i], mask[i])
                loss = sum(F.cross_entropy(out[h], train_y[i, j]) for j, h in enumerate(HEADS))
                opt.zero_grad()
                loss.backward()
                opt.step()
                for g in opt.param_groups:  # cosine to 0
                    base = args.lr * (0.1 if g is groups[-1] and top is not None else 1.0)
                    g["lr"] = base * 0.5 * (1 + np.cos(np.pi * (step + 1) / args.steps))
            probe.eval()
            row: dict = {"variant": variant, "seed": seed, "train_s": round(time.time() - t1),
                         "final_loss": round(loss.item(), 4)}
            with torch.no_grad():
                for k, (words, truths) in evals.items():
                    logits, y = probe(ex[k], eval_states[k][1]), label_tensor(truths)
                    ok = exact(logits, y).numpy()
                    kinds = np.array([scene_kind(t) for t in truths])
                    row[k] = round(float(ok.mean()), 3)
                    row[f"{k}_kinds"] = {kd: round(float(ok[kinds == kd].mean()), 3)
                                         for kd in ("full", "two", "partial") if (kinds == kd).any()}
                    row[f"{k}_heads"] = head_accuracy(logits, y, kinds)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
