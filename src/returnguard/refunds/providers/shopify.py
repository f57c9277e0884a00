"""Shopify: the Admin GraphQL `refundCreate` mutation with the `@idempotent` directive
carrying our key, so a retried call returns the refund the first one made.

The refund's money goes back through the order's successful sale (or capture)
transaction, which is read first. Line items are listed when the order's lines carry
Shopify line item ids, with `NO_RESTOCK`: ReturnGuard's inspection decides about stock.
"""

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

DEFAULT_API_VERSION = "2026-01"

ORDER_TRANSACTIONS = """
query OrderTransactions($id: ID!) {
  order(id: $id) {
    id
    transactions(first: 50) { id kind status gateway }
  }
}
"""

REFUND_CREATE = """
mutation RefundCreate($input: RefundInput!, $key: String!) {
  refundCreate(input: $input) @idempotent(key: $key) {
    refund { id note createdAt totalRefundedSet { presentmentMoney { amount currencyCode } } }
    userErrors { field message }
  }
}
"""

ORDER_REFUNDS = """
query OrderRefunds($id: ID!) {
  order(id: $id) {
    id
    refunds(first: 100) {
      id note createdAt totalRefundedSet { presentmentMoney { amount currencyCode } }
    }
  }
}
"""


def gid(kind: str, value: str) -> str:
    return value if value.startswith("gid://") else f"gid://shopify/{kind}/{value}"


def marker(refund_id: str) -> str:
    """Written into the refund's note so the refund can be found again at Shopify."""
    return f"ReturnGuard refund {refund_id}"


class ShopifyAdapter:
    kind = "shopify"

    def __init__(
        self,
        http: httpx.Client,
        *,
        shop_domain: str,
        access_token: str,
        api_version: str = DEFAULT_API_VERSION,
    ):
        self.http = http
        self.url = f"https://{shop_domain}/admin/api/{api_version}/graphql.json"
        self.headers = {"X-Shopify-Access-Token": access_token}

    def _graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self.http.post(
                self.url, json={"query": query, "variables": variables}, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise ProviderError(f"shopify: {type(exc).__name__}: {exc}") from exc
        if retryable_status(response.status_code):
            raise ProviderError(f"shopify: HTTP {response.status_code} {response.text[:300]}")
        if response.status_code in (401, 403):
            raise _AuthRefused(f"shopify: HTTP {response.status_code}: access token refused")
        body = json_body(response)
        errors = body.get("errors")
        errors = [{"message": errors}] if isinstance(errors, str) else errors  # 402/404/423
        if errors:
            codes = {str((e.get("extensions") or {}).get("code")) for e in errors}
            message = "; ".join(str(e.get("message")) for e in errors)[:500]
            if codes & {"THROTTLED", "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}:
                raise ProviderError(f"shopify: {message}")
            raise _Refused(message)
        data = body.get("data")
        if not isinstance(data, dict):
            raise ProviderError(f"shopify: no data in the answer: {body!r:.300}")
        return data

    def _parent_transaction(self, order_id: str) -> dict[str, Any]:
        order = self._graphql(ORDER_TRANSACTIONS, {"id": order_id}).get("order")
        if not order:
            raise _Refused(f"order {order_id} not found at Shopify", code="payment_not_found")
        for transaction in order.get("transactions") or []:
            if transaction.get("kind") in ("SALE", "CAPTURE") and (
                transaction.get("status") == "SUCCESS"
            ):
                return dict(transaction)
        raise _Refused(f"order {order_id} has no successful payment to refund", code="no_payment")

    def send(self, request: RefundRequest) -> ProviderResult:
        order_id = gid("Order", request.payment_reference)
        try:
            parent = self._parent_transaction(order_id)
            refund_input: dict[str, Any] = {
                "orderId": order_id,
                "note": f"{marker(request.refund_id)}. {request.note}".strip()[:1000],
                "notify": False,
                "transactions": [
                    {
                        "orderId": order_id,
                        "parentId": parent["id"],
                        "gateway": parent["gateway"],
                        "kind": "REFUND",
                        "amount": format(request.money.amount, "f"),
                    }
                ],
            }
            items = [
                {
                    "lineItemId": gid("LineItem", line.external_line_id),
                    "quantity": line.quantity,
                    "restockType": "NO_RESTOCK",
                }
                for line in request.lines
                if line.external_line_id.isdigit()
                or line.external_line_id.startswith("gid://shopify/LineItem/")
            ]
            if items and len(items) == len(request.lines):
                refund_input["refundLineItems"] = items
            data = self._graphql(
                REFUND_CREATE, {"input": refund_input, "key": request.idempotency_key}
            )
        except _Refused as exc:
            return ProviderResult(ProviderState.FAILED, code=exc.code, message=str(exc))
        payload = data.get("refundCreate") or {}
        user_errors = payload.get("userErrors") or []
        if user_errors:
            message = "; ".join(str(e.get("message")) for e in user_errors)[:500]
            lowered = message.lower()
            if "already been refunded" in lowered:
                code = "already_refunded"
            elif "refundable" in lowered:
                # Less is left to refund than asked: part of it went back some other way.
                code = "exceeds_refundable_at_provider"
            else:
                code = "rejected"
            return ProviderResult(ProviderState.FAILED, code=code, message=message, raw=payload)
        refund = payload.get("refund")
        if not refund or not refund.get("id"):
            raise ProviderError(f"shopify: refundCreate answered no refund: {payload!r:.300}")
        return _created(refund)

    def lookup(self, request: RefundRequest, reference: str | None) -> ProviderResult | None:
        order_id = gid("Order", request.payment_reference)
        try:
            order = self._graphql(ORDER_REFUNDS, {"id": order_id}).get("order")
        except _Refused as exc:
            raise ProviderError(f"shopify: lookup: {exc}") from exc
        if not order:
            return None
        for refund in order.get("refunds") or []:
            if refund.get("id") == reference or marker(request.refund_id) in str(
                refund.get("note") or ""
            ):
                return _created(refund)
        return None


class _Refused(ProviderError):
    def __init__(self, message: str, code: str = "rejected") -> None:
        super().__init__(message)
        self.code = code


class _AuthRefused(_Refused):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="provider_auth")


def _created(refund: dict[str, Any]) -> ProviderResult:
    """A refund Shopify created has been issued through the order's payment gateway."""
    return ProviderResult(
        ProviderState.SUCCEEDED, reference=str(refund["id"]), provider_status="CREATED", raw=refund
    )
