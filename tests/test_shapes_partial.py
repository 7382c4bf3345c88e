"""Partial captions ("a red circle"): same images, captions that leave size / position out, and a
judge that scores only what a prompt states and reports what the image chose for the rest."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from flowtok.data import shapes as S
from flowtok.errors import ConfigError, DataError
from flowtok.eval import shapes_eval as E
from flowtok_cli.app import app

runner = CliRunner()

# captions of images 0-11 (and a hash of 0-199) at seed 0 before partial captions existed
BEFORE = [
    "a small purple square at the top left", "a small white triangle in the bottom",
    "a blue circle on the left and a yellow triangle on the right",
    "a large white cross at the top right", "a large yellow circle in the left",
    "a small cyan triangle at the left", "a large purple circle at the bottom left",
    "a green triangle on the left and a cyan cross on the right", "a small white cross in the top",
    "a small green cross at the top right", "a large white circle in the right",
    "a small green circle at the left",
]
BEFORE_200_SHA256 = "69df1ef9b16593925739b8c179e3695d31b7ada72a403ec385f25a402a640b32"


def _image(caption: str, canvas: int = 32, seed: int = 0) -> np.ndarray:
    return S.render(S.scene_from_caption(caption, canvas, np.random.default_rng(seed)), canvas)


def _scenes(seed: int, n: int, partial: float) -> list[tuple[S.Scene, tuple[str, ...]]]:
    """Scenes as write_dataset draws them, with the omission each one's caption got."""
    out = []
    for i in range(n):
        omit = S.draw_omission(np.random.default_rng([seed, i, S.PARTIAL_STREAM]), partial)
        out.append((S.sample_scene(np.random.default_rng([seed, i]), 32, omit=omit), omit))
    return out


def _texts(folder) -> list[str]:
    return [json.loads(x)["text"] for x in (folder / "metadata.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- the data set
def test_partial_zero_writes_exactly_the_captions_of_before(tmp_path):
    S.write_dataset(tmp_path / "d", n=12, size=32, seed=0, partial=0.0)
    assert _texts(tmp_path / "d") == BEFORE
    captions = "\n".join(scene.caption for scene, _ in _scenes(0, 200, 0.0))
    assert hashlib.sha256(captions.encode()).hexdigest() == BEFORE_200_SHA256
    assert json.loads((tmp_path / "d" / "dataset.json").read_text())["partial_captions"] == 0


def test_a_partial_data_set_has_the_same_images_as_the_plain_one(tmp_path):
    S.write_dataset(tmp_path / "plain", n=40, size=32, seed=3)
    info = S.write_dataset(tmp_path / "partial", n=40, size=32, seed=3, partial=0.7)
    pngs = sorted(p.name for p in (tmp_path / "plain").glob("*.png"))
    assert len(pngs) == 40
    for name in pngs:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "partial" / name).read_bytes()
    changed = 0
    for plain, part in zip(_texts(tmp_path / "plain"), _texts(tmp_path / "partial")):
        if " and " in plain:  # two-object captions are never partial
            assert part == plain
        changed += part != plain
    meta = json.loads((tmp_path / "partial" / "dataset.json").read_text())
    assert meta["partial"] == 0.7 and meta["partial_captions"] == info["partial_captions"] == changed > 0


def test_the_share_of_partial_captions_is_near_p_and_each_omission_equally_likely():
    omissions = Counter()
    one_object = 0
    for scene, omit in _scenes(1, 700, 0.4):
        if len(scene.objects) == 1:
            one_object += 1
            omissions[omit] += 1
    share = 1 - omissions[()] / one_object
    assert abs(share - 0.4) < 0.07  # about 560 one-object captions: binomial sd 0.021
    for omit in S.PARTIAL_OMISSIONS:  # each about 75
        assert 45 < omissions[omit] < 105, omissions
    everything = [omit for scene, omit in _scenes(2, 100, 1.0) if len(scene.objects) == 1]
    assert everything and all(everything)


@pytest.mark.parametrize(("omit", "expected"), [
    ((), "a large red circle at the top left"),
    (("size",), "a red circle at the top left"),
    (("position",), "a large red circle"),
    (("size", "position"), "a red circle"),
])
def test_caption_leaves_out_what_it_is_told_to(omit, expected):
    obj = S.place_object(np.random.default_rng(0), "red", "circle", "large", "top left", 32)
    rng = np.random.default_rng(5)  # draws "at"
    assert S.caption(S.Scene((obj,), ""), rng, omit) == expected
    centre = S.place_object(np.random.default_rng(0), "red", "circle", "large", "center", 32)
    assert S.caption(S.Scene((centre,), ""), None, tuple(set(omit) - {"position"})).endswith(
        "circle in the center")
    with pytest.raises(DataError, match="cannot omit"):
        S.caption(S.Scene((obj,), ""), None, ("color",))


def test_every_partial_caption_parses_and_both_renders_judge_all_correct():
    checked = 0
    for i, (scene, omit) in enumerate(_scenes(4, 160, 1.0)):
        if len(scene.objects) != 1:
            continue
        (spec,) = S.parse_caption(scene.caption)
        obj = scene.objects[0]
        assert (spec.color, spec.shape) == (obj.color, obj.shape)
        assert spec.size == (None if "size" in omit else obj.size)
        assert spec.position == (None if "position" in omit else obj.position)
        assert E.judge(S.render(scene, 32), scene.caption)["all_correct"]  # the data's own image
        assert E.judge(_image(scene.caption, seed=i), scene.caption)["all_correct"]  # re-drawn
        checked += 1
    assert checked > 100


# ---------------------------------------------------------------- the grammar
@pytest.mark.parametrize(("text", "expected"), [
    ("a red circle", S.ObjectSpec("red", "circle", None, None)),
    ("a large red circle", S.ObjectSpec("red", "circle", "large", None)),
    ("a red circle at the top left", S.ObjectSpec("red", "circle", None, "top left")),
    ("an orange square in the center", S.ObjectSpec("orange", "square", None, "center")),
    ("  A Small white Cross. ", S.ObjectSpec("white", "cross", "small", None)),
    ("a large red circle in the center", S.ObjectSpec("red", "circle", "large", "center")),
])
def test_parse_caption_reads_partial_captions(text, expected):
    assert S.parse_caption(text) == [expected]


@pytest.mark.parametrize("text", [
    "a red", "a small circle", "red circle", "a red circle in the", "a red circle on the left",
    "a red circle small", "a red circle in the top left corner", "a large small red circle",
])
def test_parse_caption_still_refuses_text_outside_the_grammar(text):
    assert S.parse_caption(text) is None


def test_caption_matches_partial_captions_only_to_the_same_omission():
    assert E.caption_matches("A red circle.", "a red circle")
    assert E.caption_matches("a red circle in the top", "a red circle at the top")
    assert not E.caption_matches("a red circle", "a small red circle in the top left")
    assert not E.caption_matches("a small red circle in the top left", "a red circle")


def test_scene_from_caption_draws_unstated_size_and_cell_uniformly():
    rng = np.random.default_rng(9)
    scenes = [S.scene_from_caption("a red circle", 32, rng) for _ in range(900)]
    cells = Counter(s.objects[0].position for s in scenes)
    sizes = Counter(s.objects[0].size for s in scenes)
    assert set(cells) == set(S.POSITIONS) and all(60 < c < 140 for c in cells.values())  # ~100
    assert 390 < sizes["small"] < 510  # ~450
    stated = S.scene_from_caption("a large red circle", 32, rng).objects[0]
    assert stated.size == "large"
    fixed = S.scene_from_caption("a red circle at the top", 32, rng).objects[0]
    assert fixed.position == "top"


# ---------------------------------------------------------------- the judge
def test_the_judge_scores_only_stated_attributes():
    image = _image("a large red circle in the top left")
    result = E.judge(image, "a red circle")
    assert result["all_correct"] and result["size"] is None and result["position"] is None
    assert result["unstated"] == {"position": "top left", "size": "large"}
    result = E.judge(image, "a large red circle")
    assert result["all_correct"] and result["size"] is True and result["position"] is None
    assert result["unstated"] == {"position": "top left"}
    result = E.judge(image, "a small red circle")
    assert not result["all_correct"] and result["size"] is False
    assert E.judge(image, "a red circle at the top left")["all_correct"]
    assert E.judge(image, "a red circle in the center")["position"] is False
    assert E.judge(image, "a blue circle")["color"] is False
    assert E.judge(image, "a large red circle in the top left")["unstated"] == {}
    two = E.judge(np.zeros((32, 32, 3), np.uint8), "a red circle")
    assert two["count"] is False and two["unstated"] == {"position": None, "size": None}


def _score(shown: list[str], given: list[str], **kwargs) -> dict:
    return E.score_images([_image(c, seed=i) for i, c in enumerate(shown)], given, **kwargs)


def test_all_objects_in_one_cell_give_tv_eight_ninths_and_uniform_gives_zero():
    result = _score(["a small red circle in the top left"] * 18, ["a red circle"] * 18)
    position, size = result["unstated"]["position"], result["unstated"]["size"]
    assert (position["n"], position["counted"], position["counts"]["top left"]) == (18, 18, 18)
    assert position["tv"] == pytest.approx(8 / 9) and size["tv"] == pytest.approx(0.5)
    assert position["prompt_tv"] == pytest.approx(8 / 9)
    assert position["per_prompt"]["a red circle"]["counts"]["top left"] == 18
    assert result["all_correct"] == 1.0 and result["scored"]["position"] == 0
    everywhere = [f"a {z} blue square in the {p}" for p in S.POSITIONS for z in S.SIZES]
    result = _score(everywhere, ["a blue square"] * 18)
    assert result["unstated"]["position"]["counts"] == {p: 2 for p in S.POSITIONS}
    assert result["unstated"]["position"]["tv"] == pytest.approx(0)
    assert result["unstated"]["size"]["tv"] == pytest.approx(0)


def test_only_one_object_prompts_leaving_an_attribute_out_are_counted():
    shown = ["a small red circle in the top", "a red circle on the left and a blue square on the right",
             "a large green cross in the center", "a large green cross in the center"]
    given = ["a small red circle in the top", shown[1], "a green cross", "a large green cross"]
    result = _score(shown, given)
    position, size = result["unstated"]["position"], result["unstated"]["size"]
    assert (position["n"], position["counts"]["center"], size["n"], size["counts"]["large"]) == (2, 2, 1, 1)
    assert position["per_prompt"] == {} and position["prompt_tv"] is None  # no prompt given twice
    plain = _score(shown[:2], given[:2])["unstated"]
    assert plain["position"]["n"] == 0 and plain["position"]["tv"] is None
    empty = E.score_images([np.zeros((32, 32, 3), np.uint8)], ["a red circle"])["unstated"]
    assert (empty["position"]["n"], empty["position"]["counted"], empty["position"]["tv"]) == (1, 0, None)


def test_total_variation_and_a_custom_reference():
    assert E.total_variation({"a": 3, "b": 0}, {"a": 0.0, "b": 1.0}) == 1.0
    assert E.total_variation({"a": 1, "b": 1}, {"a": 0.5, "b": 0.5}) == 0.0
    assert E.total_variation({"a": 0}, {"a": 1.0}) is None
    result = _score(["a small red circle in the top"] * 2, ["a red circle"] * 2,
                    reference={"size": {"small": 1.0, "large": 0.0}})
    assert result["unstated"]["size"]["tv"] == 0.0
    assert result["unstated"]["position"]["tv"] == pytest.approx(8 / 9)  # still uniform
    with pytest.raises(DataError, match="summing to 1"):
        _score(["a red circle"], ["a red circle"], reference={"size": {"small": 0.5}})
    with pytest.raises(DataError, match="unknown attribute"):
        _score(["a red circle"], ["a red circle"], reference={"color": {"red": 1.0}})


# ---------------------------------------------------------------- partial prompts
def test_partial_prompts_are_fixed_balanced_and_state_neither_size_nor_position():
    prompts = S.partial_prompts(64, seed=2)
    assert prompts == S.partial_prompts(64, seed=2) != S.partial_prompts(64, seed=3)
    kinds = len(S.PALETTE) * len(S.SHAPES)
    assert len(set(prompts[:kinds])) == kinds and set(Counter(prompts).values()) == {2}
    for p in prompts:
        (spec,) = S.parse_caption(p)
        assert spec.size is None and spec.position is None
    assert set(Counter(S.partial_prompts(40)).values()) == {1, 2}
    with pytest.raises(ConfigError):
        S.partial_prompts(0)


# ---------------------------------------------------------------- through the CLI
def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_cli_writes_a_partial_set_that_eval_shapes_scores_all_correct(tmp_path):
    out = tmp_path / "d"
    result = _run("data", "shapes", "-o", out, "--n", 40, "--size", 32, "--seed", 1, "--partial", 0.5)
    assert result.exit_code == 0, result.output
    assert "partial" in result.stdout
    texts = _texts(out)
    partial = [t for t in texts if " and " not in t and None in (
        S.parse_caption(t)[0].size, S.parse_caption(t)[0].position)]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["partial"] == 0.5 and meta["partial_captions"] == len(partial) > 0
    assert f"{len(partial)} captions" in result.stdout
    data = json.loads(_run("eval", "shapes", out, "--json").stdout)
    assert data["n"] == 40 and data["all_correct"] == 1.0 and data["failures"] == []
    assert data["unstated"]["position"]["n"] + data["unstated"]["size"]["n"] > 0
    table = _run("eval", "shapes", out).stdout
    assert "unstated position" in table or "unstated size" in table


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_cli_refuses_a_partial_outside_zero_one_with_exit_2(tmp_path, value):
    result = _run("data", "shapes", "-o", tmp_path / "d", "--n", 5, "--partial", value)
    assert result.exit_code == 2 and "--partial" in result.stderr
    assert not (tmp_path / "d").exists()
    with pytest.raises(ConfigError, match="--partial"):
        S.write_dataset(tmp_path / "d", n=5, size=32, seed=0, partial=float(value))


def test_cli_data_prompts_kind_partial(tmp_path):
    out = tmp_path / "p.txt"
    result = _run("data", "prompts", "-o", out, "--n", 40, "--seed", 3, "--kind", "partial")
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines() == S.partial_prompts(40, seed=3)
    assert _run("data", "prompts", "-o", out, "--n", 8).exit_code == 0
    assert out.read_text().splitlines() == S.canonical_prompts(8)
    result = _run("data", "prompts", "-o", out, "--kind", "other")
    assert result.exit_code == 2 and "--kind" in result.stderr
