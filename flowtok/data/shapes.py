"""The built-in `shapes` data set: procedural scenes of coloured shapes, their captions, and a writer.

It needs no download and can be scored exactly by ShapesEval (flowtok.eval.shapes_eval), so every
part of flowtok can be trained and measured on a CPU. The specification is
docs/shapes.md; this module is its reference implementation (numpy + PIL only).

Pixel geometry, made exact (shapes.md leaves these choices open):
- The canvas is S x S; pixel (row i, column j) covers [j, j+1) x [i, i+1), its centre is (j+.5, i+.5).
- A box of side s (small ``round(0.25 S)``, large ``round(0.45 S)``; round half up) is placed with
  its left/top pixel at ``round(c - s/2)``, c being the jittered cell centre ((2k+1)/6 S plus a
  uniform jitter of at most 0.04 S per axis), then **clamped so the whole box stays on the canvas**:
  at S=32 a large box (14 px) centred at 5.3 px would otherwise leave it. ``ShapeObject.cx/cy`` hold
  the drawn box's centre (left + s/2), so ``render`` is a pure function of the objects.
- A pixel belongs to a shape when its centre lies inside it (see ``shape_mask``); the triangle uses
  each row's widest extent (its bottom edge) so that its apex row is never empty. Every shape then
  touches all four sides of its box: its bounding box *is* the box, which the judge relies on.
- ``check_size`` verifies, for a canvas side, that this geometry holds (shapes distinguishable, no
  object below the judge's 2% speck limit, every centroid inside its named cell); 32 and 64 do, 16
  does not (a 4-px circle and a 4-px cross are the same pixels).

Partial captions (issue 24): with ``partial`` P > 0 a one-object caption leaves out, with
probability P, its size, its position or both (equally likely), e.g. "a red circle" or "a large red
circle"; the one-object grammar becomes ``a {size}? {color} {shape}( {in|at} the {position} |
in the center)?``. Such a caption says what a generator may choose freely, which is what measuring
diversity needs; two-object captions are never partial. The omission is drawn from its own stream, ``np.random.default_rng([seed, i, 1])``, so the
images (and every caption of a P = 0 data set) are byte-identical to those written without it.

Determinism: image i of a data set is drawn from ``np.random.default_rng([seed, i])``, so the first
k images do not depend on n, and a split data set is the unsplit one cut in two.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from flowtok.atomic import write_bytes_atomic
from flowtok.errors import ConfigError, DataError

# ---------------------------------------------------------------- vocabulary (shapes.md order)
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 200),
    "orange": (245, 140, 30),
    "cyan": (40, 200, 210),
    "white": (235, 235, 235),
}
BACKGROUND: tuple[int, int, int] = (0, 0, 0)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
SIZES: dict[str, float] = {"small": 0.25, "large": 0.45}  # box side as a share of the canvas
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
JITTER = 0.04  # max centre jitter per axis, as a share of the canvas
TWO_OBJECT_PROB = 0.2  # share of two-object scenes in a data set (shapes.md: 80% / 20%)
MIN_OBJECT_FRACTION = 0.02  # the judge drops components smaller than this share of the canvas
MAX_TEMPLATE_IOU = 0.9  # two different shapes at the same box must overlap less than this
# what a partial one-object caption leaves out; each equally likely
PARTIAL_OMISSIONS: tuple[tuple[str, ...], ...] = (("size",), ("position",), ("size", "position"))
PARTIAL_STREAM = 1  # image i's omission comes from default_rng([seed, i, PARTIAL_STREAM])
FORMAT_VERSION = 1  # of the written data set (dataset.json)


# ---------------------------------------------------------------- scenes
@dataclass(frozen=True)
class ShapeObject:
    """One drawn object. (cx, cy) is its box's centre in pixels, s the box side in pixels."""

    color: str
    shape: str
    size: str  # "small" | "large"
    position: str  # one of POSITIONS
    cx: float
    cy: float
    s: int


@dataclass(frozen=True)
class Scene:
    """The objects of one image and the caption that describes them."""

    objects: tuple[ShapeObject, ...]
    caption: str


@dataclass(frozen=True)
class ObjectSpec:
    """What a caption says about one object; None for what it leaves unstated.

    A partial one-object caption ("a red circle") has ``size`` and/or ``position`` None: any size
    or cell fits it (the data set draws them uniformly). For the two objects of a two-object
    caption, ``size`` is None (the caption names none; the data set draws them small) and
    ``position`` is "left" / "right" with ``column_only`` True: the caption fixes the column
    ("on the left"), not the row.
    """

    color: str
    shape: str
    size: str | None
    position: str | None
    column_only: bool = False


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def box_side(size_name: str, canvas: int) -> int:
    """Box side in pixels of a named size on an S x S canvas (8 / 14 at 32 px, 16 / 29 at 64)."""
    return _round_half_up(SIZES[size_name] * canvas)


def cell_centre(position: str, canvas: int) -> tuple[float, float]:
    """Un-jittered (x, y) centre of a named 3x3 cell, in pixels."""
    row, col = divmod(POSITIONS.index(position), 3)
    return (2 * col + 1) / 6 * canvas, (2 * row + 1) / 6 * canvas


def _box_start(centre: float, side: int, canvas: int) -> int:
    """Left (or top) pixel of a box of `side` centred near `centre`, clamped onto the canvas."""
    return min(max(_round_half_up(centre - side / 2), 0), canvas - side)


def place_object(
    rng: np.random.Generator, color: str, shape: str, size_name: str, position: str, canvas: int
) -> ShapeObject:
    """An object in its named cell, its centre jittered by at most JITTER * canvas per axis."""
    s = box_side(size_name, canvas)
    x, y = cell_centre(position, canvas)
    jx, jy = rng.uniform(-JITTER * canvas, JITTER * canvas, size=2)
    x0, y0 = _box_start(x + jx, s, canvas), _box_start(y + jy, s, canvas)
    return ShapeObject(color, shape, size_name, position, x0 + s / 2, y0 + s / 2, s)


def draw_omission(rng: np.random.Generator, partial: float) -> tuple[str, ...]:
    """What a one-object caption leaves out: nothing with probability 1 - partial, otherwise one of
    PARTIAL_OMISSIONS, each equally likely. partial = 0 never omits anything."""
    if rng.random() >= partial:
        return ()
    return PARTIAL_OMISSIONS[int(rng.integers(len(PARTIAL_OMISSIONS)))]


def sample_scene(
    rng: np.random.Generator,
    size: int,
    two_object_prob: float = TWO_OBJECT_PROB,
    omit: tuple[str, ...] = (),
) -> Scene:
    """Draw one random scene and its caption for an S x S canvas.

    One object (any size, colour, shape, cell) with probability 1 - two_object_prob; otherwise two
    small objects in the left and right cells of the middle row that differ in colour or shape.
    `omit` ("size" / "position") is left out of a one-object caption; it never changes the objects
    or the draws from rng, so the image is the one drawn without it.
    """
    check_size(size)
    colors, sizes = list(PALETTE), list(SIZES)
    if rng.random() < two_object_prob:
        while True:
            c = rng.integers(len(colors), size=2)
            k = rng.integers(len(SHAPES), size=2)
            if (c[0], k[0]) != (c[1], k[1]):
                break
        objects = tuple(
            place_object(rng, colors[c[i]], SHAPES[k[i]], "small", where, size)
            for i, where in enumerate(("left", "right"))
        )
    else:
        obj = place_object(
            rng,
            colors[rng.integers(len(colors))],
            SHAPES[rng.integers(len(SHAPES))],
            sizes[rng.integers(len(sizes))],
            POSITIONS[rng.integers(len(POSITIONS))],
            size,
        )
        objects = (obj,)
    draft = Scene(objects, "")
    return Scene(objects, caption(draft, rng, omit))


# ---------------------------------------------------------------- rendering
@functools.lru_cache(maxsize=1024)
def shape_mask(shape: str, width: int, height: int) -> np.ndarray:
    """Filled shape inscribed in a width x height box: bool (height, width), read-only.

    The renderer uses it with width == height == s; the judge uses it as the template for a
    detected component's (possibly non-square) bounding box.
    """
    du = np.abs(np.arange(width) + 0.5 - width / 2)[None, :]  # (1, w) |x - centre| of pixel centres
    dv = np.abs(np.arange(height) + 0.5 - height / 2)[:, None]  # (h, 1)
    if shape == "square":
        mask = np.ones((height, width), dtype=bool)
    elif shape == "circle":
        mask = (du / (width / 2)) ** 2 + (dv / (height / 2)) ** 2 <= 1.0
    elif shape == "triangle":
        # apex at top-centre, base on the bottom edge; row i spans its bottom edge's half-width
        half = (np.arange(height)[:, None] + 1) * width / (2 * height)  # (h, 1)
        mask = du <= half
    elif shape == "cross":
        mask = (du <= width / 6) | (dv <= height / 6)  # arms of width s/3 spanning the box
    else:
        raise DataError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    mask = np.broadcast_to(mask, (height, width)).copy()
    mask.flags.writeable = False
    return mask


def render(scene: Scene, size: int) -> np.ndarray:
    """Draw a scene: uint8 (size, size, 3), black background, exact palette colours, no anti-aliasing.

    Objects are painted in order; parts outside the canvas are clipped.
    """
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND
    for obj in scene.objects:
        x0 = _round_half_up(obj.cx - obj.s / 2)
        y0 = _round_half_up(obj.cy - obj.s / 2)
        mask = shape_mask(obj.shape, obj.s, obj.s)
        ys, xs = slice(max(y0, 0), min(y0 + obj.s, size)), slice(max(x0, 0), min(x0 + obj.s, size))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            continue
        local = mask[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
        canvas[ys, xs][local] = PALETTE[obj.color]
    return canvas


@functools.cache
def check_size(size: int) -> int:
    """Raise ConfigError unless the geometry holds on a size x size canvas; returns size.

    Checks a multiple of 16 from 32 to 1024, then exactly: the four shapes differ (IoU below
    MAX_TEMPLATE_IOU) at both sizes, the smallest object keeps MIN_OBJECT_FRACTION of the canvas,
    and at the extreme jitters every shape's pixel centroid stays inside its named cell.
    """
    if not isinstance(size, (int, np.integer)) or size < 32 or size > 1024 or size % 16:
        raise ConfigError(f"--size {size}: expected a multiple of 16 from 32 to 1024 (e.g. 32 or 64)")
    size = int(size)
    for size_name in SIZES:
        s = box_side(size_name, size)
        masks = {k: shape_mask(k, s, s) for k in SHAPES}
        for i, a in enumerate(SHAPES):
            if masks[a].sum() < MIN_OBJECT_FRACTION * size * size:
                raise ConfigError(f"--size {size}: a {size_name} {a} is below the judge's speck limit")
            for b in SHAPES[i + 1 :]:
                iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
                if iou >= MAX_TEMPLATE_IOU:
                    raise ConfigError(f"--size {size}: a {size_name} {a} and {b} look alike")
        jitter = JITTER * size
        for position in POSITIONS:
            row, col = divmod(POSITIONS.index(position), 3)
            x, y = cell_centre(position, size)
            for shape in SHAPES:
                ys, xs = np.nonzero(masks[shape])
                for dx in (-jitter, jitter):
                    for dy in (-jitter, jitter):
                        gx = _box_start(x + dx, s, size) + xs.mean() + 0.5
                        gy = _box_start(y + dy, s, size) + ys.mean() + 0.5
                        if (int(3 * gx / size), int(3 * gy / size)) != (col, row):
                            raise ConfigError(
                                f"--size {size}: a {size_name} {shape} can leave the {position} cell"
                            )
    return size


# ---------------------------------------------------------------- captions
def _where(position: str, preposition: str) -> str:
    return "in the center" if position == "center" else f"{preposition} the {position}"


def caption(
    scene: Scene, rng: np.random.Generator | None = None, omit: tuple[str, ...] = ()
) -> str:
    """The caption of a scene's objects (shapes.md grammar).

    One object: ``a {size} {color} {shape} {where}``, where = "in the center", or "in the {pos}" /
    "at the {pos}" (drawn from rng; "in" without one); `omit` leaves out "size" and/or "position"
    (where), e.g. "a red circle". The preposition is drawn even when omitted, so rng advances the
    same either way. Two objects (`omit` ignored):
    ``a {color} {shape} on the left and a {color} {shape} on the right``.
    """
    unknown = set(omit) - {"size", "position"}
    if unknown:
        raise DataError(f"caption: cannot omit {sorted(unknown)}; only 'size' and 'position'")
    objs = scene.objects
    if len(objs) == 1:
        o = objs[0]
        preposition = "in" if rng is None else ("in", "at")[int(rng.integers(2))]
        words = ["a"] + ([] if "size" in omit else [o.size]) + [o.color, o.shape]
        if "position" not in omit:
            words.append(_where(o.position, preposition))
        return " ".join(words)
    if len(objs) == 2:
        left, right = sorted(objs, key=lambda o: o.cx)
        return (
            f"a {left.color} {left.shape} on the left and a {right.color} {right.shape} on the right"
        )
    raise DataError(f"a shapes caption describes one or two objects, not {len(objs)}")


def _alternatives(names) -> str:
    return "|".join(sorted(names, key=len, reverse=True))  # "top left" before "top"


_COLOR, _SHAPE = _alternatives(PALETTE), _alternatives(SHAPES)
_ONE_OBJECT = re.compile(  # size and position optional (partial captions)
    rf"an? (?:(?P<size>{_alternatives(SIZES)}) )?(?P<color>{_COLOR}) (?P<shape>{_SHAPE})"
    rf"(?: (?:in|at) the (?P<position>{_alternatives(POSITIONS)}))?"
)
_TWO_OBJECTS = re.compile(
    rf"an? (?P<c1>{_COLOR}) (?P<s1>{_SHAPE}) on the (?P<p1>left|right) and "
    rf"an? (?P<c2>{_COLOR}) (?P<s2>{_SHAPE}) on the (?P<p2>left|right)"
)


def parse_caption(text: str) -> list[ObjectSpec] | None:
    """Read a caption back into object specs (left object first), or None outside the grammar.

    A one-object caption may leave out its size and/or position (a partial caption): the spec
    then holds None for it. Case, surrounding/repeated spaces, a final period, "an" for "a", and
    "at the center" are tolerated; the two halves of a two-object caption may come in either order.
    """
    norm = " ".join(str(text).lower().split()).rstrip(".").strip()
    m = _ONE_OBJECT.fullmatch(norm)
    if m:
        return [ObjectSpec(m["color"], m["shape"], m["size"], m["position"])]
    m = _TWO_OBJECTS.fullmatch(norm)
    if m and m["p1"] != m["p2"]:
        specs = [
            ObjectSpec(m["c1"], m["s1"], None, m["p1"], column_only=True),
            ObjectSpec(m["c2"], m["s2"], None, m["p2"], column_only=True),
        ]
        return sorted(specs, key=lambda o: o.position)  # "left" < "right"
    return None


def scene_from_caption(text: str, size: int, rng: np.random.Generator) -> Scene:
    """A ground-truth scene for any grammatical prompt (jitter drawn from rng); DataError otherwise.

    Objects of a two-object prompt are small and sit in the middle row, as in the data set. A size
    or cell a one-object prompt leaves unstated is drawn uniformly from rng, as the data set draws
    it; a fully stated prompt draws nothing more than the jitter.
    """
    check_size(size)
    specs = parse_caption(text)
    if specs is None:
        raise DataError(f"prompt {text!r} is outside the shapes caption grammar (see docs/shapes.md)")
    sizes = list(SIZES)
    objects = []
    for o in specs:
        if o.column_only:
            size_name = o.size or "small"
        else:
            size_name = o.size or sizes[int(rng.integers(len(sizes)))]
        position = o.position or POSITIONS[int(rng.integers(len(POSITIONS)))]
        objects.append(place_object(rng, o.color, o.shape, size_name, position, size))
    return Scene(tuple(objects), text)


# ---------------------------------------------------------------- canonical prompts
def _balanced(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """n values from range(k), each appearing n // k or n // k + 1 times, in random order."""
    reps = -(-n // k)
    return np.concatenate([rng.permutation(k) for _ in range(reps)] + [np.zeros(0, int)])[:n]


def _make_rows_unique(
    rng: np.random.Generator,
    table: np.ndarray,
    valid: Callable[[tuple], bool],
    distinct: int,
    tries: int = 2000,
) -> None:
    """Swap single entries between rows (columns keep their counts) until rows are unique and valid.

    Rows repeat only after all `distinct` valid rows were used. Best effort: a row keeps its value
    after `tries` swaps that did not help.
    """
    n, width = table.shape
    seen: set[tuple] = set()
    for i in range(n):
        if len(seen) == distinct:
            seen.clear()
        for _ in range(tries):
            row = tuple(int(v) for v in table[i])
            if row not in seen and valid(row):
                break
            j, col = int(rng.integers(n)), int(rng.integers(width))
            if j == i:
                continue
            old_j = tuple(int(v) for v in table[j])
            table[i, col], table[j, col] = table[j, col], table[i, col]
            new_j = tuple(int(v) for v in table[j])
            if j < i and (new_j in seen or not valid(new_j)):  # keep earlier rows good
                table[i, col], table[j, col] = table[j, col], table[i, col]
            elif j < i:
                seen.discard(old_j)
                seen.add(new_j)
        seen.add(tuple(int(v) for v in table[i]))


def canonical_prompts(n: int, seed: int = 0, two_object_fraction: float = TWO_OBJECT_PROB) -> list[str]:
    """A fixed, balanced list of n grammatical prompts to score text-to-image models on.

    round(two_object_fraction * n) two-object prompts, the rest one-object; within each kind every
    colour, shape, size and cell appears equally often (to within one), prompts are
    distinct as long as the grammar allows, and the order is shuffled. Same (n, seed): same list.
    """
    if n < 1:
        raise ConfigError(f"canonical_prompts: n must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 0xC0FFEE])
    colors, sizes = list(PALETTE), list(SIZES)
    n_two = _round_half_up(two_object_fraction * n)
    n_one = n - n_two
    one = np.stack(
        [_balanced(rng, len(colors), n_one), _balanced(rng, len(SHAPES), n_one),
         _balanced(rng, len(sizes), n_one), _balanced(rng, len(POSITIONS), n_one)], axis=1
    )
    distinct_one = len(colors) * len(SHAPES) * len(sizes) * len(POSITIONS)
    _make_rows_unique(rng, one, lambda r: True, distinct=distinct_one)
    preps = _balanced(rng, 2, n_one)
    two = np.stack(
        [_balanced(rng, len(colors), n_two), _balanced(rng, len(SHAPES), n_two),
         _balanced(rng, len(colors), n_two), _balanced(rng, len(SHAPES), n_two)], axis=1
    )
    kinds = len(colors) * len(SHAPES)
    _make_rows_unique(rng, two, lambda r: (r[0], r[1]) != (r[2], r[3]), distinct=kinds * (kinds - 1))
    prompts = [
        f"a {sizes[z]} {colors[c]} {SHAPES[k]} {_where(POSITIONS[p], ('in', 'at')[w])}"
        for (c, k, z, p), w in zip(one.tolist(), preps.tolist())
    ] + [
        f"a {colors[c1]} {SHAPES[k1]} on the left and a {colors[c2]} {SHAPES[k2]} on the right"
        for c1, k1, c2, k2 in two.tolist()
    ]
    return [prompts[i] for i in rng.permutation(len(prompts))]


def partial_prompts(n: int, seed: int = 0) -> list[str]:
    """A fixed list of n one-object prompts that state neither size nor position ("a red circle").

    Each colour x shape combination appears equally often (to within one) and the first 32 are
    distinct; the order is shuffled. Such prompts leave a generator free to choose size and cell,
    so repeating them measures diversity. Same (n, seed): same list.
    """
    if n < 1:
        raise ConfigError(f"partial_prompts: n must be at least 1, got {n}")
    rng = np.random.default_rng([seed, 0x9A97])
    colors = list(PALETTE)
    kinds = [(c, k) for c in colors for k in SHAPES]
    return [f"a {kinds[j][0]} {kinds[j][1]}" for j in _balanced(rng, len(kinds), n).tolist()]


# ---------------------------------------------------------------- writing a data set

def _save_png(image: np.ndarray, path: Path) -> None:
    """PNG via a temp name and rename (no fsync per image: metadata.jsonl, written last, is)."""
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG")
    os.replace(tmp, path)


def _previous_files(out: Path) -> set[Path]:
    """Files of a shapes data set already in `out` (to replace), or DataError for a foreign folder."""
    if not out.exists():
        return set()
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; pass a new or empty folder with -o")
    if not any(out.iterdir()):
        return set()
    try:
        info = json.loads((out / "dataset.json").read_text())
        if info.get("generator") != "flowtok.data.shapes":
            raise ValueError
    except (OSError, ValueError, AttributeError):
        raise DataError(
            f"{out}: folder is not empty and holds no shapes data set; pass a new or empty folder"
        ) from None
    files = {out / "dataset.json"}
    for meta in (out / "metadata.jsonl", out / "train" / "metadata.jsonl", out / "val" / "metadata.jsonl"):
        if meta.is_file():
            files.add(meta)
            for line in meta.read_text().splitlines():
                try:
                    files.add(meta.parent / json.loads(line)["file_name"])
                except (ValueError, KeyError, TypeError):
                    continue
    return files


def write_dataset(
    out_dir: str | os.PathLike,
    n: int,
    size: int,
    seed: int,
    val_fraction: float = 0.0,
    two_object_prob: float = TWO_OBJECT_PROB,
    progress: Callable[[int], None] | None = None,
    partial: float = 0.0,
) -> dict:
    """Write n rendered scenes as a Hugging Face image folder; returns a summary dict.

    Layout: ``out_dir/00000.png … + metadata.jsonl`` ({"file_name", "text"} per line), or with
    val_fraction > 0 the first n - round(val_fraction * n) images in ``out_dir/train/`` and the rest
    in ``out_dir/val/``, each folder with its own metadata.jsonl. Files keep their global index as
    name, so train + val is exactly the unsplit data set. ``out_dir/dataset.json`` records the
    arguments. A folder holding an earlier shapes data set is replaced; any other non-empty folder
    is refused. `progress(k)` is called after every k written images (tqdm's ``update``).
    `partial` is the probability that a one-object caption leaves out its size, position or both
    (see the module docstring); the images do not depend on it.
    """
    if n < 1:
        raise ConfigError(f"--n {n}: the data set needs at least one image")
    if seed < 0:
        raise ConfigError(f"--seed {seed}: expected a non-negative integer")
    check_size(size)
    if not 0.0 <= two_object_prob <= 1.0:
        raise ConfigError(f"--two-object-prob {two_object_prob}: expected a value in [0, 1]")
    if not 0.0 <= partial <= 1.0:
        raise ConfigError(f"--partial {partial}: expected a probability in [0, 1]")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val {val_fraction}: expected a fraction in [0, 1)")
    n_val = _round_half_up(val_fraction * n) if val_fraction > 0 else 0
    if val_fraction > 0 and not 1 <= n_val < n:
        raise ConfigError(f"--val {val_fraction} of {n} images gives {n_val} validation images")
    out = Path(out_dir)
    previous = _previous_files(out)
    splits = {"train": range(n - n_val), "val": range(n - n_val, n)} if n_val else {"": range(n)}
    digits = max(5, len(str(n - 1)))
    written: set[Path] = set()
    two_object = partial_captions = 0
    for split, indices in splits.items():
        folder = out / split if split else out
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in indices:
            omit = draw_omission(np.random.default_rng([seed, i, PARTIAL_STREAM]), partial)
            scene = sample_scene(np.random.default_rng([seed, i]), size, two_object_prob, omit)
            two_object += len(scene.objects) == 2
            partial_captions += len(scene.objects) == 1 and bool(omit)
            name = f"{i:0{digits}d}.png"
            _save_png(render(scene, size), folder / name)
            written.add(folder / name)
            lines.append(json.dumps({"file_name": name, "text": scene.caption}))
            if progress is not None:
                progress(1)
        write_bytes_atomic(folder / "metadata.jsonl", ("\n".join(lines) + "\n").encode())
        written.add(folder / "metadata.jsonl")
    info = {
        "generator": "flowtok.data.shapes",
        "format_version": FORMAT_VERSION,
        "n": n,
        "size": size,
        "seed": seed,
        "val_fraction": val_fraction,
        "two_object_prob": two_object_prob,
        "partial": partial,
        "splits": {k or "all": len(v) for k, v in splits.items()},
        "two_object_scenes": two_object,
        "partial_captions": partial_captions,
        "palette": {k: list(v) for k, v in PALETTE.items()},
    }
    write_bytes_atomic(out / "dataset.json", (json.dumps(info, indent=2) + "\n").encode())
    written.add(out / "dataset.json")
    for stale in previous - written:
        stale.unlink(missing_ok=True)
    for split in ("train", "val"):  # a split folder the new layout no longer has
        folder = out / split
        if folder.is_dir() and split not in splits and not any(folder.iterdir()):
            folder.rmdir()
    return {"out": str(out), **{k: v for k, v in info.items() if k != "palette"}}

