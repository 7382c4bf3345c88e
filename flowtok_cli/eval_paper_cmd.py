"""`flowtok eval coco` / `flowtok eval mjhq`: the paper's FID protocols (generate, then score)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import BatchSizeOpt, DeviceOpt, GuidanceOpt, JsonOpt, ModelOpt, SeedOpt

CAPTION_SUFFIXES = (".json", ".jsonl", ".tsv")


@dataclass(frozen=True)
class Protocol:
    """How the FlowTok paper reports one FID number (text-to-image, 256 px)."""

    name: str
    n_images: int
    steps: int
    image_size: int
    prompts: str
    real: str


COCO = Protocol("COCO FID-30K", 30_000, 20, 256,
                "30K captions from COCO val2014, one per image (first caption of each)",
                "COCO val2014 images")
MJHQ = Protocol("MJHQ-30K", 30_000, 20, 256, "the 30K MJHQ prompts (10 categories x 3K)",
                "the MJHQ-30K images")


def sample_prompts(path: Path, n: int, seed: int) -> list[str]:
    """Prompts from a text file (one per line) or a caption file (.json/.jsonl/.tsv: the first
    caption of each image); more than n are sub-sampled with ``seed``, keeping file order."""
    if path.suffix.lower() in CAPTION_SUFFIXES:
        from flowtok.eval.captions import read_captions

        prompts = [caps[0] for caps in read_captions(path).captions.values()]
    else:
        from flowtok_cli.generate_cmd import read_prompts

        prompts = read_prompts(path)
    if len(prompts) > n:
        keep = sorted(random.Random(seed).sample(range(len(prompts)), n))
        prompts = [prompts[i] for i in keep]
    return prompts


def _run(protocol: Protocol, prompts_file: Path, real: Path, model: Path | None,
         guidance: float | None, steps: int, n: int, seed: int, batch_size: int,
         cache_stats: Path | None, save_images: Path | None, weights: Path | None,
         device: str | None, json_out: bool) -> None:
    from flowtok.device import resolve_device
    from flowtok.eval.fid import fid_of_generated
    from flowtok.pipeline import FlowTokPipeline

    if n <= 0:
        raise common.usage_error(f"--n must be positive, got {n}")
    prompts = sample_prompts(prompts_file, n, seed)
    dev = resolve_device(device)
    pipe = FlowTokPipeline.from_pretrained(model, device=dev)
    guidance = pipe.config.flow.guidance if guidance is None else guidance
    size = pipe.tokenizer.cfg.image_size
    deviations = []
    if len(prompts) < protocol.n_images:
        deviations.append(f"{len(prompts)} images instead of {protocol.n_images}")
    if steps != protocol.steps:
        deviations.append(f"{steps} steps instead of {protocol.steps}")
    if size != protocol.image_size:
        deviations.append(f"model makes {size} px images, the protocol {protocol.image_size} px")
    result = fid_of_generated(pipe, prompts, real, steps=steps, guidance=guidance, seed=seed,
                              batch_size=batch_size, device=str(dev), cache_stats=cache_stats,
                              weights=weights, save_dir=save_images)
    result["protocol"] = {**asdict(protocol), "guidance": guidance, "seed": seed,
                          "model": pipe.model_id, "deviations": deviations}
    for w in deviations + result["warnings"]:
        common.warn(w)
    if json_out:
        common.print_json(result)
        return
    n_made = result["fake"]["n"]
    made = (f"{n_made} images, {steps} Euler steps, guidance {guidance}, {size} px, "
            f"seeds {seed}..{seed + n_made - 1}")
    asked = (f"{protocol.n_images} prompts, {protocol.steps} steps, {protocol.image_size} px; "
             f"prompts: {protocol.prompts}")
    common.print_table([
        (protocol.name, f"FID {result['fid']:.3f}"),
        ("model", pipe.model_id),
        ("generated", made),
        ("real", f"{result['real']['path']} ({result['real']['n']} images)"),
        ("protocol", asked),
        ("deviations", "; ".join(deviations) or "none"),
    ])


PromptsOpt = Annotated[Path, typer.Option(
    "--prompts", help="Prompts: a text file (one per line) or a caption file "
    "(.json/.jsonl/.tsv: first caption per image).")]
RealOpt = Annotated[Path, typer.Option(
    "--real", help="Real images: a folder, or an .npz of FID statistics.")]
EulerStepsOpt = Annotated[int, typer.Option("--steps", min=1, help="Euler steps.")]
NOpt = Annotated[int, typer.Option("--n", help="Number of prompts / generated images.")]
CacheOpt = Annotated[Path | None, typer.Option(
    "--cache-stats", help="Reuse or write the real set's statistics (.npz).")]
SaveOpt = Annotated[Path | None, typer.Option(
    "--save-images", help="Also keep the generated PNGs in this folder.")]
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", help="Converted FID Inception weights (see docs/eval.md).")]


def coco(prompts: PromptsOpt, real: RealOpt, model: ModelOpt = None,
         guidance: GuidanceOpt = None, steps: EulerStepsOpt = COCO.steps, n: NOpt = COCO.n_images,
         seed: SeedOpt = 0, batch_size: BatchSizeOpt = 64, cache_stats: CacheOpt = None,
         save_images: SaveOpt = None, weights: WeightsOpt = None, device: DeviceOpt = None,
         json_out: JsonOpt = False) -> None:
    """COCO FID-30K as in the paper: 30K val2014 captions, 20 steps, 256 px, FID vs val2014.

    Generates one image per prompt (image i with seed SEED+i) and scores it with `eval fid`'s
    features; the output states the protocol and every deviation from it (fewer prompts, other
    steps or resolution). Needs the COCO data locally; nothing is downloaded.

    Examples:
      flowtok eval coco --prompts coco/annotations/captions_val2014.json --real coco/val2014 -m runs/t2i/model
      flowtok eval coco --prompts prompts.txt --real stats/coco_val.npz --n 1000 --json
    """
    _run(COCO, prompts, real, model, guidance, steps, n, seed, batch_size, cache_stats,
         save_images, weights, device, json_out)


def mjhq(prompts: PromptsOpt, real: RealOpt, model: ModelOpt = None,
         guidance: GuidanceOpt = None, steps: EulerStepsOpt = MJHQ.steps, n: NOpt = MJHQ.n_images,
         seed: SeedOpt = 0, batch_size: BatchSizeOpt = 64, cache_stats: CacheOpt = None,
         save_images: SaveOpt = None, weights: WeightsOpt = None, device: DeviceOpt = None,
         json_out: JsonOpt = False) -> None:
    """MJHQ-30K as in the paper: the 30K MJHQ prompts, 20 steps, 256 px, FID vs MJHQ images.

    MJHQ's meta_data.json maps image ids to {"prompt", "category"}: turn it into a text file
    with one prompt per line (in the images' order) and pass the image folder as --real.

    Examples:
      flowtok eval mjhq --prompts mjhq_prompts.txt --real MJHQ-30K/ -m runs/t2i/model
      flowtok eval mjhq --prompts mjhq_prompts.txt --real stats/mjhq.npz --guidance 3 --json
    """
    _run(MJHQ, prompts, real, model, guidance, steps, n, seed, batch_size, cache_stats,
         save_images, weights, device, json_out)
