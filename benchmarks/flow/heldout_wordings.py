"""Does a shapes text -> image model follow wordings it never saw? Score it on held-out wordings.

Prompts come from flowtok.data.shapes_wordings.heldout_prompts: balanced scenes (mostly full
one-object captions, some two-object and some partial ones) worded in HELDOUT_STYLE, whose
synonyms ("big", "tiny", "corner", "side", "centre", "top-left" ...) and sentence frames
("top-left corner: a big cyan cross", "a picture of ...", "blue cross, tiny, ...") no training
paraphrase uses. One image per wording is generated (image i with seed SEED + i) and judged by
ShapesEval against the scene's CANONICAL caption, so the score measures generalisation to new
wordings, not recall of seen ones. ``--canonical`` also draws each canonical caption with the same
seed, for the gap between the two.

Writes OUT/NNNNN.png + OUT/metadata.jsonl ({"file_name", "text": canonical caption, "wording"}:
`flowtok eval shapes OUT` rescores it), OUT/prompts.tsv and OUT/results.json.

    python benchmarks/flow/heldout_wordings.py --model runs/t2i/model -o out/heldout
    python benchmarks/flow/heldout_wordings.py --print-prompts --n 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from flowtok.data.shapes_wordings import heldout_prompts

DEFAULT_N = 150
SCORES = ("all_correct", "color", "shape", "size", "position", "count")
KINDS = ("full", "two", "partial")


def scene_kind(canonical: str) -> str:
    """"two" (two objects), "full" (size and position stated) or "partial" (either unstated)."""
    from flowtok.data.shapes import parse_caption

    specs = parse_caption(canonical)
    if specs is not None and len(specs) == 2:
        return "two"
    if specs is not None and specs[0].size is not None and specs[0].position is not None:
        return "full"
    return "partial"


def _brief(summary: dict) -> dict:
    """The accuracies and counts of a ShapesEval summary, without its per-image lists."""
    return {k: summary[k] for k in ("n", *SCORES[1:], "all_correct", "scored", "unparseable")}


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def generate_and_score(pipe, prompts: list[str], truth: list[str], folder: Path, args,
                       wordings: list[str] | None = None) -> dict:
    """Draw one image per prompt, write them with metadata.jsonl, judge them against `truth`."""
    from flowtok.eval.shapes_eval import score_images
    from flowtok.image_files import save_png, write_metadata

    folder.mkdir(parents=True, exist_ok=True)
    steps = args.steps or pipe.config.flow.steps
    guidance = pipe.config.flow.guidance if args.guidance is None else args.guidance
    images = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance, seed=args.seed,
                  batch_size=args.batch_size)
    records, arrays = [], []
    for i, (img, prompt, text) in enumerate(zip(images, prompts, truth)):
        name = f"{i:05d}.png"
        save_png(img, folder / name, {"prompt": prompt, "seed": args.seed + i, "steps": steps,
                                      "guidance": guidance, "model": pipe.model_id})
        record = {"file_name": name, "text": text}
        if wordings is not None:
            record["wording"] = wordings[i]
        records.append(record)
        arrays.append(np.asarray(img.convert("RGB")))
    write_metadata(folder, records)
    names = [r["file_name"] for r in records]
    summary = score_images(arrays, truth, names)
    kinds = [scene_kind(t) for t in truth]
    by_kind = {}
    for kind in KINDS:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if idx:
            by_kind[kind] = _brief(score_images([arrays[i] for i in idx], [truth[i] for i in idx]))
    return {"steps": steps, "guidance": guidance, **summary, "by_kind": by_kind}


def report(title: str, result: dict) -> str:
    """A table of the accuracies, overall and per scene kind."""
    head = f"{'':10s}" + "".join(f"{s:>12s}" for s in SCORES)
    rows = [f"{title}: {result['n']} images, {result['unparseable']} truth captions unparseable",
            head, f"{'all':10s}" + "".join(f"{_percent(result[s]):>12s}" for s in SCORES)]
    for kind, r in result["by_kind"].items():
        rows.append(f"{kind + ' (' + str(r['n']) + ')':10s}"
                    + "".join(f"{_percent(r[s]):>12s}" for s in SCORES))
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", "-m", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("-o", "--out", type=Path, help="output folder (not with --print-prompts)")
    ap.add_argument("--n", type=int, default=DEFAULT_N, help="held-out prompts")
    ap.add_argument("--seed", type=int, default=0, help="prompt set and seed of image 0")
    ap.add_argument("--steps", type=int, default=None, help="Euler steps (default: the model's)")
    ap.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    ap.add_argument("--canonical", action="store_true",
                    help="also generate each canonical caption (same seed) and report the gap")
    ap.add_argument("--print-prompts", action="store_true",
                    help="only print the (held-out wording, canonical caption) pairs")
    ap.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = ap.parse_args()
    if args.n < 1 or args.seed < 0:
        ap.error("--n must be at least 1 and --seed non-negative")

    pairs = heldout_prompts(args.n, seed=args.seed)
    if args.print_prompts:
        if args.json:
            print(json.dumps([{"wording": w, "text": c} for w, c in pairs], indent=1))
        else:
            print("\n".join(f"{w}\t{c}" for w, c in pairs))
        return
    if args.out is None:
        ap.error("-o OUT is required (or pass --print-prompts)")

    from flowtok.atomic import write_text_atomic
    from flowtok.pipeline import FlowTokPipeline

    wordings, truth = [w for w, _ in pairs], [c for _, c in pairs]
    pipe = FlowTokPipeline.from_pretrained(args.model, device=args.device)
    truncated = [w for w in wordings if pipe.text_encoder.truncated(w)]
    if truncated:
        print(f"warning: {len(truncated)} wordings exceed {pipe.config.K} tokens, e.g. "
              f"{truncated[0]!r}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "prompts.tsv", "".join(f"{w}\t{c}\n" for w, c in pairs))
    results = {"model": pipe.model_id, "n": args.n, "seed": args.seed, "truncated": len(truncated),
               "heldout": generate_and_score(pipe, wordings, truth, args.out, args, wordings)}
    if args.canonical:
        results["canonical"] = generate_and_score(pipe, truth, truth, args.out / "canonical", args)
        results["gap_all_correct"] = (results["canonical"]["all_correct"]
                                      - results["heldout"]["all_correct"])
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=1) + "\n")
    if args.json:
        print(json.dumps({k: _brief(v) | {"by_kind": v["by_kind"]} if isinstance(v, dict) else v
                          for k, v in results.items()}))
        return
    print(report("held-out wordings", results["heldout"]))
    if args.canonical:
        print(report("canonical captions", results["canonical"]))
        print(f"gap (canonical - held-out) all-correct: {100 * results['gap_all_correct']:+.1f}")
    print(f"wrote {args.out}/results.json, metadata.jsonl, prompts.tsv")


if __name__ == "__main__":
    main()
