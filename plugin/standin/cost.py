"""The Admin API's calculated query cost and its leaky bucket, as Shopify documents them.

- Scalars and enums cost 0, an object 1, a connection 2 plus its page size times the cost
  of one node, a list with `first:` that many objects, and a mutation 10.
- The requested cost is worked out from the document before it runs (page sizes as asked);
  the actual cost from what came back (page sizes as returned). The bucket must hold the
  requested cost; the difference is refunded after the call.
- A document asking for more than 1,000 points is refused outright (MAX_COST_EXCEEDED).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql.language import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)
from graphql.utilities import value_from_ast_untyped

MUTATION_COST = 10
MAX_QUERY_COST = 1000
CONNECTION_FIELDS = frozenset({"edges", "nodes", "pageInfo"})


@dataclass(frozen=True)
class Plan:
    name: str
    bucket: float  # maximumAvailable
    restore_rate: float  # points per second


# Restore rates from shopify.dev (GraphQL Admin API rate limits); the bucket sizes are the
# `maximumAvailable` Shopify reports for each plan (20 seconds of restore).
PLANS: dict[str, Plan] = {
    "standard": Plan("standard", 2000.0, 100.0),
    "advanced": Plan("advanced", 4000.0, 200.0),
    "plus": Plan("plus", 20000.0, 1000.0),
    "enterprise": Plan("enterprise", 40000.0, 2000.0),
}


class Bucket:
    """A leaky bucket of points: `take` what a call requests, `refund` what it did not use."""

    def __init__(self, plan: Plan, clock: Callable[[], float] = time.monotonic):
        self.plan = plan
        self._clock = clock
        self._available = plan.bucket
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._available = min(self.plan.bucket, self._available + elapsed * self.plan.restore_rate)
        self._stamp = now

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._available

    def take(self, points: float) -> bool:
        """Take `points` if the bucket holds them; False (and nothing taken) otherwise."""
        with self._lock:
            self._refill()
            if points > self._available:
                return False
            self._available -= points
            return True

    def refund(self, points: float) -> None:
        with self._lock:
            self._refill()
            self._available = min(self.plan.bucket, self._available + max(0.0, points))

    def wait_for(self, points: float) -> float:
        """Seconds until `points` will be available."""
        missing = points - self.available
        return max(0.0, missing / self.plan.restore_rate)

    def status(self) -> dict[str, float]:
        return {
            "maximumAvailable": self.plan.bucket,
            "currentlyAvailable": int(self.available),
            "restoreRate": self.plan.restore_rate,
        }


Fragments = Mapping[str, FragmentDefinitionNode]


def fields_of(selection_set: SelectionSetNode | None, fragments: Fragments) -> list[FieldNode]:
    """Every field of a selection set, fragments flattened (type conditions ignored)."""
    found: list[FieldNode] = []
    if selection_set is None:
        return found
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found.extend(fields_of(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None:
                found.extend(fields_of(fragment.selection_set, fragments))
    return found


def arguments(field: FieldNode, variables: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(variables)
    return {arg.name.value: value_from_ast_untyped(arg.value, values) for arg in field.arguments or ()}


def response_key(field: FieldNode) -> str:
    return field.alias.value if field.alias else field.name.value


def is_connection(field: FieldNode, fragments: Fragments) -> bool:
    return any(f.name.value in CONNECTION_FIELDS for f in fields_of(field.selection_set, fragments))


def page_size(args: Mapping[str, Any]) -> int:
    size = args.get("first") or args.get("last")
    return int(size) if isinstance(size, int) and size > 0 else 1


def selection_cost(
    selection_set: SelectionSetNode | None,
    fragments: Fragments,
    variables: Mapping[str, Any],
    value: Any = None,
    actual: bool = False,
) -> float:
    """The cost of the fields under one object; `value` is that object's answer when
    `actual` is set (so returned page sizes count, not requested ones)."""
    total = 0.0
    for field in fields_of(selection_set, fragments):
        if field.selection_set is None or field.name.value == "__typename":
            continue
        child = value.get(response_key(field)) if actual and isinstance(value, dict) else None
        total += field_cost(field, fragments, variables, child, actual)
    return total


def field_cost(
    field: FieldNode,
    fragments: Fragments,
    variables: Mapping[str, Any],
    value: Any = None,
    actual: bool = False,
) -> float:
    if field.selection_set is None:
        return 0.0
    args = arguments(field, variables)
    if is_connection(field, fragments):
        node_selection, nodes = _connection_nodes(field, fragments, value if actual else None)
        if actual:
            return 2.0 + sum(
                1.0 + selection_cost(node_selection, fragments, variables, node, True) for node in nodes
            )
        return 2.0 + page_size(args) * (1.0 + selection_cost(node_selection, fragments, variables))
    if actual:
        if isinstance(value, list):
            return sum(
                1.0 + selection_cost(field.selection_set, fragments, variables, item, True) for item in value
            )
        return 1.0 + selection_cost(field.selection_set, fragments, variables, value, True)
    count = page_size(args) if ("first" in args or "last" in args) else 1
    return count * (1.0 + selection_cost(field.selection_set, fragments, variables))


def _connection_nodes(
    field: FieldNode, fragments: Fragments, value: Any
) -> tuple[SelectionSetNode | None, list[Any]]:
    """The node selection of a connection field and, given its answer, the nodes returned."""
    selection: SelectionSetNode | None = None
    nodes: list[Any] = []
    for child in fields_of(field.selection_set, fragments):
        name = child.name.value
        answer = value.get(response_key(child)) if isinstance(value, dict) else None
        if name == "nodes":
            selection = child.selection_set
            if isinstance(answer, list) and not nodes:
                nodes = answer
        elif name == "edges":
            for edge_field in fields_of(child.selection_set, fragments):
                if edge_field.name.value == "node":
                    selection = edge_field.selection_set
                    if isinstance(answer, list) and not nodes:
                        key = response_key(edge_field)
                        nodes = [edge.get(key) for edge in answer if isinstance(edge, dict)]
    return selection, nodes


def requested_cost(
    operation: str, roots: list[FieldNode], fragments: Fragments, variables: Mapping[str, Any]
) -> float:
    if operation == "mutation":
        return float(MUTATION_COST * len(roots))
    return sum(field_cost(field, fragments, variables) for field in roots)


def actual_cost(
    operation: str,
    roots: list[FieldNode],
    fragments: Fragments,
    variables: Mapping[str, Any],
    data: Mapping[str, Any],
) -> float:
    if operation == "mutation":
        return float(MUTATION_COST * len(roots))
    return sum(
        field_cost(field, fragments, variables, data.get(response_key(field)), True) for field in roots
    )
