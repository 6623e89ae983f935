"""The shop's own details (name, contact email, currency) and the scopes Amends holds there."""

from __future__ import annotations

from dataclasses import dataclass

from plugin.shopify.client import ShopifyClient

SHOP_DETAILS_QUERY = """
query AmendsShopDetails {
  shop { name email currencyCode }
  currentAppInstallation { accessScopes { handle } }
}
"""


@dataclass(frozen=True)
class ShopDetails:
    name: str | None
    email: str | None
    currency: str | None
    scopes: str


def fetch_shop_details(client: ShopifyClient) -> ShopDetails:
    data = client.graphql(SHOP_DETAILS_QUERY, cost=3)
    shop = data.get("shop") or {}
    installation = data.get("currentAppInstallation") or {}
    scopes = ",".join(s["handle"] for s in installation.get("accessScopes") or [] if s.get("handle"))
    return ShopDetails(
        name=shop.get("name"),
        email=shop.get("email"),
        currency=shop.get("currencyCode"),
        scopes=scopes,
    )
