from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Response, status

from returnguard.auth.models import Organization
from returnguard.auth.permissions import Permission
from returnguard.auth.service import Actor
from returnguard.errors import InvalidInput
from returnguard.kit.deps import EgressDep, Reader, SessionDep, require
from returnguard.kit.problem import problem_responses
from returnguard.kit.schemas import MoneyOut
from returnguard.kit.secrets import KeyringDep
from returnguard.refunds import accounts, service
from returnguard.refunds.models import Refund, RefundProvider
from returnguard.refunds.schemas import (
    CancelIn,
    ChannelProviderIn,
    ChannelProviderOut,
    ProviderIn,
    ProviderOut,
    RefundIn,
    RefundOut,
    RefundSettingsIn,
    RefundSettingsOut,
    SettleIn,
)
from returnguard.returns.service import get_return

router = APIRouter(prefix="/api/v1", tags=["refunds"])
Refunder = Annotated[Actor, Depends(require(Permission.REFUNDS_CREATE))]
Finance = Annotated[Actor, Depends(require(Permission.REFUNDS_SETTLE))]
Configurer = Annotated[Actor, Depends(require(Permission.REFUNDS_CONFIGURE))]


def refund_out(r: Refund) -> RefundOut:
    return RefundOut(
        id=r.id,
        return_id=r.return_id,
        status=r.status,
        amount=MoneyOut.from_minor(r.amount_minor, r.currency),
        lines=r.lines,
        return_shipping_deduction=MoneyOut.from_minor(
            r.return_shipping_deduction_minor, r.currency
        ),
        reason=r.reason,
        override_reason=r.override_reason,
        provider=r.provider,
        provider_reference=r.provider_reference,
        provider_status=r.provider_status,
        unsent=MoneyOut.from_minor(r.unsent_minor or 0, r.currency),
        provider_response=r.provider_response,
        failure=r.failure,
        failure_code=r.failure_code,
        last_error=r.last_error,
        granted_by=r.created_by,
        four_eyes=r.four_eyes,
        four_eyes_reason=r.four_eyes_reason,
        sent_by=r.sent_by,
        sent_at=r.sent_at,
        settled_at=r.settled_at,
        created_by=r.created_by,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


@router.post(
    "/returns/{return_id}/refunds",
    response_model=RefundOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": RefundOut, "description": "The refund this key already made"},
        **problem_responses(400, 401, 403, 404, 409, 422),
    },
)
def create_refund(
    return_id: uuid.UUID,
    body: RefundIn,
    session: SessionDep,
    actor: Refunder,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RefundOut:
    """Grant a refund of units of a return, computed from what was paid and checked by the
    refund guard, and send it to its provider (unless `send` is false, or four-eyes
    applies: then it stays `granted` until a second person sends it).

    Send an `Idempotency-Key`: a retry with the same key and body returns the same refund
    (200), never a second one; the same key with another body is a 422."""
    # Kept referenced: the session holds loaded rows weakly, and the service reuses this.
    _ret = get_return(session, actor.organization_id, return_id)
    if not idempotency_key or not idempotency_key.strip():
        raise InvalidInput.field("Idempotency-Key", "send a unique key per refund in this header")
    refund, created = service.create_refund(
        session, actor, return_id, idempotency_key.strip(), body
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return refund_out(refund)


@router.get(
    "/returns/{return_id}/refunds",
    response_model=list[RefundOut],
    responses=problem_responses(401, 404),
)
def list_refunds(return_id: uuid.UUID, session: SessionDep, actor: Reader) -> list[RefundOut]:
    get_return(session, actor.organization_id, return_id)
    return [refund_out(r) for r in service.list_refunds(session, actor.organization_id, return_id)]


@router.post(
    "/refunds/{refund_id}/settle",
    response_model=RefundOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def settle(refund_id: uuid.UUID, body: SettleIn, session: SessionDep, actor: Finance) -> RefundOut:
    """Record the answer for a refund sent through the manual provider (e.g. issued in
    Seller Central): `reference` when paid, or `failure` when it failed (its amount and
    units are freed). Provider refunds are settled by the provider's answer."""
    if (body.reference is None) == (body.failure is None):
        raise InvalidInput.field("reference", "send either reference (paid) or failure")
    paid = body.reference is not None
    note = body.reference if paid else body.failure
    assert note is not None
    return refund_out(service.settle(session, actor, refund_id, paid=paid, note=note))


@router.post(
    "/refunds/{refund_id}/send",
    response_model=RefundOut,
    responses=problem_responses(401, 403, 404, 409),
)
def send(refund_id: uuid.UUID, session: SessionDep, actor: Finance) -> RefundOut:
    """Send a granted refund to its provider. Under four-eyes only a different person
    with the finance role may send it (403 `four_eyes_required`); a refund already sent
    is a 409."""
    return refund_out(service.send(session, actor, refund_id))


@router.post(
    "/refunds/{refund_id}/cancel",
    response_model=RefundOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
def cancel(refund_id: uuid.UUID, body: CancelIn, session: SessionDep, actor: Refunder) -> RefundOut:
    """Withdraw a granted refund before it is sent; its units and amount are freed."""
    return refund_out(service.cancel(session, actor, refund_id, body.reason))


@router.get("/refunds/{refund_id}", response_model=RefundOut, responses=problem_responses(401, 404))
def get_refund(refund_id: uuid.UUID, session: SessionDep, actor: Reader) -> RefundOut:
    return refund_out(service.get_refund(session, actor.organization_id, refund_id))


def provider_out(p: RefundProvider) -> ProviderOut:
    return ProviderOut(
        id=p.id,
        name=p.name,
        kind=p.kind,
        settings=p.settings,
        active=p.active,
        created_at=p.created_at,
    )


@router.post(
    "/refund-providers",
    response_model=ProviderOut,
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 422, 503),
)
def create_provider(
    body: ProviderIn,
    session: SessionDep,
    actor: Configurer,
    egress: EgressDep,
    keyring: KeyringDep,
) -> ProviderOut:
    """Connect a payment account refunds are paid through: `shopify`, `stripe`, `paypal`
    or a named `manual` one. Credentials are stored encrypted and never shown again (503
    `secret_key_missing` when the server has no key to encrypt them with)."""
    return provider_out(
        accounts.create_provider(
            session,
            actor,
            name=body.name,
            kind=body.kind,
            settings=body.settings,
            credentials=body.credentials,
            egress=egress,
            keyring=keyring,
        )
    )


@router.get("/refund-providers", response_model=list[ProviderOut], responses=problem_responses(401))
def list_providers(session: SessionDep, actor: Reader) -> list[ProviderOut]:
    return [provider_out(p) for p in accounts.list_providers(session, actor.organization_id)]


@router.get(
    "/refund-providers/{provider_id}",
    response_model=ProviderOut,
    responses=problem_responses(401, 404),
)
def get_provider(provider_id: uuid.UUID, session: SessionDep, actor: Reader) -> ProviderOut:
    return provider_out(accounts.get_provider(session, actor.organization_id, provider_id))


@router.post(
    "/refund-providers/{provider_id}/disable",
    response_model=ProviderOut,
    responses=problem_responses(401, 403, 404),
)
def disable_provider(provider_id: uuid.UUID, session: SessionDep, actor: Configurer) -> ProviderOut:
    """New refunds stop using this provider; refunds already sent through it finish."""
    return provider_out(accounts.set_active(session, actor, provider_id, False))


@router.put(
    "/channels/{code}/refund-provider",
    response_model=ChannelProviderOut,
    responses=problem_responses(401, 403, 404, 422),
)
def assign_provider(
    code: str, body: ChannelProviderIn, session: SessionDep, actor: Configurer
) -> ChannelProviderOut:
    """The provider this channel's refunds go through (`manual` or null: manual)."""
    channel = accounts.assign_to_channel(session, actor, code, body.provider)
    return ChannelProviderOut(channel=channel.code, provider=body.provider or "manual")


def settings_out(org: Organization) -> RefundSettingsOut:
    above = org.four_eyes_above_minor
    return RefundSettingsOut(
        base_currency=org.base_currency,
        four_eyes_above=None if above is None else MoneyOut.from_minor(above, org.base_currency),
        four_eyes_on_override=org.four_eyes_on_override,
    )


@router.get("/settings/refunds", response_model=RefundSettingsOut, responses=problem_responses(401))
def get_settings(session: SessionDep, actor: Reader) -> RefundSettingsOut:
    return settings_out(accounts.settings_of(session, actor.organization_id))


@router.put(
    "/settings/refunds",
    response_model=RefundSettingsOut,
    responses=problem_responses(401, 403, 422),
)
def put_settings(
    body: RefundSettingsIn, session: SessionDep, actor: Configurer
) -> RefundSettingsOut:
    """Four-eyes: grants above `four_eyes_above` (base currency) and, if set, every
    override must be sent by a different person with the finance role."""
    above = body.four_eyes_above
    return settings_out(
        accounts.set_four_eyes(
            session,
            actor,
            above_minor=above.minor if above else None,
            currency=above.currency if above else None,
            on_override=body.four_eyes_on_override,
        )
    )
