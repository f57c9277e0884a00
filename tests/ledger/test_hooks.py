"""What the return workflow books by itself: labels, handling, residual value."""

from __future__ import annotations

from typing import Any

from tests.conftest import Api
from tests.ledger.conftest import money, ok, walk_return

LEDGER = "/api/v1/ledger"


def channel(api: Api, **costs: Any) -> None:
    body = {
        "code": "amazon-de",
        "name": "Amazon DE",
        "marketplace": "amazon",
        "country": "DE",
        "currency": "EUR",
    }
    ok(api.post("/api/v1/channels", body | costs), 201)


def booked(api: Api, ret: dict[str, Any]) -> list[tuple[str, str, str]]:
    items = ok(api.get(LEDGER, params={"return_id": ret["id"]}))["items"]
    return sorted((e["kind"], e["amount"]["amount"], e["amount"]["currency"]) for e in items)


def test_a_seller_label_without_a_cost_is_estimated_from_the_channel(api: Api) -> None:
    channel(api, return_label_cost=money("6.00"))
    ret = api.open_return(api.order(quantity=1))
    walk_return(
        api,
        ret,
        [
            ("approve", {"note": "checked by hand"}),
            ("shipments", {"carrier": "DHL", "tracking_number": "1", "label_paid_by": "seller"}),
        ],
    )
    [entry] = ok(api.get(LEDGER, params={"return_id": ret["id"]}))["items"]
    assert entry["kind"] == "return_label"
    assert entry["amount"] == money("-6.00")
    assert entry["details"]["estimated"] is True
    assert "estimated" in entry["memo"]


def test_labels_the_seller_did_not_pay_are_not_its_cost(api: Api) -> None:
    channel(api, return_label_cost=money("6.00"))
    ret = api.open_return(api.order(quantity=1))
    walk_return(
        api,
        ret,
        [
            ("approve", {"note": "checked by hand"}),
            (
                "shipments",
                {
                    "carrier": "DHL",
                    "tracking_number": "1",
                    "label_cost": money("7.00"),
                    "label_paid_by": "buyer",
                },
            ),
        ],
    )
    assert booked(api, ret) == []


def test_a_label_in_another_currency_is_booked_as_bought(api: Api) -> None:
    channel(api)
    ret = api.open_return(api.order(quantity=1))
    label = {
        "carrier": "Royal Mail",
        "tracking_number": "GB1",
        "label_cost": money("4.10", "GBP"),
        "label_paid_by": "seller",
    }
    walk_return(api, ret, [("approve", {"note": "checked by hand"}), ("shipments", label)])
    assert booked(api, ret) == [("return_label", "-4.10", "GBP")]


def test_handling_is_booked_once_per_return(api: Api) -> None:
    channel(api, handling_cost=money("2.50"))
    ret = api.open_return(api.order(quantity=2), quantity=2)
    line = ret["lines"][0]["id"]
    walk_return(
        api,
        ret,
        [
            ("approve", {"note": "checked by hand"}),
            ("receive", {"lines": [{"return_line_id": line, "quantity": 1}]}),
            ("receive", {"lines": [{"return_line_id": line, "quantity": 1}]}),
        ],
    )
    assert booked(api, ret) == [("handling_fee", "-2.50", "EUR")]


def test_residual_value_follows_the_disposition_and_converts_the_cost(api: Api) -> None:
    channel(api)
    # The mug was bought for 12.50 USD; 1 EUR = 1.25 USD on 1 October.
    ok(
        api.post(
            "/api/v1/products",
            {"sku": "MUG-BLUE", "title": "Blue mug", "unit_cost": money("12.50", "USD")},
        ),
        201,
    )
    ok(
        api.post(
            "/api/v1/fx-rates", {"day": "2026-10-01", "base": "EUR", "quote": "USD", "rate": "1.25"}
        ),
        201,
    )
    ret = api.open_return(api.order(quantity=3), quantity=3)
    line = ret["lines"][0]["id"]
    walk_return(
        api,
        ret,
        [
            ("approve", {"note": "checked by hand"}),
            ("receive", {"lines": [{"return_line_id": line, "quantity": 3}]}),
            (
                "inspections",
                {
                    "lines": [
                        {
                            "return_line_id": line,
                            "passed": 0,
                            "failed": 3,
                            "disposition": "liquidate",
                        }
                    ]
                },
            ),
        ],
    )
    # 3 units x 12.50 USD x 20% = 7.50 USD x 0.80 EUR/USD = 6.00 EUR.
    [entry] = ok(api.get(LEDGER, params={"return_id": ret["id"]}))["items"]
    assert entry["kind"] == "residual_value"
    assert entry["amount"] == money("6.00")
    assert entry["details"]["percent"] == "20"
    assert entry["details"]["rate"] == "0.8"
    assert entry["details"]["units"] == 3


def test_no_cost_or_a_disposal_books_no_residual_value(api: Api) -> None:
    channel(api)
    ret = api.open_return(api.order(quantity=2), quantity=2)
    line = ret["lines"][0]["id"]
    walk_return(
        api,
        ret,
        [
            ("approve", {"note": "checked by hand"}),
            ("receive", {"lines": [{"return_line_id": line, "quantity": 2}]}),
            (
                "inspections",
                {
                    "lines": [
                        {"return_line_id": line, "passed": 1, "failed": 0, "disposition": "restock"}
                    ]
                },
            ),
        ],
    )
    assert booked(api, ret) == []  # the product has no unit cost
    ok(
        api.post(
            "/api/v1/products",
            {"sku": "MUG-BLUE", "title": "Blue mug", "unit_cost": money("8.00")},
        )
    )
    walk_return(
        api,
        ret,
        [
            (
                "inspections",
                {
                    "lines": [
                        {"return_line_id": line, "passed": 0, "failed": 1, "disposition": "dispose"}
                    ]
                },
            )
        ],
    )
    # Inspecting again books what is now known: the first inspection's restocked unit at
    # 8.00; the disposed unit is worth nothing.
    assert booked(api, ret) == [("residual_value", "8.00", "EUR")]
