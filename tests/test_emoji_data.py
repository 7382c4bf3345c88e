"""`flowtok data emoji` on a small fake package layout: captions, compositing, splits, licences."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from flowtok.data.emoji import (
    EmojiDataConfig,
    assign_splits,
    caption_from_label,
    emoji_names,
    load_metadata,
    locate_packages,
    read_entries,
)
from flowtok_cli.app import app

RUNNER = CliRunner()
HALF_ALPHA = 128

# (unified, Unicode name, category, subcategory, sort_order, short_names, CLDR label, skins)
FAKE_EMOJI = [
    ("1F431", "CAT FACE", "Animals & Nature", "animal-mammal", 10, ["cat"], "cat face", None),
    ("1F408", "CAT", "Animals & Nature", "animal-mammal", 11, ["cat2"], "cat", None),
    ("1F600", "GRINNING FACE", "Smileys & Emotion", "face-smiling", 0, ["grinning"],
     "grinning face", None),
    ("1F603", "SMILING FACE WITH OPEN MOUTH", "Smileys & Emotion", "face-smiling", 1, ["smiley"],
     "grinning face with big eyes", None),
    ("1F44D", "THUMBS UP SIGN", "People & Body", "hand-fingers-closed", 5, ["+1", "thumbsup"],
     "thumbs up", ["1F3FB"]),
    ("1F1EF-1F1F5", "Japan Flag", "Flags", "country-flag", 20, ["jp", "flag-jp"], "flag: Japan",
     None),
    ("1F3C1", "CHEQUERED FLAG", "Flags", "flag", 19, ["checkered_flag"], "chequered flag", None),
    ("1F3FB", "EMOJI MODIFIER FITZPATRICK TYPE-1-2", "Component", "skin-tone", 30, ["skin-tone-2"],
     "light skin tone", None),
]
NO_TWITTER_IMAGE = "1F431"  # twitter lacks this one: only a google image is expected


def _colour(unified: str, style: str) -> tuple[int, int, int]:
    seed = sum(ord(c) for c in unified + style)
    return (seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256


def _write_png(path: Path, rgb: tuple[int, int, int]) -> None:
    """64x64 RGBA: left half fully transparent black, right half ``rgb`` at alpha 128."""
    arr = np.zeros((64, 64, 4), np.uint8)
    arr[:, 32:, :3] = rgb
    arr[:, 32:, 3] = HALF_ALPHA
    Image.fromarray(arr, "RGBA").save(path)


def _make_packages(root: Path, with_captions: bool = True) -> Path:
    for style in ("google", "twitter"):
        pkg = root / f"emoji-datasource-{style}"
        img_dir = pkg / "img" / style / "64"
        img_dir.mkdir(parents=True)
        records = []
        for unified, name, cat, sub, order, shorts, _, skins in FAKE_EMOJI:
            has_img = not (style == "twitter" and unified == NO_TWITTER_IMAGE)
            rec = {"name": name, "unified": unified, "image": f"{unified.lower()}.png",
                   "short_names": shorts, "category": cat, "subcategory": sub,
                   "sort_order": order, f"has_img_{style}": has_img}
            if has_img:
                _write_png(img_dir / rec["image"], _colour(unified, style))
            if skins:
                rec["skin_variations"] = {}
                for tone in skins:
                    var = f"{unified}-{tone}"
                    rec["skin_variations"][tone] = {"unified": var, "image": f"{var.lower()}.png",
                                                    f"has_img_{style}": True}
                    _write_png(img_dir / f"{var.lower()}.png", _colour(var, style))
            records.append(rec)
        (pkg / "emoji.json").write_text(json.dumps(records))
        (pkg / "package.json").write_text(json.dumps(
            {"name": f"emoji-datasource-{style}", "version": "16.0.0", "license": "MIT"}))
        (pkg / "LICENSE").write_text(f"MIT licence of the {style} package\n")
    if with_captions:
        pkg = root / "emojibase-data"
        (pkg / "en").mkdir(parents=True)
        data = []
        for unified, *_, label, skins in FAKE_EMOJI:
            entry = {"hexcode": unified, "label": label, "tags": ["tag", label.split()[0]]}
            if skins:
                entry["skins"] = [{"hexcode": f"{unified}-{t}", "label": f"{label}: light skin tone"}
                                  for t in skins]
            data.append(entry)
        (pkg / "en" / "data.json").write_text(json.dumps(data))
        (pkg / "package.json").write_text(json.dumps(
            {"name": "emojibase-data", "version": "17.0.0", "license": "MIT"}))
        (pkg / "LICENSE").write_text("MIT licence of emojibase\n")
    return root


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> Path:
    return _make_packages(tmp_path_factory.mktemp("npm"))


def _build(packages: Path, out: Path, *args: str):
    result = RUNNER.invoke(app, ["data", "emoji", "-o", str(out), "--from", str(packages),
                                 "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_captions_are_lower_case_ascii_cldr_names_with_readable_qualifiers():
    assert caption_from_label("flag: Côte d’Ivoire") == "flag of cote d'ivoire"
    assert caption_from_label("keycap: #") == "keycap #"
    assert caption_from_label("man: red hair") == "man, red hair"
    assert caption_from_label("OK hand") == "ok hand"
    assert caption_from_label("Japanese “here” button") == 'japanese "here" button'
    assert caption_from_label("piñata") == "pinata"


def test_build_composites_on_white_and_writes_captions_splits_and_licences(packages, tmp_path):
    out = tmp_path / "emoji"
    summary = _build(packages, out, "--val-fraction", "0")
    rows = load_metadata(out, "train")
    by_file = {r["file_name"]: r for r in rows}
    # 7 emoji without the skin-tone component, in 2 styles, minus twitter's missing cat face
    assert len(rows) == summary["counts"]["total"]["images"] == 7 * 2 - 1
    assert "1f431_twitter.png" not in by_file and "1f3fb_google.png" not in by_file
    assert by_file["1f603_google.png"]["text"] == "grinning face with big eyes"
    assert by_file["1f603_google.png"]["alt_texts"] == ["smiling face with open mouth", "smiley"]
    assert by_file["1f408_twitter.png"]["alt_texts"] == []  # "cat2" is an id, not a name
    assert by_file["1f1ef-1f1f5_google.png"]["text"] == "flag of japan"
    assert by_file["1f1ef-1f1f5_google.png"]["alt_texts"] == ["japan flag"]
    assert by_file["1f44d_google.png"]["emoji"] == "\U0001F44D"

    for name, row in by_file.items():
        img = np.asarray(Image.open(out / "train" / name))
        assert img.shape == (64, 64, 3)
        assert (img[:, :32] == 255).all(), "transparent pixels must become white, not black"
        rgb = np.array(_colour(row["unified"], row["style"]), np.float64)
        expected = rgb * HALF_ALPHA / 255 + 255 * (1 - HALF_ALPHA / 255)
        assert np.abs(img[:, 32:].astype(np.float64) - expected).max() <= 1.0

    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["captions"].startswith("CLDR")
    assert [s["package"] for s in dataset["sources"]] == [
        "emoji-datasource-google", "emoji-datasource-twitter", "emojibase-data"]
    assert dataset["sources"][1]["images"]["license"] == "CC-BY-4.0"
    licences = sorted(p.name for p in (out / "licenses").iterdir())
    assert licences == ["NOTICE.md", "emoji-datasource-google.LICENSE.txt",
                        "emoji-datasource-twitter.LICENSE.txt", "emojibase-data.LICENSE.txt"]
    assert "CC-BY-4.0" in (out / "licenses" / "NOTICE.md").read_text()
    assert emoji_names(out) == ["grinning face", "grinning face with big eyes", "thumbs up",
                                "cat face", "cat", "chequered flag", "flag of japan"]


def test_split_by_emoji_keeps_styles_together_and_is_deterministic(packages, tmp_path):
    a = _build(packages, tmp_path / "a", "--val-fraction", "0.4", "--seed", "3")
    b = _build(packages, tmp_path / "b", "--val-fraction", "0.4", "--seed", "3")
    assert a["counts"] == b["counts"]
    assert a["counts"]["val"]["emoji"] == round(0.4 * 7)
    for split in ("train", "val"):
        meta_a = (tmp_path / "a" / split / "metadata.jsonl").read_bytes()
        assert meta_a == (tmp_path / "b" / split / "metadata.jsonl").read_bytes()
        for row in load_metadata(tmp_path / "a", split):
            assert Path(row["path"]).read_bytes() == (tmp_path / "b" / split /
                                                      row["file_name"]).read_bytes()
    train = {r["unified"] for r in load_metadata(tmp_path / "a", "train")}
    val = {r["unified"] for r in load_metadata(tmp_path / "a", "val")}
    assert train and val and not train & val


def test_split_by_image_separates_styles_of_some_emoji(packages):
    with __import__("contextlib").ExitStack() as stack:
        entries = read_entries(locate_packages(packages, stack), EmojiDataConfig())
    crossed = 0
    for seed in range(10):
        cfg = EmojiDataConfig(val_fraction=0.5, val_by="image", seed=seed)
        splits = assign_splits(entries, cfg)
        assert sum(s == "val" for s in splits.values()) == round(0.5 * len(splits))
        crossed += any(splits[(e.unified, "google")] != splits[(e.unified, "twitter")]
                       for e in entries if len(e.images) == 2)
    assert crossed > 0


def test_skin_tones_join_their_base_emoji_split_and_flags_can_be_dropped(packages):
    from contextlib import ExitStack

    with ExitStack() as stack:
        roots = locate_packages(packages, stack)
        toned = read_entries(roots, EmojiDataConfig(skin_tones=True))
        no_flags = read_entries(roots, EmojiDataConfig(flags=False))
    by_code = {e.unified: e for e in toned}
    assert by_code["1F44D-1F3FB"].text == "thumbs up, light skin tone"
    assert by_code["1F44D-1F3FB"].group == "1F44D"
    for seed in range(5):
        splits = assign_splits(toned, EmojiDataConfig(val_fraction=0.5, seed=seed))
        assert splits[("1F44D-1F3FB", "google")] == splits[("1F44D", "twitter")]
    assert "1F1EF-1F1F5" not in {e.unified for e in no_flags}
    assert "1F3C1" in {e.unified for e in no_flags}  # the chequered flag is not a country


def test_size_resizes_and_tarballs_and_unicode_name_fallback_work(tmp_path):
    src = _make_packages(tmp_path / "src", with_captions=False)
    tgz_dir = tmp_path / "tgz"
    tgz_dir.mkdir()
    for style in ("google", "twitter"):
        with tarfile.open(tgz_dir / f"emoji-datasource-{style}-16.0.0.tgz", "w:gz") as tar:
            tar.add(src / f"emoji-datasource-{style}", arcname="package")
    result = RUNNER.invoke(app, ["data", "emoji", "-o", str(tmp_path / "out"), "--from",
                                 str(tgz_dir), "--size", "32", "--val-fraction", "0"])
    assert result.exit_code == 0, result.output
    rows = load_metadata(tmp_path / "out", "train")
    assert Image.open(rows[0]["path"]).size == (32, 32)
    assert "smiling face with open mouth" in {r["text"] for r in rows}
    assert "emojibase-data not found" in result.output


def test_without_npm_the_error_is_one_line_pointing_to_from(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH: nothing can be fetched
    result = RUNNER.invoke(app, ["data", "emoji", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "--from DIR" in result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "out").exists()


def test_refuses_to_replace_a_folder_that_is_not_an_emoji_data_set(packages, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        result = RUNNER.invoke(app, ["data", "emoji", "-o", str(out), "--from", str(packages),
                                     *extra])
        assert result.exit_code == 2, result.output
    assert (out / "precious.txt").read_text() == "keep me"
    built = tmp_path / "built"
    _build(packages, built)
    _build(packages, built, "--overwrite", "--no-flags")
    assert "flag of japan" not in emoji_names(built)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
