from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.domain.ledger import EntryKind, Figures
from returnguard.errors import InvalidInput
from returnguard.kit.db import Database
from returnguard.kit.deps import Reader, SessionDep, get_database, require
from returnguard.kit.pagination import decode_cursor, encode_cursor
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import IsoDay, MoneyOut
from returnguard.ledger import exports, reports, service
from returnguard.ledger import repository as repo
from returnguard.ledger.models import LedgerEntry
from returnguard.ledger.schemas import (
    EntryIn,
    EntryOut,
    EntryPage,
    MissingCost,
    MoneyAtRiskOut,
    NetProfitOut,
    ReserveOut,
    ReverseIn,
)

router = APIRouter(prefix="/api/v1", tags=["ledger"])
Bookkeeper = Annotated[Actor, Depends(require(Permission.LEDGER_WRITE))]

# The longest period one net-profit report may cover.
MAX_REPORT_DAYS = 3660
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FromDay = Annotated[IsoDay, Query(alias="from", description="First day (inclusive)")]
ToDay = Annotated[IsoDay, Query(alias="to", description="Last day (inclusive)")]
AsOf = Annotated[IsoDay | None, Query(description="The day to report on; default today (UTC)")]


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
    first: Annotated[IsoDay | None, Query(alias="from", description="Occurred on or after")] = None,
    last: Annotated[IsoDay | None, Query(alias="to", description="Occurred on or before")] = None,
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


# --- reports ---------------------------------------------------------------------------
#
# Reports run in a read-only unit of work of their own (one snapshot for all their
# statements) and are streamed: rows leave the database, become JSON, CSV or XLSX and go
# out in chunks of about 64 KB, so a report over millions of orders never sits in memory.
# The response models document the JSON; the streamed bytes are exactly that shape.

_CHUNK = 64 * 1024


def _money(minor: int, currency: str) -> dict[str, str]:
    return MoneyOut.from_minor(minor, currency).model_dump()


def _figures(f: Figures, currency: str) -> dict[str, dict[str, str]]:
    return {
        name: _money(value, currency)
        for name, value in zip(reports.FIGURE_COLUMNS, reports.figure_values(f), strict=True)
    }


def _missing(items: Iterable[reports.MissingRate]) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json") for m in exports.missing_rates_out(items)]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _chunked(parts: Iterable[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for part in parts:
        buffer.append(part)
        size += len(part)
        if size >= _CHUNK:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()


def _json_object(
    head: dict[str, Any],
    streamed: str,
    items: Iterable[Any],
    tail: Callable[[], dict[str, Any]],
) -> Iterator[str]:
    """``{**head, streamed: [items…], **tail()}`` as JSON text, the list written as it comes
    and ``tail`` asked for after it (totals known only at the end)."""
    yield _dumps(head)[:-1] + f',"{streamed}":['
    for i, item in enumerate(items):
        yield ("," if i else "") + _dumps(item)
    yield "]," + _dumps(tail())[1:]


def _net_profit_json(report: reports.NetProfitReport) -> Iterator[str]:
    currency = report.currency
    total = Figures()

    def rows() -> Iterator[dict[str, Any]]:
        for row in report.rows():
            total.add(row.figures)
            yield {**_figures(row.figures, currency), "key": row.key, "label": row.label}

    def tail() -> dict[str, Any]:
        return {
            "total": _figures(total, currency),
            "missing_rates": _missing(report.missing_rates()),
            "missing_costs": [
                MissingCost(sku=s, units=u).model_dump() for s, u in report.missing_costs().items()
            ],
        }

    head = {
        "group_by": report.group_by.value,
        "from": report.first.isoformat(),
        "to": report.last.isoformat(),
        "currency": currency,
    }
    yield from _json_object(head, "rows", rows(), tail)


def _stream_net_profit(
    db: Database,
    organization_id: uuid.UUID,
    group_by: reports.GroupBy,
    first: date,
    last: date,
    format: str,
) -> Iterator[bytes]:
    with reports.reading(db) as session:
        report = reports.net_profit(session, organization_id, group_by, first, last)
        if format == "csv":
            yield from _chunked(reports.net_profit_csv(report))
        elif format == "xlsx":
            # The workbook is a zip written at the end: its sheets go to disk meanwhile.
            with tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK) as out:
                reports.write_net_profit_xlsx(report, out)
                out.seek(0)
                while chunk := out.read(_CHUNK):
                    yield chunk
        else:
            yield from _chunked(_net_profit_json(report))


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
    request: Request,
    actor: Reader,
    first: FromDay,
    last: ToDay,
    group_by: reports.GroupBy = reports.GroupBy.ORDER,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Response:
    """True net profit per order, SKU, channel or month, in the organization's base
    currency: revenue - cost of goods - refunds - return costs + recoveries."""
    _check_range(first, last)
    if last - first > timedelta(days=MAX_REPORT_DAYS):
        raise InvalidInput.field("to", f"a report covers at most {MAX_REPORT_DAYS} days")
    body = _stream_net_profit(
        get_database(request), actor.organization_id, group_by, first, last, format
    )
    return _export(body, format, f"net-profit-{group_by.value}-{first}-{last}")


def _export(body: Iterator[bytes], format: str, name: str) -> Response:
    """A streamed report: JSON, or a CSV or XLSX attachment named ``name``."""
    if format == "csv":
        return StreamingResponse(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format == "xlsx":
        return StreamingResponse(
            body,
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return StreamingResponse(body, media_type="application/json")


@router.get(
    "/reports/reserve",
    response_model=ReserveOut,
    responses={
        200: {
            "description": "The report as JSON, CSV or XLSX (`format`)",
            "content": {"text/csv": {}, XLSX: {}},
        },
        **problem_responses(401, 422),
    },
)
def reserve(
    request: Request,
    actor: Reader,
    lookback_days: Annotated[int, Query(ge=1, le=3650)] = 180,
    hold_days: Annotated[int, Query(ge=1, le=3650)] = 30,
    as_of: AsOf = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> ReserveOut | Response:
    """The return-risk reserve per SKU: Wilson 95% upper bound of the return rate x the
    expected net loss per return, per unit sold and for the units sold in `hold_days`."""
    if hold_days > lookback_days:
        raise InvalidInput.field("hold_days", "must not be longer than lookback_days")
    day = as_of or service.today()
    # One row per SKU: the report is read whole, so the files are written after the
    # snapshot is closed.
    with reports.reading(get_database(request)) as session:
        report = reports.reserve(
            session,
            actor.organization_id,
            as_of=day,
            lookback_days=lookback_days,
            hold_days=hold_days,
        )
    if format == "csv":
        return _export(_chunked(exports.reserve_csv(report)), format, f"reserve-{day}")
    if format == "xlsx":
        body = exports.xlsx_chunks(lambda out: exports.write_reserve_xlsx(report, out))
        return _export(body, format, f"reserve-{day}")
    return exports.reserve_out(report)


def _stream_money_at_risk(
    db: Database, organization_id: uuid.UUID, day: date, format: str
) -> Iterator[bytes]:
    with reports.reading(db) as session:
        report = reports.money_at_risk(session, organization_id, as_of=day)
        if format == "csv":
            yield from _chunked(exports.money_at_risk_csv(report))
        elif format == "xlsx":
            yield from exports.xlsx_chunks(
                lambda out: exports.write_money_at_risk_xlsx(report, out)
            )
        else:
            yield from _chunked(exports.money_at_risk_json(report))


@router.get(
    "/reports/money-at-risk",
    response_model=MoneyAtRiskOut,
    responses={
        200: {
            "description": "The report as JSON, CSV or XLSX (`format`)",
            "content": {"text/csv": {}, XLSX: {}},
        },
        **problem_responses(401, 422),
    },
)
def money_at_risk(
    request: Request,
    actor: Reader,
    as_of: AsOf = None,
    format: Literal["json", "csv", "xlsx"] = "json",
) -> Response:
    """Refunds already paid whose goods are not received yet (or received but not
    inspected), by days since the refund was paid, in the base currency."""
    day = as_of or service.today()
    body = _stream_money_at_risk(get_database(request), actor.organization_id, day, format)
    return _export(body, format, f"money-at-risk-{day}")
