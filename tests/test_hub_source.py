"""The Hub's parquet copy of GLUE (``nyu-mll/glue``) as a data source, on parquet written from the real files.

The files are written here exactly as the Hub lays them out: one folder per config, ``{split}-00000-of-00001
.parquet``, the text columns, ``label`` (class id by the Hub's own class names, float32 for STS-B, -1 on test)
and ``idx`` (int32, the row number of the official file), with the Hugging Face features metadata. The class
ids are derived from the Hub's class names below and what each official label string means, not from the
registry, so a wrong id order in the registry (WNLI's reversed ids) fails the equality tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gluebench.data.check import check_data
from gluebench.data.locate import find_data_dir, has_split, split_file
from gluebench.data.read import Example, Label, read_split
from gluebench.errors import DataFormatError, DataMissingError
from gluebench.runs import RunPaths
from gluebench.submission import validate_submission
from gluebench.tasks import TASKS, TaskSpec
from tests.conftest import CliRun

# the Hub's configs, text columns and class names by id (its dataset card), independent of the registry
HUB_CONFIGS = {"CoLA": "cola", "SST-2": "sst2", "MRPC": "mrpc", "STS-B": "stsb", "QQP": "qqp", "MNLI": "mnli",
               "QNLI": "qnli", "RTE": "rte", "WNLI": "wnli", "AX": "ax"}
HUB_TEXTS = {"cola": ("sentence",), "sst2": ("sentence",), "qqp": ("question1", "question2"),
             "qnli": ("question", "sentence"), "mnli": ("premise", "hypothesis"), "ax": ("premise", "hypothesis")}
HUB_NAMES = {
    "cola": ("unacceptable", "acceptable"), "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"), "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"), "ax": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"), "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
}
# what the official files' coded labels mean
TSV_MEANING = {
    "CoLA": {"0": "unacceptable", "1": "acceptable"}, "SST-2": {"0": "negative", "1": "positive"},
    "MRPC": {"0": "not_equivalent", "1": "equivalent"}, "QQP": {"0": "not_duplicate", "1": "duplicate"},
    "WNLI": {"0": "not_entailment", "1": "entailment"},
}
HUB_SPLITS = {"dev": "validation", "dev_matched": "validation_matched", "dev_mismatched": "validation_mismatched"}
PAIR_ID_INDEX = {("QQP", "train"), ("QQP", "dev")}  # the official index is the pair id; the Hub's idx, the row
COMMIT = "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"


def hub_path(task: TaskSpec, split: str) -> str | None:
    """Where the Hub keeps a split; None: no counterpart (the labeled AX set)."""
    if task.name == "AX" and split != "test":
        return None
    return f"{HUB_CONFIGS[task.name]}/{HUB_SPLITS.get(split, split)}-00000-of-00001.parquet"


def hub_table(task: TaskSpec, examples: list[Example], *, row_index: bool) -> pa.Table:
    """The examples as the Hub's parquet holds them, schema and Hugging Face metadata included."""
    config = HUB_CONFIGS[task.name]
    columns = HUB_TEXTS.get(config, ("sentence1", "sentence2"))
    texts = [[e.text_a for e in examples]] + ([[e.text_b for e in examples]] if len(columns) == 2 else [])
    features: dict[str, object] = {name: {"dtype": "string", "_type": "Value"} for name in columns}
    if task.is_regression:
        labels = pa.array([-1.0 if e.label is None else e.label for e in examples], pa.float32())
        features["label"] = {"dtype": "float32", "_type": "Value"}
    else:
        meaning = TSV_MEANING.get(task.name, {})
        labels = pa.array([-1 if e.label is None else HUB_NAMES[config].index(meaning.get(str(e.label), str(e.label)))
                           for e in examples], pa.int64())
        features["label"] = {"names": list(HUB_NAMES[config]), "_type": "ClassLabel"}
    features["idx"] = {"dtype": "int32", "_type": "Value"}
    idx = pa.array([row if row_index else e.index for row, e in enumerate(examples)], pa.int32())
    schema = pa.schema([*((name, pa.string()) for name in columns), ("label", labels.type), ("idx", pa.int32())],
                       metadata={"huggingface": json.dumps({"info": {"features": features}})})
    return pa.Table.from_arrays([*(pa.array(t, pa.string()) for t in texts), labels, idx], schema=schema)


def official_source(task: TaskSpec, split: str, glue_dir: Path, samples_dir: Path) -> Path | None:
    """The directory holding the official file of a split: the complete files, else the real slices."""
    return next((d for d in (glue_dir, samples_dir) if has_split(task, split, d)), None)


def expected_from_hub(task: TaskSpec, split: str, examples: list[Example]) -> list[Example]:
    """The official examples as the Hub can give them: QQP train/dev indexed by row (the pair id is not kept),
    STS-B scores at float32 precision (2.11111111111111 is 2.1111112 there)."""
    def score(label: Label | None) -> Label | None:
        return float(str(np.float32(label))) if task.is_regression and label is not None else label

    return [Example(row if (task.name, split) in PAIR_ID_INDEX else e.index, e.text_a, e.text_b, score(e.label),
                    e.extras) for row, e in enumerate(examples)]


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory: pytest.TempPathFactory, glue_dir: Path, samples_dir: Path) -> Path:
    """A snapshot of the Hub's copy written from every official file (or real slice) there is."""
    root = tmp_path_factory.mktemp("hub") / "snapshot"
    for task in TASKS.values():
        for split in task.splits:
            source, path = official_source(task, split.name, glue_dir, samples_dir), hub_path(task, split.name)
            if source is not None and path is not None:
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                examples = read_split(task, split.name, source)
                row_index = (task.name, split.name) in PAIR_ID_INDEX
                pq.write_table(hub_table(task, examples, row_index=row_index), root / path)
    return root


@pytest.mark.parametrize("name", list(TASKS))
def test_hub_copy_gives_the_official_examples(name: str, hub_dir: Path, glue_dir: Path, samples_dir: Path) -> None:
    task = TASKS[name]
    compared = []
    for split in task.splits:
        source = official_source(task, split.name, glue_dir, samples_dir)
        if source is None or hub_path(task, split.name) is None:
            continue
        assert split_file(task, split.name, hub_dir).format == "parquet"
        official = read_split(task, split.name, source)
        from_hub = read_split(task, split.name, hub_dir)
        assert from_hub == expected_from_hub(task, split.name, official), f"{name} {split.name}"
        if split.labeled and task.labels is not None:
            assert {e.label for e in from_hub} == set(task.labels)
        compared.append(split.name)
    expected = {"QQP": ["train", "dev"], "MNLI": ["train", "dev_matched"], "AX": ["test"]}
    assert compared == expected.get(name, [s.name for s in task.splits])


def test_only_scores_beyond_float32_precision_differ(hub_dir: Path, glue_dir: Path) -> None:
    stsb = TASKS["STS-B"]
    for split, count in (("train", 14), ("dev", 1)):
        pairs = list(zip(read_split(stsb, split, hub_dir), read_split(stsb, split, glue_dir), strict=True))
        differ = [(h.label, o.label) for h, o in pairs if h.label != o.label]
        assert len(differ) == count and differ[0] == ((2.1111112, 2.11111111111111) if split == "train"
                                                      else (2.3333333, 2.33333333333333))
        assert all(abs(float(h) - float(o)) < 1e-6 for h, o in differ)


def test_wnli_ids_are_reversed_from_rte_and_mean_the_same_labels(hub_dir: Path, glue_dir: Path) -> None:
    for name, entailment_id in (("WNLI", 1), ("RTE", 0)):
        task = TASKS[name]
        table = pq.read_table(hub_dir / str(hub_path(task, "train")))
        official = read_split(task, "train", glue_dir)
        entailed = "1" if name == "WNLI" else "entailment"
        ids = {i for e, i in zip(official, table.column("label").to_pylist(), strict=True) if e.label == entailed}
        assert ids == {entailment_id}
        assert [e.label for e in read_split(task, "train", hub_dir)] == [e.label for e in official]


def test_the_full_official_files_index_their_rows_as_the_hub_does(glue_dir: Path) -> None:
    """Why the Hub's ``idx`` (its row number) is the official index: every complete official file numbers its rows."""
    for task in TASKS.values():
        for split in task.splits:
            if has_split(task, split.name, glue_dir):
                indices = [e.index for e in read_split(task, split.name, glue_dir)]
                assert indices == list(range(split.rows)), f"{task.name} {split.name}"


def test_labeled_ax_has_no_hub_counterpart_and_says_so(hub_dir: Path, glue_dir: Path, cli: CliRun) -> None:
    ax = TASKS["AX"]
    with pytest.raises(DataMissingError, match=r"diagnostic-full\.tsv: file not found: nyu-mll/glue has no copy of "
                                               r"AX full; get the official file with `gluebench download --tasks AX`"):
        read_split(ax, "full", hub_dir)
    report = check_data(hub_dir, "AX")
    assert [(f.split, f.status) for f in report.files] == [("test", "ok"), ("full", "missing")]
    code, out, err = cli("data", "check", "--data-dir", str(hub_dir), "--tasks", "AX,WNLI")
    assert code == 2 and "missing files of the tasks asked for" in err, out + err
    assert "nyu-mll/glue has no copy of AX full" in out
    assert "wnli/train-00000-of-00001.parquet" in out and "unknown" in out


def test_data_check_reads_a_hub_snapshot(hub_dir: Path, cli: CliRun) -> None:
    code, out, err = cli("data", "check", "--data-dir", str(hub_dir), "--tasks", "CoLA,SST-2,MRPC,STS-B,RTE,WNLI")
    assert code == 0, out + err
    assert "18 ok, 0 missing, 0 corrupt" in out


def test_official_files_and_hub_files_share_a_directory(tmp_path: Path, hub_dir: Path, glue_dir: Path) -> None:
    """Per split: the official TSV where it is, else the Hub's parquet (the labeled AX set beside a snapshot)."""
    mixed = tmp_path / "mixed"
    (mixed / "wnli").mkdir(parents=True)
    (mixed / "diagnostic").mkdir()
    for name in ("train", "validation"):
        (mixed / f"wnli/{name}-00000-of-00001.parquet").write_bytes(
            (hub_dir / f"wnli/{name}-00000-of-00001.parquet").read_bytes())
    (mixed / "diagnostic/diagnostic-full.tsv").write_bytes((glue_dir / "diagnostic/diagnostic-full.tsv").read_bytes())
    wnli, ax = TASKS["WNLI"], TASKS["AX"]
    assert read_split(wnli, "dev", mixed) == read_split(wnli, "dev", glue_dir)
    assert read_split(ax, "full", mixed) == read_split(ax, "full", glue_dir)
    assert split_file(wnli, "test", mixed).path == mixed / "wnli/test-00000-of-00001.parquet"  # missing, Hub layout
    assert not has_split(wnli, "test", mixed)


@pytest.mark.slow
def test_run_submit_and_validate_from_a_hub_snapshot(tmp_path: Path, hub_dir: Path, glue_dir: Path,
                                                     cli: CliRun) -> None:
    """The same run from the Hub's copy and from the official files: the same predictions, a valid submission."""
    paths = {}
    for label, data in (("hub", hub_dir), ("tsv", glue_dir)):
        run_dir = tmp_path / label
        code, out, err = cli("run", "--model", "glove-cbow", "--tasks", "RTE", "--seeds", "1", "--epochs", "2",
                             "--max-train-examples", "300", "--data-dir", str(data), "--output-dir", str(run_dir),
                             "--no-progress")
        assert code == 0, out + err
        paths[label] = RunPaths(run_dir)
    for split in ("dev", "test"):
        hub, tsv = (paths[k].predictions("RTE", 1, split).read_text(encoding="utf-8") for k in ("hub", "tsv"))
        assert hub == tsv
        assert len(hub.splitlines()) - 1 == TASKS["RTE"].split(split).rows

    archive = tmp_path / "submission.zip"
    code, out, err = cli("submit", str(paths["hub"].root), "-o", str(archive), "--fill", "majority",
                         "--data-dir", str(hub_dir))
    assert code == 0, out + err
    code, out, err = cli("validate-submission", str(archive), "--data-dir", str(hub_dir))
    assert code == 0, out + err
    checked = validate_submission(archive, hub_dir).index_checked
    assert checked["RTE.tsv"] and checked["WNLI.tsv"] and checked["MNLI-m.tsv"] is False  # no MNLI test in the copy


def _hf_cache_snapshot(hf_home: Path, hub_dir: Path, commit: str, files: list[str]) -> Path:
    """The Hugging Face cache's layout: blobs named by digest, snapshot entries linking to them."""
    repo = hf_home / "hub" / "datasets--nyu-mll--glue"
    snapshot = repo / "snapshots" / commit
    for name in files:
        data = (hub_dir / name).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
    return snapshot


def test_the_hugging_face_cache_is_found(tmp_path: Path, hub_dir: Path, isolated_cache: Path, glue_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch, cli: CliRun) -> None:
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    wnli = [f"wnli/{name}-00000-of-00001.parquet" for name in ("train", "validation", "test")]
    older = _hf_cache_snapshot(tmp_path / "hf", hub_dir, "a" * 40, wnli)
    newer = _hf_cache_snapshot(tmp_path / "hf", hub_dir, COMMIT, wnli[:1])
    os.utime(older, (1, 1))
    assert find_data_dir() == (newer, "Hugging Face cache")  # the newest snapshot, without refs
    (tmp_path / "hf/hub/datasets--nyu-mll--glue/refs").mkdir()
    (tmp_path / "hf/hub/datasets--nyu-mll--glue/refs/main").write_text("a" * 40)
    assert find_data_dir() == (older, "Hugging Face cache")  # the one refs/main names

    code, out, err = cli("show", "WNLI", "--split", "dev", "-n", "2")
    assert code == 0, out + err
    assert read_split(TASKS["WNLI"], "dev", glue_dir)[0].text_a[:30] in out
    code, out, err = cli("data", "check", "--tasks", "WNLI")
    assert code == 0 and "3 ok" in out, out + err

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))  # as huggingface_hub: it replaces $HF_HOME/hub
    assert find_data_dir()[1] != "Hugging Face cache"
    monkeypatch.delenv("HF_HUB_CACHE")
    (isolated_cache / "glue" / "WNLI").mkdir(parents=True)  # the gluebench cache is searched first
    (isolated_cache / "glue/WNLI/dev.tsv").write_bytes((glue_dir / "WNLI/dev.tsv").read_bytes())
    assert find_data_dir() == (isolated_cache / "glue", "cache")


# ---- bad input: one line naming the file, exit 2 ----------------------------------------------------------


def _retyped(table: pa.Table, column: str, dtype: pa.DataType) -> pa.Table:
    index = table.schema.get_field_index(column)
    return table.set_column(index, column, table.column(column).cast(dtype))


def _bad_file(kind: str, good: Path, target: Path) -> None:
    table = pq.read_table(good)
    if kind == "missing-column":
        pq.write_table(table.drop_columns(["sentence2"]), target)
    elif kind == "label-as-string":
        pq.write_table(_retyped(table, "label", pa.string()), target)
    elif kind == "idx-as-float":
        pq.write_table(_retyped(table, "idx", pa.float64()), target)
    elif kind == "not-parquet":
        target.write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
    elif kind == "truncated":
        target.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "ids-out-of-range":
        pq.write_table(table.set_column(table.schema.get_field_index("label"), "label",
                                        pa.array([7] * table.num_rows, pa.int64())), target)
    elif kind == "other-class-names":  # RTE's id order on WNLI: every label would be flipped
        meta = json.loads(table.schema.metadata[b"huggingface"])
        meta["info"]["features"]["label"]["names"] = ["entailment", "not_entailment"]
        pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps(meta)}), target)


BAD = {
    "missing-column": r"no column 'sentence2': the Hub's wnli files have sentence1, sentence2, label, idx "
                      r"\(this one: sentence1, label, idx\)",
    "label-as-string": r"column 'label' is string, the Hub's wnli has an integer there",
    "idx-as-float": r"column 'idx' is double, the Hub's wnli has an integer there",
    "not-parquet": r"not a readable parquet file \(Parquet magic bytes not found",
    "truncated": r"not a readable parquet file \(",
    "ids-out-of-range": r"row 0: label 7 is not a class id of WNLI dev \(0\.\.1\)",
    "other-class-names": r"its label names \['entailment', 'not_entailment'\] are not the Hub's "
                         r"\['not_entailment', 'entailment'\] for WNLI",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_parquet_is_one_line_naming_the_file(kind: str, tmp_path: Path, hub_dir: Path, cli: CliRun) -> None:
    bad = tmp_path / "bad"
    name = "wnli/validation-00000-of-00001.parquet"
    (bad / "wnli").mkdir(parents=True)
    _bad_file(kind, hub_dir / name, bad / name)
    with pytest.raises(DataFormatError, match=rf"^{bad / name}: {BAD[kind]}") as caught:
        read_split(TASKS["WNLI"], "dev", bad)
    assert "\n" not in str(caught.value)
    for args in (("show", "WNLI", "--split", "dev"), ("data", "check", "--tasks", "WNLI")):
        code, out, err = cli(*args, "--data-dir", str(bad))
        assert code == 2, out + err
        assert err.startswith("gluebench: error: ") and err.strip().count("\n") == 0, err
        assert str(bad / name) in err


def test_a_run_on_a_bad_parquet_file_stops_before_training(tmp_path: Path, hub_dir: Path, cli: CliRun) -> None:
    bad = tmp_path / "bad"
    names = [f"wnli/{n}-00000-of-00001.parquet" for n in ("train", "validation", "test")]
    for name in names:
        (bad / name).parent.mkdir(parents=True, exist_ok=True)
        (bad / name).write_bytes((hub_dir / name).read_bytes())
    _bad_file("label-as-string", hub_dir / names[0], bad / names[0])
    code, out, err = cli("run", "--model", "glove-cbow", "--tasks", "WNLI", "--data-dir", str(bad),
                         "--output-dir", str(tmp_path / "run"), "--no-progress")
    assert code == 2, out + err
    assert f"{bad / names[0]}: column 'label' is string" in err and err.strip().count("\n") == 0, err


# ---- download --source hub: no network here, a real attempt that fails fast ------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gluebench(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    environment |= {"HF_HOME": str(tmp_path / "hf"), "GLUEBENCH_CACHE": str(tmp_path / "cache"), **env}
    return subprocess.run([sys.executable, "-m", "gluebench", *args, "--no-progress"], capture_output=True,
                          text=True, timeout=120, env=environment)


@pytest.fixture
def not_found_host() -> Iterator[str]:
    """A loopback host answering 404 to everything: an official host that fails at once."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("env", ["unreachable", "offline"])
def test_hub_download_without_network_is_one_line(env: str, tmp_path: Path) -> None:
    settings = ({"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"} if env == "unreachable"
                else {"HF_HUB_OFFLINE": "1"})
    target = tmp_path / "glue"
    for where in ([], ["--data-dir", str(target)]):
        failed = _gluebench(["download", "--source", "hub", "--tasks", "WNLI,RTE", *where], tmp_path, **settings)
        assert failed.returncode == 2, failed.stderr
        assert failed.stderr.startswith("gluebench: error: ") and failed.stderr.strip().count("\n") == 0, failed.stderr
        assert "/datasets/nyu-mll/glue: the Hugging Face Hub cannot be reached (offline?" in failed.stderr
    assert not list(tmp_path.rglob("*.parquet"))


def test_hub_is_the_fallback_when_the_official_host_fails(tmp_path: Path, not_found_host: str) -> None:
    failed = _gluebench(["download", "--tasks", "WNLI", "--data-dir", str(tmp_path / "glue")], tmp_path,
                        GLUEBENCH_OFFICIAL_URL=not_found_host, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.strip().count("\n") == 0, failed.stderr
    assert "WNLI.zip: HTTP 404" in failed.stderr
    assert "the fallback, nyu-mll/glue on the Hugging Face Hub, failed too" in failed.stderr
    assert "cannot be reached" in failed.stderr
