"""Refunds paid out through a provider by the outbox worker, and reconciled with it.

The provider here is a stateful stand-in for Stripe's public refunds API, served
through respx: it keeps the refunds it made, answers a repeated Idempotency-Key with
the refund that key made (as Stripe does), and can be told to lose its answer
(a timeout after the refund was made), to say "already refunded", to keep a refund
pending for a while, to answer with a status ReturnGuard does not know, or to answer
with a 500 that it stores for the key and replays (`Idempotent-Replayed: true`) to every
retry, as Stripe does with errors of requests that started executing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from sqlalchemy import select, update
from typer.testing import CliRunner

from returnguard.cli import app as cli
from returnguard.config import Settings
from returnguard.kit.db import Database, utcnow
from returnguard.outbox.models import OutboxMessage
from returnguard.outbox.worker import Worker
from returnguard.refunds.models import Refund
from tests.conftest import Api

STRIPE = "https://api.stripe.com"


@dataclass
class FakeStripe:
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)  # by id
    by_key: dict[str, str] = field(default_factory=dict)
    keys_seen: list[str] = field(default_factory=list)
    lose_next_answer: int = 0  # make the refund, then time out this many times
    already_refunded: bool = False
    start_pending: bool = False
    status: str | None = None  # the status new refunds get, when not the usual ones
    error_500: str | None = None  # "after_refund" or "no_refund": answer 500, stored
    stored_errors: set[str] = field(default_factory=set)

    def create(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["Idempotency-Key"]
        self.keys_seen.append(key)
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if key in self.stored_errors:
            return self._error_500(replayed=True)
        if key in self.by_key:
            return self._answer(request, self.refunds[self.by_key[key]])
        if self.error_500 == "no_refund":
            self.stored_errors.add(key)
            return self._error_500(replayed=False)
        if self.already_refunded:
            return httpx.Response(
                400,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "charge_already_refunded",
                        "message": "Charge ch_3Q has already been refunded.",
                    }
                },
            )
        refund_id = f"re_{uuid.uuid4().hex[:24]}"
        refund: dict[str, Any] = {
            "id": refund_id,
            "object": "refund",
            "amount": int(form["amount"]),
            "currency": "eur",
            "payment_intent": form["payment_intent"],
            "metadata": {"returnguard_refund_id": form["metadata[returnguard_refund_id]"]},
            "status": self.status or ("pending" if self.start_pending else "succeeded"),
        }
        self.refunds[refund_id] = refund
        self.by_key[key] = refund_id
        if self.error_500 == "after_refund":
            self.stored_errors.add(key)
            return self._error_500(replayed=False)
        return self._answer(request, refund)

    def _error_500(self, replayed: bool) -> httpx.Response:
        headers = {"Request-Id": "req_z8A9b0C1d2E3f4"}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return httpx.Response(
            500,
            headers=headers,
            json={"error": {"type": "api_error", "message": "An unknown error occurred"}},
        )

    def _answer(self, request: httpx.Request, refund: dict[str, Any]) -> httpx.Response:
        if self.lose_next_answer:
            self.lose_next_answer -= 1
            raise httpx.ReadTimeout("the answer was lost", request=request)
        return httpx.Response(200, json=refund)

    def retrieve(self, request: httpx.Request, refund_id: str) -> httpx.Response:
        if refund_id not in self.refunds:
            return httpx.Response(404, json={"error": {"type": "invalid_request_error"}})
        return httpx.Response(200, json=self.refunds[refund_id])

    def search(self, request: httpx.Request) -> httpx.Response:
        wanted = request.url.params["payment_intent"]
        data = [r for r in self.refunds.values() if r["payment_intent"] == wanted]
        return httpx.Response(200, json={"object": "list", "data": data, "has_more": False})


@pytest.fixture
def stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    with respx.mock(assert_all_called=False) as mock:
        mock.post(f"{STRIPE}/v1/refunds").mock(side_effect=fake.create)
        mock.get(url__regex=rf"{STRIPE}/v1/refunds/(?P<refund_id>re_\w+)").mock(
            side_effect=fake.retrieve
        )
        mock.get(f"{STRIPE}/v1/refunds").mock(side_effect=fake.search)
        yield fake


def _stripe_return(api: Api, currency: str = "EUR", price: str = "19.99") -> dict[str, Any]:
    """A received and inspected return of 2 x 19.99 EUR (or ``price`` in ``currency``)
    paid through Stripe."""
    api.channel()
    r = api.post(
        "/api/v1/refund-providers",
        {"name": "stripe-eu", "kind": "stripe", "credentials": {"api_key": "sk_test_123"}},
    )
    assert r.status_code == 201, r.text
    assert "credentials" not in r.json()
    r = api.client.put(
        "/api/v1/channels/amazon-de/refund-provider",
        json={"provider": "stripe-eu"},
        headers=api.tenant.headers,
    )
    assert r.status_code == 200, r.text
    order = api.order(quantity=2, price=price, currency=currency, payment_reference="pi_3QabcDEF")
    ret = api.open_return(order, quantity=2)
    line = ret["lines"][0]["id"]
    assert (
        api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"}).status_code
        == 200
    )
    api.post(
        f"/api/v1/returns/{ret['id']}/receive",
        {"lines": [{"return_line_id": line, "quantity": 2}]},
    )
    api.post(
        f"/api/v1/returns/{ret['id']}/inspections",
        {"lines": [{"return_line_id": line, "passed": 2, "failed": 0}]},
    )
    return dict(ret)


def _refund(api: Api, ret: dict[str, Any], key: str, quantity: int = 1, **extra: Any) -> Any:
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": quantity}]} | extra,
        headers=api.tenant.headers | {"Idempotency-Key": key},
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


def _work(db: Database, rounds: int = 1) -> None:
    """Run the worker `rounds` times, making every waiting retry due first."""
    worker = Worker(db, Settings(database_url=db.url, webhook_max_attempts=5))
    try:
        for _ in range(rounds):
            with db.session() as session:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.status == "pending")
                    .values(next_attempt_at=utcnow(), locked_until=None)
                )
            worker.run_once()
    finally:
        worker.close()


def test_a_refund_is_paid_through_stripe_once_even_when_the_answer_is_lost(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    stripe.lose_next_answer = 2
    refund = _refund(api, ret, "k-1")
    assert refund["status"] == "pending" and refund["provider"] == "stripe"

    _work(db)  # Stripe made the refund but the answer timed out: still pending.
    mid = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert mid["status"] == "pending"
    assert "ReadTimeout" in mid["last_error"]
    _work(db, rounds=2)  # the retries carry the same key

    done = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert done["status"] == "succeeded"
    assert len(stripe.refunds) == 1, "the provider made exactly one refund"
    (made,) = stripe.refunds.values()
    assert done["provider_reference"] == made["id"]
    assert made["amount"] == 1999
    assert stripe.keys_seen == [f"rg-{refund['id']}"] * 3
    actions = [e["action"] for e in api.get(f"/api/v1/returns/{ret['id']}/events").json()]
    moves = [a for a in actions if not a.startswith("ledger.")]
    assert moves[-3:] == ["refund.granted", "refund.sent", "refund.succeeded"]
    assert "ledger.entry_booked" in actions  # the refund is in the cost ledger
    # One of two units refunded: the return stays inspected until the other is settled.
    assert api.get(f"/api/v1/returns/{ret['id']}").json()["status"] == "inspected"
    # A finished refund is never sent again, even when its message is replayed.
    with db.session() as session:
        session.execute(update(OutboxMessage).values(status="pending", attempts=0))
    _work(db)
    assert len(stripe.keys_seen) == 3


def test_already_refunded_elsewhere_fails_and_frees_the_units(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    stripe.already_refunded = True
    refund = _refund(api, ret, "k-1", quantity=2)
    _work(db)
    failed = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert failed["status"] == "failed"
    assert failed["failure_code"] == "already_refunded"
    assert "already been refunded" in failed["failure"]
    line = api.get(f"/api/v1/returns/{ret['id']}").json()["lines"][0]["quantities"]
    assert line["refunded"] == 0


def test_already_refunded_by_our_own_earlier_call_is_recognised(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    refund = _refund(api, ret, "k-1")
    # Our refund reached Stripe under another key (say, before a key migration).
    stripe.refunds["re_ours"] = {
        "id": "re_ours",
        "object": "refund",
        "amount": 1999,
        "currency": "eur",
        "payment_intent": "pi_3QabcDEF",
        "metadata": {"returnguard_refund_id": refund["id"]},
        "status": "succeeded",
    }
    stripe.already_refunded = True
    _work(db)
    done = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert done["status"] == "succeeded" and done["provider_reference"] == "re_ours"


def test_a_pending_provider_refund_is_asked_again_until_it_settles(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    stripe.start_pending = True
    refund = _refund(api, ret, "k-1")
    _work(db)
    mid = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert mid["status"] == "pending" and mid["provider_status"] == "pending"
    (made,) = stripe.refunds.values()
    made["status"] = "succeeded"
    _work(db)
    assert api.get(f"/api/v1/refunds/{refund['id']}").json()["status"] == "succeeded"
    assert len(stripe.keys_seen) == 1, "the second round looked it up, it did not resend"


def test_provider_refunds_are_not_settled_by_hand(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    refund = _refund(api, ret, "k-1")
    r = api.post(f"/api/v1/refunds/{refund['id']}/settle", {"reference": "X"})
    assert r.status_code == 409 and r.json()["code"] == "refund_state"


def test_bad_provider_input_is_refused_with_the_field(api: Api, stripe: FakeStripe) -> None:
    ret = _stripe_return(api)
    r = api.client.post(
        f"/api/v1/returns/{ret['id']}/refunds",
        json={"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": 1}]}
        | {"provider": "adyen"},
        headers=api.tenant.headers | {"Idempotency-Key": "x"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "provider"
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"name": "s", "kind": "stripe", "credentials": {"api_key": "pk_live_1"}},
            "credentials.api_key",
        ),
        ({"name": "s", "kind": "stripe", "credentials": {}}, "credentials.api_key"),
        (
            {"name": "p", "kind": "paypal", "credentials": {"client_id": "a"}},
            "credentials.client_secret",
        ),
        (
            {
                "name": "sh",
                "kind": "shopify",
                "settings": {"shop_domain": "evil.com"},
                "credentials": {"access_token": "t"},
            },
            "settings.shop_domain",
        ),
        (
            {
                "name": "s",
                "kind": "stripe",
                "settings": {"base_url": "http://api.stripe.com"},
                "credentials": {"api_key": "sk_1"},
            },
            "settings.base_url",
        ),
        ({"name": "a", "kind": "adyen"}, "kind"),
        ({"name": "manual", "kind": "manual"}, "name"),
    ]
    for body, field_name in cases:
        r = api.post("/api/v1/refund-providers", body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == field_name, r.text
    dup = api.post(
        "/api/v1/refund-providers",
        {"name": "stripe-eu", "kind": "stripe", "credentials": {"api_key": "sk_test_2"}},
    )
    assert dup.status_code == 409
    # An order without a payment reference can't be refunded through Stripe.
    order = api.order("302-0000009-0000009", quantity=1)
    plain = api.open_return(order)
    api.post(f"/api/v1/returns/{plain['id']}/approve", {"note": "checked by hand"})
    api.post(
        f"/api/v1/returns/{plain['id']}/receive",
        {"lines": [{"return_line_id": plain["lines"][0]["id"], "quantity": 1}]},
    )
    r = api.client.post(
        f"/api/v1/returns/{plain['id']}/refunds",
        json={"lines": [{"return_line_id": plain["lines"][0]["id"], "quantity": 1}]},
        headers=api.tenant.headers | {"Idempotency-Key": "no-ref"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "provider"
    assert "payment_reference" in r.json()["errors"][0]["message"]


def test_reconcile_lists_and_fixes_refunds_out_of_step(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    first = _refund(api, ret, "k-1")
    second = _refund(api, ret, "k-2")
    _work(db)
    assert len(stripe.refunds) == 2
    runner = CliRunner()
    org = str(api.tenant.organization_id)
    clean = runner.invoke(cli, ["refunds", "reconcile", "--org", org, "--database-url", db.url])
    assert clean.exit_code == 0, clean.output
    assert "2 refunds checked, 0 mismatches" in clean.output

    # The provider lost one refund (ours says paid), and one of ours is stuck pending
    # though the provider paid it (its answer never reached us).
    lost = next(
        r for r in stripe.refunds.values() if r["metadata"]["returnguard_refund_id"] == first["id"]
    )
    del stripe.refunds[lost["id"]]
    with db.session() as session:
        session.execute(
            update(Refund)
            .where(Refund.id == uuid.UUID(second["id"]))
            .values(status="pending", provider_reference=None, settled_at=None)
        )
    result = runner.invoke(
        cli, ["refunds", "reconcile", "--org", org, "--json", "--database-url", db.url]
    )
    assert result.exit_code == 1, result.output
    rows = {
        row["refund_id"]: row
        for row in (json.loads(line) for line in result.stdout.splitlines() if line.startswith("{"))
    }
    assert rows[first["id"]]["returnguard"] == "succeeded"
    assert rows[first["id"]]["provider_state"] == "missing"
    assert rows[second["id"]]["returnguard"] == "pending"
    assert rows[second["id"]]["provider_state"] == "succeeded"

    fixed = runner.invoke(
        cli, ["refunds", "reconcile", "--org", org, "--apply", "--database-url", db.url]
    )
    assert "[fixed]" in fixed.output
    assert api.get(f"/api/v1/refunds/{second['id']}").json()["status"] == "succeeded"
    # The lost one is for a person to look at: still listed, exit 1.
    assert fixed.exit_code == 1 and first["id"] in fixed.output
    with db.session() as session:
        statuses = set(session.scalars(select(Refund.status)))
    assert statuses == {"succeeded"}


def test_a_named_manual_account_is_settled_by_finance_and_skipped_by_reconcile(
    api: Api, db: Database
) -> None:
    api.channel()
    r = api.post("/api/v1/refund-providers", {"name": "seller-central", "kind": "manual"})
    assert r.status_code == 201, r.text
    r = api.client.put(
        "/api/v1/channels/amazon-de/refund-provider",
        json={"provider": "seller-central"},
        headers=api.tenant.headers,
    )
    assert r.status_code == 200, r.text
    order = api.order(quantity=1, price="19.99")
    ret = api.open_return(order)
    api.post(f"/api/v1/returns/{ret['id']}/approve", {"note": "checked by hand"})
    api.post(
        f"/api/v1/returns/{ret['id']}/receive",
        {"lines": [{"return_line_id": ret["lines"][0]["id"], "quantity": 1}]},
    )
    refund = _refund(api, ret, "sc-1")
    assert (refund["status"], refund["provider"]) == ("pending", "manual")
    with db.session() as session:
        assert not session.scalars(select(OutboxMessage.id)).all()
    result = CliRunner().invoke(
        cli, ["refunds", "reconcile", "--database-url", db.url], catch_exceptions=False
    )
    assert result.exit_code == 0 and "0 refunds checked" in result.output
    paid = api.post(f"/api/v1/refunds/{refund['id']}/settle", {"reference": "SC-1"})
    assert paid.status_code == 200 and paid.json()["status"] == "succeeded"


def test_a_kwd_refund_is_sent_in_tens_of_fils_and_books_what_was_paid(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    """Stripe takes KWD in thousandths ending in 0: 12.345 KWD goes out as 12.340, the
    5 fils it cannot send are shown on the refund, and the ledger books 12.340 paid."""
    ret = _stripe_return(api, currency="KWD", price="12.345")
    refund = _refund(api, ret, "k-1")
    assert refund["amount"] == {"amount": "12.345", "currency": "KWD"}
    _work(db)
    done = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert done["status"] == "succeeded"
    assert done["unsent"] == {"amount": "0.005", "currency": "KWD"}
    (made,) = stripe.refunds.values()
    assert made["amount"] == 12340
    entries = api.get("/api/v1/ledger", params={"return_id": ret["id"]}).json()["items"]
    paid = [e for e in entries if e["kind"] == "refund_paid"]
    assert [e["amount"] for e in paid] == [{"amount": "-12.340", "currency": "KWD"}]
    assert paid[0]["details"]["unsent_minor"] == 5


def test_a_refund_stripe_can_pay_exactly_has_nothing_unsent(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    refund = _refund(api, ret, "k-1")
    assert refund["unsent"] == {"amount": "0.00", "currency": "EUR"}
    assert refund["provider_response"] is None
    _work(db)
    done = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert (done["status"], done["unsent"]["amount"]) == ("succeeded", "0.00")


def test_a_currency_stripe_does_not_take_fails_before_any_call(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api, currency="IRR", price="450000")
    refund = _refund(api, ret, "k-1")
    _work(db)
    failed = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert (failed["status"], failed["failure_code"]) == ("failed", "currency_not_supported")
    assert failed["failure"] == "Stripe does not take refunds in IRR"
    assert stripe.keys_seen == []
    line = api.get(f"/api/v1/returns/{ret['id']}").json()["lines"][0]["quantities"]
    assert line["refunded"] == 0


def test_an_unknown_stripe_status_is_kept_verbatim_and_never_paid(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    stripe.status = "processing"  # a status Stripe might add one day
    refund = _refund(api, ret, "k-1")
    _work(db)
    (made,) = stripe.refunds.values()
    mid = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert mid["status"] == "pending"
    assert mid["provider_response"] == {"http_status": 200, "body": made}
    assert "unknown refund status 'processing'" in mid["last_error"]
    assert (mid["provider_reference"], mid["provider_status"]) == (made["id"], "processing")

    _work(db)  # asked again by its reference, never sent again
    assert api.get(f"/api/v1/refunds/{refund['id']}").json()["status"] == "pending"
    assert len(stripe.keys_seen) == 1
    made["status"] = "succeeded"
    _work(db)
    assert api.get(f"/api/v1/refunds/{refund['id']}").json()["status"] == "succeeded"
    assert len(stripe.refunds) == 1 and len(stripe.keys_seen) == 1


def test_a_stored_stripe_error_is_answered_by_finding_our_refund(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    """The refund was made but Stripe answered 500 and stored that answer for our key:
    the retry gets the same 500 replayed, so the refund is found by its metadata."""
    ret = _stripe_return(api)
    stripe.error_500 = "after_refund"
    refund = _refund(api, ret, "k-1")
    _work(db)
    mid = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert mid["status"] == "pending" and "HTTP 500" in mid["last_error"]
    _work(db)
    done = api.get(f"/api/v1/refunds/{refund['id']}").json()
    (made,) = stripe.refunds.values()
    assert (done["status"], done["provider_reference"]) == ("succeeded", made["id"])
    assert stripe.keys_seen == [f"rg-{refund['id']}"] * 2


def test_a_stored_stripe_error_without_our_refund_waits_for_a_person(
    api: Api, db: Database, stripe: FakeStripe
) -> None:
    ret = _stripe_return(api)
    stripe.error_500 = "no_refund"
    refund = _refund(api, ret, "k-1")
    _work(db, rounds=2)
    stuck = api.get(f"/api/v1/refunds/{refund['id']}").json()
    assert stuck["status"] == "pending"  # its outcome is Stripe's to tell: money stays held
    assert "replays the error it stored" in stuck["last_error"]
    assert "a person has to check the payment pi_3QabcDEF" in stuck["last_error"]
    with db.session() as session:
        (message,) = session.scalars(select(OutboxMessage))
        assert message.status == "dead"
    _work(db, rounds=2)
    assert len(stripe.keys_seen) == 2, "not sent again and again to get the same 500"
    assert stripe.refunds == {}
