"""The refund provider adapters against recorded answers of Stripe, PayPal and Shopify.

No database: each adapter talks to a real httpx.Client whose transport respx replaces.
The tests check what the adapter asks (URL, method, headers, the idempotency key, the
form or JSON body) and how it reads every recorded answer: a ProviderResult when the
provider answered for good, ProviderError when the outcome is unknown and the call must
be retried with the same key (or, with ``retry=False``, when asking again cannot help),
UnknownAnswer (kept verbatim, the refund stays pending) when the answer is unreadable.

The recordings follow the providers' published shapes, checked field by field against:

- Stripe: github.com/stripe/openapi at f6c2a48 (2026-08-21), `openapi/fixtures3.json`
  (the refund object: id, object, amount, charge, payment_intent, metadata, status,
  destination_details, ...); the API version the recordings name is 2025-12-15.clover.
  Headers `Stripe-Should-Retry` and `Idempotent-Replayed` as in docs.stripe.com/error-low-level
  and /api/idempotent_requests.
- PayPal: github.com/paypal/paypal-rest-api-specifications at ec4d8f3,
  `openapi/payments_payment_v2.json` v2.5 (`refund`, `refund_status`, `refund_request`,
  `money` with a string `value`).
- Shopify: the Admin GraphQL reference for 2026-01 (shopify.dev/docs/api/admin-graphql):
  `RefundInput.currency`, `Order.presentmentCurrencyCode`, `Refund.transactions` (an
  `OrderTransactionConnection`: `nodes { id kind status errorCode gateway amountSet }`),
  `OrderTransactionStatus` (SUCCESS, PENDING, FAILURE, ERROR, AWAITING_RESPONSE, UNKNOWN)
  and `OrderTransactionErrorCode`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from returnguard.errors import InvalidInput
from returnguard.refunds.providers import adapter_for, check_config
from returnguard.refunds.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderState,
    RefundLineItem,
    RefundRequest,
    UnknownAnswer,
)
from returnguard.refunds.providers.paypal import PayPalAdapter
from returnguard.refunds.providers.shopify import ShopifyAdapter, marker
from returnguard.refunds.providers.stripe import StripeAdapter
from tests.refunds.recordings import recorded, recorded_body

REFUND_ID = "0b9e3c56-7f1a-4d2e-9c84-5a6b7c8d9e01"  # the id the recordings carry
KEY = f"rg-{REFUND_ID}"
PAYMENT_INTENT = "pi_3QkT9fLmN2oP4qR51aBcDeFg"
STRIPE_REFUND = "re_3QkT9fLmN2oP4qR51xYzAbCd"
PAYPAL_CAPTURE = "2GG279541U471931P"
PAYPAL_REFUND = "1JU08902781691411"
SHOPIFY_ORDER = "gid://shopify/Order/5829405933839"
SHOPIFY_SALE = "gid://shopify/OrderTransaction/7024168435727"
SHOPIFY_REFUND = "gid://shopify/Refund/951928176655"

STRIPE_API = "https://api.stripe.com"
STRIPE_KEY = "sk_test_51QkT9fLmN2oP4qR5secret"
PAYPAL_API = "https://api-m.paypal.com"
PAYPAL_TOKEN = recorded_body("paypal", "token")["access_token"]
PAYPAL_RENEWED = recorded_body("paypal", "token_renewed")["access_token"]
SHOP = "mugs-and-more.myshopify.com"
SHOPIFY_URL = f"https://{SHOP}/admin/api/2026-01/graphql.json"
SHOPIFY_TOKEN = "shpat_0123456789abcdef0123456789abcdef"

REQUEST = RefundRequest(
    refund_id=REFUND_ID,
    idempotency_key=KEY,
    amount_minor=1999,
    currency="EUR",
    payment_reference=PAYMENT_INTENT,
    order_external_id="1001",
    note="Damaged mug",
    lines=(RefundLineItem("13579", 1),),
)
PAYPAL_REQUEST = replace(REQUEST, payment_reference=PAYPAL_CAPTURE)
SHOPIFY_REQUEST = replace(REQUEST, payment_reference="5829405933839")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as client:
        yield client


@pytest.fixture
def stripe(http: httpx.Client) -> StripeAdapter:
    return StripeAdapter(http, api_key=STRIPE_KEY)


@pytest.fixture
def paypal(http: httpx.Client) -> PayPalAdapter:
    return PayPalAdapter(http, client_id="AcLiEnT-1d", client_secret="s3cr3t")


@pytest.fixture
def shopify(http: httpx.Client) -> ShopifyAdapter:
    return ShopifyAdapter(http, shop_domain=SHOP, access_token=SHOPIFY_TOKEN)


def form(request: httpx.Request) -> dict[str, str]:
    fields = parse_qs(request.content.decode(), keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in fields.values()), fields
    return {name: values[0] for name, values in fields.items()}


def body(request: httpx.Request) -> dict[str, Any]:
    document = json.loads(request.content)
    assert isinstance(document, dict)
    return document


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


TRANSPORT_FAILURES = [
    pytest.param(httpx.ReadTimeout("timed out"), id="read-timeout"),
    pytest.param(httpx.ConnectTimeout("timed out"), id="connect-timeout"),
    pytest.param(httpx.ConnectError("connection refused"), id="connect-error"),
    pytest.param(httpx.RemoteProtocolError("server disconnected"), id="disconnected"),
]
NOT_JSON = [
    pytest.param(httpx.Response(200, text="<html>Service unavailable</html>"), id="html-200"),
    pytest.param(httpx.Response(400, text="Bad Request"), id="text-400"),
    pytest.param(httpx.Response(200, json=["not", "an", "object"]), id="json-list"),
    pytest.param(httpx.Response(200, content=b""), id="empty"),
]


# --------------------------------------------------------------------------- Stripe


def test_stripe_send_posts_a_form_with_the_idempotency_key(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_succeeded")
        )
        result = stripe.send(REQUEST)

    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.method == "POST" and str(sent.url) == f"{STRIPE_API}/v1/refunds"
    assert sent.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
    assert sent.headers["Idempotency-Key"] == KEY
    assert sent.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(sent) == {
        "payment_intent": PAYMENT_INTENT,
        "amount": "1999",
        "reason": "requested_by_customer",
        "metadata[returnguard_refund_id]": REFUND_ID,
    }
    assert result == ProviderResult(
        ProviderState.SUCCEEDED,
        reference=STRIPE_REFUND,
        provider_status="succeeded",
        unsent_minor=0,
    )
    assert result.raw["metadata"] == {"returnguard_refund_id": REFUND_ID}


@pytest.mark.parametrize(
    ("currency", "minor", "amount", "unsent"),
    [
        pytest.param("EUR", 1999, "1999", 0, id="EUR-19.99"),
        pytest.param("USD", 1234, "1234", 0, id="USD-12.34"),
        pytest.param("JPY", 5000, "5000", 0, id="JPY-zero-decimal"),
        pytest.param("ISK", 5000, "500000", 0, id="ISK-in-hundredths"),
        pytest.param("UGX", 5000, "500000", 0, id="UGX-in-hundredths"),
        pytest.param("HUF", 4990, "499000", 0, id="HUF-two-decimal"),
        pytest.param("TWD", 10050, "10050", 0, id="TWD-two-decimal"),
        pytest.param("KWD", 1250, "1250", 0, id="KWD-ends-in-0"),
        pytest.param("KWD", 12345, "12340", 5, id="KWD-rounded-down-to-10-fils"),
    ],
)
def test_stripe_sends_the_amount_in_its_own_unit_never_more(
    stripe: StripeAdapter, currency: str, minor: int, amount: str, unsent: int
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_succeeded")
        )
        result = stripe.send(replace(REQUEST, currency=currency, amount_minor=minor))
    assert form(route.calls.last.request)["amount"] == amount
    assert result.unsent_minor == unsent


@pytest.mark.parametrize("currency", ["IRR", "SSP", "VES"])
def test_stripe_refuses_a_currency_it_does_not_take_before_any_call(
    stripe: StripeAdapter, currency: str
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{STRIPE_API}/v1/refunds")
        result = stripe.send(replace(REQUEST, currency=currency, amount_minor=5000))
    assert not route.called
    assert (result.state, result.code) == (ProviderState.FAILED, "currency_not_supported")
    assert result.message == f"Stripe does not take refunds in {currency}"


def test_stripe_kwd_below_ten_fils_is_not_sent(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.post(f"{STRIPE_API}/v1/refunds")
        result = stripe.send(replace(REQUEST, currency="KWD", amount_minor=7))
    assert not route.called
    assert (result.state, result.code) == (ProviderState.FAILED, "amount_below_provider_unit")
    assert result.message == (
        "0.007 KWD is less than the smallest amount Stripe can refund (0.010 KWD)"
    )


def test_stripe_rate_limit_400_is_retried_with_the_same_key(stripe: StripeAdapter) -> None:
    """Stripe's older rate-limit answer is a 400 with code `rate_limit`: the refund was
    not made, and a retry with the same key makes it."""
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{STRIPE_API}/v1/refunds").mock(
            side_effect=[
                recorded("stripe", "rate_limit_400"),
                recorded("stripe", "refund_succeeded"),
            ]
        )
        with pytest.raises(ProviderError, match="HTTP 400") as caught:
            stripe.send(REQUEST)
        assert caught.value.retry is True
        result = stripe.send(REQUEST)
    first, second = (call.request for call in route.calls)
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == KEY
    assert first.content == second.content
    assert (result.state, result.reference) == (ProviderState.SUCCEEDED, STRIPE_REFUND)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(recorded("stripe", "idempotency_key_in_use"), id="409-true"),
        pytest.param(recorded("stripe", "rate_limit"), id="429-true"),
        pytest.param(
            recorded("stripe", "charge_already_refunded", headers={"Stripe-Should-Retry": "true"}),
            id="400-true",
        ),
    ],
)
def test_stripe_should_retry_true_is_retried(stripe: StripeAdapter, answer: httpx.Response) -> None:
    """Stripe says the request can be retried: the outcome is left open, never a failure."""
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=answer)
        with pytest.raises(ProviderError, match="Stripe says to retry") as caught:
            stripe.send(REQUEST)
    assert caught.value.retry is True


def test_stripe_should_retry_false_on_a_rate_limit_fails_the_refund(
    stripe: StripeAdapter,
) -> None:
    answer = recorded("stripe", "rate_limit", headers={"Stripe-Should-Retry": "false"})
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=answer)
        result = stripe.send(REQUEST)
    assert route.call_count == 1
    assert (result.state, result.code) == (ProviderState.FAILED, "rate_limit")


@pytest.mark.parametrize("answer", ["api_error_replayed", "api_error_should_not_retry"])
def test_stripe_5xx_that_retrying_cannot_change_looks_our_refund_up(
    stripe: StripeAdapter, answer: str
) -> None:
    """A replayed 5xx (Stripe stored the first answer for our key) or a 5xx Stripe says
    not to retry: sending again is useless, so the payment's refunds are searched for ours
    by its metadata."""
    with respx.mock(assert_all_called=True) as mock:
        create = mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=recorded("stripe", answer))
        listing = mock.get(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_list_with_ours")
        )
        result = stripe.send(REQUEST)
    assert create.call_count == 1 and listing.call_count == 1
    assert dict(listing.calls.last.request.url.params) == {
        "payment_intent": PAYMENT_INTENT,
        "limit": "100",
    }
    assert (result.state, result.reference) == (ProviderState.SUCCEEDED, STRIPE_REFUND)
    assert result.raw["metadata"] == {"returnguard_refund_id": REFUND_ID}


def test_stripe_replayed_5xx_without_our_refund_stops_retrying(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "api_error_replayed")
        )
        mock.get(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_list_without_ours")
        )
        with pytest.raises(ProviderError, match="replays the error it stored") as caught:
            stripe.send(REQUEST)
    assert caught.value.retry is False
    assert "a person has to check the payment " + PAYMENT_INTENT in str(caught.value)


def test_stripe_first_5xx_is_retried_without_a_lookup(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=recorded("stripe", "api_error_503"))
        listing = mock.get(f"{STRIPE_API}/v1/refunds")
        with pytest.raises(ProviderError, match="HTTP 503") as caught:
            stripe.send(REQUEST)
    assert caught.value.retry is True and not listing.called


@pytest.mark.parametrize("status", ["processing", "", None])
def test_stripe_unknown_status_is_kept_verbatim_and_never_paid(
    stripe: StripeAdapter, status: str | None
) -> None:
    answer = recorded("stripe", "refund_succeeded", status=status)
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=answer)
        with pytest.raises(UnknownAnswer, match="unknown refund status") as caught:
            stripe.send(REQUEST)
    assert caught.value.answer == {"http_status": 200, "body": answer.json()}
    assert caught.value.reference == STRIPE_REFUND


def test_stripe_unknown_shape_is_kept_verbatim(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(
            return_value=httpx.Response(200, json=[{"id": STRIPE_REFUND}])
        )
        with pytest.raises(UnknownAnswer) as caught:
            stripe.send(REQUEST)
    assert caught.value.answer == {"http_status": 200, "body": [{"id": STRIPE_REFUND}]}
    assert caught.value.reference is None


def test_stripe_refunds_a_charge_when_the_reference_is_a_charge(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_succeeded")
        )
        stripe.send(replace(REQUEST, payment_reference="ch_3QkT9fLmN2oP4qR51hIjKlMn"))
    fields = form(route.calls.last.request)
    assert fields["charge"] == "ch_3QkT9fLmN2oP4qR51hIjKlMn" and "payment_intent" not in fields


def test_stripe_honours_a_custom_base_url(http: httpx.Client) -> None:
    adapter = StripeAdapter(http, api_key=STRIPE_KEY, base_url="https://stripe-proxy.example/")
    with respx.mock(assert_all_called=True) as mock:
        mock.post("https://stripe-proxy.example/v1/refunds").mock(
            return_value=recorded("stripe", "refund_succeeded")
        )
        assert adapter.send(REQUEST).state is ProviderState.SUCCEEDED


@pytest.mark.parametrize(
    ("name", "state", "reference", "status", "code"),
    [
        ("refund_succeeded", ProviderState.SUCCEEDED, STRIPE_REFUND, "succeeded", None),
        ("refund_pending", ProviderState.PENDING, STRIPE_REFUND, "pending", None),
        ("refund_requires_action", ProviderState.PENDING, STRIPE_REFUND, "requires_action", None),
        (
            "refund_failed",
            ProviderState.FAILED,
            STRIPE_REFUND,
            "failed",
            "expired_or_canceled_card",
        ),
        ("card_declined", ProviderState.FAILED, None, None, "card_declined"),
        ("charge_already_refunded", ProviderState.FAILED, None, None, "already_refunded"),
        ("authentication_error", ProviderState.FAILED, None, None, "provider_auth"),
        ("permission_error", ProviderState.FAILED, None, None, "provider_auth"),
        ("idempotency_error", ProviderState.FAILED, None, None, "idempotency_mismatch"),
        ("refund_not_found", ProviderState.FAILED, None, None, "resource_missing"),
    ],
)
def test_stripe_maps_each_recorded_answer(
    stripe: StripeAdapter,
    name: str,
    state: ProviderState,
    reference: str | None,
    status: str | None,
    code: str | None,
) -> None:
    answer = recorded("stripe", name)
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=answer)
        result = stripe.send(REQUEST)
    assert (result.state, result.reference, result.provider_status, result.code) == (
        state,
        reference,
        status,
        code,
    )
    assert result.raw == answer.json()
    if answer.status_code != 200:
        assert result.message == answer.json()["error"]["message"][:500]


def test_stripe_canceled_refund_is_failed(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_pending", status="canceled")
        )
        result = stripe.send(REQUEST)
    assert result.state is ProviderState.FAILED and result.provider_status == "canceled"


@pytest.mark.parametrize("name", ["rate_limit", "api_error", "idempotency_key_in_use"])
def test_stripe_retryable_answers_raise_provider_error(stripe: StripeAdapter, name: str) -> None:
    answer = recorded("stripe", name)
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=answer)
        with pytest.raises(ProviderError, match=f"HTTP {answer.status_code}"):
            stripe.send(REQUEST)


@pytest.mark.parametrize("status", [408, 425, 502, 503, 504])
def test_stripe_gateway_statuses_raise_provider_error(stripe: StripeAdapter, status: int) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=httpx.Response(status))
        with pytest.raises(ProviderError):
            stripe.send(REQUEST)


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES)
def test_stripe_transport_failures_raise_provider_error(
    stripe: StripeAdapter, failure: Exception
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(side_effect=failure)
        with pytest.raises(ProviderError, match=type(failure).__name__):
            stripe.send(REQUEST)


@pytest.mark.parametrize("answer", NOT_JSON)
def test_stripe_answers_that_are_not_a_json_object_raise(
    stripe: StripeAdapter, answer: httpx.Response
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(return_value=answer)
        with pytest.raises(ProviderError):
            stripe.send(REQUEST)


@pytest.mark.parametrize("status", ["", "unknown_new_status"])
def test_stripe_unknown_refund_status_raises(stripe: StripeAdapter, status: str) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_succeeded", status=status)
        )
        with pytest.raises(ProviderError, match="unknown refund status"):
            stripe.send(REQUEST)


def test_stripe_lookup_by_reference(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(f"{STRIPE_API}/v1/refunds/{STRIPE_REFUND}").mock(
            return_value=recorded("stripe", "refund_retrieve")
        )
        result = stripe.lookup(REQUEST, STRIPE_REFUND)
    sent = route.calls.last.request
    assert sent.headers["Authorization"] == f"Bearer {STRIPE_KEY}"
    assert "Idempotency-Key" not in sent.headers and sent.content == b""
    assert result == ProviderResult(
        ProviderState.SUCCEEDED,
        reference=STRIPE_REFUND,
        provider_status="succeeded",
        unsent_minor=0,
    )


def test_stripe_lookup_by_reference_reads_a_later_failure(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{STRIPE_API}/v1/refunds/{STRIPE_REFUND}").mock(
            return_value=recorded("stripe", "refund_failed")
        )
        result = stripe.lookup(REQUEST, STRIPE_REFUND)
    assert result is not None
    assert (result.state, result.code) == (ProviderState.FAILED, "expired_or_canceled_card")


def test_stripe_lookup_of_an_unknown_reference_is_none(stripe: StripeAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{STRIPE_API}/v1/refunds/re_3QkT9fLmN2oP4qR51nOtHeRe").mock(
            return_value=recorded("stripe", "refund_not_found")
        )
        assert stripe.lookup(REQUEST, "re_3QkT9fLmN2oP4qR51nOtHeRe") is None


@pytest.mark.parametrize("name", ["authentication_error", "permission_error"])
def test_stripe_refused_lookup_by_reference_is_not_a_failure(
    stripe: StripeAdapter, name: str
) -> None:
    """Whether the refund was paid is unknown when Stripe refuses to answer: a FAILED
    result here would let the sender mark a possibly paid refund as failed."""
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{STRIPE_API}/v1/refunds/{STRIPE_REFUND}").mock(
            return_value=recorded("stripe", name)
        )
        outcome: ProviderResult | ProviderError | None
        try:
            outcome = stripe.lookup(REQUEST, STRIPE_REFUND)
        except ProviderError as exc:
            outcome = exc
    assert isinstance(outcome, ProviderError), outcome


def test_stripe_lookup_without_reference_lists_the_payment_refunds(
    stripe: StripeAdapter,
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_list_with_ours")
        )
        result = stripe.lookup(REQUEST, None)
    sent = route.calls.last.request
    assert dict(sent.url.params) == {"payment_intent": PAYMENT_INTENT, "limit": "100"}
    assert "Idempotency-Key" not in sent.headers
    assert result is not None
    assert (result.state, result.reference) == (ProviderState.SUCCEEDED, STRIPE_REFUND)
    assert result.raw["metadata"]["returnguard_refund_id"] == REFUND_ID


def test_stripe_lookup_lists_by_charge_for_a_charge_reference(stripe: StripeAdapter) -> None:
    charge = "ch_3QkT9fLmN2oP4qR51hIjKlMn"
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_list_with_ours")
        )
        assert stripe.lookup(replace(REQUEST, payment_reference=charge), None) is not None
    assert dict(route.calls.last.request.url.params) == {"charge": charge, "limit": "100"}


def test_stripe_lookup_without_our_metadata_is_none(stripe: StripeAdapter) -> None:
    """Other refunds of the payment (made in the dashboard, or for another return) are
    never taken for ours."""
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{STRIPE_API}/v1/refunds").mock(
            return_value=recorded("stripe", "refund_list_without_ours")
        )
        assert stripe.lookup(REQUEST, None) is None


@pytest.mark.parametrize("name", ["authentication_error", "permission_error"])
def test_stripe_refused_listing_raises(stripe: StripeAdapter, name: str) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{STRIPE_API}/v1/refunds").mock(return_value=recorded("stripe", name))
        with pytest.raises(ProviderError, match="cannot list refunds"):
            stripe.lookup(REQUEST, None)


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES)
def test_stripe_lookup_transport_failures_raise(stripe: StripeAdapter, failure: Exception) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(f"{STRIPE_API}/v1/refunds").mock(side_effect=failure)
        with pytest.raises(ProviderError):
            stripe.lookup(REQUEST, None)


# --------------------------------------------------------------------------- PayPal


def _paypal_token(mock: respx.MockRouter) -> respx.Route:
    return mock.post(f"{PAYPAL_API}/v1/oauth2/token").mock(
        side_effect=lambda request: recorded("paypal", "token")
    )


def _paypal_routes(mock: respx.MockRouter) -> tuple[respx.Route, respx.Route]:
    token = _paypal_token(mock)
    refund = mock.post(f"{PAYPAL_API}/v2/payments/captures/{PAYPAL_CAPTURE}/refund")
    return token, refund


def test_paypal_send_gets_a_token_then_posts_the_refund(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        token, refund = _paypal_routes(mock)
        refund.mock(return_value=recorded("paypal", "refund_completed"))
        result = paypal.send(PAYPAL_REQUEST)

    asked = token.calls.last.request
    assert asked.headers["Authorization"] == basic("AcLiEnT-1d", "s3cr3t")
    assert asked.headers["Accept"] == "application/json"
    assert form(asked) == {"grant_type": "client_credentials"}

    sent = refund.calls.last.request
    assert sent.method == "POST"
    assert sent.headers["Authorization"] == f"Bearer {PAYPAL_TOKEN}"
    assert sent.headers["PayPal-Request-Id"] == KEY
    assert sent.headers["Prefer"] == "return=representation"
    assert sent.headers["Content-Type"] == "application/json"
    assert body(sent) == {
        "amount": {"value": "19.99", "currency_code": "EUR"},
        "custom_id": REFUND_ID,
        "note_to_payer": "Damaged mug",
    }
    assert result == ProviderResult(
        ProviderState.SUCCEEDED,
        reference=PAYPAL_REFUND,
        provider_status="COMPLETED",
        unsent_minor=0,
    )


@pytest.mark.parametrize(
    ("currency", "minor", "value"),
    [("EUR", 1999, "19.99"), ("EUR", 1000, "10.00"), ("JPY", 1500, "1500"), ("HUF", 4990, "4990")],
)
def test_paypal_sends_a_decimal_string_at_the_currency_precision(
    paypal: PayPalAdapter, currency: str, minor: int, value: str
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=recorded("paypal", "refund_completed"))
        paypal.send(replace(PAYPAL_REQUEST, currency=currency, amount_minor=minor))
    assert body(refund.calls.last.request)["amount"] == {"value": value, "currency_code": currency}


def test_paypal_twd_is_sent_without_decimals_and_the_rest_is_kept(paypal: PayPalAdapter) -> None:
    """PayPal takes TWD in whole dollars: TWD 100.50 is refunded as "100", never "101",
    and the 0.50 it could not send is on the result."""
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=recorded("paypal", "refund_completed"))
        result = paypal.send(replace(PAYPAL_REQUEST, currency="TWD", amount_minor=10050))
    assert body(refund.calls.last.request)["amount"] == {"value": "100", "currency_code": "TWD"}
    assert (result.state, result.unsent_minor) == (ProviderState.SUCCEEDED, 50)


@pytest.mark.parametrize(
    ("currency", "minor", "code", "message"),
    [
        ("KWD", 1250, "currency_not_supported", "PayPal does not take refunds in KWD"),
        ("INR", 1999, "currency_not_supported", "PayPal does not take refunds in INR"),
        (
            "TWD",
            50,
            "amount_below_provider_unit",
            "0.50 TWD is less than the smallest amount PayPal can refund (1.00 TWD)",
        ),
    ],
)
def test_paypal_refund_it_cannot_take_fails_before_any_call(
    paypal: PayPalAdapter, currency: str, minor: int, code: str, message: str
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        token, refund = _paypal_routes(mock)
        result = paypal.send(replace(PAYPAL_REQUEST, currency=currency, amount_minor=minor))
    assert not token.called and not refund.called
    assert (result.state, result.code, result.message) == (ProviderState.FAILED, code, message)


def test_paypal_unknown_status_is_kept_verbatim(paypal: PayPalAdapter) -> None:
    answer = recorded("paypal", "refund_completed", status="PARTIALLY_COMPLETED")
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=answer)
        with pytest.raises(UnknownAnswer, match="PARTIALLY_COMPLETED") as caught:
            paypal.send(PAYPAL_REQUEST)
    assert caught.value.answer == {"http_status": 200, "body": answer.json()}
    assert (caught.value.reference, caught.value.provider_status) == (
        PAYPAL_REFUND,
        "PARTIALLY_COMPLETED",
    )


def test_paypal_note_to_payer_is_capped_and_never_empty(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(side_effect=lambda request: recorded("paypal", "refund_completed"))
        paypal.send(replace(PAYPAL_REQUEST, note=""))
        paypal.send(replace(PAYPAL_REQUEST, note="x" * 400))
    first, second = (body(call.request)["note_to_payer"] for call in refund.calls)
    assert first == "Refund for your return"
    assert second == "x" * 255


@pytest.mark.parametrize(
    ("name", "state", "reference", "status", "code"),
    [
        ("refund_completed", ProviderState.SUCCEEDED, PAYPAL_REFUND, "COMPLETED", None),
        ("refund_replayed", ProviderState.SUCCEEDED, PAYPAL_REFUND, "COMPLETED", None),
        ("refund_pending", ProviderState.PENDING, PAYPAL_REFUND, "PENDING", None),
        ("capture_fully_refunded", ProviderState.FAILED, None, None, "already_refunded"),
        ("refund_amount_exceeded", ProviderState.FAILED, None, None, "refund_amount_exceeded"),
        ("resource_not_found", ProviderState.FAILED, None, None, "payment_not_found"),
        ("not_authorized", ProviderState.FAILED, None, None, "provider_auth"),
    ],
)
def test_paypal_maps_each_recorded_answer(
    paypal: PayPalAdapter,
    name: str,
    state: ProviderState,
    reference: str | None,
    status: str | None,
    code: str | None,
) -> None:
    answer = recorded("paypal", name)
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=answer)
        result = paypal.send(PAYPAL_REQUEST)
    assert (result.state, result.reference, result.provider_status, result.code) == (
        state,
        reference,
        status,
        code,
    )
    assert result.raw == answer.json()


def test_paypal_pending_refund_keeps_its_reason(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=recorded("paypal", "refund_pending"))
        result = paypal.send(PAYPAL_REQUEST)
    assert (result.state, result.code, result.message) == (ProviderState.PENDING, None, "ECHECK")


def test_paypal_error_message_names_the_issue(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=recorded("paypal", "capture_fully_refunded"))
        result = paypal.send(PAYPAL_REQUEST)
    assert result.message is not None and result.message.startswith("CAPTURE_FULLY_REFUNDED: ")


@pytest.mark.parametrize("status", ["CANCELLED", "FAILED"])
def test_paypal_cancelled_or_failed_refund_is_failed(paypal: PayPalAdapter, status: str) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=recorded("paypal", "refund_completed", status=status))
        result = paypal.send(PAYPAL_REQUEST)
    assert (result.state, result.provider_status) == (ProviderState.FAILED, status)


def test_paypal_renews_an_expired_token_once_and_retries_with_the_same_key(
    paypal: PayPalAdapter,
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        token = mock.post(f"{PAYPAL_API}/v1/oauth2/token").mock(
            side_effect=[recorded("paypal", "token"), recorded("paypal", "token_renewed")]
        )
        refund = mock.post(f"{PAYPAL_API}/v2/payments/captures/{PAYPAL_CAPTURE}/refund").mock(
            side_effect=[
                recorded("paypal", "token_expired"),
                recorded("paypal", "refund_completed"),
            ]
        )
        result = paypal.send(PAYPAL_REQUEST)

    assert token.call_count == 2 and refund.call_count == 2
    first, second = (call.request for call in refund.calls)
    assert first.headers["Authorization"] == f"Bearer {PAYPAL_TOKEN}"
    assert second.headers["Authorization"] == f"Bearer {PAYPAL_RENEWED}"
    assert first.headers["PayPal-Request-Id"] == second.headers["PayPal-Request-Id"] == KEY
    assert first.content == second.content
    assert (result.state, result.reference) == (ProviderState.SUCCEEDED, PAYPAL_REFUND)
    assert paypal._token == PAYPAL_RENEWED


def test_paypal_renews_only_once_when_the_new_token_is_refused_too(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        token = mock.post(f"{PAYPAL_API}/v1/oauth2/token").mock(
            side_effect=[recorded("paypal", "token"), recorded("paypal", "token_renewed")]
        )
        refund = mock.post(f"{PAYPAL_API}/v2/payments/captures/{PAYPAL_CAPTURE}/refund").mock(
            side_effect=lambda request: recorded("paypal", "token_expired")
        )
        result = paypal.send(PAYPAL_REQUEST)
    assert token.call_count == 2 and refund.call_count == 2
    assert (result.state, result.code) == (ProviderState.FAILED, "provider_auth")


def test_paypal_reuses_a_cached_token_across_sends(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        token, refund = _paypal_routes(mock)
        refund.mock(
            side_effect=[
                recorded("paypal", "refund_completed"),
                recorded("paypal", "refund_replayed"),
            ]
        )
        paypal.send(PAYPAL_REQUEST)
        paypal.send(PAYPAL_REQUEST)
    assert token.call_count == 1 and refund.call_count == 2
    assert all(c.request.headers["Authorization"] == f"Bearer {PAYPAL_TOKEN}" for c in refund.calls)


def test_paypal_refused_client_credentials_fail_without_refunding(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=False) as mock:
        token = mock.post(f"{PAYPAL_API}/v1/oauth2/token").mock(
            return_value=recorded("paypal", "token_invalid_client")
        )
        refund = mock.post(f"{PAYPAL_API}/v2/payments/captures/{PAYPAL_CAPTURE}/refund")
        result = paypal.send(PAYPAL_REQUEST)
    assert token.call_count == 1 and not refund.called
    assert (result.state, result.code) == (ProviderState.FAILED, "provider_auth")
    assert result.message == "Client Authentication failed"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(recorded("paypal", "internal_server_error"), id="500"),
        pytest.param(recorded("paypal", "rate_limit_reached"), id="429"),
        pytest.param(httpx.Response(200, text="<html>maintenance</html>"), id="not-json"),
    ],
)
def test_paypal_token_trouble_raises_provider_error(
    paypal: PayPalAdapter, answer: httpx.Response
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{PAYPAL_API}/v1/oauth2/token").mock(return_value=answer)
        refund = mock.post(f"{PAYPAL_API}/v2/payments/captures/{PAYPAL_CAPTURE}/refund")
        with pytest.raises(ProviderError):
            paypal.send(PAYPAL_REQUEST)
    assert not refund.called


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES)
def test_paypal_token_transport_failures_raise(paypal: PayPalAdapter, failure: Exception) -> None:
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{PAYPAL_API}/v1/oauth2/token").mock(side_effect=failure)
        with pytest.raises(ProviderError, match=type(failure).__name__):
            paypal.send(PAYPAL_REQUEST)


@pytest.mark.parametrize("name", ["internal_server_error", "rate_limit_reached"])
def test_paypal_retryable_answers_raise_provider_error(paypal: PayPalAdapter, name: str) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=recorded("paypal", name))
        with pytest.raises(ProviderError, match="paypal: HTTP"):
            paypal.send(PAYPAL_REQUEST)


@pytest.mark.parametrize("failure", TRANSPORT_FAILURES)
def test_paypal_refund_transport_failures_raise(paypal: PayPalAdapter, failure: Exception) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(side_effect=failure)
        with pytest.raises(ProviderError, match=type(failure).__name__):
            paypal.send(PAYPAL_REQUEST)


@pytest.mark.parametrize("answer", NOT_JSON)
def test_paypal_answers_that_are_not_a_json_object_raise(
    paypal: PayPalAdapter, answer: httpx.Response
) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _, refund = _paypal_routes(mock)
        refund.mock(return_value=answer)
        with pytest.raises(ProviderError):
            paypal.send(PAYPAL_REQUEST)


def test_paypal_lookup_by_reference(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _paypal_token(mock)
        route = mock.get(f"{PAYPAL_API}/v2/payments/refunds/{PAYPAL_REFUND}").mock(
            return_value=recorded("paypal", "refund_retrieve")
        )
        result = paypal.lookup(PAYPAL_REQUEST, PAYPAL_REFUND)
    sent = route.calls.last.request
    assert sent.method == "GET" and sent.content == b""
    assert sent.headers["Authorization"] == f"Bearer {PAYPAL_TOKEN}"
    assert "PayPal-Request-Id" not in sent.headers
    assert result == ProviderResult(
        ProviderState.SUCCEEDED,
        reference=PAYPAL_REFUND,
        provider_status="COMPLETED",
        unsent_minor=0,
    )


def test_paypal_lookup_renews_an_expired_token(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        token = mock.post(f"{PAYPAL_API}/v1/oauth2/token").mock(
            side_effect=[recorded("paypal", "token"), recorded("paypal", "token_renewed")]
        )
        mock.get(f"{PAYPAL_API}/v2/payments/refunds/{PAYPAL_REFUND}").mock(
            side_effect=[recorded("paypal", "token_expired"), recorded("paypal", "refund_retrieve")]
        )
        result = paypal.lookup(PAYPAL_REQUEST, PAYPAL_REFUND)
    assert token.call_count == 2
    assert result is not None and result.state is ProviderState.SUCCEEDED


def test_paypal_lookup_of_an_unknown_refund_is_none(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _paypal_token(mock)
        mock.get(f"{PAYPAL_API}/v2/payments/refunds/9XX00000000000000").mock(
            return_value=recorded("paypal", "resource_not_found")
        )
        assert paypal.lookup(PAYPAL_REQUEST, "9XX00000000000000") is None


@pytest.mark.parametrize("name", ["not_authorized", "token_expired"])
def test_paypal_refused_lookup_raises(paypal: PayPalAdapter, name: str) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _paypal_token(mock)
        mock.get(f"{PAYPAL_API}/v2/payments/refunds/{PAYPAL_REFUND}").mock(
            side_effect=lambda request: recorded("paypal", name)
        )
        with pytest.raises(ProviderError, match="paypal: lookup"):
            paypal.lookup(PAYPAL_REQUEST, PAYPAL_REFUND)


def test_paypal_lookup_without_reference_raises_without_asking(paypal: PayPalAdapter) -> None:
    with respx.mock(assert_all_called=False) as mock:
        token, _ = _paypal_routes(mock)
        with pytest.raises(ProviderError, match="cannot be looked up"):
            paypal.lookup(PAYPAL_REQUEST, None)
    assert not mock.calls and not token.called


# --------------------------------------------------------------------------- Shopify


def _operation(request: httpx.Request) -> str:
    query = str(body(request)["query"])
    for name in ("OrderTransactions", "RefundCreate", "OrderRefunds"):
        if f" {name}(" in query:
            return name
    raise AssertionError(f"unexpected GraphQL operation: {query!r}")


class FakeShopify:
    """Answers each GraphQL operation with its recording and keeps what was asked."""

    def __init__(self, **answers: str | httpx.Response | Exception) -> None:
        self.answers = answers
        self.asked: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        operation = _operation(request)
        self.asked.append((operation, body(request)))
        answer = self.answers[operation]
        if isinstance(answer, Exception):
            raise answer
        return recorded("shopify", answer) if isinstance(answer, str) else answer

    def variables(self, operation: str) -> dict[str, Any]:
        found = [sent["variables"] for name, sent in self.asked if name == operation]
        assert len(found) == 1, self.asked
        return dict(found[0])

    @property
    def operations(self) -> list[str]:
        return [name for name, _ in self.asked]


def _shopify(mock: respx.MockRouter, fake: FakeShopify) -> respx.Route:
    return mock.post(SHOPIFY_URL).mock(side_effect=fake)


def test_shopify_send_reads_the_sale_then_creates_an_idempotent_refund(
    shopify: ShopifyAdapter,
) -> None:
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate="refund_create")
    with respx.mock(assert_all_called=True) as mock:
        route = _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)

    assert fake.operations == ["OrderTransactions", "RefundCreate"]
    for call in route.calls:
        assert call.request.method == "POST" and str(call.request.url) == SHOPIFY_URL
        assert call.request.headers["X-Shopify-Access-Token"] == SHOPIFY_TOKEN
        assert call.request.headers["Content-Type"] == "application/json"
    assert fake.variables("OrderTransactions") == {"id": SHOPIFY_ORDER}

    mutation = fake.asked[1][1]
    assert "refundCreate(input: $input) @idempotent(key: $key)" in mutation["query"]
    variables = mutation["variables"]
    assert variables["key"] == KEY
    assert variables["input"] == {
        "orderId": SHOPIFY_ORDER,
        "note": f"ReturnGuard refund {REFUND_ID}. Damaged mug",
        "notify": False,
        "currency": "EUR",
        "transactions": [
            {
                "orderId": SHOPIFY_ORDER,
                "parentId": SHOPIFY_SALE,
                "gateway": "shopify_payments",
                "kind": "REFUND",
                "amount": "19.99",
            }
        ],
        "refundLineItems": [
            {
                "lineItemId": "gid://shopify/LineItem/13579",
                "quantity": 1,
                "restockType": "NO_RESTOCK",
            }
        ],
    }
    assert variables["input"]["note"].startswith(marker(REFUND_ID))
    assert result == ProviderResult(
        ProviderState.SUCCEEDED, reference=SHOPIFY_REFUND, provider_status="SUCCESS", unsent_minor=0
    )


def test_shopify_takes_a_successful_capture_as_the_parent(shopify: ShopifyAdapter) -> None:
    answer = recorded_body("shopify", "order_transactions")
    answer["data"]["order"]["transactions"] = [
        {
            "id": "gid://shopify/OrderTransaction/1",
            "kind": "AUTHORIZATION",
            "status": "SUCCESS",
            "gateway": "paypal",
        },
        {
            "id": "gid://shopify/OrderTransaction/2",
            "kind": "CAPTURE",
            "status": "SUCCESS",
            "gateway": "paypal",
        },
    ]
    fake = FakeShopify(
        OrderTransactions=httpx.Response(200, json=answer), RefundCreate="refund_create"
    )
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        shopify.send(SHOPIFY_REQUEST)
    (transaction,) = fake.variables("RefundCreate")["input"]["transactions"]
    assert (transaction["parentId"], transaction["gateway"]) == (
        "gid://shopify/OrderTransaction/2",
        "paypal",
    )


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param(
            (RefundLineItem("gid://shopify/LineItem/13579", 2), RefundLineItem("24680", 1)),
            [
                {
                    "lineItemId": "gid://shopify/LineItem/13579",
                    "quantity": 2,
                    "restockType": "NO_RESTOCK",
                },
                {
                    "lineItemId": "gid://shopify/LineItem/24680",
                    "quantity": 1,
                    "restockType": "NO_RESTOCK",
                },
            ],
            id="shopify-ids",
        ),
        pytest.param((RefundLineItem("MUG-BLUE-01", 1),), None, id="sku"),
        pytest.param((RefundLineItem("13579", 1), RefundLineItem("", 1)), None, id="one-unknown"),
        pytest.param((RefundLineItem("gid://shopify/Product/1", 1),), None, id="other-gid"),
        pytest.param((), None, id="no-lines"),
    ],
)
def test_shopify_lists_line_items_only_when_all_are_shopify_line_ids(
    shopify: ShopifyAdapter,
    lines: tuple[RefundLineItem, ...],
    expected: list[dict[str, Any]] | None,
) -> None:
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate="refund_create")
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        shopify.send(replace(SHOPIFY_REQUEST, lines=lines))
    assert fake.variables("RefundCreate")["input"].get("refundLineItems") == expected


def _paid_in(currency: str) -> httpx.Response:
    """The order's transactions, for an order the buyer paid in ``currency``."""
    answer = recorded_body("shopify", "order_transactions")
    answer["data"]["order"]["presentmentCurrencyCode"] = currency
    return httpx.Response(200, json=answer)


@pytest.mark.parametrize(
    ("currency", "minor", "amount"),
    [("EUR", 1999, "19.99"), ("JPY", 1500, "1500"), ("KWD", 1250, "1.250")],
)
def test_shopify_sends_a_decimal_string_and_the_currency(
    shopify: ShopifyAdapter, currency: str, minor: int, amount: str
) -> None:
    fake = FakeShopify(OrderTransactions=_paid_in(currency), RefundCreate="refund_create")
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        shopify.send(replace(SHOPIFY_REQUEST, currency=currency, amount_minor=minor))
    refund_input = fake.variables("RefundCreate")["input"]
    (transaction,) = refund_input["transactions"]
    assert (transaction["amount"], refund_input["currency"]) == (amount, currency)


def test_shopify_takes_an_order_gid_as_it_is(shopify: ShopifyAdapter) -> None:
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate="refund_create")
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        shopify.send(replace(SHOPIFY_REQUEST, payment_reference=SHOPIFY_ORDER))
    assert fake.variables("OrderTransactions") == {"id": SHOPIFY_ORDER}
    assert fake.variables("RefundCreate")["input"]["orderId"] == SHOPIFY_ORDER


def test_shopify_uses_the_configured_api_version(http: httpx.Client) -> None:
    adapter = ShopifyAdapter(http, shop_domain=SHOP, access_token="t", api_version="2025-10")
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate="refund_create")
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"https://{SHOP}/admin/api/2025-10/graphql.json").mock(side_effect=fake)
        assert adapter.send(SHOPIFY_REQUEST).state is ProviderState.SUCCEEDED


@pytest.mark.parametrize(
    ("refund_answer", "code", "message"),
    [
        (
            "refund_create_over_refundable",
            "exceeds_refundable_at_provider",
            "Amount can't be greater than the refundable amount",
        ),
        (
            "refund_create_already_refunded",
            "already_refunded",
            "Line item has already been refunded",
        ),
        (
            "refund_create_invalid_quantity",
            "rejected",
            "Quantity cannot refund more items than were purchased",
        ),
    ],
)
def test_shopify_user_errors_are_failures(
    shopify: ShopifyAdapter, refund_answer: str, code: str, message: str
) -> None:
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate=refund_answer)
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)
    assert (result.state, result.reference, result.code, result.message) == (
        ProviderState.FAILED,
        None,
        code,
        message,
    )
    assert result.raw == recorded_body("shopify", refund_answer)["data"]["refundCreate"]


@pytest.mark.parametrize(
    ("transactions_answer", "code"),
    [("order_without_payment", "no_payment"), ("order_not_found", "payment_not_found")],
)
def test_shopify_order_without_a_payment_fails_before_any_refund(
    shopify: ShopifyAdapter, transactions_answer: str, code: str
) -> None:
    fake = FakeShopify(OrderTransactions=transactions_answer)
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)
    assert fake.operations == ["OrderTransactions"]
    assert (result.state, result.code) == (ProviderState.FAILED, code)


def test_shopify_refused_access_token_is_provider_auth(shopify: ShopifyAdapter) -> None:
    fake = FakeShopify(OrderTransactions="invalid_access_token")
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)
    assert (result.state, result.code) == (ProviderState.FAILED, "provider_auth")


def test_shopify_graphql_errors_refuse_the_refund(shopify: ShopifyAdapter) -> None:
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate="access_denied")
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)
    assert (result.state, result.code) == (ProviderState.FAILED, "rejected")
    assert result.message is not None and "write_orders" in result.message


@pytest.mark.parametrize("name", ["shop_frozen", "not_found"])
def test_shopify_string_errors_of_an_unavailable_shop_refuse_the_refund(
    shopify: ShopifyAdapter, name: str
) -> None:
    """Shopify answers a frozen (402) or unknown (404) shop with `{"errors": "..."}`."""
    fake = FakeShopify(OrderTransactions=name)
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)
    assert (result.state, result.code) == (ProviderState.FAILED, "rejected")
    assert result.message == recorded_body("shopify", name)["errors"]


@pytest.mark.parametrize(
    "answers",
    [
        pytest.param({"OrderTransactions": "throttled"}, id="throttled-transactions"),
        pytest.param(
            {"OrderTransactions": "order_transactions", "RefundCreate": "throttled"},
            id="throttled-refund",
        ),
        pytest.param({"OrderTransactions": "bad_gateway"}, id="502-html"),
        pytest.param(
            {"OrderTransactions": httpx.Response(429, headers={"Retry-After": "2.0"})}, id="429"
        ),
        pytest.param(
            {
                "OrderTransactions": "order_transactions",
                "RefundCreate": httpx.Response(503, text="Service Unavailable"),
            },
            id="503-refund",
        ),
        pytest.param(
            {
                "OrderTransactions": "order_transactions",
                "RefundCreate": httpx.Response(200, text="<html>captcha</html>"),
            },
            id="not-json",
        ),
        pytest.param(
            {
                "OrderTransactions": "order_transactions",
                "RefundCreate": httpx.Response(
                    200, json={"data": {"refundCreate": {"refund": None, "userErrors": []}}}
                ),
            },
            id="no-refund-no-errors",
        ),
        pytest.param({"OrderTransactions": httpx.Response(200, json={"data": None})}, id="no-data"),
        pytest.param(
            {
                "OrderTransactions": "order_transactions",
                "RefundCreate": httpx.ReadTimeout("timed out"),
            },
            id="refund-read-timeout",
        ),
        pytest.param({"OrderTransactions": httpx.ConnectError("refused")}, id="connect-error"),
    ],
)
def test_shopify_unknown_outcomes_raise_provider_error(
    shopify: ShopifyAdapter, answers: dict[str, str | httpx.Response | Exception]
) -> None:
    fake = FakeShopify(**answers)
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        with pytest.raises(ProviderError):
            shopify.send(SHOPIFY_REQUEST)
    assert fake.operations == list(answers)


def test_shopify_throttled_error_says_so(shopify: ShopifyAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, FakeShopify(OrderTransactions="throttled"))
        with pytest.raises(ProviderError, match="Throttled"):
            shopify.send(SHOPIFY_REQUEST)


def test_shopify_lookup_finds_our_refund_by_the_note_marker(shopify: ShopifyAdapter) -> None:
    fake = FakeShopify(OrderRefunds="order_refunds")
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.lookup(SHOPIFY_REQUEST, None)
    assert fake.operations == ["OrderRefunds"]
    assert fake.variables("OrderRefunds") == {"id": SHOPIFY_ORDER}
    assert result == ProviderResult(
        ProviderState.SUCCEEDED, reference=SHOPIFY_REFUND, provider_status="SUCCESS", unsent_minor=0
    )


def test_shopify_lookup_finds_a_refund_by_its_reference(shopify: ShopifyAdapter) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, FakeShopify(OrderRefunds="order_refunds_without_ours"))
        result = shopify.lookup(SHOPIFY_REQUEST, "gid://shopify/Refund/951928111119")
    assert result is not None and result.reference == "gid://shopify/Refund/951928111119"


@pytest.mark.parametrize("answer", ["order_refunds_without_ours", "order_not_found"])
def test_shopify_lookup_without_our_refund_is_none(shopify: ShopifyAdapter, answer: str) -> None:
    """A refund of another return on the same order carries another marker."""
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, FakeShopify(OrderRefunds=answer))
        assert shopify.lookup(SHOPIFY_REQUEST, None) is None


@pytest.mark.parametrize(
    "answer",
    ["throttled", "access_denied", "invalid_access_token", "bad_gateway", "shop_frozen"],
)
def test_shopify_lookup_trouble_raises_provider_error(shopify: ShopifyAdapter, answer: str) -> None:
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, FakeShopify(OrderRefunds=answer))
        with pytest.raises(ProviderError):
            shopify.lookup(SHOPIFY_REQUEST, None)


def test_shopify_order_paid_in_another_currency_is_not_refunded(shopify: ShopifyAdapter) -> None:
    """Ours says EUR but the buyer paid USD at Shopify: sending the EUR amount as USD would
    refund the wrong money, so nothing is created."""
    fake = FakeShopify(OrderTransactions=_paid_in("USD"))
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)
    assert fake.operations == ["OrderTransactions"]
    assert (result.state, result.code) == (ProviderState.FAILED, "currency_mismatch")
    assert result.message is not None and "paid in USD at Shopify" in result.message


def test_shopify_refuses_a_currency_it_does_not_take_before_any_call(
    shopify: ShopifyAdapter,
) -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = _shopify(mock, FakeShopify())
        result = shopify.send(replace(SHOPIFY_REQUEST, currency="KPW", amount_minor=500))
    assert not route.called
    assert (result.state, result.code) == (ProviderState.FAILED, "currency_not_supported")


@pytest.mark.parametrize(
    ("refund_answer", "state", "status", "code", "message"),
    [
        ("refund_create", ProviderState.SUCCEEDED, "SUCCESS", None, None),
        ("refund_create_pending", ProviderState.PENDING, "PENDING", None, None),
        (
            "refund_create_awaiting_response",
            ProviderState.PENDING,
            "AWAITING_RESPONSE",
            None,
            None,
        ),
        (
            "refund_create_failure",
            ProviderState.FAILED,
            "FAILURE",
            "card_declined",
            "the refund transaction was FAILURE: CARD_DECLINED",
        ),
        (
            "refund_create_error",
            ProviderState.FAILED,
            "ERROR",
            "generic_error",
            "the refund transaction was ERROR: GENERIC_ERROR",
        ),
    ],
)
def test_shopify_refund_state_comes_from_its_refund_transactions(
    shopify: ShopifyAdapter,
    refund_answer: str,
    state: ProviderState,
    status: str,
    code: str | None,
    message: str | None,
) -> None:
    """A created Shopify refund is only a record: paid when its transactions succeeded,
    pending while they wait on the gateway, failed when they failed."""
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate=refund_answer)
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        result = shopify.send(SHOPIFY_REQUEST)
    assert "transactions(first: 10)" in fake.asked[1][1]["query"]
    assert (result.state, result.reference, result.provider_status) == (
        state,
        SHOPIFY_REFUND,
        status,
    )
    assert (result.code, result.message) == (code, message)


def test_shopify_pending_refund_is_looked_up_later_not_created_again(
    shopify: ShopifyAdapter,
) -> None:
    fake = FakeShopify(
        OrderTransactions="order_transactions",
        RefundCreate="refund_create_pending",
        OrderRefunds="order_refunds",
    )
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        pending = shopify.send(SHOPIFY_REQUEST)
        later = shopify.lookup(SHOPIFY_REQUEST, pending.reference)
    assert fake.operations == ["OrderTransactions", "RefundCreate", "OrderRefunds"]
    assert pending.state is ProviderState.PENDING
    assert later is not None
    assert (later.state, later.reference, later.provider_status) == (
        ProviderState.SUCCEEDED,
        SHOPIFY_REFUND,
        "SUCCESS",
    )


def _refund_with(*statuses: str) -> httpx.Response:
    answer = recorded_body("shopify", "refund_create")
    refund = answer["data"]["refundCreate"]["refund"]
    (node,) = refund["transactions"]["nodes"]
    refund["transactions"]["nodes"] = [node | {"status": status} for status in statuses]
    return httpx.Response(200, json=answer)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        pytest.param("refund_create_unknown_status", "unknown transaction status", id="UNKNOWN"),
        pytest.param(_refund_with("SUCCESS", "FAILURE"), "some of its transactions", id="mixed"),
        pytest.param(
            _refund_with("PENDING", "ERROR"), "some of its transactions", id="pending-and-error"
        ),
        pytest.param(_refund_with(), "no refund transaction", id="no-transactions"),
    ],
)
def test_shopify_refund_whose_money_is_unclear_stays_unknown(
    shopify: ShopifyAdapter, answer: str | httpx.Response, why: str
) -> None:
    fake = FakeShopify(OrderTransactions="order_transactions", RefundCreate=answer)
    with respx.mock(assert_all_called=True) as mock:
        _shopify(mock, fake)
        with pytest.raises(UnknownAnswer, match=why) as caught:
            shopify.send(SHOPIFY_REQUEST)
    created = (recorded("shopify", answer) if isinstance(answer, str) else answer).json()["data"][
        "refundCreate"
    ]["refund"]
    assert caught.value.answer == {"http_status": 200, "body": created}
    assert caught.value.reference == SHOPIFY_REFUND


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kind", "settings", "credentials", "field"),
    [
        ("shopify", {}, {"access_token": "shpat_x"}, "settings.shop_domain"),
        ("shopify", {"shop_domain": "  "}, {"access_token": "shpat_x"}, "settings.shop_domain"),
        (
            "shopify",
            {"shop_domain": "shop.example.com"},
            {"access_token": "shpat_x"},
            "settings.shop_domain",
        ),
        (
            "shopify",
            {"shop_domain": "https://mugs.myshopify.com"},
            {"access_token": "shpat_x"},
            "settings.shop_domain",
        ),
        (
            "shopify",
            {"shop_domain": SHOP, "api_version": "2026-02"},
            {"access_token": "shpat_x"},
            "settings.api_version",
        ),
        ("shopify", {"shop_domain": SHOP}, {}, "credentials.access_token"),
        ("stripe", {}, {}, "credentials.api_key"),
        ("stripe", {}, {"api_key": 42}, "credentials.api_key"),
        ("stripe", {}, {"api_key": "pk_live_51QkT9f"}, "credentials.api_key"),
        (
            "stripe",
            {"base_url": "http://api.stripe.com"},
            {"api_key": STRIPE_KEY},
            "settings.base_url",
        ),
        ("stripe", {"base_url": "https://"}, {"api_key": STRIPE_KEY}, "settings.base_url"),
        ("stripe", {"region": "eu"}, {"api_key": STRIPE_KEY}, "settings.region"),
        ("stripe", {}, {"api_key": STRIPE_KEY, "webhook": "whsec_x"}, "credentials.webhook"),
        ("paypal", {}, {"client_id": "id"}, "credentials.client_secret"),
        (
            "paypal",
            {"base_url": "http://api-m.sandbox.paypal.com"},
            {"client_id": "id", "client_secret": "s"},
            "settings.base_url",
        ),
        ("manual", {"base_url": "https://x.example"}, {}, "settings.base_url"),
        ("adyen", {}, {}, "kind"),
    ],
)
def test_check_config_names_the_bad_field(
    kind: str, settings: dict[str, Any], credentials: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_config(kind, settings, credentials)
    assert [error["field"] for error in caught.value.errors] == [field]
    assert str(caught.value).startswith(f"{field}: ")


def test_check_config_fills_in_defaults_and_trims() -> None:
    assert check_config("stripe", {}, {"api_key": f" {STRIPE_KEY} "}) == (
        {"base_url": "https://api.stripe.com"},
        {"api_key": STRIPE_KEY},
    )
    assert check_config("shopify", {"shop_domain": SHOP}, {"access_token": "shpat_x"}) == (
        {"shop_domain": SHOP, "api_version": "2026-01"},
        {"access_token": "shpat_x"},
    )
    assert check_config(
        "paypal",
        {"base_url": "https://api-m.sandbox.paypal.com"},
        {"client_id": "id", "client_secret": "secret"},
    ) == (
        {"base_url": "https://api-m.sandbox.paypal.com"},
        {"client_id": "id", "client_secret": "secret"},
    )
    assert check_config("manual", {}, {}) == ({}, {})


def test_adapter_for_builds_each_kind(http: httpx.Client) -> None:
    settings, secrets = check_config("stripe", {}, {"api_key": STRIPE_KEY})
    stripe = adapter_for("stripe", settings, secrets, http)
    assert isinstance(stripe, StripeAdapter) and stripe.kind == "stripe"
    assert stripe.base_url == STRIPE_API and stripe.http is http
    assert stripe.headers == {"Authorization": f"Bearer {STRIPE_KEY}"}

    settings, secrets = check_config(
        "paypal",
        {"base_url": "https://api-m.sandbox.paypal.com/"},
        {"client_id": "id", "client_secret": "secret"},
    )
    paypal = adapter_for("paypal", settings, secrets, http)
    assert isinstance(paypal, PayPalAdapter) and paypal.kind == "paypal"
    assert paypal.base_url == "https://api-m.sandbox.paypal.com"
    assert paypal.auth == ("id", "secret")

    settings, secrets = check_config("shopify", {"shop_domain": SHOP}, {"access_token": "tok"})
    shopify = adapter_for("shopify", settings, secrets, http)
    assert isinstance(shopify, ShopifyAdapter) and shopify.kind == "shopify"
    assert shopify.url == SHOPIFY_URL
    assert shopify.headers == {"X-Shopify-Access-Token": "tok"}

    with pytest.raises(ValueError, match="manual"):
        adapter_for("manual", {}, {}, http)


def test_adapter_for_shopify_without_api_version_uses_the_default(http: httpx.Client) -> None:
    shopify = adapter_for("shopify", {"shop_domain": SHOP}, {"access_token": "tok"}, http)
    assert isinstance(shopify, ShopifyAdapter) and shopify.url == SHOPIFY_URL
