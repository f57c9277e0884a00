"""Shopify: the Admin GraphQL `refundCreate` mutation with the `@idempotent` directive
carrying our key, so a retried call returns the refund the first one made.

The refund's money goes back through the order's successful sale (or capture)
transaction, which is read first. Line items are listed when the order's lines carry
Shopify line item ids, with `NO_RESTOCK`: ReturnGuard's inspection decides about stock.

The refund names its currency: the order's presentment currency (what the buyer paid
in), which Shopify requires whenever it differs from the shop's currency. ReturnGuard's
order must be in that currency; if it is not, the amounts are in another currency and
the refund fails before anything is created.

A created refund is only a record: the money moves in its refund transactions. It is
paid when they succeeded, still pending while they are PENDING or AWAITING_RESPONSE
(looked up again later, never created twice), and failed when one failed or erred.
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
    not_payable,
    retryable_status,
    verbatim,
)

DEFAULT_API_VERSION = "2026-01"

ORDER_TRANSACTIONS = """
query OrderTransactions($id: ID!) {
  order(id: $id) {
    id
    presentmentCurrencyCode
    transactions(first: 50) { id kind status gateway }
  }
}
"""

# What is read of a refund: its record and the transactions that move its money.
REFUND_FIELDS = """
id note createdAt
totalRefundedSet { presentmentMoney { amount currencyCode } }
transactions(first: 10) {
  nodes { id kind status errorCode gateway amountSet { presentmentMoney { amount currencyCode } } }
}
"""

REFUND_CREATE = f"""
mutation RefundCreate($input: RefundInput!, $key: String!) {{
  refundCreate(input: $input) @idempotent(key: $key) {{
    refund {{ {REFUND_FIELDS} }}
    userErrors {{ field message }}
  }}
}}
"""

ORDER_REFUNDS = f"""
query OrderRefunds($id: ID!) {{
  order(id: $id) {{
    id
    refunds(first: 100) {{ {REFUND_FIELDS} }}
  }}
}}
"""
# Shopify's OrderTransactionStatus values and what they mean for a refund transaction.
_SUCCESS, _FAILED = "SUCCESS", frozenset({"FAILURE", "ERROR"})
_WAITING = frozenset({"PENDING", "AWAITING_RESPONSE"})


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
        body = json_body(response, self.kind)
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

    def _parent_transaction(self, order_id: str, currency: str) -> dict[str, Any]:
        order = self._graphql(ORDER_TRANSACTIONS, {"id": order_id}).get("order")
        if not order:
            raise _Refused(f"order {order_id} not found at Shopify", code="payment_not_found")
        presentment = order.get("presentmentCurrencyCode")
        if presentment is not None and presentment != currency:
            raise _Refused(
                f"order {order_id} was paid in {presentment} at Shopify but is in "
                f"{currency} here: the amount would be refunded in the wrong currency",
                code="currency_mismatch",
            )
        for transaction in order.get("transactions") or []:
            if transaction.get("kind") in ("SALE", "CAPTURE") and (
                transaction.get("status") == "SUCCESS"
            ):
                return dict(transaction)
        raise _Refused(f"order {order_id} has no successful payment to refund", code="no_payment")

    def send(self, request: RefundRequest) -> ProviderResult:
        try:
            amount = currencies.to_provider(self.kind, request.amount_minor, request.currency)
        except currencies.NotPayable as exc:
            return not_payable(exc)
        order_id = gid("Order", request.payment_reference)
        try:
            parent = self._parent_transaction(order_id, amount.currency)
            refund_input: dict[str, Any] = {
                "orderId": order_id,
                "note": f"{marker(request.refund_id)}. {request.note}".strip()[:1000],
                "notify": False,
                "currency": amount.currency,
                "transactions": [
                    {
                        "orderId": order_id,
                        "parentId": parent["id"],
                        "gateway": parent["gateway"],
                        "kind": "REFUND",
                        "amount": amount.decimal_string(),
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
        if not isinstance(refund, dict) or not refund.get("id"):
            raise UnknownAnswer(
                f"shopify: refundCreate answered no refund: {payload!r:.300}",
                answer=verbatim(200, payload),
            )
        return _from_refund(refund, amount.unsent_minor)

    def lookup(self, request: RefundRequest, reference: str | None) -> ProviderResult | None:
        order_id = gid("Order", request.payment_reference)
        try:
            order = self._graphql(ORDER_REFUNDS, {"id": order_id}).get("order")
        except _Refused as exc:
            raise ProviderError(f"shopify: lookup: {exc}") from exc
        if not order:
            return None
        try:
            unsent: int | None = currencies.to_provider(
                self.kind, request.amount_minor, request.currency
            ).unsent_minor
        except currencies.NotPayable:
            unsent = None
        for refund in order.get("refunds") or []:
            if refund.get("id") == reference or marker(request.refund_id) in str(
                refund.get("note") or ""
            ):
                return _from_refund(refund, unsent)
        return None


class _Refused(ProviderError):
    def __init__(self, message: str, code: str = "rejected") -> None:
        super().__init__(message)
        self.code = code


class _AuthRefused(_Refused):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="provider_auth")


def _from_refund(refund: dict[str, Any], unsent_minor: int | None) -> ProviderResult:
    """The state of a refund Shopify created, from its refund transactions: the record
    alone does not mean the money went back."""
    reference = str(refund["id"])
    connection = refund.get("transactions")
    nodes = connection.get("nodes") if isinstance(connection, dict) else None
    transactions = [t for t in nodes or [] if isinstance(t, dict) and t.get("kind") == "REFUND"]
    statuses = {str(t.get("status")) for t in transactions}
    failed = [t for t in transactions if t.get("status") in _FAILED]

    def unknown(why: str) -> UnknownAnswer:
        return UnknownAnswer(
            f"shopify: refund {reference}: {why}",
            answer=verbatim(200, refund),
            reference=reference,
            provider_status=",".join(sorted(statuses))[:32] or None,
        )

    if not transactions:
        raise unknown("no refund transaction to say whether the money went back")
    if failed and len(failed) < len(transactions):
        # Money may have moved (or still move) through the others: not a plain failure.
        raise unknown("some of its transactions failed and some did not")
    if failed:
        first = failed[0]
        error = first.get("errorCode")
        return ProviderResult(
            ProviderState.FAILED,
            reference=reference,
            provider_status=str(first.get("status")),
            code=str(error).lower() if error else "refund_transaction_failed",
            message=f"the refund transaction was {first.get('status')}"
            + (f": {error}" if error else ""),
            raw=refund,
            unsent_minor=unsent_minor,
        )
    if statuses <= _WAITING | {_SUCCESS} and statuses & _WAITING:
        return ProviderResult(
            ProviderState.PENDING,
            reference=reference,
            provider_status=sorted(statuses & _WAITING)[0],
            raw=refund,
            unsent_minor=unsent_minor,
        )
    if statuses == {_SUCCESS}:
        return ProviderResult(
            ProviderState.SUCCEEDED,
            reference=reference,
            provider_status=_SUCCESS,
            raw=refund,
            unsent_minor=unsent_minor,
        )
    raise unknown(f"unknown transaction status {', '.join(sorted(statuses))}")
