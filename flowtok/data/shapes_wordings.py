"""Paraphrases of shapes captions: many wordings for training, and a held-out set for evaluation.

A text -> image model trained only on the strict caption grammar (flowtok.data.shapes) breaks on
any other wording. ``training_variants`` augments a caption with ``TRAIN_STYLE`` paraphrases;
``heldout_prompts`` words balanced scenes in ``HELDOUT_STYLE``, which shares no synonym and no
sentence frame with the training side, so an evaluation on it measures generalisation to new
wordings rather than recall of seen ones. Colours and shape names are the same words on both
sides: they are the judge's vocabulary, not something to paraphrase.

The split puts on the held-out side the words a real user most likely types that the model then
never saw in training (train | held-out):

- size small / large: small, little, mini, miniature / large, huge, giant, enormous, massive |
  tiny / big
- corners: top left, upper left, bottom right, lower right, top left area, upper left region
  ... | top-left corner, upper left corner, top-left (hyphenated) ...
- edges: top, top middle, top area, upper region, left, middle left, left area ... | top edge,
  upper edge, upper part, left side, left edge, left-hand side ...
- center: center, middle, central area, middle region | centre, very center
- prepositions: in / at the ..., on the left / right | in, at; along (edges); on (sides)
- one-object frames: "a {np} [where]", "{where}, a {np}", "there is a ...", "an image of a ...",
  "one {np} ...", "a {color} {shape}, {size}[, where]", "a {np}, {where}", "a photo of a ...",
  "the {np} [where]", "a {np} placed {where}", "{where} there is a {np}", "a drawing of a ...",
  "here is a ...", "i see a ...", "draw a ...", "a {np} can be seen {where}", "a {np} drawn
  {where}", "{where} is a {np}", "a {np} sits {where}" | "{place}: a {np}",
  "{np} [where]" (no article), "{color} {shape}, {size}[, where]" (no article), "a picture of a
  ...", "a {np} located {where}", "an image showing a ..."
- two-object frames (L left, R right): "a L on the left and a R on the right" (either order),
  "a L to the left of a R", "a R to the right of a L", "a L and a R, from left to right", "on
  the left a L, on the right a R", "a L on the left, a R on the right" and the same two with
  the right first, "a L left of a R", "a R right of a L", "a L at left and a R at right", "one L
  on the left and one R on the right", "the L is on the left, the R on the right", "a L to the
  left, a R to the right", "a L followed by a R on the right", "both a L on the left and a R on
  the right", "left is a L and right is a R", "a L sits left, a R sits right", "a drawing of /
  i see a L on the left and a R on the right" | "left: L, right: R",
  "L on the left side, R on the right side", "a L next to a R on its right", "a R with a L to
  its left", "L left, R right"

So every held-out wording holds a word or mark training never produces (big, tiny, corner, side,
edge, part, centre, very, along, picture, located, showing, next, with, its, ":", "-") or starts
without the determiner / preposition every training wording starts with ("big red circle", "red
circle left, blue square right"). Both sides share the surface variants: a capital first letter and
a final period (MiniLM is uncased; the period is one token).

Two styles come from other files, each written by someone who had read neither this module
nor any held-out set (benchmarks/RESULTS.md, issue 24 seventh pass): ``wide_training_style``
(TRAIN_STYLE plus the natural English of shapes_wordings_wide: dozens of size words, ~20 place
phrases per cell, 94 one-object and 73 two-object frames), a training option
(train_flow.caption_style "wide"), and ``heldout3_style`` (shapes_wordings_heldout3), a third
held-out set. Written blind, they share some wordings with the other sides by chance (as a
user's prompts would): ``heldout_prompts(..., avoid=style)`` words each scene only in ways a
training style never does, checked by ``can_word`` without listing the wide style's wordings
(hundreds of thousands per scene).

Wordings stay within MAX_TOKENS WordPiece tokens (the text encoder keeps 16 with [CLS] / [SEP]);
fills that would not fit are never drawn.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flowtok.data.shapes import PALETTE, POSITIONS, SHAPES, SIZES, ObjectSpec

MAX_TOKENS = 14  # WordPiece tokens of a wording, without [CLS] / [SEP] (the encoder keeps 16)
# vocabulary words WordPiece splits ("cy", "##an")
EXTRA_PIECES: dict[str, int] = {
    "1x": 1, "asap": 1, "bg": 1, "biggish": 2, "bitsy": 1, "bitty": 1, "bung": 1, "chunky": 1,
    "cyan": 1, "dab": 1, "dainty": 1, "diminutive": 2, "dinky": 1, "garnish": 2, "generously": 1,
    "gimme": 1, "ginormous": 2, "hefty": 2, "hulking": 1, "humongous": 2, "itsy": 1, "itty": 1,
    "jumbo": 1, "largish": 2, "lol": 1, "midpoint": 1, "minimalist": 1, "minuscule": 1, "nook": 1,
    "obj": 1, "outsized": 1, "oversize": 1, "picturing": 1, "pint": 1, "plop": 1, "pls": 1,
    "pos": 1, "puny": 1, "repro": 1, "sizeable": 1, "smallish": 1, "snug": 2, "squarely": 1,
    "supersized": 2, "teensy": 1, "teeny": 1, "titchy": 2, "undersized": 2, "viewscreen": 1,
    "weensy": 2, "weeny": 1, "whacking": 2, "whopping": 1,
}
P_CAPITAL = 0.25  # share of wordings with a capital first letter
P_PERIOD = 0.25  # share of wordings ending in "."
HELDOUT_TWO_FRACTION = 0.15  # share of two-object scenes in heldout_prompts
HELDOUT_PARTIAL_FRACTION = 0.15  # share of partial one-object scenes (size and / or place unstated)
PARTIAL_KINDS: tuple[tuple[bool, bool], ...] = ((False, False), (True, False), (False, True))
MAX_DRAWS_PER_VARIANT = 50  # training_variants: draws per wanted variant before repeating
ENUMERATE_LIMIT = 20_000  # a scene's wordings in a style: above this paraphrase samples lazily

_PIECE = re.compile(r"\w+|[^\w\s]")
_SLOT = re.compile(r"\{(\w+)\}")
_OPTIONAL = re.compile(r"\[([^\]]*)\]")
_VOWEL_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU])")
_AN = re.compile(r"\ban\b")
# a stated slot and the slots that mention it: a frame must mention every stated attribute
_MENTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (("size", ("np", "size")),
                                                      ("where", ("where", "place")))


# ---------------------------------------------------------------- styles
@dataclass(frozen=True, eq=False)  # hashed by identity: the wording cache keys on the style
class WordingStyle:
    """One side of the split: the words and sentence frames a wording may use.

    ``frames`` (one object) use the slots {np} ("[size ]color shape"), {size}, {color}, {shape},
    {where} (a prepositional phrase: "in the top left") and {place} (its noun: "top left");
    ``pair_frames`` (two objects) use {l} and {r}, the left and right objects' noun phrases.
    A part in [brackets] is dropped when a slot in it is unstated (size or position None); a frame
    with an unstated slot outside brackets is not used for that caption, nor is one that leaves a
    stated size or place out ("a {shape} in {color}" for a sized object).
    """

    name: str
    sizes: Mapping[str, tuple[str, ...]]
    places: Mapping[str, tuple[str, ...]]
    wheres: Mapping[str, tuple[str, ...]]
    frames: tuple[str, ...]
    pair_frames: tuple[str, ...]


def _wheres(
    places: Mapping[str, tuple[str, ...]], prepositions: Callable[[str], tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """Prepositional phrases ("at the top left") of every place noun of every position."""
    return {
        pos: tuple(f"{prep} the {noun}" for noun in nouns for prep in prepositions(noun))
        for pos, nouns in places.items()
    }


def _train_prepositions(noun: str) -> tuple[str, ...]:
    return ("in", "at", "on") if noun in ("left", "right") else ("in", "at")


_HELDOUT_PREPOSITIONS: dict[str, tuple[str, ...]] = {
    "corner": ("in", "at"), "edge": ("at", "along"), "side": ("on",), "part": ("in",),
}


def _heldout_prepositions(noun: str) -> tuple[str, ...]:
    return _HELDOUT_PREPOSITIONS.get(noun.split()[-1], ("in", "at"))


TRAIN_PLACES: dict[str, tuple[str, ...]] = {
    "top left": ("top left", "upper left", "top left area", "upper left region"),
    "top": ("top", "top middle", "top area", "upper region"),
    "top right": ("top right", "upper right", "top right area", "upper right region"),
    "left": ("left", "middle left", "left area", "left region"),
    "center": ("center", "middle", "central area", "middle region"),
    "right": ("right", "middle right", "right area", "right region"),
    "bottom left": ("bottom left", "lower left", "bottom left area", "lower left region"),
    "bottom": ("bottom", "bottom middle", "bottom area", "lower region"),
    "bottom right": ("bottom right", "lower right", "bottom right area", "lower right region"),
}
HELDOUT_PLACES: dict[str, tuple[str, ...]] = {
    "top left": ("top-left corner", "upper left corner", "top-left"),
    "top": ("top edge", "upper edge", "upper part"),
    "top right": ("top-right corner", "upper right corner", "top-right"),
    "left": ("left side", "left edge", "left-hand side"),
    "center": ("centre", "very center"),
    "right": ("right side", "right edge", "right-hand side"),
    "bottom left": ("bottom-left corner", "lower left corner", "bottom-left"),
    "bottom": ("bottom edge", "lower edge", "lower part"),
    "bottom right": ("bottom-right corner", "lower right corner", "bottom-right"),
}

TRAIN_STYLE = WordingStyle(
    name="train",
    sizes={"small": ("small", "little", "mini", "miniature"),
           "large": ("large", "huge", "giant", "enormous", "massive")},
    places=TRAIN_PLACES,
    wheres=_wheres(TRAIN_PLACES, _train_prepositions),
    frames=(
        "a {np}[ {where}]",
        "{where}, a {np}",
        "there is a {np}[ {where}]",
        "an image of a {np}[ {where}]",
        "one {np}[ {where}]",
        "a {color} {shape}, {size}[, {where}]",
        "a {np}, {where}",
        "a photo of a {np}[ {where}]",
        "the {np}[ {where}]",
        "a {np} placed {where}",
        "{where} there is a {np}",
        "a drawing of a {np}[ {where}]",
        "here is a {np}[ {where}]",
        "i see a {np}[ {where}]",
        "draw a {np}[ {where}]",
        "a {np} can be seen {where}",
        "a {np} drawn {where}",
        "{where} is a {np}",
        "a {np} sits {where}",
    ),
    pair_frames=(
        "a {l} on the left and a {r} on the right",
        "a {r} on the right and a {l} on the left",
        "a {l} to the left of a {r}",
        "a {r} to the right of a {l}",
        "a {l} and a {r}, from left to right",
        "on the left a {l}, on the right a {r}",
        "a {l} on the left, a {r} on the right",
        "a {r} on the right, a {l} on the left",
        "on the right a {r}, on the left a {l}",
        "a {l} left of a {r}",
        "a {r} right of a {l}",
        "a {l} at left and a {r} at right",
        "one {l} on the left and one {r} on the right",
        "the {l} is on the left, the {r} on the right",
        "a {l} to the left, a {r} to the right",
        "a {l} followed by a {r} on the right",
        "both a {l} on the left and a {r} on the right",
        "left is a {l} and right is a {r}",
        "a {l} sits left, a {r} sits right",
        "a drawing of a {l} on the left and a {r} on the right",
        "i see a {l} on the left and a {r} on the right",
    ),
)
HELDOUT_STYLE = WordingStyle(
    name="heldout",
    sizes={"small": ("tiny",), "large": ("big",)},
    places=HELDOUT_PLACES,
    wheres=_wheres(HELDOUT_PLACES, _heldout_prepositions),
    frames=(
        "{place}: a {np}",
        "{np}[ {where}]",
        "{color} {shape}, {size}[, {where}]",
        "a picture of a {np}[ {where}]",
        "a {np} located {where}",
        "an image showing a {np}[ {where}]",
    ),
    pair_frames=(
        "left: {l}, right: {r}",
        "{l} on the left side, {r} on the right side",
        "a {l} next to a {r} on its right",
        "a {r} with a {l} to its left",
        "{l} left, {r} right",
    ),
)


# A second held-out set, written after the first had been scored (and after training wordings
# were widened with the first one's failures in view): words and frames in neither of the
# others, to measure generalisation on wordings that no choice of the training side was made
# against.
HELDOUT2_PLACES: dict[str, tuple[str, ...]] = {
    "top left": ("upper left quadrant", "top left spot"),
    "top": ("top center", "upper middle spot"),
    "top right": ("upper right quadrant", "top right spot"),
    "left": ("far left", "left middle spot"),
    "center": ("dead center", "exact middle"),
    "right": ("far right", "right middle spot"),
    "bottom left": ("lower left quadrant", "bottom left spot"),
    "bottom": ("bottom center", "lower middle spot"),
    "bottom right": ("lower right quadrant", "bottom right spot"),
}
_HELDOUT2_PREPOSITIONS: dict[str, tuple[str, ...]] = {
    "quadrant": ("in",), "spot": ("at", "in"), "left": ("at", "on"), "right": ("at", "on"),
}


def _heldout2_prepositions(noun: str) -> tuple[str, ...]:
    return _HELDOUT2_PREPOSITIONS.get(noun.split()[-1], ("in", "at"))


HELDOUT2_STYLE = WordingStyle(
    name="heldout2",
    sizes={"small": ("petite", "teeny"), "large": ("oversized", "bigger")},
    places=HELDOUT2_PLACES,
    wheres=_wheres(HELDOUT2_PLACES, _heldout2_prepositions),
    frames=(
        "can you draw a {np}[ {where}]",
        "please make a {np}[ {where}]",
        "{np}, positioned {where}",
        "show me a {np}[ {where}]",
        "a {np} appears {where}",
        "there's a {np}[ {where}]",
    ),
    pair_frames=(
        "{l} at the left and {r} at the right",
        "to the left a {l}, to the right a {r}",
        "a {l} and on its right a {r}",
        "a {l} plus a {r} further right",
        "show me a {l} on the left and a {r} on the right",
    ),
)


# ---------------------------------------------------------------- blind-written styles
def _by_last_word(table: Mapping[str, tuple[str, ...]]) -> Callable[[str], tuple[str, ...]]:
    """Prepositions of a place noun from its last word, table["*"] for any other."""
    return lambda noun: table.get(noun.split()[-1], table["*"])


def _union(*groups: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(w for g in groups for w in g))


def _blind_parts(module_name: str, prefix: str) -> tuple[dict, dict, dict, tuple, tuple]:
    """(sizes, places, wheres, frames, pair_frames) of one blind-written wording module (training,
    held-out or validation), whose constants are ``{prefix}_SIZES``, ``_PLACES``,
    ``_PREPOSITIONS``, ``_FRAMES`` and ``_PAIR_FRAMES``."""
    import importlib

    mod = importlib.import_module(f"flowtok.data.{module_name}")
    places = getattr(mod, f"{prefix}_PLACES")
    wheres = _wheres(places, _by_last_word(getattr(mod, f"{prefix}_PREPOSITIONS")))
    return (getattr(mod, f"{prefix}_SIZES"), places, wheres, getattr(mod, f"{prefix}_FRAMES"),
            getattr(mod, f"{prefix}_PAIR_FRAMES"))


def _training_union(name: str, modules: Sequence[tuple[str, str]]) -> WordingStyle:
    """TRAIN_STYLE plus the words and frames of blind-written training modules, in order."""
    parts = [(TRAIN_STYLE.sizes, TRAIN_PLACES, TRAIN_STYLE.wheres, TRAIN_STYLE.frames,
              TRAIN_STYLE.pair_frames)] + [_blind_parts(m, p) for m, p in modules]
    return WordingStyle(
        name=name,
        sizes={k: _union(*(part[0][k] for part in parts)) for k in SIZES},
        places={pos: _union(*(part[1][pos] for part in parts)) for pos in POSITIONS},
        wheres={pos: _union(*(part[2][pos] for part in parts)) for pos in POSITIONS},
        frames=_union(*(part[3] for part in parts)),
        pair_frames=_union(*(part[4] for part in parts)),
    )


# blind-written training modules (module, constant prefix): natural English by writers who had
# not seen any held-out or validation wording set, nor each other's file (benchmarks/RESULTS.md,
# seventh and eighth passes), so they may share words or frames with those sets by chance, as a
# user's prompts would
WIDE_MODULES: tuple[tuple[str, str], ...] = (("shapes_wordings_wide", "WIDE"),)
WIDER_MODULES: tuple[tuple[str, str], ...] = WIDE_MODULES + (
    ("shapes_wordings_wide2", "WIDE2"), ("shapes_wordings_wide3", "WIDE3"),
)


@functools.cache  # one object per style: the wording cache keys on the style's identity
def wide_training_style() -> WordingStyle:
    """TRAIN_STYLE plus ``shapes_wordings_wide`` (one blind writer)."""
    return _training_union("wide", WIDE_MODULES)


@functools.cache
def wider_training_style() -> WordingStyle:
    """The wide style plus ``shapes_wordings_wide2`` and ``_wide3`` (two more blind writers, each
    blind to the other)."""
    return _training_union("wider", WIDER_MODULES)


@functools.cache
def heldout3_style() -> WordingStyle:
    """The third held-out set (``shapes_wordings_heldout3``), written blind to every training
    style: never trained on."""
    return WordingStyle("heldout3", *_blind_parts("shapes_wordings_heldout3", "HELDOUT3"))


@functools.cache
def validation_style() -> WordingStyle:
    """A validation set (``shapes_wordings_val``), written blind to every other wording module:
    for choosing between models, never trained on, and not one of the held-out sets that
    report generalisation (choosing on those would tune on them)."""
    return WordingStyle("val", *_blind_parts("shapes_wordings_val", "VAL"))


# the training side's styles by their config name (train_flow.caption_style)
TRAINING_STYLES: dict[str, Callable[[], WordingStyle]] = {
    "train": lambda: TRAIN_STYLE, "wide": wide_training_style, "wider": wider_training_style,
}


# the held-out sets by name: never trained on
HELDOUT_STYLES: dict[str, WordingStyle] = {
    "heldout": HELDOUT_STYLE, "heldout2": HELDOUT2_STYLE, "heldout3": heldout3_style(),
}


def training_style(name: str) -> WordingStyle:
    """The training style called ``name`` (train_flow.caption_style)."""
    if name not in TRAINING_STYLES:
        raise ValueError(f"unknown caption style {name!r}; use one of {sorted(TRAINING_STYLES)}")
    return TRAINING_STYLES[name]()


# ---------------------------------------------------------------- wording
def approx_tokens(text: str) -> int:
    """MiniLM WordPiece tokens of a wording without [CLS] / [SEP], for this module's vocabulary:
    one per word or punctuation mark, plus the extra pieces of the few words WordPiece splits."""
    pieces = _PIECE.findall(text.lower())
    return len(pieces) + sum(EXTRA_PIECES.get(p, 0) for p in pieces)


def _noun_phrases(spec: ObjectSpec, style: WordingStyle) -> tuple[str, ...]:
    """ "[size ]color shape" in every size synonym of the style (one phrase without a size)."""
    if spec.size is None:
        return (f"{spec.color} {spec.shape}",)
    return tuple(f"{word} {spec.color} {spec.shape}" for word in style.sizes[spec.size])


def _slot_options(specs: tuple[ObjectSpec, ...], style: WordingStyle) -> dict[str, tuple[str, ...]]:
    """The words each slot may take for these objects; unstated slots are absent."""
    if len(specs) == 2:
        left, right = sorted(specs, key=lambda s: s.position != "left")
        return {"l": _noun_phrases(left, style), "r": _noun_phrases(right, style)}
    (spec,) = specs
    options = {"np": _noun_phrases(spec, style), "color": (spec.color,), "shape": (spec.shape,)}
    if spec.size is not None:
        options["size"] = style.sizes[spec.size]
    if spec.position is not None:
        options["where"] = style.wheres[spec.position]
        options["place"] = style.places[spec.position]
    return options


def _resolve(frame: str, available: Mapping[str, object]) -> str | None:
    """The frame with its [optional] parts kept or dropped; None if a required slot is unstated."""
    frame = _OPTIONAL.sub(
        lambda m: m[1] if all(s in available for s in _SLOT.findall(m[1])) else "", frame
    )
    return frame if all(s in available for s in _SLOT.findall(frame)) else None


def _with_articles(text: str) -> str:
    return _VOWEL_ARTICLE.sub(r"\1n ", text)  # "a orange circle" -> "an orange circle"


@functools.lru_cache(maxsize=8192)
def _frames_that_fit(
    specs: tuple[ObjectSpec, ...], style: WordingStyle
) -> tuple[tuple[str, str, tuple[str, ...], int, str], ...]:
    """(frame, its resolved text, its slots, how many wordings it gives before the length
    check, its shortest wording) per frame whose shortest wording fits in MAX_TOKENS.
    Enumerates nothing: a wide style words one scene in hundreds of thousands of ways."""
    if len(specs) not in (1, 2):
        raise ValueError(f"a shapes caption describes one or two objects, not {len(specs)}")
    options = _slot_options(specs, style)
    short = {s: min(words, key=approx_tokens) for s, words in options.items()}  # once per slot
    out = []
    for frame in style.pair_frames if len(specs) == 2 else style.frames:
        resolved = _resolve(frame, options)
        if resolved is None:
            continue
        slots = tuple(_SLOT.findall(resolved))
        if any(stated in options and not set(names) & set(slots) for stated, names in _MENTIONS):
            continue  # the frame would leave a stated size or place out
        shortest = _with_articles(resolved.format(**{s: short[s] for s in slots}))
        if approx_tokens(shortest) <= MAX_TOKENS:  # piece counts add up
            n = int(np.prod([len(options[s]) for s in slots]))
            out.append((frame, resolved, slots, n, shortest))
    if not out:
        raise ValueError(f"no {style.name} wording of {specs} fits in {MAX_TOKENS} tokens")
    return tuple(out)


@functools.lru_cache(maxsize=8192)
def _fills(
    specs: tuple[ObjectSpec, ...], style: WordingStyle
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(frame, every wording it gives) per usable frame: lower case, no final period, within
    MAX_TOKENS. Frames with no wording that fits are left out."""
    options = _slot_options(specs, style)
    out = []
    for frame, resolved, slots, _, _ in _frames_that_fit(specs, style):
        texts = []
        for values in itertools.product(*(options[s] for s in slots)):
            text = _with_articles(resolved.format(**dict(zip(slots, values))))
            if approx_tokens(text) <= MAX_TOKENS:
                texts.append(text)
        out.append((frame, tuple(texts)))
    return tuple(out)


def _enumerable(specs: tuple[ObjectSpec, ...], style: WordingStyle) -> bool:
    """Few enough wordings to list them all (the designed styles; not the wide one)."""
    return sum(n for _, _, _, n, _ in _frames_that_fit(specs, style)) <= ENUMERATE_LIMIT


def _article_free(text: str) -> str:
    return _AN.sub("a", text)


@functools.lru_cache(maxsize=4096)
def _frame_parts(
    specs: tuple[ObjectSpec, ...], style: WordingStyle
) -> tuple[tuple[tuple[str, ...], ...], ...]:
    """Per usable frame, its pieces in order, each the strings it may be (one for fixed text,
    the slot's words for a slot), articles written "a". Matched by ``_matches`` instead of a
    compiled regular expression: a scene of the wider style has ~300 frames with alternations
    of ~200 place phrases, and compiling them cost seconds per scene."""
    options = _slot_options(specs, style)
    frames = []
    for _, resolved, _, _, _ in _frames_that_fit(specs, style):
        pieces = []
        for i, part in enumerate(_SLOT.split(resolved)):  # fixed text, slot name, fixed text...
            if i % 2:
                pieces.append(tuple(dict.fromkeys(_article_free(o) for o in options[part])))
            elif part:
                pieces.append((_article_free(part),))
        frames.append(tuple(pieces))
    return tuple(frames)


def _matches(pieces: tuple[tuple[str, ...], ...], text: str, start: int = 0) -> bool:
    """Does text[start:] read as the pieces in order, each as one of its strings, and nothing
    else? (Tries every choice, as a regular expression's backtracking would.)"""
    if not pieces:
        return start == len(text)
    return any(text.startswith(s, start) and _matches(pieces[1:], text, start + len(s))
               for s in pieces[0])


def can_word(specs: Sequence[ObjectSpec], style: WordingStyle, text: str) -> bool:
    """Could ``paraphrase`` word these objects as ``text`` (case and final period aside)?
    Without listing the style's wordings, so it works for the wide style too."""
    text = _normal(text)
    if approx_tokens(text) > MAX_TOKENS:
        return False
    text = _article_free(text)
    return any(_matches(pieces, text) for pieces in _frame_parts(tuple(specs), style))


def wordings(specs: Sequence[ObjectSpec], style: WordingStyle = TRAIN_STYLE) -> list[str]:
    """Every wording ``paraphrase`` can give for these objects, in lower case without a final
    period (the surface variants): lets a test prove two styles never word a scene alike."""
    return [text for _, texts in _fills(tuple(specs), style) for text in texts]


def _surface(text: str, rng: np.random.Generator) -> str:
    """A capital first letter and / or a final period, each now and then."""
    if rng.random() < P_CAPITAL:
        text = text[:1].upper() + text[1:]
    if rng.random() < P_PERIOD and approx_tokens(text) < MAX_TOKENS:
        text += "."
    return text


def paraphrase(
    specs: Sequence[ObjectSpec], rng: np.random.Generator, style: WordingStyle = TRAIN_STYLE
) -> str:
    """A random wording of the same objects: a frame drawn uniformly among those that fit, then
    its words, then the surface. Unstated size or position (None) is not mentioned; two objects
    are told apart by position "left" / "right"."""
    specs = tuple(specs)
    if _enumerable(specs, style):
        frames = _fills(specs, style)
        _, texts = frames[int(rng.integers(len(frames)))]
        return _surface(texts[int(rng.integers(len(texts)))], rng)
    # too many to list: draw the frame, then each slot's words, until the wording fits (the
    # same distribution: uniform over a frame's wordings that fit)
    frames, options = _frames_that_fit(specs, style), _slot_options(specs, style)
    _, resolved, slots, _, shortest = frames[int(rng.integers(len(frames)))]
    for _ in range(MAX_DRAWS_PER_VARIANT):
        values = {s: options[s][int(rng.integers(len(options[s])))] for s in slots}
        text = _with_articles(resolved.format(**values))
        if approx_tokens(text) <= MAX_TOKENS:
            return _surface(text, rng)
    return _surface(shortest, rng)


def _normal(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def _caption_seed(caption: str) -> int:
    """A stable seed from the caption text (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(caption.encode("utf-8"), digest_size=8).digest(), "big")


def training_variants(caption: str, n: int, seed: int, style: WordingStyle = TRAIN_STYLE
                      ) -> list[str]:
    """The caption, then n - 1 ``style`` paraphrases of it; [caption] * n outside the grammar.

    Deterministic in (caption, seed). Paraphrases differ from the caption and from each other in
    wording where the style has enough (case and period aside), then in surface, then repeat.
    """
    if n < 1:
        raise ValueError(f"training_variants: n must be at least 1, got {n}")
    from flowtok.data.shapes import parse_caption  # lazily: the grammar is still growing

    specs = parse_caption(caption)
    if specs is None:
        return [caption] * n
    rng = np.random.default_rng([seed, _caption_seed(caption)])
    out = [caption]
    seen_words, seen_exact = {_normal(caption)}, {caption}
    spare: list[str] = []  # drawn, new in surface only
    for _ in range(MAX_DRAWS_PER_VARIANT * (n - 1)):
        if len(out) == n:
            break
        text = paraphrase(specs, rng, style)
        if _normal(text) not in seen_words:
            seen_words.add(_normal(text))
            seen_exact.add(text)
            out.append(text)
        elif text not in seen_exact:
            seen_exact.add(text)
            spare.append(text)
    out += spare[: n - len(out)]
    pool = out[1:] or [caption]  # the style has fewer wordings than asked for: repeat them
    return out + [pool[i % len(pool)] for i in range(n - len(out))]


# ---------------------------------------------------------------- held-out evaluation set
def _balanced(rng: np.random.Generator, k: int, n: int) -> list[int]:
    """n values from range(k), each n // k or n // k + 1 times, in random order."""
    rounds = [rng.permutation(k) for _ in range(-(-n // k))]
    return np.concatenate([*rounds, np.zeros(0, int)])[:n].tolist()


def _where_canonical(position: str, preposition: str) -> str:
    return "in the center" if position == "center" else f"{preposition} the {position}"


def _partial_scenes(rng: np.random.Generator, n: int) -> list[tuple[str, list[ObjectSpec]]]:
    """n one-object scenes stating colour and shape, and size, position or neither (balanced).

    A scene drawn twice has its shape, then colour, moved on until it is new (while new ones are
    left), so the evaluation does not score one prompt twice.
    """
    colors, sizes = list(PALETTE), list(SIZES)
    kinds, c, k = _balanced(rng, 3, n), _balanced(rng, len(colors), n), _balanced(rng, 4, n)
    z, p = _balanced(rng, len(sizes), n), _balanced(rng, len(POSITIONS), n)
    preps = _balanced(rng, 2, n)
    scenes, seen = [], set()
    for i in range(n):
        has_size, has_place = PARTIAL_KINDS[kinds[i]]
        size = sizes[z[i]] if has_size else None
        position = POSITIONS[p[i]] if has_place else None
        for shift in range(len(colors) * len(SHAPES)):
            color = colors[(c[i] + shift // len(SHAPES)) % len(colors)]
            shape = SHAPES[(k[i] + shift) % len(SHAPES)]
            if (color, shape, size, position) not in seen:
                break
        seen.add((color, shape, size, position))
        text = "a " + (f"{size} " if size else "") + f"{color} {shape}"
        if position is not None:
            text += " " + _where_canonical(position, ("in", "at")[preps[i]])
        scenes.append((text, [ObjectSpec(color, shape, size, position)]))
    return scenes


def heldout_prompts(n: int, seed: int = 0, style: WordingStyle = HELDOUT_STYLE,
                    avoid: WordingStyle | None = None) -> list[tuple[str, str]]:
    """n (``style`` wording, canonical caption) pairs for evaluation, shuffled.

    ``avoid``: a training style whose wordings of a scene are never chosen (case and period
    aside), for held-out sets written apart from it that may share some wordings by chance; a
    scene left with no wording is dropped, so fewer than n pairs may come back.

    Scenes: round(HELDOUT_TWO_FRACTION n) two-object and the rest of the full ones one-object,
    balanced in colour, shape, size and cell (``canonical_prompts``), plus
    round(HELDOUT_PARTIAL_FRACTION n) partial one-object scenes (``a {size}? {color} {shape}
    ({in|at} the {position} | in the center)?``). Each is worded with the held-out frame used
    least so far among those that fit it, so frames are balanced too. Same (n, seed): same list.
    """
    if n < 1:
        raise ValueError(f"heldout_prompts: n must be at least 1, got {n}")
    from flowtok.data.shapes import canonical_prompts, parse_caption

    rng = np.random.default_rng([seed, 0x4E1D])
    n_partial = int(np.floor(HELDOUT_PARTIAL_FRACTION * n + 0.5))
    n_two = int(np.floor(HELDOUT_TWO_FRACTION * n + 0.5))
    n_full = n - n_partial
    n_two = min(n_two, n_full)
    scenes: list[tuple[str, list[ObjectSpec]]] = []
    if n_full:
        for text in canonical_prompts(n_full, seed, two_object_fraction=n_two / n_full):
            specs = parse_caption(text)
            if specs is None:  # canonical_prompts writes the grammar parse_caption reads
                raise ValueError(f"canonical prompt {text!r} does not parse")
            scenes.append((text, specs))
    scenes += _partial_scenes(rng, n_partial)
    used: Counter[str] = Counter()  # frame -> prompts worded with it
    taken: set[str] = set()
    pairs = []
    for text, specs in scenes:
        every = _fills(tuple(specs), style)
        if avoid is not None:
            every = tuple((f, kept) for f, ts in every
                          if (kept := tuple(t for t in ts if not can_word(specs, avoid, t))))
            if not every:
                continue
        fresh = [(f, tuple(t for t in ts if t not in taken)) for f, ts in every]
        frames = [(f, ts) for f, ts in fresh if ts] or list(every)  # new wordings first
        counts = np.array([used[frame] for frame, _ in frames])
        least = np.flatnonzero(counts == counts.min())
        frame, texts = frames[int(least[rng.integers(len(least))])]
        wording = texts[int(rng.integers(len(texts)))]
        used[frame] += 1
        taken.add(wording)
        pairs.append((_surface(wording, rng), text))
    return [pairs[i] for i in rng.permutation(len(pairs))]
