"""text.proj_queries: K learned queries read the text tokens, so a latent slot is chosen by
content rather than by the position of a word (issue 24, unseen wordings)."""

from __future__ import annotations

import torch

from flowtok.config import apply_overrides, load_preset
from flowtok.flow.model import TextImageFlow
from flowtok.text.projector import TextProjector


def _projector(queries: bool) -> TextProjector:
    cfg = apply_overrides(load_preset("tiny"), ["text.proj_dropout=0.0",
                                                f"text.proj_queries={str(queries).lower()}"])
    torch.manual_seed(0)
    proj = TextProjector(cfg.text, cfg.K, cfg.tokenizer.token_channels).eval()
    proj.pos.zero_()  # without positions the two readouts differ only in how slots are chosen
    return proj


def test_queries_make_the_source_independent_of_token_order_and_the_default_follows_it():
    dim = _projector(True).inp.in_features
    feats = torch.randn(3, _projector(True).pos.shape[1], dim)
    perm = torch.randperm(feats.shape[1], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        q = _projector(True)
        mean, logvar = q(feats)
        mean_p, logvar_p = q(feats[:, perm])
        torch.testing.assert_close(mean_p, mean, atol=1e-5, rtol=1e-5)  # invariant
        torch.testing.assert_close(logvar_p, logvar, atol=1e-5, rtol=1e-5)
        plain = _projector(False)
        m0, m0_p = plain(feats)[0], plain(feats[:, perm])[0]
        torch.testing.assert_close(m0_p, m0[:, perm], atol=1e-5, rtol=1e-5)  # equivariant
        assert not torch.allclose(m0_p, m0, atol=1e-3)
    assert mean.shape == m0.shape


def test_query_projector_trains_and_round_trips_through_its_state_dict():
    cfg = apply_overrides(load_preset("tiny"), ["text.proj_queries=true"])
    torch.manual_seed(0)
    model = TextImageFlow(cfg, "t2i")
    assert "projector.queries" in model.state_dict()
    feats = torch.randn(4, cfg.K, cfg.text.feature_dim)
    z = torch.randn(4, cfg.K, cfg.tokenizer.token_channels)
    loss = model.loss(feats, z, None, torch.Generator().manual_seed(0))[0]
    loss.backward()
    assert model.projector.queries.grad is not None and model.projector.queries.grad.abs().sum() > 0
    again = TextImageFlow(cfg, "t2i")
    again.load_state_dict(model.state_dict())
    model.eval(), again.eval()
    torch.testing.assert_close(again.projector(feats)[0], model.projector(feats)[0])
