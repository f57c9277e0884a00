"""Queries on refunds that other modules' views need in bulk."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from returnguard.refunds.models import FREED, GRANTED, PENDING, Refund


@dataclass(frozen=True)
class RefundCounts:
    """A return's refunds that still hold money (not failed or cancelled), and those of
    them granted or sent but not settled yet."""

    live: int = 0
    unsettled: int = 0


NONE = RefundCounts()


def counts_by_return(
    session: Session, return_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, RefundCounts]:
    """The refund counts of many returns in one query; a return without refunds is absent."""
    ids = list(set(return_ids))
    if not ids:
        return {}
    live = func.sum(case((Refund.status.not_in(FREED), 1), else_=0))
    unsettled = func.sum(case((Refund.status.in_((GRANTED, PENDING)), 1), else_=0))
    stmt = (
        select(Refund.return_id, live, unsettled)
        .where(Refund.return_id.in_(ids))
        .group_by(Refund.return_id)
    )
    return {
        row[0]: RefundCounts(int(row[1] or 0), int(row[2] or 0)) for row in session.execute(stmt)
    }
