"""text.feature_noise: relative Gaussian noise on the text features while training text -> image."""

from __future__ import annotations

import torch

from flowtok.config import apply_overrides, load_preset
from flowtok.flow.model import TextImageFlow
from flowtok.text.projector import perturb_features


def test_noise_is_relative_to_each_tokens_rms_and_padding_stays_zero():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(64, 5, 256, generator=g)
    feats[:, 1] *= 10.0  # a loud token gets ten times the noise
    feats[:, 4] = 0.0  # padding
    out = perturb_features(feats, 0.3, torch.Generator().manual_seed(1))
    delta = out - feats
    rms = feats.pow(2).mean(-1).sqrt()
    ratio = delta.pow(2).mean(-1).sqrt() / rms.clamp_min(1e-12)
    torch.testing.assert_close(ratio[:, :4].mean(), torch.tensor(0.3), atol=0.01, rtol=0)
    assert torch.equal(out[:, 4], feats[:, 4])
    # the same generator state gives the same draw
    torch.testing.assert_close(out, perturb_features(feats, 0.3, torch.Generator().manual_seed(1)))


def _loss(model, feats, z):
    return model.loss(feats, z, None, torch.Generator().manual_seed(3))[0]


def test_the_t2i_loss_sees_perturbed_features_only_when_asked():
    cfg = apply_overrides(load_preset("tiny"), ["text.proj_dropout=0.0"])
    noisy_cfg = apply_overrides(load_preset("tiny"), ["text.proj_dropout=0.0", "text.feature_noise=0.5"])
    torch.manual_seed(0)
    plain = TextImageFlow(cfg, "t2i").eval()
    noisy = TextImageFlow(noisy_cfg, "t2i").eval()
    noisy.load_state_dict(plain.state_dict())
    feats = torch.randn(4, cfg.K, cfg.text.feature_dim)
    z = torch.randn(4, cfg.K, cfg.tokenizer.token_channels)
    base = _loss(plain, feats, z)
    assert torch.equal(base, _loss(plain, feats, z))  # deterministic under one generator seed
    assert not torch.allclose(base, _loss(noisy, feats, z))
    # at scale 0 the option is exactly the plain loss
    zero = TextImageFlow(apply_overrides(noisy_cfg, ["text.feature_noise=0.0"]), "t2i").eval()
    zero.load_state_dict(plain.state_dict())
    assert torch.equal(base, _loss(zero, feats, z))
