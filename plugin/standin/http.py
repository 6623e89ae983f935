"""The stand-in's HTTP handler: routes requests to `StandIn` and writes JSON answers."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from plugin.standin.server import StandIn

log = logging.getLogger(__name__)

GRAPHQL_PATH = re.compile(r"^(?:/shops/(?P<shop>[^/]+))?/admin/api/(?P<version>[^/]+)/graphql\.json$")
TOKEN_PATH = re.compile(r"^(?:/shops/(?P<shop>[^/]+))?/admin/oauth/access_token$")
AUTHORIZE_PATH = re.compile(r"^(?:/shops/(?P<shop>[^/]+))?/admin/oauth/authorize$")
# Bulk mutations: the staged-upload target, and an operation's results file.
STAGED_PATH = re.compile(r"^/shops/(?P<shop>[^/]+)/_staged_uploads$")
RESULTS_PATH = re.compile(r"^/shops/(?P<shop>[^/]+)/_bulk_results/(?P<number>\d+)\.jsonl$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ShopifyStandIn/1"
    # The headers and the body go out in two writes: with Nagle on, the body of an answer on a
    # kept-alive connection waits for the client's delayed ACK (40 ms a call).
    disable_nagle_algorithm = True

    @property
    def standin(self) -> StandIn:
        return self.server.standin  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("stand-in: " + format, *args)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/_stats":
            self._json(200, self.standin.stats())
        elif parts.path == "/_discounts":
            shop = (parse_qs(parts.query).get("shop") or [""])[0]
            self._json(200, {"shop": shop, "discounts": self.standin.discounts(shop)})
        elif match := AUTHORIZE_PATH.match(parts.path):
            shop = match["shop"] or (self.headers.get("Host") or "unknown").split(":")[0]
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            status, target = self.standin.authorize(shop, query)
            if status == 302:
                self.send_response(302)
                self.send_header("Location", target)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._json(status, {"errors": target})
        elif match := RESULTS_PATH.match(parts.path):
            text = self.standin.bulk_results(match["shop"], int(match["number"]))
            if text is None:
                self._json(404, {"errors": "Not Found"})
                return
            data = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/jsonl")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif parts.path == "/healthz":
            self._json(200, {"ok": True})
        else:
            self._json(404, {"errors": "Not Found"})

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if match := GRAPHQL_PATH.match(parts.path):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._json(400, {"errors": "Body is not valid JSON"})
                return
            shop = match["shop"] or (self.headers.get("Host") or "unknown").split(":")[0]
            token = self.headers.get("X-Shopify-Access-Token")
            status, answer, headers = self.standin.graphql(
                shop, body if isinstance(body, dict) else {}, token
            )
            if status == 0:  # a dropped connection
                self.close_connection = True
                return
            self._json(status, answer, headers)
        elif match := TOKEN_PATH.match(parts.path):
            form = _form(raw, self.headers.get("Content-Type") or "")
            shop = match["shop"] or (self.headers.get("Host") or "unknown").split(":")[0]
            self._json(*self.standin.token_grant(shop, form))
        elif match := STAGED_PATH.match(parts.path):
            fields = _multipart(raw, self.headers.get("Content-Type") or "")
            if "key" not in fields or "file" not in fields:
                self._json(400, {"errors": "a multipart form with `key` and `file` is expected"})
                return
            self.standin.stage(match["shop"], fields["key"].decode(), fields["file"])
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts.path in ("/_reset", "/_config", "/_fail_next", "/_seed"):
            self._control(parts.path, raw)
        else:
            self._json(404, {"errors": "Not Found"})

    def _control(self, path: str, raw: bytes) -> None:
        try:
            body = json.loads(raw or b"{}")
            if path == "/_reset":
                self.standin.reset()
            elif path == "/_config":
                self.standin.configure(**body)
            elif path == "/_fail_next":
                self.standin.fail_next(body["kind"], int(body.get("times", 1)))
            else:
                state = self.standin.shop(body["shop"])
                with state.lock:
                    ids = state.seed_orders(int(body["count"]), int(body.get("late_every", 2)))
                self._json(200, {"ok": True, "orders": len(ids)})
                return
        except (ValueError, KeyError, TypeError) as error:
            self._json(400, {"errors": str(error)})
            return
        self._json(200, {"ok": True})

    def _json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _form(raw: bytes, content_type: str) -> dict[str, str]:
    if "json" in content_type:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else {}
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


def _multipart(raw: bytes, content_type: str) -> dict[str, bytes]:
    """The fields of a multipart/form-data body, by name."""
    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=default_policy).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw
    )
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields
