"""Flow matching math, the CFG indicator and the Euler sampler against closed forms."""

import math

import pytest
import torch

from flowtok.config import load_preset
from flowtok.flow.model import TextImageFlow
from flowtok.flow.objective import (
    cfg_indicator,
    flow_loss,
    interpolate,
    sample_timesteps,
    velocity_target,
)
from flowtok.flow.sampler import euler_sample
from flowtok.flow.transformer import FlowTransformer
from flowtok.text.projector import TextProjector


def test_interpolation_and_target_match_the_closed_form():
    x0 = torch.tensor([[[1.0, -2.0]]])
    x1 = torch.tensor([[[3.0, 5.0]]])
    sigma = 0.1
    t = torch.tensor([0.25])
    # x_t = (1 - (1 - sigma) t) x0 + t x1 = (1 - 0.225) x0 + 0.25 x1
    assert torch.allclose(interpolate(x0, x1, t, sigma), torch.tensor([[[0.775 + 0.75, -1.55 + 1.25]]]))
    assert torch.allclose(velocity_target(x0, x1, sigma), torch.tensor([[[3.0 - 0.9, 5.0 + 1.8]]]))
    # endpoints
    assert torch.allclose(interpolate(x0, x1, torch.tensor([0.0]), sigma), x0)
    assert torch.allclose(interpolate(x0, x1, torch.tensor([1.0]), 0.0), x1)


def test_flow_loss_on_hand_made_tensors_equals_closed_form():
    x0 = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    x1 = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.5, 0.9])
    sigma = 1e-5

    def model(xt, tt, ind):  # v = 2 x_t: a field whose loss we can compute by hand
        return 2 * xt

    expected = torch.stack([
        ((2 * ((1 - (1 - sigma) * ti) * x0[i] + ti * x1[i]) - (x1[i] - (1 - sigma) * x0[i])) ** 2).mean()
        for i, ti in enumerate(t)
    ]).mean()
    got = flow_loss(model, x0, x1, t, torch.zeros(3, dtype=torch.long), sigma)
    assert torch.allclose(got, expected, atol=1e-6)


def test_a_perfect_velocity_gives_zero_loss():
    x0, x1 = torch.randn(5, 4, 2), torch.randn(5, 4, 2)
    v = velocity_target(x0, x1, 1e-5)
    loss = flow_loss(lambda xt, t, i: v, x0, x1, torch.rand(5), torch.zeros(5, dtype=torch.long), 1e-5)
    assert loss.item() == 0.0


def test_cfg_indicator_shuffles_only_null_samples():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        ind, perm = cfg_indicator(64, 0.3, g)
        cond = ind == 0
        assert torch.equal(perm[cond], torch.arange(64)[cond])  # conditional samples untouched
        null = ind.nonzero().flatten()
        assert sorted(perm[null].tolist()) == null.tolist()  # a permutation within the null set
        if len(null) > 1:
            assert (perm[null] != null).all()  # every null sample gets another sample's target
    ind, perm = cfg_indicator(1000, 0.1, torch.Generator().manual_seed(0))
    assert 0.07 < ind.float().mean().item() < 0.13


def test_timestep_samplers_stay_in_range():
    for kind in ("uniform", "logit_normal"):
        t = sample_timesteps(1000, kind, torch.Generator().manual_seed(0))
        assert t.min() >= 0 and t.max() <= 1
    t = sample_timesteps(20000, "logit_normal", torch.Generator().manual_seed(0))
    assert abs(t.mean().item() - 0.5) < 0.01 and t.std().item() < 0.25  # concentrated mid-way
    # a shifted logit-normal: median sigmoid(loc), and the share below 0.1 is Phi((logit(0.1) - loc) / scale)
    t = sample_timesteps(20000, "logit_normal", torch.Generator().manual_seed(0), loc=-1.0, scale=1.0)
    assert abs(t.median().item() - torch.sigmoid(torch.tensor(-1.0)).item()) < 0.01
    expected = 0.5 * (1 + math.erf((math.log(0.1 / 0.9) + 1.0) / math.sqrt(2)))
    assert abs((t < 0.1).float().mean().item() - expected) < 0.01
    with pytest.raises(ValueError):
        sample_timesteps(3, "cosine")


def test_euler_integrates_a_constant_field_exactly():
    x0, x1 = torch.randn(4, 3, 2), torch.randn(4, 3, 2)
    out = euler_sample(lambda x, t, ind: (x1 - x0).expand_as(x), x0, steps=7)
    assert torch.allclose(out, x1, atol=1e-5)


def test_euler_integrates_a_time_linear_field_with_the_expected_left_riemann_sum():
    # dx/dt = a t: Euler with N steps gives sum_i a (i/N) (1/N) = a (N-1) / (2N)
    a, N = torch.tensor(3.0), 10
    out = euler_sample(lambda x, t, ind: a * t.view(-1, 1, 1).expand_as(x), torch.zeros(2, 1, 1), N)
    assert torch.allclose(out, torch.full((2, 1, 1), 3.0 * (N - 1) / (2 * N)))


def test_cfg_combines_the_two_passes_as_v_u_plus_s_times_difference():
    x0 = torch.zeros(3, 2, 2)

    def model(x, t, ind):  # conditional velocity 1, null velocity -1
        return torch.where(ind.view(-1, 1, 1) == 0, 1.0, -1.0).expand_as(x)

    out = euler_sample(model, x0, steps=4, guidance=2.5)
    assert torch.allclose(out, torch.full_like(x0, -1 + 2.5 * 2))  # v_u + s (v_c - v_u) = 4


def test_sampler_refuses_non_positive_steps():
    with pytest.raises(ValueError):
        euler_sample(lambda x, t, i: x, torch.zeros(1, 1, 1), steps=0)


@pytest.mark.parametrize("preset,target", [("B", 153e6), ("XL", 698e6), ("H", 1.1e9)])
def test_paper_presets_match_the_paper_parameter_counts(preset, target):
    cfg = load_preset(preset)
    with torch.device("meta"):
        n = sum(p.numel() for m in (FlowTransformer(cfg.flow, cfg.K, cfg.C),
                                    TextProjector(cfg.text, cfg.K, cfg.C)) for p in m.parameters())
    assert abs(n / target - 1) < 0.03, n


def test_flow_model_is_zero_initialised_and_trains_on_tiny():
    cfg = load_preset("tiny")
    torch.manual_seed(0)
    m = TextImageFlow(cfg, "t2i")
    x = torch.randn(4, cfg.K, cfg.C)
    assert torch.equal(m.flow(x, torch.rand(4), torch.zeros(4, dtype=torch.long)), torch.zeros_like(x))
    feats, z = torch.randn(16, cfg.K, cfg.text.feature_dim), torch.randn(16, cfg.K, cfg.C)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for i in range(60):
        loss, logs = m.loss(feats, z, generator=torch.Generator().manual_seed(i))
        first = logs["flow"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert logs["flow"] < 0.7 * first


def test_latent_normalisation_round_trips():
    cfg = load_preset("tiny")
    cfg.flow.normalize_latents = True
    m = TextImageFlow(cfg, "t2i")
    lat = torch.randn(200, cfg.K, cfg.C) * torch.tensor([1.0, 2.0, 3.0, 4.0]) + 5
    m.set_latent_stats(lat)
    n = m.normalize(lat)
    assert n.reshape(-1, cfg.C).mean(0).abs().max() < 1e-4
    assert (n.reshape(-1, cfg.C).std(0) - 1).abs().max() < 1e-3
    assert torch.allclose(m.denormalize(n), lat, atol=1e-4)


def test_per_element_statistics_give_every_token_unit_variance(tmp_path):
    """An ordered basis puts most variance in token 0: per-channel statistics leave the later
    tokens near zero, per-element ones scale each (token, channel) to unit variance, and the
    (K, C) buffers survive a save/load."""
    from flowtok.pipeline import FlowTokPipeline
    from flowtok.tokenizer.model import Tokenizer

    cfg = load_preset("tiny")
    cfg.flow.normalize_latents = True
    token_scale = torch.logspace(1, -1, cfg.K)[:, None]  # token 0 ten times, the last a tenth
    lat = torch.randn(400, cfg.K, cfg.C) * token_scale + 2
    per_channel = TextImageFlow(cfg, "t2i")
    per_channel.set_latent_stats(lat)
    assert per_channel.normalize(lat)[:, -1].std() < 0.05  # the last token all but vanishes
    cfg.flow.latent_stats = "element"
    m = TextImageFlow(cfg, "t2i")
    m.set_latent_stats(lat)
    n = m.normalize(lat)
    assert m.latent_std.shape == (cfg.K, cfg.C)
    assert n.mean(0).abs().max() < 1e-4 and (n.std(0) - 1).abs().max() < 1e-3
    assert torch.allclose(m.denormalize(n), lat, atol=1e-4)
    FlowTokPipeline(cfg, Tokenizer(cfg.tokenizer), t2i=m).save_pretrained(tmp_path / "m")
    back = FlowTokPipeline.from_pretrained(tmp_path / "m", device="cpu").t2i
    assert torch.equal(back.latent_std, m.latent_std)


def test_unknown_latent_statistics_are_a_config_error():
    from flowtok.errors import ConfigError

    cfg = load_preset("tiny")
    cfg.flow.latent_stats = "token"
    with pytest.raises(ConfigError, match="latent_stats"):
        TextImageFlow(cfg, "t2i")


def test_fused_dit_blocks_equal_the_plain_dit_formula():
    """The residual+LayerNorm+modulate fusion must not change the DiT computation."""
    import torch.nn.functional as F

    cfg = load_preset("tiny")
    torch.manual_seed(0)
    m = FlowTransformer(cfg.flow, cfg.K, cfg.C)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.05)
    x, t, ind = torch.randn(3, cfg.K, cfg.C), torch.rand(3), torch.tensor([0, 1, 0])

    def ln(v, shift, scale):
        return F.layer_norm(v, (v.shape[-1],), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]

    mod = m.modulation(t, ind)
    h = m.x_embed(x) + m.pos
    for i, blk in enumerate(m.blocks):
        s1, c1, g1, s2, c2, g2 = mod[:, 6 * i : 6 * i + 6].unbind(1)
        h = h + g1[:, None] * blk.attn(ln(h, s1, c1))
        h = h + g2[:, None] * blk.mlp(ln(h, s2, c2))
    expected = m.out(ln(h, mod[:, -2], mod[:, -1]))
    torch.testing.assert_close(m(x, t, ind), expected, rtol=1e-6, atol=1e-6)


def test_normalised_text_latents_have_unit_rms_whatever_the_features_scale():
    from flowtok.config import apply_overrides

    cfg = apply_overrides(load_preset("tiny"), ["text.normalize_latent=true"])
    proj = TextProjector(cfg.text, cfg.K, cfg.C)
    for scale in (1e-3, 1.0, 1e3):
        mean, _ = proj(torch.randn(4, cfg.K, cfg.text.feature_dim) * scale)
        torch.testing.assert_close(mean.pow(2).mean(dim=(1, 2)), torch.ones(4), rtol=1e-4, atol=1e-4)


def _projector():
    from flowtok.text.projector import TextProjector

    cfg = load_preset("tiny")
    return TextProjector(cfg.text, cfg.K, cfg.C), cfg


def test_alignment_loss_equals_clip_closed_form():
    proj, cfg = _projector()
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, cfg.K, cfg.text.feature_dim, generator=g)
    z = torch.randn(5, cfg.K, cfg.C, generator=g)
    a = torch.nn.functional.normalize(proj.align(feats).flatten(1), dim=-1)
    b = torch.nn.functional.normalize(z.flatten(1), dim=-1)
    logits = (1 / 0.07) * a @ b.T
    lsm_r, lsm_c = logits.log_softmax(1), logits.log_softmax(0)
    expected = -0.5 * (lsm_r.diagonal().mean() + lsm_c.diagonal().mean())
    assert torch.allclose(proj.alignment_loss(feats, z), expected, atol=1e-5)


def test_image_alignment_prefers_true_pairs_and_leaves_the_image_alone():
    proj, cfg = _projector()
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(8, cfg.K, cfg.text.feature_dim, generator=g)
    image = torch.randn(8, cfg.K, cfg.C, generator=g, requires_grad=True)
    z = image.detach() + 0.1 * torch.randn(8, cfg.K, cfg.C, generator=g)
    matched = proj.alignment_loss(feats, z, image)
    shuffled = proj.alignment_loss(feats, z.roll(1, 0), image)
    assert matched < 0.1 < shuffled  # z_text close to its own image latent: near-zero loss
    matched.backward()
    assert image.grad is None  # only the text side learns from the alignment


def test_mse_alignment_pulls_the_text_mean_onto_its_normalised_image_latent():
    from flowtok.config import apply_overrides

    cfg = apply_overrides(load_preset("tiny"), ["text.align_mse_weight=2.0", "text.align_weight=0"])
    model = TextImageFlow(cfg, "t2i").eval()  # no projector dropout: two calls agree
    g = torch.Generator().manual_seed(0)
    model.set_latent_stats(3 + 2 * torch.randn(16, cfg.K, cfg.C, generator=g))
    feats = torch.randn(4, cfg.K, cfg.text.feature_dim, generator=g)
    z_img = 3 + 2 * torch.randn(4, cfg.K, cfg.C, generator=g)
    total, logs = model.loss(feats, z_img, generator=torch.Generator().manual_seed(1))
    mean, _ = model.projector(feats)
    expected = (mean - model.normalize(z_img)).pow(2).mean()
    assert logs["align_mse"] == pytest.approx(expected.item(), rel=1e-5)
    # the total is flow + KL + 2 x MSE (contrastive alignment off)
    rest = logs["flow"] + cfg.text.kl_weight * logs["kl"]
    assert total.item() == pytest.approx(rest + 2.0 * logs["align_mse"], rel=1e-5)
    off = TextImageFlow(apply_overrides(load_preset("tiny"), ["text.align_weight=0"]), "t2i")
    assert "align_mse" not in off.loss(feats, z_img, generator=torch.Generator())[1]
