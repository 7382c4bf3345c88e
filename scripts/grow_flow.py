"""Deepen one direction of a model folder's flow (identity blocks appended), to train on with --init.

    python scripts/grow_flow.py runs/t2i/model --task t2i --depth 8 -o runs/t2i_deep_init
    flowtok train flow --task t2i ... --init runs/t2i_deep_init --set flow.depth=8 -o runs/t2i_deep

The new folder computes exactly what the old one did (flowtok/flow/grow.py); only flow.depth in
its config changes.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from flowtok.flow.grow import grow_flow
from flowtok.flow.model import TextImageFlow
from flowtok.pipeline import FlowTokPipeline


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model", type=Path, help="model folder (config.json, tokenizer/, t2i/ or i2t/)")
    ap.add_argument("--task", choices=("t2i", "i2t"), required=True, help="the direction to deepen")
    ap.add_argument("--depth", type=int, required=True, help="new flow.depth (more than the old)")
    ap.add_argument("-o", "--out", type=Path, required=True, help="new model folder")
    args = ap.parse_args()

    pipe = FlowTokPipeline.from_pretrained(args.model, device="cpu")
    old = getattr(pipe, args.task)
    if old is None:
        raise SystemExit(f"{args.model}: has no {args.task}/ model")
    cfg = copy.deepcopy(pipe.config)
    cfg.flow.depth = args.depth
    vocab = old.decoder.vocab_ids if old.decoder is not None else None
    new = TextImageFlow(cfg, args.task, vocab_ids=vocab)
    rest = {k: v for k, v in old.state_dict().items() if not k.startswith("flow.")}
    missing, unexpected = new.load_state_dict(rest, strict=False)
    if unexpected or any(not k.startswith("flow.") for k in missing):
        raise SystemExit(f"unexpected state: missing {missing[:3]}, unexpected {unexpected[:3]}")
    grow_flow(old.flow, new.flow)
    parts = {"t2i": new, "i2t": None} if args.task == "t2i" else {"t2i": None, "i2t": new}
    FlowTokPipeline(cfg, pipe.tokenizer, **parts).save_pretrained(args.out)
    print(f"{args.out}: {args.task} flow depth {old.flow.depth} -> {args.depth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
