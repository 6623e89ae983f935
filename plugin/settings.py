"""Merchant settings: code defaults, the merchant's values stored per shop, validated on save.

`load(session, shop_id)` merges the stored values over the defaults; `save(...)` validates the
whole result first and raises `SettingsError` with one message per field.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.orm import Session

from plugin.errors import AppError
from plugin.models import ShopSettings

Compensation = Literal["percentage", "fixed_amount", "free_shipping", "none"]


class KindSettings(BaseModel):
    """What Amends does for one kind of incident."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    compensation: Compensation = "percentage"
    # Percent (1–100) for "percentage", an amount in the shop's currency for "fixed_amount".
    value: Decimal = Field(default=Decimal("10"), ge=0, le=100_000)
    expiry_days: int = Field(default=30, ge=1, le=365)
    # Bounded: a 30-digit amount cannot be formatted as money (Decimal's 28-digit context).
    minimum_order: Decimal | None = Field(default=None, ge=0, le=10_000_000)
    combines_with_order_discounts: bool = False
    combines_with_product_discounts: bool = False
    combines_with_shipping_discounts: bool = True
    # Wait before apologising (e.g. in case the parcel moves again).
    delay_minutes: int = Field(default=0, ge=0, le=7 * 24 * 60)
    sla_hours: int = Field(default=24, ge=1, le=24 * 30)
    notify_resolved: bool = True
    # Refunds have no resolving signal: the merchant may choose to resolve them at once.
    auto_resolve: bool = False
    # Merchant templates; None means the default template file for this kind.
    apology_subject: str | None = Field(default=None, max_length=300)
    apology_text: str | None = Field(default=None, max_length=20_000)
    apology_html: str | None = Field(default=None, max_length=50_000)
    fixed_subject: str | None = Field(default=None, max_length=300)
    fixed_text: str | None = Field(default=None, max_length=20_000)
    fixed_html: str | None = Field(default=None, max_length=50_000)

    @model_validator(mode="after")
    def _value_fits_compensation(self) -> KindSettings:
        if self.compensation == "percentage" and not (1 <= self.value <= 100):
            raise ValueError("value: a percentage must be between 1 and 100")
        if self.compensation == "fixed_amount" and self.value <= 0:
            raise ValueError("value: a fixed amount must be more than 0")
        return self


class ShopWideSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # In test mode customer emails go here (or to the outbox when empty).
    test_address: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    # Create real (marked) codes in the shop even in test mode.
    real_test_codes: bool = False
    staff_address: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    staff_notifications: Literal["off", "each", "digest"] = "off"
    tag_orders: bool = True
    order_tag: str = Field(default="amends", min_length=1, max_length=40, pattern=r"^[\w .:-]+$")
    customer_window_days: int = Field(default=7, ge=0, le=365)
    respect_marketing_consent: bool = False
    # What to do when consent says no: send nothing, or an apology without a code.
    without_consent: Literal["skip", "apology_without_code"] = "apology_without_code"
    scan_interval_minutes: int = Field(default=60, ge=5, le=24 * 60)
    scan_grace_hours: int = Field(default=24, ge=0, le=24 * 14)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shop: ShopWideSettings = ShopWideSettings()
    late_delivery: KindSettings = KindSettings()
    return_: KindSettings = Field(default=KindSettings(compensation="free_shipping"), alias="return")
    refund: KindSettings = KindSettings(compensation="fixed_amount", value=Decimal("5"))

    def kind(self, name: str) -> KindSettings:
        return {"late_delivery": self.late_delivery, "return": self.return_, "refund": self.refund}[name]

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class SettingsError(AppError):
    """Invalid settings; `fields` maps a dotted field path to its message."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


def defaults() -> Settings:
    return Settings()


def parse(values: dict[str, Any]) -> Settings:
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_field_messages(error)) from error


@cache
def _default_values() -> dict[str, Any]:
    """The defaults as JSON, built once: building `Settings()` deep-copies every default
    model, a third of each `load`. `_merge` copies what it changes and never writes into it."""
    return defaults().as_json()


def load(session: Session, shop_id: int) -> Settings:
    row = session.get(ShopSettings, shop_id)
    return parse(_merge(_default_values(), row.values if row else {}))


def save(session: Session, shop_id: int, changes: dict[str, Any]) -> Settings:
    """Merge `changes` over the current settings, validate the whole, store it."""
    current = load(session, shop_id).as_json()
    settings = parse(_merge(current, changes))
    # A broken email template is refused now, not found at send time. (Imported here:
    # plugin.emails reads these settings classes.)
    from plugin.emails import check_settings

    template_problems = check_settings(settings)
    if template_problems:
        raise SettingsError(template_problems)
    row = session.get(ShopSettings, shop_id)
    if row is None:
        row = ShopSettings(shop_id=shop_id, values={})
        session.add(row)
    row.values = settings.as_json()
    return settings


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _field_messages(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "string_pattern_mismatch":
            # The merchant sees this next to the field: say what is wrong, not the regex.
            message = "is not in the expected format"
        # Model-level checks name their field as "field: message".
        name, colon, rest = message.partition(":")
        if item["type"] == "value_error" and colon and name.isidentifier() and not path.endswith(name):
            path = f"{path}.{name}" if path else name
            message = rest.strip()
        fields[path or "settings"] = message
    return fields
