from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from sqlalchemy.orm import Session

from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.domain.policy.document import PolicyDocument
from returnguard.domain.policy.validate import parse_policy
from returnguard.kit.deps import Reader, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import PositiveInt32
from returnguard.orders.endpoints import channel_out
from returnguard.orders.schemas import ChannelOut
from returnguard.orders.service import get_channel
from returnguard.policies import service
from returnguard.policies.backtest import backtest as run_backtest
from returnguard.policies.models import Policy
from returnguard.policies.public import PageFormat, channel_page, page_responses, public_url
from returnguard.policies.schemas import (
    AssignIn,
    BacktestIn,
    DocumentIn,
    PolicyIn,
    PolicyOut,
    PolicyVersionOut,
    PublishIn,
    ValidationOut,
    VersionOut,
)

router = APIRouter(prefix="/api/v1", tags=["policies"])
Manager = Annotated[Actor, Depends(require(Permission.POLICIES_MANAGE))]


def policy_out(session: Session, policy: Policy) -> PolicyOut:
    versions = service.versions(session, policy)
    return PolicyOut(
        id=policy.id,
        name=policy.name,
        published_version=policy.published_version,
        latest_version=versions[-1].version if versions else 0,
        versions=[VersionOut.model_validate(v) for v in versions],
        created_at=policy.created_at,
        updated_at=policy.updated_at,
    )


@router.get("/policies/schema", response_model=dict[str, Any])
def policy_schema() -> dict[str, Any]:
    """The JSON Schema of a policy document."""
    return PolicyDocument.model_json_schema()


@router.post(
    "/policies/validate", response_model=ValidationOut, responses=problem_responses(401, 422)
)
def validate_policy(body: DocumentIn, actor: Reader) -> ValidationOut:
    """Check a policy without saving it: every problem, with the path of its field."""
    _, problems = parse_policy(body.data())
    return ValidationOut(valid=not problems, problems=problems)


@router.get("/policies", response_model=list[PolicyOut], responses=problem_responses(401))
def list_policies(session: SessionDep, actor: Reader) -> list[PolicyOut]:
    return [policy_out(session, p) for p in service.list_policies(session, actor.organization_id)]


@router.post(
    "/policies",
    status_code=status.HTTP_201_CREATED,
    response_model=PolicyOut,
    responses=problem_responses(401, 403, 409, 422),
)
def create_policy(body: PolicyIn, session: SessionDep, actor: Manager) -> PolicyOut:
    """Save a new policy as a draft version 1. Nothing decides with it until published."""
    version = service.create_policy(session, actor, body.name, body.data())
    return policy_out(
        session, service.get_policy(session, actor.organization_id, version.policy_id)
    )


@router.get(
    "/policies/{policy_id}", response_model=PolicyOut, responses=problem_responses(401, 404)
)
def get_policy(policy_id: uuid.UUID, session: SessionDep, actor: Reader) -> PolicyOut:
    return policy_out(session, service.get_policy(session, actor.organization_id, policy_id))


@router.get(
    "/policies/{policy_id}/versions/{version}",
    response_model=PolicyVersionOut,
    responses=problem_responses(401, 404),
)
def get_version(
    policy_id: uuid.UUID, version: PositiveInt32, session: SessionDep, actor: Reader
) -> PolicyVersionOut:
    """One version's document, exactly as it was saved."""
    policy = service.get_policy(session, actor.organization_id, policy_id)
    found = service.get_version(session, policy, version)
    return PolicyVersionOut(
        policy_id=policy.id,
        name=policy.name,
        version=found.version,
        published=policy.published_version == found.version,
        document=found.document,
    )


@router.post(
    "/policies/{policy_id}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=PolicyOut,
    responses=problem_responses(401, 403, 404, 422),
)
def add_version(
    policy_id: uuid.UUID, body: DocumentIn, session: SessionDep, actor: Manager
) -> PolicyOut:
    """Save a new draft version; the published one keeps deciding until you publish."""
    policy = service.get_policy(session, actor.organization_id, policy_id)
    service.add_version(session, actor, policy, body.data())
    return policy_out(session, policy)


@router.post(
    "/policies/{policy_id}/publish",
    response_model=PolicyOut,
    responses=problem_responses(401, 403, 404, 422),
)
def publish(
    policy_id: uuid.UUID, body: PublishIn, session: SessionDep, actor: Manager
) -> PolicyOut:
    """Make a version the one new decisions use. Past decisions keep the version they used."""
    policy = service.get_policy(session, actor.organization_id, policy_id)
    service.publish(session, actor, policy, body.version)
    return policy_out(session, policy)


@router.post(
    "/channels/{code}/policy",
    response_model=ChannelOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def assign_policy(code: str, body: AssignIn, session: SessionDep, actor: Manager) -> ChannelOut:
    """Decide the channel's new returns with a published policy (null: the default)."""
    channel = get_channel(session, actor.organization_id, code)
    policy = (
        service.get_policy(session, actor.organization_id, body.policy_id)
        if body.policy_id
        else None
    )
    return channel_out(service.assign(session, actor, channel, policy))


@router.get(
    "/channels/{code}/policy-page",
    response_class=Response,
    responses=page_responses(401, 404, 422),
)
def policy_page(
    code: str,
    request: Request,
    session: SessionDep,
    actor: Reader,
    language: Annotated[str | None, Query(max_length=35)] = None,
    buyer_country: Annotated[str | None, Query(pattern="^[A-Z]{2}$")] = None,
    format: Annotated[PageFormat, Query()] = "html",
    start_url: Annotated[str | None, Query(max_length=2000)] = None,
    if_none_match: Annotated[str | None, Header(max_length=2000)] = None,
) -> Response:
    """The channel's published return policy as a buyer reads it, for a shop to embed
    (with `start_url`, the link that starts a return). Buyers open the same page without
    a key at `GET /policies/{organization_id}/{code}`, named in the `Link` header
    (`rel="canonical"`). Language: `language`, else the channel's. With `buyer_country` in
    the EU, UK or Japan it states the law there; `format=json` gives every promise as
    data."""
    channel = get_channel(session, actor.organization_id, code)
    canonical = public_url(
        request, channel, language=language, buyer_country=buyer_country, format=format
    )
    return channel_page(
        request,
        session,
        channel,
        language=language,
        accept_language=None,
        buyer_country=buyer_country,
        format=format,
        if_none_match=if_none_match,
        public=False,
        start_url=start_url,
        headers={"Link": f'<{canonical}>; rel="canonical"'},
    )


@router.post(
    "/policies/{policy_id}/backtest",
    response_model=dict[str, Any],
    responses={
        200: {
            "content": {"text/csv": {}},
            "description": "Summary (JSON) or differing returns (CSV)",
        },
        **problem_responses(401, 404, 422),
    },
)
def backtest(
    policy_id: uuid.UUID,
    body: BacktestIn,
    session: SessionDep,
    actor: Reader,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    """Run a version (a draft too) over past returns and compare with what happened: how
    decisions change, the money effect per currency, and the returns that would differ."""
    policy = service.get_policy(session, actor.organization_id, policy_id)
    version = service.get_version(session, policy, body.version)
    channel_id = (
        get_channel(session, actor.organization_id, body.channel).id if body.channel else None
    )
    start = datetime.combine(body.from_, time.min, UTC)
    end = datetime.combine(body.to, time.min, UTC) + timedelta(days=1)
    report = run_backtest(
        session,
        actor.organization_id,
        version,
        start=start,
        end=end,
        channel_id=channel_id,
        keep_rows=max(body.rows, 1),
    )
    if format == "csv":
        return Response(report.to_csv(), media_type="text/csv; charset=utf-8")
    return report.summary_dict(rows=body.rows) | {"policy_version": version.version}
