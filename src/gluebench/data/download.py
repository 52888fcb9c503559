"""Download the official GLUE files, verify them, and install them without ever leaving a half-done file.

What to fetch is each task's ``downloads`` in the registry, those of the standard ``download_glue_data.py``:
one zip per task on dl.fbaipublicfiles.com (``QQP-clean.zip``, ``QNLIv2.zip``), ``AX.tsv`` as
``diagnostic/diagnostic.tsv``, and MRPC built from Microsoft's ``msr_paraphrase_{train,test}.txt`` with the
official dev ids by the official split rule (the task's ``build`` recipe, one of `BUILDS`).

Every transfer streams into ``<target>/.gluebench-downloads/NAME.part``; a broken transfer is retried with
backoff and resumed with an HTTP ``Range`` request, also in a later run. Download sizes and digests are the
ones the Hugging Face ``glue`` loader pins; an archive's own digest is checked only when it comes from the
official host (a mirror may repack it), plain files always. ``$GLUEBENCH_OFFICIAL_URL`` moves the official
host elsewhere with every pin still on (a local copy of it, or a test's loopback server).
Archives are extracted into a staging directory inside ``target`` after every member was checked (no
absolute paths, no ``..``, no links, no absurd sizes); each task file is then verified against the digest
pinned in the task registry and only then moved into place with an atomic rename.

``source="hub"`` fetches the Hub's parquet copy (`HUB_REPO`) with ``huggingface_hub`` instead, which resumes
broken transfers itself; every file is then checked against the digest the Hub lists for it. It is also the
fallback for a task whose official host fails (not for a ``--mirror``, nor for a digest mismatch).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.client
import logging
import os
import shutil
import stat
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled
from huggingface_hub.hf_api import RepoSibling
from huggingface_hub.utils import httpx, silent_tqdm
from tqdm import tqdm

from gluebench.data.check import checksum_status, git_blob_id, sha256_file
from gluebench.data.locate import default_glue_cache, hf_hub_cache
from gluebench.errors import ChecksumError, DataFormatError, GluebenchError
from gluebench.tasks import GLUE_HOST, HUB_REPO, Remote, TaskSpec

log = logging.getLogger(__name__)

OFFICIAL_URL_ENV = "GLUEBENCH_OFFICIAL_URL"
SOURCES = ("official", "hub")  # the official files; the Hugging Face Hub's parquet copy (`HUB_REPO`)
DOWNLOADS = ".gluebench-downloads"  # partial and finished transfers, inside the target directory
STAGING_PREFIX = ".gluebench-staging-"
_CHUNK = 1 << 20


class DownloadError(GluebenchError):
    """A transfer that failed for good (HTTP error, or still broken after every retry)."""


MRPC_TEST_HEADER = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n"


def _mrpc_rows(path: Path) -> tuple[str, list[list[str]]]:
    """Header line and rows of a Microsoft MRPC file, read as the official script reads it (universal newlines)."""
    with path.open(encoding="utf-8") as handle:
        header = handle.readline()
        rows = []
        for number, line in enumerate(handle, start=2):
            fields = line.strip().split("\t")
            if len(fields) != 5:
                raise DataFormatError(f"expected 5 tab-separated fields, found {len(fields)}", path=path, line=number)
            rows.append(fields)
    return header, rows


def build_mrpc(mrpc_dir: Path, out_dir: Path | None = None) -> None:
    """Write MRPC train/dev/test.tsv from ``msr_paraphrase_{train,test}.txt`` and ``dev_ids.tsv``.

    The official rule (``download_glue_data.py``): train rows whose id pair is in dev_ids go to dev, the rest to
    train, both under the source header (BOM kept); test rows are numbered from 0 under a new header.
    """
    out_dir = mrpc_dir if out_dir is None else out_dir
    try:
        with (mrpc_dir / "dev_ids.tsv").open(encoding="utf-8") as handle:
            dev_ids = {tuple(line.strip().split("\t")) for line in handle if line.strip()}
        header, train_rows = _mrpc_rows(mrpc_dir / "msr_paraphrase_train.txt")
        _, test_rows = _mrpc_rows(mrpc_dir / "msr_paraphrase_test.txt")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"MSR paraphrase source is not valid UTF-8 ({exc.reason})", path=mrpc_dir) from exc
    train = [header] + ["\t".join(r) + "\n" for r in train_rows if (r[1], r[2]) not in dev_ids]
    dev = [header] + ["\t".join(r) + "\n" for r in train_rows if (r[1], r[2]) in dev_ids]
    test = [MRPC_TEST_HEADER] + [f"{i}\t{r[1]}\t{r[2]}\t{r[3]}\t{r[4]}\n" for i, r in enumerate(test_rows)]
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train.tsv", train), ("dev.tsv", dev), ("test.tsv", test)):
        (out_dir / name).write_text("".join(lines), encoding="utf-8", newline="\n")


BUILDS: dict[str, Callable[[Path], None]] = {
    # a task's ``build`` names its recipe; each is called with the task's directory in the staging area
    "msr-paraphrase-split": build_mrpc,
}


# ---------------------------------------------------------------------------------------------- transfers


class _Transient(Exception):
    """A transfer problem worth another try (connection dropped, short body, 5xx)."""


def _with_host(url: str, base_url: str | None) -> str:
    """The official URL, or the same path and query on ``base_url`` (a mirror, or a test's loopback server)."""
    if base_url is None:
        return url
    base = urlsplit(base_url)
    parts = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + parts.path, parts.query, ""))


def _transfer(url: str, part: Path, *, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part`` (resuming from its size); raise `_Transient` if it breaks off."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "gluebench", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            part.unlink()  # the partial file is longer than the remote one: start over
            raise _Transient("server refused to resume; restarting") from exc
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Transient(str(getattr(exc, "reason", exc))) from exc
    with response:
        if offset and response.status == 206:
            start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
            if start != str(offset):
                part.unlink()
                raise _Transient(f"server resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        else:
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length and length.isdigit() else None
        received = offset
        with part.open(mode) as out, tqdm(total=expected, initial=offset, unit="B", unit_scale=True, leave=False,
                                           desc=part.name.removesuffix(".part"), disable=not progress) as bar:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Transient(f"connection broke after {received:,} bytes ({exc})") from exc
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise GluebenchError(f"cannot write ({exc.strerror})", path=part) from exc
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received < expected:
        raise _Transient(f"connection closed after {received:,} of {expected:,} bytes")


def _transfer_with_retries(url: str, part: Path, *, retries: int, backoff: float, timeout: float,
                           progress: bool) -> None:
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, timeout=timeout, progress=progress)
            return
        except _Transient as exc:
            if attempt == retries:
                raise DownloadError(f"{url}: transfer failed {retries + 1} times, last: {exc}") from exc
            wait = backoff * 2**attempt
            log.warning("%s: %s; retrying in %.1fs", url, exc, wait)
            time.sleep(wait)


def _mismatch(path: Path, size: int | None, sha256: str | None) -> str | None:
    got = path.stat().st_size
    if size is not None and got != size:
        return f"{got:,} bytes, expected {size:,}"
    if sha256 is not None and (actual := sha256_file(path)) != sha256:
        return f"sha256 {actual[:16]}… is not the pinned {sha256[:16]}…"
    return None


def fetch(
    url: str,
    dest: Path,
    *,
    size: int | None = None,
    sha256: str | None = None,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = False,
) -> Path:
    """Download ``url`` to ``dest`` atomically: stream to ``dest.part``, resume and retry, verify, rename.

    A digest mismatch deletes the partial file (after one fresh attempt when it came from resuming an older
    partial) and raises `ChecksumError`; a transfer still broken after ``retries`` retries raises `DownloadError`
    and keeps the partial file, so the next call resumes it.
    """
    part = dest.with_name(dest.name + ".part")
    if dest.exists() and sha256 and sha256_file(dest) == sha256:
        return dest
    transfer = functools.partial(_transfer_with_retries, url, part, retries=retries, backoff=backoff,
                                 timeout=timeout, progress=progress)
    resumed = part.exists() and part.stat().st_size > 0
    transfer()
    problem = _mismatch(part, size, sha256)
    if problem and resumed:
        log.warning("%s: %s after resuming an old partial file; downloading again", url, problem)
        part.unlink()
        transfer()
        problem = _mismatch(part, size, sha256)
    if problem:
        part.unlink()
        raise ChecksumError(f"download of {url} refused: {problem}", path=dest)
    os.replace(part, dest)
    return dest


# -------------------------------------------------------------------------------------------- extraction

MAX_MEMBER_BYTES = 4 << 30  # the largest official member (MNLI's original jsonl) is well under this
MAX_TOTAL_BYTES = 16 << 30
MAX_RATIO = 200  # text compresses about 3-10x; thousands to one is a zip bomb
MAX_MEMBERS = 10_000


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or (parts and len(parts[0]) >= 2 and parts[0][1] == ":"):
        return "absolute path"
    if "\\" in name or "\0" in name:
        return "backslash or NUL in the name"
    if ".." in parts:
        return "path escapes the target directory"
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver stored no Unix file type
    if kind == stat.S_IFLNK:
        return "symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "not a regular file"
    return None


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    top_dir: str,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    max_ratio: float = MAX_RATIO,
) -> list[Path]:
    """Extract the members under ``top_dir/`` of a zip into ``dest``, after checking every member.

    The whole archive is refused (`DataFormatError`, nothing written) if any member has an absolute path, a
    ``..`` component, is a link or device, or declares an absurd size or compression ratio; members outside
    ``top_dir`` (e.g. ``__MACOSX``) are skipped. Sizes are enforced while writing too, not just trusted.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise DataFormatError(f"archive refused: {len(infos):,} members", path=archive)
            total = 0
            for info in infos:
                reason = _unsafe_reason(info)
                if reason is None and info.file_size > max_member_bytes:
                    reason = f"declares {info.file_size:,} bytes (limit {max_member_bytes:,})"
                ratio = info.file_size / max(info.compress_size, 1)
                if reason is None and info.file_size > _CHUNK and ratio > max_ratio:
                    reason = f"compression ratio above {max_ratio:g} (zip bomb?)"
                total += info.file_size
                if reason is None and total > max_total_bytes:
                    reason = f"archive would unpack to more than {max_total_bytes:,} bytes"
                if reason:
                    raise DataFormatError(f"archive refused: member {info.filename!r}: {reason}", path=archive)
            root = dest.resolve()
            written = []
            for info in infos:
                parts = PurePosixPath(info.filename).parts
                if info.is_dir() or not parts or parts[0] != top_dir:
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.parent.resolve().is_relative_to(root):
                    raise DataFormatError(f"archive refused: member {info.filename!r} escapes", path=archive)
                with zf.open(info) as source, target.open("xb") as out:
                    copied = 0
                    while chunk := source.read(_CHUNK):
                        copied += len(chunk)
                        if copied > info.file_size:
                            raise DataFormatError(
                                f"archive refused: member {info.filename!r} is larger than it declares", path=archive
                            )
                        out.write(chunk)
                written.append(target)
            return written
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataFormatError(f"not a valid zip archive ({exc})", path=archive) from exc


# ------------------------------------------------------------------------------------------- installation


def _task_dir(task: TaskSpec) -> str:
    return PurePosixPath(task.splits[0].path).parts[0]


def _verified(task: TaskSpec, root: Path) -> tuple[list[Path], list[str]]:
    """Paths of the task's files under ``root`` and problems: files missing or not matching their pinned digest."""
    paths, problems = [], []
    for split in task.splits:
        path = root / split.path
        if not path.is_file():
            problems.append(f"{split.path} is missing")
            continue
        status, reason = checksum_status(path, split)
        if status == "mismatch":
            problems.append(f"{split.path}: {reason}")
        paths.append(path)
    return paths, problems


def _install(staging: Path, target: Path) -> None:
    """Move every staged file into ``target`` with an atomic rename each, refusing destinations behind links."""
    root = target.resolve()
    for source in sorted(p for p in staging.rglob("*") if p.is_file()):
        dest = target / source.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.parent.resolve().is_relative_to(root):
            raise GluebenchError(f"refusing to write through a link that leaves {target}", path=dest)
        os.replace(source, dest)


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``target``'s download directory: two downloads into one place take turns."""
    downloads = target / DOWNLOADS
    downloads.mkdir(parents=True, exist_ok=True)
    with (downloads / "lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            for stale in target.glob(f"{STAGING_PREFIX}*"):  # left by a killed download; we hold the lock
                shutil.rmtree(stale, ignore_errors=True)
            yield downloads
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _source(remote: Remote, base_url: str | None) -> tuple[str, bool]:
    """Where to fetch ``remote`` from, and whether its pinned size and digest apply.

    A mirror may repack archives, so their own digest is only pinned for the official host (wherever
    ``$GLUEBENCH_OFFICIAL_URL`` puts it); plain files are the official bytes wherever they come from.
    """
    if base_url is not None:
        return _with_host(remote.url, base_url), remote.dest is not None
    official = os.environ.get(OFFICIAL_URL_ENV)
    if official and remote.url.startswith(GLUE_HOST + "/"):
        return _with_host(remote.url, official), True
    return remote.url, True


def _download_task(task: TaskSpec, target: Path, downloads: Path, base_url: str | None, progress: bool,
                   fetch_options: dict[str, Any]) -> list[Path]:
    if not task.downloads:
        raise DownloadError(f"{task.name}: the task registry names no download for it; put its files in {target}")
    if task.build is not None and task.build not in BUILDS:
        raise DownloadError(f"{task.name}: unknown build recipe {task.build!r} (known: {', '.join(BUILDS)})")
    fetched: list[Path] = []
    with tempfile.TemporaryDirectory(dir=target, prefix=STAGING_PREFIX) as tmp, _removing(fetched):
        staging = Path(tmp)
        for remote in task.downloads:
            url, pinned = _source(remote, base_url)
            path = fetch(url, downloads / remote.name, size=remote.size if pinned else None,
                         sha256=remote.sha256 if pinned else None, progress=progress, **fetch_options)
            fetched.append(path)
            if remote.dest is None:
                safe_extract(path, staging, top_dir=_task_dir(task))
            else:
                (staging / remote.dest).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, staging / remote.dest)
        if task.build is not None:
            BUILDS[task.build](staging / _task_dir(task))
        _, problems = _verified(task, staging)
        if problems:
            raise ChecksumError(f"{task.name} download refused, nothing installed: {'; '.join(problems)}")
        _install(staging, target)
    return [target / split.path for split in task.splits]


# ------------------------------------------------------------------------------------ the Hub's parquet copy


def _hub_files(tasks: Sequence[TaskSpec]) -> list[str]:
    """The Hub files of ``tasks``' splits, in the repository's layout; a task without a Hub copy is refused."""
    if missing := [task.name for task in tasks if task.hub is None]:
        raise DownloadError(f"{', '.join(missing)}: not in {HUB_REPO} (the registry names no Hub copy); "
                            f"use --source official")
    return [path for task in tasks for split in task.splits
            if task.hub is not None and (path := task.hub.path(split.name)) is not None]


def _hub_failure(exc: Exception) -> DownloadError:
    """One line for a failed Hub call; no network (or ``HF_HUB_OFFLINE``) is said as such."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    where = f"{constants.ENDPOINT}/datasets/{HUB_REPO}"
    if isinstance(exc, OfflineModeIsEnabled | LocalEntryNotFoundError | httpx.TransportError):
        return DownloadError(f"{where}: the Hugging Face Hub cannot be reached (offline? {reason})")
    return DownloadError(f"{where}: {reason}")


def _verify_hub_file(root: Path, name: str, remote: RepoSibling) -> None:
    """Compare a downloaded file with the Hub's digest of it (sha256 for LFS files, else the git blob id);
    a mismatch deletes the file (and the cache blob behind a link), so the next download fetches it again."""
    path = root / name
    expected, actual = ((remote.lfs.sha256, sha256_file(path)) if remote.lfs is not None
                        else (remote.blob_id, git_blob_id(path)))
    if actual != expected:
        blob = path.resolve()
        path.unlink()
        blob.unlink(missing_ok=True)
        raise ChecksumError(f"download from {HUB_REPO} refused and deleted: digest {actual and actual[:16]}… is not "
                            f"the Hub's {expected and expected[:16]}…", path=path)


def download_hub(tasks: Sequence[TaskSpec], target: Path | None = None, *, progress: bool = True) -> list[Path]:
    """Fetch ``tasks``' files of the Hub's parquet copy into ``target`` (None: the Hugging Face cache, where
    `gluebench.data.locate.find_data_dir` looks) and return their paths, each verified against the Hub's digest.

    The Hub is asked first (its commit and digests), so no network fails before anything is written, in one
    line. Files already there are not fetched again; a broken transfer resumes in the next call.
    """
    files = _hub_files(tasks)
    if progress:
        print(f"downloading {', '.join(t.name for t in tasks)} from {HUB_REPO} …", file=sys.stderr)
    try:
        info = HfApi().dataset_info(HUB_REPO, files_metadata=True)
        listed = {sibling.rfilename: sibling for sibling in info.siblings or []}
        if absent := [path for path in files if path not in listed]:
            raise DownloadError(f"{HUB_REPO} has no {', '.join(absent)}")
        root = Path(snapshot_download(
            HUB_REPO, repo_type="dataset", allow_patterns=files, cache_dir=hf_hub_cache(),
            local_dir=target, tqdm_class=None if progress else silent_tqdm))
    except (OSError, httpx.HTTPError) as exc:
        raise _hub_failure(exc) from exc
    if target is None and root.name != info.sha:  # the cache names a snapshot by its commit
        raise DownloadError(f"{HUB_REPO} changed during the download (commit {info.sha} became {root.name}); "
                            "run it again")
    for path in files:
        _verify_hub_file(root, path, listed[path])
    return [root / path for path in files]


def _hub_fallback(task: TaskSpec, target: Path, failure: DownloadError, progress: bool) -> list[Path]:
    """The task's Hub copy, into ``target``, after its official host failed; both failures in one line if not."""
    log.info("%s; trying %s on the Hugging Face Hub", failure, HUB_REPO)
    try:
        return download_hub([task], target, progress=progress)
    except GluebenchError as exc:
        raise DownloadError(f"{failure}; the fallback, {HUB_REPO} on the Hugging Face Hub, failed too: {exc}") from exc


@contextlib.contextmanager
def _removing(paths: list[Path]) -> Iterator[None]:
    """Delete the finished downloads of a task once it is installed or refused; partial ones stay to resume."""
    try:
        yield
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def download_glue(
    tasks: Sequence[TaskSpec],
    target: Path | None,
    *,
    source: str = "official",
    base_url: str | None = None,
    progress: bool = True,
    retries: int = 4,
    backoff: float = 1.0,
    timeout: float = 60.0,
) -> list[Path]:
    """Download ``tasks`` into ``target`` and return the paths of their files.

    ``source="official"``: the official files (official layout; ``target`` None: the gluebench cache). Tasks
    whose files are already there and match their pinned digests are not downloaded again. Each task is
    installed whole or not at all; a failure raises a `GluebenchError` naming the file or URL. ``base_url``
    replaces the official host (mirror or test server); ``retries``, ``backoff`` and ``timeout`` go to `fetch`.
    A task whose official host fails (no ``base_url``) comes from the Hub's copy instead, into ``target``.
    ``source="hub"``: the Hub's parquet copy (`download_hub`; ``target`` None: the Hugging Face cache).
    """
    if source == "hf":
        raise GluebenchError("--source hf is not supported: the Hugging Face Hub's copy of GLUE is --source hub")
    if source not in SOURCES:
        raise GluebenchError(f"unknown download source {source!r} (choose from: {', '.join(SOURCES)})")
    if source == "hub":
        if base_url is not None:
            raise GluebenchError("--mirror serves the official files only; for the Hub set HF_ENDPOINT")
        return download_hub(tasks, None if target is None else Path(target).expanduser(), progress=progress)
    target = default_glue_cache() if target is None else Path(target).expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
        installed: list[Path] = []
        with _locked(target) as downloads:
            for task in tasks:
                paths, problems = _verified(task, target)
                if not problems:
                    log.info("%s: already in %s", task.name, target)
                    installed += paths
                    continue
                log.info("%s: downloading into %s", task.name, target)
                if progress:
                    print(f"downloading {task.name} …", file=sys.stderr)
                options = {"retries": retries, "backoff": backoff, "timeout": timeout}
                try:
                    installed += _download_task(task, target, downloads, base_url, progress, options)
                except DownloadError as exc:
                    if base_url is not None or task.hub is None:
                        raise
                    installed += _hub_fallback(task, target, exc, progress)
        return installed
    except OSError as exc:
        where = exc.filename or target
        raise GluebenchError(f"cannot write the GLUE files ({exc.strerror})", path=where) from exc


__all__ = ["BUILDS", "SOURCES", "DownloadError", "build_mrpc", "download_glue", "download_hub", "fetch", "safe_extract"]

