"""Tokenizer.encode takes what people pass (PIL images, arrays, lists of them) and encode/decode
return plain tensors, not autograd graphs (issue 26)."""

import numpy as np
import pytest
import torch
from PIL import Image

from flowtok.config import apply_overrides, load_preset
from flowtok.errors import ConfigError
from flowtok.tokenizer.model import Tokenizer


@pytest.fixture(scope="module")
def tok():
    torch.manual_seed(0)
    cfg = apply_overrides(load_preset("tiny"), ["tokenizer.image_size=32", "tokenizer.patch_size=8",
                                                "tokenizer.background=[255,255,255]"])
    return Tokenizer(cfg.tokenizer).eval()


def test_pil_images_arrays_and_tensors_encode_alike(tok):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    from_tensor = tok.encode(torch.from_numpy(np.stack(arrays))).mean
    from_pil = tok.encode([Image.fromarray(a) for a in arrays]).mean
    from_arrays = tok.encode(arrays).mean
    from_one = tok.encode(Image.fromarray(arrays[0])).mean
    torch.testing.assert_close(from_pil, from_tensor)
    torch.testing.assert_close(from_arrays, from_tensor)
    torch.testing.assert_close(from_one, from_tensor[:1])


def test_transparent_pixels_take_the_tokenizers_background(tok):
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    white = np.full((1, 32, 32, 3), 255, np.uint8)
    torch.testing.assert_close(tok.encode(clear).mean, tok.encode(torch.from_numpy(white)).mean)


def test_encode_and_decode_build_no_autograd_graph(tok):
    z = tok.encode(np.zeros((2, 32, 32, 3), np.uint8)).mean
    assert not z.requires_grad
    assert not tok.decode(z).requires_grad


@pytest.mark.parametrize("bad, match", [([], "empty"), (["x.png"], "got str"),
                                        ([np.zeros((32, 32), np.uint8)], "uint8"),
                                        ([np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16, 3), np.uint8)],
                                         "differ in size")])
def test_other_inputs_get_a_clear_error(tok, bad, match):
    with pytest.raises(ConfigError, match=match):
        tok.encode(bad)
