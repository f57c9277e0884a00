"""Organizations, users and API keys. Keys are shown once and stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor as Actor
from returnguard.auth.models import ApiKey, Organization, Role, User
from returnguard.errors import Conflict, InvalidInput, NotFound, Unauthorized
from returnguard.kit.db import is_read_only, utcnow
from returnguard.kit.money import MoneyError, check_currency

KEY_PREFIX = "rg"
# The lookup part is secrets.token_hex(6); anything else is refused before any query
# (a NUL byte, for one, would make PostgreSQL fail the lookup instead of answering 401).
_PREFIX_PATTERN = re.compile(r"[0-9a-f]{12}")
LAST_USED_RESOLUTION = timedelta(minutes=5)


class UserExists(Conflict):
    code = "user_exists"


def _hash_key(key: str) -> str:
    # Keys are 256-bit random secrets, so a fast hash is enough; no salt or KDF needed.
    return hashlib.sha256(key.encode()).hexdigest()


def _parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput.field("role", f"unknown role {role!r}; use one of {allowed}") from None


def create_organization(session: Session, name: str, base_currency: str = "EUR") -> Organization:
    if not name.strip():
        raise InvalidInput.field("name", "must not be empty")
    try:
        currency = check_currency(base_currency)
    except MoneyError as exc:
        raise InvalidInput.field("base_currency", str(exc)) from None
    org = Organization(name=name.strip(), base_currency=currency)
    session.add(org)
    session.flush()
    audit.record(
        session,
        Actor.system(org.id),
        subject_type="organization",
        subject_id=org.id,
        action="organization.created",
        after={"name": org.name, "base_currency": org.base_currency},
    )
    return org


def create_api_key(
    session: Session,
    organization_id: uuid.UUID,
    *,
    name: str,
    role: str,
    user_id: uuid.UUID | None = None,
    actor: Actor | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plain key, which is never retrievable again."""
    parsed = _parse_role(role)
    prefix = secrets.token_hex(6)
    plain = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        organization_id=organization_id,
        user_id=user_id,
        name=name,
        role=parsed.value,
        prefix=prefix,
        key_hash=_hash_key(plain),
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        actor or Actor.system(organization_id),
        subject_type="api_key",
        subject_id=key.id,
        action="api_key.created",
        after={"name": key.name, "role": key.role, "prefix": key.prefix, "user_id": user_id},
    )
    return key, plain


def create_user(
    session: Session,
    organization_id: uuid.UUID,
    *,
    email: str,
    role: str,
    name: str = "",
    actor: Actor | None = None,
) -> User:
    """Add a staff member; emails are unique per organization, compared case-insensitively."""
    address = email.strip().lower()
    local, _, domain = address.partition("@")
    if not local or "." not in domain or " " in address:
        raise InvalidInput.field("email", "must be an email address like anna@example.com")
    taken = select(User.id).where(User.organization_id == organization_id, User.email == address)
    if session.scalar(taken) is not None:
        raise UserExists(f"a user with email {address} already exists")
    user = User(
        organization_id=organization_id, email=address, name=name, role=_parse_role(role).value
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        # Created by a concurrent request between our check and our insert.
        raise UserExists(f"a user with email {address} already exists") from None
    audit.record(
        session,
        actor or Actor.system(organization_id),
        subject_type="user",
        subject_id=user.id,
        action="user.created",
        after={"email": user.email, "name": user.name, "role": user.role},
    )
    return user


def list_users(session: Session, organization_id: uuid.UUID) -> list[User]:
    stmt = select(User).where(User.organization_id == organization_id).order_by(User.email)
    return list(session.scalars(stmt))


def authenticate(session: Session, authorization: str | None) -> Actor:
    """Resolve an `Authorization: Bearer` header to an actor, or raise Unauthorized."""
    if not authorization:
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not _PREFIX_PATTERN.fullmatch(parts[1]):
        raise Unauthorized("invalid API key")
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or not hmac.compare_digest(key.key_hash, _hash_key(token)):
        raise Unauthorized("invalid API key")
    if key.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    now = utcnow()
    # Throttled so that concurrent requests with one key do not queue on its row lock; a
    # reading request on SQLite records nothing, so it never needs the write lock.
    stale = key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION
    if stale and not (is_read_only(session) and session.get_bind().dialect.name == "sqlite"):
        key.last_used_at = now
    if key.user_id is not None:
        user = session.get(User, key.user_id)
        label = user.email if user else key.name
        return Actor(key.organization_id, key.role, "user", str(key.user_id), label)
    return Actor(key.organization_id, key.role, "api_key", str(key.id), key.name)


def revoke_api_key(session: Session, actor: Actor, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key of the actor's organization; revoking twice keeps the first time."""
    key = session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.organization_id == actor.organization_id)
    )
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit.record(
            session,
            actor,
            subject_type="api_key",
            subject_id=key.id,
            action="api_key.revoked",
            data={"prefix": key.prefix},
        )
    return key


def list_api_keys(session: Session, organization_id: uuid.UUID) -> list[ApiKey]:
    stmt = select(ApiKey).where(ApiKey.organization_id == organization_id)
    return list(session.scalars(stmt.order_by(ApiKey.created_at)))
