"""B1's baseline: the least a webhook endpoint can do. It verifies the HMAC over the raw
body with the same secrets (in constant time) and answers 200, served by the same gunicorn
configuration as Amends. `gunicorn 'bench.baseline_app:create_app()'`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue


def create_app() -> Flask:
    app = Flask(__name__)
    secrets = [
        s.encode() for s in (os.environ["SHOPIFY_API_SECRET"], os.environ.get("SHOPIFY_API_SECRET_OLD")) if s
    ]

    @app.post("/webhooks")
    def receive() -> ResponseReturnValue:
        body = request.get_data(cache=False)
        given = (request.headers.get("X-Shopify-Hmac-Sha256") or "").encode()
        ok = False
        for secret in secrets:
            digest = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest())
            ok = hmac.compare_digest(digest, given) or ok
        if not ok:
            return jsonify({"result": "bad_signature"}), 401
        return jsonify({"result": "accepted"}), 200

    @app.get("/healthz")
    def healthz() -> ResponseReturnValue:
        return jsonify({"ok": True})

    return app
