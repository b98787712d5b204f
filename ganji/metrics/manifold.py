"""Nearest-neighbour metrics: precision and recall of the feature manifolds, and novelty.

Precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing
Generative Models", sec. 2): each set's manifold is the union of balls around its points whose radius
is the distance to the point's k-th nearest neighbour (k = 3) in the same set. Precision is the
share of generated points inside the real manifold (are samples realistic?), recall the share of real
points inside the generated one (do samples cover the data?).

Novelty: a generated kanji that sits nearer a training kanji than distinct real kanji almost ever sit
to each other is a copy, not a fake. The threshold is a low quantile (1%) of the real-to-real
nearest-neighbour distances; `copies` is the share of samples below it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

K_NEAREST = 3
COPY_QUANTILE = 0.01
_CHUNK = 1024


def _as_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def kth_neighbour_distances(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (the row itself excluded)."""
    t = _as_tensor(x)
    out = np.empty(len(t), np.float64)
    for start in range(0, len(t), _CHUNK):
        d = torch.cdist(t[start : start + _CHUNK], t)
        rows = torch.arange(d.shape[0])
        d[rows, rows + start] = float("inf")  # not its own neighbour
        out[start : start + _CHUNK] = d.topk(k, dim=1, largest=False).values[:, -1].double().numpy()
    return out


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: the distance to its nearest reference row, and that row's index."""
    q, r = _as_tensor(queries), _as_tensor(reference)
    found = [torch.cdist(q[s : s + _CHUNK], r).min(dim=1) for s in range(0, len(q), _CHUNK)]
    return (np.concatenate([f.values.double().numpy() for f in found]),
            np.concatenate([f.indices.numpy() for f in found]))


def nearest_distances(queries: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Distance from each query row to its nearest reference row."""
    return nearest_neighbours(queries, reference)[0]


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """Share of `points` inside at least one ball (centre, radius)."""
    p, c = _as_tensor(points), _as_tensor(centres)
    r = torch.from_numpy(radii.astype(np.float32))[None]
    inside = 0
    for s in range(0, len(p), _CHUNK):
        inside += int((torch.cdist(p[s : s + _CHUNK], c) <= r).any(dim=1).sum())
    return inside / len(p)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> tuple[float, float]:
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall need more than k = {k} images on each side")
    precision = _coverage(fake, real, kth_neighbour_distances(real, k))
    recall = _coverage(real, fake, kth_neighbour_distances(fake, k))
    return precision, recall


@dataclass(frozen=True)
class Novelty:
    copies: float  # share of samples closer to a training image than the threshold
    threshold: float  # the COPY_QUANTILE of real-to-real nearest-neighbour distances
    mean_distance: float  # mean distance from a sample to its nearest training image


def copy_threshold(real: np.ndarray, quantile: float = COPY_QUANTILE) -> float:
    """The distance under which a sample counts as a copy: a low quantile of real-to-real nearest-neighbour distances."""
    return float(np.quantile(kth_neighbour_distances(real, 1), quantile))


def novelty(real: np.ndarray, fake: np.ndarray, quantile: float = COPY_QUANTILE) -> Novelty:
    threshold = copy_threshold(real, quantile)
    nearest = nearest_distances(fake, real)
    return Novelty(float((nearest < threshold).mean()), threshold, float(nearest.mean()))
