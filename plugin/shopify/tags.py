"""Order tags, so staff see Amends' incidents in the Shopify admin too; and the order's link."""

from __future__ import annotations

from plugin.errors import ShopifyUserError
from plugin.shopify.client import ShopifyClient

TAG_ORDER = """
mutation TagOrder($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node { id }
    userErrors { field message }
  }
}
"""


def tag_order(client: ShopifyClient, order_id: int, tags: list[str]) -> None:
    """Add `tags` to the order (tags it already has stay as they are: adding is idempotent)."""
    data = client.graphql(TAG_ORDER, {"id": f"gid://shopify/Order/{order_id}", "tags": tags})
    payload = data.get("tagsAdd") or {}
    errors = payload.get("userErrors") or []
    if errors:
        messages = "; ".join(str(e.get("message")) for e in errors)
        raise ShopifyUserError(f"Shopify refused the order tag: {messages}", errors)


def order_admin_url(shop_domain: str, order_id: int) -> str:
    """The order's page in the Shopify admin."""
    store = shop_domain.removesuffix(".myshopify.com")
    return f"https://admin.shopify.com/store/{store}/orders/{order_id}"
