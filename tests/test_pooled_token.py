"""text.pooled_token: slot 0 of the text features carries the masked mean (sentence embedding)."""

import torch

from flowtok.text.encoders import build_text_encoder, with_pooled_token


def test_slot_zero_is_the_normalised_mean_of_the_real_tokens_only():
    torch.manual_seed(0)
    feats = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    out = with_pooled_token(feats, mask)
    want = feats[0, :3].mean(0)
    want = want / want.norm() * 8**0.5
    torch.testing.assert_close(out[0, 0], want)
    torch.testing.assert_close(out[:, 1:], feats[:, 1:])  # the tokens are kept
    assert abs(out[1, 0].pow(2).mean().sqrt().item() - 1.0) < 1e-5  # rms 1
    # padding changes nothing: the same sentence with more padding pools to the same vector
    longer = torch.cat([feats[:1], torch.randn(1, 3, 8)], dim=1)
    out2 = with_pooled_token(longer, torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]]))
    torch.testing.assert_close(out2[0, 0], out[0, 0])


def test_the_encoder_option_changes_slot_zero_alone():
    plain = build_text_encoder("tiny", 8, 16)
    pooled = build_text_encoder("tiny", 8, 16, pooled_token=True)
    a, b = plain.encode(["a red circle", "tiny"]), pooled.encode(["a red circle", "tiny"])
    torch.testing.assert_close(a[:, 1:], b[:, 1:])
    assert not torch.allclose(a[:, 0], b[:, 0])
