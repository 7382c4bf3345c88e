"""flowtok.image_files: generated PNGs carry their identity, metadata.jsonl lists them, and a
rerun keeps what is already there."""

import json

import numpy as np
import pytest
from PIL import Image

from flowtok import image_files
from flowtok.errors import ConfigError

SETTINGS = {"steps": 2, "guidance": 3.0, "temperature": 1.0, "model": "tiny"}


def _image(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, np.uint8))


def _lines(out) -> list[dict]:
    return [json.loads(line) for line in (out / image_files.METADATA).read_text().splitlines()]


def test_records_name_each_image_by_index_prompt_and_seed_and_its_style():
    records = image_files.image_records(["A red Circle!", "a cat"], 2, 10, SETTINGS,
                                        ["google", "twitter", "google", "twitter"])
    assert [r["file_name"] for r in records] == [
        "00000_a-red-circle_s10.png", "00001_a-red-circle_s11.png",
        "00002_a-cat_s12.png", "00003_a-cat_s13.png"]
    assert [r["style"] for r in records] == ["google", "twitter", "google", "twitter"]
    assert list(records[0]) == ["file_name", "text", "seed", "steps", "guidance", "temperature",
                                "model", "style"]
    named = image_files.image_records(["a cat"], 2, 0, SETTINGS, ["twitter", "twitter"])
    assert {r["style"] for r in named} == {"twitter"}
    assert "style" not in image_files.image_records(["a cat"], 1, 0, SETTINGS)[0]


def test_a_saved_image_reads_back_as_its_record(tmp_path):
    record = image_files.image_records(["a cat"], 1, 5, SETTINGS)[0]
    path = image_files.save_image(_image(7), tmp_path, record)
    assert image_files.png_record(path) == {**record, "style": None}  # a model without styles
    assert _lines(tmp_path) == [record]


def test_a_rerun_keeps_identical_images_and_recovers_unlisted_ones(tmp_path):
    records = image_files.image_records(["a cat"], 3, 0, SETTINGS)
    for r in records[:2]:
        image_files.save_image(_image(1), tmp_path, r)
    (tmp_path / image_files.METADATA).write_text(json.dumps(records[0]) + "\n")  # image 1 unlisted
    _image(0).save(tmp_path / "foreign.png")
    not_ours: list = []
    todo, listed = image_files.plan_run(tmp_path, records, overwrite=False, not_ours=not_ours)
    assert todo == [2] and not_ours == [tmp_path / "foreign.png"]
    assert list(listed) == [records[0]["file_name"], records[1]["file_name"]]
    assert _lines(tmp_path) == records[:2]
    todo, _ = image_files.plan_run(tmp_path, records, overwrite=True)
    assert todo == [0, 1, 2]


def test_an_image_of_other_settings_under_the_same_name_is_refused(tmp_path):
    records = image_files.image_records(["a cat"], 1, 0, SETTINGS)
    image_files.save_image(_image(1), tmp_path, records[0])
    other = image_files.image_records(["a cat"], 1, 0, {**SETTINGS, "steps": 9})
    with pytest.raises(ConfigError, match=r"exists from another run \(its steps differ\)"):
        image_files.plan_run(tmp_path, other, overwrite=False)


def test_grid_puts_each_prompt_on_a_row_of_its_images(tmp_path):
    paths = []
    for i in range(4):
        paths.append(image_files.save_png(_image(40 * i), tmp_path / f"{i}.png", {}))
    grid = image_files.save_grid(paths, ["a", "b"], 2, tmp_path)
    with Image.open(grid) as im:
        assert im.size == (16, 16) and im.text["flowtok:prompts"] == "a | b"
        assert im.getpixel((8, 8)) == (120, 120, 120)
