"""Imports every module's models so the metadata (and Alembic) sees all tables."""

from returnguard.audit.models import Event
from returnguard.auth.models import ApiKey, Organization, User
from returnguard.kit.db import Base
from returnguard.orders.models import Buyer, Channel, Order, OrderLine, Product
from returnguard.outbox.models import OutboxMessage, WebhookDelivery, WebhookEndpoint
from returnguard.returns.models import Inspection, Receipt, Return, ReturnLine, Shipment

__all__ = [
    "ApiKey",
    "Base",
    "Buyer",
    "Channel",
    "Event",
    "Inspection",
    "Order",
    "OrderLine",
    "Organization",
    "OutboxMessage",
    "Product",
    "Receipt",
    "Return",
    "ReturnLine",
    "Shipment",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
]
