"""Refund configuration: the provider accounts money goes out through, which channel
uses which, and the organization's four-eyes rule."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from returnguard.audit import service as audit
from returnguard.auth.actor import Actor
from returnguard.auth.models import Organization
from returnguard.errors import Conflict, InvalidInput, NotFound
from returnguard.kit.db import new_id
from returnguard.kit.egress import Egress
from returnguard.kit.secrets import (
    Keyring,
    Place,
    SecretUnreadable,
    StoredSecrets,
    default_keyring,
)
from returnguard.orders.models import Channel
from returnguard.refunds.models import RefundProvider
from returnguard.refunds.providers import check_config


def create_provider(
    session: Session,
    actor: Actor,
    *,
    name: str,
    kind: str,
    settings: dict[str, Any],
    credentials: dict[str, Any],
    egress: Egress,
    keyring: Keyring | None = None,
) -> RefundProvider:
    """Connect a payment account; a ``base_url`` must lead to an address we may call.
    The credentials are stored sealed (``keyring``; by default the environment's)."""
    if name == "manual":
        raise InvalidInput.field("name", "'manual' is the built-in manual provider")
    clean, secrets = check_config(kind, settings, credentials)
    if "base_url" in clean:
        egress.check_url(clean["base_url"], "settings.base_url")
    provider = RefundProvider(
        id=new_id(),
        organization_id=actor.organization_id,
        name=name,
        kind=kind,
        settings=clean,
    )
    provider.credentials = seal_credentials(
        keyring or default_keyring(str(session.get_bind().engine.url)), provider, secrets
    )
    try:
        with session.begin_nested():
            session.add(provider)
    except IntegrityError:
        raise Conflict(f"a refund provider named {name!r} already exists") from None
    audit.record(
        session,
        actor,
        subject_type="refund_provider",
        subject_id=provider.id,
        action="refund_provider.created",
        # Credentials are never written to the event log.
        after={"name": name, "kind": kind, "settings": clean},
    )
    return provider


# What `returnguard secrets rotate` re-encrypts here.
STORED_CREDENTIALS = StoredSecrets("refund provider credentials", "refund_providers", "credentials")


def credentials_place(provider: RefundProvider) -> Place:
    """Where a provider's sealed credentials belong: they open on this row only."""
    return STORED_CREDENTIALS.place(provider.organization_id, provider.id)


def seal_credentials(keyring: Keyring, provider: RefundProvider, secrets: dict[str, str]) -> str:
    """The credentials as stored: sealed JSON; none (a manual account) as an empty text,
    so a manual account needs no key."""
    if not secrets:
        return ""
    return keyring.seal(json.dumps(secrets, sort_keys=True), credentials_place(provider))


def credentials_of(keyring: Keyring, provider: RefundProvider) -> dict[str, str]:
    """The provider's credentials in clear, or SecretUnreadable naming the row."""
    place = credentials_place(provider)
    if provider.credentials == "":
        if provider.kind == "manual":
            return {}
        raise SecretUnreadable(f"{place}: no credentials stored for a {provider.kind} account")
    try:
        opened = json.loads(keyring.open(provider.credentials, place))
    except ValueError as exc:
        if isinstance(exc, SecretUnreadable):
            raise
        opened = None
    if not isinstance(opened, dict):
        raise SecretUnreadable(f"{place}: not a set of credentials")
    return {str(k): str(v) for k, v in opened.items()}


def list_providers(session: Session, organization_id: uuid.UUID) -> list[RefundProvider]:
    return list(
        session.scalars(
            select(RefundProvider)
            .where(RefundProvider.organization_id == organization_id)
            .order_by(RefundProvider.name)
        )
    )


def get_provider(
    session: Session, organization_id: uuid.UUID, provider_id: uuid.UUID
) -> RefundProvider:
    provider = session.scalar(
        select(RefundProvider).where(
            RefundProvider.id == provider_id, RefundProvider.organization_id == organization_id
        )
    )
    if provider is None:
        raise NotFound(f"refund provider {provider_id} not found")
    return provider


def set_active(
    session: Session, actor: Actor, provider_id: uuid.UUID, active: bool
) -> RefundProvider:
    """Disable (or enable again) a provider: new refunds no longer use it; sent ones finish."""
    provider = get_provider(session, actor.organization_id, provider_id)
    before = provider.active
    provider.active = active
    audit.record(
        session,
        actor,
        subject_type="refund_provider",
        subject_id=provider.id,
        action="refund_provider.enabled" if active else "refund_provider.disabled",
        before={"active": before},
        after={"active": active},
    )
    return provider


def assign_to_channel(
    session: Session, actor: Actor, channel_code: str, provider_name: str | None
) -> Channel:
    """The provider a channel's refunds go through by default (None or 'manual': manual)."""
    channel = session.scalar(
        select(Channel).where(
            Channel.organization_id == actor.organization_id, Channel.code == channel_code
        )
    )
    if channel is None:
        raise NotFound(f"channel {channel_code!r} not found")
    provider = None
    if provider_name not in (None, "manual"):
        provider = session.scalar(
            select(RefundProvider).where(
                RefundProvider.organization_id == actor.organization_id,
                RefundProvider.name == provider_name,
            )
        )
        if provider is None or not provider.active:
            raise InvalidInput.field(
                "provider", f"no active refund provider is named {provider_name!r}"
            )
    before = channel.refund_provider_id
    channel.refund_provider_id = provider.id if provider else None
    audit.record(
        session,
        actor,
        subject_type="channel",
        subject_id=channel.id,
        action="channel.refund_provider_set",
        before={"refund_provider_id": str(before) if before else None},
        after={"provider": provider.name if provider else "manual"},
    )
    return channel


def settings_of(session: Session, organization_id: uuid.UUID) -> Organization:
    org = session.get(Organization, organization_id)
    assert org is not None
    return org


def set_four_eyes(
    session: Session,
    actor: Actor,
    *,
    above_minor: int | None,
    currency: str | None,
    on_override: bool,
) -> Organization:
    org = session.get(Organization, actor.organization_id, with_for_update=True)
    assert org is not None
    if currency is not None and currency != org.base_currency:
        raise InvalidInput.field(
            "four_eyes_above.currency",
            f"must be the organization's base currency {org.base_currency}",
        )
    before = {"above_minor": org.four_eyes_above_minor, "on_override": org.four_eyes_on_override}
    org.four_eyes_above_minor, org.four_eyes_on_override = above_minor, on_override
    audit.record(
        session,
        actor,
        subject_type="organization",
        subject_id=org.id,
        action="refund_settings.changed",
        before=before,
        after={"above_minor": above_minor, "on_override": on_override},
    )
    return org
