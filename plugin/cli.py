"""The `amends` command line: commands that need only the shared services."""

from __future__ import annotations

import json
import sys
import uuid

import click

from plugin.config import DEV_SHOP, Config
from plugin.errors import ConfigError


def load_config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


@click.group()
def cli() -> None:
    """Amends: apologise, compensate and follow up when an order goes wrong."""


@cli.command()
def migrate() -> None:
    """Apply database migrations (the Procfile's release line)."""
    from plugin import migrate as migrations

    config = load_config()
    migrations.upgrade(config.database_url)
    click.echo("database is at the newest migration")


@cli.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (for tests).")
def worker(burst: bool) -> None:
    """Run an RQ worker with its scheduler (delayed jobs and retries need it)."""
    from plugin import logs, services

    config = load_config()
    if not config.redis_url:
        raise click.ClickException("REDIS_URL is not set: the worker runs jobs from Redis.")
    logs.configure(config.log_level)
    svc = services.init(config)
    from plugin.worker import run_worker

    run_worker(svc, burst=burst)


@cli.command()
@click.argument("name", type=click.Choice(["late-delivery", "delivered", "return", "refund"]))
@click.option("--url", default=None, help="Amends' base URL (default: SHOPIFY_APP_URL).")
@click.option("--shop", default=DEV_SHOP, show_default=True)
@click.option("--order", "order_id", type=int, default=None, help="Order id (default: random).")
def trigger(name: str, url: str | None, shop: str, order_id: int | None) -> None:
    """Send a signed, Shopify-shaped sample webhook to a running Amends (like `stripe trigger`)."""
    import requests

    from plugin.samples import TRIGGERS
    from plugin.signing import webhook_signature

    config = load_config()
    topic, make_payload = TRIGGERS[name]
    payload = make_payload(order_id)
    body = json.dumps(payload).encode()
    target = (url or config.app_url).rstrip("/") + "/webhooks"
    try:
        response = requests.post(
            target,
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-Shopify-Topic": topic,
                "X-Shopify-Shop-Domain": shop,
                "X-Shopify-Hmac-Sha256": webhook_signature(body, config.shopify_api_secret),
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Event-Id": str(uuid.uuid4()),
                "X-Shopify-API-Version": config.shopify_api_version,
            },
            timeout=10,
        )
    except requests.RequestException as error:
        raise click.ClickException(f"could not reach Amends at {target}: {error}") from error
    order = payload.get("order_id") or payload.get("order", {}).get("id")
    click.echo(f"{topic} for order {order} → {response.status_code} {response.text.strip()}")
    if response.status_code >= 300:
        sys.exit(1)


@cli.command("add-shop")
@click.option("--shop", required=True, help="The store's your-store.myshopify.com domain.")
@click.option(
    "--token",
    prompt="Admin API access token",
    hide_input=True,
    help="The custom app's Admin API access token (prompted for when not given).",
)
def add_shop(shop: str, token: str) -> None:
    """Install Amends for a store's custom app with its Admin API access token."""
    from plugin import services
    from plugin.auth.custom_app import add_custom_app_shop
    from plugin.errors import AppError

    svc = services.build(load_config())
    try:
        added, registered = add_custom_app_shop(svc, shop, token)
    except AppError as error:
        raise click.ClickException(str(error)) from error
    finally:
        svc.close()
    click.echo(f"{added.domain} is installed (custom app, token encrypted at rest).")
    if registered is not None:
        click.echo(
            f"  webhooks: {len(registered.created)} created, {len(registered.updated)} updated, "
            f"{len(registered.kept)} already there"
        )


@cli.command("rotate-token-keys")
def rotate_token_keys() -> None:
    """Re-encrypt every stored token with the first TOKEN_ENCRYPTION_KEYS key."""
    from plugin import services
    from plugin.auth.key_rotation import rotate_token_keys as rotate
    from plugin.errors import AppError

    config = load_config()
    if not config.token_keys:
        raise click.ClickException(
            "TOKEN_ENCRYPTION_KEYS is not set: set it to the new key, then a comma, then the old "
            "one(s), and run this again."
        )
    svc = services.build(config)
    try:
        rotated, skipped = rotate(svc)
    except AppError as error:
        raise click.ClickException(str(error)) from error
    finally:
        svc.close()
    click.echo(f"{rotated} shop(s) re-encrypted with the newest key.")
    if skipped:
        click.echo(f"{skipped} shop(s) changed meanwhile: run the command again.")
        sys.exit(1)
