"""`flowtok generate`: text -> images with a model folder (default: the shipped model)."""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import BatchSizeOpt, DeviceOpt, JsonOpt, ModelOpt

MAX_STEPS = 1000  # Euler converges in 20-50 steps; 1000 is already far past any visible change


def read_prompts(path: Path) -> list[str]:
    """One prompt per non-empty line of a UTF-8 text file."""
    from flowtok.errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; --prompts takes a text file with one prompt "
                          "per line")
    if not path.is_file():
        raise ConfigError(f"{common.describe_missing(path)}; --prompts takes a text file with "
                          "one prompt per line")
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a leading BOM is not part of prompt 1
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid UTF-8 (byte {e.start}); save it as UTF-8") from e
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise ConfigError(f"{path}: no prompts (one per line expected)")
    return prompts


def generate(
    prompt: Annotated[str | None, typer.Argument(help="The text to draw, e.g. \"a cat\".")] = None,
    n: Annotated[int, typer.Option("-n", "--num-images", help="Images per prompt.")] = 1,
    steps: Annotated[int | None, typer.Option(
        "--steps", help=f"Euler steps, 1 to {MAX_STEPS} (default: the model's, 20).")] = None,
    guidance: Annotated[float | None, typer.Option(
        "--guidance", "-g", help="CFG scale s >= 1 (1 = no guidance; default: the model's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of image 0; image i uses seed + i.")] = 0,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", "-t", help="Scale of the starting noise around the text "
        "latent (0 = one image per prompt, 1 = the trained spread; default: the model's).")] = None,
    style: Annotated[str | None, typer.Option(
        "--style", help="For a model with styles (the default model: google, twitter): draw "
        "every image in this one (default: image i takes the styles in turn by its seed).")] = None,
    model: ModelOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    grid: Annotated[bool, typer.Option("--grid", help="Also write grid.png with every image.")] = False,
    prompts_file: Annotated[Path | None, typer.Option(
        "--prompts", help="Text file with one prompt per line (instead of PROMPT).")] = None,
    batch_size: BatchSizeOpt = 64,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Redo images that already exist in OUT (default: keep them).")] = False,
    cuda_graph: Annotated[str, typer.Option(
        "--cuda-graph", help="auto: on CUDA, capture the sampling loop in a CUDA graph per batch "
        "shape and replay it; on: require it; off: plain launches.")] = "auto",
    compile_flow: Annotated[bool, typer.Option(
        "--compile", help="torch.compile the flow transformer (CUDA only; the first batch "
        "compiles).")] = False,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate images from text (text -> image latent by flow, then the tokenizer's decoder).

    PNGs carry prompt, seed, steps, guidance and model id in their text metadata;
    OUT/metadata.jsonl lists every image in OUT, so `flowtok eval shapes OUT` can score them.
    Image i of seed s is the same whatever -n or --batch-size.

    Each image is written as soon as it is drawn. A rerun with the same prompts, seeds and
    settings skips the images already in OUT (finishing an interrupted run); --overwrite redoes
    them. An existing image of another prompt or setting under the same name is an error.

    Examples:
      flowtok generate "a cat"
      flowtok generate "a small red circle in the top left" -n 4 --model runs/t2i/model -o out/
      flowtok generate --prompts prompts.txt --steps 20 --guidance 3 --grid -o out/
      flowtok generate "a cat" -n 4 --temperature 0.5 --grid
      flowtok generate "a cat" -n 2 --style twitter
    """
    from flowtok.errors import ConfigError
    from flowtok.sampling_settings import check_steps, check_temperature

    if (prompt is None) == (prompts_file is None):
        raise ConfigError("give exactly one of PROMPT or --prompts FILE")
    prompts = read_prompts(prompts_file) if prompts_file else [prompt]
    for p in prompts:
        if not p.strip():
            raise ConfigError("the prompt is empty; give some text, e.g. flowtok generate \"a cat\"")
        if any(unicodedata.category(ch) == "Cs" for ch in p):  # undecodable bytes in argv
            raise ConfigError(f"the prompt {p[:40]!r} is not valid UTF-8 text")
        if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n" for ch in p):
            raise ConfigError(f"the prompt {p[:40]!r} contains control characters; remove them")
    if n <= 0:
        raise ConfigError(f"-n {n}: the number of images must be at least 1")
    if steps is not None:
        check_steps(steps, most=MAX_STEPS, option="--steps")
    if guidance is not None and not math.isfinite(guidance):
        raise ConfigError(f"--guidance {guidance}: must be a finite number, 1 or more")
    if guidance is not None and guidance < 1:
        raise ConfigError(f"--guidance {guidance}: below 1 pushes images away from the prompt; "
                          "use 1 for no guidance or a value above 1 to follow the prompt more")
    if temperature is not None:
        check_temperature(temperature, option="--temperature")
    if batch_size <= 0:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    from flowtok.device import resolve_device
    from flowtok.pipeline import MAX_SEED, MIN_SEED

    total = len(prompts) * n
    if seed < MIN_SEED or seed + total - 1 > MAX_SEED:
        raise ConfigError(f"--seed {seed}: out of range; image i uses seed + i, and seeds must "
                          f"lie between -2**63 and 2**64 - 1")
    from flowtok.cuda_graphs import check_compile, graph_mode

    dev = resolve_device(device)
    graph_mode(cuda_graph, dev)  # an unknown mode, or "on" without CUDA, fails before any work
    check_compile(compile_flow, dev)
    created = common.check_out_dir(out)
    try:
        _run(prompts, n, steps, guidance, seed, temperature, model, out, grid, batch_size,
             overwrite, dev, json_out, style, cuda_graph, compile_flow)
    except BaseException:
        common.remove_empty(created)  # a failed load or a refused run leaves no empty -o
        raise


def _run(prompts: list[str], n: int, steps: int | None, guidance: float | None, seed: int,
         temperature: float | None, model: Path | None, out: Path, grid: bool, batch_size: int,
         overwrite: bool, device, json_out: bool, style: str | None = None,
         cuda_graph: str = "auto", compile_flow: bool = False) -> None:
    """Load the model, plan which images are missing, draw and save them one by one."""
    import dataclasses
    import signal

    from flowtok import image_files
    from flowtok.config import save_config
    from flowtok.errors import ArgumentError, ConfigError
    from flowtok.pipeline import FlowTokPipeline

    pipe = FlowTokPipeline.from_pretrained(model, device=device)
    pipe.cuda_graph = cuda_graph
    if compile_flow:
        pipe.compile_flow()
    for p in prompts:
        if pipe.text_encoder.truncated(p):
            common.warn(f"prompt truncated to {pipe.config.K} tokens: {p[:60]!r}…")
    steps = steps or pipe.config.flow.steps
    guidance = pipe.config.flow.guidance if guidance is None else guidance
    temperature = pipe.config.flow.temperature if temperature is None else temperature
    kinds = 1 if style is not None else max(len(pipe.styles), 1)  # distinct images at temperature 0
    if n > kinds and temperature == 0:
        what = "the same image for every seed" if kinds == 1 else f"one image per style ({kinds})"
        common.warn(f"temperature 0 draws {what}, so the {n} images of each prompt repeat; "
                    "pass --temperature 0.5 (or more) for variety")
    try:  # the style of each image, by the pipeline's own rule
        indices = pipe.style_indices([seed + i for i in range(len(prompts) * n)], style)
    except ArgumentError as e:
        raise ConfigError(f"--style: {e}") from None
    image_styles = None if indices is None else [pipe.styles[j] for j in indices.tolist()]
    settings = {"steps": steps, "guidance": guidance, "temperature": temperature,
                "model": pipe.model_id}
    records = image_files.image_records(prompts, n, seed, settings, image_styles)
    not_ours: list[Path] = []
    try:
        todo, listed = image_files.plan_run(out, records, overwrite, not_ours)
    finally:
        for png in not_ours:
            common.warn(f"{png}: not an image from flowtok generate; metadata.jsonl does not "
                        "list it")
    if len(todo) < len(records):
        common.warn(f"{len(records) - len(todo)} of {len(records)} images are already in {out} "
                    "(same prompt, seed and settings); kept them (--overwrite redoes them)")
    # the resolved model config, next to the images (with the temperature they were drawn at)
    flow = dataclasses.replace(pipe.config.flow, temperature=temperature)
    save_config(dataclasses.replace(pipe.config, flow=flow), out / "config.json")
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="generate", unit="image",
               disable=json_out or not common.is_tty())
    items = [(records[i]["text"], records[i]["seed"]) for i in todo]
    written = 0
    try:
        for k, img in pipe.iter_images(items, steps, guidance, batch_size, style,
                                       temperature=temperature):
            r = records[todo[k]]
            image_files.save_image(img, out, r)
            listed[r["file_name"]] = r
            written += 1
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        typer.echo(f"interrupted; {written} new image(s) in {out} are kept and listed in "
                   f"{out / image_files.METADATA}; rerun the same command to draw the rest",
                   err=True)
        raise typer.Exit(code=128 + signal.SIGINT) from None
    bar.close()
    image_files.write_metadata(out, list(listed.values()))  # one line per image, in a stable order
    paths = [out / r["file_name"] for r in records]
    result = {"images": [str(p) for p in paths], "written": written,
              "skipped": len(records) - len(todo), "steps": steps, "guidance": guidance,
              "model": pipe.model_id}
    if grid:
        result["grid"] = str(image_files.save_grid(paths, prompts, n, out))
    if json_out:
        common.print_json(result)
    else:
        for path in result["images"]:
            typer.echo(path)
        if grid:
            typer.echo(result["grid"])

