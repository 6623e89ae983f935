"""Tables, one module per idea; imported here so Alembic and callers see them all."""

from plugin.models.delivery import Delivery
from plugin.models.discount import DiscountCode
from plugin.models.export import DataExport
from plugin.models.incident import Incident, IncidentKey, Settlement, TimelineEntry
from plugin.models.message import Message, OutboxEmail
from plugin.models.scan import ScanRun
from plugin.models.shop import Shop, ShopSettings
from plugin.models.tag_batch import OrderTagBatch
from plugin.models.task import Task

__all__ = [
    "DataExport",
    "Delivery",
    "DiscountCode",
    "Incident",
    "IncidentKey",
    "Message",
    "OrderTagBatch",
    "OutboxEmail",
    "ScanRun",
    "Settlement",
    "Shop",
    "ShopSettings",
    "Task",
    "TimelineEntry",
]
