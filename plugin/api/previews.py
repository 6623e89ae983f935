"""The admin's window on the email templates: plugin.emails renders them; this adapts its
answers to the API's."""

from __future__ import annotations

from plugin import emails
from plugin.api.schemas import PreviewOut, TemplateDefaults
from plugin.errors import RequestError, TemplateError
from plugin.models import Shop
from plugin.settings import Settings


def render(shop: Shop, settings: Settings, kind: str, which: str) -> PreviewOut:
    """A sample incident's email with `settings`; a template that fails is a 422 on its field."""
    try:
        rendered = emails.render_preview(
            settings,
            kind,
            which,
            shop_name=shop.name or shop.domain,
            shop_email=shop.email or "hello@your-store.example",
            currency=shop.currency or "USD",
        )
    except TemplateError as error:
        field = error.field or f"{kind}.{which}_html"
        raise RequestError(422, "A template does not render.", {field: str(error)}) from error
    return PreviewOut(subject=rendered.subject, text=rendered.text, html=rendered.html)


def default_templates() -> dict[str, TemplateDefaults]:
    return {
        kind: TemplateDefaults(
            **{
                f"{which}_{part}": emails.default_source(kind, which, part)
                for which in emails.WHICH
                for part in emails.PARTS
            }
        )
        for kind in emails.KINDS
    }


def variables() -> dict[str, str]:
    return dict(emails.VARIABLES)
