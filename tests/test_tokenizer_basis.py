"""The tokenizer's PCA shortcut, conv upsampling head, hflip batches and frozen-encoder training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowtok.config import load_preset
from flowtok.errors import ConfigError
from flowtok.tokenizer.linear_basis import LinearBasis
from flowtok.tokenizer.model import Tokenizer, UpsampleHead
from flowtok.train.tokenizer_task import TokenizerTask


def _low_rank_images(n: int, size: int, rank: int, seed: int = 0) -> torch.Tensor:
    """Images in [-1, 1] that lie exactly in a rank-``rank`` affine subspace."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, 3 * size * size, generator=g) / (3 * size * size) ** 0.5
    coeffs = torch.randn(n, rank, generator=g) * 0.3
    return (coeffs @ basis + 0.1).view(n, 3, size, size)


@pytest.mark.parametrize("n", [64, 5000])  # exact Gram path and randomized-SVD path
def test_basis_reconstructs_images_in_its_span_and_rows_are_orthonormal(n):
    size = 4 if n > 1000 else 8
    x = _low_rank_images(n, size, rank=12)
    basis = LinearBasis(size, num_tokens=4, channels=4)  # 16 components >= rank 12
    stats = basis.fit(x)
    assert stats["explained_variance"] == pytest.approx(1.0, abs=1e-4)
    eye = basis.components @ basis.components.T
    top = eye[:12, :12]  # the 12 directions that carry variance are orthonormal
    assert torch.allclose(top, torch.eye(12), atol=1e-3)
    z = basis.encode(x)
    assert z.shape == (n, 4, 4)
    assert z.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-3)  # unit RMS latents
    assert torch.allclose(basis.decode(z, size), x, atol=1e-4)


def test_basis_orders_components_coarse_to_fine():
    x = _low_rank_images(200, 8, rank=16)
    basis = LinearBasis(8, num_tokens=4, channels=4)
    basis.fit(x)
    per_token = basis.encode(x).pow(2).mean(dim=(0, 2))  # variance carried by each token
    assert torch.all(per_token[:-1] >= per_token[1:])


def test_basis_needs_enough_images():
    with pytest.raises(ValueError, match="needs at least"):
        LinearBasis(8, 4, 4).fit(_low_rank_images(10, 8, rank=4))


def _emoji_cfg(**tok):
    cfg = load_preset("tiny")
    for k, v in tok.items():
        setattr(cfg.tokenizer, k, v)
    return cfg


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    x = _low_rank_images(n, size, rank=20, seed=seed).clamp(-1, 1)
    return ((x + 1) * 127.5).round().byte().permute(0, 2, 3, 1).contiguous().numpy()


def test_linear_basis_tokenizer_starts_at_the_pca_reconstruction_and_round_trips(tmp_path):
    cfg = _emoji_cfg(linear_basis=True)
    s, K, C = cfg.tokenizer.image_size, cfg.K, cfg.C
    images = _images(K * C + 40, s)
    task = TokenizerTask(cfg, images)
    tok = task.tokenizer.eval()
    x = torch.from_numpy(images[:8])
    with torch.no_grad():
        ref = tok.basis.decode(tok.basis.encode(tok.prepare_images(x)), s)
        out = tok.decode(tok.encode(x).mean)
    # the transformers start as a zero residual: the output is the basis's (refined identity)
    assert torch.allclose(out, ref, atol=1e-5)
    tok.save_pretrained(tmp_path / "tok")
    back = Tokenizer.from_pretrained(tmp_path / "tok")
    assert torch.equal(back.basis.components, tok.basis.components)
    with torch.no_grad():
        assert torch.allclose(back.decode(back.encode(x).mean), out, atol=1e-6)


def test_decoder_only_trains_only_the_decoder():
    cfg = _emoji_cfg(linear_basis=True)
    cfg.train_tokenizer.decoder_only = True
    task = TokenizerTask(cfg, _images(cfg.K * cfg.C + 40, cfg.tokenizer.image_size))
    tok = task.tokenizer
    assert not any(p.requires_grad for p in tok.encoder.parameters())
    assert all(p.requires_grad for p in tok.decoder.parameters())
    before = {k: v.clone() for k, v in tok.encoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in tok.parameters() if p.requires_grad], lr=1e-2)
    batch = task.batch(0, torch.Generator())
    loss, _ = task.loss(batch, 0)
    loss.backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in tok.encoder.state_dict().items())


def test_hflip_batches_mirror_about_half_and_repeat_for_a_step():
    cfg = load_preset("tiny")
    cfg.train_tokenizer.hflip = True
    cfg.train_tokenizer.batch_size = 64
    images = _images(64, cfg.tokenizer.image_size)
    task = TokenizerTask(cfg, images)
    cfg.train_tokenizer.hflip = False
    plain = TokenizerTask(cfg, images).batch(3, torch.Generator())
    cfg.train_tokenizer.hflip = True
    a, b = task.batch(3, torch.Generator()), task.batch(3, torch.Generator())
    assert torch.equal(a, b)  # seeded by the step: resume-safe
    flipped = [(not torch.equal(x, p)) and torch.equal(x, p.flip(-1)) for x, p in zip(a, plain)]
    same = [torch.equal(x, p) for x, p in zip(a, plain)]
    assert all(f or s for f, s in zip(flipped, same))
    assert 16 <= sum(flipped) <= 48


def test_upsample_head_shapes_and_zero_start():
    head = UpsampleHead(width=32, patch_size=8, channels=(16, 8, 8))
    tokens = torch.randn(2, 16, 32)
    out = head(tokens, grid=4)
    assert out.shape == (2, 3, 32, 32)
    assert torch.count_nonzero(out) == 0  # zero-initialised last conv: starts as a no-op
    with pytest.raises(ConfigError, match="one entry per x2 stage"):
        UpsampleHead(width=32, patch_size=8, channels=(16, 8))
    with pytest.raises(ConfigError, match="power of 2"):
        UpsampleHead(width=32, patch_size=6, channels=(16,))


def test_cli_decoder_only_keeps_the_basis_encoder_and_init_continues_it(tmp_path):
    """`train tokenizer --decoder-only` on a linear-basis preset, then `--init` + `--decoder-only`
    from its model: the encoder (and basis) stay bit-identical, the decoder trains."""
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from flowtok_cli.app import app

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i, im in enumerate(_images(48, 16)):
        Image.fromarray(im).save(imgs / f"{i}.png")
    runner = CliRunner()
    common = ["train", "tokenizer", "--data", str(imgs), "--preset", "tiny", "--json",
              "--set", "tokenizer.linear_basis=true", "--set", "train_tokenizer.max_steps=3",
              "--decoder-only"]
    r = runner.invoke(app, [*common, "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "a" / "config.json").read_text())[
        "train_tokenizer"]["decoder_only"] is True
    r = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "--json", "--decoder-only",
                            "--preset", "tiny", "--set", "train_tokenizer.max_steps=3",
                            "--init", str(tmp_path / "a" / "model"), "-o", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    a = Tokenizer.from_pretrained(tmp_path / "a" / "model").state_dict()
    b = Tokenizer.from_pretrained(tmp_path / "b" / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("decoder."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    r = runner.invoke(app, ["train", "tokenizer", "--data", str(imgs), "--preset", "tiny",
                            "--decoder-only", "-o", str(tmp_path / "c")])
    assert r.exit_code == 2 and "--init" in r.output
