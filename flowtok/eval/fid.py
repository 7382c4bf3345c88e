"""Fréchet Inception Distance between two image sets, as clean-fid computes it ("clean" mode).

Pipeline per image: decode to RGB uint8 -> resize each channel to 299x299 with PIL bicubic on
float32 values (``Image.fromarray(channel.astype(float32))``, mode "F"), clip to [0, 255], no
re-quantisation -> Inception-v3 pool3 features (2048-d, ``flowtok.eval.inception``; the network
maps x to (x - 128) / 128). An image already 299x299 is left as it is (PIL returns a copy).

Statistics are the mean and the unbiased covariance of the features, accumulated in float64.
FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)), where the last trace is computed as
tr((S1^(1/2) S2 S1^(1/2))^(1/2)) from two symmetric eigendecompositions (S1^(1/2) S2 S1^(1/2) is
symmetric positive semi-definite and similar to S1 S2), so no scipy ``sqrtm`` is needed;
eigenvalues at rounding level (below D * eps * the largest) count as zero.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flowtok.errors import ConfigError, DataError
from flowtok.eval.inception import FEATURE_DIM, INPUT_SIZE

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
STATS_FORMAT = "flowtok-fid-stats-v1"
FEATURES = "Inception-v3 pool3 (TensorFlow 2015 FID graph), 2048-d"
RESIZE = "clean-fid: RGB uint8 -> per-channel PIL bicubic on float32 to 299x299, clip [0, 255]"
FEW_IMAGES = FEATURE_DIM  # below this the covariance is rank-deficient and FID biased upward


# ---- images -> features -------------------------------------------------------------------------

def clean_resize(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """RGB image -> (size, size, 3) float32 in [0, 255], resized like clean-fid's "clean" mode."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    channels = [np.asarray(Image.fromarray(rgb[:, :, c].astype(np.float32))
                           .resize((size, size), Image.Resampling.BICUBIC)) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.float32)


def list_images(folder: Path) -> list[Path]:
    """Image files under folder (recursive), sorted by relative path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                   and p.is_file())
    if not files:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    return files


def folder_fingerprint(files: Sequence[Path], root: Path) -> str:
    """sha1 of the sorted (relative path, size) list: tells whether cached stats still apply."""
    h = hashlib.sha1()
    for p in files:
        h.update(f"{p.relative_to(root).as_posix()}\t{p.stat().st_size}\n".encode())
    return h.hexdigest()


class _ResizedFiles(torch.utils.data.Dataset):
    def __init__(self, files: Sequence[Path], size: int):
        self.files, self.size = list(files), size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        try:
            with Image.open(self.files[i]) as im:
                return clean_resize(im, self.size)
        except (OSError, ValueError) as e:
            raise DataError(f"{self.files[i]}: cannot read image ({e})") from e


def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays))  # (B, H, W, 3)


class RunningStatistics:
    """Mean and unbiased covariance of feature rows, accumulated in float64 around a shift."""

    def __init__(self):
        self.n = 0
        self.shift = self.sum = self.outer = np.zeros(0)

    def update(self, feats: np.ndarray) -> None:  # (B, D)
        x = np.asarray(feats, dtype=np.float64)
        if self.n == 0:  # the first batch's mean is the shift that keeps the sums small
            self.shift = x.mean(axis=0)
            self.sum, self.outer = np.zeros(x.shape[1]), np.zeros((x.shape[1], x.shape[1]))
        x = x - self.shift
        self.n += len(x)
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        if self.n < 2:
            raise DataError(f"FID needs at least 2 images per set, got {self.n}")
        mean = self.sum / self.n
        sigma = (self.outer - self.n * np.outer(mean, mean)) / (self.n - 1)
        return mean + self.shift, sigma


@dataclass
class FIDStatistics:
    """What FID needs of one image set: mu (D,), sigma (D, D) float64, and the image count."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    fingerprint: str = ""  # of the folder the statistics came from (folder_fingerprint)
    made_with: str = ""  # feature network and resizing (_made_with)


@torch.no_grad()
def _statistics(batches: Iterable[torch.Tensor], model: torch.nn.Module,
                device: torch.device) -> FIDStatistics:
    stats = RunningStatistics()
    for pixels in batches:  # (B, H, W, 3) float32 in [0, 255]
        feats = model(pixels.to(device).permute(0, 3, 1, 2))  # (B, 2048)
        stats.update(feats.double().cpu().numpy())
    mu, sigma = stats.finish()
    return FIDStatistics(mu, sigma, stats.n)


def folder_statistics(folder: Path, model: torch.nn.Module, batch_size: int = 50,
                      device: str | torch.device = "cpu", num_workers: int = 0,
                      size: int = INPUT_SIZE) -> FIDStatistics:
    """Feature statistics of every image under folder (decoding + resizing in num_workers)."""
    files = list_images(folder)
    loader = torch.utils.data.DataLoader(
        _ResizedFiles(files, size), batch_size=batch_size, num_workers=num_workers,
        collate_fn=_stack)
    stats = _statistics(loader, model, torch.device(device))
    stats.fingerprint = folder_fingerprint(files, Path(folder))
    return stats


def image_statistics(images: Iterable[Image.Image], model: torch.nn.Module, batch_size: int = 50,
                     device: str | torch.device = "cpu", size: int = INPUT_SIZE) -> FIDStatistics:
    """Feature statistics of in-memory images (e.g. generated ones), streamed in batches."""
    def batches() -> Iterator[torch.Tensor]:
        chunk: list[np.ndarray] = []
        for im in images:
            chunk.append(clean_resize(im, size))
            if len(chunk) == batch_size:
                yield _stack(chunk)
                chunk = []
        if chunk:
            yield _stack(chunk)

    return _statistics(batches(), model, torch.device(device))


# ---- statistics files ---------------------------------------------------------------------------

def save_statistics(path: Path, stats: FIDStatistics) -> None:
    """Write mu, sigma (and how they were made) to an .npz, atomically."""
    from flowtok.atomic import write_bytes_atomic

    buf = io.BytesIO()
    np.savez(buf, mu=stats.mu, sigma=stats.sigma, n=np.int64(stats.n),
             fingerprint=np.str_(stats.fingerprint), made_with=np.str_(stats.made_with),
             format=np.str_(STATS_FORMAT))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(Path(path), buf.getvalue())


def load_statistics(path: Path) -> FIDStatistics:
    """Read an .npz with mu and sigma (flowtok's, clean-fid's or pytorch-fid's); no pickle."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "mu" not in data or "sigma" not in data:
                raise DataError(f"{path}: FID statistics need arrays 'mu' and 'sigma'")
            mu, sigma = data["mu"].astype(np.float64), data["sigma"].astype(np.float64)
            n = int(data["n"]) if "n" in data else 0
            fingerprint = str(data["fingerprint"]) if "fingerprint" in data else ""
            made_with = str(data["made_with"]) if "made_with" in data else ""
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz of FID statistics ({e})") from e
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise DataError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together")
    return FIDStatistics(mu, sigma, n, fingerprint, made_with)


# ---- the distance -------------------------------------------------------------------------------

def _psd_eigenvalues_above_noise(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a PSD matrix with those at rounding level (|w| <= D eps max w) set to 0.

    Without this, sqrt() of the noise eigenvalues of a rank-deficient covariance (fewer images
    than dimensions) adds up to ~1e-3 over 2048 dimensions and FID of a set with itself < 0.
    """
    tol = max(float(w.max(initial=0.0)), 0.0) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tol, w, 0.0)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(_psd_eigenvalues_above_noise(w))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64, scipy-free."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ConfigError(f"FID statistics do not match: mu {mu1.shape} vs {mu2.shape}, "
                          f"sigma {sigma1.shape} vs {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise DataError("FID statistics contain NaN or infinity")
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1  # symmetric PSD, same eigenvalues as sigma1 @ sigma2
    tr_covmean = np.sqrt(_psd_eigenvalues_above_noise(
        np.linalg.eigvalsh((middle + middle.T) / 2))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


# ---- two sets -> FID ----------------------------------------------------------------------------

@dataclass
class _Source:
    stats: FIDStatistics
    report: dict


def _made_with(custom_model: bool, size: int) -> str:
    features = "custom feature model" if custom_model else FEATURES
    return f"{features}; {RESIZE if size == INPUT_SIZE else f'resized to {size}px'}"


def _set_statistics(path: Path, get_model, batch_size: int, device, num_workers: int,
                    cache: Path | None, size: int, made_with: str) -> _Source:
    path = Path(path)
    if path.suffix == ".npz":
        stats = load_statistics(path)
        return _Source(stats, {"path": str(path), "n": stats.n, "from": "statistics file",
                               "made_with": stats.made_with or "unknown"})
    if cache is not None and Path(cache).is_file():
        stats = load_statistics(cache)
        now = folder_fingerprint(list_images(path), path)
        if stats.fingerprint and stats.fingerprint != now:
            raise DataError(f"{cache}: cached statistics were made from other files than {path} "
                            "(names or sizes changed); delete the cache or choose another file")
        if stats.made_with and stats.made_with != made_with:
            raise DataError(f"{cache}: cached statistics were made with {stats.made_with!r}, not "
                            f"{made_with!r}; delete the cache or choose another file")
        return _Source(stats, {"path": str(path), "n": stats.n, "from": f"cache {cache}"})
    stats = folder_statistics(path, get_model(), batch_size, device, num_workers, size)
    stats.made_with = made_with
    if cache is not None:
        save_statistics(cache, stats)
    return _Source(stats, {"path": str(path), "n": stats.n,
                           "from": "images" + (f" (cached to {cache})" if cache else "")})


def _small_set_warnings(**counts: int) -> list[str]:
    return [f"{name} has {n} images (< {FEW_IMAGES}): the covariance is rank-deficient and FID "
            "is biased upward; compare only equal-sized sets"
            for name, n in counts.items() if 0 < n < FEW_IMAGES]


def fid_between(real: Path, fake: Path, batch_size: int = 50, device: str | None = None,
                cache_stats: Path | None = None, num_workers: int = 0,
                weights: Path | None = None, model: torch.nn.Module | None = None,
                size: int = INPUT_SIZE) -> dict:
    """FID of two image folders (or .npz statistics files); real's statistics may be cached.

    Returns {"fid", "real": {path, n, from}, "fake": {...}, "features", "resize", "warnings"}.
    ``model`` (pixels (B, 3, H, W) in [0, 255] -> features (B, D)) replaces the converted FID
    network, e.g. a small random network in tests; ``size`` is then its input size.
    """
    from flowtok.device import resolve_device

    dev = resolve_device(device)
    loaded: list[torch.nn.Module] = []

    def get_model() -> torch.nn.Module:
        if not loaded:
            if model is not None:
                loaded.append(model.to(dev).eval())
            else:
                from flowtok.eval.inception import load_fid_inception

                loaded.append(load_fid_inception(weights, dev))
        return loaded[0]

    made_with = _made_with(model is not None, size)
    real_src = _set_statistics(real, get_model, batch_size, dev, num_workers, cache_stats, size,
                               made_with)
    fake_src = _set_statistics(fake, get_model, batch_size, dev, num_workers, None, size,
                               made_with)
    value = frechet_distance(real_src.stats.mu, real_src.stats.sigma,
                             fake_src.stats.mu, fake_src.stats.sigma)
    return {"fid": value, "real": real_src.report, "fake": fake_src.report,
            "features": made_with.split("; ")[0], "resize": made_with.split("; ")[1],
            "warnings": _small_set_warnings(real=real_src.stats.n, fake=fake_src.stats.n)}


def fid_of_generated(pipeline, prompts: Sequence[str], real: Path, steps: int, guidance: float,
                     seed: int = 0, batch_size: int = 64, device: str | None = None,
                     cache_stats: Path | None = None, num_workers: int = 0,
                     weights: Path | None = None, save_dir: Path | None = None,
                     model: torch.nn.Module | None = None, size: int = INPUT_SIZE,
                     progress=None) -> dict:
    """Generate one image per prompt (image i uses seed + i) and score them against ``real``.

    Real statistics come first (a missing network or a stale cache fails before any
    generation); generated images are streamed into the statistics, never all held in memory,
    and written to save_dir as PNGs when given. ``pipeline`` is a FlowTokPipeline.
    """
    from flowtok.atomic import write_bytes_atomic
    from flowtok.device import resolve_device

    dev = resolve_device(device)
    made_with = _made_with(model is not None, size)
    if model is None:
        from flowtok.eval.inception import load_fid_inception

        model = load_fid_inception(weights, dev)
    model = model.to(dev).eval()
    real_src = _set_statistics(real, lambda: model, batch_size, dev, num_workers, cache_stats,
                               size, made_with)
    if save_dir is not None:
        Path(save_dir).mkdir(parents=True, exist_ok=True)

    def images() -> Iterator[Image.Image]:
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start:start + batch_size])
            for i, im in enumerate(pipeline(chunk, num_inference_steps=steps,
                                            guidance_scale=guidance, seed=seed + start,
                                            batch_size=batch_size), start):
                if save_dir is not None:
                    buf = io.BytesIO()
                    im.save(buf, format="PNG")
                    write_bytes_atomic(Path(save_dir) / f"{i:05d}.png", buf.getvalue())
                yield im
            if progress is not None:
                progress(len(chunk))

    fake = image_statistics(images(), model, batch_size, dev, size)
    value = frechet_distance(real_src.stats.mu, real_src.stats.sigma, fake.mu, fake.sigma)
    return {"fid": value, "real": real_src.report,
            "fake": {"n": fake.n, "from": "generated", "saved_to": str(save_dir) if save_dir
                     else None},
            "features": made_with.split("; ")[0], "resize": made_with.split("; ")[1],
            "warnings": _small_set_warnings(real=real_src.stats.n, generated=fake.n)}
