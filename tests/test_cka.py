"""Linear CKA against the Gram-matrix HSIC definition, and the invariances that make it the right measure."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from gluebench.analysis.cka import cka_matrix, cosine_matrix, linear_cka, mean_cosine


def hsic_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Reference: CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = XX^T, L = YY^T, HSIC = tr(KHLH)/(n-1)^2."""
    n = x.shape[0]
    centering = np.eye(n) - np.ones((n, n)) / n

    def hsic(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
        return float(np.trace(gram_a @ centering @ gram_b @ centering)) / (n - 1) ** 2

    gram_x, gram_y = x @ x.T, y @ y.T
    return hsic(gram_x, gram_y) / math.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_matches_hsic_reference_on_related_and_unrelated_inputs(rng: np.random.Generator) -> None:
    x = rng.normal(size=(60, 12))
    related = np.tanh(x @ rng.normal(size=(12, 7))) + 0.3 * rng.normal(size=(60, 7))
    unrelated = rng.normal(size=(60, 20)) + 5.0  # an offset, which centring must remove
    for y in (related, unrelated, x):
        assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), rel=1e-9)
    assert linear_cka(x, related) > linear_cka(x, unrelated)
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_invariant_to_orthogonal_transform_isotropic_scale_and_translation(rng: np.random.Generator) -> None:
    x = rng.normal(size=(50, 10))
    y = x @ rng.normal(size=(10, 16)) + rng.normal(size=(50, 16))
    baseline = linear_cka(x, y)
    rotation = ortho_group.rvs(10, random_state=1)
    assert linear_cka(x @ rotation, y) == pytest.approx(baseline, rel=1e-10)
    assert linear_cka(3.7 * x, 0.01 * y) == pytest.approx(baseline, rel=1e-10)
    assert linear_cka(x + 42.0, y - 3.0) == pytest.approx(baseline, rel=1e-10)
    assert linear_cka(x, x @ rotation * 5.0) == pytest.approx(1.0, abs=1e-12)


def test_not_invariant_to_an_arbitrary_invertible_linear_map(rng: np.random.Generator) -> None:
    x = rng.normal(size=(80, 6))
    stretch = np.diag([50.0, 1.0, 1.0, 1.0, 1.0, 0.02]) @ ortho_group.rvs(6, random_state=2)
    assert np.linalg.matrix_rank(stretch) == 6
    assert linear_cka(x, x @ stretch) < 0.9


def test_accepts_torch_tensors_and_rejects_mismatched_examples(rng: np.random.Generator) -> None:
    x = rng.normal(size=(30, 5))
    assert linear_cka(torch.tensor(x, dtype=torch.float32), x) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="same examples"):
        linear_cka(x, x[:20])
    assert math.isnan(linear_cka(x, np.ones((30, 4))))


def test_cosine_is_one_only_for_the_same_vectors_up_to_scale(rng: np.random.Generator) -> None:
    x = rng.normal(size=(40, 8))
    assert mean_cosine(x, 2.5 * x) == pytest.approx(1.0)
    rotated = x @ ortho_group.rvs(8, random_state=3)
    assert mean_cosine(x, rotated) < 0.9 < linear_cka(x, rotated)  # CKA forgives the rotation, cosine does not
    assert math.isnan(mean_cosine(x, x[:, :4]))


def test_matrices_are_symmetric_with_unit_diagonal(rng: np.random.Generator) -> None:
    reps = [rng.normal(size=(25, d)) for d in (4, 4, 9)]
    cka = cka_matrix(reps)
    assert np.allclose(cka, cka.T) and np.allclose(np.diag(cka), 1.0)
    assert cka[0, 2] == pytest.approx(hsic_cka(reps[0], reps[2]), rel=1e-9)
    cos = cosine_matrix(reps)
    assert cos[0, 1] == pytest.approx(mean_cosine(reps[0], reps[1]))
    assert math.isnan(cos[0, 2])
