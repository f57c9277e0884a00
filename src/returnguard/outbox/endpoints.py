from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import Field

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.kit.deps import SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import OutModel, StrictModel
from returnguard.outbox import service
from returnguard.outbox.service import EVENT_TYPES

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Admin = Annotated[Actor, Depends(require(Permission.WEBHOOKS_MANAGE))]


class EndpointIn(StrictModel):
    url: str = Field(max_length=2000, examples=["https://example.com/returnguard"])
    event_types: list[str] = Field(min_length=1, examples=[list(EVENT_TYPES)])
    description: str = Field(default="", max_length=500)


class EndpointOut(OutModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    active: bool
    description: str
    created_at: datetime


class EndpointCreated(EndpointOut):
    secret: str = Field(description="Signing secret; shown only in this response")


class DeliveryOut(OutModel):
    id: uuid.UUID
    webhook_event_id: str
    event_type: str
    attempt: int
    status_code: int | None
    ok: bool
    error: str | None
    duration_ms: int
    created_at: datetime


@router.post(
    "/endpoints",
    status_code=status.HTTP_201_CREATED,
    response_model=EndpointCreated,
    responses=problem_responses(401, 403, 422),
)
def create_endpoint(body: EndpointIn, session: SessionDep, actor: Admin) -> EndpointCreated:
    """Register a URL to receive signed webhook events (`ReturnGuard-Signature` header)."""
    endpoint = service.create_endpoint(
        session,
        actor,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    return EndpointCreated.model_validate(endpoint)


@router.get("/endpoints", response_model=list[EndpointOut], responses=problem_responses(401, 403))
def list_endpoints(session: SessionDep, actor: Admin) -> list[EndpointOut]:
    return [
        EndpointOut.model_validate(e)
        for e in service.list_endpoints(session, actor.organization_id)
    ]


@router.get(
    "/endpoints/{endpoint_id}/deliveries",
    response_model=list[DeliveryOut],
    responses=problem_responses(401, 403, 404),
)
def list_deliveries(endpoint_id: uuid.UUID, session: SessionDep, actor: Admin) -> list[DeliveryOut]:
    """Every delivery attempt to this endpoint, newest first."""
    return [
        DeliveryOut.model_validate(d)
        for d in service.list_deliveries(session, actor.organization_id, endpoint_id)
    ]
