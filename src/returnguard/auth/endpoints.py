from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import Field

from returnguard.auth import service
from returnguard.auth.models import Role
from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.kit.deps import CurrentActor, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import OutModel, StrictModel

router = APIRouter(prefix="/api/v1", tags=["auth"])
Admin = Annotated[Actor, Depends(require(Permission.KEYS_MANAGE))]


class MeOut(OutModel):
    organization_id: uuid.UUID
    role: str
    actor_type: str
    label: str


class ApiKeyIn(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role


class ApiKeyOut(OutModel):
    id: uuid.UUID
    name: str
    role: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="The key itself; shown only in this response")


@router.get("/me", response_model=MeOut, responses=problem_responses(401))
def me(actor: CurrentActor) -> MeOut:
    """Who the API key belongs to and what role it has."""
    return MeOut(
        organization_id=actor.organization_id,
        role=actor.role,
        actor_type=actor.actor_type,
        label=actor.label,
    )


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=problem_responses(401, 403, 422),
)
def create_key(body: ApiKeyIn, session: SessionDep, actor: Admin) -> ApiKeyCreated:
    """Create an API key with a role. The key is shown once and stored only as a hash."""
    key, plain = service.create_api_key(
        session, actor.organization_id, name=body.name, role=body.role.value
    )
    from returnguard.audit import service as audit

    audit.record(
        session,
        actor,
        subject_type="api_key",
        subject_id=key.id,
        action="api_key.created",
        after={"name": key.name, "role": key.role, "prefix": key.prefix},
    )
    return ApiKeyCreated(
        id=key.id,
        name=key.name,
        role=key.role,
        prefix=key.prefix,
        created_at=key.created_at,
        revoked_at=None,
        api_key=plain,
    )


@router.post(
    "/api-keys/{key_id}/revoke",
    response_model=ApiKeyOut,
    responses=problem_responses(401, 403, 404),
)
def revoke_key(key_id: uuid.UUID, session: SessionDep, actor: Admin) -> ApiKeyOut:
    key = service.revoke_api_key(session, actor.organization_id, key_id)
    from returnguard.audit import service as audit

    audit.record(
        session,
        actor,
        subject_type="api_key",
        subject_id=key.id,
        action="api_key.revoked",
        data={"prefix": key.prefix},
    )
    return ApiKeyOut.model_validate(key)
