"""Apology discount codes in the shop: one mutation per code, never two codes per incident.

`create_discount_code(client, spec)` creates the code with `discountCodeBasicCreate`
(percentage or fixed amount) or `discountCodeFreeShippingCreate`. A `TAKEN` user error means
an earlier attempt already created it (the code is derived from the incident): the code is
looked up with `codeDiscountNodeByCode`, confirmed to be this incident's by its title, and
returned as if just created. Any other user error raises `ShopifyUserError` with Shopify's
message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from plugin.errors import ShopifyUserError
from plugin.models.discount import FIXED_AMOUNT, FREE_SHIPPING, PERCENTAGE
from plugin.shopify.client import ShopifyClient

log = logging.getLogger(__name__)

CREATE_BASIC_CODE = """
mutation CreateApologyCode($discount: DiscountCodeBasicInput!) {
  discountCodeBasicCreate(basicCodeDiscount: $discount) {
    codeDiscountNode { id }
    userErrors { code field message }
  }
}
"""

CREATE_FREE_SHIPPING_CODE = """
mutation CreateApologyFreeShippingCode($discount: DiscountCodeFreeShippingInput!) {
  discountCodeFreeShippingCreate(freeShippingCodeDiscount: $discount) {
    codeDiscountNode { id }
    userErrors { code field message }
  }
}
"""

FIND_CODE = """
query FindApologyCode($code: String!) {
  codeDiscountNodeByCode(code: $code) {
    id
    codeDiscount {
      __typename
      ... on DiscountCodeBasic { title }
      ... on DiscountCodeFreeShipping { title }
      ... on DiscountCodeBxgy { title }
      ... on DiscountCodeApp { title }
    }
  }
}
"""


@dataclass(frozen=True)
class CodeSpec:
    """What the apology code is; `marker` is written in the title and proves it is ours."""

    code: str
    title: str
    marker: str
    compensation: str  # plugin.models.discount: percentage / fixed_amount / free_shipping
    value: Decimal | None
    starts_at: datetime
    ends_at: datetime
    customer_id: int | None = None
    minimum_order: Decimal | None = None
    combines_with_order_discounts: bool = False
    combines_with_product_discounts: bool = False
    combines_with_shipping_discounts: bool = True


@dataclass(frozen=True)
class CreatedCode:
    shopify_id: str
    mutation: str  # the mutation that created it (for the timeline)
    existed: bool  # an earlier attempt had created it already (TAKEN)


def create_discount_code(client: ShopifyClient, spec: CodeSpec) -> CreatedCode:
    document, mutation, variables = mutation_for(spec)
    data = client.graphql(document, variables)
    payload = data.get(mutation) or {}
    errors = payload.get("userErrors") or []
    if not errors:
        node = payload.get("codeDiscountNode") or {}
        if not node.get("id"):
            raise ShopifyUserError(f"{mutation} answered neither a discount nor an error", [])
        return CreatedCode(shopify_id=node["id"], mutation=mutation, existed=False)
    if all(_is_taken(error) for error in errors):
        shopify_id = confirm_ours(client, spec)
        log.info("shop %s: code for %s existed already (%s)", client.shop, spec.marker, shopify_id)
        return CreatedCode(shopify_id=shopify_id, mutation=mutation, existed=True)
    raise ShopifyUserError(_describe(errors), errors)


def confirm_ours(client: ShopifyClient, spec: CodeSpec) -> str:
    """The id of the discount holding `spec.code`, when its title carries our marker."""
    data = client.graphql(FIND_CODE, {"code": spec.code}, cost=5)
    node = data.get("codeDiscountNodeByCode")
    if not node:
        raise ShopifyUserError(
            f"the code {spec.code} is taken, but no discount in the shop holds it", [{"code": "TAKEN"}]
        )
    title = str((node.get("codeDiscount") or {}).get("title") or "")
    if spec.marker not in title:
        raise ShopifyUserError(
            f"the code {spec.code} is already used by another discount in the shop ({title!r})",
            [{"code": "TAKEN"}],
        )
    return str(node["id"])


def mutation_for(spec: CodeSpec) -> tuple[str, str, dict[str, Any]]:
    """(document, mutation name, variables) for `spec`."""
    discount: dict[str, Any] = {
        "title": spec.title,
        "code": spec.code,
        "startsAt": _iso(spec.starts_at),
        "endsAt": _iso(spec.ends_at),
        "usageLimit": 1,
        "appliesOncePerCustomer": True,
        "context": (
            {"customers": {"add": [f"gid://shopify/Customer/{spec.customer_id}"]}}
            if spec.customer_id
            else {"all": "ALL"}
        ),
        "combinesWith": {
            "orderDiscounts": spec.combines_with_order_discounts,
            "productDiscounts": spec.combines_with_product_discounts,
            "shippingDiscounts": spec.combines_with_shipping_discounts,
        },
    }
    if spec.minimum_order:
        discount["minimumRequirement"] = {
            "subtotal": {"greaterThanOrEqualToSubtotal": _decimal(spec.minimum_order)}
        }
    if spec.compensation == FREE_SHIPPING:
        # Free shipping cannot combine with another shipping discount.
        discount["combinesWith"]["shippingDiscounts"] = False
        discount["destination"] = {"all": True}
        return CREATE_FREE_SHIPPING_CODE, "discountCodeFreeShippingCreate", {"discount": discount}
    if spec.value is None or spec.value <= 0:
        raise ValueError(f"a {spec.compensation} code needs a positive value")
    if spec.compensation == PERCENTAGE:
        value: dict[str, Any] = {"percentage": float(spec.value / 100)}
    elif spec.compensation == FIXED_AMOUNT:
        value = {"discountAmount": {"amount": _decimal(spec.value), "appliesOnEachItem": False}}
    else:
        raise ValueError(f"no discount code for compensation {spec.compensation!r}")
    discount["customerGets"] = {"value": value, "items": {"all": True}}
    return CREATE_BASIC_CODE, "discountCodeBasicCreate", {"discount": discount}


def _is_taken(error: dict[str, Any]) -> bool:
    """The code itself is taken (field ["basicCodeDiscount", "code"], or no field given)."""
    field = [str(f) for f in (error.get("field") or [])]
    return error.get("code") == "TAKEN" and (not field or field[-1] == "code")


def _describe(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors:
        field = ".".join(str(f) for f in (error.get("field") or []))
        parts.append(f"{error.get('message') or error.get('code')}" + (f" ({field})" if field else ""))
    return "Shopify refused the discount code: " + "; ".join(parts)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _decimal(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"
