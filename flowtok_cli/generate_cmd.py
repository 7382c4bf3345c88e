"""`flowtok generate`: text -> images with a model folder (default: the shipped model)."""

from __future__ import annotations

import math
import re
import unicodedata
from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import DeviceOpt, JsonOpt

MAX_SLUG = 40


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:MAX_SLUG] or "prompt"


def read_prompts(path: Path) -> list[str]:
    """One prompt per non-empty line of a UTF-8 text file."""
    from flowtok.errors import ConfigError

    if not path.is_file():
        raise ConfigError(f"{path}: prompts file not found")
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
    steps: Annotated[int | None, typer.Option("--steps", help="Euler steps (default: the model's, 20).")] = None,
    guidance: Annotated[float | None, typer.Option(
        "--guidance", "-g", help="CFG scale s >= 1 (1 = no guidance; default: the model's).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of image 0; image i uses seed + i.")] = 0,
    temperature: Annotated[float | None, typer.Option(
        "--temperature", "-t", min=0.0, help="Scale of the starting noise around the text "
        "latent (0 = one image per prompt, 1 = the trained spread; default: the model's).")] = None,
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model folder (default: shipped model).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    grid: Annotated[bool, typer.Option("--grid", help="Also write grid.png with every image.")] = False,
    prompts_file: Annotated[Path | None, typer.Option(
        "--prompts", help="Text file with one prompt per line (instead of PROMPT).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 64,
    device: DeviceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Generate images from text (text -> image latent by flow, then the tokenizer's decoder).

    PNGs carry prompt, seed, steps, guidance and model id in their text metadata;
    OUT/metadata.jsonl lists them, so `flowtok eval shapes OUT` can score them.
    Image i of seed s is the same whatever -n or --batch-size.

    Examples:
      flowtok generate "a cat"
      flowtok generate "a small red circle in the top left" -n 4 --model runs/t2i/model -o out/
      flowtok generate --prompts prompts.txt --steps 20 --guidance 3 --grid -o out/
      flowtok generate "a cat" -n 4 --temperature 0.5 --grid
    """
    from flowtok.errors import ConfigError

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
    if steps is not None and steps <= 0:
        raise ConfigError(f"--steps {steps}: the number of Euler steps must be at least 1")
    if guidance is not None and not math.isfinite(guidance):
        raise ConfigError(f"--guidance {guidance}: must be a finite number, 1 or more")
    if guidance is not None and guidance < 1:
        raise ConfigError(f"--guidance {guidance}: below 1 pushes images away from the prompt; "
                          "use 1 for no guidance or a value above 1 to follow the prompt more")
    if batch_size <= 0:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    common.check_out_dir(out)

    from flowtok.pipeline import FlowTokPipeline

    pipe = FlowTokPipeline.from_pretrained(model, device=device)
    for p in prompts:
        if pipe.text_encoder.truncated(p):
            common.warn(f"prompt truncated to {pipe.config.K} tokens: {p[:60]!r}…")
    steps = steps or pipe.config.flow.steps
    guidance = pipe.config.flow.guidance if guidance is None else guidance
    if temperature is not None:
        pipe.config.flow.temperature = temperature
    temperature = pipe.config.flow.temperature
    if n > 1 and temperature == 0:
        common.warn("temperature 0 draws the same image for every seed; pass --temperature 0.5 "
                    "(or more) for variety")
    from tqdm.auto import tqdm

    total = len(prompts) * n
    bar = tqdm(total=total, desc="generate", disable=json_out or not common.is_tty())
    images = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, seed=seed,
                  num_images_per_prompt=n, batch_size=batch_size, progress=bar.update)
    bar.close()
    records = []
    for i, img in enumerate(images):
        p, s = prompts[i // n], seed + i
        name = f"{i:05d}_{_slug(p)}_s{s}.png"
        meta = {"prompt": p, "seed": s, "steps": steps, "guidance": guidance,
                "temperature": temperature, "model": pipe.model_id}
        save_png(img, out / name, meta)
        records.append({"file_name": name, "text": p, **{k: v for k, v in meta.items() if k != "prompt"}})
    write_metadata(out, records)
    from flowtok.config import save_config

    save_config(pipe.config, out / "config.json")  # the resolved model config, next to the images
    result = {"images": [str(out / r["file_name"]) for r in records], "steps": steps,
              "guidance": guidance, "model": pipe.model_id}
    if grid:
        result["grid"] = str(save_png(make_grid(images, n if len(prompts) > 1 and n > 1 else min(len(images), 8)),
                                      out / "grid.png", {"prompts": " | ".join(prompts)}))
    if json_out:
        common.print_json(result)
    else:
        for path in result["images"]:
            typer.echo(path)
        if grid:
            typer.echo(result["grid"])


def save_png(img, path: Path, text: dict) -> Path:
    """Write a PNG with tEXt metadata atomically (temp file, then rename), with the mode a plain
    open() would give (not the temp file's private 0600)."""
    import io

    from PIL.PngImagePlugin import PngInfo

    from flowtok.atomic import write_bytes_atomic

    info = PngInfo()
    for k, v in text.items():
        info.add_text(f"flowtok:{k}", str(v))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    write_bytes_atomic(path, buf.getvalue())
    return path


def write_metadata(out: Path, records: list[dict]) -> None:
    import json

    from flowtok.atomic import write_text_atomic

    write_text_atomic(out / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in records))


def make_grid(images: list, cols: int):
    """PIL images of one size -> a grid with ``cols`` columns."""
    from PIL import Image

    cols = max(1, cols)
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    grid = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid
