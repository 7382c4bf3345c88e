"""flowtok.tokenizer.model.to_uint8_images / to_uint8_tensor: the one decoded-float -> uint8
conversion gives the same bytes as each formula it replaced (recon's to_uint8, the pipeline's
decode and caption input, bench sample's decode), out-of-range values included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowtok.tokenizer.model import to_uint8_images, to_uint8_tensor


# the formulas as they were written before they were merged
def _old_recon(x: torch.Tensor) -> np.ndarray:  # flowtok/eval/recon.py to_uint8
    u = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return u.permute(0, 2, 3, 1).cpu().numpy()


def _old_pipeline_decode(x: torch.Tensor) -> np.ndarray:  # FlowTokPipeline.decode
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _old_caption_input(t: torch.Tensor) -> np.ndarray:  # pipeline._as_uint8, one (3, H, W)
    return ((t.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _old_bench(x: torch.Tensor) -> torch.Tensor:  # flowtok.bench.sample.SampleRun.decode
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def _inputs(seed: int) -> torch.Tensor:
    """(6, 3, 8, 8) float32: wide random values (about half outside [-1, 1]), then every exact
    level k / 127.5 - 1, the half-way points between levels (rounding ties), +-1 and just past
    them, +-inf and huge values."""
    g = torch.Generator().manual_seed(seed)
    wide = torch.randn(2, 3, 8, 8, generator=g) * 2
    levels = torch.arange(256, dtype=torch.float32) / 127.5 - 1
    halves = (torch.arange(256, dtype=torch.float32) + 0.5) / 127.5 - 1
    edges = torch.tensor([-1.0, 1.0, -1.0000001, 1.0000001, float("inf"), float("-inf"),
                          -0.0, 0.0, 1e30, -1e30, 0.5, -0.5])
    special = torch.cat([levels, halves, edges])  # 524 values
    fill = torch.rand(4 * 3 * 8 * 8 - len(special), generator=g) * 4 - 2
    return torch.cat([wide, torch.cat([special, fill]).view(4, 3, 8, 8)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_old_formulas_on_float32(seed):
    x = _inputs(seed)
    got = to_uint8_images(x)
    assert got.dtype == np.uint8 and got.shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(got, _old_recon(x))
    np.testing.assert_array_equal(got, _old_pipeline_decode(x))
    t = to_uint8_tensor(x)
    assert t.dtype == torch.uint8 and t.device == x.device
    assert torch.equal(t, _old_bench(x))
    for i in range(len(x)):  # one (3, H, W) image, as caption() takes it
        np.testing.assert_array_equal(to_uint8_images(x[i]), _old_caption_input(x[i]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_compute_in_float32_like_recon(dtype):
    x = _inputs(3).to(dtype)
    np.testing.assert_array_equal(to_uint8_images(x), _old_recon(x))
    np.testing.assert_array_equal(to_uint8_images(x[0]), _old_caption_input(x[0]))


def test_clamps_and_rounds_half_to_even():
    x = torch.tensor([-5.0, -1.0, 0.0, 1.0, 5.0, -0.5, 0.5])
    got = to_uint8_images(x.view(1, 1, 1, -1).expand(1, 3, 1, -1))[0, 0, :, 0]
    assert got.tolist() == [0, 0, 128, 255, 255, 64, 191]  # 0 -> 127.5 -> 128 (even)


def test_grad_and_device_untouched():
    x = torch.zeros(1, 3, 2, 2, requires_grad=True)
    assert to_uint8_tensor(x).requires_grad is False
    assert to_uint8_images(x).tolist() == [[[[128] * 3] * 2] * 2]


# --------------------------------------------------------------------------- the call sites


def test_decoder_returns_float32():
    """The pipeline and bench formulas had no .float(): identical bytes rely on this."""
    from flowtok.config import load_preset
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset("tiny")
    torch.manual_seed(0)
    tok = Tokenizer(cfg.tokenizer).eval()
    z = torch.randn(2, cfg.K, cfg.C)
    assert tok.decode(z).dtype == torch.float32


def test_pipeline_decode_and_caption_input_same_bytes(model_dir):
    from flowtok.pipeline import FlowTokPipeline, _as_uint8

    pipe = FlowTokPipeline.from_pretrained(model_dir, device="cpu")
    z = torch.randn(3, pipe.config.K, pipe.config.C, generator=torch.Generator().manual_seed(0)) * 3
    x = pipe.tokenizer.decode(z)
    np.testing.assert_array_equal(pipe.decode(z), _old_pipeline_decode(x))
    size, bg = pipe.tokenizer.cfg.image_size, pipe.tokenizer.cfg.background
    wide = torch.randn(3, size, size, generator=torch.Generator().manual_seed(1)) * 2
    np.testing.assert_array_equal(_as_uint8(wide, size, bg), _old_caption_input(wide))


def test_recon_same_bytes():
    from flowtok.config import load_preset
    from flowtok.eval.recon import reconstruct
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset("tiny")
    torch.manual_seed(0)
    tok = Tokenizer(cfg.tokenizer).eval()
    with torch.no_grad():
        for p in tok.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # decode well outside [-1, 1] in places
    s = cfg.tokenizer.image_size
    images = np.random.default_rng(0).integers(0, 256, (5, s, s, 3), dtype=np.uint8)
    x = tok.decode(tok.encode(torch.from_numpy(images)).mean)
    assert x.abs().max() > 1  # the clamp is exercised
    np.testing.assert_array_equal(reconstruct(tok, images, batch_size=2), _old_recon(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_bench_sample_decode_same_bytes(dtype):
    from flowtok.bench.sample import SampleRun, build_models, make_inputs
    from flowtok.config import load_preset

    cfg = load_preset("tiny")
    models = build_models(cfg, torch.device("cpu"), dtype, "tiny")
    run = SampleRun(models, make_inputs(models, cfg, 2, 0), steps=2, guidance=1.0)
    feats = run.text()
    lat = run.flow(feats) * 3
    got = run.decode(lat, feats)
    with run._ctx():
        text = feats if models.tokenizer.cfg.text_guidance else None
        x = models.tokenizer.decoder(lat, text)
        assert x.dtype == torch.float32
        assert torch.equal(got, _old_bench(x))
