"""The README's two commands, run as a newcomer would: from a fresh clone, with no
PostgreSQL, Redis or SMTP configured. Slow (it builds a virtual environment)."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.services import free_port, target_engine

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(target_engine() != "sqlite", reason="runs once, in the SQLite pass"),
]


def newcomer_env() -> dict[str, str]:
    """A shell with none of Amends' settings: nothing on this machine leaks in."""
    keep = (
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "PIP_CONFIG_FILE",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "no_proxy",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
    )
    return {k: v for k, v in os.environ.items() if k in keep}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    target = tmp_path_factory.mktemp("newcomer") / "amends"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True)
    return target


def test_run_command_serves_healthz_and_records_a_sample_incident(clone: Path):
    port = free_port()
    log = (clone / "run.log").open("w")
    started = time.monotonic()
    process = subprocess.Popen(
        ["scripts/run", "--port", str(port)],
        cwd=clone,
        env=newcomer_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health = None
        # Generous: the first run installs the dependencies into .venv.
        while time.monotonic() - started < 600 and process.poll() is None:
            try:
                health = requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(1)
        output = (clone / "run.log").read_text()
        assert health is not None, f"Amends did not start:\n{output[-3000:]}"
        assert health.status_code == 200
        assert health.json()["queue"]["kind"] == "embedded"
        assert f"{base}/" in output and "amends trigger late-delivery" in output

        result = subprocess.run(
            [".venv/bin/amends", "trigger", "late-delivery", "--url", base],
            cwd=clone,
            env=newcomer_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        database = clone / "instance" / "amends.db"
        deadline = time.monotonic() + 30
        incidents = 0
        while time.monotonic() < deadline and incidents == 0:
            with sqlite3.connect(database) as connection:
                incidents = connection.execute("SELECT count(*) FROM incidents").fetchone()[0]
            time.sleep(0.5)
        assert incidents == 1, (clone / "run.log").read_text()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
        log.close()


def test_test_command_runs_the_suite(clone: Path):
    # The whole suite is what CI runs; here one module proves the command works as written.
    result = subprocess.run(
        ["scripts/test", "tests/test_config.py", "-q", "-p", "no:cacheprovider"],
        cwd=clone,
        env=newcomer_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
