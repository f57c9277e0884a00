"""Policies: versioned documents, channel assignment, and decisions on returns.

A version is immutable once written; publishing makes it the one new decisions use, and
every decision names the version it used, so publishing never changes a past decision.
A channel without a policy of its own gets the built-in default for its currency,
stored and published on first use so that its decisions can name a version too.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, and_, bindparam, case, func, or_, select
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.domain.policy.defaults import default_policy_data
from returnguard.domain.policy.document import HighValueThreshold, PolicyDocument, Settings
from returnguard.domain.policy.engine import (
    CompiledPolicy,
    Decision,
    Outcome,
    compile_policy,
    evaluate,
)
from returnguard.domain.policy.validate import parse_policy
from returnguard.domain.refunds import LineId, LineTerms, ReturnTerms
from returnguard.errors import Conflict, InvalidInput, NotFound
from returnguard.fx import service as fx
from returnguard.kit.db import utcnow
from returnguard.orders.models import Channel
from returnguard.policies.facts import facts_json, return_facts
from returnguard.policies.models import Policy, PolicyVersion, ReturnDecision
from returnguard.returns.models import Return

# Names the built-in default policies take; reserved so no user policy is mistaken for one.
_BUILTIN_NAME = re.compile(r"Default policy \([A-Z]{3}\)")


class InvalidPolicy(InvalidInput):
    code = "invalid_policy"
    title = "The policy has problems"


class PolicyNotPublished(Conflict):
    code = "policy_not_published"


class PolicyExists(Conflict):
    code = "policy_exists"


def validate_document(data: Any) -> PolicyDocument:
    """Parse a policy; every problem is reported at once, with the path of its field."""
    document, problems = parse_policy(data)
    if document is None:
        errors = [{"field": f"document.{p['field']}", "message": p["message"]} for p in problems]
        raise InvalidPolicy(
            f"{len(errors)} problem(s): "
            + "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            errors=errors,
        )
    return document


def get_policy(session: Session, organization_id: uuid.UUID, policy_id: uuid.UUID) -> Policy:
    policy = session.scalar(
        select(Policy).where(Policy.id == policy_id, Policy.organization_id == organization_id)
    )
    if policy is None:
        raise NotFound(f"policy {policy_id} not found")
    return policy


def list_policies(session: Session, organization_id: uuid.UUID) -> list[Policy]:
    stmt = select(Policy).where(Policy.organization_id == organization_id).order_by(Policy.name)
    return list(session.scalars(stmt))


def versions(session: Session, policy: Policy) -> list[PolicyVersion]:
    stmt = (
        select(PolicyVersion)
        .where(PolicyVersion.policy_id == policy.id)
        .order_by(PolicyVersion.version)
    )
    return list(session.scalars(stmt))


def get_version(session: Session, policy: Policy, version: int | None = None) -> PolicyVersion:
    """A given version, or the latest one when ``version`` is None."""
    stmt = select(PolicyVersion).where(PolicyVersion.policy_id == policy.id)
    if version is None:
        stmt = stmt.order_by(PolicyVersion.version.desc()).limit(1)
    else:
        stmt = stmt.where(PolicyVersion.version == version)
    found = session.scalar(stmt)
    if found is None:
        raise NotFound(f"policy {policy.name!r} has no version {version}")
    return found


def create_policy(session: Session, actor: Actor, name: str, data: Any) -> PolicyVersion:
    """A new policy with its first (draft) version."""
    if actor.actor_type != "system" and _BUILTIN_NAME.fullmatch(name):
        raise PolicyExists(f"{name!r} is the name of the built-in default; choose another")
    document = validate_document(data)
    taken = select(Policy.id).where(
        Policy.organization_id == actor.organization_id, Policy.name == name
    )
    if session.scalar(taken) is not None:
        raise PolicyExists(f"a policy named {name!r} already exists; add a version to it")
    policy = Policy(organization_id=actor.organization_id, name=name)
    session.add(policy)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="policy",
        subject_id=policy.id,
        action="policy.created",
        after={"name": name},
    )
    return _add_version(session, actor, policy, document)


def add_version(session: Session, actor: Actor, policy: Policy, data: Any) -> PolicyVersion:
    """A new draft version; the published one keeps deciding until this one is published."""
    return _add_version(session, actor, policy, validate_document(data))


def _add_version(
    session: Session, actor: Actor, policy: Policy, document: PolicyDocument
) -> PolicyVersion:
    latest = session.scalar(
        select(func.max(PolicyVersion.version)).where(PolicyVersion.policy_id == policy.id)
    )
    version = PolicyVersion(
        organization_id=policy.organization_id,
        policy_id=policy.id,
        version=(latest or 0) + 1,
        document=document.model_dump(mode="json", exclude_none=True),
        created_by=actor.label,
    )
    session.add(version)
    policy.updated_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="policy",
        subject_id=policy.id,
        action="policy.version_added",
        data={"version": version.version},
    )
    return version


def publish(session: Session, actor: Actor, policy: Policy, version: int) -> PolicyVersion:
    """Make ``version`` the one new decisions use; past decisions keep theirs."""
    found = get_version(session, policy, version)
    before = policy.published_version
    policy.published_version = found.version
    found.published_at = found.published_at or utcnow()
    policy.updated_at = utcnow()
    audit.record(
        session,
        actor,
        subject_type="policy",
        subject_id=policy.id,
        action="policy.published",
        before={"published_version": before},
        after={"published_version": found.version},
    )
    return found


def assign(session: Session, actor: Actor, channel: Channel, policy: Policy | None) -> Channel:
    """Use ``policy`` for the channel's new returns (None: back to the built-in default)."""
    if policy is not None and policy.published_version is None:
        raise PolicyNotPublished(f"publish a version of {policy.name!r} before assigning it")
    before = channel.policy_id
    channel.policy_id = policy.id if policy else None
    audit.record(
        session,
        actor,
        subject_type="channel",
        subject_id=channel.id,
        action="channel.policy_assigned",
        before={"policy_id": before},
        after={"policy_id": channel.policy_id},
    )
    return channel


def _default_name(channel: Channel) -> str:
    return f"Default policy ({channel.currency})"


def _default_policy(session: Session, channel: Channel) -> Policy:
    name = _default_name(channel)
    existing = session.scalar(
        select(Policy).where(Policy.organization_id == channel.organization_id, Policy.name == name)
    )
    if existing is not None and existing.published_version is not None:
        return existing
    actor = Actor.system(channel.organization_id, "default policy")
    if existing is None:
        version = create_policy(session, actor, name, default_policy_data(channel.currency))
        existing = get_policy(session, channel.organization_id, version.policy_id)
    publish(session, actor, existing, get_version(session, existing).version)
    return existing


def _published_statement() -> Select[PolicyVersion, Policy]:
    # The channel's own policy if it has a published version, else the organization's
    # default for the channel's currency: both candidates in one statement, the channel's
    # first. Read afresh on every request, never cached in the process: a publication or
    # an assignment made by another server process is seen by the next request.
    own = Policy.id == bindparam("policy_id")
    return (
        select(PolicyVersion, Policy)
        .join(
            Policy,
            and_(
                Policy.id == PolicyVersion.policy_id,
                Policy.published_version == PolicyVersion.version,
            ),
        )
        .where(
            or_(
                own,
                and_(
                    Policy.organization_id == bindparam("organization_id"),
                    Policy.name == bindparam("default_name"),
                ),
            )
        )
        .order_by(case((own, 0), else_=1))
        .limit(1)
    )


# Built once: every decision asks it, and building it costs more than answering it.
_PUBLISHED = _published_statement()


def _published_for_channel(session: Session, channel: Channel) -> tuple[PolicyVersion, Policy]:
    row = session.execute(
        _PUBLISHED,
        {
            "policy_id": channel.policy_id,
            "organization_id": channel.organization_id,
            "default_name": _default_name(channel),
        },
    ).first()
    if row is not None:
        return row[0], row[1]
    policy = _default_policy(session, channel)
    assert policy.published_version is not None
    return get_version(session, policy, policy.published_version), policy


def policy_for_channel(session: Session, channel: Channel) -> PolicyVersion:
    """The published version the channel's new returns are decided with."""
    return _published_for_channel(session, channel)[0]


# What each version compiles to, by id. A version is never changed once written (no
# path updates one, and ids are never reused), so its compiled form is valid in every
# process for as long as the process lives, and needs no invalidation: a new
# publication is a new version, with an id of its own.
_COMPILED_BY_ID: dict[uuid.UUID, CompiledPolicy] = {}
_COMPILED_MAX = 256


def compiled(version: PolicyVersion) -> CompiledPolicy:
    found = _COMPILED_BY_ID.get(version.id)
    if found is None:
        document = PolicyDocument.model_validate_json(json.dumps(version.document, sort_keys=True))
        found = compile_policy(document)
        if len(_COMPILED_BY_ID) >= _COMPILED_MAX:
            _COMPILED_BY_ID.clear()
        _COMPILED_BY_ID[version.id] = found
    return found


@dataclass(frozen=True)
class Decided:
    record: ReturnDecision
    decision: Decision
    version: PolicyVersion
    policy_name: str


def _version_for(session: Session, ret: Return) -> PolicyVersion:
    """The version that governs a return: the one its latest decision used (publishing
    never changes a past decision), else the channel's published one."""
    latest = latest_decision(session, ret.organization_id, ret.id)
    if latest is not None:
        version = session.get(PolicyVersion, latest.policy_version_id)
        if version is not None:
            return version
    channel = session.get(Channel, ret.channel_id)
    if channel is None:
        raise LookupError(f"return {ret.id} lost its channel")
    return policy_for_channel(session, channel)


def _evaluate(
    session: Session, ret: Return, version: PolicyVersion, *, explain: bool = True
) -> tuple[Decision, Any]:
    policy = compiled(version)
    facts = return_facts(session, ret)
    facts.fx_rates = fx.rates_into(
        session,
        ret.organization_id,
        policy.document.band_currencies(),
        facts.currency,
        ret.requested_at.date(),
    )
    return evaluate(policy, facts, explain=explain), facts


# Who decided a return, besides the policy itself.
POLICY_PATH = "policy"


@dataclass(frozen=True)
class Evaluation:
    """The policy evaluated on a return's facts, not stored yet."""

    version: PolicyVersion
    decision: Decision
    facts: Any
    # The version's policy when it was read with it (saves reading it again to store).
    policy: Policy | None = None


def evaluate_return(session: Session, ret: Return, *, for_person: bool = False) -> Evaluation:
    """The policy's decision on the return now. The policy's own path uses the channel's
    published version; a person's decision is checked against the version that governs
    the return (its latest decision's), so publishing never changes a past decision."""
    policy: Policy | None = None
    if for_person:
        version = _version_for(session, ret)
    else:
        channel = session.get(Channel, ret.channel_id)
        if channel is None:
            raise LookupError(f"return {ret.id} lost its channel")
        version, policy = _published_for_channel(session, channel)
    decision, facts = _evaluate(session, ret, version)
    return Evaluation(version, decision, facts, policy)


def store_decision(
    session: Session,
    actor: Actor,
    ret: Return,
    evaluation: Evaluation,
    *,
    path: str = POLICY_PATH,
    outcome: Outcome | None = None,
    override_reason: str | None = None,
) -> Decided:
    """Store an explained decision. On the policy's own path its outcome is the decision;
    when a person decides (``path`` names their action, ``outcome`` what they decided) the
    policy's settings are stored with it all the same, so the refund guard reads the same
    terms whoever decided, and ``override_reason`` records why they differ from it."""
    decision, version = evaluation.decision, evaluation.version
    decided = decision.outcome if outcome is None else outcome
    record = ReturnDecision(
        organization_id=ret.organization_id,
        return_id=ret.id,
        policy_version_id=version.id,
        outcome=decided.value,
        policy_outcome=decision.outcome.value,
        path=path,
        decided_by=actor.label,
        override_reason=override_reason,
        reasons=decision.reasons,
        missing_facts=decision.missing_facts,
        facts=facts_json(evaluation.facts),
        lines=[audit.jsonable(_line_json(line)) for line in decision.lines],
    )
    session.add(record)
    session.flush()
    audit.record(
        session,
        actor,
        subject_type="return",
        subject_id=ret.id,
        return_id=ret.id,
        action="return.decided",
        data={
            "outcome": decided.value,
            "policy_outcome": decision.outcome.value,
            "path": path,
            "override_reason": override_reason,
            "reasons": decision.reasons,
            "policy_id": version.policy_id,
            "policy_version": version.version,
            "decision_id": record.id,
        },
    )
    owner = evaluation.policy
    if owner is None or owner.id != version.policy_id:
        owner = session.get(Policy, version.policy_id)
    return Decided(record, decision, version, owner.name if owner else "")


def decide(session: Session, actor: Actor, ret: Return) -> Decided:
    """Evaluate the channel's published policy on the return and store the explained result."""
    return store_decision(session, actor, ret, evaluate_return(session, ret))


@dataclass(frozen=True)
class PolicyTerms:
    """The policy's refund terms for a return and its high-value threshold."""

    terms: ReturnTerms
    high_value_threshold: HighValueThreshold | None


def refund_terms(session: Session, ret: Return) -> PolicyTerms:
    """The settings that govern refunding the return, typed: those stored with its latest
    decision (every path that decides a return stores them), else the policy evaluated now."""
    latest = latest_decision(session, ret.organization_id, ret.id)
    version = session.get(PolicyVersion, latest.policy_version_id) if latest else None
    returnless = Outcome.RETURNLESS_REFUND.value
    by_line: dict[LineId, LineTerms]
    if latest is not None and version is not None:
        by_line = {
            uuid.UUID(line["return_line_id"]): LineTerms.from_settings(
                Settings.model_validate(line.get("settings", {})),
                returnless=line.get("outcome") == returnless,
            )
            for line in latest.lines
        }
        source = f"decision {latest.id}"
    else:
        version = _version_for(session, ret)
        decision, _ = _evaluate(session, ret, version, explain=False)
        by_line = {
            uuid.UUID(line.line_id): LineTerms.from_settings(
                Settings(**line.settings), returnless=line.outcome is Outcome.RETURNLESS_REFUND
            )
            for line in decision.lines
        }
        source = "the policy evaluated at refund time"
    document = compiled(version).document
    terms = ReturnTerms(
        lines=by_line,
        source=f"{source} (policy version {version.version})",
    )
    return PolicyTerms(terms, document.high_value_threshold)


def _line_json(line: Any) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.model_dump(mode="json") if isinstance(value, BaseModel) else value

    return {
        "return_line_id": line.line_id,
        "outcome": line.outcome.value,
        "reasons": line.reasons,
        "settings": {k: plain(v) for k, v in line.settings.items()},
        "sources": line.sources,
        "missing_facts": line.missing_facts,
        "legal": line.legal,
        "trace": line.trace,
    }


def latest_decision(
    session: Session, organization_id: uuid.UUID, return_id: uuid.UUID
) -> ReturnDecision | None:
    stmt = (
        select(ReturnDecision)
        .where(
            ReturnDecision.organization_id == organization_id,
            ReturnDecision.return_id == return_id,
        )
        .order_by(ReturnDecision.created_at.desc())
        .limit(1)
    )
    return session.scalar(stmt)
