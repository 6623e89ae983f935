"""Check real admin API answers against the OpenAPI document the app serves."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker


class OpenApi:
    def __init__(self, document: dict[str, Any]):
        self.document = document
        self._paths = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", r"[^/]+", path) + "$"), path) for path in document["paths"]
        ]

    def operation(self, method: str, url_path: str) -> tuple[str, dict[str, Any]]:
        for pattern, path in self._paths:
            if pattern.match(url_path):
                operations = self.document["paths"][path]
                assert method.lower() in operations, f"{method} {path} is not documented"
                return path, operations[method.lower()]
        raise AssertionError(f"no documented path matches {url_path}")

    def check(self, method: str, url_path: str, status: int, content_type: str, body: Any) -> str:
        """Assert the answer is documented and its body fits the schema; returns the path."""
        path, operation = self.operation(method, url_path)
        responses = operation["responses"]
        assert str(status) in responses, f"{method} {path} answered {status}, documented: {sorted(responses)}"
        content = responses[str(status)]["content"]
        media = content_type.split(";")[0].strip()
        assert media in content, f"{method} {path} {status} answered {media}, documented {sorted(content)}"
        schema = content[media]["schema"]
        errors = sorted(self._validator(_key(schema)).iter_errors(body), key=lambda e: list(e.path))
        assert not errors, f"{method} {path} {status}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
        )
        return path

    @lru_cache(maxsize=128)  # noqa: B019 - one document per test session
    def _validator(self, schema_key: str) -> Draft202012Validator:
        import json

        schema = {**json.loads(schema_key), "components": self.document["components"]}
        Draft202012Validator.check_schema(schema)
        return Draft202012Validator(schema, format_checker=FormatChecker())


def _key(schema: dict[str, Any]) -> str:
    import json

    return json.dumps(schema, sort_keys=True)
