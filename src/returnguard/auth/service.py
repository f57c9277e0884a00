"""Organizations, users and API keys. Keys are shown once and stored only as a hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from returnguard.auth.models import ApiKey, Organization, Role, User
from returnguard.auth.permissions import Permission, allows
from returnguard.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from returnguard.kit.db import utcnow
from returnguard.kit.money import MoneyError, check_currency

KEY_PREFIX = "rg"
LAST_USED_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True)
class Actor:
    """Who is acting: recorded on every event. `system` acts for the worker and imports."""

    organization_id: uuid.UUID
    role: str
    actor_type: str  # "api_key" | "user" | "system"
    actor_id: str | None
    label: str

    def require(self, permission: Permission) -> None:
        if not allows(self.role, permission):
            raise Forbidden(f"role {self.role!r} may not {permission.value}")

    @classmethod
    def system(cls, organization_id: uuid.UUID, label: str = "system") -> Actor:
        return cls(organization_id, Role.ADMIN.value, "system", None, label)


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
    return org


def create_api_key(
    session: Session,
    organization_id: uuid.UUID,
    *,
    name: str,
    role: str,
    user_id: uuid.UUID | None = None,
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
    return key, plain


def create_user(
    session: Session, organization_id: uuid.UUID, *, email: str, role: str, name: str = ""
) -> User:
    if "@" not in email:
        raise InvalidInput.field("email", "must be an email address")
    user = User(
        organization_id=organization_id,
        email=email.strip().lower(),
        name=name,
        role=_parse_role(role).value,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, authorization: str | None) -> Actor:
    """Resolve an `Authorization: Bearer` header to an actor, or raise Unauthorized."""
    if not authorization:
        raise Unauthorized("send the API key as 'Authorization: Bearer <key>'")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("the Authorization header must be 'Bearer <key>'")
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        raise Unauthorized("invalid API key")
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1]))
    if key is None or not hmac.compare_digest(key.key_hash, _hash_key(token)):
        raise Unauthorized("invalid API key")
    if key.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    now = utcnow()
    # Throttled so that concurrent requests with one key do not queue on its row lock.
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now
    if key.user_id is not None:
        user = session.get(User, key.user_id)
        label = user.email if user else key.name
        return Actor(key.organization_id, key.role, "user", str(key.user_id), label)
    return Actor(key.organization_id, key.role, "api_key", str(key.id), key.name)


def revoke_api_key(session: Session, organization_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    key = session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.organization_id == organization_id)
    )
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    key.revoked_at = key.revoked_at or utcnow()
    return key
