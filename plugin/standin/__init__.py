"""A local Shopify Admin API for development, tests and benchmarks.

It answers the GraphQL documents Amends sends (orders with customers and fulfillments,
discount codes with `TAKEN` on a duplicate, tags, webhook subscriptions, the scan's order
pages) and the OAuth token grants, for any shop, with a configurable latency and Shopify's
calculated-cost leaky bucket (`extensions.cost` on every answer, THROTTLED when the bucket is
short). It counts every call and mutation, and can inject 5xx, 429 and THROTTLED faults.

    with StandIn(latency=0.1) as shopify:
        config = config.with_overrides(shopify_admin_base=shopify.admin_base)
        ...
        assert shopify.stats()["mutations"]["discountCodeBasicCreate"] == 1

or as a process: `python -m plugin.standin --port 8089 --latency-ms 100`.
Needs graphql-core (a development dependency); production never starts it.
"""

from plugin.standin.cost import PLANS, Bucket, Plan
from plugin.standin.server import FAULT_KINDS, Call, StandIn

__all__ = ["FAULT_KINDS", "PLANS", "Bucket", "Call", "Plan", "StandIn"]
