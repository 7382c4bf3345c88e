"""ShapesEval reads colour, shape, size, position and count back from pixels, and is never lenient."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from flowtok.data import shapes as S
from flowtok.errors import DataError
from flowtok.eval import shapes_eval as E


def _scene(caption: str, canvas: int = 32, seed: int = 0) -> S.Scene:
    return S.scene_from_caption(caption, canvas, np.random.default_rng(seed))


def _image(caption: str, canvas: int = 32, seed: int = 0) -> np.ndarray:
    return S.render(_scene(caption, canvas, seed), canvas)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edge padding), rounded back to uint8."""
    r = 3
    k = np.exp(-(np.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    k /= k.sum()
    f = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        p = np.pad(f, pad, mode="edge")
        f = sum(k[i] * np.take(p, range(i, i + f.shape[axis]), axis=axis) for i in range(2 * r + 1))
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


def _random_scenes(canvas: int, n: int, seed: int) -> list[S.Scene]:
    return [S.sample_scene(np.random.default_rng([seed, i]), canvas) for i in range(n)]


# ---------------------------------------------------------------- the caption parser
@pytest.mark.parametrize(("text", "expected"), [
    ("a small red circle in the top left", [E.ObjectSpec("red", "circle", "small", "top left")]),
    ("a large white cross at the bottom", [E.ObjectSpec("white", "cross", "large", "bottom")]),
    ("  A Large  white cross at the bottom. ", [E.ObjectSpec("white", "cross", "large", "bottom")]),
    ("an small orange square in the center", [E.ObjectSpec("orange", "square", "small", "center")]),
    ("a small blue triangle in the top", [E.ObjectSpec("blue", "triangle", "small", "top")]),
    ("a red circle on the left and a blue square on the right",
     [E.ObjectSpec("red", "circle", None, "left", True), E.ObjectSpec("blue", "square", None, "right", True)]),
    ("a blue square on the right and a red circle on the left",
     [E.ObjectSpec("red", "circle", None, "left", True), E.ObjectSpec("blue", "square", None, "right", True)]),
])
def test_parse_caption_reads_the_grammar(text, expected):
    assert E.parse_caption(text) == expected


@pytest.mark.parametrize("text", [
    "", "a red", "a small circle", "a red circle in the", "a huge red circle in the top",
    "a small pink circle in the top", "a small red hexagon in the top",
    "a small red circle in the middle", "a small red circle in the top left corner",
    "a red circle on the left and a blue square on the left",
    "a red circle on the left", "two red circles", "a small red circle in the top left and more",
])
def test_parse_caption_returns_none_outside_the_grammar(text):
    assert E.parse_caption(text) is None


def test_caption_matches_compares_parsed_attributes_not_wording():
    truth = "a small red circle in the top left"
    assert E.caption_matches("a small red circle at the top left", truth)
    assert E.caption_matches("A small red circle in the top left.", truth)
    assert not E.caption_matches("a large red circle in the top left", truth)
    assert not E.caption_matches("a small red circle in the top", truth)
    assert not E.caption_matches("a small orange circle in the top left", truth)
    assert not E.caption_matches("a red circle", truth)
    two = "a red circle on the left and a blue square on the right"
    assert E.caption_matches("a blue square on the right and a red circle on the left", two)
    assert not E.caption_matches("a blue square on the left and a red circle on the right", two)
    assert not E.caption_matches("gibberish", "gibberish")


# ---------------------------------------------------------------- the pixel judge on ground truth
@pytest.mark.parametrize("canvas", [32, 64])
def test_ground_truth_renders_score_one_hundred_percent(canvas):
    scenes = _random_scenes(canvas, 250, seed=canvas)
    result = E.score_images([S.render(s, canvas) for s in scenes], [s.caption for s in scenes])
    assert result["failures"] == []
    for key in ("color", "shape", "size", "position", "count", "all_correct"):
        assert result[key] == 1.0, key
    two = sum(len(s.objects) == 2 for s in scenes)
    assert result["scored"]["size"] == 250 - two and result["scored"]["color"] == 250


@pytest.mark.parametrize("canvas", [32, 64])
def test_shuffled_prompts_score_under_ten_percent(canvas):
    scenes = _random_scenes(canvas, 250, seed=canvas + 1)
    prompts = [scenes[i].caption for i in np.random.default_rng(0).permutation(250)]
    result = E.score_images([S.render(s, canvas) for s in scenes], prompts)
    assert result["all_correct"] < 0.10


def test_ground_truth_survives_a_mild_blur():
    scenes = _random_scenes(32, 150, seed=9)
    images = [_blur(S.render(s, 32), sigma=0.5) for s in scenes]
    palette = {(0, 0, 0), *S.PALETTE.values()}
    assert all({tuple(c) for c in img.reshape(-1, 3).tolist()} - palette for img in images)
    result = E.score_images(images, [s.caption for s in scenes])
    assert result["all_correct"] == 1.0, result["failures"][:3]


class _ExtremeJitter:
    """Stands in for a Generator: place_object's jitter is always (dx, dy)."""

    def __init__(self, dx: float, dy: float):
        self.dx, self.dy = dx, dy

    def uniform(self, low, high, size):
        return np.array([self.dx, self.dy]) * high


@pytest.mark.parametrize("canvas", [32, 64])
def test_every_shape_size_and_cell_is_read_back_at_the_extreme_jitters(canvas):
    for corner in (_ExtremeJitter(-1, -1), _ExtremeJitter(1, 1), _ExtremeJitter(-1, 1)):
        for position in S.POSITIONS:
            for size in S.SIZES:
                for shape in S.SHAPES:
                    obj = S.place_object(corner, "purple", shape, size, position, canvas)
                    (det,) = E.detect_objects(S.render(S.Scene((obj,), ""), canvas))
                    assert (det.color, det.shape, det.size, det.position) == (
                        "purple", shape, size, position)
                    assert det.shape_iou == 1.0 and det.color_purity == 1.0


# ---------------------------------------------------------------- deliberately wrong images
PROMPT = "a large red circle in the top left"


@pytest.mark.parametrize(("shown", "wrong"), [
    ("a large orange circle in the top left", {"color"}),
    ("a large red square in the top left", {"shape"}),
    ("a large red cross in the top left", {"shape"}),
    ("a small red circle in the top left", {"size"}),
    ("a large red circle in the top", {"position"}),
    ("a large red circle in the center", {"position"}),
    ("a small blue triangle in the bottom right", {"color", "shape", "size", "position"}),
])
def test_a_wrong_attribute_is_scored_wrong_and_only_that_one(shown, wrong):
    result = E.judge(_image(shown), PROMPT)
    assert {a for a in E.ATTRIBUTES if result[a] is False} == wrong
    assert result["all_correct"] is False


def test_an_extra_object_fails_count_and_all_correct_but_not_the_matched_attributes():
    image = _image("a red circle on the left and a blue square on the right")
    result = E.judge(image, "a small red circle in the left")
    assert result["color"] and result["shape"] and result["size"] and result["position"]
    assert result["count"] is False and result["all_correct"] is False


def test_an_empty_canvas_fails_everything():
    result = E.judge(np.zeros((32, 32, 3), np.uint8), PROMPT)
    assert not any(result[a] for a in E.ATTRIBUTES) and result["all_correct"] is False


def test_two_objects_on_swapped_sides_fail_position():
    image = _image("a blue square on the left and a red circle on the right")
    result = E.judge(image, "a red circle on the left and a blue square on the right")
    assert result["color"] and result["shape"] and result["count"]
    assert result["position"] is False and result["all_correct"] is False
    assert result["size"] is None  # two-object prompts name no size


def test_two_object_prompts_check_the_column_not_the_row():
    scene = _scene("a green cross on the left and a cyan triangle on the right")
    moved = tuple(S.ShapeObject(o.color, o.shape, o.size, o.position, o.cx, o.cy - 10, o.s)
                  for o in scene.objects)
    image = S.render(S.Scene(moved, ""), 32)
    assert [d.position for d in E.detect_objects(image)] == ["top left", "top right"]
    assert E.judge(image, scene.caption)["all_correct"]


def test_specks_under_two_percent_are_dropped_but_a_larger_blob_counts():
    image = _image(PROMPT)
    image[28:32, 28:32] = (40, 180, 60)  # 16 px < 2% of 1024
    assert E.judge(image, PROMPT)["all_correct"]
    image[26:32, 26:32] = (40, 180, 60)  # 36 px: a second object
    result = E.judge(image, PROMPT)
    assert result["count"] is False and result["all_correct"] is False


def test_dimmed_colours_count_but_other_hues_and_dark_pixels_do_not():
    base = _image(PROMPT).astype(np.float64)
    assert E.judge((base * 0.7).round().astype(np.uint8), PROMPT)["all_correct"]
    assert E.judge((base * 0.3).round().astype(np.uint8), PROMPT)["count"] is False  # background
    mask = base.any(-1)
    for off_hue in [(220, 120, 160), (120, 120, 40), (128, 128, 128)]:  # pink, olive, grey
        image = np.zeros((32, 32, 3), np.uint8)
        image[mask] = off_hue
        result = E.judge(image, PROMPT)
        assert result["color"] is False and result["all_correct"] is False, off_hue


def test_an_object_painted_in_two_colours_has_no_colour():
    image = _image("a large red square in the center")
    image[:, 16:][image[:, 16:].any(-1)] = (50, 90, 230)  # right half blue
    (det,) = E.detect_objects(image)
    assert det.color is None and det.shape == "square" and 0.4 < det.color_purity < 0.6
    assert E.judge(image, "a large red square in the center")["color"] is False


def test_random_noise_is_not_a_shape():
    rng = np.random.default_rng(0)
    for _ in range(5):
        noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        assert not E.judge(noise, PROMPT)["all_correct"]


def test_label_components_uses_eight_connectivity():
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # a diagonal: one component
    mask[4:6, 4:6] = True
    labels, count = E.label_components(mask)
    assert count == 2
    assert labels[0, 0] == labels[2, 2] != labels[5, 5]
    assert (labels >= 0).sum() == mask.sum()


def _flood_fill_count(mask: np.ndarray) -> int:
    """Reference: count 8-connected components by depth-first flood fill."""
    seen = np.zeros_like(mask)
    count = 0
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for ny in range(max(y - 1, 0), min(y + 2, mask.shape[0])):
                for nx in range(max(x - 1, 0), min(x + 2, mask.shape[1])):
                    if mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
    return count


def test_label_components_agrees_with_a_flood_fill_on_random_masks():
    rng = np.random.default_rng(0)
    for density in (0.2, 0.4, 0.6):
        mask = rng.random((24, 24)) < density
        labels, count = E.label_components(mask)
        assert count == _flood_fill_count(mask)
        assert set(np.unique(labels[mask]).tolist()) == set(range(count))
        for k in range(count):  # each label is one connected piece
            assert _flood_fill_count(labels == k) == 1


def test_judge_refuses_non_square_or_non_uint8_images():
    with pytest.raises(DataError, match="square RGB"):
        E.judge(np.zeros((32, 16, 3), np.uint8), PROMPT)
    with pytest.raises(DataError, match="uint8"):
        E.judge(np.zeros((32, 32, 3), np.float32), PROMPT)


# ---------------------------------------------------------------- folders
def _folder(tmp_path, prompts_shown, prompts_given):
    tmp_path.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (shown, given) in enumerate(zip(prompts_shown, prompts_given)):
        Image.fromarray(_image(shown, seed=i)).save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": given}))
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_score_folder_aggregates_and_counts_unparseable_prompts(tmp_path):
    shown = [PROMPT, PROMPT, "a small cyan cross in the right", PROMPT]
    given = [PROMPT, "a large red circle in the top", "a small cyan cross at the right", "a cat"]
    result = E.score_folder(_folder(tmp_path, shown, given))
    assert result["n"] == 4 and result["unparseable"] == 1
    assert result["all_correct"] == 0.5 and result["position"] == 0.5 and result["color"] == 0.75
    assert [(f["file_name"], f["wrong"]) for f in result["failures"]] == [
        ("1.png", ["position"]), ("3.png", ["unparseable"])]


def test_score_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="not found"):
        E.score_folder(tmp_path / "missing")
    with pytest.raises(DataError, match="no metadata.jsonl"):
        E.score_folder(tmp_path)
    folder = _folder(tmp_path / "f", [PROMPT], [PROMPT])
    (folder / "0.png").unlink()
    with pytest.raises(DataError, match="0.png.*not found"):
        E.score_folder(folder)
    (folder / "metadata.jsonl").write_text('{"file_name": "0.png"}\n')
    with pytest.raises(DataError, match="metadata.jsonl:1"):
        E.score_folder(folder)
