"""Exchange rates per day, for comparing amounts across currencies (value bands, reports).

A rate is looked up on the day asked for or the latest day before it; the inverse of a
stored pair and a cross through a third currency are used when the pair itself is not
stored. Nothing here uses floats: rates are Decimals from their stored text.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.errors import InvalidInput
from returnguard.fx.models import FxRate
from returnguard.kit.money import MoneyError, check_currency


def _currency(code: str, field: str) -> str:
    try:
        return check_currency(code)
    except MoneyError as exc:
        raise InvalidInput.field(field, str(exc)) from None


def set_rate(
    session: Session,
    actor: Actor,
    *,
    day: date,
    base: str,
    quote: str,
    rate: Decimal,
    source: str = "manual",
) -> FxRate:
    """Record (or correct) the rate of one day; the correction is an event like any change."""
    base, quote = _currency(base, "base"), _currency(quote, "quote")
    if base == quote:
        raise InvalidInput.field("quote", "must differ from base")
    if not rate.is_finite() or rate <= 0:
        raise InvalidInput.field("rate", "must be a positive number")
    existing = session.scalar(
        select(FxRate).where(
            FxRate.organization_id == actor.organization_id,
            FxRate.day == day,
            FxRate.base == base,
            FxRate.quote == quote,
        )
    )
    before = existing.rate if existing else None
    row = existing or FxRate(organization_id=actor.organization_id, day=day, base=base, quote=quote)
    row.rate, row.source = format(rate.normalize(), "f"), source
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise InvalidInput.field("day", "a rate for this day was just recorded; retry") from None
    audit.record(
        session,
        actor,
        subject_type="fx_rate",
        subject_id=row.id,
        action="fx_rate.set",
        before={"rate": before} if before else None,
        after={
            "day": day.isoformat(),
            "base": base,
            "quote": quote,
            "rate": row.rate,
            "source": source,
        },
    )
    return row


def _latest(session: Session, org: uuid.UUID, base: str, quote: str, day: date) -> Decimal | None:
    text = session.scalar(
        select(FxRate.rate)
        .where(
            FxRate.organization_id == org,
            FxRate.base == base,
            FxRate.quote == quote,
            FxRate.day <= day,
        )
        .order_by(FxRate.day.desc())
        .limit(1)
    )
    return Decimal(text) if text is not None else None


def rate(
    session: Session,
    organization_id: uuid.UUID,
    base: str,
    quote: str,
    day: date,
    *,
    via: str = "EUR",
) -> Decimal | None:
    """Units of ``quote`` per unit of ``base`` on ``day`` (or the latest day before)."""
    if base == quote:
        return Decimal(1)
    direct = _latest(session, organization_id, base, quote, day)
    if direct is not None:
        return direct
    inverse = _latest(session, organization_id, quote, base, day)
    if inverse is not None:
        return Decimal(1) / inverse
    if via not in (base, quote):
        first = rate(session, organization_id, base, via, day, via=base)
        second = rate(session, organization_id, via, quote, day, via=quote)
        if first is not None and second is not None:
            return first * second
    return None


def list_rates(
    session: Session,
    organization_id: uuid.UUID,
    base: str | None,
    quote: str | None,
    limit: int = 200,
) -> list[FxRate]:
    stmt = select(FxRate).where(FxRate.organization_id == organization_id)
    if base:
        stmt = stmt.where(FxRate.base == base)
    if quote:
        stmt = stmt.where(FxRate.quote == quote)
    return list(session.scalars(stmt.order_by(FxRate.day.desc(), FxRate.base).limit(limit)))


def rates_into(
    session: Session,
    organization_id: uuid.UUID,
    currencies: frozenset[str],
    quote: str,
    day: date,
    cache: dict[tuple[str, str, date], Decimal | None] | None = None,
) -> dict[str, Decimal]:
    """Rates to ``quote`` for each of ``currencies`` known on ``day`` (unknown ones left out)."""
    found: dict[str, Decimal] = {}
    for base in currencies:
        if base == quote:
            continue
        key = (base, quote, day)
        if cache is not None and key in cache:
            value = cache[key]
        else:
            value = rate(session, organization_id, base, quote, day)
            if cache is not None:
                cache[key] = value
        if value is not None:
            found[base] = value
    return found
