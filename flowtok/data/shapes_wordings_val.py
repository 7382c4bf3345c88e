"""VALIDATION wordings for the `shapes` data set: used only to compare and choose between trained
text-to-image models. NEVER train on these wordings (do not mix them into any training caption set).

Written blind: without looking at any training or evaluation wording module, tests, benchmarks or
docs; the only file consulted was flowtok/data/shapes.py (names of colours, shapes, sizes and
positions).

Imagined voices, mixed roughly evenly: a sports commentator, a chef giving plating instructions, a
software tester writing a bug reproduction, a kindergarten teacher, a sci-fi fan, an architect,
someone writing a quick shopping-list-like note, a poet who still states every attribute plainly, a
lawyer being precise, and someone speaking to a smart speaker.

Slots (str.format fields):
- one object: {np} = "[size ]colour shape", {size}, {color}, {shape}, {where} = "<preposition> the
  <place>", {place} = the place noun phrase alone;
- two objects: {l} / {r} = the left / right object's noun phrase.
A part in [square brackets] is dropped when a slot inside it is unstated (no nested brackets).
Articles are written "a"; a later step turns "a orange" into "an orange".
"""

from __future__ import annotations

# size words, placed before the colour: "[size ]colour shape"
VAL_SIZES: dict[str, tuple[str, ...]] = {
    "small": ("tiny", "little", "miniature", "wee", "compact"),
    "large": ("big", "huge", "giant", "oversized", "massive"),
}

# place noun phrases, used after "<preposition> the "; keyed by shapes.POSITIONS
VAL_PLACES: dict[str, tuple[str, ...]] = {
    "top left": ("upper left corner", "top left corner", "upper left", "northwest corner"),
    "top": ("top", "top middle", "top center", "upper middle"),
    "top right": ("upper right corner", "top right corner", "upper right", "northeast corner"),
    "left": ("left side", "middle left", "center left", "west side"),
    "center": ("center", "middle", "dead center", "very middle", "exact center"),
    "right": ("right side", "middle right", "center right", "east side"),
    "bottom left": ("lower left corner", "bottom left corner", "lower left", "southwest corner"),
    "bottom": ("bottom", "bottom middle", "bottom center", "lower middle"),
    "bottom right": ("lower right corner", "bottom right corner", "lower right", "southeast corner"),
}

# prepositions keyed by the last word of a place phrase; "*" is the default ("at the top")
VAL_PREPOSITIONS: dict[str, tuple[str, ...]] = {
    "corner": ("in", "at"),
    "left": ("in", "at"),
    "right": ("in", "at"),
    "center": ("in", "at"),
    "middle": ("in",),
    "side": ("on",),
    "*": ("at",),
}

# one-object frames
VAL_FRAMES: tuple[str, ...] = (
    # sports commentator
    "there it is: a {np}[ {where}]!",
    "what a play: a {np}[ {where}]",
    "is that a {np}[ {where}]? yes!",
    "solo run by a {np}[ {where}]",
    # chef plating
    "plate a {np}[ {where}]",
    "[{where}, ]place one {np}, nothing else",
    "garnish: a {np}[ {where}], on black",
    "just one {np}[ {where}], chef",
    # software tester
    "steps: render a {np}[ {where}]",
    "expected output: a {np}[ {where}]",
    "repro: canvas shows a {np}[ {where}]",
    "test input: {color} {shape}[, size {size}][, pos: {place}]",
    # kindergarten teacher
    "look, friends! a {np}[ {where}]",
    "can you find the {np}[ {where}]?",
    "who can draw a {np}[ {where}]?",
    "there is just one {np}[ {where}]",
    # sci-fi fan
    "[{where}, ]a {np} floats in space",
    "sensors detect one {np}[ {where}]",
    "a {np} on the viewscreen[, {place}]",
    "captain, a {np}[ {where}] and nothing else",
    # architect
    "elevation: a {np}[ {where}]",
    "site plan: one {color} {shape}[, {size}][, {place}]",
    "[{where}, ]a {np} anchors the composition",
    "position a {np}[ {where} of the frame]",
    # shopping-list note
    "{color} {shape}[, {size}][, {place}]",
    "1x {np}[, {place}]",
    "need: a {np}[ {where}]",
    "{shape}, {color}[, {size}][, {place}]",
    # poet (every attribute still stated plainly)
    "upon the black, a {np}[ {where}]",
    "[{where}, ]a {np} rests alone",
    "a {color} {shape}, [{size} and ]alone[, {where}]",
    "night holds one {np}[ {where}]",
    # lawyer
    "one (1) {np}[, located {where}]",
    "the image shall depict a {np}[ {where}]",
    "a {np}[ {where}], and no other object",
    "depicted: exactly one {np}[ {where}]",
    # smart speaker
    "hey, show me a {np}[ {where}]",
    "ok, draw a {np}[ {where}], please",
    "could you show a {np}[ {where}]?",
    "put a {np} on screen[, {place}]",
)

# two-object frames: {l} is the left object, {r} the right one
VAL_PAIR_FRAMES: tuple[str, ...] = (
    # sports commentator
    "{l} on the left versus {r} on the right",
    "the {l} takes the left, the {r} the right",
    # chef plating
    "plate a {l} left of a {r}",
    "{l} goes left, {r} goes right",
    # software tester
    "expected: {l} at left, {r} at right",
    "repro: {r} drawn to the right of {l}",
    # kindergarten teacher
    "look: the {l} is left of the {r}",
    "a {l}, and a {r} to its right",
    # sci-fi fan
    "radar shows two contacts: {l} left, {r} right",
    "docked side by side: {l} left, {r} right",
    # architect
    "{l} on the west, {r} on the east",
    "two elements: {l} at left, {r} at right",
    # shopping-list note
    "left: {l}, right: {r}",
    "{l} (left) + {r} (right)",
    # poet
    "beside a {l}, a {r} rests to its right",
    "in the dark, {l} left and {r} right",
    # lawyer
    "the {l} shall be left of the {r}",
    "{r}, right; {l}, left; nothing else",
    # smart speaker
    "draw a {l} left and a {r} right",
    "hey, put a {l} left, a {r} right",
)
