"""Per-caption diversity of generated images against real ones: pairwise-diversity ratios,
improved precision / recall (Kynkäänniemi et al. 2019) and per-caption FID.

Why per caption: a text-to-image model can match the overall image distribution (good FID)
while drawing one near-identical image per prompt (mode collapse inside each caption). Comparing
the spread of the images *of one caption* with the spread of the real images of that caption
shows it: a diversity ratio far below 1 and a low recall.

- diversity ratio: mean pairwise distance among generated images of a caption / the same among
  its real images; in pixels (mean squared error of images resized to a common size, values in
  [0, 1]) and in features (mean pairwise squared L2 distance).
- precision: share of generated features inside the real manifold, the union of balls around
  each real feature with radius its distance to its k-th nearest real neighbour (itself
  excluded); recall: share of real features inside the generated manifold built the same way.
- FID per caption from the same features, only where both sides have enough images.

The metric math takes plain arrays (``mean_pairwise_sq_distance``, ``knn_radii``,
``manifold_coverage``, ``precision_recall``, ``fid_from_features``) so it is testable without the
Inception network; ``diversity_between`` reads two folders and returns the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flowtok.errors import ConfigError, DataError

METADATA_FILE = "metadata.jsonl"
SPLITS = ("train", "val")  # a data set root (`flowtok data shapes --val-fraction`) holds these
DEFAULT_MIN_SAMPLES = 2  # a pairwise distance needs two images
DEFAULT_K = 3  # Kynkäänniemi et al.'s recommended neighbourhood size
DEFAULT_MIN_FID = 50  # fewer images per side give a covariance too noisy to mean anything
DEFAULT_PIXEL_SIZE = 64  # common side for the pixel metrics (the shapes / emoji resolution)
DEFAULT_BATCH_SIZE = 50  # images per Inception forward pass, as `flowtok eval fid`
FEATURE_KINDS = ("inception", "pixels")
PIXEL_SCALE = 255.0  # uint8 -> [0, 1]
# Squared distances below this share of |a|^2 + |b|^2 (after centring) are rounding noise of the
# Gram-matrix formula: they count as 0, so an exact duplicate lies inside a ball of radius 0.
ROUNDING_RTOL = 1e-10
DISTANCE_CHUNK = 1024  # query rows per block of the distance matrix (bounds memory)
FULL_COVARIANCE_MAX_DIM = 2048  # above this (raw pixels) FID uses the exact low-rank form
METRICS = ("diversity_ratio", "feature_diversity_ratio", "precision", "recall", "fid")

FeatureFn = Callable[[list[Path]], np.ndarray]  # image files -> (N, D) features


# ---- captions and folders -----------------------------------------------------------------------

def normalize_caption(text: str) -> str:
    """Lowercase, collapse whitespace, drop one final period: 'A red  circle.' == 'a red circle'."""
    text = " ".join(str(text).lower().split())
    return text.removesuffix(".").rstrip()


def metadata_folders(folder: str | Path) -> list[Path]:
    """The folders whose metadata.jsonl describe ``folder``: itself, or its train/ and val/
    splits when it is a data set root; DataError naming the fix otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    if (folder / METADATA_FILE).is_file():
        return [folder]
    splits = [folder / s for s in SPLITS if (folder / s / METADATA_FILE).is_file()]
    if splits:
        return splits
    raise DataError(f"{folder}: no {METADATA_FILE} (nor {'/ or '.join(SPLITS)}/ with one); "
                    "write one line {\"file_name\": ..., \"text\": caption} per image")


@dataclass
class CaptionGroup:
    """The images of one normalised caption, with the caption as first written."""

    text: str
    files: list[Path] = field(default_factory=list)


def caption_groups(folder: str | Path) -> dict[str, CaptionGroup]:
    """Normalised caption -> its image files (metadata order); every listed file must exist."""
    from flowtok.eval.shapes_eval import read_metadata

    groups: dict[str, CaptionGroup] = {}
    for sub in metadata_folders(folder):
        for name, text in read_metadata(sub):
            path = sub / name
            if not path.is_file():
                raise DataError(f"{path}: image listed in {sub / METADATA_FILE} not found")
            groups.setdefault(normalize_caption(text), CaptionGroup(text)).files.append(path)
    return groups


# ---- metric math on arrays ----------------------------------------------------------------------

def _as_rows(x: np.ndarray) -> np.ndarray:
    """(N, ...) -> (N, D) float64."""
    x = np.asarray(x)
    return x.reshape(len(x), -1).astype(np.float64)


def mean_pairwise_sq_distance(x: np.ndarray) -> float:
    """Mean of |x_i - x_j|^2 over pairs i != j of the rows of x (N >= 2).

    Equals twice the summed unbiased per-dimension variance, so it costs O(N D), not O(N^2 D);
    the rows are first shifted by the first one, so identical rows give exactly 0.
    """
    if len(x) < 2:
        raise DataError(f"pairwise distances need at least 2 samples, got {len(x)}")
    flat = _as_rows(x)
    return float(2 * np.var(flat - flat[0], axis=0, ddof=1).sum())


def pixel_diversity(pixels: np.ndarray) -> float:
    """Mean pairwise per-pixel MSE of images (N, H, W, C) with values in [0, 1]."""
    return mean_pairwise_sq_distance(pixels) / int(np.prod(np.shape(pixels)[1:]))


def ratio(generated: float, real: float) -> float | None:
    """generated / real, None when the real spread is 0 (undefined)."""
    return None if real <= 0 else generated / real


def sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, Nb) squared Euclidean distances in float64, by the Gram formula after centring on
    b's mean; values at rounding level are exactly 0."""
    a, b = _as_rows(a), _as_rows(b)
    center = b.mean(axis=0)
    a, b = a - center, b - center
    na, nb = (a * a).sum(axis=1), (b * b).sum(axis=1)
    d = na[:, None] + nb[None, :] - 2 * (a @ b.T)
    d[d <= ROUNDING_RTOL * (na[:, None] + nb[None, :])] = 0.0
    return d


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance of each row of x to its k-th nearest other row (itself excluded)."""
    x = _as_rows(x)
    if not 1 <= k <= len(x) - 1:
        raise ConfigError(f"k = {k}: needs 1 <= k <= {len(x) - 1} for {len(x)} samples")
    radii = np.empty(len(x))
    for start in range(0, len(x), DISTANCE_CHUNK):
        d = sq_distances(x[start:start + DISTANCE_CHUNK], x)
        rows = np.arange(len(d))
        d[rows, rows + start] = np.inf  # not its own neighbour
        radii[start:start + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def manifold_coverage(points: np.ndarray, centers: np.ndarray, radii: np.ndarray) -> float:
    """Share of ``points`` inside the union of balls around ``centers`` with squared ``radii``."""
    points = _as_rows(points)
    inside = np.zeros(len(points), dtype=bool)
    for start in range(0, len(points), DISTANCE_CHUNK):
        d = sq_distances(points[start:start + DISTANCE_CHUNK], centers)
        inside[start:start + len(d)] = (d <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def clamp_k(k: int, n_gen: int, n_real: int) -> int:
    """k, lowered to n - 1 of the smaller set so every sample has k other neighbours."""
    return max(1, min(k, n_gen - 1, n_real - 1))


def precision_recall(real: np.ndarray, gen: np.ndarray, k: int) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of gen against real features."""
    precision = manifold_coverage(gen, real, knn_radii(real, k))
    recall = manifold_coverage(real, gen, knn_radii(gen, k))
    return precision, recall


def frechet_distance_low_rank(gen: np.ndarray, real: np.ndarray) -> float:
    """FID of two feature sets without forming D x D covariances (for D much larger than N).

    With centred rows A (gen) and B (real), S1 = A'A / (n1 - 1), S2 = B'B / (n2 - 1): the nonzero
    eigenvalues of S1 S2 are the squared singular values of A B' / sqrt((n1 - 1)(n2 - 1)), so
    tr sqrt(S1 S2) is that matrix's nuclear norm; exact, in O(n1 n2 D).
    """
    a, b = _as_rows(gen), _as_rows(real)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    a, b = a - mu_a, b - mu_b
    scale_a, scale_b = len(a) - 1, len(b) - 1
    tr_covmean = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(scale_a * scale_b)
    diff = mu_a - mu_b
    return float(diff @ diff + (a * a).sum() / scale_a + (b * b).sum() / scale_b
                 - 2 * tr_covmean)


def fid_from_features(gen: np.ndarray, real: np.ndarray) -> float:
    """FID between two feature sets: ``fid.frechet_distance`` on full covariances (the numbers
    `flowtok eval fid` gives) up to Inception's 2048 dimensions, the low-rank form above."""
    a, b = _as_rows(gen), _as_rows(real)
    if min(len(a), len(b)) < 2:
        raise DataError(f"FID needs at least 2 samples per set, got {len(a)} and {len(b)}")
    if a.shape[1] > FULL_COVARIANCE_MAX_DIM:
        return frechet_distance_low_rank(a, b)
    from flowtok.eval.fid import frechet_distance

    return frechet_distance(a.mean(axis=0), np.atleast_2d(np.cov(a, rowvar=False)),
                            b.mean(axis=0), np.atleast_2d(np.cov(b, rowvar=False)))


def caption_metrics(gen_pixels: np.ndarray, real_pixels: np.ndarray, gen_features: np.ndarray,
                    real_features: np.ndarray, k: int = DEFAULT_K,
                    min_fid: int = DEFAULT_MIN_FID) -> dict:
    """Every metric of one caption from its images (N, H, W, C) in [0, 1] and their features."""
    n_gen, n_real = len(gen_pixels), len(real_pixels)
    gen_div, real_div = pixel_diversity(gen_pixels), pixel_diversity(real_pixels)
    k_used = clamp_k(k, n_gen, n_real)
    precision, recall = precision_recall(real_features, gen_features, k_used)
    fid = (fid_from_features(gen_features, real_features)
           if min(n_gen, n_real) >= min_fid else None)
    return {"n_gen": n_gen, "n_real": n_real, "k": k_used,
            "diversity_ratio": ratio(gen_div, real_div),
            "feature_diversity_ratio": ratio(mean_pairwise_sq_distance(gen_features),
                                             mean_pairwise_sq_distance(real_features)),
            "precision": precision, "recall": recall, "fid": fid,
            "gen_pixel_diversity": gen_div, "real_pixel_diversity": real_div}


def summarize(rows: Sequence[dict], skipped: int) -> dict:
    """Median, mean and count of each metric over the captions where it is defined."""
    summary: dict = {"captions_scored": len(rows), "captions_skipped": skipped}
    for name in METRICS:
        values = [r[name] for r in rows if r[name] is not None]
        summary[name] = {"median": statistics.median(values) if values else None,
                         "mean": statistics.fmean(values) if values else None,
                         "n": len(values)}
    return summary


# ---- features of image files --------------------------------------------------------------------

def load_pixels(files: Sequence[Path], size: int) -> np.ndarray:
    """Images as float32 (N, size, size, 3) in [0, 1]: short side resized, centre-cropped."""
    from flowtok.data.imagefolder import load_image

    return np.stack([load_image(f, size) for f in files]).astype(np.float32) / PIXEL_SCALE


def inception_feature_fn(weights: Path | None = None, device: str | None = None,
                         batch_size: int = DEFAULT_BATCH_SIZE) -> FeatureFn:
    """Files -> pool3 features of the FID Inception network, resized as `flowtok eval fid`
    does (clean-fid). The network loads here, so missing weights fail before any image is read."""
    import torch
    from PIL import Image

    from flowtok.device import resolve_device
    from flowtok.eval.fid import clean_resize
    from flowtok.eval.inception import load_fid_inception

    dev = resolve_device(device)
    model = load_fid_inception(weights, dev)

    def read(path: Path) -> np.ndarray:
        try:
            with Image.open(path) as im:
                return clean_resize(im)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read image ({e})") from e

    @torch.no_grad()
    def features(files: list[Path]) -> np.ndarray:
        out = []
        for start in range(0, len(files), batch_size):
            pixels = torch.from_numpy(np.stack([read(f) for f in files[start:start + batch_size]]))
            out.append(model(pixels.to(dev).permute(0, 3, 1, 2)).double().cpu().numpy())
        return np.concatenate(out)

    return features


# ---- two folders -> report ----------------------------------------------------------------------

def diversity_between(gen_dir: str | Path, real_dir: str | Path, *,
                      min_samples: int = DEFAULT_MIN_SAMPLES, k: int = DEFAULT_K,
                      min_fid: int = DEFAULT_MIN_FID, features: str | FeatureFn = "inception",
                      pixel_size: int = DEFAULT_PIXEL_SIZE, batch_size: int = DEFAULT_BATCH_SIZE,
                      device: str | None = None, weights: Path | None = None) -> dict:
    """Score the captions that have >= min_samples images in both folders.

    ``features``: "inception" (FID network, 2048-d), "pixels" (the flattened pixel-metric
    images, no network) or a function from image files to an (N, D) array.
    Returns {"gen", "real", "real_folders", "features", "pixel_size", "k", "min_samples",
    "min_fid", "captions": [{"caption", "n_gen", "n_real", "k", "diversity_ratio",
    "feature_diversity_ratio", "precision", "recall", "fid", ...}], "skipped": [{"caption",
    "n_gen", "n_real"}], "summary": {"captions_scored", "captions_skipped", metric: {"median",
    "mean", "n"}}}; a caption's FID is None below min_fid images on a side, a ratio None when
    the real images of the caption are all identical.
    """
    if min_samples < DEFAULT_MIN_SAMPLES:
        raise ConfigError(f"--min-samples {min_samples}: pairwise distances need at least "
                          f"{DEFAULT_MIN_SAMPLES}")
    if k < 1:
        raise ConfigError(f"--k {k}: expected at least 1")
    if min_fid < 2:
        raise ConfigError(f"--min-fid {min_fid}: a covariance needs at least 2 images")
    if pixel_size < 1:
        raise ConfigError(f"--pixel-size {pixel_size}: expected a positive side in pixels")
    if isinstance(features, str) and features not in FEATURE_KINDS:
        raise ConfigError(f"--features {features}: expected one of {', '.join(FEATURE_KINDS)}")

    gen_groups, real_groups = caption_groups(gen_dir), caption_groups(real_dir)
    scored = [key for key, g in gen_groups.items() if len(g.files) >= min_samples
              and len(real_groups.get(key, CaptionGroup("")).files) >= min_samples]
    if not scored:
        shared = len(set(gen_groups) & set(real_groups))
        raise DataError(f"no caption has at least {min_samples} images in both {gen_dir} and "
                        f"{real_dir} ({len(gen_groups)} captions vs {len(real_groups)}, "
                        f"{shared} shared); lower --min-samples or generate more per caption")

    feature_fn: FeatureFn | None = None
    if callable(features):
        feature_fn = features
    elif features == "inception":
        feature_fn = inception_feature_fn(weights, device, batch_size)

    rows = []
    for key in scored:
        gen_files, real_files = gen_groups[key].files, real_groups[key].files
        gen_px, real_px = load_pixels(gen_files, pixel_size), load_pixels(real_files, pixel_size)
        if feature_fn is None:
            gen_feat, real_feat = gen_px.reshape(len(gen_px), -1), real_px.reshape(len(real_px), -1)
        else:
            gen_feat, real_feat = feature_fn(gen_files), feature_fn(real_files)
        rows.append({"caption": gen_groups[key].text,
                     **caption_metrics(gen_px, real_px, gen_feat, real_feat, k, min_fid)})
    done = set(scored)
    skipped = [{"caption": g.text, "n_gen": len(g.files),
                "n_real": len(real_groups[key].files) if key in real_groups else 0}
               for key, g in gen_groups.items() if key not in done]
    return {"gen": str(gen_dir), "real": str(real_dir),
            "real_folders": [str(p) for p in metadata_folders(real_dir)],
            "features": "custom" if callable(features) else features, "pixel_size": pixel_size,
            "k": k, "min_samples": min_samples, "min_fid": min_fid,
            "captions": rows, "skipped": skipped, "summary": summarize(rows, len(skipped))}
