"""Caption templates: train text -> image on "a cat" and "cat emoji" as well as on "cat".

A data set whose captions are bare names ("cat", "red apple") teaches the projector nothing about
the way people write prompts ("a cat", "an apple"): MiniLM's per-token features of "a cat" differ
from those of "cat", and a model trained on one name per picture maps the unseen wording somewhere
else. Drawing a template per sample and step is the cheapest fix.
"""

from __future__ import annotations

from flowtok.errors import ConfigError

VOWELS = "aeiou"


def indefinite_article(caption: str) -> str:
    """ "an" before a vowel letter, else "a" (the spelling rule; "an hour" is not worth a table)."""
    return "an" if caption[:1].lower() in VOWELS else "a"


def apply_template(template: str, caption: str) -> str:
    """``"{a} {} emoji"`` + ``"owl"`` -> ``"an owl emoji"``."""
    return template.replace("{a}", indefinite_article(caption)).replace("{}", caption)


def check_templates(templates: tuple[str, ...] | list[str]) -> None:
    """Every template must hold the caption exactly once as ``{}``."""
    for t in templates:
        if t.count("{}") != 1:
            raise ConfigError(f"caption template {t!r} must contain {{}} (the caption) exactly "
                              'once, e.g. "{a} {}" or "{} emoji"')
