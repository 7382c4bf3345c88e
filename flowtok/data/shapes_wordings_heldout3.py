"""Held-out evaluation wordings (set 3) for the synthetic "shapes" captions.

This module is a HELD-OUT EVALUATION set. It was written blind to the
training wordings (the author did not read the training wording modules) and
imagines five kinds of prompt writers: a child, a designer, a terse
programmer, a non-native English speaker and a chatty person.

It must NEVER be used for training. Use it only to measure how well a model
trained on the training wordings generalises to unseen phrasings.

Slot syntax (str.format fields) used by the frames:
  one object:  {np} "[size ]colour shape", {size}, {color}, {shape},
               {where} "<preposition> the <place>", {place} (noun phrase alone)
  two objects: {l} (left object's noun phrase), {r} (right object's)
A part in [square brackets] is dropped when a slot inside it is unstated.
"""

# Size adjectives, placed before the colour word.
HELDOUT3_SIZES: dict[str, tuple[str, ...]] = {
    "small": ("tiny", "little", "teeny"),
    "large": ("big", "huge", "giant"),
}

# Place noun phrases, without preposition or article.
HELDOUT3_PLACES: dict[str, tuple[str, ...]] = {
    "top left": ("upper left corner", "top left-hand corner", "northwest corner"),
    "top": ("top edge", "upper middle", "top centre"),
    "top right": ("upper right corner", "top right-hand corner", "northeast corner"),
    "left": ("left edge", "middle left", "left-hand side"),
    "center": ("middle", "very center", "dead centre"),
    "right": ("right edge", "middle right", "right-hand side"),
    "bottom left": ("lower left corner", "bottom left-hand corner", "southwest corner"),
    "bottom": ("bottom edge", "lower middle", "bottom centre"),
    "bottom right": ("lower right corner", "bottom right-hand corner", "southeast corner"),
}

# Prepositions keyed by the LAST word of a place noun phrase; "*" is the default.
HELDOUT3_PREPOSITIONS: dict[str, tuple[str, ...]] = {
    "corner": ("in", "at", "over in"),
    "edge": ("at", "along", "by"),
    "side": ("on", "along"),
    "middle": ("in", "right in"),
    "left": ("in", "at"),
    "right": ("in", "at"),
    "center": ("in", "at"),
    "centre": ("in", "at"),
    "*": ("in", "at"),
}

# One-object frames.
HELDOUT3_FRAMES: tuple[str, ...] = (
    # child
    "a {np}[ {where}]",
    "draw me a {np}[ {where}] please",
    "i want a {np}[ {where}]",
    # designer
    "[{size} ]flat {color} {shape}[ {where}]",
    "single {np}[, placed {where}]",
    "minimal {np}[, {where}]",
    # terse programmer
    "{color} {shape}[, {size}][, {place}]",
    "{shape} {color}[ {size}][ @ {place}]",
    "obj: {np}[; pos: {place}]",
    # non-native speaker
    "there is one {np}[ {where}]",
    "picture with a {np}[ {where}]",
    "[{where} ]please put a {np}",
    # chatty
    "show me a {np}[ sitting {where}]",
    "one lonely {np}[ {where}]",
    "[{where}, ]gimme a {np}",
)

# Two-object frames: {l} is the object in the left cell, {r} the right one.
HELDOUT3_PAIR_FRAMES: tuple[str, ...] = (
    "{l} on the left, {r} on the right",
    "a {r} on the right, a {l} on the left",
    "a {l} to the left of a {r}",
    "a {r} to the right of a {l}",
    "left: {l}, right: {r}",
    "{l} left, {r} right",
    "from left to right, a {l} and a {r}",
    "a {r} with a {l} on its left",
    "one {l} left side and one {r} right side",
    "draw a {l} and, to its right, a {r}",
)
