from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import Field

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput
from returnguard.kit.deps import EgressDep, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import OutModel, StrictModel
from returnguard.kit.secrets import KeyringDep
from returnguard.outbox import service
from returnguard.outbox.service import EVENT_TYPES

router = APIRouter(prefix="/api/v1/webhooks", tags=["webhooks"])
Admin = Annotated[Actor, Depends(require(Permission.WEBHOOKS_MANAGE))]


class EndpointIn(StrictModel):
    url: str = Field(max_length=2000, examples=["https://example.com/returnguard"])
    event_types: list[str] = Field(min_length=1, examples=[list(EVENT_TYPES)])
    description: str = Field(default="", max_length=500)


class EndpointPatch(StrictModel):
    """What to change; fields left out stay as they are."""

    active: bool | None = Field(
        default=None,
        description="false: stop delivering, including what is already queued; true: resume "
        "with the events from now on",
    )
    url: str | None = Field(default=None, max_length=2000)
    event_types: list[str] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=500)


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
    responses=problem_responses(401, 403, 422, 503),
)
def create_endpoint(
    body: EndpointIn, session: SessionDep, actor: Admin, egress: EgressDep, keyring: KeyringDep
) -> EndpointCreated:
    """Register a URL to receive signed webhook events (`ReturnGuard-Signature` header).
    The signing secret is in this answer only; it is stored encrypted (503
    `secret_key_missing` when the server has no key to encrypt it with)."""
    endpoint, secret = service.create_endpoint(
        session,
        actor,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        egress=egress,
        keyring=keyring,
    )
    return EndpointCreated(**EndpointOut.model_validate(endpoint).model_dump(), secret=secret)


@router.get("/endpoints", response_model=list[EndpointOut], responses=problem_responses(401, 403))
def list_endpoints(session: SessionDep, actor: Admin) -> list[EndpointOut]:
    return [
        EndpointOut.model_validate(e)
        for e in service.list_endpoints(session, actor.organization_id)
    ]


@router.get(
    "/endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=problem_responses(401, 403, 404),
)
def get_endpoint(endpoint_id: uuid.UUID, session: SessionDep, actor: Admin) -> EndpointOut:
    return EndpointOut.model_validate(
        service.get_endpoint(session, actor.organization_id, endpoint_id)
    )


@router.patch(
    "/endpoints/{endpoint_id}",
    response_model=EndpointOut,
    responses=problem_responses(401, 403, 404, 422),
)
def update_endpoint(
    endpoint_id: uuid.UUID,
    body: EndpointPatch,
    session: SessionDep,
    actor: Admin,
    egress: EgressDep,
    response: Response,
) -> EndpointOut:
    """Disable or re-enable an endpoint, or change its URL, event types or description.
    Disabling also stops what is already queued for it (those messages are not
    delivered; `Undelivered-Messages` says how many)."""
    if not body.model_fields_set:
        raise InvalidInput("say what to change: active, url, event_types or description")
    endpoint, dropped = service.update_endpoint(
        session,
        actor,
        endpoint_id,
        egress=egress,
        active=body.active,
        url=body.url,
        event_types=body.event_types,
        description=body.description,
    )
    response.headers["Undelivered-Messages"] = str(dropped)
    return EndpointOut.model_validate(endpoint)


@router.delete(
    "/endpoints/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def delete_endpoint(endpoint_id: uuid.UUID, session: SessionDep, actor: Admin) -> Response:
    """Remove an endpoint with its delivery log; nothing queued for it is delivered."""
    dropped = service.delete_endpoint(session, actor, endpoint_id)
    return Response(
        status_code=status.HTTP_204_NO_CONTENT, headers={"Undelivered-Messages": str(dropped)}
    )


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
