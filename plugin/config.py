"""Every environment variable Amends reads, read here and nowhere else.

`Config.from_env()` applies code defaults for local use and, in production, refuses to
return a half-configured app: each missing or malformed value gets its own message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from plugin.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"

# Shopify API versions are quarterly; this is the one every document is written for.
SHOPIFY_API_VERSION = "2026-07"

DEV_API_KEY = "amends-dev-api-key"
DEV_API_SECRET = "amends-dev-secret-not-for-production"  # noqa: S105 - a known dev value
DEV_SECRET_KEY = "amends-dev-secret-key-not-for-production"  # noqa: S105
DEV_SHOP = "amends-demo.myshopify.com"

ENVIRONMENTS = ("production", "development", "test")


@dataclass(frozen=True)
class Config:
    env: str = "development"
    shopify_api_key: str = DEV_API_KEY
    shopify_api_secret: str = DEV_API_SECRET
    shopify_api_secret_old: str | None = None
    # True only when SHOPIFY_API_SECRET came from the environment: the dev-mode admin
    # bypass can never be active then.
    shopify_credentials_set: bool = False
    app_url: str = "http://127.0.0.1:8000"
    database_url: str = f"sqlite:///{INSTANCE_DIR / 'amends.db'}"
    redis_url: str | None = None
    smtp_url: str | None = None
    mail_from: str = "Amends <amends@localhost>"
    secret_key: str = DEV_SECRET_KEY
    # Fernet keys for tokens at rest, newest first; empty means "derive from SECRET_KEY".
    token_keys: tuple[str, ...] = ()
    scopes: tuple[str, ...] = (
        "read_orders",
        "write_orders",
        "read_returns",
        "read_fulfillments",
        "read_customers",
        "write_discounts",
    )
    shopify_api_version: str = SHOPIFY_API_VERSION
    # Where the Admin API lives; a test or benchmark points it at a local stand-in.
    # "{shop}" is replaced with the shop domain.
    shopify_admin_base: str = "https://{shop}"
    # Subscribe each shop to Amends' topics with webhookSubscriptionCreate on install (for an
    # app whose shopify.app.toml is not deployed). Custom-app shops are always subscribed.
    register_webhooks: bool = False
    queue_name: str = "amends"
    webhook_max_bytes: int = 1_000_000
    # How often the workers look for lost work: RQ's maintenance (abandoned jobs, a dead
    # worker's scheduler lock) and both sweeps run every `sweep_seconds`; a delivery pending
    # 2× this long, an incident step 2× past due (with no job of its own waiting) or an order
    # context 10× is redone. Lower means a crash or outage is recovered from sooner, for more
    # queries.
    sweep_seconds: int = 60
    log_level: str = "INFO"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def dev_login(self) -> bool:
        """The admin opens for the demo shop without a session token (newcomers only)."""
        return self.env == "development" and not self.shopify_credentials_set

    @property
    def webhook_secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.shopify_api_secret, self.shopify_api_secret_old) if s)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        env = dict(os.environ if environ is None else environ)
        return _parse(env)


def _parse(env: dict[str, str]) -> Config:
    problems: list[str] = []

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    mode = get("AMENDS_ENV") or "production"
    if mode not in ENVIRONMENTS:
        problems.append(f"AMENDS_ENV must be one of {', '.join(ENVIRONMENTS)} (got {mode!r}).")
        mode = "production"
    production = mode == "production"

    def required(name: str, hint: str) -> str | None:
        value = get(name)
        if value is None and production:
            problems.append(f"{name} is not set: {hint}")
        return value

    defaults = Config()
    api_key = required("SHOPIFY_API_KEY", "set it to the app's client id from the Partner Dashboard.")
    api_secret = required(
        "SHOPIFY_API_SECRET", "set it to the app's client secret from the Partner Dashboard."
    )
    app_url = required("SHOPIFY_APP_URL", "set it to the app's public https:// base URL.")
    if app_url:
        parts = urlsplit(app_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.append(f"SHOPIFY_APP_URL must be an absolute http(s) URL (got {app_url!r}).")
        elif production and parts.scheme != "https" and parts.hostname not in ("127.0.0.1", "localhost"):
            problems.append("SHOPIFY_APP_URL must use https:// in production.")
        app_url = app_url.rstrip("/")

    database_url = required(
        "DATABASE_URL", "set it to a PostgreSQL URL, e.g. postgresql://user:pass@host/amends."
    )
    if database_url:
        database_url = _normalise_database_url(database_url, problems)

    redis_url = required("REDIS_URL", "set it to the Redis URL, e.g. redis://host:6379/0.")
    if redis_url and urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        problems.append(
            f"REDIS_URL must start with redis://, rediss:// or unix:// (got {_scheme(redis_url)})."
        )

    smtp_url = required("SMTP_URL", "set it to smtp://user:pass@host:587 or smtps://user:pass@host:465.")
    if smtp_url and urlsplit(smtp_url).scheme not in ("smtp", "smtps"):
        problems.append(f"SMTP_URL must start with smtp:// or smtps:// (got {_scheme(smtp_url)}).")

    mail_from = required("MAIL_FROM", "set it to the sender address, e.g. Amends <hello@example.com>.")
    if mail_from and not re.search(r"[^@\s<]+@[^@\s>]+", mail_from):
        problems.append(f"MAIL_FROM must contain an email address (got {mail_from!r}).")

    secret_key = required("SECRET_KEY", "set it to a random string of at least 32 characters.")
    if secret_key and production and len(secret_key) < 32:
        problems.append("SECRET_KEY must be at least 32 characters long.")

    token_keys = tuple(k.strip() for k in (get("TOKEN_ENCRYPTION_KEYS") or "").split(",") if k.strip())
    for key in token_keys:
        if not _is_fernet_key(key):
            problems.append(
                "TOKEN_ENCRYPTION_KEYS must be comma-separated Fernet keys "
                "(32 url-safe base64-encoded bytes each)."
            )
            break

    admin_base = get("SHOPIFY_ADMIN_BASE_URL") or defaults.shopify_admin_base
    register_webhooks = (get("SHOPIFY_REGISTER_WEBHOOKS") or "0").lower()
    if register_webhooks not in ("0", "1", "true", "false", "yes", "no"):
        problems.append("SHOPIFY_REGISTER_WEBHOOKS must be 1 or 0 (true or false).")
    try:
        max_bytes = int(get("WEBHOOK_MAX_BYTES") or defaults.webhook_max_bytes)
    except ValueError:
        problems.append("WEBHOOK_MAX_BYTES must be a whole number of bytes.")
        max_bytes = defaults.webhook_max_bytes

    try:
        sweep_seconds = int(get("SWEEP_SECONDS") or defaults.sweep_seconds)
    except ValueError:
        sweep_seconds = 0
    if sweep_seconds < 1:
        problems.append("SWEEP_SECONDS must be a whole number of seconds, 1 or more.")
        sweep_seconds = defaults.sweep_seconds

    if problems:
        raise ConfigError(problems)

    return Config(
        env=mode,
        shopify_api_key=api_key or defaults.shopify_api_key,
        shopify_api_secret=api_secret or defaults.shopify_api_secret,
        shopify_api_secret_old=get("SHOPIFY_API_SECRET_OLD"),
        shopify_credentials_set=api_secret is not None,
        app_url=app_url or defaults.app_url,
        database_url=database_url or defaults.database_url,
        redis_url=redis_url,
        smtp_url=smtp_url,
        mail_from=mail_from or defaults.mail_from,
        secret_key=secret_key or defaults.secret_key,
        token_keys=token_keys,
        shopify_admin_base=admin_base.rstrip("/"),
        register_webhooks=register_webhooks in ("1", "true", "yes"),
        webhook_max_bytes=max_bytes,
        sweep_seconds=sweep_seconds,
        log_level=(get("LOG_LEVEL") or "INFO").upper(),
    )


def _scheme(url: str) -> str:
    return repr(urlsplit(url).scheme + "://") if "://" in url else "no scheme"


def _normalise_database_url(url: str, problems: list[str]) -> str:
    scheme = urlsplit(url).scheme
    # Heroku-style URLs say postgres://; SQLAlchemy wants a driver name.
    if scheme in ("postgres", "postgresql"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if scheme.startswith("postgresql+") or scheme.startswith("sqlite"):
        return url
    problems.append(f"DATABASE_URL must be a postgresql:// or sqlite:// URL (got {_scheme(url)}).")
    return url


def _is_fernet_key(key: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.urlsafe_b64decode(key.encode())) == 32
    except (binascii.Error, ValueError):
        return False
