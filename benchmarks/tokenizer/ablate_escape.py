"""How fast does the tokenizer leave the all-background plateau? 120 steps, fixed seed.

  python benchmarks/tokenizer/ablate_escape.py EDGE KL SAMPLE   (e.g. 0 1e-6 1)

Prints the training-batch L2 every 20 steps (background-only prediction is L2 ~0.13-0.15 on
shapes; 0.08 means shapes are being drawn). Used for the table in benchmarks/RESULTS.md.
"""

import sys
import time

import torch
from experiment import cached

from flowtok.config import resolve_config
from flowtok.tokenizer.losses import ReconLossWeights
from flowtok.tokenizer.model import Posterior
from flowtok.train.tokenizer_task import TokenizerTask

torch.set_num_threads(1)
torch.manual_seed(0)
imgs, _ = cached("data/shapes/train", 32)
edge, kl, sample = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
cfg = resolve_config("shapes", None, ["tokenizer.patch_size=8", f"train_tokenizer.kl_weight={kl}",
                                      "train_tokenizer.max_steps=400",
                                      "train_tokenizer.batch_size=32"])
task = TokenizerTask(cfg, imgs, None, None, ReconLossWeights(edge=edge))
tok = task.tokenizer
if not sample:  # decode the posterior mean (no sampling noise)
    Posterior.sample = lambda self, generator=None: self.mean
opt = torch.optim.AdamW(tok.parameters(), 1e-3)
t = time.time()
for step in range(121):
    x = task.batch(step, None)
    for pg in opt.param_groups:
        pg["lr"] = 1e-3 * min(1, (step + 1) / 30)
    loss, logs = task.loss(x, step)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tok.parameters(), 1.0)
    opt.step()
    opt.zero_grad()
    if step % 20 == 0:
        print(step, round(logs["l2"], 4), round(logs["kl"], 1), round(time.time() - t), flush=True)
