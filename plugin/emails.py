"""Customer emails rendered from merchant-editable templates, safely.

Merchants edit the subject, the plain-text part and the HTML part of the apology and of the
"it's fixed" notice for each kind of incident. Their templates run in Jinja's
`ImmutableSandboxedEnvironment`, tightened further:

- the context holds only plain values (strings, numbers, booleans, dicts and lists of them),
  and attribute access is limited to a short list of string and dict methods, so
  `{{ ''.__class__.__mro__ }}` and friends have nothing to reach;
- HTML parts autoescape (a customer called `<script>` stays text) and `safe` is not offered;
- `set`, `with`, `include`, `extends` and `import` are refused, loops nest at most three deep, `range` is
  capped, `%` formatting and `str.format` are refused, and every filter result,
  operation and the output as a whole are bounded in size;
- a deadline is checked on every call, attribute, item, operation, loop step and output
  chunk: a template that would loop for ever stops at `MAX_RENDER_SECONDS`.

`check_template()` runs at settings save time (through `plugin.settings.save`), so a broken
template is refused then; `render_email()` raises `TemplateError` at send time if one slips
through (the job records it on the incident), and `render_preview()` renders a sample
incident for the admin's live preview.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateSyntaxError,
    meta,
    nodes,
    select_autoescape,
)
from jinja2 import (
    TemplateError as JinjaTemplateError,
)
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup

from plugin.config import PROJECT_ROOT
from plugin.errors import TemplateError
from plugin.models import DiscountCode, Incident, Shop

if TYPE_CHECKING:
    from plugin.settings import KindSettings, Settings

TEMPLATE_DIR = PROJECT_ROOT / "templates" / "emails"

KINDS = ("late_delivery", "return", "refund")
WHICH = ("apology", "fixed")
PARTS = ("subject", "text", "html")
_EXTENSIONS = {"subject": "subject.txt", "text": "txt", "html": "html"}

MAX_RENDER_SECONDS = 0.5
MAX_OUTPUT_CHARS = 100_000
MAX_VALUE_CHARS = 20_000  # any one intermediate value (filter result, product, …)
MAX_RANGE = 1_000
MAX_LOOP_DEPTH = 3
MAX_SUBJECT_CHARS = 200
MAX_NUMBER_BITS = 4_096

# Every variable a template may use, with what it holds (shown in the admin's editor).
VARIABLES: dict[str, str] = {
    "shop_name": "the store's name",
    "shop_email": "the store's contact address",
    "first_name": "the customer's first name (empty when Shopify withheld it)",
    "order_name": 'the order\'s name, e.g. "#1001"',
    "kind": "late_delivery, return or refund",
    "what_happened": 'what went wrong, in the customer\'s terms, e.g. "the carrier reported a delay"',
    "carrier": "the carrier's name (late deliveries, when known)",
    "tracking_number": "the tracking number (late deliveries, when known)",
    "tracking_url": "the tracking link (late deliveries, when known)",
    "return_reason": "the customer's reason for the return (returns)",
    "refund_amount": 'the amount refunded with its currency, e.g. "$24.00" (refunds)',
    "has_code": "true when this email carries a discount code",
    "code": "the discount code",
    "discount": 'what the code gives, e.g. "10% off your next order"',
    "expires_on": 'the code\'s last day, e.g. "January 21, 2027"',
    "minimum_order": 'the minimum order for the code, e.g. "$50.00" (empty when none)',
    "code_unused": 'true when the code has not been used yet ("fixed" emails)',
    "apology_date": 'the day the apology was sent, e.g. "December 22, 2026" ("fixed" emails)',
    "test_mode": "true while the store is in test mode",
}

_STR_METHODS = frozenset(
    {"upper", "lower", "title", "capitalize", "strip", "lstrip", "rstrip", "startswith", "endswith"}
)
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
_LOOP_ATTRIBUTES = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "previtem", "nextitem", "cycle"}
)
_FILTERS = [
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "e",
    "escape",
    "first",
    "float",
    "int",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "replace",
    "reverse",
    "round",
    "sort",
    "string",
    "striptags",
    "title",
    "trim",
    "truncate",
    "upper",
    "urlencode",
    "wordcount",
]

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("template_deadline", default=None)


class _Overrun(SecurityError):
    """The template ran too long or grew too large."""


def _tick() -> None:
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise _Overrun(f"the template took longer than {MAX_RENDER_SECONDS}s to render")


def _bounded(value: Any) -> Any:
    if isinstance(value, str | list | tuple | dict) and len(value) > MAX_VALUE_CHARS:
        raise _Overrun(f"a value in the template grew over {MAX_VALUE_CHARS} characters")
    return value


def _bits(value: Any) -> int:
    """An integer's size in bits (one C-level multiplication or power of a huge one could run
    for seconds between two deadline checks, so their size is checked before)."""
    return value.bit_length() if isinstance(value, int) and not isinstance(value, bool) else 0


def _guarded_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps Jinja's pass_* marks
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _tick()
        return _bounded(func(*args, **kwargs))

    return wrapper


def _safe_replace(value: Any, old: Any, new: Any, count: Any = None) -> str:
    text, old, new = str(value), str(old), str(new)
    if old and len(text) + text.count(old) * max(0, len(new) - len(old)) > MAX_VALUE_CHARS:
        raise _Overrun("replace would make a value too large")
    return text.replace(old, new, -1 if count is None else int(count))


def _guarded_range(*args: Any) -> Iterator[int]:
    numbers = range(*(int(a) for a in args))
    if len(numbers) > MAX_RANGE:
        raise _Overrun(f"range() is limited to {MAX_RANGE} numbers in email templates")

    def steps() -> Iterator[int]:
        for number in numbers:
            _tick()
            yield number

    return steps()


class _GuardedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+", "//"})

    def __init__(self, autoescape: bool):
        super().__init__(
            autoescape=autoescape,
            undefined=StrictUndefined,
            loader=None,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.globals.clear()
        self.globals["range"] = _guarded_range
        base_filters = self.filters
        self.filters = {name: _guarded_filter(base_filters[name]) for name in _FILTERS}
        self.filters["replace"] = _guarded_filter(_safe_replace)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, dict):
            return attr in _DICT_METHODS
        if isinstance(obj, LoopContext):
            return attr in _LOOP_ATTRIBUTES
        return False

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        for value in (*args, *kwargs.values()):
            _bounded(value)  # a macro calling itself with ever longer arguments stops here
        return _bounded(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "%" and isinstance(left, str):
            raise SecurityError("%-formatting is not available in email templates")
        power = operator == "**" and isinstance(right, int | float)
        if power and (abs(right) > 64 or _bits(left) * abs(right) > MAX_NUMBER_BITS):
            raise _Overrun("a number in the template grew too large")
        if operator == "*" and _bits(left) + _bits(right) > MAX_NUMBER_BITS:
            raise _Overrun("a number in the template grew too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                too_long = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if too_long and len(seq) * times > MAX_VALUE_CHARS:
                    raise _Overrun(f"a value in the template grew over {MAX_VALUE_CHARS} characters")
        return _bounded(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> None:
        # str.format and format_map are not offered at all (a width spec can allocate
        # gigabytes before anything could check the result): attribute access refuses them.
        return None


_html_env = _GuardedSandbox(autoescape=True)
_text_env = _GuardedSandbox(autoescape=False)

# Our own templates (defaults, layout, staff emails) are trusted files.
_files = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


# ---------------------------------------------------------------------------------------------
# Templates: the merchant's or the default


def default_source(kind: str, which: str, part: str) -> str:
    """The default template text, as the editor shows it before the merchant changes it."""
    if kind not in KINDS or which not in WHICH or part not in PARTS:
        raise ValueError(f"no template {kind}/{which}.{part}")
    path = TEMPLATE_DIR / kind / f"{which}.{_EXTENSIONS[part]}"
    return path.read_text(encoding="utf-8")


def source_for(kind_settings: KindSettings, kind: str, which: str, part: str) -> str:
    custom = getattr(kind_settings, f"{which}_{part}", None)
    return custom if custom else default_source(kind, which, part)


_FORBIDDEN_NODES = (
    nodes.Extends,
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Assign,
    nodes.AssignBlock,
    nodes.With,
)


@functools.lru_cache(maxsize=512)
def _compile(source: str, html: bool) -> Any:
    env = _html_env if html else _text_env
    tree = env.parse(source)
    _check_tree(tree)
    return env.from_string(tree)


def _check_tree(tree: nodes.Template) -> None:
    # Without assignments a value can only grow as far as one expression can take it (each
    # operation bounded); `set` in a chain (`s = s ~ s` thirty times) could double it each line.
    for node in tree.find_all(_FORBIDDEN_NODES):
        raise TemplateError(
            f"line {node.lineno}: set, with, include, extends and import are not available in emails"
        )
    depth = _loop_depth(tree)
    if depth > MAX_LOOP_DEPTH:
        raise TemplateError(f"loops may nest at most {MAX_LOOP_DEPTH} deep (this one nests {depth})")
    unknown = sorted(meta.find_undeclared_variables(tree) - set(VARIABLES) - {"range"})
    if unknown:
        raise TemplateError(
            f"unknown variable{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}"
            f" (available: {', '.join(VARIABLES)})"
        )


def _loop_depth(node: nodes.Node) -> int:
    deepest = 0
    for child in node.iter_child_nodes():
        deepest = max(deepest, _loop_depth(child))
    return deepest + (1 if isinstance(node, nodes.For | nodes.Macro | nodes.CallBlock) else 0)


def render_template(source: str, context: dict[str, Any], *, html: bool) -> str:
    """Render one merchant template under the guards; TemplateError on any failure."""
    try:
        template = _compile(source, html)
    except TemplateSyntaxError as error:
        raise TemplateError(f"line {error.lineno}: {error.message}") from error
    except JinjaTemplateError as error:
        raise TemplateError(str(error.message or error)) from error
    token = _deadline.set(time.monotonic() + MAX_RENDER_SECONDS)
    try:
        size = 0
        chunks = []
        for chunk in template.generate(context):
            _tick()
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise _Overrun(f"the email grew over {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
        return "".join(chunks)
    except SecurityError as error:
        raise TemplateError(f"not allowed: {error}") from error
    except JinjaTemplateError as error:
        raise TemplateError(str(error.message or error)) from error
    except RecursionError as error:
        raise TemplateError("the template calls itself too deeply") from error
    except (ArithmeticError, TypeError, ValueError, LookupError) as error:
        raise TemplateError(f"{type(error).__name__}: {error}") from error
    finally:
        _deadline.reset(token)


def render_email(kind_settings: KindSettings, kind: str, which: str, context: dict[str, Any]) -> Rendered:
    """Subject, text and HTML of one email for `kind`. The HTML part is the merchant's body
    inside our layout. Raises TemplateError naming the part that failed."""
    parts: dict[str, str] = {}
    for part in PARTS:
        source = source_for(kind_settings, kind, which, part)
        try:
            parts[part] = render_template(source, context, html=part == "html")
        except TemplateError as error:
            raise TemplateError(f"{which} {part}: {error}", field=f"{kind}.{which}_{part}") from error
    subject = " ".join(parts["subject"].split())[:MAX_SUBJECT_CHARS]
    if not subject:
        raise TemplateError(f"{which} subject: the subject is empty", field=f"{kind}.{which}_subject")
    html = _files.get_template("layout.html").render(
        body=Markup(parts["html"]),  # noqa: S704 - autoescaped output of the sandbox
        subject=subject,
        shop_name=context.get("shop_name") or "",
        test_mode=bool(context.get("test_mode")),
    )
    return Rendered(subject=subject, text=parts["text"].strip() + "\n", html=html)


def render_file(name: str, **context: Any) -> str:
    """One of our own templates (staff emails), from templates/emails/."""
    return _files.get_template(name).render(**context)


# ---------------------------------------------------------------------------------------------
# Checking at save time, and the admin's preview


def check_template(source: str, part: str) -> None:
    """Refuse a template that would fail at send time: syntax, unknown variables or
    filters, forbidden tags, unsafe access, or a render that runs too long or too large.
    Raises TemplateError with a message for the merchant."""
    html = part == "html"
    for context in (sample_context(with_code=True), sample_context(with_code=False, first_name="")):
        out = render_template(source, context, html=html)
        if part == "subject" and not out.strip():
            raise TemplateError("the subject is empty")


def check_settings(settings: Settings) -> dict[str, str]:
    """{"late_delivery.apology_html": "line 3: …"} for every merchant template that fails."""
    problems: dict[str, str] = {}
    for kind in KINDS:
        kind_settings = settings.kind(kind)
        for which in WHICH:
            for part in PARTS:
                source = getattr(kind_settings, f"{which}_{part}")
                if not source:
                    continue
                try:
                    check_template(source, part)
                except TemplateError as error:
                    problems[f"{_alias(kind)}.{which}_{part}"] = str(error)
    return problems


def render_preview(
    settings: Settings,
    kind: str,
    which: str,
    *,
    shop_name: str = "Your Store",
    shop_email: str = "hello@your-store.example",
    currency: str = "USD",
) -> Rendered:
    """The email for a sample incident of `kind`, as the admin's live preview shows it."""
    kind_settings = settings.kind(kind)
    context = sample_context(
        kind=kind,
        which=which,
        shop_name=shop_name,
        shop_email=shop_email,
        discount=describe_discount(kind_settings.compensation, kind_settings.value, currency),
        minimum_order=format_money(kind_settings.minimum_order, currency)
        if kind_settings.minimum_order
        else "",
        expires_on=format_date(datetime.now().astimezone() + timedelta(days=kind_settings.expiry_days)),
        with_code=kind_settings.compensation != "none",
    )
    return render_email(kind_settings, kind, which, context)


def sample_context(*, with_code: bool = True, **overrides: Any) -> dict[str, Any]:
    kind = overrides.get("kind", "late_delivery")
    context: dict[str, Any] = {
        "shop_name": "Your Store",
        "shop_email": "hello@your-store.example",
        "first_name": "Jane",
        "order_name": "#1001",
        "kind": kind,
        "what_happened": default_what_happened(kind, {"status": "delayed"}),
        "carrier": "Canada Post",
        "tracking_number": "7316 0402 8811 2245",
        "tracking_url": "https://tracking.example/7316040288112245",
        "return_reason": "the size was too small",
        "refund_amount": "$24.00",
        "has_code": with_code,
        "code": "7KXF-M3WC-HJ4P" if with_code else "",
        "discount": "10% off your next order" if with_code else "",
        "expires_on": format_date(datetime.now().astimezone() + timedelta(days=30)),
        "minimum_order": "",
        "code_unused": with_code,
        "apology_date": format_date(datetime.now().astimezone() - timedelta(days=3)),
        "test_mode": False,
    }
    context.update({k: v for k, v in overrides.items() if k in VARIABLES})
    return context


# ---------------------------------------------------------------------------------------------
# The context of a real incident


MAX_CONTEXT_CHARS = 1_000  # customer data is clipped before a template sees it


def incident_context(
    *,
    shop: Shop,
    incident: Incident,
    code: DiscountCode | None,
    minimum_order: Decimal | None = None,
    apology_sent_at: datetime | None = None,
) -> dict[str, Any]:
    """The variables of `VARIABLES` for one incident: plain values only."""
    details = incident.details or {}
    tracking = _first_tracking(details)
    currency = (code.currency if code else None) or shop.currency
    has_code = code is not None
    context: dict[str, Any] = {
        "shop_name": shop.name or shop.domain,
        "shop_email": shop.email or "",
        "first_name": (incident.customer_first_name or "").strip(),
        "order_name": incident.order_name or "your order",
        "kind": incident.kind,
        "what_happened": default_what_happened(incident.kind, details),
        "carrier": tracking.get("company") or "",
        "tracking_number": tracking.get("number") or "",
        "tracking_url": _http_url(tracking.get("url")),
        "return_reason": _return_reason(details),
        "refund_amount": _refund_amount(details, shop.currency),
        "has_code": has_code,
        "code": code.code if code else "",
        "discount": describe_discount(code.compensation, code.value, currency) if code else "",
        "expires_on": format_date(code.ends_at) if code and code.ends_at else "",
        "minimum_order": format_money(minimum_order, currency) if has_code and minimum_order else "",
        "code_unused": bool(code and code.redeemed_at is None and _not_expired(code)),
        "apology_date": format_date(apology_sent_at) if apology_sent_at else "",
        "test_mode": bool(shop.test_mode),
    }
    return {k: v[:MAX_CONTEXT_CHARS] if isinstance(v, str) else v for k, v in context.items()}


def _first_tracking(details: dict[str, Any]) -> dict[str, str]:
    """The parcel's carrier, number and link: from the order's shipments (the intake's order
    context), else from a `fulfillments/update` payload's tracking fields."""
    order: dict[str, Any] = details["order"] if isinstance(details.get("order"), dict) else {}
    for shipment in order.get("shipments") or []:
        for candidate in (shipment.get("tracking") or []) if isinstance(shipment, dict) else []:
            if isinstance(candidate, dict) and (candidate.get("number") or candidate.get("url")):
                return {k: str(v) for k, v in candidate.items() if isinstance(v, str | int) and v != ""}
    numbers, urls = details.get("tracking_numbers") or [], details.get("tracking_urls") or []
    if numbers or urls:
        return {
            "company": str(details.get("tracking_company") or ""),
            "number": str(numbers[0]) if numbers else "",
            "url": str(urls[0]) if urls else "",
        }
    return {}


def _http_url(value: Any) -> str:
    text = str(value or "").strip()
    return text if text.lower().startswith(("https://", "http://")) else ""


_RETURN_REASONS = {
    "SIZE_TOO_SMALL": "the size was too small",
    "SIZE_TOO_LARGE": "the size was too large",
    "UNWANTED": "it wasn't wanted after all",
    "NOT_AS_DESCRIBED": "it wasn't as described",
    "WRONG_ITEM": "we sent the wrong item",
    "DEFECTIVE": "it was faulty",
    "STYLE": "the style wasn't right",
    "COLOR": "the colour wasn't right",
}


def _return_reason(details: dict[str, Any]) -> str:
    """The customer's reason, from the incident's returns ("size too small" → "the size was too
    small"); nothing for "other" or "unknown"."""
    returns = details.get("returns") if isinstance(details.get("returns"), dict) else {}
    reasons: list[str] = []
    for item in (returns or {}).values():
        if isinstance(item, dict):
            reasons.extend(str(r) for r in item.get("reasons") or [] if r)
    phrases = []
    for reason in reasons:
        key = reason.strip().upper().replace(" ", "_")
        if key in ("OTHER", "UNKNOWN", ""):
            continue
        phrase = _RETURN_REASONS.get(key, reason.strip().lower())
        if phrase not in phrases:
            phrases.append(phrase)
    return " and ".join(phrases)


def _refund_amount(details: dict[str, Any], currency: str | None) -> str:
    """The money refunded so far, summed over the incident's refunds."""
    refunds = details.get("refunds") if isinstance(details.get("refunds"), dict) else {}
    total, found_currency = Decimal(0), None
    for refund in (refunds or {}).values():
        if not isinstance(refund, dict) or refund.get("amount") in (None, ""):
            continue
        try:
            total += Decimal(str(refund["amount"]))
        except ArithmeticError:
            continue
        found_currency = found_currency or refund.get("currency")
    return format_money(total, found_currency or currency) if total > 0 else ""


def _not_expired(code: DiscountCode) -> bool:
    return code.ends_at is None or code.ends_at > datetime.now(code.ends_at.tzinfo)


# ---------------------------------------------------------------------------------------------
# Words and numbers for the context


_CURRENCY_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def format_money(amount: Decimal | float | str | None, currency: str | None) -> str:
    if amount is None:
        return ""
    value = Decimal(str(amount)).quantize(Decimal("0.01"))
    symbol = _CURRENCY_SYMBOLS.get((currency or "").upper())
    return f"{symbol}{value:,}" if symbol else f"{value:,} {currency or ''}".strip()


def format_date(moment: datetime) -> str:
    return f"{moment:%B} {moment.day}, {moment.year}"


def describe_discount(compensation: str, value: Decimal | None, currency: str | None) -> str:
    if compensation == "percentage" and value is not None:
        number = f"{value.normalize():f}" if value == value.to_integral() else f"{value}"
        return f"{number}% off your next order"
    if compensation == "fixed_amount" and value is not None:
        return f"{format_money(value, currency)} off your next order"
    if compensation == "free_shipping":
        return "free shipping on your next order"
    return ""


_LATE_STATUSES = {
    "delayed": "the carrier reported a delay",
    "failure": "the carrier reported a problem delivering it",
    "attempted_delivery": "the carrier tried to deliver it but could not",
    "late": "it has not arrived by the date we promised",
}


def default_what_happened(kind: str, details: dict[str, Any]) -> str:
    given = details.get("what_happened") or details.get("summary")
    if isinstance(given, str) and given.strip():
        return given.strip()
    if kind == "late_delivery":
        status = str(details.get("status") or details.get("shipment_status") or "late")
        return _LATE_STATUSES.get(status, "your parcel is running late")
    if kind == "return":
        return "you had to send something back"
    return "we refunded part of your order"


def _alias(kind: str) -> str:
    return kind  # settings fields are named by kind ("return" is the alias of `return_`)
