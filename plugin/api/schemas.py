"""What the admin API reads and answers, as pydantic models. Their JSON schemas are the
OpenAPI document's components (see plugin.api.spec)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from plugin.api.jsonbody import STORABLE_TEXT
from plugin.settings import Settings

Kind = Literal["late_delivery", "return", "refund"]
IncidentState = Literal["detected", "apologised", "resolved", "customer_told"]
Cursor = Annotated[
    str,
    Field(
        max_length=500,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` from the previous page (opaque; any other value is a 422).",
    ),
]
Limit = Annotated[int, Field(ge=1, le=100, description="Items per page.")]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- shop -----------------------------------------------------------------------------------


class ShopOut(Out):
    domain: str
    name: str | None
    currency: str | None
    test_mode: bool
    reauth_reason: str | None = Field(
        description="Set when the shop must open Amends again to re-authenticate."
    )
    dev_mode: bool = Field(description="True when the admin runs in local dev mode (no Shopify credentials).")
    admin_url: str = Field(description="The shop's Shopify admin.")


# --- incidents ------------------------------------------------------------------------------


class IncidentQuery(BaseModel):
    kind: Kind | None = None
    state: IncidentState | Literal["open", "needs_attention"] | None = Field(
        default=None,
        description="A lifecycle state, or `open` (not resolved) or `needs_attention`.",
    )
    since: date | None = Field(default=None, description="Opened on or after this day (UTC).")
    until: date | None = Field(default=None, description="Opened on or before this day (UTC).")
    q: str | None = Field(
        default=None,
        max_length=200,
        pattern=STORABLE_TEXT,
        description="Search the order name, customer name and email.",
    )
    cursor: Cursor | None = None
    limit: Limit = 25


class IncidentSummary(Out):
    id: int
    kind: Kind
    state: IncidentState
    is_open: bool
    order_id: int
    order_name: str | None
    customer_first_name: str | None
    customer_email: str | None
    needs_attention: str | None
    opened_at: datetime
    resolved_at: datetime | None


class IncidentPage(BaseModel):
    items: list[IncidentSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")


class TimelineEntryOut(Out):
    id: int
    at: datetime
    event: str
    summary: str
    source: str = Field(description='The cause: "webhook:refunds/create", "job:send_apology", "staff", …')
    webhook_id: str | None
    data: dict[str, Any]


class MessageOut(Out):
    id: int
    kind: str = Field(description="apology, fixed or staff.")
    state: str
    to_address: str | None
    redirected_from: str | None = Field(description="In test mode, the customer it would have gone to.")
    test: bool
    subject: str | None
    text_body: str | None
    html_body: str | None = Field(description="As sent; show it only in a sandboxed frame.")
    error: str | None
    attempts: int
    sent_at: datetime | None
    created_at: datetime


class CodeOut(Out):
    code: str
    state: str
    test: bool
    compensation: str
    value: Decimal | None
    currency: str | None
    ends_at: datetime | None
    error: str | None
    redeemed: bool
    redeemed_at: datetime | None
    redeemed_order_name: str | None
    redeemed_amount: Decimal | None
    redeemed_currency: str | None


class TaskOut(Out):
    id: int
    incident_id: int
    title: str
    status: Literal["open", "done"]
    overdue: bool
    due_at: datetime | None
    assignee: str | None
    notes: str | None
    order_tagged_at: datetime | None
    created_at: datetime
    closed_at: datetime | None
    closed_by: str | None


class BoardTask(TaskOut):
    incident: IncidentSummary


class IncidentDetail(IncidentSummary):
    customer_id: int | None
    customer_locale: str | None
    details: dict[str, Any]
    missing: list[str] = Field(description="Customer fields Shopify withheld (protected customer data).")
    resolved_by: str | None
    order_url: str = Field(description="The order in the Shopify admin.")
    timeline: list[TimelineEntryOut]
    messages: list[MessageOut]
    code: CodeOut | None
    task: TaskOut | None


class RetryOut(BaseModel):
    enqueued: list[str] = Field(description="The jobs started again, by name.")
    incident: IncidentDetail


# --- tasks ----------------------------------------------------------------------------------


class TaskQuery(BaseModel):
    status: Literal["open", "overdue", "done"] | None = Field(
        default=None, description="open (not yet due), overdue, or done; all when absent."
    )
    cursor: Cursor | None = None
    limit: Limit = 50


class TaskPage(BaseModel):
    items: list[BoardTask]
    next_cursor: str | None


class TaskUpdate(BaseModel):
    """Only the fields sent change; null clears one."""

    model_config = ConfigDict(extra="forbid")

    assignee: Annotated[str, Field(max_length=255, pattern=STORABLE_TEXT)] | None = None
    notes: Annotated[str, Field(max_length=10_000, pattern=STORABLE_TEXT)] | None = None
    due_at: AwareDatetime | None = Field(default=None, description="ISO 8601, with a time zone.")

    @field_validator("due_at", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        # JSON has no time type: only ISO 8601 text (or null) is one, not a bare number.
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 date and time with a time zone")
        return value


# --- settings -------------------------------------------------------------------------------


class TemplateDefaults(BaseModel):
    apology_subject: str
    apology_text: str
    apology_html: str
    fixed_subject: str
    fixed_text: str
    fixed_html: str


class SettingsOut(BaseModel):
    test_mode: bool
    settings: Settings
    default_templates: dict[str, TemplateDefaults] = Field(
        description="Per kind, the template used where the merchant's own is null."
    )
    variables: dict[str, str] = Field(description="The variables templates may use, with what each holds.")


KindPatch = Annotated[
    dict[str, Any], WithJsonSchema({"allOf": [{"$ref": "#/components/schemas/KindSettingsPatch"}]})
]


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    message: Literal["apology", "fixed"]
    changes: KindPatch = Field(
        default_factory=dict, description="Unsaved values of this kind's settings to preview with."
    )


class PreviewOut(BaseModel):
    subject: str
    text: str
    html: str = Field(description="Show it only in a sandboxed frame.")


# --- overview -------------------------------------------------------------------------------


class Money(BaseModel):
    currency: str
    amount: Decimal


class DayCount(BaseModel):
    day: date
    late_delivery: int
    return_: int = Field(alias="return")
    refund: int

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class OverviewOut(BaseModel):
    shop: ShopOut
    since: datetime = Field(description="Start of the week counted (7 days ago).")
    incidents: dict[str, dict[str, int]] = Field(description="This week's incidents, by kind then state.")
    incidents_total: int
    open_tasks: int
    overdue_tasks: int
    codes_sent: int = Field(description="Codes created (or recorded in test mode) in the last 30 days.")
    codes_redeemed: int
    redeemed_revenue: list[Money] = Field(description="Totals of the orders that used those codes.")
    needs_attention: int
    daily: list[DayCount] = Field(description="Incidents per day and kind, the last 14 days.")


# --- outbox and data requests ---------------------------------------------------------------


class PageQuery(BaseModel):
    cursor: Cursor | None = None
    limit: Limit = 25


class OutboxItem(Out):
    id: int
    message_id: str
    mail_from: str
    to_address: str
    reply_to: str | None
    subject: str
    text_body: str
    html_body: str | None = Field(description="Show it only in a sandboxed frame.")
    created_at: datetime


class OutboxPage(BaseModel):
    transport: Literal["outbox", "smtp"] = Field(
        description="outbox: mail is kept here; smtp: mail leaves through SMTP_URL."
    )
    test_mode: bool
    items: list[OutboxItem]
    next_cursor: str | None


class ExportSummary(Out):
    id: int
    customer_id: int | None
    customer_email: str | None
    data_request_id: str | None
    requested_at: datetime


class ExportList(BaseModel):
    items: list[ExportSummary]
