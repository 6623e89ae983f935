"""The assembled Amends: the plugin app with webhook receipt, and the `amends` command.

gunicorn serves `wsgi:create_app()`; imports flow webhooks → actions → plugin, so this
module, above all three, is where they meet.
"""

from __future__ import annotations

import os
import sys

import click
from flask import Flask

import webhooks
from actions.cli import scan
from plugin import create_app as create_plugin_app
from plugin.cli import cli, load_config
from plugin.config import Config

cli.add_command(scan)


def create_app(config: Config | None = None) -> Flask:
    app = create_plugin_app(config)
    webhooks.init_app(app)
    return app


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def dev(host: str, port: int) -> None:
    """Start Amends locally: SQLite, in-process jobs, the mail outbox, a demo shop in test mode."""
    os.environ.setdefault("SHOPIFY_APP_URL", f"http://{host}:{port}")
    config = load_config()
    from plugin import dev_shopify, migrate
    from plugin.demo import ensure_demo_shop

    migrate.upgrade(config.database_url)
    # No Shopify credentials in development: a local stand-in answers the Admin API.
    config, _standin, shopify = dev_shopify.start(config)
    app = create_app(config)
    ensure_demo_shop(app.extensions["amends"])
    from plugin import periodic

    # The sweep and the scans run in-process too (the embedded queue keeps nothing on restart).
    periodic.ensure_scheduled(app.extensions["amends"])
    base = config.app_url
    click.echo(
        f"""
  Amends is running in {config.env} mode (test mode on for the demo shop).
    admin page     {base}/
    health         {base}/healthz
    database       {config.database_url}
    queue          {"Redis " + config.redis_url if config.redis_url else "in-process (no Redis needed)"}
    mail           {"SMTP" if config.smtp_url else "local outbox (shown in the admin page and this log)"}
    shopify        {shopify}

  Send a sample incident from another terminal:
    .venv/bin/amends trigger late-delivery
    .venv/bin/amends trigger return
    .venv/bin/amends trigger refund
"""
    )
    app.run(host=host, port=port, threaded=True, use_reloader=False)


def main() -> None:
    # The CLI is a developer's tool first: a bare shell gets development defaults.
    # Production sets AMENDS_ENV=production (the Procfile does).
    os.environ.setdefault("AMENDS_ENV", "development")
    cli.main(args=sys.argv[1:], prog_name="amends")
