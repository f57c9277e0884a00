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
        session, actor.organization_id, name=body.name, role=body.role.value, actor=actor
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
    key = service.revoke_api_key(session, actor, key_id)
    return ApiKeyOut.model_validate(key)


@router.get("/api-keys", response_model=list[ApiKeyOut], responses=problem_responses(401, 403))
def list_keys(session: SessionDep, actor: Admin) -> list[ApiKeyOut]:
    """The organization's API keys (never the keys themselves)."""
    return [
        ApiKeyOut.model_validate(k) for k in service.list_api_keys(session, actor.organization_id)
    ]


class UserIn(StrictModel):
    email: str = Field(min_length=3, max_length=320, examples=["anna@example.com"])
    name: str = Field(default="", max_length=200)
    role: Role


class UserOut(OutModel):
    id: uuid.UUID
    email: str
    name: str
    role: str
    created_at: datetime


class UserCreated(UserOut):
    api_key: str = Field(description="The user's API key; shown only in this response")


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserCreated,
    responses=problem_responses(401, 403, 409, 422),
)
def create_user(body: UserIn, session: SessionDep, actor: Admin) -> UserCreated:
    """Add a staff member with a role and issue their personal API key (shown once).

    Changes made with a personal key are recorded under the user's email.
    """
    user = service.create_user(
        session,
        actor.organization_id,
        email=body.email,
        role=body.role.value,
        name=body.name,
        actor=actor,
    )
    _, plain = service.create_api_key(
        session,
        actor.organization_id,
        name=f"personal key of {user.email}",
        role=user.role,
        user_id=user.id,
        actor=actor,
    )
    return UserCreated(
        id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        created_at=user.created_at,
        api_key=plain,
    )


@router.get("/users", response_model=list[UserOut], responses=problem_responses(401, 403))
def list_users(session: SessionDep, actor: Admin) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in service.list_users(session, actor.organization_id)]
