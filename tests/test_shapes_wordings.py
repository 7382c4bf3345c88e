"""Caption paraphrases keep the scene, are deterministic, and never reach the held-out wordings."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest

from flowtok.data import shapes_wordings as W
from flowtok.data.shapes import (
    PALETTE,
    POSITIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    canonical_prompts,
    parse_caption,
)

# The held-out side's own words and marks: a training paraphrase must never hold one.
HELDOUT_ONLY = {
    "big", "tiny", "corner", "side", "edge", "part", "centre", "very", "along", "picture",
    "located", "showing", "next", "with", "its", ":", "-",
}
HELDOUT_FRAME_NGRAMS = {("picture", "of"), ("image", "showing"), ("next", "to"), ("to", "its")}
TRAIN_STARTERS = {"a", "an", "one", "the", "there", "in", "at", "on", "here", "i", "draw", "both",
                  "left"}  # first words of training wordings

# ---------------------------------------------------------------- an independent reading
SIZE_WORDS = {"small": "small", "little": "small", "mini": "small", "miniature": "small",
              "tiny": "small", "petite": "small", "teeny": "small",
              "large": "large", "huge": "large", "giant": "large", "enormous": "large",
              "massive": "large", "big": "large", "oversized": "large", "bigger": "large"}
# the wide training style's and the third held-out set's further size words (read independently)
SIZE_WORDS |= {w: "small" for w in ("wee", "itty", "bitty", "minuscule", "diminutive", "compact",
                                    "smallish", "pint", "dinky", "undersized", "baby")}
SIZE_WORDS |= {w: "large" for w in ("jumbo", "gigantic", "hefty", "sizable", "sizeable", "bulky",
                                    "great", "immense", "colossal", "mammoth", "king", "biggish",
                                    "largish", "whopping", "fat")}
ROW_WORDS = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom",
             "north": "top", "south": "bottom"}
COL_WORDS = {"left": "left", "right": "right", "west": "left", "east": "right"}
COMPASS = {"northwest": ("top", "left"), "northeast": ("top", "right"),
           "southwest": ("bottom", "left"), "southeast": ("bottom", "right")}
MIDDLE_WORDS = {"center", "centre", "middle", "central", "heart"}
_OBJ = rf"(?:an? )?(?:{'|'.join(PALETTE)}) (?:{'|'.join(SHAPES)})"
# Two-object wordings, each with the meaning the test author reads in it: which mention is left.
TWO_OBJECT_READINGS = [
    (rf"(?P<L>{_OBJ}) on the left(?: side)?(?: and|,) (?P<R>{_OBJ}) on the right(?: side)?", "LR"),
    (rf"(?P<R>{_OBJ}) on the right and (?P<L>{_OBJ}) on the left", "LR"),
    (rf"(?P<L>{_OBJ}) to the left of (?P<R>{_OBJ})", "LR"),
    (rf"(?P<R>{_OBJ}) to the right of (?P<L>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) and (?P<R>{_OBJ}), from left to right", "LR"),
    (rf"on the left (?P<L>{_OBJ}), on the right (?P<R>{_OBJ})", "LR"),
    (rf"left: (?P<L>{_OBJ}), right: (?P<R>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) next to (?P<R>{_OBJ}) on its right", "LR"),
    (rf"(?P<R>{_OBJ}) with (?P<L>{_OBJ}) to its left", "LR"),
    (rf"(?P<L>{_OBJ}) left, (?P<R>{_OBJ}) right", "LR"),
    (rf"(?P<R>{_OBJ}) on the right, (?P<L>{_OBJ}) on the left", "LR"),
    (rf"on the right (?P<R>{_OBJ}), on the left (?P<L>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) left of (?P<R>{_OBJ})", "LR"),
    (rf"(?P<R>{_OBJ}) right of (?P<L>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) at left and (?P<R>{_OBJ}) at right", "LR"),
    (rf"one (?P<L>{_OBJ}) on the left and one (?P<R>{_OBJ}) on the right", "LR"),
    (rf"the (?P<L>{_OBJ}) is on the left, the (?P<R>{_OBJ}) on the right", "LR"),
    (rf"(?P<L>{_OBJ}) to the left, (?P<R>{_OBJ}) to the right", "LR"),
    (rf"(?P<L>{_OBJ}) followed by (?P<R>{_OBJ}) on the right", "LR"),
    (rf"both (?P<L>{_OBJ}) on the left and (?P<R>{_OBJ}) on the right", "LR"),
    (rf"left is (?P<L>{_OBJ}) and right is (?P<R>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) sits left, (?P<R>{_OBJ}) sits right", "LR"),
    (rf"(?:a drawing of|i see) (?P<L>{_OBJ}) on the left and (?P<R>{_OBJ}) on the right", "LR"),
    # the second held-out style
    (rf"(?P<L>{_OBJ}) at the left and (?P<R>{_OBJ}) at the right", "LR"),
    (rf"to the left (?P<L>{_OBJ}), to the right (?P<R>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) and on its right (?P<R>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) plus (?P<R>{_OBJ}) further right", "LR"),
    (rf"show me (?P<L>{_OBJ}) on the left and (?P<R>{_OBJ}) on the right", "LR"),
    # the third held-out style
    (rf"from left to right, (?P<L>{_OBJ}) and (?P<R>{_OBJ})", "LR"),
    (rf"(?P<R>{_OBJ}) with (?P<L>{_OBJ}) on its left", "LR"),
    (rf"one (?P<L>{_OBJ}) left side and one (?P<R>{_OBJ}) right side", "LR"),
    (rf"draw (?P<L>{_OBJ}) and, to its right, (?P<R>{_OBJ})", "LR"),
    # the validation set
    (rf"(?P<L>{_OBJ}) on the left versus (?P<R>{_OBJ}) on the right", "LR"),
    (rf"the (?P<L>{_OBJ}) takes the left, the (?P<R>{_OBJ}) the right", "LR"),
    (rf"plate (?P<L>{_OBJ}) left of (?P<R>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}) goes left, (?P<R>{_OBJ}) goes right", "LR"),
    (rf"expected: (?P<L>{_OBJ}) at left, (?P<R>{_OBJ}) at right", "LR"),
    (rf"repro: (?P<R>{_OBJ}) drawn to the right of (?P<L>{_OBJ})", "LR"),
    (rf"look: the (?P<L>{_OBJ}) is left of the (?P<R>{_OBJ})", "LR"),
    (rf"(?P<L>{_OBJ}), and (?P<R>{_OBJ}) to its right", "LR"),
    ((rf"(?:radar shows two contacts: |docked side by side: |two elements: |in the dark, |draw "
      rf"|hey, put )(?P<L>{_OBJ})(?: at)? left,?(?: and)? (?P<R>{_OBJ})(?: at)? right"), "LR"),
    (rf"(?P<L>{_OBJ}) on the west, (?P<R>{_OBJ}) on the east", "LR"),
    (rf"(?P<L>{_OBJ}) \(left\) \+ (?P<R>{_OBJ}) \(right\)", "LR"),
    (rf"beside (?P<L>{_OBJ}), (?P<R>{_OBJ}) rests to its right", "LR"),
    (rf"the (?P<L>{_OBJ}) shall be left of the (?P<R>{_OBJ})", "LR"),
    (rf"(?P<R>{_OBJ}), right; (?P<L>{_OBJ}), left; nothing else", "LR"),
]
# The partial grammar the canonical captions of heldout_prompts must be in.
PARTIAL_CAPTION = re.compile(
    rf"a (?:(?P<size>small|large) )?(?P<color>{'|'.join(PALETTE)}) (?P<shape>{'|'.join(SHAPES)})"
    rf"(?: (?:in|at) the (?P<position>{'|'.join(sorted(POSITIONS, key=len, reverse=True))})"
    r"| in the (?P<center>center))?"
)


def words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


def normal(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def _object(text: str) -> tuple[str, str]:
    w = [t for t in words(text) if t not in ("a", "an", "the")]
    return w[0], w[1]


def read(text: str) -> list[tuple[str, str, str | None, str | None]]:
    """(color, shape, size, position) per object, left first, from a wording of either style."""
    text = normal(text)
    for pattern, _ in TWO_OBJECT_READINGS:
        m = re.fullmatch(pattern, text)
        if m:
            return [(*_object(m["L"]), None, "left"), (*_object(m["R"]), None, "right")]
    w = words(text.replace("right in the ", "in the "))  # "right" as in "just" (third set)
    colors, shapes = [t for t in w if t in PALETTE], [t for t in w if t in SHAPES]
    assert len(colors) == len(shapes) == 1, text
    sizes = {SIZE_WORDS[t] for t in w if t in SIZE_WORDS}
    assert len(sizes) <= 1, text
    rows = {ROW_WORDS[t] for t in w if t in ROW_WORDS} | {COMPASS[t][0] for t in w if t in COMPASS}
    cols = {COL_WORDS[t] for t in w if t in COL_WORDS} | {COMPASS[t][1] for t in w if t in COMPASS}
    assert len(rows) <= 1 and len(cols) <= 1, text
    if rows or cols:
        position = " ".join([*rows, *cols])
    elif MIDDLE_WORDS & set(w):
        position = "center"
    else:
        position = None
    return [(colors[0], shapes[0], sizes.pop() if sizes else None, position)]


def as_tuples(specs: list[ObjectSpec]) -> list[tuple]:
    return [(s.color, s.shape, s.size, s.position)
            for s in sorted(specs, key=lambda s: s.position != "left")]


def all_specs() -> list[tuple[ObjectSpec, ...]]:
    """Every scene the grammar (with partial captions) can state."""
    one = [(ObjectSpec(c, k, z, p),) for c in PALETTE for k in SHAPES
           for z in (None, *SIZES) for p in (None, *POSITIONS)]
    kinds = [(c, k) for c in PALETTE for k in SHAPES]
    two = [(ObjectSpec(*a, None, "left", True), ObjectSpec(*b, None, "right", True))
           for a in kinds for b in kinds if a != b]
    return one + two


@pytest.fixture(scope="module")
def every_wording() -> dict[str, dict[tuple, list[str]]]:
    return {style.name: {s: W.wordings(s, style) for s in all_specs()}
            for style in (W.TRAIN_STYLE, *W.HELDOUT_STYLES.values(), W.validation_style())}


@pytest.fixture(scope="module")
def sampled_training() -> list[str]:
    """Thousands of paraphrases the way training draws them."""
    rng = np.random.default_rng(1)
    out = [t for cap in canonical_prompts(300, seed=3) for t in W.training_variants(cap, 8, 0)[1:]]
    out += [W.paraphrase(s, rng) for s in all_specs() for _ in range(2)]
    return out


# ---------------------------------------------------------------- content
@pytest.mark.parametrize("style", [W.TRAIN_STYLE, *W.HELDOUT_STYLES.values(), W.validation_style()],
                         ids=lambda s: s.name)
def test_every_wording_of_every_scene_reads_back_to_that_scene(style, every_wording):
    for specs, texts in every_wording[style.name].items():
        assert texts, specs
        for text in texts:
            assert read(text) == as_tuples(list(specs)), text


def test_sampled_paraphrases_keep_the_scene_and_vary_the_surface():
    rng = np.random.default_rng(0)
    specs = [ObjectSpec("orange", "triangle", "large", "bottom right")]
    texts = [W.paraphrase(specs, rng) for _ in range(400)]
    assert all(read(t) == as_tuples(specs) for t in texts)
    assert any(t[0].isupper() for t in texts) and any(t.endswith(".") for t in texts)
    assert any(t.startswith("an orange") for t in texts)  # "an" before a vowel
    assert len({normal(t) for t in texts}) > 30


def test_unstated_size_and_position_are_not_mentioned():
    rng = np.random.default_rng(0)
    for _ in range(200):
        w = words(W.paraphrase([ObjectSpec("red", "circle", None, None)], rng, W.HELDOUT_STYLE))
        assert not set(w) & (set(SIZE_WORDS) | set(ROW_WORDS) | set(COL_WORDS) | MIDDLE_WORDS)


def test_wordings_fit_the_text_encoder(every_wording):
    texts = sorted({t for by_spec in every_wording.values() for ts in by_spec.values() for t in ts})
    assert max(W.approx_tokens(t) for t in texts) <= W.MAX_TOKENS
    try:
        from tokenizers import Tokenizer

        from flowtok.text.encoders import minilm_path

        tok = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    except Exception as e:  # noqa: BLE001 - the check below needs MiniLM's files
        pytest.skip(f"MiniLM tokenizer unavailable: {e}")
    tok.no_truncation()
    tok.no_padding()
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), 3000, replace=False)]
    sample += [t for t in texts if W.approx_tokens(t) >= W.MAX_TOKENS - 1][:2000]
    for text, enc in zip(sample, tok.encode_batch(sample)):
        assert len(enc.ids) - 2 == W.approx_tokens(text), (text, enc.tokens)


# ---------------------------------------------------------------- training_variants
def test_training_variants_start_with_the_caption_and_are_deterministic_and_distinct():
    cap = "a small red circle in the top left"
    v = W.training_variants(cap, 10, seed=0)
    assert v[0] == cap and len(v) == 10
    assert v == W.training_variants(cap, 10, seed=0)
    assert v != W.training_variants(cap, 10, seed=1)
    assert len({normal(t) for t in v}) == 10
    for t in v:
        assert read(t) == [("red", "circle", "small", "top left")]
    other = W.training_variants("a small red circle in the top right", 10, seed=0)
    assert other[1:] != v[1:]


def test_training_variants_of_two_objects_and_a_small_wording_space():
    cap = "a red circle on the left and a blue square on the right"
    v = W.training_variants(cap, 6, seed=0)
    assert v[0] == cap and len({normal(t) for t in v}) == 6
    assert all(read(t) == [("red", "circle", None, "left"), ("blue", "square", None, "right")]
               for t in v)
    many = W.training_variants(cap, 40, seed=0)  # more than the style's wordings: repeats
    assert len(many) == 40 and many[:1] == [cap]
    assert all(read(t) == read(cap) for t in many)


def test_training_variants_leave_text_outside_the_grammar_alone():
    assert W.training_variants("a cat", 5, seed=0) == ["a cat"] * 5
    assert W.training_variants("", 2, seed=3) == ["", ""]
    with pytest.raises(ValueError):
        W.training_variants("a cat", 0, seed=0)


# ---------------------------------------------------------------- the split
def test_training_never_uses_a_heldout_word_or_frame(every_wording, sampled_training):
    train = [t for ts in every_wording["train"].values() for t in ts] + sampled_training
    assert len(sampled_training) > 4000
    for text in train:
        w = words(text)
        assert not set(w) & HELDOUT_ONLY, text
        assert not set(itertools.pairwise(w)) & HELDOUT_FRAME_NGRAMS, text
        assert w[0] in TRAIN_STARTERS, text


def test_every_heldout_wording_is_new_to_training(every_wording):
    heldout = [t for ts in every_wording["heldout"].values() for t in ts]
    used = set()
    for text in heldout:
        w = words(text)
        assert set(w) & HELDOUT_ONLY or w[0] not in TRAIN_STARTERS, text
        used |= set(w) & HELDOUT_ONLY
    assert used == HELDOUT_ONLY  # the list above names no word the style dropped
    train = {t for ts in every_wording["train"].values() for t in ts}
    assert not train & set(heldout)


def test_the_second_heldout_style_shares_no_wording_synonym_or_frame_with_the_others(every_wording):
    h2 = W.HELDOUT2_STYLE
    train_words = {x for ts in every_wording["train"].values() for t in ts for x in words(t)}
    for other in (W.TRAIN_STYLE, W.HELDOUT_STYLE):
        for size in SIZES:
            assert not set(other.sizes[size]) & set(h2.sizes[size])
        for pos in POSITIONS:
            assert not set(other.places[pos]) & set(h2.places[pos])
        assert not set(other.frames) & set(h2.frames)
        assert not set(other.pair_frames) & set(h2.pair_frames)
    h2_texts = [t for ts in every_wording["heldout2"].values() for t in ts]
    others = {t for name in ("train", "heldout") for ts in every_wording[name].values() for t in ts}
    assert not others & set(h2_texts)
    for text in h2_texts:  # every wording holds a word training never uses, or starts unlike it
        w = words(text)
        assert set(w) - train_words or w[0] not in TRAIN_STARTERS, text
    pairs = W.heldout_prompts(60, seed=0, style=h2)
    assert len({w for w, _ in pairs}) == 60
    assert all(read(w) == read(c) for w, c in pairs)


def test_styles_share_only_the_judges_vocabulary():
    for size in SIZES:
        assert not set(W.TRAIN_STYLE.sizes[size]) & set(W.HELDOUT_STYLE.sizes[size])
    for pos in POSITIONS:
        assert not set(W.TRAIN_STYLE.places[pos]) & set(W.HELDOUT_STYLE.places[pos])
        assert not set(W.TRAIN_STYLE.wheres[pos]) & set(W.HELDOUT_STYLE.wheres[pos])
    assert not set(W.TRAIN_STYLE.frames) & set(W.HELDOUT_STYLE.frames)
    assert not set(W.TRAIN_STYLE.pair_frames) & set(W.HELDOUT_STYLE.pair_frames)


def test_the_wide_style_keeps_training_style_and_reads_back():
    wide = W.wide_training_style()
    assert wide is W.training_style("wide") and W.training_style("train") is W.TRAIN_STYLE
    assert set(W.TRAIN_STYLE.frames) < set(wide.frames)
    assert set(W.TRAIN_STYLE.pair_frames) < set(wide.pair_frames)
    for pos in POSITIONS:
        assert set(W.TRAIN_STYLE.wheres[pos]) < set(wide.wheres[pos])
    rng = np.random.default_rng(0)
    specs = all_specs()
    for i in rng.choice(len(specs), 16, replace=False):  # too many wordings to list: sample
        texts = [W.paraphrase(specs[i], rng, wide) for _ in range(300)]
        assert len({normal(t) for t in texts}) > 50  # the lazy draw varies frames and words
        assert max(W.approx_tokens(t) for t in texts) <= W.MAX_TOKENS
        assert all(W.can_word(specs[i], wide, t) for t in texts)
        if len(specs[i]) == 1:
            assert all(read(t) == as_tuples(list(specs[i])) for t in texts), specs[i]
        else:  # two objects: which is left is checked by reading each frame in review, not here
            left, right = (f"{s.color} {s.shape}" for s in specs[i])
            assert all(normal(t).count(left) == 1 and normal(t).count(right) == 1 for t in texts)
    with pytest.raises(ValueError, match="caption style"):
        W.training_style("fancy")


def test_can_word_agrees_with_the_listed_wordings():
    spec = (ObjectSpec("orange", "circle", "large", "top left"),)
    listed = W.wordings(spec, W.TRAIN_STYLE)
    assert all(W.can_word(spec, W.TRAIN_STYLE, t) for t in listed)
    assert W.can_word(spec, W.TRAIN_STYLE, "An orange circle, large, in the top left.")
    assert not W.can_word(spec, W.TRAIN_STYLE, "a large orange circle in the top right")
    assert not W.can_word(spec, W.TRAIN_STYLE, "big orange circle in the top left")  # held-out
    assert W.can_word(spec, W.wide_training_style(), "big orange circle in the top left")


def test_can_word_tries_every_word_of_a_slot_not_only_the_first_that_fits():
    """A slot word that is the start of another ("big", "big big") must not stop the match."""
    style = W.WordingStyle(name="prefix", sizes={"large": ("big", "big big"), "small": ("wee",)},
                           places={}, wheres={}, frames=("a {size} {color} {shape}",),
                           pair_frames=())
    spec = (ObjectSpec("red", "circle", "large", None),)
    assert W.can_word(spec, style, "A big red circle.")
    assert W.can_word(spec, style, "a big big red circle")  # "big" fits first, then fails
    assert not W.can_word(spec, style, "a big big big red circle")
    assert not W.can_word(spec, style, "a big red circle now")


def test_training_variants_in_the_wide_style_keep_the_scene():
    wide = W.wide_training_style()
    cap = "a small red circle in the top left"
    v = W.training_variants(cap, 12, seed=0, style=wide)
    assert v[0] == cap and len({normal(t) for t in v}) == 12
    assert v != W.training_variants(cap, 12, seed=0)  # not the narrow style's wordings
    assert all(read(t) == [("red", "circle", "small", "top left")] for t in v)


def test_heldout_prompts_can_avoid_every_wording_a_training_style_makes():
    wide = W.training_style("wider")  # the widest, the benchmarks' default
    shared = 0
    for style in (*W.HELDOUT_STYLES.values(), W.validation_style()):
        pairs = W.heldout_prompts(40, seed=0, style=style, avoid=wide)
        assert 30 <= len(pairs) <= 40  # a scene every wording of which training makes is dropped
        for wording, canonical in pairs:
            assert not W.can_word(parse_caption(canonical), wide, wording), wording
            assert read(wording) == read(canonical), (wording, canonical)
        plain = W.heldout_prompts(40, seed=0, style=style)
        shared += sum(W.can_word(parse_caption(c), wide, w) for w, c in plain)
    assert shared > 0  # written blind, the sets share some wordings with the training style
    assert W.validation_style() not in [W.training_style(n) for n in W.TRAINING_STYLES]


# ---------------------------------------------------------------- heldout_prompts
def test_heldout_prompts_are_balanced_parseable_and_new(every_wording):
    pairs = W.heldout_prompts(150, seed=0)
    assert pairs == W.heldout_prompts(150, seed=0) and pairs != W.heldout_prompts(150, seed=1)
    assert len(pairs) == 150 and len({w for w, _ in pairs}) == 150
    train = {t for ts in every_wording["train"].values() for t in ts}
    kinds: Counter = Counter()
    full_colors: Counter = Counter()
    for wording, canonical in pairs:
        assert normal(wording) not in train, wording
        assert W.approx_tokens(wording) <= W.MAX_TOKENS
        specs = parse_caption(canonical)
        m = PARTIAL_CAPTION.fullmatch(canonical)
        if specs is not None and len(specs) == 2:
            kinds["two"] += 1
            assert read(wording) == as_tuples(specs)
            continue
        assert m, canonical
        position = m["position"] or m["center"]
        expected = [(m["color"], m["shape"], m["size"], position)]
        assert read(wording) == expected, (wording, canonical)
        if m["size"] and position:
            kinds["full"] += 1
            assert as_tuples(specs) == expected  # today's parser reads the full ones
            full_colors[m["color"]] += 1
        else:
            kinds["partial"] += 1
    assert kinds == {"full": 104, "two": 23, "partial": 23}  # 15% each, rounded half up
    assert max(full_colors.values()) - min(full_colors.values()) <= 1


def _heldout_frame(wording: str) -> str:
    """Which HELDOUT_STYLE frame a held-out wording was made with, told by its marks."""
    w = normal(wording)
    for pattern, _ in TWO_OBJECT_READINGS:
        if re.fullmatch(pattern, w):
            return pattern
    for mark in (":", "located", "picture", "showing"):
        if mark in w:
            return mark
    return "appositive" if re.search(r", (big|tiny)\b", w) else "bare"


def test_heldout_prompts_use_every_heldout_frame_evenly():
    frames = Counter(_heldout_frame(w) for w, _ in W.heldout_prompts(300, seed=2))
    one = [frames[k] for k in (":", "located", "picture", "showing", "appositive", "bare")]
    two = [v for k, v in frames.items() if k in {p for p, _ in TWO_OBJECT_READINGS}]
    assert len(two) == len(W.HELDOUT_STYLE.pair_frames)
    assert max(one) - min(one) <= 0.25 * max(one) and max(two) - min(two) <= 1
    assert len(W.heldout_prompts(1)) == 1
    with pytest.raises(ValueError):
        W.heldout_prompts(0)


# ---------------------------------------------------------------- the wider style
# the two further blind files' own size words, read independently (modifiers such as "very",
# "kind of", "extra" are ignored: the class comes from the word they modify)
WIDER_SIZE_WORDS = SIZE_WORDS | {w: "small" for w in (
    "teensy", "weensy", "itsy", "bitsy", "titchy", "weeny", "bite", "pocket", "modest", "scaled",
    "dainty", "puny", "lil")} | {w: "large" for w in (
    "ginormous", "humongous", "tremendous", "vast", "hulking", "chunky", "good", "full",
    "supersized", "oversize", "whacking", "mega", "outsized", "substantial", "xl", "generously",
    "fair")}
ORDINAL_ROWS = {"first row": "top", "top row": "top", "second row": "", "middle row": "",
                "third row": "bottom", "last row": "bottom", "bottom row": "bottom"}
ORDINAL_COLS = {"first column": "left", "left column": "left", "second column": "",
                "middle column": "", "third column": "right", "last column": "right",
                "right column": "right"}
CLOCK = {"twelve": "top", "three": "right", "six": "bottom", "nine": "left"}
EDGE_WORDS = {"head": "top", "foot": "bottom", "base": "bottom", "northern": "top",
              "southern": "bottom", "western": "left", "eastern": "right"}


def read_place(phrase: str) -> str:
    """The grid cell a place phrase names, read word by word (rows, columns, compass, ordinals,
    clock positions); "center" when it names neither a row nor a column."""
    rows, cols = set(), set()
    for name, row in ORDINAL_ROWS.items():
        if name in phrase:
            rows.add(row)
            phrase = phrase.replace(name, "")
    for name, col in ORDINAL_COLS.items():
        if name in phrase:
            cols.add(col)
            phrase = phrase.replace(name, "")
    for w in words(phrase):
        rows |= {ROW_WORDS.get(w, ""), EDGE_WORDS.get(w, "") if w in ("head", "foot", "base",
                 "northern", "southern") else "", CLOCK.get(w, "") if w in ("twelve", "six") else ""}
        cols |= {COL_WORDS.get(w, ""), EDGE_WORDS.get(w, "") if w in ("western", "eastern") else "",
                 CLOCK.get(w, "") if w in ("three", "nine") else ""}
    rows.discard("")
    cols.discard("")
    assert len(rows) <= 1 and len(cols) <= 1, phrase
    return " ".join([*rows, *cols]) or "center"


def test_the_wider_style_keeps_the_wide_one_and_its_blind_files_say_the_scene():
    from flowtok.data import shapes_wordings_wide2 as w2
    from flowtok.data import shapes_wordings_wide3 as w3

    wide, wider = W.wide_training_style(), W.training_style("wider")
    assert wider is W.wider_training_style()
    assert set(wide.frames) < set(wider.frames) and set(wide.pair_frames) < set(wider.pair_frames)
    for pos in POSITIONS:
        assert set(wide.wheres[pos]) < set(wider.wheres[pos])
    attribute_words = (set(PALETTE) | set(SHAPES) | set(WIDER_SIZE_WORDS) | set(ROW_WORDS)
                       | set(COL_WORDS) | MIDDLE_WORDS | set(COMPASS))
    for sizes, places, preps, frames, pairs in (
        (w2.WIDE2_SIZES, w2.WIDE2_PLACES, w2.WIDE2_PREPOSITIONS, w2.WIDE2_FRAMES,
         w2.WIDE2_PAIR_FRAMES),
        (w3.WIDE3_SIZES, w3.WIDE3_PLACES, w3.WIDE3_PREPOSITIONS, w3.WIDE3_FRAMES,
         w3.WIDE3_PAIR_FRAMES),
    ):
        for size, phrases in sizes.items():
            for phrase in phrases:
                assert {WIDER_SIZE_WORDS[w] for w in words(phrase) if w in WIDER_SIZE_WORDS} == {
                    size}, phrase
        for pos, phrases in places.items():
            assert all(read_place(p) == pos for p in phrases), pos
        for prep in (p for ps in preps.values() for p in ps):  # "right in": "just in"
            assert not set(words(prep.removeprefix("right "))) & attribute_words, prep
        for frame in frames:  # the words around the slots name no attribute of their own
            assert not set(words(re.sub(r"\{\w+\}", " ", frame))) & attribute_words, frame
        for frame in pairs:  # which side each is on: read in review, as for the wide file
            assert "{l}" in frame and "{r}" in frame, frame
    rng = np.random.default_rng(0)
    specs = all_specs()
    for i in rng.choice(len(specs), 12, replace=False):
        texts = [W.paraphrase(specs[i], rng, wider) for _ in range(200)]
        assert len({normal(t) for t in texts}) > 80
        assert max(W.approx_tokens(t) for t in texts) <= W.MAX_TOKENS
        assert all(W.can_word(specs[i], wider, t) for t in texts)
        for t in texts:  # the scene's colours and shapes and no other ("the former": again)
            w = set(words(t))
            assert w & set(PALETTE) == {s.color for s in specs[i]}, t
            assert w & set(SHAPES) == {s.shape for s in specs[i]}, t


def test_a_frame_that_would_leave_a_stated_attribute_out_is_not_used():
    style = W.WordingStyle(
        name="t", sizes=W.TRAIN_STYLE.sizes, places=W.TRAIN_STYLE.places,
        wheres=W.TRAIN_STYLE.wheres, frames=("a {shape} in {color}", "a {np}[ {where}]"),
        pair_frames=W.TRAIN_STYLE.pair_frames)
    full = (ObjectSpec("red", "circle", "small", "top"),)
    bare = (ObjectSpec("red", "circle", None, None),)
    assert all(read(t) == as_tuples(list(full)) for t in W.wordings(full, style))
    assert "a circle in red" in W.wordings(bare, style)
    assert "a circle in red" not in W.wordings((ObjectSpec("red", "circle", None, "top"),), style)
