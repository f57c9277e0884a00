"""Booking the cost ledger: automatically from refunds, shipments, receipts and inspections,
by hand for everything else, and reversing a mistake.

Entries are append-only (see models.py). Automatic entries carry a natural key, so each
hook can run again (a replayed webhook, a retried request) without booking twice. Every
entry is an event in the same transaction. Services flush; whoever opened the session
commits.

Hooks the other modules call:

- :func:`record_refund_paid` when a refund turns ``succeeded`` (refunds module);
- :func:`sync_return` after a return is shipped, received or inspected (returns module).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.auth.models import Organization
from returnguard.domain import ledger as rules
from returnguard.domain.ledger import EntryKind, LabelPayer
from returnguard.errors import Conflict, InvalidInput, NotFound
from returnguard.fx import service as fx
from returnguard.kit.db import utcnow
from returnguard.kit.money import Money
from returnguard.ledger import repository as repo
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.schemas import EntryIn
from returnguard.orders.models import Channel, Order, OrderLine, Product
from returnguard.orders.repository import products_by_sku
from returnguard.refunds.models import SUCCEEDED, Refund
from returnguard.returns import repository as returns_repo
from returnguard.returns.models import Return, ReturnLine

# A day of slack for "not in the future": the user's today may be our tomorrow.
_FUTURE_SLACK = timedelta(days=1)


class AlreadyReversed(Conflict):
    code = "already_reversed"
    title = "The entry was reversed already"


class IsReversal(Conflict):
    code = "reversal_not_reversible"
    title = "A reversal cannot be reversed"


class ConcurrentBooking(Conflict):
    code = "concurrent_update"
    title = "Booked at the same time"


def today() -> date:
    return utcnow().date()


def entry_state(entry: LedgerEntry) -> dict[str, Any]:
    """What an event says about an entry."""
    return {
        "kind": entry.kind,
        "amount": Money.from_minor(entry.amount_minor, entry.currency).as_api(),
        "occurred_on": entry.occurred_on.isoformat(),
        "order_id": entry.order_id,
        "return_id": entry.return_id,
        "order_line_id": entry.order_line_id,
        "sku": entry.sku,
        "refund_id": entry.refund_id,
        "paid_by": entry.paid_by,
        "source": entry.source,
        "memo": entry.memo,
        "details": entry.details,
        "natural_key": entry.natural_key,
        "reverses_id": entry.reverses_id,
    }


def _book(session: Session, actor: Actor, entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
    """Add the entries whose natural key is not booked yet; one event per entry."""
    keys = [e.natural_key for e in entries if e.natural_key is not None]
    if len(set(keys)) != len(keys):
        raise ValueError("two new entries share a natural key")
    taken = repo.existing_keys(session, actor.organization_id, keys)
    new = [e for e in entries if e.natural_key is None or e.natural_key not in taken]
    if not new:
        return []
    try:
        with session.begin_nested():
            session.add_all(new)
    except IntegrityError:
        # Callers hold the lock of the refund or return they book for, so this is only
        # reached if someone books the same thing without it.
        raise ConcurrentBooking(
            "these ledger entries were booked by another request at the same time; retry"
        ) from None
    for entry in new:
        audit.record(
            session,
            actor,
            subject_type="ledger_entry",
            subject_id=entry.id,
            return_id=entry.return_id,
            action="ledger.entry_reversed" if entry.reverses_id else "ledger.entry_booked",
            after=entry_state(entry),
        )
    return new


def _entry(
    actor: Actor,
    order: Order,
    *,
    kind: EntryKind,
    amount_minor: int,
    currency: str,
    occurred_on: date,
    ret: Return | None = None,
    order_line: OrderLine | None = None,
    **extra: Any,
) -> LedgerEntry:
    return LedgerEntry(
        organization_id=actor.organization_id,
        kind=kind.value,
        amount_minor=amount_minor,
        currency=currency,
        occurred_on=occurred_on,
        order_id=order.id,
        return_id=ret.id if ret else None,
        order_line_id=order_line.id if order_line else None,
        sku=order_line.sku if order_line else None,
        channel_id=order.channel_id,
        created_by=actor.label,
        created_at=utcnow(),
        **extra,
    )


# --- automatic entries --------------------------------------------------------------------


def record_refund_paid(session: Session, actor: Actor, refund: Refund) -> None:
    """Book a succeeded refund: per line the gross refunded (-) and the restocking fee kept
    (+), and the return label deducted from it (+). Safe to call again: books once.

    The entries sum to minus what was paid out, ``refund.amount_minor`` less what the
    provider's rounding left unsent (``refund.unsent_minor``), in the refund's currency,
    on the day it was settled.
    """
    if refund.status != SUCCEEDED:
        raise ValueError(f"refund {refund.id} is {refund.status}, not succeeded: nothing is paid")
    order = session.get(Order, refund.order_id)
    ret = session.get(Return, refund.return_id)
    if order is None or ret is None:
        raise LookupError(f"refund {refund.id} has no order or return")
    order_lines = {str(ln.id): ln for ln in order.lines}
    lines = [
        rules.RefundedLine(
            order_line_id=str(part["order_line_id"]),
            quantity=int(part["quantity"]),
            total=int(part["total"]),
            restocking_fee=int(part.get("restocking_fee") or 0),
        )
        for part in refund.lines
    ]
    planned = rules.refund_entries(lines, refund.return_shipping_deduction_minor)
    if sum(p.amount_minor for p in planned) != -refund.amount_minor:
        raise ValueError(
            f"refund {refund.id}: its lines less the label deduction do not add up to its amount"
        )
    # What the provider could not send (its unit is coarser) was not paid: it comes off
    # the last lines' refund_paid, and each such entry says how much.
    unsent, kept = refund.unsent_minor or 0, dict[str, int]()
    for i in reversed(range(len(planned))):
        p = planned[i]
        if unsent and p.kind is EntryKind.REFUND_PAID and p.order_line_id:
            take = min(unsent, -p.amount_minor)
            planned[i] = replace(p, amount_minor=p.amount_minor + take)
            unsent, kept[p.order_line_id] = unsent - take, take
    if unsent:
        raise ValueError(f"refund {refund.id}: more left unsent than it refunds")
    planned = [p for p in planned if p.amount_minor]
    day = (refund.settled_at or utcnow()).date()
    entries = [
        _entry(
            actor,
            order,
            kind=p.kind,
            amount_minor=p.amount_minor,
            currency=refund.currency,
            occurred_on=day,
            ret=ret,
            order_line=order_lines.get(p.order_line_id) if p.order_line_id else None,
            refund_id=refund.id,
            details=_details(lines, p, kept),
            natural_key=f"refund:{refund.id}:{p.kind.value}:{p.order_line_id or '-'}",
        )
        for p in planned
    ]
    _book(session, actor, entries)


def _details(
    lines: Sequence[rules.RefundedLine], planned: rules.PlannedEntry, unsent: dict[str, int]
) -> dict[str, Any] | None:
    if not planned.order_line_id:
        return None
    details: dict[str, Any] = {"units": _units(lines, planned.order_line_id)}
    if planned.kind is EntryKind.REFUND_PAID and planned.order_line_id in unsent:
        details["unsent_minor"] = unsent[planned.order_line_id]
    return details


def _units(lines: Sequence[rules.RefundedLine], order_line_id: str | None) -> int:
    return sum(ln.quantity for ln in lines if ln.order_line_id == order_line_id)


def sync_return(session: Session, actor: Actor, ret: Return) -> list[LedgerEntry]:
    """Book what a return's shipments, receipts and inspections cost or recovered so far.

    - a return label the seller paid (``label_paid_by`` = seller): its recorded cost, or the
      channel's usual label cost when the shipment has none (marked as estimated);
    - the channel's handling cost, once per return, when the first units are received;
    - residual value per inspected line with a disposition: units (passed + failed) x the
      product's unit cost x the disposition's percentage, in the order's currency at that
      day's rate (in the cost currency when no rate is known). No cost known: no entry.

    Idempotent: what is booked already is not booked again.
    """
    order = session.get(Order, ret.order_id)
    channel = session.get(Channel, ret.channel_id)
    if order is None or channel is None:
        raise LookupError(f"return {ret.id} has no order or channel")
    entries: list[LedgerEntry] = []
    for shipment in repo.shipments(session, ret.id):
        if shipment.label_paid_by != LabelPayer.SELLER.value:
            continue
        details: dict[str, Any] = {"shipment_id": str(shipment.id), "carrier": shipment.carrier}
        if shipment.label_cost_minor and shipment.label_cost_currency:
            cost, currency = shipment.label_cost_minor, shipment.label_cost_currency
        elif channel.return_label_cost_minor:
            cost, currency = channel.return_label_cost_minor, channel.currency
            details["estimated"] = True
        else:
            continue
        entries.append(
            _entry(
                actor,
                order,
                kind=EntryKind.RETURN_LABEL,
                amount_minor=rules.signed_amount(EntryKind.RETURN_LABEL, cost),
                currency=currency,
                occurred_on=shipment.created_at.date(),
                ret=ret,
                paid_by=LabelPayer.SELLER.value,
                memo="estimated from the channel's return label cost"
                if details.get("estimated")
                else f"{shipment.carrier} {shipment.tracking_number}",
                details=details,
                natural_key=f"shipment:{shipment.id}:return_label",
            )
        )
    received_at = repo.first_receipt_at(session, ret.id)
    if received_at is not None and channel.handling_cost_minor:
        entries.append(
            _entry(
                actor,
                order,
                kind=EntryKind.HANDLING_FEE,
                amount_minor=rules.signed_amount(
                    EntryKind.HANDLING_FEE, channel.handling_cost_minor
                ),
                currency=channel.currency,
                occurred_on=received_at.date(),
                ret=ret,
                memo=f"handling cost of channel {channel.code}",
                natural_key=f"return:{ret.id}:handling_fee",
            )
        )
    entries += _residual_entries(session, actor, ret, order)
    return _book(session, actor, entries)


def _product(session: Session, org_id: uuid.UUID, line: OrderLine) -> Product | None:
    if line.product_id is not None:
        return session.get(Product, line.product_id)
    return products_by_sku(session, org_id, [line.sku]).get(line.sku)


def _residual_entries(
    session: Session, actor: Actor, ret: Return, order: Order
) -> list[LedgerEntry]:
    return_lines: dict[str, ReturnLine] = {str(ln.id): ln for ln in ret.lines}
    order_lines = {ln.id: ln for ln in order.lines}
    entries: list[LedgerEntry] = []
    for inspection in repo.inspections(session, ret.id):
        day = inspection.inspected_at.date()
        for part in inspection.lines:
            disposition = part.get("disposition")
            units = int(part.get("passed") or 0) + int(part.get("failed") or 0)
            return_line = return_lines.get(str(part.get("return_line_id")))
            if not disposition or units <= 0 or return_line is None:
                continue
            order_line = order_lines.get(return_line.order_line_id)
            if order_line is None:
                continue
            product = _product(session, actor.organization_id, order_line)
            if product is None or product.unit_cost_minor is None or not product.cost_currency:
                continue
            cost_currency = product.cost_currency
            rate = fx.rate(session, actor.organization_id, cost_currency, order.currency, day)
            currency = order.currency if rate is not None else cost_currency
            percent = rules.RESIDUAL_PERCENT[disposition]
            amount = rules.residual_value(
                product.unit_cost_minor,
                units,
                disposition,
                rate=rate if rate is not None else Decimal(1),
                cost_currency=cost_currency,
                currency=currency,
            )
            if amount == 0:
                continue
            entries.append(
                _entry(
                    actor,
                    order,
                    kind=EntryKind.RESIDUAL_VALUE,
                    amount_minor=rules.signed_amount(EntryKind.RESIDUAL_VALUE, amount),
                    currency=currency,
                    occurred_on=day,
                    ret=ret,
                    order_line=order_line,
                    memo=f"{units} unit(s) {disposition.replace('_', ' ')} at {percent}% of cost",
                    details={
                        "inspection_id": str(inspection.id),
                        "disposition": disposition,
                        "units": units,
                        "unit_cost": Money.from_minor(
                            product.unit_cost_minor, cost_currency
                        ).as_api(),
                        "percent": format(percent, "f"),
                        "rate": format(rate, "f") if rate is not None else None,
                    },
                    natural_key=f"inspection:{inspection.id}:{return_line.id}:residual_value",
                )
            )
    return entries


# --- manual entries and reversals ---------------------------------------------------------


def _base_currency(session: Session, organization_id: uuid.UUID) -> str:
    org = session.get(Organization, organization_id)
    return org.base_currency if org else "EUR"


def add_entry(session: Session, actor: Actor, data: EntryIn) -> LedgerEntry:
    """Book a cost or recovery by hand; the kind decides the sign of the positive amount."""
    org_id = actor.organization_id
    ret: Return | None = None
    if data.return_id is not None:
        ret = returns_repo.get(session, org_id, data.return_id)
        if ret is None:
            raise NotFound(f"return {data.return_id} not found")
        if data.order_id is not None and data.order_id != ret.order_id:
            raise InvalidInput.field("order_id", f"is not the order of return {ret.number}")
        order_id = ret.order_id
    elif data.order_id is not None:
        order_id = data.order_id
    else:
        raise InvalidInput.field("order_id", "give the return_id or the order_id it belongs to")
    order = session.get(Order, order_id)
    if order is None or order.organization_id != org_id:
        raise NotFound(f"order {order_id} not found")
    order_line: OrderLine | None = None
    if data.order_line_id is not None:
        if ret is None:
            raise InvalidInput.field(
                "order_line_id", "needs return_id: name the return the line came back in"
            )
        if data.order_line_id not in {ln.order_line_id for ln in ret.lines}:
            raise InvalidInput.field("order_line_id", f"is not a line of return {ret.number}")
        order_line = next(ln for ln in order.lines if ln.id == data.order_line_id)
    if data.kind is EntryKind.CLAIM_REIMBURSED and data.source is None:
        raise InvalidInput.field(
            "source", "say who paid the claim: marketplace, carrier or chargeback"
        )
    if data.kind is not EntryKind.CLAIM_REIMBURSED and data.source is not None:
        raise InvalidInput.field("source", "only a claim_reimbursed entry has a source")
    if data.kind is not EntryKind.RETURN_LABEL and data.paid_by is not None:
        raise InvalidInput.field("paid_by", "only a return_label entry has paid_by")
    money = data.amount.to_money()
    if money.minor == 0:
        raise InvalidInput.field("amount.amount", "must be above zero")
    day = data.occurred_on or today()
    if day > today() + _FUTURE_SLACK:
        raise InvalidInput.field("occurred_on", "is in the future")
    base = _base_currency(session, org_id)
    if money.currency not in (order.currency, base) and (
        fx.rate(session, org_id, money.currency, base, day) is None
    ):
        raise InvalidInput.field(
            "amount.currency",
            f"no exchange rate from {money.currency} to {base} on or before {day}; "
            "record one first (POST /api/v1/fx-rates) or use the order's currency "
            f"{order.currency}",
        )
    entry = _entry(
        actor,
        order,
        kind=data.kind,
        amount_minor=rules.signed_amount(data.kind, money.minor),
        currency=money.currency,
        occurred_on=day,
        ret=ret,
        order_line=order_line,
        source=data.source.value if data.source else None,
        paid_by=(data.paid_by or LabelPayer.SELLER).value
        if data.kind is EntryKind.RETURN_LABEL
        else None,
        memo=data.memo,
    )
    return _book(session, actor, [entry])[0]


def reverse(session: Session, actor: Actor, entry_id: uuid.UUID, reason: str) -> LedgerEntry:
    """Book the opposite of an entry; an entry is reversed at most once, a reversal never."""
    original = repo.get(session, actor.organization_id, entry_id)
    if original is None:
        raise NotFound(f"ledger entry {entry_id} not found")
    if original.reverses_id is not None:
        raise IsReversal(
            f"entry {entry_id} is itself a reversal; book a new entry instead",
            extra={"reverses_id": str(original.reverses_id)},
        )
    existing = repo.reversal_of(session, original.id)
    if existing is not None:
        raise AlreadyReversed(
            f"entry {entry_id} was reversed already", extra={"reversal_id": str(existing.id)}
        )
    reversal = LedgerEntry(
        organization_id=original.organization_id,
        kind=original.kind,
        amount_minor=-original.amount_minor,
        currency=original.currency,
        # The correction belongs to the period of what it corrects: any report that shows
        # the original also shows its reversal, and nets it to zero.
        occurred_on=original.occurred_on,
        order_id=original.order_id,
        return_id=original.return_id,
        order_line_id=original.order_line_id,
        sku=original.sku,
        channel_id=original.channel_id,
        refund_id=original.refund_id,
        paid_by=original.paid_by,
        source=original.source,
        memo=reason,
        reverses_id=original.id,
        created_by=actor.label,
        created_at=utcnow(),
    )
    try:
        return _book(session, actor, [reversal])[0]
    except ConcurrentBooking:
        raise AlreadyReversed(f"entry {entry_id} was reversed already") from None
