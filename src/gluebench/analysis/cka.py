"""Similarity of two sets of representations of the same inputs: linear CKA and mean cosine.

Linear CKA (Kornblith et al. 2019, "Similarity of Neural Network Representations Revisited") compares two
representations ``X [n, d1]`` and ``Y [n, d2]`` of the same ``n`` inputs. It is invariant to orthogonal
transforms and isotropic scaling of either side (so a layer that is merely rotated or rescaled reads 1.0)
but not to arbitrary invertible linear maps, and it works across different widths — which is what comparing
the layers of models trained on different tasks needs. Cosine per example is the stricter, unrotated check:
it is 1.0 only when the vectors themselves are the same up to scale.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor


def _as_float64(values: ArrayLike) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    array = array.astype(np.float64, copy=False)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-d array [examples, features], got shape {array.shape}")
    return array


def linear_cka(x: ArrayLike, y: ArrayLike) -> float:
    """Linear CKA of ``x [n, d1]`` and ``y [n, d2]``: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``.

    The feature-space form (columns centred) costs O(n d^2) instead of the O(n^2) Gram matrices, and float64
    keeps 1.0 exact to ~1e-12 for identical inputs. Returns NaN when either side is constant (zero variance),
    where similarity is undefined.
    """
    xs, ys = _as_float64(x), _as_float64(y)
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(f"x and y must describe the same examples: {xs.shape[0]} vs {ys.shape[0]} rows")
    xs = xs - xs.mean(axis=0, keepdims=True)
    ys = ys - ys.mean(axis=0, keepdims=True)
    cross = np.linalg.norm(ys.T @ xs, ord="fro") ** 2
    norm_x = np.linalg.norm(xs.T @ xs, ord="fro")
    norm_y = np.linalg.norm(ys.T @ ys, ord="fro")
    if norm_x == 0.0 or norm_y == 0.0:
        return float("nan")
    return float(cross / (norm_x * norm_y))


def cka_matrix(representations: list[ArrayLike]) -> np.ndarray:
    """Symmetric matrix of pairwise linear CKA between representations of the same inputs."""
    count = len(representations)
    matrix = np.eye(count)
    for i in range(count):
        for j in range(i + 1, count):
            matrix[i, j] = matrix[j, i] = linear_cka(representations[i], representations[j])
    return matrix


def mean_cosine(x: ArrayLike, y: ArrayLike) -> float:
    """Mean over rows of cos(x_i, y_i); needs equal widths (NaN otherwise, as the vectors are incomparable).

    Rows where either vector is zero (e.g. an all-unknown sentence) are left out of the mean.
    """
    xs, ys = _as_float64(x), _as_float64(y)
    if xs.shape != ys.shape:
        return float("nan")
    norms = np.linalg.norm(xs, axis=1) * np.linalg.norm(ys, axis=1)
    valid = norms > 0
    if not valid.any():
        return float("nan")
    return float(np.mean(np.sum(xs[valid] * ys[valid], axis=1) / norms[valid]))


def cosine_matrix(representations: list[ArrayLike]) -> np.ndarray:
    """Symmetric matrix of pairwise `mean_cosine` (NaN between layers of different widths)."""
    count = len(representations)
    matrix = np.eye(count)
    for i in range(count):
        for j in range(i + 1, count):
            matrix[i, j] = matrix[j, i] = mean_cosine(representations[i], representations[j])
    return matrix
