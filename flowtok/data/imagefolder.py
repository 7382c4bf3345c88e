"""Image folders: recursive scan, robust loading (any mode -> RGB, EXIF orientation, GIF first
frame), resize short side + centre crop, and captions from metadata.jsonl or .txt sidecars.

What each kind of file becomes (README "When things go wrong" lists the same):
- grey (L, 1), palette (P), LA / RGBA / transparency: RGB, transparent pixels over black;
  CMYK: RGB; 16-bit (I;16) and 32-bit (I, F) greyscale: scaled to 8 bits;
- EXIF orientation is applied; an animated GIF / WebP gives its first frame;
- the file's content decides its format, not its extension (a PNG named .jpg loads);
- images smaller than ``size`` (even smaller than one patch) are upscaled, bicubic;
- more than ``MAX_PIXELS`` pixels: refused before decoding (decompression-bomb guard);
- empty, truncated or non-image files: a one-line DataError naming the file.
Unreadable files are collected and returned, never fatal: the caller decides what to report.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowtok.errors import DataError

# the one list of image files flowtok reads (tokenize and train pick folder files by it, caption's
# help names it); the content, not the extension, then decides how a file is decoded
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
METADATA_FILE = "metadata.jsonl"
CAPTION_SUFFIXES = (".txt",)  # sidecar captions: expected beside images, never reported as skipped
# Decompression-bomb guard: a few hundred bytes of PNG can claim 100k x 100k pixels (40 GB of
# RGB). 8192 x 8192 is larger than any photo worth tokenizing and still fits in memory.
MAX_PIXELS = 8192 * 8192
MAX_ASPECT = 16  # longer / shorter side above which the centre square is cropped before resizing
BLACK = (0, 0, 0)  # default background for transparency (the shapes data is drawn on black)


@dataclass
class ImageRecord:
    """One image file: ``name`` is its path relative to the folder (POSIX), used as its id."""

    path: Path
    name: str
    caption: str | None = None


@dataclass
class LoadedImages:
    """A loaded folder: images uint8 (N, S, S, 3), their records, and the files that failed."""

    images: np.ndarray
    records: list[ImageRecord]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


def read_captions(folder: Path) -> dict[str, str]:
    """Captions keyed by relative file name from every metadata.jsonl under ``folder``
    (Hugging Face image-folder convention: {"file_name": ..., "text": ...} per line)."""
    return read_metadata_field(folder, ("text", "caption"))


def read_metadata_field(folder: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """The first of ``keys`` present in each metadata.jsonl row under ``folder``, keyed by the
    row's relative file name; rows holding none of them are left out."""
    values: dict[str, str] = {}
    for meta in sorted(Path(folder).rglob(METADATA_FILE)):
        prefix = meta.parent.relative_to(folder).as_posix()
        for i, line in enumerate(_read_utf8(meta).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                name = row["file_name"]
                value = next((row[k] for k in keys if row.get(k) is not None), None)
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
                raise DataError(
                    f"{meta}:{i}: expected a JSON object with file_name and {keys[0]} "
                    f"({e.__class__.__name__})"
                ) from e
            key = name if prefix == "." else f"{prefix}/{name}"
            if value is not None:
                values[key] = str(value)
    return values


def _read_utf8(path: Path) -> str:
    """A caption file's text; invalid UTF-8 is a DataError naming the file and byte."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 (byte {e.start}); save it as UTF-8") from e


def image_formats() -> str:
    """The readable extensions for messages and help: "png, jpg, …"."""
    return ", ".join(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def scan_folder(folder: str | Path, skipped: list[str] | None = None) -> list[ImageRecord]:
    """Every image under ``folder`` (recursive, sorted by relative name) with its caption.
    Other files (not an image extension, not a caption file) are appended to ``skipped`` by
    relative name, so the caller can say what it left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; pass a folder of images")
    captions = read_captions(folder)
    records = []
    for path in sorted(folder.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # hidden files and temp files of interrupted writers
        if not path.is_file():
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            if skipped is not None and path.name != METADATA_FILE \
                    and path.suffix.lower() not in CAPTION_SUFFIXES:
                skipped.append(path.relative_to(folder).as_posix())
            continue
        name = path.relative_to(folder).as_posix()
        caption = captions.get(name)
        sidecar = path.with_suffix(".txt")
        if caption is None and sidecar.is_file():
            caption = _read_utf8(sidecar).strip()
        records.append(ImageRecord(path=path, name=name, caption=caption))
    return records


def load_image(path: str | Path, size: int, background: tuple[int, int, int] = BLACK) -> np.ndarray:
    """Read one image as uint8 (size, size, 3): first frame, EXIF-upright, RGB (transparency
    composited over ``background``), short side resized to ``size`` (bicubic; box filter when
    shrinking a lot), centre-cropped.

    Raises DataError when the file cannot be decoded.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    bomb = (f"is more than the {MAX_PIXELS // 1_000_000} megapixel limit "
            "(decompression-bomb guard); downscale it first")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we refuse below
            im_file = Image.open(path)
        with im_file as im:
            w, h = im.size  # from the header: nothing is decoded yet
            if w * h > MAX_PIXELS:
                raise DataError(f"{path}: {w}x{h} pixels {bomb}")
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            im = to_rgb(im, background)
            im.load()
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"{path}: {bomb} ({e})") from e
    except MemoryError as e:
        raise DataError(f"{path}: too large to decode in memory") from e
    except UnidentifiedImageError as e:
        what = "empty file" if Path(path).stat().st_size == 0 else "not an image PIL can read"
        raise DataError(f"{path}: cannot read image ({what})") from e
    except Exception as e:  # PIL's decoders raise many types on damaged files
        reason = " ".join(f"{e.__class__.__name__}: {e}".split())[:200]
        raise DataError(f"{path}: cannot read image ({reason})") from e
    w, h = im.size
    if max(w, h) > MAX_ASPECT * min(w, h):  # a 1 x 10^6 strip: crop first, or the resize
        side = min(w, h)                     # below would allocate size x 10^6 x size pixels
        im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side,
                      (h - side) // 2 + side))
        w, h = im.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        resample = Image.BICUBIC if scale > 0.5 else Image.BOX
        im = im.resize((nw, nh), resample)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return np.asarray(im, dtype=np.uint8).copy()


def to_rgb(im, background: tuple[int, int, int] = BLACK):
    """Any PIL mode -> RGB; transparency is composited over ``background`` (a tokenizer's
    ``background``: black for shapes, white for emoji), so a transparent PNG looks like the
    training data instead of whatever colour its invisible pixels happen to hold."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in ("P", "LA", "PA") or "transparency" in im.info or im.mode == "RGBA":
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (*background, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        # 16-bit files use the full 16-bit range; 32-bit "I" images are usually 8-bit values
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray((arr / hi * 255).round().clip(0, 255).astype(np.uint8)).convert("RGB")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        return Image.fromarray((arr.clip(0, 1) * 255).round().astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def unreadable_reason(rec: ImageRecord, size: int, shard: Path,
                      background: tuple[int, int, int] = BLACK) -> str:
    """Why ``rec`` is missing from the finished shard ``shard`` (written by a worker, a rank or
    an earlier run): the file is read again, so the message is the one its first read gave."""
    try:
        load_image(rec.path, size, background)
    except DataError as e:
        return str(e)
    return (f"{rec.path}: could not be read when {shard.name} was written; delete that shard "
            "and rerun to include it")


def load_records(records: list[ImageRecord], size: int,
                 background: tuple[int, int, int] = BLACK) -> LoadedImages:
    """Load every record; failures are listed, not raised."""
    images, ok, failed = [], [], []
    for rec in records:
        try:
            images.append(load_image(rec.path, size, background))
            ok.append(rec)
        except DataError as e:
            failed.append((rec.name, str(e)))
    arr = np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8)
    return LoadedImages(images=arr, records=ok, failed=failed)


def load_folder(folder: str | Path, size: int, limit: int | None = None,
                background: tuple[int, int, int] = BLACK) -> LoadedImages:
    """Scan and load a folder (the first ``limit`` images by name when given)."""
    records = scan_folder(folder)
    if limit is not None:
        records = records[:limit]
    return load_records(records, size, background)
