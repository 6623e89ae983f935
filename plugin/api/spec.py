"""The admin API's route table.

Each operation is declared once, next to its view, with its query, body and responses as
pydantic models. The Flask rule, the session-token check, the parsing of the request (422 with
a message per field), the JSON answer and `GET /api/openapi.json` all come from that one
declaration, so the document cannot drift from what the routes do.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from plugin.api import jsonbody
from plugin.auth.session import require_shop
from plugin.errors import RequestError

REF = "#/components/schemas/{model}"
# Primary keys are 32-bit on PostgreSQL: a larger id is simply not there.
MAX_ID = 2**31 - 1
_PATH_PARAM = re.compile(r"<(?:(\w+):)?(\w+)>")


class ErrorBody(BaseModel):
    error: str
    message: str


class ValidationErrorBody(ErrorBody):
    fields: dict[str, str]


@dataclass(frozen=True)
class Reply:
    """One documented answer. `schema` is a raw JSON schema for answers that are not a model
    (a download)."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    schema: dict[str, Any] | None = None
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RawBody:
    """A body given to the view as a dict after it fits the JSON schema `name` among
    `components()` (e.g. a settings patch, which plugin.settings then validates merged)."""

    name: str
    components: Callable[[], dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str
    endpoint: str
    summary: str
    tag: str
    description: str | None
    query: type[BaseModel] | None
    body: type[BaseModel] | RawBody | None
    replies: tuple[Reply, ...]
    public: bool

    @property
    def path(self) -> str:
        """The OpenAPI form of the Flask rule: /api/incidents/{incident_id}."""
        return _PATH_PARAM.sub(lambda m: "{" + m.group(2) + "}", self.rule)

    @property
    def path_params(self) -> list[tuple[str, str]]:
        return [(m.group(2), m.group(1) or "string") for m in _PATH_PARAM.finditer(self.rule)]


UNAUTHORIZED = Reply(
    401,
    "No valid session token (or, in dev mode only, no demo shop).",
    ErrorBody,
    headers={
        "X-Shopify-Retry-Invalid-Session-Request": {
            "description": "Always 1: App Bridge fetches a new session token and retries.",
            "schema": {"type": "string", "enum": ["1"]},
        }
    },
)
INVALID = Reply(422, "The request is invalid; `fields` names each invalid field.", ValidationErrorBody)


class RouteTable:
    def __init__(self, blueprint: Blueprint, prefix: str):
        self.blueprint = blueprint
        self.prefix = prefix
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        rule: str,
        *,
        summary: str,
        tag: str,
        ok: Reply,
        query: type[BaseModel] | None = None,
        body: type[BaseModel] | RawBody | None = None,
        errors: dict[int, str] | None = None,
        public: bool = False,
        description: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare and register one operation. The view gets the path parameters, plus `query`
        and `body` (parsed models) when declared, and returns a model, (model, status) or a
        Flask response."""
        replies = [ok]
        if not public:
            replies.append(UNAUTHORIZED)
        if query is not None or body is not None:
            replies.append(INVALID)
        replies += [Reply(status, text, ErrorBody) for status, text in (errors or {}).items()]

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            operation = Operation(
                method=method.upper(),
                rule=self.prefix + rule,
                endpoint=view.__name__,
                summary=summary,
                tag=tag,
                description=description or (view.__doc__ or "").strip() or None,
                query=query,
                body=body,
                replies=tuple(replies),
                public=public,
            )
            handler = _handler(operation, view)
            self.blueprint.add_url_rule(
                rule,
                endpoint=view.__name__,
                view_func=handler if public else require_shop(handler),
                methods=[operation.method],
            )
            self.operations.append(operation)
            return view

        return decorator


def _handler(operation: Operation, view: Callable[..., Any]) -> Callable[..., ResponseReturnValue]:
    ok = operation.replies[0]

    @functools.wraps(view)
    def handler(**path: Any) -> ResponseReturnValue:
        try:
            for name, converter in operation.path_params:
                if converter == "int" and path[name] > MAX_ID:
                    raise RequestError(404, "Not found in this shop.")
            kwargs = dict(path)
            if operation.query is not None:
                kwargs["query"] = parse_query(operation.query)
            if operation.body is not None:
                kwargs["body"] = parse_body(operation.body)
            result = view(**kwargs)
        except RequestError as error:
            return error_response(error)
        if isinstance(result, Response):
            return result
        status = ok.status
        if isinstance(result, tuple):
            result, status = result
        return jsonify(result.model_dump(mode="json", by_alias=True)), status

    return handler


def error_response(error: RequestError) -> Response:
    body: dict[str, Any] = {"error": _ERROR_NAMES.get(error.status, "error"), "message": error.message}
    if error.status == 422:
        body["fields"] = error.fields or {}
    response = jsonify(body)
    response.status_code = error.status
    return response


_ERROR_NAMES = {400: "bad_request", 404: "not_found", 409: "conflict", 422: "invalid"}


# --- parsing ------------------------------------------------------------------------------


def parse_query(model: type[BaseModel]) -> BaseModel:
    values = {key: request.args.get(key) for key in request.args}
    _refuse_unstorable(values, "")
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise RequestError(422, "Some parameters are invalid.", validation_fields(error)) from error


def parse_body(body: type[BaseModel] | RawBody) -> Any:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise RequestError(
            422,
            "Send a JSON object with Content-Type: application/json.",
            {"body": "must be a JSON object"},
        )
    _refuse_unstorable(data, "")
    if isinstance(body, RawBody):
        jsonbody.check(body.components, body.name, data)
        return data
    try:
        return body.model_validate(data)
    except ValidationError as error:
        raise RequestError(422, "Some fields are invalid.", validation_fields(error)) from error


def _refuse_unstorable(value: Any, path: str) -> None:
    """NUL characters and lone surrogates cannot be stored (PostgreSQL refuses them): 422."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                422, "Text must be valid Unicode.", {path or "body": "is not valid Unicode"}
            ) from None
        if "\x00" in value:
            raise RequestError(422, "Text must not contain NUL.", {path or "body": "must not contain NUL"})
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_unstorable(str(key), path)
            _refuse_unstorable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_unstorable(item, f"{path}.{index}" if path else str(index))


def validation_fields(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors():
        # Union members add their type name to the location; the field is what matters.
        parts = [str(p) for p in item["loc"] if not _is_type_tag(p)]
        fields.setdefault(".".join(parts) or "body", item["msg"].removeprefix("Value error, "))
    return fields


def _is_type_tag(part: Any) -> bool:
    if not isinstance(part, str):
        return False
    return part[:1].isupper() or "[" in part or "-" in part or part in _TYPE_TAGS


_TYPE_TAGS = {"str", "int", "float", "bool", "date", "datetime", "decimal", "none"}


# --- the document -------------------------------------------------------------------------


def openapi_document(operations: Iterable[Operation], *, title: str, version: str) -> dict[str, Any]:
    operations = list(operations)
    models: list[tuple[type[BaseModel], Any]] = []
    raw_components: dict[str, dict[str, Any]] = {}
    for operation in operations:
        if isinstance(operation.body, RawBody):
            raw_components.update(operation.body.components())
        elif operation.body is not None:
            models.append((operation.body, "validation"))
        models += [(reply.model, "serialization") for reply in operation.replies if reply.model]
    unique = list(dict.fromkeys(models))
    refs, definitions = models_json_schema(unique, ref_template=REF)
    schemas = {**definitions.get("$defs", {}), **raw_components}

    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        item: dict[str, Any] = {
            "operationId": operation.endpoint,
            "summary": operation.summary,
            "tags": [operation.tag],
            "parameters": _path_parameters(operation) + _query_parameters(operation.query),
            "responses": {str(r.status): _response(r, refs) for r in operation.replies},
        }
        if operation.description:
            item["description"] = operation.description
        if operation.public:
            item["security"] = []
        if operation.body is not None:
            if isinstance(operation.body, RawBody):
                body_schema = {"$ref": REF.format(model=operation.body.name)}
            else:
                body_schema = refs[(operation.body, "validation")]
            item["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
        if not item["parameters"]:
            del item["parameters"]
        paths.setdefault(operation.path, {})[operation.method.lower()] = item

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "sessionToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Shopify session token from App Bridge (`shopify.idToken()`).",
                }
            },
        },
        "security": [{"sessionToken": []}],
    }


def _response(reply: Reply, refs: dict[Any, Any]) -> dict[str, Any]:
    schema = refs[(reply.model, "serialization")] if reply.model else reply.schema or {}
    answer: dict[str, Any] = {
        "description": reply.description,
        "content": {reply.media_type: {"schema": schema}},
    }
    if reply.headers:
        answer["headers"] = reply.headers
    return answer


def _path_parameters(operation: Operation) -> list[dict[str, Any]]:
    schemas = {"int": {"type": "integer", "minimum": 0}, "string": {"type": "string"}}
    return [
        {"name": name, "in": "path", "required": True, "schema": schemas.get(converter, {"type": "string"})}
        for name, converter in operation.path_params
    ]


def _query_parameters(model: type[BaseModel] | None) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(mode="validation", ref_template=REF)
    if "$defs" in schema:
        raise TypeError(f"{model.__name__}: query parameters must be plain values")
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = _without_null(prop)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None = None` is an optional parameter, not one that can be sent as null."""
    schema = {k: v for k, v in schema.items() if not (k == "default" and v is None)}
    options = schema.get("anyOf")
    if options:
        kept = [option for option in options if option != {"type": "null"}]
        schema.pop("anyOf")
        if len(kept) == 1:
            schema = {**kept[0], **schema}
        else:
            schema["anyOf"] = kept
    return schema
