from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from pydantic import Field

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.fx import service
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import CurrencyCode, DecimalString, OutModel, StrictModel

router = APIRouter(prefix="/api/v1/fx-rates", tags=["fx"])
Manager = Annotated[Actor, Depends(require(Permission.FX_MANAGE))]


class FxRateIn(StrictModel):
    day: date
    base: CurrencyCode
    quote: CurrencyCode
    rate: DecimalString = Field(
        description="Units of quote per one unit of base", examples=["1.0856"]
    )


class FxRateOut(OutModel):
    id: uuid.UUID
    day: date
    base: str
    quote: str
    rate: str
    source: str
    created_at: datetime


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=FxRateOut,
    responses=problem_responses(401, 403, 422),
)
def set_rate(body: FxRateIn, session: SessionDep, actor: Manager) -> FxRateOut:
    """Record the rate of a day (a second call for the same day corrects it)."""
    row = service.set_rate(
        session, actor, day=body.day, base=body.base, quote=body.quote, rate=Decimal(body.rate)
    )
    return FxRateOut.model_validate(row)


@router.get("", response_model=list[FxRateOut], responses=problem_responses(401, 422))
def list_rates(
    session: SessionDep,
    actor: Reader,
    base: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    quote: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
) -> list[FxRateOut]:
    return [
        FxRateOut.model_validate(r)
        for r in service.list_rates(session, actor.organization_id, base, quote)
    ]
