"""Webhook receipt: verify, record, hand off, answer."""

from flask import Flask

from webhooks.recorder import Recorder
from webhooks.views import blueprint


def init_app(app: Flask) -> None:
    app.extensions["amends.recorder"] = Recorder(app.extensions["amends"])
    app.register_blueprint(blueprint)
