"""The shapes renderer, scene sampler, caption writer and data-set writer follow docs/shapes.md."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from flowtok.data import shapes as S
from flowtok.errors import ConfigError, DataError


def _one(color="red", shape="square", size="small", position="center", canvas=32, rng=None):
    rng = rng or np.random.default_rng(0)
    obj = S.place_object(rng, color, shape, size, position, canvas)
    return S.Scene((obj,), "")


def test_palette_and_vocabulary_are_exactly_the_documented_ones():
    assert S.PALETTE == {
        "red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230),
        "yellow": (240, 220, 40), "purple": (150, 60, 200), "orange": (245, 140, 30),
        "cyan": (40, 200, 210), "white": (235, 235, 235),
    }
    assert list(S.PALETTE) == ["red", "green", "blue", "yellow", "purple", "orange", "cyan", "white"]
    assert S.SHAPES == ("circle", "square", "triangle", "cross")
    assert list(S.SIZES) == ["small", "large"]
    assert S.POSITIONS == ("top left", "top", "top right", "left", "center", "right",
                           "bottom left", "bottom", "bottom right")


@pytest.mark.parametrize(("canvas", "small", "large"), [(32, 8, 14), (64, 16, 29), (48, 12, 22)])
def test_box_sides_are_rounded_shares_of_the_canvas(canvas, small, large):
    assert S.box_side("small", canvas) == small
    assert S.box_side("large", canvas) == large


def test_rendered_square_fills_its_box_in_the_exact_palette_colour_on_black():
    scene = _one("blue", "square", "small", "center")
    obj = scene.objects[0]
    image = S.render(scene, 32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    x0, y0 = int(obj.cx - obj.s / 2), int(obj.cy - obj.s / 2)
    expected = np.zeros((32, 32, 3), np.uint8)
    expected[y0 : y0 + 8, x0 : x0 + 8] = (50, 90, 230)
    np.testing.assert_array_equal(image, expected)


def test_shape_masks_have_the_hand_counted_pixels_at_8px():
    # disc: pixel centres within radius 4 -> 13 per quadrant; triangle rows 2,2,4,4,6,6,8,8;
    # cross: two 2-px arms (|d| <= 8/6) of length 8 overlapping in 2x2
    assert S.shape_mask("square", 8, 8).sum() == 64
    assert S.shape_mask("circle", 8, 8).sum() == 52
    assert S.shape_mask("triangle", 8, 8).sum(1).tolist() == [2, 2, 4, 4, 6, 6, 8, 8]
    cross = S.shape_mask("cross", 8, 8)
    assert cross.sum() == 28 and cross[:, 3:5].all() and cross[3:5, :].all()


@pytest.mark.parametrize("side", [8, 14, 16, 29])
@pytest.mark.parametrize("shape", S.SHAPES)
def test_every_shape_touches_all_four_sides_of_its_box_and_is_mirror_symmetric(shape, side):
    mask = S.shape_mask(shape, side, side)
    assert mask[0].any() and mask[-1].any() and mask[:, 0].any() and mask[:, -1].any()
    np.testing.assert_array_equal(mask, mask[:, ::-1])
    if shape != "triangle":
        np.testing.assert_array_equal(mask, mask[::-1])
    else:  # apex at the top, base along the bottom edge
        assert mask[-1].all() and mask[0].sum() <= 2


@pytest.mark.parametrize("canvas", [32, 64])
def test_objects_sit_in_their_cell_within_the_jitter_or_clamped_onto_the_canvas(canvas):
    rng = np.random.default_rng(1)
    jitter = S.JITTER * canvas + 0.5  # plus pixel rounding
    for _ in range(300):
        position = S.POSITIONS[rng.integers(9)]
        size = ("small", "large")[rng.integers(2)]
        obj = S.place_object(rng, "red", "circle", size, position, canvas)
        x, y = S.cell_centre(position, canvas)
        half = obj.s / 2
        assert half <= obj.cx <= canvas - half and half <= obj.cy <= canvas - half
        for got, want in ((obj.cx, x), (obj.cy, y)):
            clamped = got in (half, canvas - half)
            assert abs(got - want) <= jitter or clamped
        assert (obj.cx - half) == int(obj.cx - half)  # whole-pixel box


def test_render_uses_only_palette_colours_and_black():
    allowed = {(0, 0, 0), *S.PALETTE.values()}
    for i in range(50):
        scene = S.sample_scene(np.random.default_rng([3, i]), 32)
        colours = {tuple(c) for c in S.render(scene, 32).reshape(-1, 3).tolist()}
        assert colours <= allowed
        assert len(colours) == 1 + len({o.color for o in scene.objects})


def test_two_object_scenes_are_two_small_objects_left_and_right_that_differ():
    scenes = [S.sample_scene(np.random.default_rng([4, i]), 32, two_object_prob=1.0) for i in range(200)]
    for scene in scenes:
        left, right = scene.objects
        assert (left.size, right.size) == ("small", "small")
        assert (left.position, right.position) == ("left", "right")
        assert (left.color, left.shape) != (right.color, right.shape)
        assert scene.caption == (
            f"a {left.color} {left.shape} on the left and a {right.color} {right.shape} on the right"
        )


def test_scene_mix_is_about_eighty_twenty_and_captions_follow_the_grammar():
    scenes = [S.sample_scene(np.random.default_rng([5, i]), 32) for i in range(2000)]
    share = np.mean([len(s.objects) == 2 for s in scenes])
    assert abs(share - 0.2) < 0.04  # binomial sd 0.009
    preps = Counter()
    for scene in scenes:
        if len(scene.objects) == 1:
            o = scene.objects[0]
            head = f"a {o.size} {o.color} {o.shape} "
            assert scene.caption.startswith(head)
            where = scene.caption[len(head) :]
            if o.position == "center":
                assert where == "in the center"
            else:
                assert where in (f"in the {o.position}", f"at the {o.position}")
                preps[where.split()[0]] += 1
    assert preps["in"] > 500 and preps["at"] > 500


def test_parse_caption_reads_back_what_caption_wrote():
    for i in range(300):
        scene = S.sample_scene(np.random.default_rng([6, i]), 32)
        specs = S.parse_caption(scene.caption)
        assert [(p.color, p.shape) for p in specs] == [(o.color, o.shape) for o in scene.objects]
        if len(scene.objects) == 1:
            assert (specs[0].size, specs[0].position) == (scene.objects[0].size, scene.objects[0].position)
        else:
            assert [p.position for p in specs] == ["left", "right"]


def test_same_seed_gives_the_same_scene_and_pixels():
    a = S.sample_scene(np.random.default_rng([7, 3]), 64)
    b = S.sample_scene(np.random.default_rng([7, 3]), 64)
    assert a == b
    np.testing.assert_array_equal(S.render(a, 64), S.render(b, 64))


def test_scene_from_caption_renders_any_grammatical_prompt():
    rng = np.random.default_rng(8)
    scene = S.scene_from_caption("a large green cross at the bottom right", 64, rng)
    (obj,) = scene.objects
    assert (obj.color, obj.shape, obj.size, obj.position, obj.s) == ("green", "cross", "large", "bottom right", 29)
    assert obj.cx > 64 * 2 / 3 and obj.cy > 64 * 2 / 3
    two = S.scene_from_caption("a red circle on the left and a red circle on the right", 32, rng)
    assert [o.position for o in two.objects] == ["left", "right"]
    with pytest.raises(DataError, match="grammar"):
        S.scene_from_caption("a photo of a cat", 32, rng)


def test_canonical_prompts_are_fixed_balanced_distinct_and_grammatical():
    prompts = S.canonical_prompts(200, seed=0)
    assert prompts == S.canonical_prompts(200, seed=0)
    assert prompts != S.canonical_prompts(200, seed=1)
    assert len(set(prompts)) == 200
    specs = [S.parse_caption(p) for p in prompts]
    assert all(s is not None for s in specs)
    one = [s[0] for s in specs if len(s) == 1]
    two = [s for s in specs if len(s) == 2]
    assert (len(one), len(two)) == (160, 40)
    for attr, values in (("color", S.PALETTE), ("shape", S.SHAPES), ("size", S.SIZES),
                         ("position", S.POSITIONS)):
        counts = Counter(getattr(o, attr) for o in one)
        assert set(counts) == set(values)
        assert max(counts.values()) - min(counts.values()) <= 1, (attr, counts)
    left_colours = Counter(s[0].color for s in two)
    assert max(left_colours.values()) - min(left_colours.values()) <= 1
    assert all((a.color, a.shape) != (b.color, b.shape) for a, b in two)
    assert len(S.canonical_prompts(1, seed=0)) == 1 and len(set(S.canonical_prompts(700))) == 700


@pytest.mark.parametrize("size", [32, 48, 64, 128])
def test_check_size_accepts_canvases_where_the_geometry_holds(size):
    assert S.check_size(size) == size


@pytest.mark.parametrize("size", [7, 16, 40, 0, 2048])
def test_check_size_refuses_other_canvases(size):
    with pytest.raises(ConfigError, match="--size"):
        S.check_size(size)


def _images(folder):
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_write_dataset_writes_an_image_folder_with_metadata_and_arguments(tmp_path):
    info = S.write_dataset(tmp_path / "d", n=30, size=32, seed=0)
    folder = tmp_path / "d"
    lines = [json.loads(x) for x in (folder / "metadata.jsonl").read_text().splitlines()]
    assert [x["file_name"] for x in lines] == [f"{i:05d}.png" for i in range(30)]
    assert all(set(x) == {"file_name", "text"} for x in lines)
    assert sorted(_images(folder)) == [x["file_name"] for x in lines]
    for i, line in enumerate(lines[:5]):  # image i is scene (seed, i)
        scene = S.sample_scene(np.random.default_rng([0, i]), 32)
        assert line["text"] == scene.caption
        np.testing.assert_array_equal(_images(folder)[line["file_name"]], S.render(scene, 32))
    meta = json.loads((folder / "dataset.json").read_text())
    assert (meta["n"], meta["size"], meta["seed"], meta["splits"]) == (30, 32, 0, {"all": 30})
    assert info["n"] == 30 and not list(folder.glob(".*tmp"))


def test_first_images_do_not_depend_on_n_and_a_split_is_the_unsplit_set_cut_in_two(tmp_path):
    S.write_dataset(tmp_path / "small", n=10, size=32, seed=3)
    S.write_dataset(tmp_path / "big", n=25, size=32, seed=3)
    S.write_dataset(tmp_path / "split", n=25, size=32, seed=3, val_fraction=0.2)
    small, big = _images(tmp_path / "small"), _images(tmp_path / "big")
    assert all(np.array_equal(small[k], big[k]) for k in small)
    train, val = _images(tmp_path / "split" / "train"), _images(tmp_path / "split" / "val")
    assert (len(train), len(val)) == (20, 5)
    assert {**train, **val}.keys() == big.keys()
    assert all(np.array_equal({**train, **val}[k], big[k]) for k in big)
    text = (tmp_path / "split" / "val" / "metadata.jsonl").read_text()
    assert text == "".join((tmp_path / "big" / "metadata.jsonl").read_text().splitlines(True)[20:])


def test_write_dataset_replaces_an_earlier_set_but_refuses_a_foreign_folder(tmp_path):
    out = tmp_path / "d"
    S.write_dataset(out, n=12, size=32, seed=0, val_fraction=0.25)
    S.write_dataset(out, n=5, size=32, seed=0)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["dataset.json", "metadata.jsonl"] + [f"{i:05d}.png" for i in range(5)]
    )
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        S.write_dataset(foreign, n=5, size=32, seed=0)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"size": 20}, {"seed": -1}, {"val_fraction": 1.0},
                                    {"val_fraction": 0.01}, {"two_object_prob": 1.5}])
def test_write_dataset_refuses_invalid_arguments(tmp_path, kwargs):
    args = {"n": 10, "size": 32, "seed": 0, **kwargs}
    with pytest.raises(ConfigError):
        S.write_dataset(tmp_path / "d", **args)
    assert not (tmp_path / "d").exists()
