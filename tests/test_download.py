"""`download_glue` against a real HTTP server on 127.0.0.1 serving archives built from the real files at test time."""

from __future__ import annotations

import io
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gluebench.data.check import check_data
from gluebench.data.download import (
    DOWNLOADS,
    MAX_MEMBER_BYTES,
    MAX_TOTAL_BYTES,
    OFFICIAL_URL_ENV,
    STAGING_PREFIX,
    DownloadError,
    build_mrpc,
    download_glue,
    fetch,
)
from gluebench.errors import ChecksumError, DataFormatError, GluebenchError
from gluebench.tasks import TASKS
from tests.conftest import CliRun

SERVED_TASKS = ("CoLA", "MRPC", "RTE", "WNLI", "AX")
FAST = {"retries": 2, "backoff": 0.01, "timeout": 10.0, "progress": False}


def make_zip(members: dict[str, bytes], *, links: dict[str, str] | None = None, level: int = 1) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, link_target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, link_target)
    return buffer.getvalue()


def declaring_zip(members: dict[str, bytes], declared: int, *, compressed: int | None = None) -> bytes:
    """A real zip whose central directory declares ``declared`` bytes (and ``compressed``) for every member."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for info in zf.infolist():  # written into the central directory at close
            info.file_size = declared
            info.compress_size = info.compress_size if compressed is None else compressed
    return buffer.getvalue()


def sized_zip(members: dict[str, bytes], size: int) -> bytes:
    """``members`` zipped into exactly ``size`` bytes: a stored padding member outside the task directory (skipped
    on extraction), then the archive comment for the last bytes."""
    def build(pad: int, comment: bytes) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
            zf.writestr("__MACOSX/padding", b"\0" * pad, compress_type=zipfile.ZIP_STORED)
            zf.comment = comment
        return buffer.getvalue()

    pad = size - len(build(0, b"")) - 1000
    data = build(pad, b"#" * (size - len(build(pad, b""))))
    assert len(data) == size
    return data


def task_zip(glue_dir: Path, task: str, replace: dict[str, bytes] | None = None) -> bytes:
    """The task's official files zipped as the official archive lays them out (plus macOS junk to be skipped)."""
    members = {split.path: (glue_dir / split.path).read_bytes() for split in TASKS[task].splits}
    members |= replace or {}
    members[f"__MACOSX/{task}/._train.tsv"] = b"junk"
    return make_zip(members)


@pytest.fixture(scope="session")
def official_files(glue_dir: Path) -> dict[str, bytes]:
    """URL path → bytes, for every file the official sources of the served tasks consist of."""
    files = {f"/glue/data/{task}.zip": task_zip(glue_dir, task) for task in ("CoLA", "RTE", "WNLI")}
    mrpc = glue_dir / "MRPC"
    files["/senteval/senteval_data/msr_paraphrase_train.txt"] = (mrpc / "msr_paraphrase_train.txt").read_bytes()
    files["/senteval/senteval_data/msr_paraphrase_test.txt"] = (mrpc / "msr_paraphrase_test.txt").read_bytes()
    files["/glue/data/mrpc_dev_ids.tsv"] = (mrpc / "dev_ids.tsv").read_bytes()
    files["/glue/data/AX.tsv"] = (glue_dir / "diagnostic/diagnostic.tsv").read_bytes()
    files["/s/ju7d95ifb072q9f/diagnostic-full.tsv"] = (glue_dir / "diagnostic/diagnostic-full.tsv").read_bytes()
    return files


@dataclass
class Server:
    """A loopback file server with Range support and scripted faults per path."""

    url: str
    files: dict[str, bytes]
    faults: dict[str, list[str]] = field(default_factory=dict)  # path -> faults for the next requests, in order
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)

    def ranges(self, path: str) -> list[str | None]:
        return [r for p, r in self.requests if p == path]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            server.requests.append((path, self.headers.get("Range")))
            fault = server.faults[path].pop(0) if server.faults.get(path) else None
            if path not in server.files or fault == "500":
                self.send_error(404 if path not in server.files else 500)
                return
            body, start = server.files[path], 0
            range_header = self.headers.get("Range")
            if range_header and fault != "ignore_range":
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            rest = body[start:]
            # "truncate": promise the whole body, send a third of it, hang up
            self.wfile.write(rest[: len(rest) // 3] if fault == "truncate" else rest)

    return Handler


@pytest.fixture
def server(official_files: dict[str, bytes]) -> Iterator[Server]:
    state = Server(url="", files=dict(official_files))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def visible_files(root: Path) -> list[str]:
    """Files under root outside the download bookkeeping directory."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and DOWNLOADS not in p.relative_to(root).parts)


def assert_clean(target: Path) -> None:
    assert not list(target.glob(f"{STAGING_PREFIX}*")), "staging directory left behind"
    leftovers = [p.name for p in (target / DOWNLOADS).iterdir() if not p.name.endswith(".part")]
    assert leftovers in ([], ["lock"])


def test_download_installs_byte_identical_official_files(tmp_path: Path, glue_dir: Path, server: Server) -> None:
    target = tmp_path / "glue"
    tasks = [TASKS[name] for name in SERVED_TASKS]
    paths = download_glue(tasks, target, base_url=server.url, **FAST)
    assert paths == [target / split.path for task in tasks for split in task.splits]
    for path in paths:
        assert path.read_bytes() == (glue_dir / path.relative_to(target)).read_bytes(), path
    assert (target / "MRPC/msr_paraphrase_train.txt").is_file()  # sources kept, as the official script does
    assert not (target / "__MACOSX").exists()
    assert_clean(target)
    assert not list((target / DOWNLOADS).glob("*.part"))
    assert check_data(target, ",".join(SERVED_TASKS)).ok

    served = len(server.requests)
    assert download_glue(tasks, target, base_url=server.url, **FAST) == paths
    assert len(server.requests) == served, "intact tasks must not be downloaded again"


def test_mrpc_split_rule_reproduces_the_official_files(tmp_path: Path, glue_dir: Path) -> None:
    build_mrpc(glue_dir / "MRPC", tmp_path)
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        assert (tmp_path / name).read_bytes() == (glue_dir / "MRPC" / name).read_bytes(), name


def test_tampered_file_in_archive_is_refused(tmp_path: Path, glue_dir: Path, server: Server) -> None:
    dev = (glue_dir / "RTE/dev.tsv").read_bytes()
    server.files["/glue/data/RTE.zip"] = task_zip(
        glue_dir, "RTE", {"RTE/dev.tsv": dev.replace(b"not_entailment", b"entailment", 1)}
    )
    target = tmp_path / "glue"
    with pytest.raises(ChecksumError, match=r"RTE/dev\.tsv: sha256"):
        download_glue([TASKS["RTE"]], target, base_url=server.url, **FAST)
    assert visible_files(target) == []
    assert_clean(target)
    assert not list((target / DOWNLOADS).glob("RTE*")), "refused archive must be deleted"


def test_tampered_source_file_is_refused_even_from_a_mirror(tmp_path: Path, server: Server) -> None:
    path = "/senteval/senteval_data/msr_paraphrase_train.txt"
    server.files[path] = server.files[path].replace(b"Amrozi", b"Amrozo", 1)
    target = tmp_path / "glue"
    with pytest.raises(ChecksumError, match=r"msr_paraphrase_train\.txt"):
        download_glue([TASKS["MRPC"]], target, base_url=server.url, **FAST)
    assert visible_files(target) == []
    assert_clean(target)


def test_pinned_digest_mismatch_leaves_nothing(tmp_path: Path, server: Server) -> None:
    dest = tmp_path / "AX.tsv"
    with pytest.raises(ChecksumError, match="refused"):
        fetch(f"{server.url}/glue/data/AX.tsv", dest, sha256="0" * 64, retries=0)
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_file_is_discarded_after_a_mismatch(tmp_path: Path, glue_dir: Path, server: Server) -> None:
    """A partial left by another version of the file: resuming it fails the digest, one fresh download fixes it."""
    remote = TASKS["AX"].downloads[0]
    stale = b"an older, different AX.tsv"
    (tmp_path / "AX.tsv.part").write_bytes(stale)
    dest = fetch(f"{server.url}/glue/data/AX.tsv", tmp_path / "AX.tsv", size=remote.size, sha256=remote.sha256,
                 retries=0)
    assert dest.read_bytes() == (glue_dir / "diagnostic/diagnostic.tsv").read_bytes()
    assert server.ranges("/glue/data/AX.tsv") == [f"bytes={len(stale)}-", None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["AX.tsv"]


def test_hugging_face_source_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(GluebenchError, match="--source hf is not supported"):
        download_glue([TASKS["RTE"]], tmp_path / "glue", source="hf", progress=False)
    assert not (tmp_path / "glue").exists()


def test_truncated_transfer_is_resumed_with_range(tmp_path: Path, glue_dir: Path, server: Server) -> None:
    path = "/glue/data/CoLA.zip"
    server.faults[path] = ["truncate", "truncate"]
    target = tmp_path / "glue"
    download_glue([TASKS["CoLA"]], target, base_url=server.url, **FAST)
    ranges = server.ranges(path)
    assert len(ranges) == 3 and ranges[0] is None
    third = len(server.files[path]) // 3
    assert ranges[1] == f"bytes={third}-"  # resumed where the first transfer broke off
    assert (target / "CoLA/train.tsv").read_bytes() == (glue_dir / "CoLA/train.tsv").read_bytes()
    assert_clean(target)


def test_server_ignoring_range_restarts_cleanly(tmp_path: Path, glue_dir: Path, server: Server) -> None:
    path = "/glue/data/WNLI.zip"
    server.faults[path] = ["truncate", "ignore_range"]
    target = tmp_path / "glue"
    download_glue([TASKS["WNLI"]], target, base_url=server.url, **FAST)
    assert (target / "WNLI/dev.tsv").read_bytes() == (glue_dir / "WNLI/dev.tsv").read_bytes()


def test_broken_transfer_fails_cleanly_then_resumes_next_time(tmp_path: Path, glue_dir: Path, server: Server) -> None:
    path = "/glue/data/RTE.zip"
    server.faults[path] = ["truncate", "500", "truncate"]  # every one of the 3 attempts fails
    target = tmp_path / "glue"
    with pytest.raises(DownloadError, match=r"RTE\.zip: transfer failed 3 times"):
        download_glue([TASKS["RTE"]], target, base_url=server.url, **FAST)
    assert visible_files(target) == []
    assert_clean(target)
    partial = target / DOWNLOADS / "RTE.zip.part"
    kept = partial.stat().st_size
    assert 0 < kept < len(server.files[path])

    download_glue([TASKS["RTE"]], target, base_url=server.url, **FAST)
    assert server.ranges(path)[3:] == [f"bytes={kept}-"]
    assert (target / "RTE/train.tsv").read_bytes() == (glue_dir / "RTE/train.tsv").read_bytes()
    assert not partial.exists()


def test_http_error_is_reported_without_retries(tmp_path: Path, server: Server) -> None:
    with pytest.raises(DownloadError, match=r"QQP-clean\.zip: HTTP 404"):
        download_glue([TASKS["QQP"]], tmp_path / "glue", base_url=server.url, **FAST)
    assert server.ranges("/glue/data/QQP-clean.zip") == [None]


def _escape(glue: bytes) -> bytes:
    return make_zip({"WNLI/train.tsv": glue, "WNLI/../../escaped.txt": b"owned"})


def _dotdot(glue: bytes) -> bytes:
    return make_zip({"../escaped.txt": b"owned", "WNLI/train.tsv": glue})


def _absolute(glue: bytes) -> bytes:
    return make_zip({"WNLI/train.tsv": glue, "/tmp/gluebench-escaped.txt": b"owned"})


def _symlink(glue: bytes) -> bytes:
    return make_zip({"WNLI/dev.tsv": glue}, links={"WNLI/train.tsv": "../../escaped.txt"})


def _bomb(glue: bytes) -> bytes:
    return make_zip({"WNLI/train.tsv": glue + b"\0" * (40 << 20)}, level=9)  # about 1000:1


@pytest.mark.parametrize("build", [_escape, _dotdot, _absolute, _symlink, _bomb],
                         ids=["nested-dotdot", "dotdot", "absolute", "symlink", "zip-bomb"])
def test_unsafe_archives_are_refused(tmp_path: Path, glue_dir: Path, server: Server,
                                     build: Callable[[bytes], bytes]) -> None:
    server.files["/glue/data/WNLI.zip"] = build((glue_dir / "WNLI/train.tsv").read_bytes())
    outer = tmp_path / "outer"
    target = outer / "glue"
    with pytest.raises(DataFormatError, match="archive refused: member"):
        download_glue([TASKS["WNLI"]], target, base_url=server.url, **FAST)
    assert visible_files(target) == []
    assert sorted(p.name for p in outer.iterdir()) == ["glue"], "something was written outside the target"
    assert not Path("/tmp/gluebench-escaped.txt").exists()
    assert_clean(target)


@pytest.mark.parametrize(("build", "message"), [
    (lambda glue: declaring_zip({"WNLI/train.tsv": glue}, 5 << 30),
     rf"archive refused: member 'WNLI/train\.tsv': declares {5 << 30:,} bytes \(limit {MAX_MEMBER_BYTES:,}\)"),
    # 3.5 GiB each, as compressed as declared (no zip-bomb ratio): only the total gives them away
    (lambda glue: declaring_zip({f"WNLI/part{i}.tsv": glue for i in range(5)}, 7 << 29, compressed=7 << 29),
     rf"archive refused: member 'WNLI/part4\.tsv': archive would unpack to more than {MAX_TOTAL_BYTES:,} bytes"),
    (lambda glue: declaring_zip({"WNLI/train.tsv": glue}, 1000), r"not a valid zip archive \(Bad CRC-32"),
], ids=["member-declares-5GiB", "members-declare-17.5GiB-in-all", "member-holds-more-than-declared"])
def test_archive_sizes_are_checked_not_trusted(tmp_path: Path, glue_dir: Path, server: Server,
                                              build: Callable[[bytes], bytes], message: str) -> None:
    server.files["/glue/data/WNLI.zip"] = build((glue_dir / "WNLI/train.tsv").read_bytes())
    target = tmp_path / "glue"
    with pytest.raises(DataFormatError, match=message) as caught:
        download_glue([TASKS["WNLI"]], target, base_url=server.url, **FAST)
    assert "\n" not in str(caught.value)
    assert visible_files(target) == []
    assert_clean(target)


@pytest.fixture
def official(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """The loopback server *is* the official host: every pinned size and digest applies, archives' too."""
    monkeypatch.setenv(OFFICIAL_URL_ENV, server.url)
    return server


def _repacked_cola(glue_dir: Path, server: Server) -> str:
    """Serve CoLA's real files as a zip of exactly the official archive's size but other bytes; its URL path."""
    remote = TASKS["CoLA"].downloads[0]
    path = urlsplit(remote.url).path
    assert remote.size is not None
    server.files[path] = sized_zip({s.path: (glue_dir / s.path).read_bytes() for s in TASKS["CoLA"].splits},
                                   remote.size)
    return path


def test_official_archive_with_another_digest_is_refused(tmp_path: Path, glue_dir: Path, official: Server) -> None:
    path = _repacked_cola(glue_dir, official)
    pinned = TASKS["CoLA"].downloads[0].sha256 or ""
    target = tmp_path / "glue"
    with pytest.raises(ChecksumError, match=rf"CoLA\.zip refused: sha256 [0-9a-f]{{16}}… is not the pinned "
                                            rf"{pinned[:16]}…") as caught:
        download_glue([TASKS["CoLA"]], target, **FAST)
    assert "\n" not in str(caught.value)
    assert official.ranges(path) == [None]  # fetched from the (loopback) official host, once
    assert visible_files(target) == []
    assert_clean(target)
    assert not list((target / DOWNLOADS).glob("CoLA*")), "refused archive must be deleted"

    # the very same bytes from a mirror, where archives are not pinned, install: the pin alone refused them
    download_glue([TASKS["CoLA"]], target, base_url=official.url, **FAST)
    assert check_data(target, "CoLA").ok


def test_official_host_files_matching_their_pins_install(tmp_path: Path, glue_dir: Path, official: Server) -> None:
    target = tmp_path / "glue"
    paths = download_glue([TASKS["MRPC"]], target, **FAST)
    for path in paths:
        assert path.read_bytes() == (glue_dir / path.relative_to(target)).read_bytes(), path
    assert sorted(p for p, _ in official.requests) == sorted(urlsplit(r.url).path for r in TASKS["MRPC"].downloads)


def test_cli_official_digest_refusal_is_one_line(tmp_path: Path, glue_dir: Path, official: Server) -> None:
    _repacked_cola(glue_dir, official)
    failed = subprocess.run(
        [sys.executable, "-m", "gluebench", "download", "--tasks", "CoLA", "--data-dir", str(tmp_path / "glue"),
         "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.strip().count("\n") == 0, failed.stderr
    assert failed.stderr.startswith("gluebench: error: ") and "CoLA.zip refused: sha256" in failed.stderr
    assert not (tmp_path / "glue" / "CoLA").exists()


def test_concurrent_downloads_into_one_directory(tmp_path: Path, glue_dir: Path, server: Server) -> None:
    target = tmp_path / "glue"
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            download_glue([TASKS["WNLI"], TASKS["AX"]], target, base_url=server.url, **FAST)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert check_data(target, "WNLI,AX").ok
    assert_clean(target)




def test_cli_download_then_check(tmp_path: Path, server: Server, cli: CliRun) -> None:
    target = str(tmp_path / "glue")
    code, out, err = cli("download", "--tasks", "WNLI,MRPC", "--data-dir", target,
                             "--mirror", server.url, "--no-progress")
    assert code == 0, err
    assert "6 official files verified" in out
    code, out, err = cli("data", "check", "--data-dir", target, "--tasks", "WNLI,MRPC")
    assert code == 0, out + err
    assert "6 ok, 0 missing, 0 corrupt" in out


def test_cli_download_error_is_one_line_without_traceback(tmp_path: Path, server: Server) -> None:
    """A real process: the user sees one error line and exit code 2, never a traceback."""
    failed = subprocess.run(
        [sys.executable, "-m", "gluebench", "download", "--tasks", "QQP", "--data-dir", str(tmp_path / "glue"),
         "--mirror", server.url, "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert failed.returncode == 2
    assert "Traceback" not in failed.stderr
    assert failed.stderr.strip().count("\n") == 0, failed.stderr
    assert failed.stderr.startswith("gluebench: error: ") and "QQP-clean.zip: HTTP 404" in failed.stderr
