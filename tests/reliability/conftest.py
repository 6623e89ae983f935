"""The reliability suite: real processes, injected faults. PostgreSQL only (production shape),
so `.ci/run` runs it in its PostgreSQL steps.

Scale with RELIABILITY_INCIDENTS (incidents per fault scenario) and
RELIABILITY_OUTAGE_SECONDS (the issue's 30 s outages; the SMTP outage is 4× and 2× that);
RELIABILITY_SWEEP_SECONDS is the deployments' SWEEP_SECONDS (10; production's is 60).
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services as real
from tests.reliability import harness, report

HERE = Path(__file__).parent


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped from outside (a timeout's SIGTERM) still ends the processes it started.
    atexit.register(harness.kill_all)
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum: int, frame: Any) -> None:
            harness.kill_all()
            # Then whatever SIGTERM did before (by default: end the run at once).
            signal.signal(signal.SIGTERM, previous)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_term)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="the reliability suite runs against PostgreSQL (TEST_DATABASE=postgres)")
    # The fault scenarios start whole deployments (a minute or more each): they run when asked
    # for, as `.ci/run` does in a step of their own, not in every pass.
    faults_off = pytest.mark.skip(reason="fault scenarios run with RELIABILITY_FAULTS=1")
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)
            if real.target_engine() != "postgres":
                item.add_marker(skip)
            elif item.path.name == "test_faults.py" and os.environ.get("RELIABILITY_FAULTS") != "1":
                item.add_marker(faults_off)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = report.render()
    if not lines:
        return
    terminalreporter.section("reliability report")
    for line in lines:
        terminalreporter.write_line(line)
    report.write_json()


@pytest.fixture(scope="session")
def reliability_redis() -> Iterator[int]:
    """This run's own Redis database number (claimed, so concurrent runs never share it)."""
    url, client = real.claim_redis_db()
    yield int(url.rsplit("/", 1)[1])
    client.flushdb()
    client.close()
