"""Answering a selection set from plain Python data, the way a GraphQL server would.

The stand-in keeps its shops as dicts and lists (`"__typename"` marks each object). This
module cuts an answer out of them: aliases, fragments with type conditions, `__typename`,
lists sliced by `first`/`last`, and Relay connections (`edges`/`node`/`cursor`/`nodes`/
`pageInfo`, paged with `after`/`before`). A field the data does not hold answers null and
is reported, so a document asking for something the stand-in does not model shows up in
its statistics instead of passing unnoticed.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graphql.language import (
    FieldNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)

from plugin.standin.cost import Fragments, arguments, is_connection, response_key

# The concrete types the stand-in answers with; a type condition naming another type is an
# interface or union (`Node`, `DiscountCode`) and applies to every object.
CONCRETE_TYPES = frozenset(
    {
        "Order",
        "Customer",
        "Fulfillment",
        "FulfillmentEvent",
        "FulfillmentOrder",
        "FulfillmentTrackingInfo",
        "LineItem",
        "Return",
        "ReturnLineItem",
        "Refund",
        "Shop",
        "DiscountCodeNode",
        "DiscountCodeBasic",
        "DiscountCodeFreeShipping",
        "DiscountRedeemCode",
        "DiscountPercentage",
        "DiscountAmount",
        "DiscountCustomers",
        "DiscountBuyerSelection",
        "WebhookSubscription",
        "WebhookHttpEndpoint",
        "AppInstallation",
        "AccessScope",
        "MoneyV2",
        "MoneyBag",
        "MailingAddress",
        "Image",
        "BulkOperation",
        "StagedMediaUploadTarget",
        "StagedUploadParameter",
    }
)

MISSING = object()


def cursor_for(index: int) -> str:
    return base64.b64encode(f"standin:{index}".encode()).decode()


def index_of(cursor: Any) -> int | None:
    try:
        text = base64.b64decode(str(cursor).encode()).decode()
        return int(text.split(":", 1)[1]) if text.startswith("standin:") else None
    except (ValueError, UnicodeDecodeError):
        return None


class Projector:
    """Cuts answers out of data for one document; collects the fields it could not find."""

    def __init__(self, fragments: Fragments, variables: Mapping[str, Any]):
        self.fragments = fragments
        self.variables = variables
        self.unknown: list[str] = []

    def value(self, value: Any, field: FieldNode) -> Any:
        """The answer for `field` given the raw data it resolved to."""
        if field.selection_set is None:
            return value
        if value is None:
            return None
        args = arguments(field, self.variables)
        if isinstance(value, Sequence) and not isinstance(value, str):
            if is_connection(field, self.fragments):
                return self.object(connection(value, args), field.selection_set)
            return [self.object(item, field.selection_set) for item in sliced(value, args)]
        return self.object(value, field.selection_set)

    def object(self, data: Any, selection_set: SelectionSetNode) -> Any:
        if data is None:
            return None
        if not isinstance(data, Mapping):
            return data
        answer: dict[str, Any] = {}
        for field in self._collect(selection_set, data.get("__typename")):
            key = response_key(field)
            name = field.name.value
            if name == "__typename":
                answer[key] = data.get("__typename")
                continue
            raw = data.get(name, MISSING)
            if callable(raw):
                raw = _call(raw, arguments(field, self.variables))
            if raw is MISSING:
                self.unknown.append(f"{data.get('__typename') or '?'}.{name}")
                raw = None
            answer[key] = self.value(raw, field)
        return answer

    def _collect(self, selection_set: SelectionSetNode, typename: Any) -> list[FieldNode]:
        found: list[FieldNode] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                found.append(selection)
                continue
            if isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition.name.value if selection.type_condition else None
                inner = selection.selection_set
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is None:
                    continue
                condition = fragment.type_condition.name.value
                inner = fragment.selection_set
            else:  # pragma: no cover - no other selection kinds exist
                continue
            if condition is None or condition == typename or condition not in CONCRETE_TYPES:
                found.extend(self._collect(inner, typename))
        return found


def _call(resolver: Callable[..., Any], args: dict[str, Any]) -> Any:
    return resolver(**args)


def sliced(items: Sequence[Any], args: Mapping[str, Any]) -> Sequence[Any]:
    first, last = args.get("first"), args.get("last")
    if isinstance(first, int):
        items = items[: max(0, first)]
    if isinstance(last, int):
        items = items[-last:] if last > 0 else []
    return items


def connection(items: Sequence[Any], args: Mapping[str, Any]) -> dict[str, Any]:
    """A Relay connection over `items`, paged with first/after or last/before; only the
    page is read, so `items` may make its elements on demand."""
    start, end = 0, len(items)
    after = index_of(args["after"]) if args.get("after") else None
    before = index_of(args["before"]) if args.get("before") else None
    if after is not None:
        start = after + 1
    if before is not None:
        end = min(end, before)
    first, last = args.get("first"), args.get("last")
    if isinstance(first, int):
        end = min(end, start + max(0, first))
    if isinstance(last, int):
        start = max(start, end - max(0, last))
    page = [(i, items[i]) for i in range(start, max(start, end))]
    return {
        "__typename": "Connection",
        "edges": [{"__typename": "Edge", "cursor": cursor_for(i), "node": item} for i, item in page],
        "nodes": [item for _, item in page],
        "pageInfo": {
            "__typename": "PageInfo",
            "hasNextPage": end < len(items),
            "hasPreviousPage": start > 0,
            "startCursor": cursor_for(page[0][0]) if page else None,
            "endCursor": cursor_for(page[-1][0]) if page else None,
        },
    }
