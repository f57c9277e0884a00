"""Exchange rates per day, for comparing amounts across currencies (value bands, reports).

A rate is looked up on the day asked for or the latest day before it; the inverse of a
stored pair and a cross through a third currency are used when the pair itself is not
stored. Nothing here uses floats: rates are Decimals from their stored text.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.errors import Conflict, InvalidInput
from returnguard.fx import ecb
from returnguard.fx.models import FxRate
from returnguard.kit.db import new_id, utcnow
from returnguard.kit.money import MoneyError, check_currency


def _stored(rate: Decimal) -> str:
    """The text a rate is kept as: the same value always gives the same text."""
    return format(rate.normalize(), "f")


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
    row.rate, row.source = _stored(rate), source
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


ECB_SOURCE = "ecb"
# Rows per executemany: bounds the memory of the parameters built for the driver.
_BATCH = 5000
# Updated rates listed in the import's event with their old value; the counts say the rest.
_LOGGED_CHANGES = 100


class ConcurrentImport(Conflict):
    code = "concurrent_update"
    title = "Changed at the same time"


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did: ``rates`` = ``created`` + ``updated`` + ``unchanged``."""

    import_id: uuid.UUID
    source: str
    base: str
    first_day: date
    last_day: date
    days: int
    currencies: list[str]
    skipped_currencies: list[str]
    rates: int
    created: int
    updated: int
    unchanged: int

    def as_event(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "base": self.base,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "days": self.days,
            "currencies": self.currencies,
            "skipped_currencies": self.skipped_currencies,
            "rates": self.rates,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
        }


def _problems(found: ecb.EcbFile) -> InvalidInput:
    errors: list[dict[str, Any]] = [{"field": "file", "message": str(p)} for p in found.problems]
    more = found.problem_count - len(found.problems)
    if more:
        errors.append({"field": "file", "message": f"and {more} more problem(s) not listed"})
    first = found.problems[0]
    others = f" (and {found.problem_count - 1} more)" if found.problem_count > 1 else ""
    return InvalidInput(f"file: {first}{others}; nothing was imported", errors=errors)


def _batches(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), _BATCH):
        yield rows[start : start + _BATCH]


def import_ecb(session: Session, actor: Actor, text: str) -> ImportSummary:
    """Record every rate of an ECB reference-rate CSV file, or none if it has any problem.

    A day already recorded is corrected like ``set_rate`` would (the import wins) and left
    as it is when its rate is the same. One event describes the whole import. Columns of
    retired currencies (CYP, BGN …) are skipped and named in the summary.
    """
    found = ecb.parse(text)
    if not found.ok:
        raise _problems(found)
    org = actor.organization_id
    days = sorted({r.day for r in found.rates})
    currencies = sorted({r.quote for r in found.rates})
    # One query for every row the file could touch, instead of one per rate.
    existing: dict[tuple[date, str], str] = {
        (day, quote): stored
        for day, quote, stored in session.execute(
            select(FxRate.day, FxRate.quote, FxRate.rate).where(
                FxRate.organization_id == org,
                FxRate.base == ecb.BASE,
                FxRate.quote.in_(currencies),
                FxRate.day >= days[0],
                FxRate.day <= days[-1],
            )
        )
    }
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    changes: list[dict[str, str]] = []
    unchanged = 0
    for r in found.rates:
        before = existing.get((r.day, r.quote))
        if before is None:
            inserts.append(
                {
                    "id": new_id(),
                    "organization_id": org,
                    "day": r.day,
                    "base": r.base,
                    "quote": r.quote,
                    "rate": _stored(r.rate),
                    "source": ECB_SOURCE,
                    "created_at": now,
                }
            )
        elif Decimal(before) == r.rate:
            unchanged += 1
        else:
            stored = _stored(r.rate)
            updates.append({"row_day": r.day, "row_quote": r.quote, "new_rate": stored})
            if len(changes) < _LOGGED_CHANGES:
                changes.append(
                    {"day": r.day.isoformat(), "quote": r.quote, "before": before, "after": stored}
                )
    table = FxRate.__table__
    assert isinstance(table, Table)
    try:
        with session.begin_nested():
            # Core statements in batches: no object is needed back, so the ORM's
            # per-row bookkeeping is skipped (the history has some 200,000 rates).
            for batch in _batches(inserts):
                # Plain executemany: multi-row VALUES statements, tried, were no faster
                # on SQLite and slower on PostgreSQL (psycopg parses each long one).
                session.execute(insert(table), batch)
            # By the natural key: loading 200,000 ids just to match on them costs more.
            change = (
                update(table)
                .where(
                    table.c.organization_id == org,
                    table.c.day == bindparam("row_day"),
                    table.c.base == ecb.BASE,
                    table.c.quote == bindparam("row_quote"),
                )
                .values(rate=bindparam("new_rate"), source=ECB_SOURCE)
            )
            for batch in _batches(updates):
                session.execute(change, batch)
    except IntegrityError:
        raise ConcurrentImport(
            "rates for these days were recorded while the file was imported; import it again"
        ) from None
    summary = ImportSummary(
        import_id=new_id(),
        source=ECB_SOURCE,
        base=ecb.BASE,
        first_day=days[0],
        last_day=days[-1],
        days=len(days),
        currencies=currencies,
        skipped_currencies=sorted(found.skipped),
        rates=len(found.rates),
        created=len(inserts),
        updated=len(updates),
        unchanged=unchanged,
    )
    audit.record(
        session,
        actor,
        subject_type="fx_rate",
        subject_id=summary.import_id,
        action="fx_rate.imported",
        after=summary.as_event(),
        data={"updated_rates": changes} if changes else None,
    )
    return summary
