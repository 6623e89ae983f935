"""Per-shop webhook subscriptions, for installs that do not deploy shopify.app.toml (custom
apps, or SHOPIFY_REGISTER_WEBHOOKS=1).

`ensure_subscriptions` is idempotent: it reads the app's existing subscriptions first, creates
only the missing topics, and points a subscription at another address back at ours. A
reinstall therefore never adds a duplicate. The compliance topics are not here: Shopify only
takes them from the TOML (a custom app does not receive them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from plugin.errors import ShopifyUserError
from plugin.shopify.client import ShopifyClient

log = logging.getLogger(__name__)

# Every topic Amends handles except the compliance topics; `actions.topics.HANDLERS` and
# shopify.app.toml list the same (a test holds the three together).
TOPICS = (
    "app/uninstalled",
    "fulfillment_events/create",
    "fulfillments/update",
    "orders/create",
    "refunds/create",
    "returns/approve",
    "returns/cancel",
    "returns/close",
    "returns/decline",
    "returns/reopen",
    "returns/request",
    "returns/update",
)

# Shopify drops a delivery whose payload does not match its subscription's filter (search
# syntax, API 2024-07 and later): most fulfillment events (in transit, out for delivery…) need
# nothing from Amends, so they are never sent. The same filters are in shopify.app.toml, and
# tests/test_install.py holds them equal to what actions.topics.skip_reason lets through.
FILTERS = {
    "fulfillment_events/create": (
        "status:delayed OR status:failure OR status:attempted_delivery OR status:delivered"
    ),
    "fulfillments/update": (
        "shipment_status:delayed OR shipment_status:failure OR shipment_status:attempted_delivery"
        " OR shipment_status:delivered"
    ),
}

SUBSCRIPTIONS_QUERY = """
query AmendsWebhookSubscriptions($first: Int!) {
  webhookSubscriptions(first: $first) {
    nodes { id topic uri filter }
  }
}
"""

SUBSCRIPTION_CREATE = """
mutation AmendsWebhookSubscriptionCreate(
  $topic: WebhookSubscriptionTopic!
  $webhookSubscription: WebhookSubscriptionInput!
) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri filter }
    userErrors { field message }
  }
}
"""

SUBSCRIPTION_UPDATE = """
mutation AmendsWebhookSubscriptionUpdate($id: ID!, $webhookSubscription: WebhookSubscriptionInput!) {
  webhookSubscriptionUpdate(id: $id, webhookSubscription: $webhookSubscription) {
    webhookSubscription { id topic uri filter }
    userErrors { field message }
  }
}
"""


@dataclass
class Registration:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def enum_name(topic: str) -> str:
    """ "fulfillment_events/create" → "FULFILLMENT_EVENTS_CREATE"."""
    return topic.upper().replace("/", "_")


def ensure_subscriptions(client: ShopifyClient, uri: str) -> Registration:
    """Subscribe the shop to every topic in TOPICS at `uri` (the absolute /webhooks URL)."""
    data = client.graphql(SUBSCRIPTIONS_QUERY, {"first": 100}, cost=12)
    existing: dict[str, list[dict[str, str]]] = {}
    for node in data["webhookSubscriptions"]["nodes"]:
        existing.setdefault(node["topic"], []).append(node)
    result = Registration()
    for topic in TOPICS:
        found = existing.get(enum_name(topic), [])
        wanted = FILTERS.get(topic)
        ours = [node for node in found if node.get("uri") == uri]
        if any(wanted is None or node.get("filter") == wanted for node in ours):
            result.kept.append(topic)
        elif found:
            # Another address, or our address with an older filter: one subscription, made right.
            node = (ours or found)[0]
            _run(client, "webhookSubscriptionUpdate", SUBSCRIPTION_UPDATE, {"id": node["id"]}, uri, wanted)
            result.updated.append(topic)
        else:
            _run(
                client,
                "webhookSubscriptionCreate",
                SUBSCRIPTION_CREATE,
                {"topic": enum_name(topic)},
                uri,
                wanted,
            )
            result.created.append(topic)
    log.info(
        "shop %s webhooks: %d created, %d updated, %d already there",
        client.shop,
        len(result.created),
        len(result.updated),
        len(result.kept),
    )
    return result


def _run(
    client: ShopifyClient, name: str, document: str, variables: dict[str, str], uri: str, filter: str | None
) -> None:
    subscription = {"uri": uri, "format": "JSON"}
    if filter:
        subscription["filter"] = filter
    data = client.graphql(document, {**variables, "webhookSubscription": subscription})
    errors = data[name]["userErrors"]
    if errors:
        messages = "; ".join(str(e.get("message")) for e in errors)
        raise ShopifyUserError(f"{client.shop}: {name}: {messages}", errors)
