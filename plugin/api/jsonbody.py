"""Bodies checked against the very JSON schema the OpenAPI document publishes for them, with
a merchant-readable message per field ("late_delivery.value": "must be at most 100000")."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from plugin.errors import RequestError

# Text that PostgreSQL can store: no NUL characters.
STORABLE_TEXT = r"^[^\x00]*$"


Components = Callable[[], dict[str, dict[str, Any]]]


def check(components: Components, name: str, data: Any, prefix: str = "") -> None:
    """Raise RequestError(422) naming each field of `data` that does not fit the schema
    `name` among `components()` (a function, so the validator is built once)."""
    errors = list(_validator(components, name).iter_errors(data))
    if errors:
        fields: dict[str, str] = {}
        for error in errors:
            for path, message in _messages(error):
                full = ".".join(part for part in (prefix, path) if part)
                fields.setdefault(full or "body", message)
        raise RequestError(422, "Some fields are invalid.", fields)


@functools.cache
def _validator(components: Components, name: str) -> Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": components()}}
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _messages(error: SchemaError) -> list[tuple[str, str]]:
    path = ".".join(str(part) for part in error.absolute_path)
    if error.validator == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - known) if isinstance(error.instance, dict) else []
        return [(f"{path}.{name}" if path else name, "is not a setting Amends knows") for name in extra]
    return [(path, _friendly(error))]


def _friendly(error: SchemaError) -> str:
    kind = error.validator
    value = error.validator_value
    if kind in ("anyOf", "oneOf", "allOf") and error.context:
        specific = [sub for sub in error.context if sub.validator != "type"]
        return _friendly(specific[0]) if specific else "has the wrong type"
    return {
        "type": lambda: f"must be {_type_name(value)}",
        "enum": lambda: "must be one of: " + ", ".join(str(v) for v in value),
        "pattern": lambda: "is not in the expected format",
        "minimum": lambda: f"must be at least {value}",
        "maximum": lambda: f"must be at most {value}",
        "minLength": lambda: f"must be at least {value} characters long",
        "maxLength": lambda: f"must be at most {value} characters long",
    }.get(str(kind), lambda: error.message)()


def _type_name(value: Any) -> str:
    names = {"boolean": "true or false", "integer": "a whole number", "number": "a number",
             "string": "text", "object": "an object", "null": "null", "array": "a list"}  # fmt: skip
    if isinstance(value, list):
        return " or ".join(names.get(str(v), str(v)) for v in value)
    return names.get(value, str(value))
