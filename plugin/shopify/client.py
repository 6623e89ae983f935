"""The GraphQL Admin API transport: tokens, throttling and failures handled for every caller.

- 429 and 5xx honour `Retry-After`; THROTTLED waits for the bucket to refill, computed from
  `extensions.cost.throttleStatus`. Short waits happen here; long ones raise
  `ShopifyRetryableError(retry_after=…)` so the job is retried later without holding a worker.
- A 401 refreshes the token once and retries once; a second 401 is `ShopifyAuthError`.
- Every call first takes its points from the shop's shared budget, so all workers together
  stay within the shop's limit. A caller passes its document's requested cost (Shopify admits
  a call only when the bucket holds that much); what the call did not spend is given back to
  the shared model once Shopify reports the actual cost.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import requests

from plugin import budget, tokens
from plugin.errors import (
    ShopifyAuthError,
    ShopifyResponseError,
    ShopifyRetryableError,
)
from plugin.services import Services

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3.05
READ_TIMEOUT = 20
# Waits up to this long happen inside the call; longer ones go back to the queue.
MAX_INLINE_WAIT_SECONDS = 5.0
MAX_INLINE_ATTEMPTS = 4
DEFAULT_COST = 10  # a mutation costs about 10 points


_shared: tuple[int, requests.Session] | None = None


def shared_session() -> requests.Session:
    """One HTTP session per process, so calls to the Admin API reuse their connections (a TLS
    handshake and CA bundle load each time otherwise). Made after a fork, never inherited."""
    global _shared
    if _shared is None or _shared[0] != os.getpid():
        session = requests.Session()
        # requests reads the proxy variables and ~/.netrc on every call otherwise: a fifth of
        # a call's CPU (cProfile). `from_environment` reads them once per shop instead.
        session.trust_env = False
        _shared = (os.getpid(), session)
    return _shared[1]


@functools.lru_cache(maxsize=10_000)
def from_environment(url: str) -> tuple[dict[str, str], bool | str]:
    """The proxies (HTTPS_PROXY, NO_PROXY) and CA bundle (REQUESTS_CA_BUNDLE) requests would
    take from the environment for `url`. Never a .netrc login: a token is the only credential
    the Admin API gets. requests itself reads them, as it would on each call."""
    with requests.Session() as probe:
        found = probe.merge_environment_settings(url, {}, None, None, None)
    verify = found["verify"]
    return dict(found["proxies"]), True if verify is None else verify


@dataclass
class Cost:
    requested: float = 0
    actual: float = 0
    available: float | None = None
    maximum: float | None = None
    restore_rate: float | None = None


class ShopifyClient:
    def __init__(
        self,
        services: Services,
        shop_domain: str,
        session: requests.Session | None = None,
        token: str | None = None,
    ):
        """`token` checks a token before it is stored (the custom-app command): it is used as
        given, and a 401 is final."""
        self.services = services
        self.shop = shop_domain
        self.fixed_token = token
        self.http = session or shared_session()
        config = services.config
        base = config.shopify_admin_base.replace("{shop}", shop_domain)
        self.url = f"{base}/admin/api/{config.shopify_api_version}/graphql.json"
        self.proxies, self.verify = from_environment(self.url)
        self.points_used = 0.0
        self.calls = 0
        self.last_cost: Cost | None = None

    def graphql(
        self, document: str, variables: dict[str, Any] | None = None, *, cost: int = DEFAULT_COST
    ) -> dict[str, Any]:
        """Run one document; return its `data`. Raises a ShopifyError subclass otherwise."""
        refreshed = False
        rejected: str | None = None
        reserve = float(cost)
        for attempt in range(1, MAX_INLINE_ATTEMPTS + 1):
            budget.acquire(self.services, self.shop, reserve)
            token = self.fixed_token or tokens.access_token(
                self.services, self.shop, force_refresh=refreshed, rejected=rejected
            )
            response = self._post(document, variables, token)
            self.calls += 1

            if response.status_code == 401 and self.fixed_token:
                raise ShopifyAuthError(f"{self.shop}: the access token was refused")
            if response.status_code == 401 and not refreshed:
                log.info("shop %s: Admin API answered 401, refreshing the token once", self.shop)
                refreshed = True
                rejected = token  # replaced once, unless another worker already did
                continue
            if response.status_code == 401:
                tokens.mark_needs_reauth(self.services, self.shop, "Admin API refused the token")
                raise ShopifyAuthError(f"{self.shop}: the access token was refused after a refresh")
            if response.status_code == 429 or response.status_code >= 500:
                wait = _retry_after(response) or min(2.0**attempt, 30.0)
                if wait <= MAX_INLINE_WAIT_SECONDS and attempt < MAX_INLINE_ATTEMPTS:
                    log.info("shop %s: Admin API %s, waiting %.1fs", self.shop, response.status_code, wait)
                    time.sleep(wait)
                    continue
                if response.status_code == 429 and _retry_after(response):
                    # The shop's limit is spent: every worker waits, not just this one.
                    budget.pause(self.services, self.shop, wait)
                raise ShopifyRetryableError(
                    f"{self.shop}: Admin API answered {response.status_code}", retry_after=wait
                )
            if response.status_code != 200:
                raise ShopifyResponseError(f"{self.shop}: Admin API answered {response.status_code}")

            try:
                body = response.json()
            except ValueError as error:
                raise ShopifyRetryableError(f"{self.shop}: Admin API answered non-JSON") from error
            if not isinstance(body, dict):
                # A proxy or an outage page can answer JSON that is not a GraphQL response.
                raise ShopifyRetryableError(f"{self.shop}: Admin API answered non-JSON (not an object)")
            cost_info = self._record_cost(body, reserve)
            errors = body.get("errors")
            if errors:
                if _throttled(errors):
                    wait = _throttle_wait(cost_info, cost)
                    budget.drain(self.services, self.shop, cost_info.available, cost_info.restore_rate)
                    if wait <= MAX_INLINE_WAIT_SECONDS and attempt < MAX_INLINE_ATTEMPTS:
                        log.info("shop %s: THROTTLED, waiting %.1fs", self.shop, wait)
                        time.sleep(wait)
                        continue
                    raise ShopifyRetryableError(f"{self.shop}: THROTTLED", retry_after=wait)
                messages = "; ".join(str(e.get("message", e)) for e in errors)
                raise ShopifyResponseError(f"{self.shop}: GraphQL errors: {messages}")
            data = body.get("data")
            if not isinstance(data, dict):
                raise ShopifyResponseError(f"{self.shop}: GraphQL answered no data")
            return data
        raise ShopifyRetryableError(f"{self.shop}: Admin API still failing after {MAX_INLINE_ATTEMPTS} tries")

    def _post(self, document: str, variables: dict[str, Any] | None, token: str) -> requests.Response:
        try:
            return self.http.post(
                self.url,
                json={"query": document, "variables": variables or {}},
                headers={"X-Shopify-Access-Token": token, "Content-Type": "application/json"},
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                proxies=dict(self.proxies),  # requests may add to it
                verify=self.verify,
            )
        except requests.RequestException as error:
            raise ShopifyRetryableError(
                f"{self.shop}: {type(error).__name__} reaching the Admin API"
            ) from error

    def _record_cost(self, body: dict[str, Any], reserved: float) -> Cost:
        raw = (body.get("extensions") or {}).get("cost") or {}
        status = raw.get("throttleStatus") or {}
        cost = Cost(
            requested=float(raw.get("requestedQueryCost") or 0),
            actual=float(raw.get("actualQueryCost") or 0),
            available=status.get("currentlyAvailable"),
            maximum=status.get("maximumAvailable"),
            restore_rate=status.get("restoreRate"),
        )
        self.points_used += cost.actual
        self.last_cost = cost
        # A THROTTLED answer has no actual cost: nothing was spent, and `drain` takes over.
        unspent = reserved - cost.actual if raw.get("actualQueryCost") is not None else 0.0
        if cost.available is not None:
            budget.observe(
                self.services, self.shop, cost.available, cost.maximum, cost.restore_rate, unspent=unspent
            )
        return cost


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _throttled(errors: list[dict[str, Any]]) -> bool:
    return any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors)


def _throttle_wait(cost: Cost, wanted: float) -> float:
    if cost.restore_rate and cost.available is not None:
        needed = max(cost.requested or wanted, wanted) - cost.available
        return max(0.5, needed / cost.restore_rate)
    return 1.0
