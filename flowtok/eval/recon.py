"""Reconstructions through a tokenizer and their metrics on uint8 images: PSNR, SSIM (the
standard 11x11 Gaussian SSIM) and the originals-over-reconstructions grid."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from flowtok.tokenizer.model import to_uint8_images

if TYPE_CHECKING:
    from flowtok.tokenizer.model import Tokenizer

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
GRID_ZOOM = 4  # nearest-neighbour upscale of reconstruction grids so 32 px images are visible


@torch.no_grad()
def reconstruct(tok: Tokenizer, images: np.ndarray, batch_size: int = 100) -> np.ndarray:
    """uint8 (N, S, S, 3) -> uint8 reconstructions through the posterior mean."""
    outs = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i: i + batch_size])
        outs.append(to_uint8_images(tok.decode(tok.encode(x).mean)))
    return np.concatenate(outs) if outs else images[:0]


def reconstruction_grid(originals: np.ndarray, recons: np.ndarray, zoom: int = GRID_ZOOM):
    """Two rows (originals over reconstructions) of uint8 (n, H, W, 3) images -> PIL image."""
    from PIL import Image

    top = np.concatenate(list(originals), axis=1)
    bottom = np.concatenate(list(recons), axis=1)
    grid = np.concatenate([top, bottom], axis=0)
    img = Image.fromarray(grid)
    return img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB between uint8 (B, H, W, 3) arrays (peak 255); identical -> inf."""
    diff = a.astype(np.float64) - b.astype(np.float64)
    mse = (diff**2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0**2 / mse)


def mean_psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of the mean squared error over the whole set (robust to perfect images)."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)  # (size, size)


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004) of uint8 (B, H, W, 3) arrays, averaged over channels;
    Gaussian 11x11 window, sigma 1.5, valid region only (as skimage with gaussian_weights)."""
    x = torch.from_numpy(a).permute(0, 3, 1, 2).double()
    y = torch.from_numpy(b).permute(0, 3, 1, 2).double()
    C = x.shape[1]
    size = min(SSIM_WINDOW, x.shape[-1], x.shape[-2])
    w = _gaussian_window(size, SSIM_SIGMA).expand(C, 1, size, size)
    c1, c2 = (SSIM_K1 * 255) ** 2, (SSIM_K2 * 255) ** 2

    def filt(t):
        return F.conv2d(t, w, groups=C)

    mx, my = filt(x), filt(y)
    vx = filt(x * x) - mx * mx
    vy = filt(y * y) - my * my
    cxy = filt(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()
