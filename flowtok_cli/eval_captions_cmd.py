"""`flowtok eval captions`: BLEU, METEOR, ROUGE-L and CIDEr of captions, as the COCO evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flowtok_cli import common
from flowtok_cli.options import JsonOpt

METRIC_ORDER = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


def captions(
    pred: Annotated[Path, typer.Argument(
        help="Result captions: COCO results JSON [{image_id, caption}], JSONL or TSV.")],
    gt: Annotated[Path, typer.Argument(
        help="Reference captions: COCO annotation JSON {annotations: [...]}, JSONL or TSV.")],
    meteor_jar: Annotated[Path | None, typer.Option(
        "--meteor-jar", help="meteor-1.5.jar (with its data/ folder) to also compute METEOR; "
        "needs Java.")] = None,
    by_basename: Annotated[bool, typer.Option(
        "--by-basename", help="Match ids by file name (a/b/x.png matches x.png).")] = False,
    per_image: Annotated[Path | None, typer.Option(
        "--per-image", help="Also write per-image scores (COCO evalImgs) to this JSON file.")
    ] = None,
    shapes: Annotated[bool, typer.Option(
        "--shapes", help="Also score shapes captions with ShapesEval's parser: the share of images "
        "whose caption names every object's colour, shape, size and position right.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Score captions against references with COCO's tokenisation and metric definitions.

    Captions are tokenised like pycocoevalcap's PTBTokenizer (pure Python, no Java), then
    BLEU-1..4, ROUGE-L and CIDEr (CIDEr-D) are computed as pycocoevalcap does. METEOR runs only
    with --meteor-jar. Every result image needs exactly one caption and references in GT;
    JSONL/JSON records may use image_id|image|file_name|id and caption|captions|text, so the
    output of `flowtok caption --json` and a data folder's metadata.jsonl work as they are.

    Examples:
      flowtok eval captions results.json captions_val2014.json
      flowtok eval captions pred.jsonl data/emoji64/val/metadata.jsonl --by-basename --json
      flowtok eval captions pred.tsv refs.tsv --meteor-jar ~/meteor/meteor-1.5.jar
      flowtok caption data/shapes/val/*.png -m runs/i2t/model --json > pred.json
      flowtok eval captions pred.json data/shapes/val/metadata.jsonl --by-basename --shapes
    """
    from flowtok.eval.captions import evaluate_captions, pair_captions, read_captions

    results, references = read_captions(pred), read_captions(gt)
    result = evaluate_captions(results, references, meteor_jar=meteor_jar, by_basename=by_basename)
    if shapes:
        from flowtok.eval.shapes_eval import caption_matches

        hyps, refs = pair_captions(results, references, by_basename)
        right = [any(caption_matches(hyps[i], r) for r in refs[i]) for i in hyps]
        result["shapes_all_correct"] = sum(right) / len(right)
    if per_image is not None:
        import json

        from flowtok.atomic import write_bytes_atomic

        write_bytes_atomic(per_image, (json.dumps(result["evalImgs"], indent=1) + "\n").encode())
    if json_out:
        common.print_json({k: v for k, v in result.items() if k != "evalImgs"})
        return
    rows = [(m, f"{result['eval'][m]:.4f}") for m in METRIC_ORDER if m in result["eval"]]
    if "METEOR" not in result["eval"]:
        rows.insert(4, ("METEOR", result["meteor"]))
    if shapes:
        rows.append(("shapes all-correct", f"{result['shapes_all_correct']:.1%}"))
    common.print_table(rows, title=f"{result['n_images']} images: {pred} vs {gt}")
