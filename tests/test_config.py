import pytest

from plugin.config import Config
from plugin.errors import ConfigError

PRODUCTION = {
    "AMENDS_ENV": "production",
    "SHOPIFY_API_KEY": "key",
    "SHOPIFY_API_SECRET": "secret",
    "SHOPIFY_APP_URL": "https://amends.example.com",
    "DATABASE_URL": "postgres://u:p@db/amends",
    "REDIS_URL": "redis://cache:6379/0",
    "SMTP_URL": "smtps://user:pass@mail.example.com:465",
    "MAIL_FROM": "Amends <hello@example.com>",
    "SECRET_KEY": "x" * 40,
}


def test_complete_production_environment_loads():
    config = Config.from_env(PRODUCTION)
    assert config.production
    assert config.database_url == "postgresql+psycopg://u:p@db/amends"
    assert config.webhook_secrets == ("secret",)
    assert not config.dev_login


@pytest.mark.parametrize("name", [k for k in PRODUCTION if k != "AMENDS_ENV"])
def test_each_missing_value_is_named(name):
    env = {k: v for k, v in PRODUCTION.items() if k != name}
    with pytest.raises(ConfigError) as error:
        Config.from_env(env)
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith(f"{name} is not set")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SHOPIFY_APP_URL", "amends.example.com", "SHOPIFY_APP_URL must be an absolute"),
        ("SHOPIFY_APP_URL", "http://amends.example.com", "SHOPIFY_APP_URL must use https://"),
        ("DATABASE_URL", "mysql://db/amends", "DATABASE_URL must be a postgresql:// or sqlite://"),
        ("REDIS_URL", "http://cache", "REDIS_URL must start with redis://"),
        ("SMTP_URL", "mail.example.com:25", "SMTP_URL must start with smtp://"),
        ("MAIL_FROM", "Amends", "MAIL_FROM must contain an email address"),
        ("SECRET_KEY", "short", "SECRET_KEY must be at least 32 characters"),
        ("TOKEN_ENCRYPTION_KEYS", "not-a-key", "TOKEN_ENCRYPTION_KEYS must be comma-separated"),
        ("WEBHOOK_MAX_BYTES", "lots", "WEBHOOK_MAX_BYTES must be a whole number"),
        ("SWEEP_SECONDS", "soon", "SWEEP_SECONDS must be a whole number of seconds"),
        ("SWEEP_SECONDS", "0", "SWEEP_SECONDS must be a whole number of seconds"),
        ("AMENDS_ENV", "staging", "AMENDS_ENV must be one of"),
    ],
)
def test_each_malformed_value_is_explained(name, value, expected):
    with pytest.raises(ConfigError) as error:
        Config.from_env({**PRODUCTION, name: value})
    assert len(error.value.problems) == 1
    assert error.value.problems[0].startswith(expected)


def test_sweep_seconds_default_to_a_minute_and_can_be_set():
    assert Config.from_env(PRODUCTION).sweep_seconds == 60
    assert Config.from_env({**PRODUCTION, "SWEEP_SECONDS": "5"}).sweep_seconds == 5


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        Config.from_env({"AMENDS_ENV": "production"})
    assert len(error.value.problems) == len(PRODUCTION) - 1
    assert "Amends cannot start" in str(error.value)


def test_development_runs_with_embedded_defaults():
    config = Config.from_env({"AMENDS_ENV": "development"})
    assert config.database_url.startswith("sqlite:///")
    assert config.redis_url is None and config.smtp_url is None
    assert config.dev_login


def test_dev_login_is_never_on_when_a_real_secret_is_set():
    config = Config.from_env({"AMENDS_ENV": "development", "SHOPIFY_API_SECRET": "real"})
    assert not config.dev_login


def test_unset_environment_means_production():
    with pytest.raises(ConfigError):
        Config.from_env({})
