"""Settings: read, change (422 with a message per field), and the live template preview."""

from __future__ import annotations

import functools
from copy import deepcopy
from typing import Any

from plugin import settings as merchant_settings
from plugin.api import jsonbody, previews
from plugin.api.routes import current_shop, routes, services
from plugin.api.schemas import PreviewOut, PreviewRequest, SettingsOut
from plugin.api.spec import RawBody, Reply
from plugin.errors import RequestError
from plugin.settings import Settings, SettingsError


@functools.cache
def _patch_components() -> dict[str, dict[str, Any]]:
    """The settings schema with nothing required: a PUT sends only what changes."""
    schema = Settings.model_json_schema(mode="validation", ref_template="#/components/schemas/{model}Patch")
    definitions = schema.pop("$defs", {})
    components = {
        f"{name}Patch": _loosen(part) for name, part in [("Settings", schema), *definitions.items()]
    }
    components["SettingsPatch"]["properties"]["test_mode"] = {
        "type": "boolean",
        "description": "Test mode: mail goes to the test address or the outbox, codes are marked as tests.",
    }
    components["SettingsPatch"]["description"] = "Only the fields sent change; the result is validated whole."
    return components


# pydantic documents a decimal as "a number or any string"; only decimal text is accepted.
DECIMAL_TEXT = r"^[+-]?(\d+\.?\d*|\.\d+)$"


def _loosen(schema: dict[str, Any]) -> dict[str, Any]:
    schema = deepcopy(schema)
    schema.pop("required", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)
        options = prop.get("anyOf", [prop])
        decimal = any(option.get("type") == "number" for option in options)
        for option in options:
            if option.get("type") != "string" or "format" in option:
                continue
            if decimal:
                option["pattern"] = DECIMAL_TEXT
            elif "pattern" in option:
                option["allOf"] = [{"pattern": option.pop("pattern")}, {"pattern": jsonbody.STORABLE_TEXT}]
            else:
                option["pattern"] = jsonbody.STORABLE_TEXT
    return schema


@routes.operation(
    "GET",
    "/settings",
    summary="The shop's settings, merged over the defaults",
    tag="settings",
    ok=Reply(200, "The settings.", SettingsOut),
)
def get_settings() -> SettingsOut:
    with services().db.session() as session:
        shop = current_shop(session)
        return _answer(shop.test_mode, merchant_settings.load(session, shop.id))


@routes.operation(
    "PUT",
    "/settings",
    summary="Change settings: only the fields sent change",
    tag="settings",
    body=RawBody("SettingsPatch", _patch_components),
    ok=Reply(200, "The saved settings.", SettingsOut),
    description="Invalid values (including templates that do not compile) are refused with 422 and a "
    "message per field, keyed by its dotted path (e.g. `late_delivery.value`). Nothing is saved then.",
)
def put_settings(body: dict[str, Any]) -> SettingsOut:
    changes = dict(body)
    test_mode = changes.pop("test_mode", None)
    fields: dict[str, str] = {}
    if "test_mode" in body and not isinstance(test_mode, bool):
        fields["test_mode"] = "must be true or false"
    with services().db.session() as session:
        shop = current_shop(session)
        try:
            saved = merchant_settings.save(session, shop.id, changes)
        except SettingsError as error:
            fields.update(error.fields)
            saved = None
        if fields:
            raise RequestError(422, "Some settings are invalid; nothing was saved.", fields)
        if isinstance(test_mode, bool):
            shop.test_mode = test_mode
        assert saved is not None
        return _answer(shop.test_mode, saved)


@routes.operation(
    "POST",
    "/settings/preview",
    summary='Render a kind\'s apology or "fixed" email from a sample incident',
    tag="settings",
    body=PreviewRequest,
    ok=Reply(200, "The rendered email.", PreviewOut),
    description="`changes` are unsaved values of the kind's settings (templates, compensation, value, "
    "expiry): the preview shows the email as it would be sent with them. Errors name the field as "
    "`<kind>.<field>`, like PUT /api/settings.",
)
def preview(body: PreviewRequest) -> PreviewOut:
    with services().db.session() as session:
        shop = current_shop(session)
        jsonbody.check(_patch_components, "KindSettingsPatch", body.changes, prefix=body.kind)
        saved = merchant_settings.load(session, shop.id)
        merged = {**saved.kind(body.kind).model_dump(mode="json"), **body.changes}
        try:
            # Validated as part of the whole, so errors name the field as PUT names it.
            values = merchant_settings.parse({**saved.as_json(), body.kind: merged})
        except SettingsError as error:
            raise RequestError(422, "Some settings are invalid.", error.fields) from error
        return previews.render(shop, values, body.kind, body.message)


def _answer(test_mode: bool, values: Settings) -> SettingsOut:
    return SettingsOut(
        test_mode=test_mode,
        settings=values,
        default_templates=previews.default_templates(),
        variables=previews.variables(),
    )
