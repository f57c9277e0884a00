"""Stripe: `POST /v1/refunds` against a PaymentIntent (or a Charge), with our key as the
`Idempotency-Key` header, so a retried call returns the refund the first one made."""

from __future__ import annotations

from typing import Any

import httpx

from returnguard.refunds.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderState,
    RefundRequest,
    json_body,
    retryable_status,
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

    def _call(
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
            response = self.http.request(
                method, self.base_url + path, data=data, params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"stripe: {type(exc).__name__}: {exc}") from exc
        if retryable_status(response.status_code):
            raise ProviderError(f"stripe: HTTP {response.status_code} {response.text[:300]}")
        return response

    def send(self, request: RefundRequest) -> ProviderResult:
        target = "charge" if request.payment_reference.startswith("ch_") else "payment_intent"
        data = {
            target: request.payment_reference,
            "amount": str(request.amount_minor),
            "reason": "requested_by_customer",
            f"metadata[{_METADATA_KEY}]": request.refund_id,
        }
        response = self._call("POST", "/v1/refunds", data=data, key=request.idempotency_key)
        body = json_body(response)
        if response.status_code == 200:
            return _result(body)
        return _failure(response.status_code, body)

    def lookup(self, request: RefundRequest, reference: str | None) -> ProviderResult | None:
        if reference is not None:
            response = self._call("GET", f"/v1/refunds/{reference}")
            if response.status_code == 404:
                return None
            body = json_body(response)
            if response.status_code != 200:
                # Refused to tell (e.g. a rotated key): unknown, never a failed refund.
                raise ProviderError(f"stripe: lookup: {_message(body)}")
            return _result(body)
        target = "charge" if request.payment_reference.startswith("ch_") else "payment_intent"
        params = {target: request.payment_reference, "limit": "100"}
        for _ in range(_MAX_PAGES):
            response = self._call("GET", "/v1/refunds", params=params)
            body = json_body(response)
            if response.status_code != 200:
                raise ProviderError(f"stripe: cannot list refunds: {_message(body)}")
            page = body.get("data") or []
            for refund in page:
                if (refund.get("metadata") or {}).get(_METADATA_KEY) == request.refund_id:
                    return _result(refund)
            if not body.get("has_more") or not page:
                return None
            params["starting_after"] = str(page[-1]["id"])
        raise ProviderError(f"stripe: more than {_MAX_PAGES * 100} refunds on one payment")


def _result(refund: dict[str, Any]) -> ProviderResult:
    status = str(refund.get("status", ""))
    state = _STATES.get(status)
    if state is None or not refund.get("id"):
        raise ProviderError(f"stripe: unknown refund status {status!r}")
    return ProviderResult(
        state,
        reference=str(refund["id"]),
        provider_status=status,
        code=refund.get("failure_reason") if state is ProviderState.FAILED else None,
        message=refund.get("failure_reason"),
        raw=refund,
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
