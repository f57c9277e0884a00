from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response, status

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.domain.ledger import RATE_PLACES, EntryKind, Figures
from returnguard.errors import InvalidInput
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.pagination import decode_cursor, encode_cursor
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import MoneyOut
from returnguard.ledger import reports, service
from returnguard.ledger import repository as repo
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.schemas import (
    AtRiskBucket,
    AtRiskItem,
    EntryIn,
    EntryOut,
    EntryPage,
    FiguresOut,
    MissingCost,
    MissingRate,
    MoneyAtRiskOut,
    NetProfitOut,
    NetProfitRow,
    ReserveOut,
    ReserveRow,
    ReverseIn,
)

router = APIRouter(prefix="/api/v1", tags=["ledger"])
Bookkeeper = Annotated[Actor, Depends(require(Permission.LEDGER_WRITE))]

# The longest period one net-profit report may cover.
MAX_REPORT_DAYS = 3660
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FromDay = Annotated[date, Query(alias="from", description="First day (inclusive)")]
ToDay = Annotated[date, Query(alias="to", description="Last day (inclusive)")]
AsOf = Annotated[date | None, Query(description="The day to report on; default today (UTC)")]


def entry_out(e: LedgerEntry) -> EntryOut:
    return EntryOut(
        id=e.id,
        kind=e.kind,
        amount=MoneyOut.from_minor(e.amount_minor, e.currency),
        occurred_on=e.occurred_on,
        order_id=e.order_id,
        return_id=e.return_id,
        order_line_id=e.order_line_id,
        sku=e.sku,
        channel_id=e.channel_id,
        refund_id=e.refund_id,
        paid_by=e.paid_by,
        source=e.source,
        memo=e.memo,
        details=e.details,
        automatic=e.natural_key is not None,
        reverses_id=e.reverses_id,
        created_by=e.created_by,
        created_at=e.created_at,
    )


def _check_range(first: date | None, last: date | None) -> None:
    if first is not None and last is not None and first > last:
        raise InvalidInput.field("from", f"{first} is after to ({last})")


@router.get("/ledger", response_model=EntryPage, responses=problem_responses(401, 422))
def list_entries(
    session: SessionDep,
    actor: Reader,
    return_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    kind: Annotated[list[EntryKind] | None, Query()] = None,
    first: Annotated[date | None, Query(alias="from", description="Occurred on or after")] = None,
    last: Annotated[date | None, Query(alias="to", description="Occurred on or before")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> EntryPage:
    """Ledger entries, newest booking first, filtered by return, order, kind or day."""
    _check_range(first, last)
    rows = repo.list_entries(
        session,
        actor.organization_id,
        return_id=return_id,
        order_id=order_id,
        kinds=[k.value for k in kind or []],
        occurred_from=first,
        occurred_to=last,
        after=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return EntryPage(
        items=[entry_out(e) for e in rows],
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
    )


@router.post(
    "/ledger",
    status_code=status.HTTP_201_CREATED,
    response_model=EntryOut,
    responses=problem_responses(400, 401, 403, 404, 422),
)
def add_entry(body: EntryIn, session: SessionDep, actor: Bookkeeper) -> EntryOut:
    """Book a cost or recovery by hand: duties, outbound shipping not recovered, a partner's
    handling invoice, a claim reimbursed, an adjustment. Send a positive amount; the kind
    decides the sign. refund_paid, restocking_fee_kept and return_label_recovered are
    booked automatically when a refund succeeds and cannot be sent here."""
    return entry_out(service.add_entry(session, actor, body))


@router.post(
    "/ledger/{entry_id}/reverse",
    status_code=status.HTTP_201_CREATED,
    response_model=EntryOut,
    responses=problem_responses(400, 401, 403, 404, 409, 422),
)
def reverse(
    entry_id: uuid.UUID, body: ReverseIn, session: SessionDep, actor: Bookkeeper
) -> EntryOut:
    """Correct an entry by booking its exact opposite (entries are never changed or
    deleted). An entry can be reversed once; a reversal cannot be reversed (409)."""
    return entry_out(service.reverse(session, actor, entry_id, body.reason))


def _figures(f: Figures, currency: str) -> dict[str, MoneyOut]:
    return {
        "revenue": MoneyOut.from_minor(f.revenue, currency),
        "cost_of_goods": MoneyOut.from_minor(f.cost_of_goods, currency),
        "refunds": MoneyOut.from_minor(f.refunds, currency),
        "return_costs": MoneyOut.from_minor(f.return_costs, currency),
        "recoveries": MoneyOut.from_minor(f.recoveries, currency),
        "net": MoneyOut.from_minor(f.net, currency),
    }


def _missing(items: list[reports.MissingRate]) -> list[MissingRate]:
    return [
        MissingRate(
            what=m.what,
            id=m.id,
            currency=m.currency,
            day=m.day,
            amount=MoneyOut.from_minor(m.amount_minor, m.currency),
        )
        for m in items
    ]


def net_profit_out(report: reports.NetProfitReport) -> NetProfitOut:
    return NetProfitOut(
        group_by=report.group_by.value,
        from_=report.first,
        to=report.last,
        currency=report.currency,
        rows=[
            NetProfitRow(key=r.key, label=r.label, **_figures(r.figures, report.currency))
            for r in report.rows
        ],
        total=FiguresOut(**_figures(report.total, report.currency)),
        missing_rates=_missing(report.missing_rates),
        missing_costs=[MissingCost(sku=s, units=u) for s, u in report.missing_costs.items()],
    )


@router.get(
    "/reports/net-profit",
    response_model=NetProfitOut,
    responses={
        200: {
            "description": "The report as JSON, CSV or XLSX (`format`)",
            "content": {"text/csv": {}, XLSX: {}},
        },
        **problem_responses(401, 422),
    },
)
def net_profit(
    session: SessionDep,
    actor: Reader,
    first: FromDay,
    last: ToDay,
    group_by: reports.GroupBy = reports.GroupBy.ORDER,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> NetProfitOut | Response:
    """True net profit per order, SKU, channel or month, in the organization's base
    currency: revenue - cost of goods - refunds - return costs + recoveries."""
    _check_range(first, last)
    if last - first > timedelta(days=MAX_REPORT_DAYS):
        raise InvalidInput.field("to", f"a report covers at most {MAX_REPORT_DAYS} days")
    report = reports.net_profit(session, actor.organization_id, group_by, first, last)
    name = f"net-profit-{group_by.value}-{first}-{last}"
    if format == "csv":
        return Response(
            reports.net_profit_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format == "xlsx":
        return Response(
            reports.net_profit_xlsx(report),
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return net_profit_out(report)


@router.get("/reports/reserve", response_model=ReserveOut, responses=problem_responses(401, 422))
def reserve(
    session: SessionDep,
    actor: Reader,
    lookback_days: Annotated[int, Query(ge=1, le=3650)] = 180,
    hold_days: Annotated[int, Query(ge=1, le=3650)] = 30,
    as_of: AsOf = None,
) -> ReserveOut:
    """The return-risk reserve per SKU: Wilson 95% upper bound of the return rate x the
    expected net loss per return, per unit sold and for the units sold in `hold_days`."""
    if hold_days > lookback_days:
        raise InvalidInput.field("hold_days", "must not be longer than lookback_days")
    day = as_of or service.today()
    report = reports.reserve(
        session, actor.organization_id, as_of=day, lookback_days=lookback_days, hold_days=hold_days
    )
    currency = report.currency
    return ReserveOut(
        as_of=day,
        lookback_days=lookback_days,
        hold_days=hold_days,
        currency=currency,
        rows=[
            ReserveRow(
                sku=r.sku,
                units_sold=r.units_sold,
                units_returned=r.units_returned,
                return_rate=_rate(r.return_rate),
                rate_low=_rate(r.rate_low),
                rate_high=_rate(r.rate_high),
                loss_per_return=MoneyOut.from_minor(r.loss_per_return, currency),
                reserve_per_unit=MoneyOut.from_minor(r.reserve_per_unit, currency),
                units_sold_hold=r.units_sold_hold,
                reserve=MoneyOut.from_minor(r.reserve, currency),
            )
            for r in report.rows
        ],
        total_reserve=MoneyOut.from_minor(report.total_reserve, currency),
        missing_rates=_missing(report.missing_rates),
    )


def _rate(value: Decimal) -> str:
    return format(value.quantize(RATE_PLACES), "f")


@router.get(
    "/reports/money-at-risk", response_model=MoneyAtRiskOut, responses=problem_responses(401, 422)
)
def money_at_risk(session: SessionDep, actor: Reader, as_of: AsOf = None) -> MoneyAtRiskOut:
    """Refunds already paid whose goods are not received yet (or received but not
    inspected), by days since the refund was paid, in the base currency."""
    day = as_of or service.today()
    report = reports.money_at_risk(session, actor.organization_id, as_of=day)
    currency = report.currency
    return MoneyAtRiskOut(
        as_of=day,
        currency=currency,
        buckets=[
            AtRiskBucket(
                age=b.age,
                refunds=len(b.refunds),
                not_received_units=b.not_received_units,
                not_received=MoneyOut.from_minor(b.not_received, currency),
                not_inspected_units=b.not_inspected_units,
                not_inspected=MoneyOut.from_minor(b.not_inspected, currency),
            )
            for b in report.buckets
        ],
        total_not_received=MoneyOut.from_minor(report.total_not_received, currency),
        total_not_inspected=MoneyOut.from_minor(report.total_not_inspected, currency),
        items=[
            AtRiskItem(
                refund_id=i.refund_id,
                return_id=i.return_id,
                return_line_id=i.return_line_id,
                sku=i.sku,
                settled_on=i.settled_on,
                age_days=i.age_days,
                age=i.age,
                not_received_units=i.exposure.not_received_units,
                not_received=MoneyOut.from_minor(i.exposure.not_received, i.currency),
                not_inspected_units=i.exposure.not_inspected_units,
                not_inspected=MoneyOut.from_minor(i.exposure.not_inspected, i.currency),
            )
            for i in report.items
        ],
        missing_rates=_missing(report.missing_rates),
    )
