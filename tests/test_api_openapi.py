"""GET /api/openapi.json: a valid OpenAPI 3.1 document that describes every route, and that
real answers (every documented status of every operation) fit."""

from __future__ import annotations

import re

from openapi_spec_validator import validate

from plugin.models import Incident
from tests.admin_data import ApiClient, seed_incident
from tests.factories import OTHER_SHOP, SHOP, make_shop

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


def test_the_served_document_is_valid_openapi_3_1(client):
    document = client.get("/api/openapi.json").get_json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["sessionToken"]["scheme"] == "bearer"


def test_every_api_route_is_documented_and_every_documented_route_exists(app, openapi):
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routed |= {(method, path) for method in (rule.methods or set()) & METHODS}
    documented = {
        (method.upper(), path) for path, item in openapi.document["paths"].items() for method in item
    }
    assert routed == documented
    assert len(routed) >= 14


def test_every_operation_says_what_it_needs_and_answers(openapi):
    operation_ids = []
    for path, item in openapi.document["paths"].items():
        for method, operation in item.items():
            operation_ids.append(operation["operationId"])
            assert operation["summary"], (method, path)
            responses = operation["responses"]
            public = operation.get("security") == []
            assert public == (path == "/api/openapi.json")
            if not public:
                assert "401" in responses, (method, path)
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"\{(\w+)\}", path)), (method, path)
            if names:
                assert "404" in responses, (method, path)
            if "requestBody" in operation or any(p["in"] == "query" for p in operation.get("parameters", [])):
                assert "422" in responses, (method, path)
    assert len(operation_ids) == len(set(operation_ids))


def test_real_answers_fit_the_document_for_every_documented_status(admin_api_queued):
    """Drives every operation to every status it documents; ApiClient checks each answer."""
    api: ApiClient = admin_api_queued
    services = api.services
    make_shop(services, OTHER_SHOP, name="Other Store")
    theirs = seed_incident(services, OTHER_SHOP)
    busy = seed_incident(services, SHOP, order_name="#1001", needs_attention="SMTP 550", task=False)
    calm = seed_incident(services, SHOP, order_name="#1002")
    from sqlalchemy import select

    from plugin.models import DataExport, Shop

    with services.db.session() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.domain == SHOP))
        export = DataExport(shop_id=shop_id, customer_email="ada@example.test", payload={"a": 1})
        session.add(export)
    anonymous = ApiClient(api.client, None, api.openapi)

    for path in (
        "/api/overview",
        "/api/incidents",
        "/api/tasks",
        "/api/settings",
        "/api/outbox",
        "/api/data-exports",
    ):
        assert api.get(path).status_code == 200
        assert anonymous.get(path).status_code == 401
    assert anonymous.get("/api/openapi.json").status_code == 200

    assert api.get("/api/incidents?q=%231001&kind=late_delivery&state=open&limit=1").status_code == 200
    assert api.get("/api/incidents?limit=0").status_code == 422
    assert api.get(f"/api/incidents/{calm.incident_id}").status_code == 200
    assert api.get(f"/api/incidents/{theirs.incident_id}").status_code == 404
    assert anonymous.get(f"/api/incidents/{calm.incident_id}").status_code == 401

    assert api.post(f"/api/incidents/{busy.incident_id}/retry").status_code == 202
    assert api.post(f"/api/incidents/{busy.incident_id}/retry").status_code == 409
    assert api.post(f"/api/incidents/{theirs.incident_id}/retry").status_code == 404
    assert anonymous.post(f"/api/incidents/{busy.incident_id}/retry").status_code == 401

    assert api.post(f"/api/incidents/{busy.incident_id}/resolve").status_code == 200
    assert api.post(f"/api/incidents/{busy.incident_id}/resolve").status_code == 409
    assert api.post(f"/api/incidents/{theirs.incident_id}/resolve").status_code == 404
    assert anonymous.post(f"/api/incidents/{busy.incident_id}/resolve").status_code == 401

    assert api.get("/api/tasks?status=open").status_code == 200
    assert api.get("/api/tasks?status=never").status_code == 422
    assert api.patch(f"/api/tasks/{calm.task_id}", json={"assignee": "Grace"}).status_code == 200
    assert api.patch(f"/api/tasks/{calm.task_id}", json={"due_at": "soon"}).status_code == 422
    assert api.patch(f"/api/tasks/{theirs.task_id}", json={}).status_code == 404
    assert anonymous.patch(f"/api/tasks/{calm.task_id}", json={}).status_code == 401
    assert api.post(f"/api/tasks/{calm.task_id}/resolve").status_code == 200
    assert api.post(f"/api/tasks/{calm.task_id}/resolve").status_code == 409
    assert api.post(f"/api/tasks/{theirs.task_id}/resolve").status_code == 404
    assert anonymous.post(f"/api/tasks/{calm.task_id}/resolve").status_code == 401

    assert api.put("/api/settings", json={"refund": {"sla_hours": 12}}).status_code == 200
    assert api.put("/api/settings", json={"refund": {"sla_hours": 0}}).status_code == 422
    assert anonymous.put("/api/settings", json={}).status_code == 401
    preview = {"kind": "refund", "message": "apology"}
    assert api.post("/api/settings/preview", json=preview).status_code == 200
    assert api.post("/api/settings/preview", json={**preview, "kind": "x"}).status_code == 422
    assert anonymous.post("/api/settings/preview", json=preview).status_code == 401

    assert api.get("/api/outbox?limit=5").status_code == 200
    assert api.get("/api/outbox?limit=500").status_code == 422
    assert api.get(f"/api/data-exports/{export.id}").status_code == 200
    assert api.get("/api/data-exports/987654").status_code == 404
    assert anonymous.get(f"/api/data-exports/{export.id}").status_code == 401

    documented = {
        (method.upper(), path, int(status))
        for path, item in api.openapi.document["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    }
    seen = api.seen | anonymous.seen
    assert documented - seen == set(), "documented answers never exercised"
    with services.db.session() as session:
        assert session.get(Incident, theirs.incident_id).resolved_at is None
