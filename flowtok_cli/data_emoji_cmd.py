"""`flowtok data emoji`: build the real text-image emoji data set (Noto + Twemoji, CLDR names)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli.common import print_json, print_table, warn
from flowtok_cli.options import JsonOpt, OutOpt, SeedOpt


def emoji(
    out: OutOpt,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from", help="Folder with the packages unpacked (NAME/ or NAME/package/) "
                                    "or as NAME-VERSION.tgz; no network is used."),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="Keep the fetched npm tarballs here (reuse with --from); "
                                     "default: a temporary folder."),
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.")] = 64,
    styles: Annotated[
        str, typer.Option("--styles", help="Comma-separated image styles: google, twitter.")
    ] = "google,twitter",
    val_fraction: Annotated[
        float, typer.Option("--val-fraction", help="Share held out in val/.")
    ] = 0.05,
    val_by: Annotated[
        str, typer.Option("--val-by", help="emoji: both styles of an emoji in one split "
                                           "(held-out emoji); image: any image (in-distribution).")
    ] = "emoji",
    flags: Annotated[
        bool, typer.Option("--flags/--no-flags", help="Keep the country and region flags.")
    ] = True,
    skin_tones: Annotated[
        bool, typer.Option("--skin-tones/--no-skin-tones", help="Add skin-tone variants.")
    ] = False,
    style_in_caption: Annotated[
        bool, typer.Option("--style-in-caption", help='Append ", google style" etc. to captions.')
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing emoji data set in -o.")
    ] = False,
    seed: SeedOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Make the emoji text-image data set: 64 px Noto (google) and Twemoji (twitter) images on
    white, captioned with their CLDR names ("cat face"), split into train/ and val/.

    Fetches emoji-datasource-google, emoji-datasource-twitter and emojibase-data with npm pack
    unless --from names a folder that already holds them. Licences go to DIR/licenses/.

    Examples:
      flowtok data emoji -o data/emoji64 --cache data/npm
      flowtok data emoji -o data/emoji64 --from data/npm --overwrite
      flowtok data emoji -o data/emoji32 --size 32 --no-flags --val-by image --json
    """
    import sys
    import tempfile
    import time

    from tqdm import tqdm

    from flowtok.data.emoji import (
        EmojiDataConfig,
        build_emoji_dataset,
        check_output_dir,
        fetch_packages,
    )

    cfg = EmojiDataConfig(
        size=size, styles=tuple(s.strip() for s in styles.split(",") if s.strip()),
        val_fraction=val_fraction, val_by=val_by, seed=seed, flags=flags,
        skin_tones=skin_tones, style_in_caption=style_in_caption,
    )
    cfg.validate()
    check_output_dir(out, overwrite)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flowtok-npm-") as tmp:
        source = from_dir
        if source is None:
            typer.echo("fetching the emoji packages with npm pack ...", err=True)
            source = fetch_packages(cache or tmp, cfg.styles)

        def progress(iterable, total, desc):
            return tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=None)

        summary = build_emoji_dataset(out, source, cfg, overwrite=overwrite, progress=progress)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    if not summary["captions"].startswith("CLDR"):
        warn("emojibase-data not found: captions are Unicode names, not CLDR names")
    if json_out:
        print_json({"out": str(out), **summary})
        return
    counts = summary["counts"]
    rows = [(split, f"{c['images']} images, {c['emoji']} emoji")
            for split, c in counts.items()]
    rows += [("captions", summary["captions"]), ("seconds", str(summary["seconds"]))]
    print_table(rows, title=f"emoji data set in {out}")
