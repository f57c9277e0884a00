"""Stripe: `POST /v1/refunds` against a PaymentIntent (or a Charge), with our key as the
`Idempotency-Key` header, so a retried call returns the refund the first one made.

The amount is in Stripe's unit for the currency (currencies.py): JPY as is, ISK and UGX
in hundredths of whole units, KWD in thousandths ending in 0. Stripe's own word on
retrying wins: `Stripe-Should-Retry: true` is retried with the same key, `false` is not.
An error Stripe stored for our key is replayed for every retry (`Idempotent-Replayed:
true`), so a replayed 5xx is answered by looking our refund up by its metadata instead.
"""

from __future__ import annotations

from typing import Any

import httpx

from returnguard.refunds.providers import currencies
from returnguard.refunds.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderState,
    RefundRequest,
    UnknownAnswer,
    json_body,
    known_refund,
    not_payable,
    retryable_status,
    verbatim,
)

DEFAULT_BASE_URL = "https://api.stripe.com"
# Stripe's refund statuses; requires_action waits on the buyer, so it is still pending.
_STATES = {
    "succeeded": ProviderState.SUCCEEDED,
    "pending": ProviderState.PENDING,
    "requires_action": ProviderState.PENDING,
    "failed": ProviderState.FAILED,
    "canceled": ProviderState.FAILED,
}
_METADATA_KEY = "returnguard_refund_id"
_MAX_PAGES = 10


class StripeAdapter:
    kind = "stripe"

    def __init__(self, http: httpx.Client, *, api_key: str, base_url: str = DEFAULT_BASE_URL):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"}

    def _request(
        self,
        method: str,
        path: str,
        *,
        data: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        headers = dict(self.headers)
        if key is not None:
            headers["Idempotency-Key"] = key
        try:
            return self.http.request(
                method, self.base_url + path, data=data, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"stripe: {type(exc).__name__}: {exc}") from exc

    def _get(self, path: str, params: dict[str, str] | None = None) -> httpx.Response:
        response = self._request("GET", path, params=params)
        if retryable_status(response.status_code) or _rate_limited(response):
            raise ProviderError(f"stripe: HTTP {response.status_code} {response.text[:300]}")
        return response

    def send(self, request: RefundRequest) -> ProviderResult:
        try:
            amount = currencies.to_provider(self.kind, request.amount_minor, request.currency)
        except currencies.NotPayable as exc:
            return not_payable(exc)
        data = {
            _target(request): request.payment_reference,
            "amount": str(amount.units),
            "reason": "requested_by_customer",
            f"metadata[{_METADATA_KEY}]": request.refund_id,
        }
        response = self._request("POST", "/v1/refunds", data=data, key=request.idempotency_key)
        code = response.status_code
        if 200 <= code < 300:
            return _result(json_body(response, self.kind), amount.unsent_minor)
        problem = f"stripe: HTTP {code} {response.text[:300]}"
        should_retry = response.headers.get("Stripe-Should-Retry", "").lower()
        replayed = response.headers.get("Idempotent-Replayed", "").lower() == "true"
        # Whether a 5xx, a timeout or a conflict on our key made the refund is unknown.
        unknown_outcome = code >= 500 or code in (408, 409, 425)
        if unknown_outcome and (replayed or should_retry == "false"):
            # Sending again would only replay this answer (or Stripe says it won't help):
            # whether the refund was made is for the payment's list of refunds to say.
            why = (
                "Stripe replays the error it stored for our key"
                if replayed
                else ("Stripe says not to retry")
            )
            return self._look_for_ours(request, f"{problem}; {why}")
        if should_retry == "true":
            raise ProviderError(f"{problem} (Stripe says to retry)")
        if should_retry != "false" and (unknown_outcome or _rate_limited(response)):
            raise ProviderError(problem)
        return _failure(code, json_body(response, self.kind))

    def _look_for_ours(self, request: RefundRequest, problem: str) -> ProviderResult:
        found = self.lookup(request, None)
        if found is not None:
            return found
        raise ProviderError(
            f"{problem}, and no refund of ours is at Stripe: a person has to check "
            f"the payment {request.payment_reference} (reconciliation lists it)",
            retry=False,
        )

    def lookup(self, request: RefundRequest, reference: str | None) -> ProviderResult | None:
        unsent = _unsent(request)
        if reference is not None:
            response = self._get(f"/v1/refunds/{reference}")
            if response.status_code == 404:
                return None
            body = json_body(response, self.kind)
            if response.status_code != 200:
                # Refused to tell (e.g. a rotated key): unknown, never a failed refund.
                raise ProviderError(f"stripe: lookup: {_message(body)}")
            return _result(body, unsent)
        params = {_target(request): request.payment_reference, "limit": "100"}
        for _ in range(_MAX_PAGES):
            response = self._get("/v1/refunds", params=params)
            body = json_body(response, self.kind)
            if response.status_code != 200:
                raise ProviderError(f"stripe: cannot list refunds: {_message(body)}")
            page = body.get("data")
            if not isinstance(page, list):
                raise UnknownAnswer(
                    "stripe: the list of refunds has no data", answer=verbatim(200, body)
                )
            for refund in page:
                metadata = refund.get("metadata") if isinstance(refund, dict) else None
                if isinstance(metadata, dict) and metadata.get(_METADATA_KEY) == (
                    request.refund_id
                ):
                    return _result(refund, unsent)
            if not body.get("has_more") or not page:
                return None
            params["starting_after"] = str(page[-1]["id"])
        raise ProviderError(f"stripe: more than {_MAX_PAGES * 100} refunds on one payment")


def _target(request: RefundRequest) -> str:
    return "charge" if request.payment_reference.startswith("ch_") else "payment_intent"


def _unsent(request: RefundRequest) -> int | None:
    try:
        return currencies.to_provider("stripe", request.amount_minor, request.currency).unsent_minor
    except currencies.NotPayable:
        return None


def _rate_limited(response: httpx.Response) -> bool:
    """429, or the older 400 whose error code is `rate_limit`: not processed, retry."""
    if response.status_code == 429:
        return True
    if response.status_code != 400:
        return False
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, dict) and error.get("code") == "rate_limit"


def _result(refund: dict[str, Any], unsent_minor: int | None) -> ProviderResult:
    state, reference, status = known_refund("stripe", refund, _STATES)
    return ProviderResult(
        state,
        reference=reference,
        provider_status=status,
        code=refund.get("failure_reason") if state is ProviderState.FAILED else None,
        message=refund.get("failure_reason"),
        raw=refund,
        unsent_minor=unsent_minor,
    )


def _message(body: dict[str, Any]) -> str:
    error = body.get("error") or {}
    return str(error.get("message") or error.get("code") or body)[:500]


def _failure(status_code: int, body: dict[str, Any]) -> ProviderResult:
    """A 4xx Stripe error: the refund was not made."""
    error = body.get("error") or {}
    code = str(error.get("code") or error.get("type") or f"http_{status_code}")
    if code == "charge_already_refunded":
        code = "already_refunded"
    elif status_code in (401, 403):
        code = "provider_auth"
    elif error.get("type") == "idempotency_error":
        # The key was used with other parameters: a bug or a tampered refund, never a retry.
        code = "idempotency_mismatch"
    return ProviderResult(ProviderState.FAILED, code=code, message=_message(body), raw=body)
