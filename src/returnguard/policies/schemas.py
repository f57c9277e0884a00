from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import yaml
from pydantic import Field, model_validator

from returnguard.errors import InvalidInput
from returnguard.kit.schemas import INT32_MAX, IsoDay, OutModel, StrictModel


class DocumentIn(StrictModel):
    """A policy document as JSON (`document`) or as YAML text (`document_yaml`)."""

    document: dict[str, Any] | None = Field(
        default=None, description="The policy document; its JSON Schema is at /policies/schema"
    )
    document_yaml: str | None = Field(default=None, max_length=500_000)

    @model_validator(mode="after")
    def _one_form(self) -> DocumentIn:
        if (self.document is None) == (self.document_yaml is None):
            raise ValueError("send exactly one of document or document_yaml")
        return self

    def data(self) -> Any:
        if self.document is not None:
            return self.document
        try:
            return yaml.safe_load(self.document_yaml or "")
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise InvalidInput.field("document_yaml", f"is not valid YAML{where}") from None


class PolicyIn(DocumentIn):
    name: str = Field(min_length=1, max_length=200)


class PublishIn(StrictModel):
    version: int = Field(ge=1, le=INT32_MAX)


class AssignIn(StrictModel):
    policy_id: uuid.UUID | None = Field(description="None: back to the built-in default")


class VersionOut(OutModel):
    version: int
    created_at: datetime
    created_by: str
    published_at: datetime | None


class PolicyOut(OutModel):
    id: uuid.UUID
    name: str
    published_version: int | None
    latest_version: int
    versions: list[VersionOut]
    created_at: datetime
    updated_at: datetime


class PolicyVersionOut(OutModel):
    policy_id: uuid.UUID
    name: str
    version: int
    published: bool
    document: dict[str, Any]


class ValidationOut(OutModel):
    valid: bool
    problems: list[dict[str, str]]


class DecisionOut(OutModel):
    id: uuid.UUID
    outcome: str = Field(description="What was decided (by the policy, or by a person)")
    path: str = Field(
        description="Who decided: `policy`, or a person's `approve`, `resolve_returnless`, "
        "`offer` or `accept_offer`"
    )
    decided_by: str
    policy_outcome: str | None = Field(description="What the policy itself decides for these facts")
    override_reason: str | None = Field(
        description="Why a person decided against the policy (set only when they did)"
    )
    reasons: list[str]
    missing_facts: list[str]
    policy_id: uuid.UUID
    policy_name: str
    policy_version: int
    facts: dict[str, Any]
    lines: list[dict[str, Any]] = Field(
        description="Per return line: outcome, settings and the rule that decided each, "
        "legal overrides, and the rule trace"
    )
    created_at: datetime


class BacktestIn(StrictModel):
    version: int | None = Field(
        default=None, ge=1, le=INT32_MAX, description="Default: the latest version"
    )
    from_: IsoDay = Field(alias="from", description="First day (UTC) of returns requested")
    to: IsoDay = Field(description="Last day (UTC), inclusive")
    channel: str | None = Field(default=None, max_length=64)
    rows: int = Field(default=100, ge=0, le=10_000, description="Differing returns to list")
