"""ShapesEval: score an image against the prompt that produced it, exactly, from pixels.

A GenEval-like judge for the procedural shapes data (docs/shapes.md) with no learned model, so
text-to-image models can be scored on a CPU. numpy + PIL only.

Reading an image (``detect_objects``), for an S x S RGB image:
1. Pixel colour. Each pixel c is compared with every palette colour p *up to brightness*:
   alpha = <c, p> / <p, p> (clipped to [0, MAX_BRIGHTNESS]), residual = |c - alpha p|. The
   palette colour with the smallest residual wins; the pixel is foreground when alpha >=
   MIN_BRIGHTNESS (at least half as bright as the palette colour; darker is background) and the
   residual is at most MAX_OFF_PALETTE * alpha |p| (about 17 degrees off the colour's direction).
   On a black background a blurred edge is a dimmed colour, so this keeps blurred shapes whole
   and their colour right, while a pixel of another hue is still refused.
2. Objects. Foreground pixels are grouped into 8-connected components (own labelling, no
   scipy); components under MIN_OBJECT_FRACTION (2%) of the canvas are specks and dropped.
3. Per object: colour = majority pixel colour, or None when under MIN_COLOR_PURITY of the
   object's pixels have it; size = the named size whose box side is nearest
   to the bounding box's mean side (w + h) / 2; position = the 3x3 cell of the pixel centroid;
   shape = the template (``shapes.shape_mask`` rendered at the object's bounding box) with the
   highest IoU, or None when even that is below MIN_SHAPE_IOU.

Scoring one image (``judge``): the prompt is parsed with the caption grammar
(``parse_caption``) into k = 1 or 2 object specs; a partial one-object prompt ("a red circle")
leaves size and/or position unstated. The specs are matched to detected objects by
the best assignment: the injective map from specs to detections (a spec left without one when
fewer objects were found) with the most matching attributes summed over specs; ties go to the
first map in order of the detections (left to right). Then, per attribute:
- color / shape: right when every spec's assigned object has that colour / shape;
- size: as color, for prompts that name a size; two-object and partial prompts that name
  none are not scored on size (None) and are left out of size accuracy;
- position: the assigned object's cell equals the named cell; for a two-object prompt
  ("on the left" / "on the right") only the column is checked; a partial prompt that names no
  position is not scored on it (None), like size;
- count: exactly k objects were detected;
- all_correct: count and every scored attribute right (so no extra objects).
A spec without an assigned object gets every attribute wrong. An unparseable prompt scores
wrong on everything and is counted in ``unparseable``.

Aggregating (``score_images`` / ``score_folder``): per-attribute accuracy = the share of images
whose attribute is right, over the images where it is scored (all, except size and position:
the images whose prompt names one, plus unparseable ones); all_correct over all images.

What the model chose where the prompt left it free (``unstated``): over one-object prompts that
omit the position (size), the detected cell (size) of images with exactly one detected object is
counted and compared with a reference distribution (default: the data generator's, uniform over
the 9 cells and the 2 sizes) by total variation, TV = 0.5 * sum |p - q| (0: same distribution,
8/9: every object in one cell). The same is reported per prompt for prompts given at least
MIN_PROMPT_REPEATS times, with their mean ("prompt_tv"): a model can spread its objects overall
yet put each prompt's in one place. A finite sample's TV is biased upwards (8 uniform draws over
9 cells give about 0.39), so compare with real images at the same counts.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flowtok.data.shapes import (
    MIN_OBJECT_FRACTION,
    PALETTE,
    POSITIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    box_side,
    parse_caption,
    shape_mask,
)
from flowtok.errors import DataError

__all__ = [
    "ATTRIBUTES", "UNSTATED_REFERENCE", "Detected", "ObjectSpec", "caption_matches",
    "detect_objects", "judge", "parse_caption", "score_folder", "score_images", "total_variation",
]

ATTRIBUTES: tuple[str, ...] = ("color", "shape", "size", "position", "count")
MIN_BRIGHTNESS = 0.5  # foreground: at least half as bright as the nearest palette colour
MAX_BRIGHTNESS = 1.25  # brighter than the palette counts as the palette colour, up to this factor
MAX_OFF_PALETTE = 0.3  # residual / |alpha p|: tan of the largest hue error accepted (~17 degrees)
MIN_SHAPE_IOU = 0.5  # a component unlike every template has no shape
MIN_COLOR_PURITY = 0.6  # a component mixing colours more than this has no colour
MAX_FAILURES_LISTED = 10_000  # aggregate results keep at most this many failure records
UNSTATED = ("position", "size")  # attributes a partial prompt may leave free
# the data generator's choice for an unstated attribute: uniform
UNSTATED_REFERENCE: dict[str, dict[str, float]] = {
    "position": {p: 1 / len(POSITIONS) for p in POSITIONS},
    "size": {z: 1 / len(SIZES) for z in SIZES},
}
MIN_PROMPT_REPEATS = 2  # per-prompt distributions for prompts given at least this often

_PALETTE_NAMES = list(PALETTE)
_PALETTE_RGB = np.array(list(PALETTE.values()), dtype=np.float64)  # (8, 3)
_PALETTE_SQ = (_PALETTE_RGB**2).sum(1)  # (8,) |p|^2


@dataclass(frozen=True)
class Detected:
    """One object read from pixels. bbox = (x0, y0, width, height); (cx, cy) = pixel centroid."""

    color: str | None
    shape: str | None
    size: str
    position: str
    cx: float
    cy: float
    bbox: tuple[int, int, int, int]
    area: int
    shape_iou: float  # IoU with the chosen shape's template
    color_purity: float  # share of the object's pixels of its majority colour

    def describe(self) -> str:
        color, shape = self.color or "mixed-colour", self.shape or "unknown shape"
        return f"{self.size} {color} {shape} @ {self.position}"


# ---------------------------------------------------------------- reading pixels
def classify_pixels(image: np.ndarray) -> np.ndarray:
    """Palette index of each pixel, -1 for background: int (H, W) from uint8 (H, W, 3)."""
    c = image.astype(np.float64)  # (H, W, 3)
    dots = c @ _PALETTE_RGB.T  # (H, W, 8) <c, p>
    alpha = np.clip(dots / _PALETTE_SQ, 0.0, MAX_BRIGHTNESS)  # (H, W, 8)
    # |c - alpha p|^2 = |c|^2 - 2 alpha <c, p> + alpha^2 |p|^2
    residual_sq = (c * c).sum(-1, keepdims=True) - 2 * alpha * dots + alpha**2 * _PALETTE_SQ
    best = residual_sq.argmin(-1)  # (H, W)
    a = np.take_along_axis(alpha, best[..., None], -1)[..., 0]
    r_sq = np.take_along_axis(residual_sq, best[..., None], -1)[..., 0]
    foreground = (a >= MIN_BRIGHTNESS) & (r_sq <= (MAX_OFF_PALETTE * a) ** 2 * _PALETTE_SQ[best])
    return np.where(foreground, best, -1)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a bool (H, W) mask: int labels (H, W) (-1 outside), count.

    Labels are numbered in raster order of each component's first pixel. Every pixel starts with
    its own flat index and repeatedly takes the smallest label in its 3x3 neighbourhood, then its
    label's label (pointer jumping); at the fixed point each component holds its smallest index.
    """
    h, w = mask.shape
    outside = h * w  # larger than every pixel index
    labels = np.where(mask, np.arange(h * w).reshape(h, w), outside)
    while True:
        padded = np.pad(labels, 1, constant_values=outside)
        smallest = labels.copy()
        for dy in range(3):
            for dx in range(3):
                np.minimum(smallest, padded[dy : dy + h, dx : dx + w], out=smallest)
        flat = np.append(np.where(mask, smallest, outside).ravel(), outside)
        smallest = np.where(mask, flat[flat[smallest]], outside)
        if np.array_equal(smallest, labels):
            break
        labels = smallest
    roots, dense = np.unique(labels, return_inverse=True)  # roots sorted: `outside` comes last
    dense = np.where(mask, dense.reshape(h, w), -1).astype(np.int32)
    return dense, int((roots < outside).sum())


def _as_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise DataError(f"ShapesEval needs a square RGB image (S, S, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise DataError(f"ShapesEval needs uint8 pixels in [0, 255], got {image.dtype}")
    return image


def detect_objects(image: np.ndarray) -> list[Detected]:
    """The objects in a uint8 (S, S, 3) image, left to right (see the module docstring)."""
    image = _as_rgb(image)
    canvas = image.shape[0]
    colors = classify_pixels(image)
    labels, count = label_components(colors >= 0)
    sides = {name: box_side(name, canvas) for name in SIZES}
    found = []
    for k in range(count):
        ys, xs = np.nonzero(labels == k)
        if len(ys) < MIN_OBJECT_FRACTION * canvas * canvas:
            continue
        x0, y0 = int(xs.min()), int(ys.min())
        w, h = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
        votes = np.bincount(colors[ys, xs], minlength=len(_PALETTE_NAMES))
        mean_side = (w + h) / 2
        size = min(sides, key=lambda name: abs(sides[name] - mean_side))
        cx, cy = float(xs.mean()) + 0.5, float(ys.mean()) + 0.5
        col, row = min(int(3 * cx / canvas), 2), min(int(3 * cy / canvas), 2)
        local = labels[y0 : y0 + h, x0 : x0 + w] == k  # (h, w)
        ious = {}
        for shape in SHAPES:
            template = shape_mask(shape, w, h)
            ious[shape] = float((template & local).sum() / (template | local).sum())
        shape = max(SHAPES, key=lambda name: ious[name])
        purity = float(votes.max() / len(ys))
        found.append(Detected(
            color=_PALETTE_NAMES[int(votes.argmax())] if purity >= MIN_COLOR_PURITY else None,
            shape=shape if ious[shape] >= MIN_SHAPE_IOU else None,
            size=size,
            position=POSITIONS[3 * row + col],
            cx=cx,
            cy=cy,
            bbox=(x0, y0, w, h),
            area=len(ys),
            shape_iou=ious[shape],
            color_purity=purity,
        ))
    return sorted(found, key=lambda d: (d.cx, d.cy))


# ---------------------------------------------------------------- judging one image
def _column(position: str) -> str:
    return ("left", "center", "right")[POSITIONS.index(position) % 3]


def _attribute_matches(spec: ObjectSpec, det: Detected | None) -> dict[str, bool]:
    if det is None:
        return {"color": False, "shape": False, "size": False, "position": False}
    where = _column(det.position) if spec.column_only else det.position
    return {
        "color": det.color == spec.color,
        "shape": det.shape == spec.shape,
        "size": spec.size is None or det.size == spec.size,
        "position": spec.position is None or where == spec.position,
    }


def _best_assignment(specs: list[ObjectSpec], dets: list[Detected]) -> list[Detected | None]:
    """The detection assigned to each spec: most matching attributes in total, first on ties."""
    candidates: list[Detected | None] = list(dets) + [None] * len(specs)
    best, best_score = [None] * len(specs), -1
    for chosen in itertools.permutations(range(len(candidates)), len(specs)):
        assigned = [candidates[i] for i in chosen]
        score = sum(sum(_attribute_matches(s, d).values()) for s, d in zip(specs, assigned))
        if score > best_score:
            best, best_score = assigned, score
    return best


def judge_detections(dets: list[Detected], prompt: str) -> dict:
    """``judge`` for objects already detected (lets callers reuse one detection)."""
    specs = parse_caption(prompt)
    result = {
        "prompt": prompt,
        "parsed": specs is not None,
        "seen": [d.describe() for d in dets],
        "unstated": {},
    }
    if specs is None:
        result.update({a: False for a in ATTRIBUTES}, all_correct=False)
        return result
    assigned = _best_assignment(specs, dets)
    matches = [_attribute_matches(s, d) for s, d in zip(specs, assigned)]
    for attr in ("color", "shape"):
        result[attr] = all(m[attr] for m in matches)
    for attr in ("size", "position"):  # scored only where the prompt states them
        stated = any(getattr(s, attr) is not None for s in specs)
        result[attr] = all(m[attr] for m in matches) if stated else None
    result["count"] = len(dets) == len(specs)
    if len(specs) == 1:  # what the image chose where a one-object prompt left it free
        result["unstated"] = {
            attr: getattr(dets[0], attr) if len(dets) == 1 else None
            for attr in UNSTATED if getattr(specs[0], attr) is None
        }
    result["all_correct"] = all(result[a] is not False for a in ATTRIBUTES)
    return result


def judge(image: np.ndarray, prompt: str) -> dict:
    """Score one uint8 (S, S, 3) image against its prompt.

    Returns {"prompt", "parsed", "seen": [descriptions of detected objects], "color", "shape",
    "size", "position", "count", "all_correct", "unstated"}: booleans, except size / position =
    None when the prompt names none (two-object or partial prompts). "unstated" maps each
    attribute a one-object prompt leaves out to the detected object's value, or None unless
    exactly one object was detected ({} when the prompt states everything). See the module
    docstring for the rules.
    """
    return judge_detections(detect_objects(image), prompt)


# ---------------------------------------------------------------- aggregating
def total_variation(counts: Mapping[str, int], reference: Mapping[str, float]) -> float | None:
    """0.5 * sum |p - q| between the normalised counts and a reference distribution (None when
    nothing was counted): 0 for the same distribution, 1 for disjoint ones."""
    total = sum(counts.values())
    if total == 0:
        return None
    keys = set(counts) | set(reference)
    return 0.5 * sum(abs(counts.get(k, 0) / total - reference.get(k, 0.0)) for k in keys)


def _check_reference(reference: Mapping[str, Mapping[str, float]] | None) -> dict:
    """The reference distributions to use: UNSTATED_REFERENCE with `reference` over it."""
    merged = {**UNSTATED_REFERENCE, **(reference or {})}
    vocab = {"position": POSITIONS, "size": tuple(SIZES)}
    for attr, dist in merged.items():
        if attr not in vocab:
            raise DataError(f"reference: unknown attribute {attr!r}; expected position or size")
        extra = set(dist) - set(vocab[attr])
        if extra or any(v < 0 for v in dist.values()) or abs(sum(dist.values()) - 1) > 1e-6:
            raise DataError(
                f"reference[{attr!r}]: expected probabilities over {', '.join(vocab[attr])} summing to 1"
            )
    return merged


def _distribution(values: list[str | None], attr: str, reference: Mapping[str, float]) -> dict:
    """{"n", "counted", "counts", "tv"} of one unstated attribute over some images."""
    vocab = POSITIONS if attr == "position" else tuple(SIZES)
    counts = {k: 0 for k in vocab}
    for v in values:
        if v is not None:
            counts[v] += 1
    counted = sum(counts.values())
    return {"n": len(values), "counted": counted, "counts": counts,
            "tv": total_variation(counts, reference)}


def _unstated(results: list[dict], reference: Mapping[str, Mapping[str, float]]) -> dict:
    """The "unstated" section of an aggregate (see the module docstring)."""
    section = {}
    for attr in UNSTATED:
        pairs = [(r["prompt"], r["unstated"][attr]) for r in results if attr in r["unstated"]]
        summary = _distribution([v for _, v in pairs], attr, reference[attr])
        by_prompt: dict[str, list[str | None]] = {}
        for prompt, v in pairs:
            by_prompt.setdefault(prompt, []).append(v)
        per_prompt = {
            prompt: _distribution(values, attr, reference[attr])
            for prompt, values in by_prompt.items() if len(values) >= MIN_PROMPT_REPEATS
        }
        tvs = [d["tv"] for d in per_prompt.values() if d["tv"] is not None]
        summary["prompt_tv"] = sum(tvs) / len(tvs) if tvs else None
        summary["per_prompt"] = per_prompt
        section[attr] = summary
    return section


def _aggregate(
    results: list[dict],
    names: list[str] | None,
    reference: Mapping[str, Mapping[str, float]] | None = None,
) -> dict:
    n = len(results)
    summary: dict = {"n": n}
    scored = {}
    for attr in ATTRIBUTES:
        values = [r[attr] for r in results if r[attr] is not None]
        scored[attr] = len(values)
        summary[attr] = sum(values) / len(values) if values else None
    summary["all_correct"] = sum(r["all_correct"] for r in results) / n if n else None
    summary["scored"] = scored
    summary["unparseable"] = sum(not r["parsed"] for r in results)
    failures = []
    for i, r in enumerate(results):
        if r["all_correct"] or len(failures) >= MAX_FAILURES_LISTED:
            continue
        wrong = [a for a in ATTRIBUTES if r[a] is False] if r["parsed"] else ["unparseable"]
        entry = {"index": i, "prompt": r["prompt"], "wrong": wrong, "seen": r["seen"]}
        if names is not None:
            entry["file_name"] = names[i]
        failures.append(entry)
    summary["failures"] = failures
    summary["unstated"] = _unstated(results, _check_reference(reference))
    return summary


def score_images(
    images: list[np.ndarray],
    prompts: list[str],
    names: list[str] | None = None,
    reference: Mapping[str, Mapping[str, float]] | None = None,
) -> dict:
    """Judge uint8 (S, S, 3) images against their prompts and aggregate.

    Returns {"n", "color", "shape", "size", "position", "count", "all_correct" (accuracies in
    [0, 1], None when nothing was scored), "scored" (images scored per attribute),
    "unparseable", "failures": [{"index", "prompt", "wrong", "seen"[, "file_name"]}],
    "unstated": {"position" | "size": {"n" (one-object prompts omitting it), "counted" (of those,
    images with exactly one detected object), "counts" {value: images}, "tv" (vs the reference,
    None when nothing counted), "prompt_tv" (mean TV over repeated prompts, or None),
    "per_prompt": {prompt: {"n", "counted", "counts", "tv"}}}}}. `reference` replaces the
    uniform reference distribution per attribute ({"position": {cell: p}, "size": {...}}).
    """
    if len(images) != len(prompts):
        raise DataError(f"score_images: {len(images)} images but {len(prompts)} prompts")
    _check_reference(reference)  # before judging anything
    results = [judge(image, prompt) for image, prompt in zip(images, prompts)]
    return _aggregate(results, names, reference)


def read_metadata(folder: str | Path) -> list[tuple[str, str]]:
    """(file_name, text) pairs from ``folder/metadata.jsonl``; DataError naming the fix otherwise."""
    folder = Path(folder)
    meta = folder / "metadata.jsonl"
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    if not meta.is_file():
        hint = (
            "; it holds splits: pass its train/ or val/ folder"
            if (folder / "train" / "metadata.jsonl").is_file() else
            "; write one line {\"file_name\": ..., \"text\": prompt} per image"
        )
        raise DataError(f"{folder}: no metadata.jsonl{hint}")
    pairs = []
    for lineno, line in enumerate(meta.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pairs.append((str(record["file_name"]), str(record["text"])))
        except (ValueError, KeyError, TypeError):
            raise DataError(
                f"{meta}:{lineno}: expected a JSON object with \"file_name\" and \"text\""
            ) from None
    if not pairs:
        raise DataError(f"{meta}: no images listed")
    return pairs


def load_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) pixels of an image file; DataError when missing or unreadable."""
    if not path.is_file():
        raise DataError(f"{path}: image listed in metadata.jsonl not found")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def score_folder(
    folder: str | Path, reference: Mapping[str, Mapping[str, float]] | None = None
) -> dict:
    """Score every image listed in ``folder/metadata.jsonl`` against its "text"; see score_images."""
    folder = Path(folder)
    _check_reference(reference)
    pairs = read_metadata(folder)
    missing = [name for name, _ in pairs if not (folder / name).is_file()]
    if missing:  # before judging anything: a half-scored folder is no score
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{folder / missing[0]}: image listed in metadata.jsonl not found{more}")
    results = [judge(load_rgb(folder / name), text) for name, text in pairs]  # one image at a time
    return _aggregate(results, [name for name, _ in pairs], reference)


# ---------------------------------------------------------------- captions
def caption_matches(generated_caption: str, true_caption: str) -> bool:
    """True when a generated caption parses to the same objects as the ground-truth caption.

    Wording the grammar treats alike ("in"/"at", case, spacing, the two-object order) does not
    matter; a caption outside the grammar never matches, and a partial caption matches only a
    truth that leaves out the same attributes.
    """
    generated, truth = parse_caption(generated_caption), parse_caption(true_caption)
    return generated is not None and truth is not None and generated == truth

