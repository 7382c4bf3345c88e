"""Assemble the shipped default model (flowtok/default_model/) from three training runs.

    python scripts/build_default_model.py --t2i runs/t2i_emoji/model --i2t runs/i2t_emoji/model \
        --card benchmarks/default_model/model_card.md --licenses data/emoji64/licenses

Each direction keeps its own config (the top-level config.json is the t2i run's; the i2t run's
goes to i2t/config.json when it differs, e.g. another flow depth or training recipe); both must
use the same tokenizer and text encoder. The tokenizer comes with the t2i run, or from
--tokenizer: a decoder fine-tuned after the flows were trained (`flowtok train tokenizer --init
... --decoder-only`), accepted only when its encoder is bit-identical to the runs', so the flow
models' latents keep their meaning. Every tensor is stored in fp16; the model card and the data's
licence files go into the folder.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from flowtok.config import to_dict
from flowtok.pipeline import FlowTokPipeline

ROOT = Path(__file__).resolve().parents[1]
APACHE = ROOT / "scripts" / "licenses" / "Apache-2.0.txt"
SIZE_LIMIT_MB = 60.0


def _rgb(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) <= 255 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: give three integers 0-255, e.g. 255,255,255")
    return tuple(int(p) for p in parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t2i", type=Path, required=True, help="model folder of the text->image run")
    ap.add_argument("--i2t", type=Path, required=True, help="model folder of the image->text run")
    ap.add_argument("--tokenizer", type=Path, default=None,
                    help="tokenizer folder to ship instead of the runs' (same encoder)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="ship this text -> image sampling temperature (flow.temperature)")
    ap.add_argument("--background", type=_rgb, default=None, metavar="R,G,B",
                    help="ship this tokenizer.background: the colour `flowtok caption` and "
                         "`flowtok tokenize` composite transparent images over (the data's)")
    ap.add_argument("--card", type=Path, required=True, help="model card (markdown)")
    ap.add_argument("--licenses", type=Path, required=True, help="the data set's licenses/ folder")
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "flowtok" / "default_model")
    args = ap.parse_args()

    a = FlowTokPipeline.from_pretrained(args.t2i, device="cpu")
    b = FlowTokPipeline.from_pretrained(args.i2t, device="cpu")
    ca, cb = to_dict(a.config), to_dict(b.config)
    if ca["tokenizer"] != cb["tokenizer"]:
        diff = {k: (v, cb["tokenizer"].get(k)) for k, v in ca["tokenizer"].items()
                if v != cb["tokenizer"].get(k)}
        sys.exit(f"the runs disagree on config.tokenizer: {diff}")
    # the rest may differ (each direction keeps its own config in the folder), except the text
    # encoder, which both share: FlowTokPipeline checks that
    ta, tb = a.tokenizer.state_dict(), b.tokenizer.state_dict()
    if any(not torch.equal(ta[k], tb[k]) for k in ta):
        sys.exit("the runs used different tokenizers")
    tokenizer = a.tokenizer
    if args.tokenizer is not None:
        from flowtok.tokenizer.model import Tokenizer

        tokenizer = Tokenizer.from_pretrained(args.tokenizer)
        if to_dict(tokenizer.cfg) != ca["tokenizer"]:
            sys.exit(f"{args.tokenizer}: its config differs from the runs' tokenizer")
        tt = tokenizer.state_dict()
        kept = [k for k in ta if not k.startswith("decoder.")]
        if any(not torch.equal(ta[k], tt[k]) for k in kept):
            sys.exit(f"{args.tokenizer}: its encoder differs from the one the flows were "
                     "trained on (fine-tune with --decoder-only)")
    if args.temperature is not None:
        # the model's default sampling temperature, written into the saved configs (the folder's
        # and t2i's): a change to the shipped model, not a setting for one sampling call
        a.config.flow.temperature = a.t2i.cfg.flow.temperature = args.temperature
    if args.background is not None:
        for tok_cfg in (a.config.tokenizer, b.i2t.cfg.tokenizer, tokenizer.cfg):
            tok_cfg.background = args.background
    pipe = FlowTokPipeline(a.config, tokenizer, t2i=a.t2i, i2t=b.i2t)
    pipe.save_pretrained(args.out, dtype=torch.float16, model_card=args.card.read_text())
    lic = args.out / "licenses"
    shutil.copytree(args.licenses, lic, dirs_exist_ok=True)
    shutil.copy(APACHE, lic / "Apache-2.0.txt")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file()) / 2**20
    print(f"{args.out}: {total:.1f} MB")
    if total > SIZE_LIMIT_MB:
        sys.exit(f"the default model is {total:.1f} MB, over the {SIZE_LIMIT_MB:.0f} MB limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
