"""Imports every module's models so the metadata (and Alembic) sees all tables."""

from returnguard.audit.models import Event
from returnguard.auth.models import ApiKey, Organization, User
from returnguard.fx.models import FxRate
from returnguard.kit.db import Base
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.rollup_models import ReportDirty, ReportRollup, ReportRollupMonth
from returnguard.orders.models import Buyer, Channel, Order, OrderLine, Product
from returnguard.outbox.models import OutboxMessage, WebhookDelivery, WebhookEndpoint
from returnguard.policies.models import Evidence, Policy, PolicyVersion, ReturnDecision
from returnguard.refunds.models import Refund, RefundProvider
from returnguard.returns.models import Inspection, Receipt, Return, ReturnLine, Shipment

__all__ = [
    "ApiKey",
    "Base",
    "Buyer",
    "Channel",
    "Event",
    "Evidence",
    "FxRate",
    "Inspection",
    "LedgerEntry",
    "Order",
    "OrderLine",
    "Organization",
    "OutboxMessage",
    "Policy",
    "PolicyVersion",
    "Product",
    "Receipt",
    "Refund",
    "RefundProvider",
    "ReportDirty",
    "ReportRollup",
    "ReportRollupMonth",
    "Return",
    "ReturnDecision",
    "ReturnLine",
    "Shipment",
    "User",
    "WebhookDelivery",
    "WebhookEndpoint",
]
