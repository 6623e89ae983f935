"""Webhook receipt: verify, record, enqueue, answer."""

from flask import Flask

from webhooks.views import blueprint


def init_app(app: Flask) -> None:
    app.register_blueprint(blueprint)
