"""PayPal: `POST /v2/payments/captures/{capture_id}/refund` with our key as the
`PayPal-Request-Id` header, so a retried call returns the refund the first one made.
An OAuth access token (client credentials) is fetched once and renewed when refused.

The amount is a decimal string in PayPal's unit for the currency (currencies.py): HUF,
JPY and TWD without decimals, rounded down. A currency PayPal does not take fails the
refund before anything is asked."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from returnguard.refunds.providers import currencies
from returnguard.refunds.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderState,
    RefundRequest,
    json_body,
    known_refund,
    not_payable,
    retryable_status,
)

DEFAULT_BASE_URL = "https://api-m.paypal.com"
SANDBOX_BASE_URL = "https://api-m.sandbox.paypal.com"
_STATES = {
    "COMPLETED": ProviderState.SUCCEEDED,
    "PENDING": ProviderState.PENDING,
    "CANCELLED": ProviderState.FAILED,
    "FAILED": ProviderState.FAILED,
}
_ALREADY = {"CAPTURE_FULLY_REFUNDED"}


class PayPalAdapter:
    kind = "paypal"

    def __init__(
        self,
        http: httpx.Client,
        *,
        client_id: str,
        client_secret: str,
        base_url: str = DEFAULT_BASE_URL,
    ):
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.auth = (client_id, client_secret)
        self._token: str | None = None
        self._lock = threading.Lock()

    def _access_token(self, renew: bool = False) -> str:
        with self._lock:
            if self._token is not None and not renew:
                return self._token
            try:
                response = self.http.post(
                    self.base_url + "/v1/oauth2/token",
                    data={"grant_type": "client_credentials"},
                    auth=self.auth,
                    headers={"Accept": "application/json"},
                )
            except httpx.HTTPError as exc:
                raise ProviderError(f"paypal: {type(exc).__name__}: {exc}") from exc
            if retryable_status(response.status_code):
                raise ProviderError(f"paypal: token: HTTP {response.status_code}")
            body = json_body(response, self.kind)
            if response.status_code != 200 or not body.get("access_token"):
                raise _AuthRefused(str(body.get("error_description") or body)[:300])
            self._token = str(body["access_token"])
            return self._token

    def _call(
        self, method: str, path: str, *, json: Any = None, key: str | None = None
    ) -> httpx.Response:
        for renew in (False, True):
            headers = {
                "Authorization": f"Bearer {self._access_token(renew)}",
                "Prefer": "return=representation",
            }
            if key is not None:
                headers["PayPal-Request-Id"] = key
            try:
                response = self.http.request(
                    method, self.base_url + path, json=json, headers=headers
                )
            except httpx.HTTPError as exc:
                raise ProviderError(f"paypal: {type(exc).__name__}: {exc}") from exc
            if response.status_code != 401:
                break
        if retryable_status(response.status_code):
            raise ProviderError(f"paypal: HTTP {response.status_code} {response.text[:300]}")
        return response

    def send(self, request: RefundRequest) -> ProviderResult:
        try:
            amount = currencies.to_provider(self.kind, request.amount_minor, request.currency)
        except currencies.NotPayable as exc:
            return not_payable(exc)
        body = {
            "amount": {"value": amount.decimal_string(), "currency_code": amount.currency},
            "custom_id": request.refund_id,
            "note_to_payer": request.note[:255] or "Refund for your return",
        }
        try:
            response = self._call(
                "POST",
                f"/v2/payments/captures/{request.payment_reference}/refund",
                json=body,
                key=request.idempotency_key,
            )
        except _AuthRefused as exc:
            return ProviderResult(ProviderState.FAILED, code="provider_auth", message=str(exc))
        answer = json_body(response, self.kind)
        if response.status_code in (200, 201):
            return _result(answer, amount.unsent_minor)
        return _failure(response.status_code, answer)

    def lookup(self, request: RefundRequest, reference: str | None) -> ProviderResult | None:
        if reference is None:
            # PayPal cannot search refunds by our id; only a reference can be looked up.
            raise ProviderError("paypal: a refund without a PayPal id cannot be looked up")
        response = self._call("GET", f"/v2/payments/refunds/{reference}")
        if response.status_code == 404:
            return None
        answer = json_body(response, self.kind)
        if response.status_code != 200:
            raise ProviderError(f"paypal: lookup: {_message(answer)}")
        try:
            unsent: int | None = currencies.to_provider(
                self.kind, request.amount_minor, request.currency
            ).unsent_minor
        except currencies.NotPayable:
            unsent = None
        return _result(answer, unsent)


class _AuthRefused(ProviderError):
    pass


def _result(refund: dict[str, Any], unsent_minor: int | None) -> ProviderResult:
    state, reference, status = known_refund("paypal", refund, _STATES)
    details = refund.get("status_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    return ProviderResult(
        state,
        reference=reference,
        provider_status=status,
        code=str(reason).lower() if state is ProviderState.FAILED and reason else None,
        message=reason,
        raw=refund,
        unsent_minor=unsent_minor,
    )


def _message(body: dict[str, Any]) -> str:
    details = body.get("details") or []
    if details:
        first = details[0]
        return f"{first.get('issue')}: {first.get('description', '')}"[:500]
    return str(body.get("message") or body.get("name") or body)[:500]


def _failure(status_code: int, body: dict[str, Any]) -> ProviderResult:
    issues = {str(d.get("issue")) for d in body.get("details") or []}
    if issues & _ALREADY:
        code = "already_refunded"
    elif status_code in (401, 403):
        code = "provider_auth"
    elif status_code == 404:
        code = "payment_not_found"
    else:
        code = (next(iter(sorted(issues))) if issues else f"http_{status_code}").lower()
    return ProviderResult(ProviderState.FAILED, code=code, message=_message(body), raw=body)
