from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response, status

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import MoneyOut
from returnguard.refunds import service
from returnguard.refunds.models import Refund
from returnguard.refunds.schemas import RefundIn, RefundOut, SettleIn
from returnguard.returns.service import get_return

router = APIRouter(prefix="/api/v1", tags=["refunds"])
Refunder = Annotated[Actor, Depends(require(Permission.REFUNDS_CREATE))]
Finance = Annotated[Actor, Depends(require(Permission.REFUNDS_SETTLE))]


def refund_out(r: Refund) -> RefundOut:
    return RefundOut(
        id=r.id,
        return_id=r.return_id,
        status=r.status,
        amount=MoneyOut.from_minor(r.amount_minor, r.currency),
        lines=r.lines,
        return_shipping_deduction=MoneyOut.from_minor(
            r.return_shipping_deduction_minor, r.currency
        ),
        reason=r.reason,
        override_reason=r.override_reason,
        provider=r.provider,
        provider_reference=r.provider_reference,
        failure=r.failure,
        created_by=r.created_by,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


@router.post(
    "/returns/{return_id}/refunds",
    response_model=RefundOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": RefundOut, "description": "The refund this key already made"},
        **problem_responses(400, 401, 403, 404, 409, 422),
    },
)
def create_refund(
    return_id: uuid.UUID,
    body: RefundIn,
    session: SessionDep,
    actor: Refunder,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RefundOut:
    """Refund units of a return, computed from what was paid and checked by the refund guard.

    Send an `Idempotency-Key`: a retry with the same key and body returns the same refund
    (200), never a second one; the same key with another body is a 422."""
    get_return(session, actor.organization_id, return_id)
    if not idempotency_key or not idempotency_key.strip():
        raise InvalidInput.field("Idempotency-Key", "send a unique key per refund in this header")
    refund, created = service.create_refund(
        session, actor, return_id, idempotency_key.strip(), body
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return refund_out(refund)


@router.get(
    "/returns/{return_id}/refunds",
    response_model=list[RefundOut],
    responses=problem_responses(401, 404),
)
def list_refunds(return_id: uuid.UUID, session: SessionDep, actor: Reader) -> list[RefundOut]:
    get_return(session, actor.organization_id, return_id)
    return [refund_out(r) for r in service.list_refunds(session, actor.organization_id, return_id)]


@router.post(
    "/refunds/{refund_id}/settle",
    response_model=RefundOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def settle(refund_id: uuid.UUID, body: SettleIn, session: SessionDep, actor: Finance) -> RefundOut:
    """Record the provider's answer for a manual refund (e.g. issued in Seller Central):
    `reference` when paid, or `failure` when it failed (its amount and units are freed)."""
    if (body.reference is None) == (body.failure is None):
        raise InvalidInput.field("reference", "send either reference (paid) or failure")
    paid = body.reference is not None
    note = body.reference if paid else body.failure
    assert note is not None
    return refund_out(service.settle(session, actor, refund_id, paid=paid, note=note))
