"""`flowtok eval emoji`: prompt fidelity and caption retrieval of a model trained on emoji."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import DeviceOpt, GuidanceOpt, JsonOpt, ModelOpt, StepsOpt


def emoji(
    data: Annotated[Path, typer.Option("--data", help="Folder made by `flowtok data emoji` "
                                       "(train/ and val/ with metadata.jsonl).")],
    model: ModelOpt = None,
    split: Annotated[str, typer.Option(
        "--split", help="Which split's names/images to test: train or val.")] = "train",
    n: Annotated[int, typer.Option("--n", min=1, help="Names (and images) to test.")] = 200,
    what: Annotated[str, typer.Option(
        "--what", help="prompts (text -> image), captions (image -> text) or both.")] = "both",
    steps: StepsOpt = None,
    guidance: GuidanceOpt = None,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", min=0.0, help="Text -> image source-noise scale (default: the "
        "model's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample and of the images.")] = 0,
    examples: Annotated[int, typer.Option("--examples", min=0, help="Examples shown in the table.")] = 8,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Top-1 / top-5 retrieval accuracy over every emoji of the data set.

    Prompt fidelity: one image per emoji name; its nearest real emoji in the model's tokenizer-
    latent space (posterior means, nearest of the emoji's images) should be the prompted one.
    Captioning: captions of real images; the nearest emoji name in the text encoder's space
    (mean-pooled features, cosine) should be the true one. Candidates are all emoji of both
    splits; --split picks which ones are tested (train: what the model saw; val: held out).

    Examples:
      flowtok eval emoji --data data/emoji64
      flowtok eval emoji --data data/emoji64 --split val --what captions --json
      flowtok eval emoji --data data/emoji64 --model runs/emoji/model --n 50 --steps 10
      flowtok eval emoji --data data/emoji64 --what prompts --temperature 0.5
    """
    from tqdm import tqdm

    from flowtok.errors import ConfigError
    from flowtok.eval.emoji_eval import caption_retrieval, prompt_fidelity, read_emoji_dataset
    from flowtok.pipeline import FlowTokPipeline

    if split not in ("train", "val"):
        raise ConfigError(f"--split {split!r}: choose train or val")
    if what not in ("prompts", "captions", "both"):
        raise ConfigError(f"--what {what!r}: choose prompts, captions or both")
    records = read_emoji_dataset(data)
    pipe = FlowTokPipeline.from_pretrained(model, device=device)
    result: dict = {"model": pipe.model_id, "data": str(data), "split": split, "seed": seed,
                    "temperature": pipe.config.flow.temperature if temperature is None
                    else temperature}
    if what in ("prompts", "both"):
        with tqdm(total=n, desc="generate", unit="img", disable=not common.is_tty()) as bar:
            result["prompts"] = prompt_fidelity(pipe, records, split, n, seed, steps, guidance,
                                                progress=bar.update, temperature=temperature)
    if what in ("captions", "both"):
        with tqdm(total=n, desc="caption", unit="img", disable=not common.is_tty()) as bar:
            result["captions"] = caption_retrieval(pipe, records, split, n, seed, steps,
                                                   progress=bar.update)
    if json_out:
        common.print_json(result)
        return
    rows = []
    for part in ("prompts", "captions"):
        if part in result:
            r = result[part]
            rows += [(f"{part} top-1", f"{r['top1']:.1%}"), (f"{part} top-5", f"{r['top5']:.1%}"),
                     (f"{part} mean rank", f"{r['mean_rank']:.1f} of {r['candidates']}")]
    common.print_table(rows, title=f"{pipe.model_id} on {data} ({split}, n={n})")
    for part, key in (("prompts", "prompt"), ("captions", "caption")):
        for ex in result.get(part, {}).get("examples", [])[:examples]:
            if part == "prompts":
                typer.echo(f"  {ex['prompt']!r}: rank {ex['rank']}, nearest {ex['nearest'][:3]}")
            else:
                typer.echo(f"  {ex['true']!r} -> {ex[key]!r} (rank {ex['rank']})")
