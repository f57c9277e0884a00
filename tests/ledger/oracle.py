"""The reports as they were computed in Python before they moved into SQL: the oracle.

Kept verbatim (one ORM object per order, line and entry; conversions and splits in
Python) so that ``test_reports_match_the_python_oracle`` can check on random shops that
the set-based reports give exactly the same figures. Not used by the application.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from returnguard.auth.models import Organization
from returnguard.domain import ledger as rules
from returnguard.domain.ledger import EntryKind, Figures
from returnguard.domain.refunds import allocate
from returnguard.domain.returns import ReturnStatus
from returnguard.fx import service as fx
from returnguard.ledger.models import LedgerEntry
from returnguard.orders.models import Channel, Order, OrderLine, Product
from returnguard.refunds.models import SUCCEEDED, Refund
from returnguard.returns.models import Return, ReturnLine


def _entries_between(
    session: Session, organization_id: uuid.UUID, first: date, last: date
) -> list[LedgerEntry]:
    stmt = (
        select(LedgerEntry)
        .where(
            LedgerEntry.organization_id == organization_id,
            LedgerEntry.occurred_on >= first,
            LedgerEntry.occurred_on <= last,
        )
        .order_by(LedgerEntry.occurred_on, LedgerEntry.created_at, LedgerEntry.id)
    )
    return list(session.scalars(stmt))


def _entries_of_returns(session: Session, return_ids: Iterable[uuid.UUID]) -> list[LedgerEntry]:
    ids = list(return_ids)
    if not ids:
        return []
    return list(session.scalars(select(LedgerEntry).where(LedgerEntry.return_id.in_(ids))))


class GroupBy(StrEnum):
    ORDER = "order"
    SKU = "sku"
    CHANNEL = "channel"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class MissingRate:
    what: str  # "order" | "cost" | "entry" | "refund"
    id: str
    currency: str
    day: date
    amount_minor: int


class Converter:
    """Amounts into the base currency at their day's rate, remembering what it could not."""

    def __init__(self, session: Session, organization_id: uuid.UUID, base: str) -> None:
        self.session = session
        self.organization_id = organization_id
        self.base = base
        self.missing: list[MissingRate] = []
        self._rates: dict[tuple[str, date], Decimal | None] = {}

    def rate(self, currency: str, day: date) -> Decimal | None:
        key = (currency, day)
        if key not in self._rates:
            self._rates[key] = fx.rate(self.session, self.organization_id, currency, self.base, day)
        return self._rates[key]

    def __call__(
        self, amount_minor: int, currency: str, day: date, *, what: str, ref: object
    ) -> int | None:
        rate = self.rate(currency, day)
        if rate is None:
            self.missing.append(MissingRate(what, str(ref), currency, day, amount_minor))
            return None
        return rules.convert(amount_minor, rate, currency, self.base)


def base_currency(session: Session, organization_id: uuid.UUID) -> str:
    org = session.get(Organization, organization_id)
    if org is None:
        raise LookupError(f"organization {organization_id} not found")
    return org.base_currency


def _start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _line_value(line: OrderLine) -> int:
    return max(line.unit_price_minor * line.quantity + line.tax_minor - line.discount_minor, 0)


def _products(session: Session, organization_id: uuid.UUID) -> dict[uuid.UUID, Product]:
    rows = session.scalars(select(Product).where(Product.organization_id == organization_id))
    return {p.id: p for p in rows}


# --- net profit ---------------------------------------------------------------------------


@dataclass
class NetProfitRow:
    key: str
    label: str
    figures: Figures = field(default_factory=Figures)


@dataclass
class NetProfitReport:
    group_by: GroupBy
    first: date
    last: date
    currency: str
    rows: list[NetProfitRow]
    total: Figures
    missing_rates: list[MissingRate]
    missing_costs: dict[str, int]


class _Groups:
    """The rows of a report being built, and how an order or an entry finds its row(s)."""

    def __init__(self, session: Session, organization_id: uuid.UUID, group_by: GroupBy) -> None:
        self.session = session
        self.group_by = group_by
        self.rows: dict[str, NetProfitRow] = {}
        self.channels = {
            c.id: c
            for c in session.scalars(
                select(Channel).where(Channel.organization_id == organization_id)
            )
        }
        self.orders: dict[uuid.UUID, Order] = {}
        self.returns: dict[uuid.UUID, Return] = {}

    def row(self, key: str, label: str) -> Figures:
        if key not in self.rows:
            self.rows[key] = NetProfitRow(key, label)
        return self.rows[key].figures

    def single(self, order: Order, channel_id: uuid.UUID, day: date) -> Figures:
        """The one row of an order's or entry's figures when not grouped by SKU."""
        if self.group_by is GroupBy.ORDER:
            return self.row(str(order.id), order.external_id)
        if self.group_by is GroupBy.CHANNEL:
            channel = self.channels.get(channel_id)
            return (
                self.row(channel.code, channel.name) if channel else self.row(str(channel_id), "")
            )
        return self.row(day.strftime("%Y-%m"), day.strftime("%B %Y"))

    def load(self, entries: list[LedgerEntry]) -> None:
        """Fetch the orders (and for SKU grouping the returns) the entries belong to."""
        order_ids = {e.order_id for e in entries} - set(self.orders)
        if order_ids:
            stmt = select(Order).where(Order.id.in_(order_ids)).options(selectinload(Order.lines))
            self.orders.update((o.id, o) for o in self.session.scalars(stmt))
        if self.group_by is GroupBy.SKU:
            self.returns.update(
                _returns_with_lines(
                    self.session,
                    {e.return_id for e in entries if e.return_id is not None and e.sku is None},
                )
            )

    def sku_shares(self, entry: LedgerEntry, amount: int) -> list[tuple[str, str, int]]:
        """(sku, title, part) of an entry already converted to the base currency."""
        order = self.orders[entry.order_id]
        titles = {ln.sku: ln.title for ln in order.lines}
        if entry.sku is not None:
            return [(entry.sku, titles.get(entry.sku, ""), amount)]
        by_id = {ln.id: ln for ln in order.lines}
        ret = self.returns.get(entry.return_id) if entry.return_id else None
        if ret is not None:
            weighted = [
                (by_id[rl.order_line_id].sku, by_id[rl.order_line_id].unit_price_minor * units)
                for rl in ret.lines
                if rl.order_line_id in by_id
                for units in [rl.approved or rl.requested]
            ]
        else:
            weighted = [(ln.sku, _line_value(ln)) for ln in order.lines]
        merged: dict[str, int] = defaultdict(int)
        for sku, part in sku_split(amount, weighted):
            merged[sku] += part
        return [(sku, titles.get(sku, ""), part) for sku, part in merged.items()]


def sku_split(amount: int, weighted: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Share a signed ``amount`` among (sku, weight) pairs in proportion to the weights."""
    if not weighted:
        return [("", amount)]
    parts = rules.split_signed(amount, [w for _, w in weighted])
    return [(sku, part) for (sku, _), part in zip(weighted, parts, strict=True)]


def _returns_with_lines(
    session: Session, return_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, Return]:
    ids = list(return_ids)
    if not ids:
        return {}
    stmt = select(Return).where(Return.id.in_(ids)).options(selectinload(Return.lines))
    return {r.id: r for r in session.scalars(stmt)}


def net_profit(
    session: Session, organization_id: uuid.UUID, group_by: GroupBy, first: date, last: date
) -> NetProfitReport:
    """Revenue, cost of goods, refunds, return costs, recoveries and net per group."""
    if first > last:
        raise ValueError("the first day is after the last")
    base = base_currency(session, organization_id)
    convert = Converter(session, organization_id, base)
    products = _products(session, organization_id)
    groups = _Groups(session, organization_id, group_by)
    missing_costs: dict[str, int] = defaultdict(int)

    orders = session.scalars(
        select(Order)
        .where(
            Order.organization_id == organization_id,
            Order.ordered_at >= _start(first),
            Order.ordered_at < _start(last + timedelta(days=1)),
        )
        .options(selectinload(Order.lines))
        .order_by(Order.ordered_at, Order.id)
    )
    for order in orders:
        groups.orders[order.id] = order
        day = order.ordered_at.date()
        revenue = convert(order.captured_minor, order.currency, day, what="order", ref=order.id)
        if revenue is None:
            continue
        costs: list[int] = []
        for line in order.lines:
            product = products.get(line.product_id) if line.product_id else None
            if product is None or product.unit_cost_minor is None or not product.cost_currency:
                missing_costs[line.sku] += line.quantity
                costs.append(0)
                continue
            cost = convert(
                product.unit_cost_minor * line.quantity,
                product.cost_currency,
                day,
                what="cost",
                ref=line.id,
            )
            costs.append(cost or 0)
        if group_by is GroupBy.SKU:
            shares = allocate(revenue, [_line_value(ln) for ln in order.lines])
            for line, share, cost in zip(order.lines, shares, costs, strict=True):
                figures = groups.row(line.sku, line.title)
                figures.revenue += share
                figures.cost_of_goods += cost
        else:
            figures = groups.single(order, order.channel_id, day)
            figures.revenue += revenue
            figures.cost_of_goods += sum(costs)

    entries = _entries_between(session, organization_id, first, last)
    groups.load(entries)
    for entry in entries:
        amount = convert(
            entry.amount_minor, entry.currency, entry.occurred_on, what="entry", ref=entry.id
        )
        if amount is None:
            continue
        kind = EntryKind(entry.kind)
        if group_by is GroupBy.SKU:
            for sku, title, part in groups.sku_shares(entry, amount):
                groups.row(sku, title).add_entry(kind, part)
        else:
            order = groups.orders[entry.order_id]
            groups.single(order, entry.channel_id, entry.occurred_on).add_entry(kind, amount)

    if group_by is GroupBy.ORDER:
        ordered = sorted(groups.rows.values(), key=lambda r: (r.label, r.key))
    else:
        ordered = sorted(groups.rows.values(), key=lambda r: r.key)
    total = Figures()
    for row in ordered:
        total.add(row.figures)
    return NetProfitReport(
        group_by=group_by,
        first=first,
        last=last,
        currency=base,
        rows=ordered,
        total=total,
        missing_rates=convert.missing,
        missing_costs=dict(sorted(missing_costs.items())),
    )


# --- return-risk reserve ------------------------------------------------------------------

NOT_RETURNED = (
    ReturnStatus.CANCELLED.value,
    ReturnStatus.EXPIRED.value,
    ReturnStatus.REJECTED.value,
)


@dataclass
class ReserveRow:
    sku: str
    units_sold: int = 0
    units_returned: int = 0
    units_sold_hold: int = 0
    ledger_sum: int = 0
    rate_low: Decimal = Decimal(0)
    rate_high: Decimal = Decimal(1)
    loss_per_return: int = 0
    reserve_per_unit: int = 0

    @property
    def return_rate(self) -> Decimal:
        return Decimal(self.units_returned) / self.units_sold if self.units_sold else Decimal(0)

    @property
    def reserve(self) -> int:
        return self.reserve_per_unit * self.units_sold_hold


@dataclass
class ReserveReport:
    as_of: date
    lookback_days: int
    hold_days: int
    currency: str
    rows: list[ReserveRow]
    missing_rates: list[MissingRate]

    @property
    def total_reserve(self) -> int:
        return sum(r.reserve for r in self.rows)


def reserve(
    session: Session,
    organization_id: uuid.UUID,
    *,
    as_of: date,
    lookback_days: int = 180,
    hold_days: int = 30,
) -> ReserveReport:
    """The return-risk reserve per SKU.

    Units sold: order lines of orders placed in the ``lookback_days`` days up to ``as_of``.
    Units returned: of those units, the ones approved for return (returns cancelled,
    expired or rejected do not count). Return rate: the Wilson 95% upper bound. Loss per
    return: minus the ledger entries of those returns (up to ``as_of``) for the SKU, per
    returned unit, never below zero. Reserve per unit = upper bound x loss per return;
    the reserve to hold = reserve per unit x units sold in the last ``hold_days`` days.
    """
    if lookback_days < 1 or hold_days < 1 or hold_days > lookback_days:
        raise ValueError("need 1 <= hold_days <= lookback_days")
    base = base_currency(session, organization_id)
    convert = Converter(session, organization_id, base)
    end = _start(as_of + timedelta(days=1))
    start = _start(as_of - timedelta(days=lookback_days - 1))
    hold_start = _start(as_of - timedelta(days=hold_days - 1))
    rows: dict[str, ReserveRow] = {}
    lines = session.execute(
        select(OrderLine, Order.ordered_at)
        .join(Order, Order.id == OrderLine.order_id)
        .where(
            Order.organization_id == organization_id,
            Order.ordered_at >= start,
            Order.ordered_at < end,
        )
    ).all()
    line_sku: dict[uuid.UUID, str] = {}
    for line, ordered_at in lines:
        row = rows.setdefault(line.sku, ReserveRow(line.sku))
        row.units_sold += line.quantity
        if ordered_at >= hold_start:
            row.units_sold_hold += line.quantity
        line_sku[line.id] = line.sku
    returned = (
        session.execute(
            select(ReturnLine)
            .join(Return, Return.id == ReturnLine.return_id)
            .where(
                ReturnLine.order_line_id.in_(list(line_sku)),
                Return.status.not_in(NOT_RETURNED),
                ReturnLine.approved > 0,
            )
        )
        .scalars()
        .all()
        if line_sku
        else []
    )
    return_ids: set[uuid.UUID] = set()
    for rl in returned:
        rows[line_sku[rl.order_line_id]].units_returned += rl.approved
        return_ids.add(rl.return_id)
    entries = [e for e in _entries_of_returns(session, return_ids) if e.occurred_on <= as_of]
    groups = _Groups(session, organization_id, GroupBy.SKU)
    groups.load(entries)
    for entry in entries:
        amount = convert(
            entry.amount_minor, entry.currency, entry.occurred_on, what="entry", ref=entry.id
        )
        if amount is None:
            continue
        for sku, _, part in groups.sku_shares(entry, amount):
            if sku in rows:
                rows[sku].ledger_sum += part
    for row in rows.values():
        row.units_returned = min(row.units_returned, row.units_sold)
        row.rate_low, row.rate_high = rules.wilson(row.units_returned, row.units_sold)
        row.loss_per_return = rules.loss_per_return(row.ledger_sum, row.units_returned)
        row.reserve_per_unit = rules.reserve_per_unit(row.rate_high, row.loss_per_return)
    ordered = sorted(rows.values(), key=lambda r: (-r.reserve, r.sku))
    return ReserveReport(as_of, lookback_days, hold_days, base, ordered, convert.missing)


# --- money at risk ------------------------------------------------------------------------

# Goods are never expected back for these: a returnless refund or a kept item.
NO_GOODS_EXPECTED = (ReturnStatus.RESOLVED.value,)


@dataclass(frozen=True, slots=True)
class AtRiskItem:
    refund_id: uuid.UUID
    return_id: uuid.UUID
    return_line_id: uuid.UUID
    sku: str
    currency: str
    settled_on: date
    age_days: int
    age: str
    exposure: rules.Exposure


@dataclass
class AtRiskBucket:
    age: str
    refunds: set[uuid.UUID] = field(default_factory=set)
    not_received_units: int = 0
    not_received: int = 0
    not_inspected_units: int = 0
    not_inspected: int = 0


@dataclass
class MoneyAtRiskReport:
    as_of: date
    currency: str
    buckets: list[AtRiskBucket]
    items: list[AtRiskItem]
    missing_rates: list[MissingRate]

    @property
    def total_not_received(self) -> int:
        return sum(b.not_received for b in self.buckets)

    @property
    def total_not_inspected(self) -> int:
        return sum(b.not_inspected for b in self.buckets)


def money_at_risk(
    session: Session, organization_id: uuid.UUID, *, as_of: date
) -> MoneyAtRiskReport:
    """Refunds paid (succeeded) whose goods are not received, or received but not inspected,
    by days since payment. Goods received count against the earliest refunds of a line."""
    base = base_currency(session, organization_id)
    convert = Converter(session, organization_id, base)
    refunds = [
        r
        for r in session.scalars(
            select(Refund).where(
                Refund.organization_id == organization_id, Refund.status == SUCCEEDED
            )
        )
        if _settled_on(r) <= as_of
    ]
    by_refund = {r.id: r for r in refunds}
    paid: dict[uuid.UUID, list[rules.PaidUnits]] = defaultdict(list)
    for refund in refunds:
        for part in refund.lines:
            paid[uuid.UUID(str(part["return_line_id"]))].append(
                rules.PaidUnits(
                    key=str(refund.id),
                    settled_on=_settled_on(refund),
                    quantity=int(part["quantity"]),
                    total=int(part["total"]),
                )
            )
    lines = (
        session.execute(
            select(ReturnLine, Return.status, OrderLine.sku)
            .join(Return, Return.id == ReturnLine.return_id)
            .join(OrderLine, OrderLine.id == ReturnLine.order_line_id)
            .where(ReturnLine.id.in_(list(paid)))
        ).all()
        if paid
        else []
    )
    buckets = {label: AtRiskBucket(label) for label, _, _ in rules.AGE_BUCKETS}
    items: list[AtRiskItem] = []
    for return_line, status, sku in lines:
        if status in NO_GOODS_EXPECTED:
            continue
        for exposure in rules.exposures(
            paid[return_line.id], return_line.received, return_line.inspected
        ):
            refund = by_refund[uuid.UUID(exposure.key)]
            age_days = (as_of - exposure.settled_on).days
            label = rules.age_bucket(age_days)
            items.append(
                AtRiskItem(
                    refund_id=refund.id,
                    return_id=refund.return_id,
                    return_line_id=return_line.id,
                    sku=sku,
                    currency=refund.currency,
                    settled_on=exposure.settled_on,
                    age_days=age_days,
                    age=label,
                    exposure=exposure,
                )
            )
            # A zero amount needs no rate (and is not reported as missing one).
            not_received, not_inspected = (
                convert(amount, refund.currency, exposure.settled_on, what="refund", ref=refund.id)
                if amount
                else 0
                for amount in (exposure.not_received, exposure.not_inspected)
            )
            if not_received is None or not_inspected is None:
                continue
            bucket = buckets[label]
            bucket.refunds.add(refund.id)
            bucket.not_received_units += exposure.not_received_units
            bucket.not_received += not_received
            bucket.not_inspected_units += exposure.not_inspected_units
            bucket.not_inspected += not_inspected
    items.sort(key=lambda i: (-i.age_days, str(i.refund_id), str(i.return_line_id)))
    return MoneyAtRiskReport(as_of, base, list(buckets.values()), items, convert.missing)


def _settled_on(refund: Refund) -> date:
    # Refunds settled before settled_at existed fall back to their last update.
    return (refund.settled_at or refund.updated_at).date()
