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


MAX_STEPS = 1000  # Euler converges in 20-50 steps; 1000 is already far past any visible change
# the PNG text fields that identify an image: a rerun with the same ones skips it
IDENTITY = ("prompt", "seed", "steps", "guidance", "temperature", "model", "style")
METADATA = "metadata.jsonl"


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
    model: Annotated[Path | None, typer.Option("--model", "-m", help="Model folder (default: shipped model).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")] = Path("out"),
    grid: Annotated[bool, typer.Option("--grid", help="Also write grid.png with every image.")] = False,
    prompts_file: Annotated[Path | None, typer.Option(
        "--prompts", help="Text file with one prompt per line (instead of PROMPT).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.")] = 64,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Redo images that already exist in OUT (default: keep them).")] = False,
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
    if steps is not None and steps > MAX_STEPS:
        raise ConfigError(f"--steps {steps}: at most {MAX_STEPS}; images stop changing after "
                          "20-50 Euler steps")
    if guidance is not None and not math.isfinite(guidance):
        raise ConfigError(f"--guidance {guidance}: must be a finite number, 1 or more")
    if guidance is not None and guidance < 1:
        raise ConfigError(f"--guidance {guidance}: below 1 pushes images away from the prompt; "
                          "use 1 for no guidance or a value above 1 to follow the prompt more")
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"--temperature {temperature}: must be a finite number, 0 or more "
                          "(1 = the trained spread)")
    if batch_size <= 0:
        raise ConfigError(f"--batch-size {batch_size}: must be at least 1")
    from flowtok.device import resolve_device
    from flowtok.pipeline import MAX_SEED, MIN_SEED

    total = len(prompts) * n
    if seed < MIN_SEED or seed + total - 1 > MAX_SEED:
        raise ConfigError(f"--seed {seed}: out of range; image i uses seed + i, and seeds must "
                          f"lie between -2**63 and 2**64 - 1")
    dev = resolve_device(device)
    created = common.check_out_dir(out)
    try:
        _run(prompts, n, steps, guidance, seed, temperature, model, out, grid, batch_size,
             overwrite, dev, json_out, style)
    except BaseException:
        common.remove_empty(created)  # a failed load or a refused run leaves no empty -o
        raise


def _run(prompts: list[str], n: int, steps: int | None, guidance: float | None, seed: int,
         temperature: float | None, model: Path | None, out: Path, grid: bool, batch_size: int,
         overwrite: bool, device, json_out: bool, style: str | None = None) -> None:
    """Load the model, plan which images are missing, draw and save them one by one."""
    import signal

    from flowtok.config import save_config
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
        common.warn(f"temperature 0 draws the same image for every seed, so the {n} images of "
                    "each prompt are identical; pass --temperature 0.5 (or more) for variety")
    from flowtok.errors import ArgumentError, ConfigError

    try:
        pipe.style_indices([], style)
    except ArgumentError as e:
        raise ConfigError(f"--style: {e}") from None
    records = []
    for i in range(len(prompts) * n):
        p, s = prompts[i // n], seed + i
        meta = {"prompt": p, "seed": s, "steps": steps, "guidance": guidance,
                "temperature": temperature, "model": pipe.model_id}
        if pipe.styles:  # the style each image is drawn in (named, or its seed's turn)
            meta["style"] = style or pipe.styles[s % len(pipe.styles)]
        records.append({"file_name": f"{i:05d}_{_slug(p)}_s{s}.png", "text": p,
                        **{k: v for k, v in meta.items() if k != "prompt"}})
    listed = read_folder_records(out)
    todo = plan(out, records, listed, overwrite)
    if len(todo) < len(records):
        common.warn(f"{len(records) - len(todo)} of {len(records)} images are already in {out} "
                    "(same prompt, seed and settings); kept them (--overwrite redoes them)")
    redo = {records[i]["file_name"] for i in todo}
    listed = {k: v for k, v in listed.items() if k not in redo}
    kept = set(range(len(records))) - set(todo)
    listed.update({records[i]["file_name"]: records[i] for i in sorted(kept)})
    write_metadata(out, list(listed.values()))  # what is in OUT now; new lines are appended
    save_config(pipe.config, out / "config.json")  # the resolved model config, next to the images
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="generate", unit="image",
               disable=json_out or not common.is_tty())
    items = [(records[i]["text"], records[i]["seed"]) for i in todo]
    written = 0
    try:
        for k, img in pipe.iter_images(items, steps, guidance, batch_size, style):
            r = records[todo[k]]
            save_png(img, out / r["file_name"], {"prompt": r["text"], **{
                f: r[f] for f in IDENTITY if f != "prompt" and f in r}})
            append_metadata(out, r)
            listed[r["file_name"]] = r
            written += 1
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        typer.echo(f"interrupted; {written} new image(s) in {out} are kept and listed in "
                   f"{out / METADATA}; rerun the same command to draw the rest", err=True)
        raise typer.Exit(code=128 + signal.SIGINT) from None
    bar.close()
    write_metadata(out, list(listed.values()))  # one line per image, in a stable order
    paths = [out / r["file_name"] for r in records]
    result = {"images": [str(p) for p in paths], "written": written,
              "skipped": len(records) - len(todo), "steps": steps, "guidance": guidance,
              "model": pipe.model_id}
    if grid:
        from PIL import Image

        images = [Image.open(p).convert("RGB") for p in paths]
        cols = n if len(prompts) > 1 and n > 1 else min(len(images), 8)
        result["grid"] = str(save_png(make_grid(images, cols), out / "grid.png",
                                      {"prompts": " | ".join(prompts)}))
    if json_out:
        common.print_json(result)
    else:
        for path in result["images"]:
            typer.echo(path)
        if grid:
            typer.echo(result["grid"])


def _identity(record: dict) -> dict[str, str]:
    """What makes two images the same one, as strings (PNG text stores strings)."""
    fields = {"prompt": record.get("text", record.get("prompt"))}
    fields.update({k: record.get(k) for k in IDENTITY if k != "prompt"})
    return {k: str(v) for k, v in fields.items()}


def png_record(path: Path) -> dict | None:
    """The metadata record of a PNG this command wrote, rebuilt from its text chunks (None for
    a PNG that is not ours or cannot be read)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            text = dict(getattr(im, "text", {}) or {})
    except Exception:  # noqa: BLE001 - any unreadable file is simply not one of ours
        return None
    if "flowtok:prompt" not in text or "flowtok:seed" not in text:
        return None
    rec: dict = {"file_name": path.name, "text": text["flowtok:prompt"]}
    for k, cast in (("seed", int), ("steps", int), ("guidance", float), ("temperature", float),
                    ("model", str), ("style", str)):
        v = text.get(f"flowtok:{k}")
        try:
            rec[k] = cast(v) if v is not None else None
        except ValueError:
            rec[k] = v
    return rec


def read_folder_records(out: Path) -> dict[str, dict]:
    """Every generated image in ``out``, by file name: the lines of metadata.jsonl whose file
    still exists, plus PNGs it does not list (a run killed between writing an image and its
    line, or an older flowtok) rebuilt from their own metadata."""
    import json

    listed: dict[str, dict] = {}
    meta = out / METADATA
    if meta.is_file():
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill; its PNG is recovered below
            if isinstance(row, dict) and isinstance(row.get("file_name"), str) \
                    and (out / row["file_name"]).is_file():
                listed[row["file_name"]] = row
    for png in sorted(out.glob("*.png")):
        if png.name == "grid.png" or png.name in listed:
            continue
        rec = png_record(png)
        if rec is None:
            common.warn(f"{png}: not an image from flowtok generate; metadata.jsonl does not "
                        "list it")
        else:
            listed[png.name] = rec
    return listed


def plan(out: Path, records: list[dict], listed: dict[str, dict], overwrite: bool) -> list[int]:
    """Indices of ``records`` still to draw. An image already in ``out`` with the same identity
    is kept; one with another identity under the same name is a ConfigError unless
    ``overwrite`` (never replaced without a word)."""
    from flowtok.errors import ConfigError

    todo = []
    for i, r in enumerate(records):
        path = out / r["file_name"]
        if overwrite or not path.is_file():
            todo.append(i)
            continue
        old = listed.get(r["file_name"]) or png_record(path)
        if old is None or _identity(old) != _identity(r):
            diff = [k for k in IDENTITY if old is None or _identity(old)[k] != _identity(r)[k]]
            raise ConfigError(f"{path}: exists from another run (its {', '.join(diff)} "
                              "differ); pass --overwrite to replace it, or another -o folder")
    return todo


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
    """Rewrite OUT/metadata.jsonl atomically: one JSON line per image."""
    import json

    from flowtok.atomic import write_text_atomic

    write_text_atomic(out / METADATA, "".join(json.dumps(r) + "\n" for r in records))


def append_metadata(out: Path, record: dict) -> None:
    """Add one image's line as soon as its PNG exists, so a killed run keeps its list."""
    import json

    with open(out / METADATA, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


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
