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


class ProviderError(Exception):
    """The provider could not be asked or gave no usable answer; the outcome is unknown,
    so the call is retried later with the same key (never turned into a failure)."""


class RefundAdapter(Protocol):
    kind: str

    def send(self, request: RefundRequest) -> ProviderResult:
        """Create the refund (idempotent on ``request.idempotency_key``)."""

    def lookup(self, request: RefundRequest, reference: str | None) -> ProviderResult | None:
        """The provider's current state of this refund, found by its reference or, without
        one, by our refund id/key; None when the provider has no such refund."""


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or ProviderError when it is not one."""
    try:
        body = response.json()
    except ValueError:
        raise ProviderError(
            f"HTTP {response.status_code}: the answer is not JSON ({response.text[:200]!r})"
        ) from None
    if not isinstance(body, dict):
        raise ProviderError(f"HTTP {response.status_code}: unexpected answer {body!r:.200}")
    return body


def retryable_status(status_code: int) -> bool:
    """Timeouts, conflicts on the key, rate limits and server errors are worth retrying."""
    return status_code in (408, 409, 425, 429) or status_code >= 500
