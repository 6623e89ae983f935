from tests.conftest import make_config
from wsgi import create_app


def test_healthy(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["database"]["ok"] and body["queue"] == {"ok": True, "kind": "embedded"}


def test_real_redis_is_reported(database_url, redis_url):
    app = create_app(make_config(database_url, redis_url=redis_url))
    body = app.test_client().get("/healthz").get_json()
    app.extensions["amends"].close()
    assert body["queue"] == {"ok": True, "kind": "redis"}


def test_stopped_redis_is_503_with_the_reason(database_url):
    # Nothing listens on port 1: the same answer a stopped Redis gives.
    app = create_app(make_config(database_url, redis_url="redis://127.0.0.1:1/0"))
    response = app.test_client().get("/healthz")
    app.extensions["amends"].close()
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["queue"]["ok"] is False and "ConnectionError" in body["queue"]["error"]
    assert body["database"]["ok"] is True


def test_unreachable_database_is_503_with_the_reason(tmp_path):
    url = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"
    app = create_app(make_config(url))
    response = app.test_client().get("/healthz")
    app.extensions["amends"].close()
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"]["ok"] is False and "OperationalError" in body["database"]["error"]
    assert "postgres@" not in body["database"]["error"]
