"""Export the EMA tokenizer of one checkpoint of a running `train tokenizer` run as a model
folder, so flow experiments can start before the tokenizer run ends.

    python benchmarks/tokenizer/export_step.py runs/tok_shapes 2000 runs/tok_shapes_step2000
"""

from __future__ import annotations

import sys
from pathlib import Path

from flowtok.config import load_config
from flowtok.safe_load import load_safetensors
from flowtok.tokenizer.model import Tokenizer


def main() -> None:
    run, step, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    cfg = load_config(run / "config.json")
    tok = Tokenizer(cfg.tokenizer)
    tok.load_state_dict(load_safetensors(run / "checkpoints" / f"step_{step}" / "ema_model.safetensors"))
    tok.save_pretrained(out)
    print(out)


if __name__ == "__main__":
    main()
