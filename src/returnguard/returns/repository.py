"""All queries on returns live here."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import (
    Select,
    Table,
    and_,
    bindparam,
    case,
    event,
    exists,
    func,
    inspect,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session, SessionTransaction, aliased, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from returnguard.domain.returns import ReturnStatus
from returnguard.returns.models import Inspection, Receipt, Return, ReturnLine, Shipment

# Returns in these statuses no longer hold any units of their order lines.
RELEASED = (ReturnStatus.REJECTED, ReturnStatus.CANCELLED, ReturnStatus.EXPIRED)
# Before a decision the requested units are held; after it, the approved ones.
UNDECIDED = (
    ReturnStatus.REQUESTED,
    ReturnStatus.AWAITING_EVIDENCE,
    ReturnStatus.PENDING_REVIEW,
    ReturnStatus.OFFERED,
)


def _claimed_statement() -> Select[uuid.UUID, int]:
    # A dispute can be opened before any decision. Until a decision has approved some
    # units (every decision approves at least one), the requested ones stay held.
    other = aliased(ReturnLine)
    disputed_undecided = and_(
        Return.status == ReturnStatus.DISPUTED.value,
        ~exists().where(other.return_id == Return.id, other.approved > 0),
    )
    held = case(
        (
            or_(Return.status.in_([s.value for s in UNDECIDED]), disputed_undecided),
            ReturnLine.requested,
        ),
        else_=ReturnLine.approved,
    )
    return (
        select(ReturnLine.order_line_id, func.coalesce(func.sum(held), 0))
        .join(Return, Return.id == ReturnLine.return_id)
        .where(
            ReturnLine.order_line_id.in_(bindparam("order_line_ids", expanding=True)),
            Return.status.not_in([s.value for s in RELEASED]),
        )
        .group_by(ReturnLine.order_line_id)
    )


MAX_IDS_PER_STATEMENT = 10_000

# Built once: every return request and order view asks it, and building it costs more
# CPU than the database spends answering it.
_CLAIMED = _claimed_statement()


def claimed_quantities(
    session: Session, order_line_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Units of each order line already taken by returns that still hold them."""
    ids = list(order_line_ids)
    if not ids:
        return {}
    found: dict[uuid.UUID, int] = {}
    # A page of 200 orders of up to 1000 lines each would pass SQLite's limit of bound
    # parameters (32766) in one statement.
    for start in range(0, len(ids), MAX_IDS_PER_STATEMENT):
        chunk = ids[start : start + MAX_IDS_PER_STATEMENT]
        for row in session.execute(_CLAIMED, {"order_line_ids": chunk}):
            found[row[0]] = int(row[1])
    return {i: found.get(i, 0) for i in ids}


def referenced_order_lines(session: Session, order_line_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Order lines that any return (open or finished) refers to."""
    ids = list(order_line_ids)
    if not ids:
        return set()
    stmt = select(ReturnLine.order_line_id).where(ReturnLine.order_line_id.in_(ids)).distinct()
    return set(session.scalars(stmt))


# Returns this transaction holds the row lock of (it locked or inserted them): locking
# one again would only repeat the query, since nobody else can have changed it since.
_LOCKED = "returnguard.returns.locked"


def _locked(session: Session) -> set[uuid.UUID]:
    held: set[uuid.UUID] = session.info.setdefault(_LOCKED, set())
    return held


# Rows this transaction holds the lock of and reads again (the order of a new return,
# when the policy decides it): kept referenced, so that the session's weak identity map
# still has them and reading them again by primary key sends no query.
_KEPT = "returnguard.returns.kept"


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: SessionTransaction) -> None:
    # The transaction's end, or a savepoint's (a rolled-back savepoint releases the locks
    # taken in it), so the next lock is taken and read again; a flush's own inner
    # transaction changes nothing.
    if transaction.parent is None or transaction.nested:
        session.info.pop(_LOCKED, None)
        session.info.pop(_KEPT, None)
        session.info.pop(_INSERTED, None)


# Returns this transaction inserted: nothing outside it refers to them yet.
_INSERTED = "returnguard.returns.inserted"


def hold_lock(session: Session, ret: Return) -> None:
    """Record that this transaction holds the row lock of ``ret`` (it inserted it)."""
    _locked(session).add(ret.id)
    inserted: set[uuid.UUID] = session.info.setdefault(_INSERTED, set())
    inserted.add(ret.id)


def inserted_here(session: Session, return_id: uuid.UUID) -> bool:
    """Whether this transaction inserted the return (so only it can have added to it)."""
    return return_id in session.info.get(_INSERTED, ())


def keep_locked(session: Session, row: object) -> None:
    """Keep ``row``, locked by this transaction, in the session until the transaction
    ends: nobody else can change it meanwhile, so the copy held is the row."""
    kept: list[object] = session.info.setdefault(_KEPT, [])
    kept.append(row)


def _loaded(session: Session, organization_id: uuid.UUID, return_id: uuid.UUID) -> Return | None:
    """The return as this session already holds it, lines and all, if it does."""
    found = session.identity_map.get(Session.identity_key(Return, return_id))
    if not isinstance(found, Return):
        return None
    state = inspect(found)
    if state.expired_attributes or "lines" in state.unloaded:
        return None
    return found if found.organization_id == organization_id else None


def get(
    session: Session, organization_id: uuid.UUID, return_id: uuid.UUID, *, lock: bool = False
) -> Return | None:
    """The return with its lines; ``lock`` takes its row lock for this transaction and
    reads it afresh, unless this transaction holds the lock already.

    A copy the session holds is used as it is: a query would not refresh it anyway (the
    session keeps what it loaded), and a held lock means nobody else changed the row."""
    if not lock or return_id in session.info.get(_LOCKED, ()):
        held = _loaded(session, organization_id, return_id)
        if held is not None:
            return held
    stmt = (
        select(Return)
        .where(Return.id == return_id, Return.organization_id == organization_id)
        .options(selectinload(Return.lines))
    )
    if lock:
        stmt = stmt.with_for_update(of=Return).execution_options(populate_existing=True)
    ret = session.scalar(stmt)
    if lock and ret is not None:
        _locked(session).add(ret.id)
    return ret


_returns = cast(Table, Return.__table__)
# The return's own columns a transition may change besides its status and version.
_CHANGEABLE = tuple(
    c.key for c in _returns.columns if not c.primary_key and c.key not in ("status", "version")
)
# Built once, on the table rather than the entity: asked on every new return.
_NUMBER_TAKEN = (
    select(_returns.c.id)
    .where(
        _returns.c.organization_id == bindparam("organization_id"),
        _returns.c.number == bindparam("number"),
    )
    .limit(1)
)


def number_taken(session: Session, organization_id: uuid.UUID, number: str) -> bool:
    found = session.execute(_NUMBER_TAKEN, {"organization_id": organization_id, "number": number})
    return found.first() is not None


def compare_and_set_status(
    session: Session,
    ret: Return,
    expected: str,
    new: str,
    expected_version: int,
    updated_at: datetime | None = None,
) -> bool:
    """Move the status only if nobody else moved it first; False when we lost the race.

    The same UPDATE writes what else was changed on ``ret`` and not flushed yet (a
    reason, an offer), and on success ``ret`` holds what the row does, with nothing
    left for a flush to write."""
    state = inspect(ret)
    values: dict[str, object] = {}
    for key in _CHANGEABLE:
        added = state.attrs[key].history.added
        if added:
            values[key] = added[0]
    values.update(status=new, version=expected_version + 1)
    if updated_at is not None:
        values["updated_at"] = updated_at
    # On the table, not the entity: the ORM's bulk UPDATE machinery costs more CPU than
    # the statement, and the one object it could refresh is refreshed below. Not
    # autoflushed: that would write the changes above in an UPDATE of their own.
    stmt = (
        update(_returns)
        .where(
            _returns.c.id == ret.id,
            _returns.c.status == expected,
            _returns.c.version == expected_version,
        )
        .values(values)
    )
    with session.no_autoflush:
        result = session.execute(stmt)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    for key, value in values.items():
        set_committed_value(ret, key, value)
    return True


def list_returns(
    session: Session,
    organization_id: uuid.UUID,
    *,
    statuses: Sequence[str] = (),
    order_id: uuid.UUID | None = None,
    channel_id: uuid.UUID | None = None,
    number: str | None = None,
    requested_from: datetime | None = None,
    requested_to: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Return]:
    """Newest first by (requested_at, id); ``after`` is the pair of the last return seen.

    Every filter is a range of one of the returns' composite indexes, read in the
    keyset order, so a page costs its own rows, however many returns match."""
    where = [Return.organization_id == organization_id]
    if order_id:
        where.append(Return.order_id == order_id)
    if channel_id:
        where.append(Return.channel_id == channel_id)
    if number is not None:
        # The unique key on (organization_id, number): one row at most.
        where.append(Return.number == number)
    if requested_from:
        where.append(Return.requested_at >= requested_from)
    if requested_to:
        where.append(Return.requested_at < requested_to)
    if after:
        at, rid = after
        # The first term bounds the index range; the second skips the ties already seen.
        where.append(Return.requested_at <= at)
        where.append(or_(Return.requested_at < at, Return.id < rid))
    newest_first = (Return.requested_at.desc(), Return.id.desc())
    wanted = list(dict.fromkeys(statuses))
    if len(wanted) > 1 and order_id is None:
        # Several statuses are several ranges of the index: an IN over them would come
        # back out of order and be sorted whole. Each status gives its own first `limit`
        # rows instead, and the page is the newest of those.
        branches = [
            select(Return.id)
            .where(*where, Return.status == status)
            .order_by(*newest_first)
            .limit(limit)
            .subquery()
            for status in wanted
        ]
        ids = union_all(*(select(b.c.id) for b in branches))
        where = [Return.id.in_(ids)]
    elif wanted:
        where.append(Return.status.in_(wanted))
    stmt = (
        select(Return)
        .where(*where)
        .options(selectinload(Return.lines))
        .order_by(*newest_first)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def by_number(session: Session, organization_id: uuid.UUID, number: str) -> Return | None:
    """The organization's return with this RMA number, with its lines."""
    stmt = (
        select(Return)
        .where(Return.organization_id == organization_id, Return.number == number)
        .options(selectinload(Return.lines))
    )
    return session.scalar(stmt)


def shipments(session: Session, return_id: uuid.UUID) -> list[Shipment]:
    stmt = select(Shipment).where(Shipment.return_id == return_id).order_by(Shipment.created_at)
    return list(session.scalars(stmt))


def receipts(session: Session, return_id: uuid.UUID) -> list[Receipt]:
    stmt = select(Receipt).where(Receipt.return_id == return_id).order_by(Receipt.received_at)
    return list(session.scalars(stmt))


def inspections(session: Session, return_id: uuid.UUID) -> list[Inspection]:
    stmt = (
        select(Inspection)
        .where(Inspection.return_id == return_id)
        .order_by(Inspection.inspected_at)
    )
    return list(session.scalars(stmt))
