"""Shopify's Admin GraphQL schema, for validating the documents (and variables) we send.

The stored copy is 2025-01; the fields newer versions added that Amends uses are added here,
as the schema folder's README lists. Tests skip with a clear message when the folder is absent;
the Shopify fakes, which validate every document they answer, then answer without validating
(a skip raised inside the app's HTTP call would surface as an app error, not a skip).
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from graphql import GraphQLSchema, build_client_schema, extend_schema, parse, validate
from graphql.execution.values import get_variable_values
from graphql.language import OperationDefinitionNode

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "shopify-admin-schema"
INTROSPECTION = SCHEMA_DIR / "admin-graphql-2025-01.introspection.json.gz"

# What 2025-10 and later added that our documents use.
NEWER_FIELDS = """
enum DiscountBuyerSelection { ALL }
input DiscountContextInput {
  all: DiscountBuyerSelection
  customers: DiscountCustomersInput
  customerSegments: DiscountCustomerSegmentsInput
}
extend input DiscountCodeBasicInput { context: DiscountContextInput }
extend input DiscountCodeFreeShippingInput { context: DiscountContextInput }
extend input WebhookSubscriptionInput { uri: String }
extend type WebhookSubscription { uri: String! }
"""


@cache
def admin_schema() -> GraphQLSchema:
    if not INTROSPECTION.exists():
        pytest.skip(f"Shopify's schema copy is not at {SCHEMA_DIR} (see its README)")
    with gzip.open(INTROSPECTION) as handle:
        introspection = json.load(handle)
    schema = extend_schema(build_client_schema(introspection["data"]), parse(NEWER_FIELDS))
    # Shopify's own schema breaks two of graphql-core's strict rules on deprecations
    # (an interface field not deprecated where an implementation is): accept it as published.
    schema._validation_errors = []
    return schema


def document_errors(document: str, variables: dict[str, Any] | None = None) -> list[str]:
    """Every way `document` (and, when given, `variables`) fails to fit the schema."""
    schema = admin_schema()
    ast = parse(document)
    errors = [error.message for error in validate(schema, ast)]
    if errors or variables is None:
        return errors
    for definition in ast.definitions:
        if isinstance(definition, OperationDefinitionNode):
            coerced = get_variable_values(schema, definition.variable_definitions or [], variables)
            if isinstance(coerced, list):
                errors.extend(error.message for error in coerced)
    return errors


def assert_valid(document: str, variables: dict[str, Any] | None = None) -> None:
    errors = document_errors(document, variables)
    assert errors == [], "the document does not fit Shopify's schema:\n" + "\n".join(errors)


def assert_valid_where_available(document: str, variables: dict[str, Any] | None = None) -> None:
    """For the fakes: `assert_valid` when the schema copy is here, nothing otherwise."""
    if INTROSPECTION.exists():
        assert_valid(document, variables)
