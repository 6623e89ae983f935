"""Schema-driven fuzzing of the admin JSON API from its own OpenAPI document (schemathesis):
every operation, generated parameters and bodies, with a valid session token and real data
behind it. No 5xx, and every response (status, headers, body, content type) matches the
document.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from plugin.services import Services
from tests import services as real
from tests.admin_data import seed_incident, session_token
from tests.conftest import make_config
from tests.factories import SHOP, make_shop
from tests.reliability import report
from wsgi import create_app

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("RELIABILITY_API_EXAMPLES", "25"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
STATUSES: Counter[str] = Counter()
OPERATIONS: list[str] = []


@pytest.fixture(scope="module")
def api_app(database_url: str, redis_session: tuple[str, Any]) -> Iterator[Flask]:
    url, redis = redis_session
    real.flush_redis(redis)
    app = create_app(make_config(database_url, redis_url=url))
    services: Services = app.extensions["amends"]
    real.empty_tables(services.db.engine)
    make_shop(services, test_mode=True)
    for n in range(6):
        seed_incident(
            services,
            SHOP,
            kind=("late_delivery", "return", "refund")[n % 3],
            order_name=f"#{4100 + n}",
            first_name=("Ada", "<b>Grace</b>", "Linus 🐧")[n % 3],
            email=f"api{n}@example.test",
            apologised=n % 2 == 0,
            needs_attention="SMTP 550: mailbox unavailable" if n == 5 else None,
        )
    yield app
    if STATUSES:
        section = report.section(
            "Schema-driven fuzzing of /api/ (schemathesis)",
            f"every operation in /api/openapi.json, up to {EXAMPLES} generated cases each, with a valid "
            "session token; checks: no 5xx, status codes, content types, headers and bodies as documented",
        )
        section.add(
            **{
                "operations": len(OPERATIONS),
                "calls by status": dict(sorted(STATUSES.items())),
                "5xx": sum(n for status, n in STATUSES.items() if status.startswith("5")),
            }
        )
    real.empty_tables(services.db.engine)
    real.flush_redis(redis)
    services.close()


def test_every_api_operation_matches_its_document(api_app: Flask) -> None:
    # schemathesis' own pytest integration does not run under pytest 9: each operation gets
    # its hypothesis strategy here instead, and every failure is collected before asserting.
    api = schemathesis.openapi.from_wsgi("/api/openapi.json", api_app)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 5, "the document lists too few operations"
    failures: dict[str, str] = {}
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(operation.as_strategy())
        def call(case: Any) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {session_token(SHOP)}"}, checks=CHECKS
            )
            STATUSES[str(response.status_code)] += 1

        try:
            call()
        except Exception as error:  # every operation runs; each failure is reported
            failures[operation.label] = f"{type(error).__name__}: {str(error)[:800]}"
    OPERATIONS.extend(operation.label for operation in operations)
    assert failures == {}, "\n\n".join(f"{label}\n{why}" for label, why in failures.items())
