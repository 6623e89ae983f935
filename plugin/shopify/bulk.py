"""Bulk mutations: Shopify runs one mutation once per line of a JSONL file of variables.

One `stagedUploadsCreate` (where to upload), one upload, one `bulkOperationRunMutation`, then
a status query now and then: about 20 points for any number of lines, where calling the
mutation once per line costs 10 points each. Shopify runs the lines asynchronously (seconds
to minutes) and writes one result line per input line, each with its `__lineNumber`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import requests

from plugin.errors import ShopifyResponseError, ShopifyRetryableError, ShopifyUserError
from plugin.shopify.client import CONNECT_TIMEOUT, READ_TIMEOUT, ShopifyClient

STAGE = """
mutation StageBulkVariables($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url parameters { name value } }
    userErrors { field message }
  }
}
"""

RUN = """
mutation RunBulkMutation($mutation: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path) {
    bulkOperation { id status }
    userErrors { field message }
  }
}
"""

STATUS = """
query BulkOperationStatus($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode objectCount url partialDataUrl }
  }
}
"""

# BulkOperationStatus values after which nothing changes.
FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})


@dataclass(frozen=True)
class BulkStatus:
    status: str
    error_code: str | None
    url: str | None  # the results file, once COMPLETED (None when no line produced output)
    partial_url: str | None  # what was written before a FAILED operation stopped

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


def start(client: ShopifyClient, mutation: str, lines: Sequence[dict[str, Any]]) -> str:
    """Upload `lines` (one variables object each) and start `mutation` over them; returns
    the BulkOperation's id."""
    data = client.graphql(
        STAGE,
        {
            "input": [
                {
                    "resource": "BULK_MUTATION_VARIABLES",
                    "filename": "variables.jsonl",
                    "mimeType": "text/jsonl",
                    "httpMethod": "POST",
                }
            ]
        },
    )
    staged = data.get("stagedUploadsCreate") or {}
    _refuse(staged, "staging the bulk variables")
    targets = staged.get("stagedTargets") or []
    if not targets or not targets[0].get("url"):
        raise ShopifyResponseError(f"{client.shop}: stagedUploadsCreate gave no upload target")
    target = targets[0]
    form = {p["name"]: p["value"] for p in target.get("parameters") or []}
    path = form.get("key")
    if not path:
        raise ShopifyResponseError(f"{client.shop}: stagedUploadsCreate gave no `key` parameter")
    body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    _upload(client, target["url"], form, body)

    data = client.graphql(RUN, {"mutation": mutation, "path": path})
    run = data.get("bulkOperationRunMutation") or {}
    _refuse(run, "starting the bulk mutation")
    operation = run.get("bulkOperation") or {}
    if not operation.get("id"):
        raise ShopifyResponseError(f"{client.shop}: bulkOperationRunMutation gave no operation")
    return str(operation["id"])


def status(client: ShopifyClient, operation_id: str) -> BulkStatus:
    data = client.graphql(STATUS, {"id": operation_id}, cost=1)
    node = data.get("node")
    if not isinstance(node, dict) or not node.get("status"):
        raise ShopifyResponseError(f"{client.shop}: bulk operation {operation_id} not found")
    return BulkStatus(
        status=str(node["status"]),
        error_code=node.get("errorCode"),
        url=node.get("url"),
        partial_url=node.get("partialDataUrl"),
    )


def results(client: ShopifyClient, url: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, that line's result: {"data": …} or {"errors": …}) from a results file."""
    try:
        response = client.http.get(url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as error:
        raise ShopifyRetryableError(f"{client.shop}: {type(error).__name__} fetching bulk results") from error
    if response.status_code >= 500:
        raise ShopifyRetryableError(f"{client.shop}: bulk results answered {response.status_code}")
    if response.status_code != 200:
        raise ShopifyResponseError(f"{client.shop}: bulk results answered {response.status_code}")
    for text in response.text.splitlines():
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            number = int(line["__lineNumber"])
        except (ValueError, KeyError, TypeError):
            continue  # not a result line: the caller treats its input line as unanswered
        yield number, line


def _upload(client: ShopifyClient, url: str, form: dict[str, str], body: bytes) -> None:
    # The storage service wants the form fields before the file, which `requests` keeps.
    try:
        response = client.http.post(
            url,
            data=form,
            files={"file": ("variables.jsonl", body, "text/jsonl")},
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except requests.RequestException as error:
        problem = f"{client.shop}: {type(error).__name__} uploading bulk variables"
        raise ShopifyRetryableError(problem) from error
    if response.status_code >= 500 or response.status_code == 429:
        raise ShopifyRetryableError(f"{client.shop}: the staged upload answered {response.status_code}")
    if response.status_code not in (200, 201, 204):
        raise ShopifyResponseError(f"{client.shop}: the staged upload answered {response.status_code}")


def _refuse(payload: dict[str, Any], doing: str) -> None:
    errors = payload.get("userErrors") or []
    if errors:
        messages = "; ".join(str(e.get("message")) for e in errors)
        raise ShopifyUserError(f"Shopify refused {doing}: {messages}", errors)
