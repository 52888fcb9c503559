"""How contextual is a layer? The token-level measures of Ethayarajh (2019), corrected for anisotropy.

"How Contextual are Contextualized Word Representations?" (EMNLP 2019) asks of each layer how much one
word's vectors differ between the sentences it occurs in. For a word ``w`` occurring in ``n`` different
probe sentences (its *contexts*), with ``f(s, i)`` the layer's vector of the word at position ``i`` of
sentence ``s``:

- **self-similarity**: the mean cosine between ``w``'s vectors in its different contexts; 1 for a static
  representation (one vector per word type, whatever the context);
- **intra-sentence similarity**: the mean cosine between each word's vector and the mean vector of its
  sentence, averaged over sentences: how far context makes a sentence's words alike;
- **maximum explainable variance** (MEV): the share of the variance of ``w``'s occurrence matrix
  ``[n, width]`` (uncentred, as in the paper) on its first principal component, ``σ1² / Σ σi²``; 1 when a
  single vector could stand for every occurrence.

Vectors of any layer share a common direction (anisotropy), which makes any two of them similar, so each
measure is also computed on random words and subtracted: the mean cosine between the vectors of two
uniformly sampled word occurrences from different sentences (the baseline of self- and intra-sentence
similarity) and the MEV of ``n`` occurrences sampled from ``n`` different sentences (the MEV baseline,
matched to each word's ``n``, since the first component of a few random vectors already explains much).

Words are counted as the model reads them: a word split into subword tokens is the mean of its tokens;
special tokens ([CLS], [SEP]) and words the model does not know are left out. A word's contexts are the
distinct sentences it occurs in (its first occurrence in each), and only words with at least
``min_contexts`` of them are measured (the paper: 5).

Per-token outputs come through the family contract: `TaskModel.token_outputs` (TOKEN_OUTPUTS), or for a
model without it, its input word vectors (WORD_EMBEDDINGS: one vocabulary entry read is one word).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gluebench.errors import GluebenchError
from gluebench.models import Capability, TaskModel
from gluebench.models.base import TokenOutputs

WORD_VECTORS = "word_vectors"  # the layer of input word vectors, in every family
RANDOM_PAIRS = 20_000  # random occurrence pairs for the cosine baseline (its standard error is ~0.002)
MEV_DRAWS = 10  # random occurrence sets per context count for the MEV baseline


def readings(model: TaskModel, texts: Sequence[str]) -> list[TokenOutputs]:
    """Each text token by token at every layer the model offers (see the module docstring)."""
    if Capability.TOKEN_OUTPUTS in model.capabilities:
        return model.token_outputs(texts)
    if Capability.WORD_EMBEDDINGS not in model.capabilities:
        raise GluebenchError(f"{type(model).__name__} offers neither per-token layer outputs nor word embeddings")
    weight = model.word_embedding().detach().float().cpu().numpy()
    row = {word: i for i, word in enumerate(model.word_vocabulary())}
    outputs = []
    for text in texts:
        words = model.read_words(text)
        vectors = np.stack([weight[row[w]] if w is not None else np.zeros(weight.shape[1], np.float32)
                            for w in words]) if words else np.zeros((0, weight.shape[1]), np.float32)
        outputs.append(TokenOutputs(list(words), np.arange(len(words)), {WORD_VECTORS: vectors}))
    return outputs


@dataclass
class Occurrences:
    """One layer's word vectors over the probe: a row per word occurrence, ordered by sentence."""

    vectors: np.ndarray  # [N, width] float64
    word: np.ndarray  # [N] index into ``words``
    sentence: np.ndarray  # [N] index of the probe sentence
    words: list[str]


def word_occurrences(outputs: Sequence[TokenOutputs]) -> dict[str, Occurrences]:
    """Per layer, every known word's vector in every sentence: the mean of its tokens (zero vectors left out)."""
    vocabulary: dict[str, int] = {}
    word_ids: list[int] = []
    sentences: list[int] = []
    pieces: dict[str, list[np.ndarray]] = {}
    for number, output in enumerate(outputs):
        tokens = np.asarray(output.word_of_token)
        order = np.argsort(tokens, kind="stable")
        order = order[tokens[order] >= 0]  # the word tokens, grouped by word
        starts = np.flatnonzero(np.r_[True, np.diff(tokens[order]) != 0]) if len(order) else order
        present = tokens[order][starts]  # the word of each group of tokens
        rows = [row for row, k in enumerate(present) if output.words[k] is not None]
        if not rows:
            continue
        counts = np.diff(np.r_[starts, len(order)])[:, None]
        for layer, values in output.layers.items():
            means = np.add.reduceat(values[order].astype(np.float64), starts, axis=0) / counts
            pieces.setdefault(layer, []).append(means[rows])
        word_ids += [vocabulary.setdefault(str(output.words[present[row]]), len(vocabulary)) for row in rows]
        sentences += [number] * len(rows)
    if not pieces:
        raise GluebenchError("no probe sentence has a word the model knows")
    words, word, sentence = list(vocabulary), np.asarray(word_ids), np.asarray(sentences)
    result = {}
    for layer, parts in pieces.items():
        vectors = np.concatenate(parts)
        nonzero = np.linalg.norm(vectors, axis=1) > 0
        result[layer] = Occurrences(vectors[nonzero], word[nonzero], sentence[nonzero], words)
    return result


def contexts(occurrences: Occurrences) -> dict[str, np.ndarray]:
    """Each word's first occurrence (row) in each sentence it occurs in."""
    pairs = np.stack([occurrences.word, occurrences.sentence], axis=1)
    _, first = np.unique(pairs, axis=0, return_index=True)
    first = np.sort(first)
    by_word: dict[str, list[int]] = {}
    for row in first:
        by_word.setdefault(occurrences.words[occurrences.word[row]], []).append(int(row))
    return {w: np.asarray(rows) for w, rows in by_word.items()}


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def self_similarity(vectors: np.ndarray) -> float:
    """Mean cosine over the pairs of distinct rows of ``[n, width]`` (n >= 2)."""
    n = len(vectors)
    total = _unit(vectors).sum(axis=0)
    return float((total @ total - n) / (n * n - n))


def max_explainable_variance(vectors: np.ndarray) -> float:
    """``σ1² / Σ σi²`` of the (uncentred) matrix ``[n, width]``: the largest eigenvalue of its smaller Gram
    matrix over the squared Frobenius norm (the sum of all ``σi²``), cheaper than a full SVD."""
    gram = vectors @ vectors.T if len(vectors) <= vectors.shape[1] else vectors.T @ vectors
    return float(np.linalg.eigvalsh(gram)[-1] / np.trace(gram))


def intra_sentence_similarity(vectors: np.ndarray) -> float:
    """Mean cosine between each row of one sentence's ``[n, width]`` and the sentence's mean vector."""
    return float(np.mean(_unit(vectors) @ _unit(vectors.mean(axis=0))))


def random_pair_cosine(occurrences: Occurrences, rng: np.random.Generator, pairs: int = RANDOM_PAIRS) -> float:
    """The anisotropy baseline: mean cosine of uniformly drawn occurrence pairs from different sentences."""
    count = len(occurrences.vectors)
    first, second = rng.integers(count, size=(2, 4 * pairs))
    apart = occurrences.sentence[first] != occurrences.sentence[second]
    first, second = first[apart][:pairs], second[apart][:pairs]
    if not len(first):
        return float("nan")
    vectors = occurrences.vectors
    return float(np.mean(np.einsum("ij,ij->i", _unit(vectors[first]), _unit(vectors[second]))))


def random_mev(occurrences: Occurrences, size: int, rng: np.random.Generator, draws: int = MEV_DRAWS) -> float:
    """The MEV baseline for ``size`` contexts: MEV of ``size`` occurrences from ``size`` random sentences."""
    starts = np.flatnonzero(np.r_[True, np.diff(occurrences.sentence) != 0])
    counts = np.diff(np.r_[starts, len(occurrences.sentence)])
    values = []
    for _ in range(draws):
        chosen = rng.choice(len(starts), size=size, replace=False)
        rows = starts[chosen] + (rng.random(size) * counts[chosen]).astype(int)
        values.append(max_explainable_variance(occurrences.vectors[rows]))
    return float(np.mean(values))


@dataclass
class LayerMeasures:
    """One layer's measures: per word (those with enough contexts) and over the whole probe."""

    self_similarity: dict[str, float]
    max_explainable_variance: dict[str, float]
    mev_baseline: dict[str, float]  # the size-matched random baseline of each word
    contexts: dict[str, int]
    intra_sentence: float  # mean over sentences of two or more words
    random_cosine: float  # the anisotropy baseline of self- and intra-sentence similarity


def measure(outputs: Sequence[TokenOutputs], min_contexts: int = 5, seed: int = 0) -> dict[str, LayerMeasures]:
    """Every layer's measures over the probe ``outputs`` (one `TokenOutputs` per probe sentence)."""
    result = {}
    for layer, occurrences in word_occurrences(outputs).items():
        rng = np.random.default_rng(seed)  # the same random draws at every layer
        rows = {w: r for w, r in contexts(occurrences).items() if len(r) >= min_contexts}
        baselines = {n: random_mev(occurrences, n, rng) for n in sorted({len(r) for r in rows.values()})}
        sentences = np.split(occurrences.vectors, np.flatnonzero(np.diff(occurrences.sentence)) + 1)
        intra = [intra_sentence_similarity(v) for v in sentences if len(v) >= 2]
        result[layer] = LayerMeasures(
            self_similarity={w: self_similarity(occurrences.vectors[r]) for w, r in rows.items()},
            max_explainable_variance={w: max_explainable_variance(occurrences.vectors[r]) for w, r in rows.items()},
            mev_baseline={w: baselines[len(r)] for w, r in rows.items()},
            contexts={w: len(r) for w, r in rows.items()},
            intra_sentence=float(np.mean(intra)) if intra else float("nan"),
            random_cosine=random_pair_cosine(occurrences, rng),
        )
    return result


def measured_words(measures: dict[str, LayerMeasures]) -> set[str]:
    """The words with enough contexts (the same at every layer: contexts do not depend on the layer)."""
    return set.intersection(*(set(m.self_similarity) for m in measures.values())) if measures else set()


def summarize(measures: dict[str, LayerMeasures], words: Collection[str]) -> dict[str, dict[str, Any]]:
    """Per layer, means over ``words``: raw, baseline and anisotropy-corrected (raw - baseline) of each measure."""
    chosen = sorted(words)
    out: dict[str, dict[str, Any]] = {}
    for layer, m in measures.items():
        self_sim = float(np.mean([m.self_similarity[w] for w in chosen]))
        mev = float(np.mean([m.max_explainable_variance[w] for w in chosen]))
        mev_base = float(np.mean([m.mev_baseline[w] for w in chosen]))
        corrected = {w: m.self_similarity[w] - m.random_cosine for w in chosen}
        ranked = sorted(chosen, key=lambda w: corrected[w])
        out[layer] = {
            "self_similarity": {"raw": self_sim, "baseline": m.random_cosine, "corrected": self_sim - m.random_cosine},
            "intra_sentence": {"raw": m.intra_sentence, "baseline": m.random_cosine,
                               "corrected": m.intra_sentence - m.random_cosine},
            "max_explainable_variance": {"raw": mev, "baseline": mev_base, "corrected": mev - mev_base},
            "words": len(chosen),
            "most_contextual": ranked[:5],
            "least_contextual": ranked[-5:][::-1],
        }
    return out
