"""The adapter interface every payment provider implements, and what it answers.

An adapter turns one granted refund into one refund at the provider, passing the
refund's idempotency key so a retried call can never pay twice. It never touches the
database: the sender (refunds/sender.py) reads the refund, calls the adapter outside
any transaction and records the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import httpx

from returnguard.kit.money import Money
from returnguard.refunds.providers.currencies import NotPayable

_MAX_TEXT = 20_000  # of a non-JSON answer kept on the refund


class ProviderState(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"  # accepted, still processing at the provider: ask again later
    FAILED = "failed"  # the provider refused or gave up: no money moved


@dataclass(frozen=True)
class RefundLineItem:
    external_line_id: str  # the channel's own line id (e.g. a Shopify LineItem id)
    quantity: int


@dataclass(frozen=True)
class RefundRequest:
    """What the provider needs to pay one refund out."""

    refund_id: str
    idempotency_key: str
    amount_minor: int
    currency: str
    payment_reference: str  # Shopify order id, Stripe PaymentIntent, PayPal capture
    order_external_id: str
    note: str
    lines: tuple[RefundLineItem, ...] = ()

    @property
    def money(self) -> Money:
        return Money.from_minor(self.amount_minor, self.currency)


@dataclass(frozen=True)
class ProviderResult:
    state: ProviderState
    reference: str | None = None  # the provider's id of the refund
    provider_status: str | None = None  # the provider's own word for the state
    code: str | None = None  # a stable failure code, e.g. "already_refunded"
    message: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Of the granted amount, what the provider was not asked to pay because its unit or
    # step cannot express it (see currencies.py); None when the answer does not say.
    unsent_minor: int | None = None


def not_payable(exc: NotPayable) -> ProviderResult:
    """The refund cannot be sent in this currency or amount: failed before any call."""
    return ProviderResult(ProviderState.FAILED, code=exc.code, message=str(exc))


class ProviderError(Exception):
    """The provider could not be asked or gave no usable answer; the outcome is unknown,
    so the refund stays pending (never turned into a failure). With ``retry`` the call is
    retried later with the same key; without, asking again cannot help and a person (or
    reconciliation) has to look."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class UnknownAnswer(ProviderError):
    """The provider answered in a shape, or with a status, ReturnGuard does not know. The
    answer is kept verbatim on the refund, which stays pending: never taken for paid."""

    def __init__(
        self,
        message: str,
        *,
        answer: dict[str, Any],
        reference: str | None = None,
        provider_status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.answer = answer
        self.reference = reference
        self.provider_status = provider_status


def known_refund(
    kind: str, refund: dict[str, Any], states: dict[str, ProviderState]
) -> tuple[ProviderState, str, str]:
    """A refund object's state, id and status as the provider wrote it; an unknown status
    or a refund without an id is an UnknownAnswer, kept verbatim and never taken for paid."""
    status = refund.get("status")
    state = states.get(status) if isinstance(status, str) else None
    reference = refund.get("id") if isinstance(refund.get("id"), str) else None
    if state is None or reference is None:
        raise UnknownAnswer(
            f"{kind}: unknown refund status {status!r}"
            + ("" if reference else " and no refund id"),
            answer=verbatim(200, refund),
            reference=reference,
            provider_status=str(status)[:32] if status is not None else None,
        )
    return state, reference, str(status)


def verbatim(status_code: int | None, body: Any) -> dict[str, Any]:
    """How an unknown answer is stored: the HTTP status and the body as it came."""
    if isinstance(body, str):
        body = body[:_MAX_TEXT]
    return {"http_status": status_code, "body": body}


class RefundAdapter(Protocol):
    kind: str

    def send(self, request: RefundRequest) -> ProviderResult:
        """Create the refund (idempotent on ``request.idempotency_key``)."""

    def lookup(self, request: RefundRequest, reference: str | None) -> ProviderResult | None:
        """The provider's current state of this refund, found by its reference or, without
        one, by our refund id/key; None when the provider has no such refund."""


def json_body(response: httpx.Response, provider: str) -> dict[str, Any]:
    """The response's JSON object, or UnknownAnswer (kept verbatim) when it is not one."""
    try:
        body = response.json()
    except ValueError:
        raise UnknownAnswer(
            f"{provider}: HTTP {response.status_code}: the answer is not JSON "
            f"({response.text[:200]!r})",
            answer=verbatim(response.status_code, response.text),
        ) from None
    if not isinstance(body, dict):
        raise UnknownAnswer(
            f"{provider}: HTTP {response.status_code}: unexpected answer {body!r:.200}",
            answer=verbatim(response.status_code, body),
        )
    return body


def retryable_status(status_code: int) -> bool:
    """Timeouts, conflicts on the key, rate limits and server errors are worth retrying."""
    return status_code in (408, 409, 425, 429) or status_code >= 500
