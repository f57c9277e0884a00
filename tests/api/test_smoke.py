from __future__ import annotations

from typing import Any

from tests.conftest import Api


def test_return_goes_from_request_to_inspection(api: Api) -> None:
    api.channel()
    order = api.order()
    ret = api.open_return(order)
    assert ret["status"] == "requested"
    rid = ret["id"]
    r = api.post(f"/api/v1/returns/{rid}/approve", {"note": "checked by hand"})
    assert r.status_code == 200, r.text
    assert r.json()["lines"][0]["quantities"]["approved"] == 1
    r = api.post(f"/api/v1/returns/{rid}/shipments", {"carrier": "DHL", "tracking_number": "X1"})
    assert r.json()["status"] == "in_transit", r.text
    line_id = ret["lines"][0]["id"]
    r = api.post(
        f"/api/v1/returns/{rid}/receive", {"lines": [{"return_line_id": line_id, "quantity": 1}]}
    )
    assert r.json()["status"] == "received", r.text
    r = api.post(
        f"/api/v1/returns/{rid}/inspections",
        {"lines": [{"return_line_id": line_id, "passed": 1, "failed": 0}]},
    )
    assert r.json()["status"] == "inspected", r.text
    events = api.get(f"/api/v1/returns/{rid}/events").json()
    assert [e["action"] for e in events] == [
        "return.created",
        "return.approve",
        "return.decided",
        "return.ship",
        "return.receive",
        "return.inspect",
    ]


def test_a_synced_return_keeps_when_the_buyer_asked(api: Api) -> None:
    api.channel()
    order = api.order()
    line = order["lines"][0]["id"]

    def ask(at: str) -> Any:
        return api.post(
            "/api/v1/returns",
            {
                "order_id": order["id"],
                "requested_at": at,
                "lines": [{"order_line_id": line, "quantity": 1, "reason_code": "size_fit"}],
            },
        )

    r = ask("2026-10-05T08:00:00+02:00")
    assert r.status_code == 201, r.text
    assert r.json()["requested_at"].startswith("2026-10-05T06:00:00")
    for at, message in [
        ("2026-09-30T10:00:00+00:00", "is before the order was placed"),
        ("2999-01-01T00:00:00+00:00", "is in the future"),
    ]:
        r = ask(at)
        assert r.status_code == 422
        assert r.json()["errors"] == [{"field": "requested_at", "message": message}]


def test_single_return_shows_receipts_but_lists_stay_light(api: Api) -> None:
    api.channel()
    ret = api.open_return(api.order())
    rid, line = ret["id"], ret["lines"][0]["id"]
    api.post(f"/api/v1/returns/{rid}/approve", {"note": "checked by hand"})
    api.post(
        f"/api/v1/returns/{rid}/receive",
        {"lines": [{"return_line_id": line, "quantity": 1}], "notes": "box dented"},
    )
    detail = api.get(f"/api/v1/returns/{rid}").json()
    assert [(r["notes"], r["lines"][0]["quantity"]) for r in detail["receipts"]] == [
        ("box dented", 1)
    ]
    assert detail["shipments"] == [] and detail["inspections"] == []
    listed = api.get("/api/v1/returns").json()["items"][0]
    assert listed["receipts"] is None and listed["shipments"] is None
