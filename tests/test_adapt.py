"""GloVe adaptation: co-occurrence counting by hand, and Mittens on a small real corpus (STS-B sentences)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gluebench.analysis.adapt import (
    MittensConfig,
    build_vocab,
    cooccurrence,
    read_corpus,
    train_mittens,
)
from gluebench.cli import app
from gluebench.data.read import read_split
from gluebench.embeddings import Vocabulary, load_vectors, read_vectors_dir, write_vectors_dir
from gluebench.tasks import TASKS


def test_cooccurrence_weights_by_inverse_distance_within_sentences_only() -> None:
    sentences = [["a", "b", "c", "rare", "a"], ["c", "b"]]
    vocab = ["a", "b", "c"]
    counts = cooccurrence(sentences, vocab, window=3).counts.toarray()
    a, b, c = 0, 1, 2
    # sentence 1: a-b 1, a-c 1/2, b-c 1, b-a(last) 1/3 ("rare" is dropped but keeps its slot), c-a(last) 1/2
    # sentence 2: c-b 1; nothing crosses the sentence boundary
    assert counts[a, b] == pytest.approx(1 + 1 / 3)
    assert counts[a, c] == pytest.approx(1 / 2 + 1 / 2)
    assert counts[b, c] == pytest.approx(1 + 1)
    assert counts[a, a] == 0.0  # the two a's are 4 apart, outside the window
    assert np.allclose(counts, counts.T)
    assert cooccurrence(sentences, vocab, window=4).counts[a, a] == pytest.approx(2 * 1 / 4)


@pytest.fixture(scope="module")
def corpus_file(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 real STS-B training pairs, one sentence per line."""
    examples = read_split(TASKS["STS-B"], "train", glue_dir)[:600]
    path = tmp_path_factory.mktemp("corpus") / "stsb.txt"
    path.write_text("".join(f"{e.text_a}\n{e.text_b}\n" for e in examples), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def corpus_problem(corpus_file: Path) -> tuple:
    sentences = read_corpus([corpus_file], lowercase=True)
    vocab = build_vocab(sentences, min_count=1)
    base = load_vectors(None, set(vocab))
    row = {w: i for i, w in enumerate(base.words)}
    has_base = np.array([w in row for w in vocab])
    matrix = np.zeros((len(vocab), base.dim), dtype=np.float32)
    matrix[has_base] = base.vectors[[row[w] for w in vocab if w in row]]
    return cooccurrence(sentences, vocab, window=10), matrix, has_base


def _relative_change(vectors: np.ndarray, base: np.ndarray, has_base: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(vectors[has_base] - base[has_base], axis=1)
                           / np.linalg.norm(base[has_base], axis=1)))


def test_training_lowers_the_glove_loss_and_mu_keeps_vectors_near_base(corpus_problem: tuple) -> None:
    torch.set_num_threads(1)
    cooc, base, has_base = corpus_problem
    assert has_base.mean() > 0.9
    free = train_mittens(cooc, base, has_base, MittensConfig(mu=0.0, epochs=8, batch_size=4096), progress=False)
    pulled = train_mittens(cooc, base, has_base, MittensConfig(mu=5.0, epochs=8, batch_size=4096), progress=False)
    for result in (free, pulled):  # history[0] is the objective at the starting point (the base vectors)
        losses = [h["glove_loss"] for h in result.history]
        assert result.history[0]["epoch"] == 0 and len(losses) == 9
        assert losses[-1] < 0.6 * losses[0]
    assert free.history[-1]["glove_loss"] < pulled.history[-1]["glove_loss"]  # the pull costs some fit
    assert pulled.history[-1]["distance_to_base"] < 0.1 * free.history[-1]["distance_to_base"]
    free_change = _relative_change(free.vectors, base, has_base)
    pulled_change = _relative_change(pulled.vectors, base, has_base)
    assert 0.0 < pulled_change < 0.5 * free_change
    # the mittens term keeps the adapted vectors pointing where the base ones do
    cosines = np.sum(pulled.vectors[has_base] * base[has_base], axis=1) / (
        np.linalg.norm(pulled.vectors[has_base], axis=1) * np.linalg.norm(base[has_base], axis=1))
    assert np.median(cosines) > 0.95


def test_adapt_writes_a_vectors_dir_the_static_models_read(corpus_file: Path, tmp_path: Path) -> None:
    # a real but small base: the GloVe vectors of the corpus words plus some words the corpus lacks
    sentences = read_corpus([corpus_file], lowercase=True)
    used = {t for s in sentences for t in s}
    outside = [w for w in ("photosynthesis", "parliamentary", "thermodynamics") if w not in used]
    base = load_vectors(None, used | set(outside))
    assert len(outside) == 3
    base_dir = tmp_path / "base"
    write_vectors_dir(base_dir, base.words, base.vectors, lowercase=True, source="glove subset")
    out = tmp_path / "adapted"
    result = CliRunner().invoke(app, ["embeddings", "adapt", "--corpus", str(corpus_file), "--base", str(base_dir),
                                      "-o", str(out), "--epochs", "3", "--no-progress"])
    assert result.exit_code == 0, result.output
    adapted = read_vectors_dir(out)
    before = dict(zip(base.words, base.vectors, strict=True))
    after = dict(zip(adapted.words, adapted.vectors, strict=True))
    assert set(before) <= set(after)
    for word in outside:  # words the corpus never uses keep their base vector exactly
        assert np.array_equal(after[word], before[word])
    assert not np.allclose(after["man"], before["man"])
    new_words = set(after) - set(before)
    assert all(np.linalg.norm(after[w]) > 0 for w in new_words)
    vocabulary = Vocabulary(adapted.words, adapted.lowercase)
    assert Vocabulary.UNK not in vocabulary.encode("A man is playing a flute.")
    assert (out / "adapt.json").is_file()


def test_adapt_refuses_to_overwrite_an_unrelated_directory(corpus_file: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["embeddings", "adapt", "--corpus", str(corpus_file), "-o", str(tmp_path)])
    assert result.exit_code != 0
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_fitted_biases_start_closer_to_the_corpus_than_random_ones(corpus_problem: tuple) -> None:
    cooc, base, has_base = corpus_problem
    fitted = train_mittens(cooc, base, has_base, MittensConfig(epochs=1), progress=False)
    random_start = train_mittens(cooc, base, has_base, MittensConfig(epochs=1, fit_biases=False), progress=False)
    assert fitted.history[0]["glove_loss"] < 0.5 * random_start.history[0]["glove_loss"]
    assert fitted.history[0]["distance_to_base"] == pytest.approx(random_start.history[0]["distance_to_base"])
