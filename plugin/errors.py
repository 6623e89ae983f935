"""The one exception tree. Data lives in attributes, not only in the message."""

from __future__ import annotations


class AppError(Exception):
    """Base of every error Amends raises on purpose."""


class ConfigError(AppError):
    """Configuration is missing or malformed; `problems` names each one."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Amends cannot start:\n" + "\n".join(f"  - {p}" for p in problems))


class RetryableError(AppError):
    """A passing failure: the job raises it and the queue retries with backoff.

    `retry_after` is a hint in seconds from the far side (Retry-After, throttle status).
    """

    def __init__(self, message: str, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(AppError):
    """A failure a retry will not fix: recorded on the incident for a person to look at."""


class ShopifyError(AppError):
    """Base of Admin API failures."""


class ShopifyRetryableError(ShopifyError, RetryableError):
    """429, 5xx, THROTTLED or a connection error."""


class ShopifyAuthError(ShopifyError, PermanentError):
    """The shop's token was refused and could not be refreshed: the shop must re-authenticate."""


class TokenGrantError(ShopifyError, PermanentError):
    """Shopify's token endpoint refused a grant for good (a used code, an expired or revoked
    refresh token, an invalid session token). `code` is Shopify's `error` value."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        self.status = status
        self.code = code
        super().__init__(message)


class TokenGrantRetryableError(ShopifyRetryableError):
    """The token endpoint could not be reached or answered 429/5xx: try again later."""


class ShopifyUserError(ShopifyError, PermanentError):
    """A mutation answered `userErrors`."""

    def __init__(self, message: str, user_errors: list[dict] | None = None):
        self.user_errors = user_errors or []
        super().__init__(message)


class ShopifyResponseError(ShopifyError, PermanentError):
    """GraphQL answered with `errors` that are not throttling (a bad document, a missing scope)."""


class MailError(AppError):
    """Base of mail transport failures."""


class MailRetryableError(MailError, RetryableError):
    """SMTP 4xx or a connection failure."""


class MailPermanentError(MailError, PermanentError):
    """SMTP 5xx: the server refused the message for good."""


class ClaimHeldError(RetryableError):
    """Another worker holds the claim to send this message right now; `retry_after` is when
    its claim ends (plugin.sending)."""


class ShopNotFoundError(PermanentError):
    """The shop a job refers to is gone or uninstalled."""


class TemplateError(PermanentError):
    """A merchant template does not compile or render."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


class AuthError(AppError):
    """A request's credentials were refused. `status` is the HTTP answer."""

    def __init__(self, reason: str, status: int = 401):
        self.reason = reason
        self.status = status
        super().__init__(reason)


class InstallRequiredError(AuthError):
    """The shop must (re)install through OAuth first: send the top frame to `location`."""

    def __init__(self, reason: str, location: str):
        self.location = location
        super().__init__(reason, status=302)


class SessionTokenExpiredError(AuthError):
    """A session token that was valid but has expired: App Bridge can fetch a fresh one."""


class RequestError(AppError):
    """An admin API request refused on purpose: `status` is the HTTP answer and `fields` maps
    each invalid field (dotted path) to its message."""

    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None):
        self.status = status
        self.message = message
        self.fields = fields
        super().__init__(message)
