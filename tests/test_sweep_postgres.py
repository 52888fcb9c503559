"""Two sweep workers share one study through a real PostgreSQL server, as workers on many machines would.

The server is Debian's ``postgresql`` package (``scripts/install_postgres.sh``); the fixture makes a throwaway
cluster in a temporary directory as an unprivileged user (``nobody`` when the tests run as root: PostgreSQL
refuses to run as root), listening on a free loopback port, and stops it afterwards.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliRun
from tests.test_sweep import _cbow, _study, _ticketed, assert_every_trial_once_and_the_best_reported

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The URL of a fresh PostgreSQL server on 127.0.0.1 (trust authentication, user ``gluebench``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL is needed for the shared-study test: run scripts/install_postgres.sh")
    bin_dir = Path(found[-1]).parent
    home = Path(tempfile.mkdtemp(prefix="gluebench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data, port = home / "data", _free_port()
    ctl = [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data)]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "gluebench", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    subprocess.run([*ctl, "-l", str(home / "server.log"), "-w", "-t", "60",
                    "-o", f"-p {port} -k {home} -h 127.0.0.1", "start"], check=True, capture_output=True, timeout=90)
    try:
        yield f"postgresql://gluebench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=90)
        shutil.rmtree(home, ignore_errors=True)


def test_two_workers_share_a_study_through_postgresql(postgres: str, glue_dir: Path, tmp_path: Path, cli: CliRun,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the second worker is a process of its own
    out, space = tmp_path / "sweep", tmp_path / "space.yaml"
    space.write_text("lr: {low: 1e-4, high: 3e-2, log: true}\nbatch_size: [16, 32]\n")
    code, stdout, err = cli(*_cbow(glue_dir), "--space", str(space), "--sampler", "random", "--trials", "5",
                            "--storage", postgres, "--study", "pg", "--workers", "2", "-o", str(out))
    assert code == 0, stdout + err
    study = _study(postgres, "pg.RTE")
    assert_every_trial_once_and_the_best_reported(study, out, 5)
    assert all(1e-4 <= t.params["lr"] <= 3e-2 and t.params["batch_size"] in (16, 32) for t in _ticketed(study))
    assert not (out / "study.journal").exists()
