"""Helpers for the ledger tests: the hand-computed example shop and paid refunds."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from sqlalchemy import select

from returnguard.auth.actor import Actor
from returnguard.kit.db import Database
from returnguard.ledger import service as ledger
from returnguard.refunds.models import Refund
from returnguard.returns.models import ReturnLine
from tests.conftest import Api

EUR = "EUR"


def money(amount: str, currency: str = EUR) -> dict[str, str]:
    return {"amount": amount, "currency": currency}


def noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, r.text
    return r.json()


def pay_refund(
    db: Database,
    organization_id: uuid.UUID,
    ret: dict[str, Any],
    lines: list[dict[str, int]],
    *,
    settled_at: datetime | None = None,
    deduction: int = 0,
    currency: str = EUR,
) -> uuid.UUID:
    """A refund that succeeded, booked in the ledger as the refunds module will do it.

    ``lines`` give, per return line (by index in ``ret["lines"]``): quantity, item, fee and
    optionally tax/shipping; the total is item + tax + shipping - fee.
    """
    settled_at = settled_at or datetime.now(UTC)
    parts: list[dict[str, Any]] = []
    for spec in lines:
        line = ret["lines"][spec["line"]]
        item, fee = spec["item"], spec.get("fee", 0)
        tax, shipping = spec.get("tax", 0), spec.get("shipping", 0)
        parts.append(
            {
                "return_line_id": line["id"],
                "order_line_id": line["order_line_id"],
                "quantity": spec["quantity"],
                "item": item,
                "tax": tax,
                "discount": 0,
                "shipping": shipping,
                "shipping_tax": 0,
                "restocking_fee": fee,
                "total": item + tax + shipping - fee,
            }
        )
    amount = sum(p["total"] for p in parts) - deduction
    with db.session() as session:
        refund = Refund(
            organization_id=organization_id,
            return_id=uuid.UUID(ret["id"]),
            order_id=uuid.UUID(ret["order_id"]),
            idempotency_key=f"test-{uuid.uuid4()}",
            request_hash="0" * 64,
            status="succeeded",
            amount_minor=amount,
            currency=currency,
            lines=parts,
            return_shipping_deduction_minor=deduction,
            provider="manual",
            provider_reference="TEST",
            created_by="test",
            settled_at=settled_at,
            created_at=settled_at,
            updated_at=settled_at,
        )
        session.add(refund)
        for part in parts:
            row = session.scalar(
                select(ReturnLine).where(ReturnLine.id == uuid.UUID(part["return_line_id"]))
            )
            assert row is not None
            row.refunded += part["quantity"]
        session.flush()
        ledger.record_refund_paid(session, Actor.system(organization_id, "refunds"), refund)
        return refund.id


def walk_return(api: Api, ret: dict[str, Any], steps: list[tuple[str, dict[str, Any]]]) -> None:
    for step, body in steps:
        ok(api.post(f"/api/v1/returns/{ret['id']}/{step}", body))


@pytest.fixture
def hand_example(api: Api, db: Database) -> dict[str, Any]:
    """DESIGN example: 2 x 50.00 EUR + 5.00 shipping; one unit comes back on a 6.50 label the
    seller paid, costs 3.00 to handle, is restocked at its 20.00 cost, and is refunded
    50.00 less a 10% restocking fee (45.00 paid out)."""
    ok(
        api.post(
            "/api/v1/channels",
            {
                "code": "amazon-de",
                "name": "Amazon DE",
                "marketplace": "amazon",
                "country": "DE",
                "currency": EUR,
                "handling_cost": money("3.00"),
            },
        ),
        201,
    )
    ok(
        api.post(
            "/api/v1/products",
            {"sku": "MUG-BLUE", "title": "Blue mug", "unit_cost": money("20.00")},
        ),
        201,
    )
    order = api.order(quantity=2, price="50.00", shipping=money("5.00"), captured=money("105.00"))
    ret = api.open_return(order)
    line_id = ret["lines"][0]["id"]
    walk_return(
        api,
        ret,
        [
            ("approve", {"note": "checked by hand"}),
            (
                "shipments",
                {
                    "carrier": "DHL",
                    "tracking_number": "RET-1",
                    "label_cost": money("6.50"),
                    "label_paid_by": "seller",
                },
            ),
            ("receive", {"lines": [{"return_line_id": line_id, "quantity": 1}]}),
            (
                "inspections",
                {
                    "lines": [
                        {
                            "return_line_id": line_id,
                            "passed": 1,
                            "failed": 0,
                            "disposition": "restock",
                        }
                    ]
                },
            ),
        ],
    )
    refund_id = pay_refund(
        db, api.tenant.organization_id, ret, [{"line": 0, "quantity": 1, "item": 5000, "fee": 500}]
    )
    return {"order": order, "return": ret, "refund_id": refund_id}
